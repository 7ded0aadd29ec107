//! What field masks cost: the streaming REST rewriter over a 100-document
//! `runQuery` answer against passing the same bytes through, and the whole
//! pipeline's `runQuery` of those 100 documents for a masked principal
//! (an engineer under `policies/people.yaml`) against an unmasked one (a
//! platform admin: one allowing rule without a mask shows everything).
//! What an unmasked request pays for masks existing: the admin's query
//! again, under the same policies with every `mask:` taken out (the judge
//! then never looks for one).
//!
//! `cargo bench --bench masks -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use firegate::body::Rewrite;
use firegate::dev::{DevOptions, Stack, samples};
use firegate::firestore::mask::{Layout, MaskStream};
use firegate::model::mask::{DocumentMasks, FieldMask};
use support::upstream;

const DOCS: usize = 100;
const QUERY: &str = r#"{"structuredQuery":{"from":[{"collectionId":"people"}]}}"#;
const PATH: &str = "/v1/projects/p/databases/(default)/documents:runQuery";

/// A `runQuery` answer of `DOCS` people, as Firestore streams it.
fn answer() -> String {
    let rows: Vec<String> = (0..DOCS)
        .map(|i| {
            format!(
                r#"{{"document":{{"name":"projects/p/databases/(default)/documents/people/p{i:03}","fields":{{"name":{{"stringValue":"Person {i}"}},"email":{{"stringValue":"p{i}@example.com"}},"team":{{"stringValue":"payments"}},"salary":{{"integerValue":"{}"}},"ssn":{{"stringValue":"000-00-{i:04}"}},"tax.id":{{"stringValue":"T-{i}"}},"address":{{"mapValue":{{"fields":{{"street":{{"stringValue":"{i} Main St"}},"city":{{"stringValue":"Oslo"}},"zip":{{"stringValue":"0150"}}}}}}}},"skills":{{"arrayValue":{{"values":[{{"stringValue":"rust"}},{{"stringValue":"go"}}]}}}}}},"createTime":"2024-01-01T00:00:00.000000Z","updateTime":"2024-01-01T00:00:00.000000Z"}},"readTime":"2024-01-01T00:00:00.000000Z"}}"#,
                90_000 + i
            )
        })
        .collect();
    format!("[{}]", rows.join(",\r\n"))
}

fn bench_rewriter(c: &mut Criterion) {
    let body = Bytes::from(answer());
    let mut masks = DocumentMasks::default();
    let mask = FieldMask::parse(["salary", "ssn", "address.street", "`tax.id`"]).expect("mask");
    masks.query(&Arc::new(mask));
    let masks = Arc::new(masks);
    // Upstream answers arrive in chunks of a few KiB.
    let chunks: Vec<Bytes> = body.chunks(8192).map(Bytes::copy_from_slice).collect();
    let mut group = c.benchmark_group("rewrite_runquery_100");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("passthrough", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| std::hint::black_box(c.clone()).len())
                .sum::<usize>()
        })
    });
    group.bench_function("masked", |b| {
        b.iter(|| {
            let mut stream = MaskStream::new(
                Layout::Results,
                Arc::clone(&masks),
                Arc::new(AtomicU64::new(0)),
                1 << 20,
            );
            let mut out = 0;
            for chunk in &chunks {
                out += stream
                    .data(chunk.clone())
                    .expect("masked")
                    .map_or(0, |b| b.len());
            }
            stream.end().expect("end");
            out
        })
    });
    group.finish();
}

/// The example policies, every `mask:` line taken out.
fn policies_without_masks() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    for entry in std::fs::read_dir(from).expect("policies") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("policy");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("mask:"))
            .collect();
        let name = path.file_name().expect("name");
        std::fs::write(dir.path().join(name), kept.join("\n") + "\n").expect("write");
    }
    dir
}

fn bench_pipeline(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let up = rt.block_on(upstream().body(answer()).start());
    let audit_dir = tempfile::tempdir().expect("tempdir");
    let no_masks = policies_without_masks();
    let start = |policies: std::path::PathBuf, audit: &str| {
        let any = || "127.0.0.1:0".parse().expect("address");
        rt.block_on(Stack::start(DevOptions {
            listen: any(),
            issuer_listen: any(),
            emulator_listen: any(),
            admin_listen: any(),
            policies: Some(policies),
            upstream_override: Some(up.url.clone()),
            extra_config: Some(serde_json::json!({
                "audit": {"sink": "file", "path": audit_dir.path().join(audit)},
                "upstream": {"databases": ["projects/p/databases/(default)"]},
            })),
            ..Default::default()
        }))
        .expect("the full stack starts")
    };
    let stack = start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into(),
        "audit.log",
    );
    let bare = start(no_masks.path().into(), "bare.log");
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .expect("client");
    let mut group = c.benchmark_group("pipeline_runquery_100");
    group.throughput(Throughput::Elements(1));
    for (name, who, stack, masked) in [
        ("unmasked", "ADMIN_TOKEN", &stack, false),
        ("masked", "ALICE_TOKEN", &stack, true),
        ("unmasked_no_mask_in_policies", "ADMIN_TOKEN", &bare, false),
        ("engineer_no_mask_in_policies", "ALICE_TOKEN", &bare, false),
    ] {
        let url = format!("{}{PATH}", stack.url());
        let identity = samples()
            .into_iter()
            .find(|s| s.token_var == who)
            .expect("sample")
            .identity;
        let token = stack.token(&identity).expect("token");
        let check = rt.block_on(async {
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(QUERY)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200, "{name}");
            r.text().await.expect("body")
        });
        assert_eq!(check.contains("salary"), !masked, "{name}");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(QUERY)
                    .send()
                    .await
                    .expect("send");
                response.bytes().await.expect("body")
            })
        });
    }
    group.finish();
    rt.block_on(stack.shutdown());
    rt.block_on(bare.shutdown());
    drop(up);
}

criterion_group!(benches, bench_rewriter, bench_pipeline);
criterion_main!(benches);
