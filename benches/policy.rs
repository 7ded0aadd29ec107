//! Decision latency, cached and uncached, with 10, 1,000 and 100,000 rules.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;

use firegate::authn::Principal;
use firegate::firestore::{Access, Database, Method, Operation, Scope, Target};
use firegate::policy::{PolicyEngine, Table};

/// The worked example's shape plus `n - 4` synthetic rules on their own
/// collections (one in a hundred a deny).
fn policy(n: usize) -> String {
    let mut yaml = String::from(
        r#"rules:
  - id: catalog-readers
    match: /catalog/{rest=**}
    allow: [read]
    who: { groups: [group:default/engineering] }
  - id: own-team
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: { authenticated: true }
    when: "'group:default/' + path.team in principal.groups"
  - id: no-secrets
    match: /secrets/{rest=**}
    deny: [read, write]
    who: { any: true }
  - id: platform-admins
    match: /{path=**}
    allow: [read, write]
    who: { groups: [group:default/platform-admins] }
"#,
    );
    for i in 0..n.saturating_sub(4) {
        let effect = if i % 100 == 99 { "deny" } else { "allow" };
        yaml += &format!(
            "  - {{ id: svc-{i}, match: '/svc-{i}/{{doc}}/items/{{item}}', {effect}: [read], who: {{ groups: [group:default/team-{}] }} }}\n",
            i % 50
        );
    }
    yaml
}

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
                .to_vec(),
        },
        access: Access::Update,
    };
    Operation {
        writes: Vec::new(),
        filter: None,
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

criterion_group!(benches, decisions);
criterion_main!(benches);
