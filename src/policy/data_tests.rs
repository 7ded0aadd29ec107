//! Rules that see the data, from real REST requests: the document after the
//! write, the changed fields, the stored document, queries proved by their
//! filters, and a cache that never carries a data verdict over.

use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::PolicyEngine;
use super::fixtures::member;
use crate::authn::Principal;
use crate::firestore::{self};
use crate::model::data::{Stored, StoredDocument};
use crate::model::{Operation, Segments};

const NOTES: &str = r#"
rules:
  - id: notes-create
    match: /notes/{id}
    allow: [create]
    who: {authenticated: true}
    when: "request.resource.data.owner == principal.subject"
  - id: notes-owner
    match: /notes/{id}
    allow: [get, list, update, delete]
    who: {authenticated: true}
    when: "resource.data.owner == principal.subject"
  - id: owner-immutable
    match: /notes/{id}
    deny: [update]
    who: {authenticated: true}
    when: "'owner' in request.changed_fields"
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

fn engine(yaml: &str) -> PolicyEngine {
    PolicyEngine::from_yaml(yaml, &mut Registry::default()).unwrap()
}

fn note(id: &str, owner: &str) -> (Segments, Option<StoredDocument>) {
    (
        Segments::from(&["notes", id][..]),
        Some(StoredDocument {
            fields: [(
                "owner".to_string(),
                crate::model::data::FieldValue::String(owner.into()),
            )]
            .into(),
            update_time: "2026-01-01T00:00:00Z".into(),
        }),
    )
}

fn owner(subject: &str) -> serde_json::Value {
    json!({"owner": {"stringValue": subject}, "title": {"stringValue": "t"}})
}

async fn allowed(e: &PolicyEngine, p: &Principal, op: &Operation, stored: Option<&Stored>) -> bool {
    e.decide_with(p, op, stored).await.allowed
}

#[tokio::test]
async fn a_caller_creates_only_notes_they_own() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let mine = classify(
        "POST",
        "/notes?documentId=n1",
        json!({"fields": owner("alice")}),
    );
    assert!(allowed(&e, &alice, &mine, None).await);
    assert!(
        e.stored_needed(&alice, &mine).is_empty(),
        "a create reads nothing"
    );
    let theirs = classify("POST", "/notes", json!({"fields": owner("bob")}));
    assert!(!allowed(&e, &alice, &theirs, None).await);
    // The same key (principal, rpc, target) with other data: never a cached verdict.
    let mine_auto = classify("POST", "/notes", json!({"fields": owner("alice")}));
    assert!(allowed(&e, &alice, &mine_auto, None).await);
    assert!(!allowed(&e, &alice, &theirs, None).await);
}

#[tokio::test]
async fn commit_writes_are_judged_on_what_they_write() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let write = |owner_: &str| {
        classify(
            "POST",
            ":commit",
            json!({"writes": [{
                "update": {"name": format!("{DB}/notes/n1"), "fields": owner(owner_)},
                "currentDocument": {"exists": false},
                "updateTransforms": [{"fieldPath": "created", "setToServerValue": "REQUEST_TIME"}]
            }]}),
        )
    };
    assert!(allowed(&e, &alice, &write("alice"), None).await);
    assert!(!allowed(&e, &alice, &write("bob"), None).await);
}

#[tokio::test]
async fn updates_read_the_stored_document_and_keep_the_owner() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let patch = classify(
        "PATCH",
        "/notes/n1?updateMask.fieldPaths=title&currentDocument.exists=true",
        json!({"fields": {"title": {"stringValue": "new"}}}),
    );
    assert_eq!(e.stored_needed(&alice, &patch), [vec!["notes", "n1"]]);
    let own = Stored::from([note("n1", "alice")]);
    let other = Stored::from([note("n1", "bob")]);
    assert!(allowed(&e, &alice, &patch, Some(&own)).await);
    assert!(!allowed(&e, &alice, &patch, Some(&other)).await);
    // Without the stored document, the rule fails closed.
    assert!(!allowed(&e, &alice, &patch, None).await);
    let steal = classify(
        "PATCH",
        "/notes/n1?updateMask.fieldPaths=owner&currentDocument.exists=true",
        json!({"fields": {"owner": {"stringValue": "bob"}}}),
    );
    let decision = e.decide_with(&alice, &steal, Some(&own)).await;
    assert!(!decision.allowed);
    assert_eq!(decision.reason.as_deref(), Some("rule:owner-immutable"));
}

#[tokio::test]
async fn reads_are_checked_on_the_documents() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let get = classify("GET", "/notes/n1", serde_json::Value::Null);
    assert_eq!(e.stored_needed(&alice, &get).len(), 1);
    assert!(allowed(&e, &alice, &get, Some(&Stored::from([note("n1", "alice")]))).await);
    assert!(!allowed(&e, &alice, &get, Some(&Stored::from([note("n1", "bob")]))).await);
    let missing = Stored::from([(Segments::from(&["notes", "n1"][..]), None)]);
    assert!(!allowed(&e, &alice, &get, Some(&missing)).await);
}

