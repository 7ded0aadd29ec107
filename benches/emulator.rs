//! The emulator's cost per call, in-process through `Emulator::handle`:
//! a filtered, ordered, limited runQuery over 10,000 documents (every query
//! is a scan), a batchGet of one document, and a one-write commit; the
//! last two also over gRPC (protobuf framed by hand, as a client sends it).
//!
//! `cargo bench --bench emulator -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use http::{Method, Request};
use http_body_util::BodyExt;
use prost::Message;
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

/// One gRPC call; the answer's length, after checking its `grpc-status`.
async fn grpc(emulator: &Emulator, method: &str, message: &impl Message) -> usize {
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(encoded.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(encoded.len()).expect("size").to_be_bytes());
    framed.extend_from_slice(&encoded);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/google.firestore.v1.Firestore/{method}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(body::full(framed))
        .expect("request");
    let response = emulator.handle(request).await;
    let collected = response.into_body().collect().await.expect("body");
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    assert_eq!(status.as_ref().map(|s| s.as_bytes()), Some(&b"0"[..]));
    collected.to_bytes().len()
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
    let grpc_get = proto::BatchGetDocumentsRequest {
        database: DB.into(),
        documents: vec![format!("{DB}/documents/items/04242")],
        ..Default::default()
    };
    group.bench_function("grpc_batchGet_one", |b| {
        b.to_async(&rt)
            .iter(|| grpc(&emulator, "BatchGetDocuments", &grpc_get))
    });
    group.bench_function("grpc_commit_one", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let value = proto::Value {
                value_type: Some(proto::value::ValueType::IntegerValue(n as i64)),
            };
            let commit = proto::CommitRequest {
                database: DB.into(),
                writes: vec![proto::Write {
                    operation: Some(proto::write::Operation::Update(proto::Document {
                        name: format!("{DB}/documents/grpc_writes/w{n}"),
                        fields: [("n".to_owned(), value)].into_iter().collect(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                transaction: Vec::new(),
            };
            let emulator = emulator.clone();
            async move { grpc(&emulator, "Commit", &commit).await }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_emulator);
criterion_main!(benches);
