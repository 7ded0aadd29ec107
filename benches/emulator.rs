//! The emulator's cost per call, in-process through `Emulator::handle`:
//! a filtered, ordered, limited runQuery over 10,000 documents (every query
//! is a scan), a batchGet of one document, and a one-write commit.
//!
//! `cargo bench --bench emulator -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::runtime::Runtime;

use firegate::body;
use firegate::emulator::Emulator;

const DB: &str = "projects/bench/databases/(default)";
const DOCUMENTS: i64 = 10_000;

async fn post(emulator: &Emulator, verb: &str, body: &serde_json::Value) -> usize {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/{DB}/documents:{verb}"))
        .body(body::full(body.to_string()))
        .expect("request");
    let response = emulator.handle(request).await;
    assert!(response.status().is_success());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    bytes.len()
}

fn bench_emulator(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let emulator = Emulator::new();
    for i in 0..DOCUMENTS {
        let fields = json!({
            "team": {"stringValue": format!("team-{}", i % 10)},
            "n": {"integerValue": i.to_string()},
        });
        emulator
            .put(DB, &format!("items/{i:05}"), fields)
            .expect("seed");
    }
    let query = json!({"structuredQuery": {
        "from": [{"collectionId": "items"}],
        "where": {"fieldFilter": {"field": {"fieldPath": "team"}, "op": "EQUAL", "value": {"stringValue": "team-3"}}},
        "orderBy": [{"field": {"fieldPath": "n"}, "direction": "DESCENDING"}],
        "limit": 10
    }});
    let get = json!({"documents": [format!("{DB}/documents/items/04242")]});
    let mut n = 0_u64;

    let mut group = c.benchmark_group("emulator");
    group.bench_function("runQuery_10k_docs", |b| {
        b.to_async(&rt).iter(|| post(&emulator, "runQuery", &query))
    });
    group.bench_function("batchGet_one", |b| {
        b.to_async(&rt).iter(|| post(&emulator, "batchGet", &get))
    });
    group.bench_function("commit_one", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let write = json!({"writes": [{"update": {
                "name": format!("{DB}/documents/writes/w{n}"),
                "fields": {"n": {"integerValue": n.to_string()}}
            }}]});
            let emulator = emulator.clone();
            async move { post(&emulator, "commit", &write).await }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_emulator);
criterion_main!(benches);
