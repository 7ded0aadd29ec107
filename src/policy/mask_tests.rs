//! Masks from real REST requests: merged across allowing rules, cached
//! with the verdict, and what they refuse — queries that read a masked
//! field, writes that would blindly replace one.

use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::fixtures::member;
use super::{Decision, PolicyEngine, Table};
use crate::firestore;
use crate::model::Operation;

const PEOPLE: &str = r#"
rules:
  - id: people-directory
    match: /people/{id}
    allow: [read, update, create]
    who: {groups: [eng]}
    mask: [salary, ssn, address.street, "`tax.id`"]
  - id: people-hr
    match: /people/{id}
    allow: [read, write]
    who: {groups: [hr]}
  - id: people-managers
    match: /people/{id}
    allow: [read]
    who: {groups: [managers]}
    mask: [ssn, salary.bonus, phone]
"#;

const DB: &str = "projects/p/databases/(default)/documents";

fn classify(method: &str, url: &str, body: serde_json::Value) -> Operation {
    let route = firestore::route(
        &method.parse().unwrap(),
        &format!("/v1/{DB}{url}").parse().unwrap(),
        &http::HeaderMap::from_iter([(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )]),
    )
    .unwrap();
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    firestore::classify(&route, Some(&body)).unwrap()
}

fn decide(groups: &[&str], op: &Operation) -> Decision {
    let table = Table::from_yaml(PEOPLE, 1).unwrap();
    table.decide(&member("u", groups), op)
}

fn masked(d: &Decision) -> Option<String> {
    d.targets[0].mask().map(|m| m.fields.to_string())
}

fn query(clause: serde_json::Value) -> Operation {
    let mut q = json!({"from": [{"collectionId": "people"}]});
    q.as_object_mut()
        .unwrap()
        .extend(clause.as_object().unwrap().clone());
    classify("POST", ":runQuery", json!({"structuredQuery": q}))
}

#[test]
fn the_fields_hidden_are_those_every_allowing_rule_hides() {
    let get = classify("GET", "/people/ann", serde_json::Value::Null);
    let eng = decide(&["eng"], &get);
    assert!(eng.allowed);
    assert_eq!(
        masked(&eng).as_deref(),
        Some("address.street, salary, ssn, `tax.id`")
    );
    assert_eq!(eng.targets[0].mask().unwrap().rules, ["people-directory"]);
    // Another allowing rule without a mask shows the whole document.
    assert_eq!(masked(&decide(&["eng", "hr"], &get)), None);
    // Two masks: only what both hide (salary.bonus lies under salary).
    let both = decide(&["eng", "managers"], &get);
    assert_eq!(masked(&both).as_deref(), Some("salary.bonus, ssn"));
    assert_eq!(
        both.targets[0].mask().unwrap().rules,
        ["people-directory", "people-managers"]
    );
    assert_eq!(masked(&decide(&["hr"], &get)), None);
}

#[test]
fn a_query_reading_a_masked_field_is_refused() {
    let eng = |op: &Operation| decide(&["eng"], op);
    let filter = json!({"where": {"fieldFilter": {"field": {"fieldPath": "salary"}, "op": "GREATER_THAN", "value": {"integerValue": "0"}}}});
    let refused = eng(&query(filter.clone()));
    assert!(!refused.allowed);
    assert_eq!(
        refused.reason.as_deref(),
        Some("masked_field_queried:people-directory")
    );
    let ordered = json!({"orderBy": [{"field": {"fieldPath": "salary"}}], "startAt": {"values": [{"integerValue": "5"}]}});
    assert!(!eng(&query(ordered)).allowed);
    // A filter on a map above a masked field compares it too.
    let above =
        json!({"where": {"unaryFilter": {"field": {"fieldPath": "address"}, "op": "IS_NULL"}}});
    assert!(!eng(&query(above)).allowed);
    let nested = json!({"where": {"compositeFilter": {"op": "AND", "filters": [
        {"fieldFilter": {"field": {"fieldPath": "name"}, "op": "EQUAL", "value": {"stringValue": "a"}}},
        {"fieldFilter": {"field": {"fieldPath": "`tax.id`"}, "op": "EQUAL", "value": {"stringValue": "a"}}}]}}});
    assert!(!eng(&query(nested)).allowed);
    let vector = json!({"findNearest": {"vectorField": {"fieldPath": "ssn"}, "queryVector": {"arrayValue": {}}, "distanceMeasure": "COSINE", "limit": 3}});
    assert!(!eng(&query(vector)).allowed);
    // Unmasked fields, and the street's sibling, may be queried.
    let fine = json!({"where": {"fieldFilter": {"field": {"fieldPath": "address.city"}, "op": "EQUAL", "value": {"stringValue": "x"}}}, "orderBy": [{"field": {"fieldPath": "name"}}]});
    assert!(eng(&query(fine.clone())).allowed);
    // HR is not masked: the same filter passes.
    assert!(decide(&["hr"], &query(filter)).allowed);
}

