//! Decision latency, cached and uncached, with 10, 1,000 and 100,000 rules;
//! and a decision on the data (`request.resource.data`, `resource.data`)
//! against a plain one.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;

use firegate::authn::Principal;
use firegate::firestore::{self};
use firegate::model::data::{FieldValue, Stored, StoredDocument};
use firegate::model::{Access, Database, Method, Operation, Scope, Target};
use firegate::policy::{PolicyEngine, Table};

#[path = "fixture/policy.rs"]
mod bench_policy;
use bench_policy::policy;

fn alice() -> Principal {
    Principal::new(
        "https://idp.example.com".into(),
        "alice".into(),
        Some("alice@example.com".into()),
        vec![
            "group:default/engineering".into(),
            "group:default/payments".into(),
        ],
        serde_json::Map::new(),
    )
}

/// A typical write: a commit of two documents in the caller's team (CEL).
fn commit() -> Operation {
    let doc = |id: &str| Target {
        scope: Scope::Document {
            path: ["teams", "payments", "deployments", id]
                .map(String::from)
                .into_iter()
                .collect(),
        },
        access: Access::Update,
    };
    Operation {
        writes: Vec::new(),
        filter: None,
        queried: Vec::new(),
        database: Database {
            project: "demo".into(),
            database: "(default)".into(),
        },
        method: Method::Commit,
        targets: vec![doc("d1"), doc("d2")],
    }
}

fn decisions(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let principal = alice();
    let op = commit();
    let mut group = c.benchmark_group("policy_decide");
    for n in [10usize, 1_000, 100_000] {
        let yaml = policy(n);
        let started = Instant::now();
        let table = Table::from_yaml(&yaml, 1).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("compiled {n} rules in {:?}", started.elapsed());
        assert!(table.decide(&principal, &op).allowed);
        group.bench_with_input(BenchmarkId::new("uncached", n), &n, |b, _| {
            b.iter(|| black_box(table.decide(black_box(&principal), black_box(&op))))
        });
        let engine = PolicyEngine::from_yaml(&yaml, &mut Registry::default())
            .unwrap_or_else(|e| panic!("{e}"));
        group.bench_with_input(BenchmarkId::new("cached", n), &n, |b, _| {
            b.to_async(&rt)
                .iter(|| async { black_box(engine.decide(&principal, &op).await) })
        });
    }
    group.finish();
}

/// One rule on `/notes/{id}` with `when`.
fn notes_rule(when: &str) -> Table {
    let yaml = format!(
        "rules:\n  - id: notes\n    match: /notes/{{id}}\n    allow: [create, update]\n    who: {{authenticated: true}}\n    when: \"{when}\"\n"
    );
    Table::from_yaml(&yaml, 1).unwrap_or_else(|e| panic!("{e}"))
}

/// A create of a note with eight fields, as a client sends it.
fn create_note() -> Operation {
    let route = firestore::route(
        &http::Method::POST,
        &"/v1/projects/demo/databases/(default)/documents/notes?documentId=n1"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
        &http::HeaderMap::from_iter([(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut fields = serde_json::Map::new();
    fields.insert("owner".into(), serde_json::json!({"stringValue": "alice"}));
    for i in 0..7 {
        fields.insert(
            format!("field{i}"),
            serde_json::json!({"stringValue": format!("value {i}")}),
        );
    }
    let body = serde_json::json!({ "fields": fields }).to_string().into();
    firestore::classify(&route, Some(&body)).unwrap_or_else(|e| panic!("{e}"))
}

fn data_decisions(c: &mut Criterion) {
    let principal = alice();
    let op = create_note();
    let mut group = c.benchmark_group("policy_data");
    let plain = notes_rule("principal.subject == 'alice'");
    let written = notes_rule("request.resource.data.owner == principal.subject");
    assert!(plain.decide(&principal, &op).allowed);
    assert!(written.decide(&principal, &op).allowed);
    group.bench_function("plain", |b| {
        b.iter(|| black_box(plain.decide(black_box(&principal), black_box(&op))))
    });
    group.bench_function("request_resource_data", |b| {
        b.iter(|| black_box(written.decide(black_box(&principal), black_box(&op))))
    });
    let stored_rule = notes_rule("resource.data.owner == principal.subject");
    let mut update = op.clone();
    update.targets[0].access = Access::Update;
    update.writes.clear();
    let stored: Stored = [(
        firegate::model::Segments::from(&["notes", "n1"][..]),
        Some(StoredDocument {
            fields: [("owner".to_string(), FieldValue::String("alice".into()))].into(),
            update_time: "2026-01-01T00:00:00Z".into(),
        }),
    )]
    .into();
    assert!(
        stored_rule
            .decide_stored(&principal, &update, &stored)
            .allowed
    );
    group.bench_function("resource_data", |b| {
        b.iter(|| {
            black_box(stored_rule.decide_stored(
                black_box(&principal),
                black_box(&update),
                black_box(&stored),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, decisions, data_decisions);
criterion_main!(benches);