#[tokio::test]
async fn a_query_passes_only_when_its_filter_proves_the_condition() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let query = |filter: serde_json::Value| {
        let mut q = json!({"from": [{"collectionId": "notes"}]});
        if !filter.is_null() {
            q["where"] = filter;
        }
        classify("POST", ":runQuery", json!({"structuredQuery": q}))
    };
    let eq = |field: &str, value: &str| {
        json!({"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL",
                               "value": {"stringValue": value}}})
    };
    assert!(allowed(&e, &alice, &query(eq("owner", "alice")), None).await);
    assert!(!allowed(&e, &alice, &query(eq("owner", "bob")), None).await);
    assert!(!allowed(&e, &alice, &query(serde_json::Value::Null), None).await);
    let and = json!({"compositeFilter": {"op": "AND", "filters": [eq("title", "x"), eq("owner", "alice")]}});
    assert!(allowed(&e, &alice, &query(and), None).await);
    let or = json!({"compositeFilter": {"op": "OR", "filters": [eq("title", "x"), eq("owner", "alice")]}});
    assert!(!allowed(&e, &alice, &query(or), None).await);
    let ne = json!({"fieldFilter": {"field": {"fieldPath": "owner"}, "op": "NOT_EQUAL",
                                    "value": {"stringValue": "alice"}}});
    assert!(!allowed(&e, &alice, &query(ne), None).await);
}

#[tokio::test]
async fn a_condition_that_reads_resource_otherwise_proves_nothing() {
    let e = engine(
        r#"
rules:
  - id: public
    match: /notes/{id}
    allow: [list]
    who: {authenticated: true}
    when: "!has(resource.data.secret)"
"#,
    );
    let q = classify(
        "POST",
        ":runQuery",
        json!({"structuredQuery": {"from": [{"collectionId": "notes"}],
            "where": {"fieldFilter": {"field": {"fieldPath": "owner"}, "op": "EQUAL",
                                      "value": {"stringValue": "alice"}}}}}),
    );
    assert!(!allowed(&e, &member("alice", &[]), &q, None).await);
}

#[tokio::test]
async fn an_upsert_of_a_missing_document_is_judged_as_the_create_it_is() {
    let e = engine(NOTES);
    let alice = member("alice", &[]);
    let mut set = classify(
        "POST",
        ":commit",
        json!({"writes": [{"update": {"name": format!("{DB}/notes/n9"), "fields": owner("alice")}}]}),
    );
    let paths = e.stored_needed(&alice, &set);
    assert_eq!(paths.len(), 1);
    let missing = Stored::from([(paths[0].clone(), None)]);
    assert!(
        !allowed(&e, &alice, &set, Some(&missing)).await,
        "update part"
    );
    set.settle(&missing);
    assert!(allowed(&e, &alice, &set, Some(&missing)).await);
}

#[tokio::test]
async fn a_name_range_narrows_a_kindless_query_to_the_collection_it_bounds() {
    let e = engine(
        r#"
rules:
  - id: platform-admins
    match: /{path=**}
    allow: [read, write]
    who: {groups: [admins]}
  - id: no-secrets
    match: /secrets/{rest=**}
    deny: [read, write]
    who: {any: true}
"#,
    );
    let admin = member("root", &["admins"]);
    // What the Node client's `recursiveDelete(db.collection(c))` sends.
    let recursive_delete = |collection: &str| {
        let bound = |c: String, op: &str| {
            json!({"fieldFilter": {"field": {"fieldPath": "__name__"}, "op": op,
                "value": {"referenceValue": format!("{DB}/{c}/__id-9223372036854775808__")}}})
        };
        classify(
            "POST",
            ":runQuery",
            json!({"structuredQuery": {
                "from": [{"allDescendants": true}],
                "select": {"fields": [{"fieldPath": "__name__"}]},
                "where": {"compositeFilter": {"op": "AND", "filters": [
                    bound(collection.to_string(), "GREATER_THAN_OR_EQUAL"),
                    bound(format!("{collection}\u{0}"), "LESS_THAN")]}},
                "limit": 5000}}),
        )
    };
    let notes = recursive_delete("notes");
    assert_eq!(notes.targets[0].scope.to_string(), "/notes/**");
    assert!(allowed(&e, &admin, &notes, None).await);
    assert!(!allowed(&e, &admin, &recursive_delete("secrets"), None).await);
    let unbounded = classify(
        "POST",
        ":runQuery",
        json!({"structuredQuery": {"from": [{"allDescendants": true}]}}),
    );
    assert!(
        !allowed(&e, &admin, &unbounded, None).await,
        "secrets are below the root"
    );
}
