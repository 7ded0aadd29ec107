//! How long classification takes: a `:commit` of 500 writes (the largest a
//! commit may carry), a typical `:runQuery`, a document GET (URL only), and
//! the transaction seal on both sides.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firegate::firestore::{classify, route};
use firegate::model::Database;
use firegate::transaction::TransactionSealer;
use http::{HeaderMap, HeaderValue, Method, Uri};

const NAME: &str = "projects/p/databases/(default)/documents";

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn commit_500() -> Bytes {
    let writes: Vec<String> = (0..500)
        .map(|i| match i % 4 {
            0 => format!(
                r#"{{"update":{{"name":"{NAME}/teams/t{i}/deployments/d{i}","fields":{{"env":{{"stringValue":"prod"}},"n":{{"integerValue":"{i}"}},"tags":{{"arrayValue":{{"values":[{{"stringValue":"a"}},{{"stringValue":"b"}}]}}}}}}}},"updateMask":{{"fieldPaths":["env","n","tags"]}},"currentDocument":{{"exists":true}}}}"#
            ),
            1 => format!(r#"{{"delete":"{NAME}/teams/t{i}/deployments/d{i}"}}"#),
            2 => format!(
                r#"{{"update":{{"name":"{NAME}/catalog/c{i}","fields":{{"kind":{{"stringValue":"Component"}}}}}},"updateTransforms":[{{"fieldPath":"at","setToServerValue":1}}]}}"#
            ),
            _ => format!(
                r#"{{"transform":{{"document":"{NAME}/counters/c{i}","fieldTransforms":[{{"fieldPath":"n","increment":{{"integerValue":"1"}}}}]}}}}"#
            ),
        })
        .collect();
    Bytes::from(format!(r#"{{"writes":[{}]}}"#, writes.join(",")))
}

fn run_query() -> Bytes {
    Bytes::from_static(
        br#"{"structuredQuery":{"from":[{"collectionId":"deployments"}],"where":{"compositeFilter":{"op":1,"filters":[{"fieldFilter":{"field":{"fieldPath":"env"},"op":5,"value":{"stringValue":"prod"}}},{"fieldFilter":{"field":{"fieldPath":"at"},"op":3,"value":{"timestampValue":"2024-01-01T00:00:00Z"}}}]}},"orderBy":[{"field":{"fieldPath":"at"},"direction":2},{"field":{"fieldPath":"__name__"},"direction":2}],"limit":{"value":50}}}"#,
    )
}

fn bench(c: &mut Criterion) {
    let h = headers();
    let post = Method::POST;

    let commit_uri: Uri =
        "/v1/projects/p/databases/(default)/documents:commit?$alt=json%3Benum-encoding=int"
            .parse()
            .expect("static uri");
    let body = commit_500();
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("commit_500_writes", |b| {
        b.iter(|| {
            let r = route(&post, black_box(&commit_uri), &h).expect("route");
            let op = classify(&r, Some(black_box(&body))).expect("classify");
            assert_eq!(op.targets.len(), 750);
            op
        })
    });
    group.finish();

    let query_uri: Uri = "/v1/projects/p/databases/(default)/documents/teams/t1:runQuery"
        .parse()
        .expect("static uri");
    let query = run_query();
    c.bench_function("classify/run_query", |b| {
        b.iter(|| {
            let r = route(&post, black_box(&query_uri), &h).expect("route");
            classify(&r, Some(black_box(&query))).expect("classify")
        })
    });

    let get_uri: Uri =
        "/v1/projects/p/databases/(default)/documents/teams/t1/deployments/d1?mask.fieldPaths=env"
            .parse()
            .expect("static uri");
    c.bench_function("classify/get_document", |b| {
        b.iter(|| {
            let r = route(&Method::GET, black_box(&get_uri), &h).expect("route");
            classify(&r, None).expect("classify")
        })
    });

    let sealer = TransactionSealer::with_key(&[7; 32], Duration::from_secs(600)).expect("key");
    let db = Database {
        project: "p".into(),
        database: "(default)".into(),
    };
    let fingerprint = [3u8; 32];
    let id = [0x5au8; 40];
    let sealed = sealer.seal(&fingerprint, &db, &id);
    c.bench_function("transaction/seal", |b| {
        b.iter(|| sealer.seal(black_box(&fingerprint), &db, black_box(&id)))
    });
    c.bench_function("transaction/unseal", |b| {
        b.iter(|| {
            sealer
                .unseal(black_box(&sealed), &fingerprint, &db)
                .expect("unseal")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