#[test]
fn aggregations_on_a_masked_field_are_refused() {
    let agg = |aggregation: serde_json::Value, clause: serde_json::Value| {
        let mut q = json!({"from": [{"collectionId": "people"}]});
        q.as_object_mut()
            .unwrap()
            .extend(clause.as_object().unwrap().clone());
        classify(
            "POST",
            ":runAggregationQuery",
            json!({"structuredAggregationQuery": {"structuredQuery": q, "aggregations": [aggregation]}}),
        )
    };
    let sum = agg(
        json!({"alias": "s", "sum": {"field": {"fieldPath": "salary"}}}),
        json!({}),
    );
    assert!(!decide(&["eng"], &sum).allowed);
    let avg = agg(
        json!({"alias": "s", "avg": {"field": {"fieldPath": "salary"}}}),
        json!({}),
    );
    assert!(!decide(&["eng"], &avg).allowed);
    let count = agg(json!({"alias": "c", "count": {}}), json!({}));
    assert!(decide(&["eng"], &count).allowed);
    let filtered = agg(
        json!({"alias": "c", "count": {}}),
        json!({"where": {"fieldFilter": {"field": {"fieldPath": "ssn"}, "op": "EQUAL", "value": {"stringValue": "1"}}}}),
    );
    assert!(!decide(&["eng"], &filtered).allowed);
}

#[test]
fn a_masked_writer_may_not_blindly_replace_or_name_masked_fields() {
    let doc = json!({"fields": {"name": {"stringValue": "Ann"}}});
    // set() without merge: an upsert replacing the whole document.
    let set = classify("PATCH", "/people/ann", doc.clone());
    let refused = decide(&["eng"], &set);
    assert!(!refused.allowed);
    assert_eq!(
        refused.reason.as_deref(),
        Some("masked_field_written:people-directory")
    );
    // update({name}): a mask naming only visible fields.
    let update = classify(
        "PATCH",
        "/people/ann?updateMask.fieldPaths=name&currentDocument.exists=true",
        doc.clone(),
    );
    assert!(decide(&["eng"], &update).allowed);
    let sneaky = classify(
        "PATCH",
        "/people/ann?updateMask.fieldPaths=address&currentDocument.exists=true",
        doc.clone(),
    );
    assert!(!decide(&["eng"], &sneaky).allowed);
    // A create has nothing hidden to overwrite.
    let create = classify("POST", "/people?documentId=new", doc.clone());
    assert!(decide(&["eng"], &create).allowed);
    // An unmasked write rule allows the replace.
    assert!(decide(&["eng", "hr"], &set).allowed);
}

#[test]
fn masks_are_validated_at_load() {
    let bad = |mask: &str, allow: &str| {
        let yaml = format!(
            "rules:\n  - id: r\n    match: /p/{{id}}\n    {allow}\n    who: {{any: true}}\n    mask: {mask}\n"
        );
        Table::from_yaml(&yaml, 1).err().map(|e| e.to_string())
    };
    assert!(bad("[a.b, \"`x.y`\"]", "allow: [read]").is_none());
    let err = bad("[\"a..b\"]", "allow: [read]").unwrap();
    assert!(err.contains("`a..b` is not a field path"), "{err}");
    let err = bad("[a]", "deny: [read]").unwrap();
    assert!(err.contains("only makes sense on an allow rule"), "{err}");
    let err = bad("[a]", "allow: [write]").unwrap();
    assert!(err.contains("allows no read"), "{err}");
    let err = bad("[]", "allow: [read]").unwrap();
    assert!(err.contains("lists no field"), "{err}");
    let err = bad("[__name__]", "allow: [read]").unwrap();
    assert!(err.contains("cannot be masked"), "{err}");
}

#[tokio::test]
async fn the_cache_keeps_the_mask_with_the_verdict() {
    let engine = PolicyEngine::from_yaml(PEOPLE, &mut Registry::default()).unwrap();
    let get = classify("GET", "/people/ann", serde_json::Value::Null);
    let eng = member("u", &["eng"]);
    for _ in 0..2 {
        let d = engine.decide(&eng, &get).await;
        assert_eq!(
            masked(&d).as_deref(),
            Some("address.street, salary, ssn, `tax.id`")
        );
    }
    let hr = member("h", &["hr"]);
    assert_eq!(masked(&engine.decide(&hr, &get).await), None);
}
