//! Writes classified without their fields (no rule of the serving table
//! read them): which tables need them, and a table reloaded in between
//! that reads them failing closed rather than seeing an empty document.

use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::fixtures::member;
use super::seen::Seen;
use super::{PolicyEngine, table::Table};
use crate::firestore;
use crate::model::data::{FieldCapture, Stored, StoredDocument};
use crate::model::{Access, Operation, Scope, Target};

const DB: &str = "projects/p/databases/(default)/documents";

fn capture(when: &str) -> FieldCapture {
    let yaml = format!(
        "rules:\n  - id: r\n    match: /notes/{{id}}\n    allow: [write]\n    who: {{authenticated: true}}\n{when}"
    );
    Table::from_yaml(&yaml, 0).unwrap().field_capture()
}

#[test]
fn only_conditions_on_the_written_document_need_its_fields() {
    assert_eq!(capture(""), FieldCapture::ValidateOnly);
    for reads_nothing_written in [
        "principal.subject == 'a'",
        "resource.data.owner == principal.subject",
        "request.method == 'create'",
    ] {
        let when = format!("    when: \"{reads_nothing_written}\"\n");
        assert_eq!(capture(&when), FieldCapture::ValidateOnly, "{when}");
    }
    for reads_written in [
        "request.resource.data.owner == principal.subject",
        "'owner' in request.changed_fields",
        "request['resource'] != null",
    ] {
        let when = format!("    when: \"{reads_written}\"\n");
        assert_eq!(capture(&when), FieldCapture::Capture, "{when}");
    }
}

fn commit(capture: FieldCapture, fields: serde_json::Value) -> Operation {
    let route = firestore::route(
        &http::Method::POST,
        &format!("/v1/{DB}:commit").parse().unwrap(),
        &http::HeaderMap::from_iter([(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )]),
    )
    .unwrap();
    let body =
        json!({"writes": [{"update": {"name": format!("{DB}/notes/n1"), "fields": fields}}]});
    let body = Bytes::from(body.to_string());
    firestore::classify_with(&route, Some(&body), capture)
        .unwrap()
        .operation
}

const PLAIN: &str = r#"
rules:
  - id: notes
    match: /notes/{id}
    allow: [write]
    who: {authenticated: true}
"#;

/// Each rule set reads the written document; `alice` writing
/// `{owner: alice}` is allowed by each when the fields are known.
const READING: [&str; 4] = [
    r#"
rules:
  - id: own-notes
    match: /notes/{id}
    allow: [write]
    who: {authenticated: true}
    when: "request.resource.data.owner == principal.subject"
"#,
    r#"
rules:
  - id: notes
    match: /notes/{id}
    allow: [write]
    who: {authenticated: true}
  - id: no-secrets
    match: /notes/{id}
    deny: [write]
    who: {authenticated: true}
    when: "'secret' in request.resource.data"
"#,
    r#"
rules:
  - id: notes
    match: /notes/{id}
    allow: [write]
    who: {authenticated: true}
  - id: owner-immutable
    match: /notes/{id}
    deny: [update]
    who: {authenticated: true}
    when: "'secret' in request.changed_fields"
"#,
    // `has()` of a variable left out is false, not an error: only the
    // decision's own check keeps this from allowing an unknown write.
    r#"
rules:
  - id: deletes-or-own
    match: /notes/{id}
    allow: [write]
    who: {authenticated: true}
    when: "!has(request.resource) || request.resource.data.owner == principal.subject"
"#,
];

#[tokio::test]
async fn a_reload_that_reads_fields_fails_closed_on_writes_classified_without() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.yaml");
    std::fs::write(&file, PLAIN).unwrap();
    let engine = PolicyEngine::from_dir(dir.path(), &mut Registry::default())
        .await
        .unwrap();
    let alice = member("alice", &[]);
    let fields = json!({"owner": {"stringValue": "alice"}});
    let stored = Stored::from([(
        crate::model::Segments::from(&["notes", "n1"][..]),
        Some(StoredDocument {
            fields: Default::default(),
            update_time: "2026-01-01T00:00:00Z".into(),
        }),
    )]);
    for yaml in READING {
        std::fs::write(&file, PLAIN).unwrap();
        engine.reload().await.unwrap();
        // Classified as the pipeline does, for the table serving then.
        let capture = engine.field_capture();
        assert_eq!(capture, FieldCapture::ValidateOnly);
        let lazy = commit(capture, fields.clone());
        assert!(!lazy.fields_captured(), "{:?}", lazy.writes);
        assert!(
            engine
                .decide_with(&alice, &lazy, Some(&stored))
                .await
                .allowed
        );
        std::fs::write(&file, yaml).unwrap();
        engine.reload().await.unwrap();
        let decision = engine.decide_with(&alice, &lazy, Some(&stored)).await;
        assert!(!decision.allowed, "{yaml}");
        // The same write with its fields, as the new table classifies it.
        assert_eq!(engine.field_capture(), FieldCapture::Capture, "{yaml}");
        let eager = commit(engine.field_capture(), fields.clone());
        assert!(
            engine
                .decide_with(&alice, &eager, Some(&stored))
                .await
                .allowed,
            "{yaml}"
        );
    }
}

#[test]
fn what_rules_see_of_fields_not_captured_is_unknown() {
    let lazy = commit(
        FieldCapture::ValidateOnly,
        json!({"owner": {"stringValue": "alice"}}),
    );
    let target = Target {
        scope: Scope::Document {
            path: vec!["notes".to_string(), "n1".into()].into(),
        },
        access: Access::Update,
    };
    let stored = Stored::from([(crate::model::Segments::from(&["notes", "n1"][..]), None)]);
    let seen = Seen::for_target(&lazy, &target, Some(&stored));
    assert!(seen.written.is_none(), "{:?}", seen.written);
    assert!(seen.changed.is_none(), "{:?}", seen.changed);
    assert!(seen.stored.is_some(), "the stored document stays known");
    let eager = commit(
        FieldCapture::Capture,
        json!({"owner": {"stringValue": "alice"}}),
    );
    let seen = Seen::for_target(&eager, &target, Some(&stored));
    assert!(seen.written.is_some() && seen.changed.is_some());
}
