//! Requests per second and latency to a local fake upstream, HTTP/1.1
//! keep-alive: called directly, and through the whole pipeline (`pipeline`: bearer token verified — a cache hit after the
//! first —, classified, decided by the example policies — cached —, audited
//! to a file, forwarded with the emulator credential).
//!
//! `cargo bench --bench proxy -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use firegate::dev::{DevOptions, Stack, samples};
use support::upstream;

const PATH: &str = "/v1/projects/p/databases/(default)/documents/catalog/entity";
const CONCURRENCY: usize = 32;

fn bench_proxy(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let up = rt.block_on(
        upstream()
            .body(
                r#"{"name":"projects/p/databases/(default)/documents/catalog/entity","fields":{}}"#,
            )
            .start(),
    );
    let audit_dir = tempfile::tempdir().expect("tempdir");
    let any = || "127.0.0.1:0".parse().expect("address");
    let stack = rt
        .block_on(Stack::start(DevOptions {
            listen: any(),
            issuer_listen: any(),
            emulator_listen: any(),
            admin_listen: any(),
            policies: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/policies").into()),
            upstream_override: Some(up.url.clone()),
            extra_config: Some(serde_json::json!({
                "audit": {"sink": "file", "path": audit_dir.path().join("audit.log")},
                "upstream": {"databases": ["projects/p/databases/(default)"]},
            })),
            ..Default::default()
        }))
        .expect("the full stack starts");
    let alice = samples()
        .into_iter()
        .find(|s| s.token_var == "ALICE_TOKEN")
        .expect("sample");
    let token = stack.token(&alice.identity).expect("token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let direct = format!("{}{PATH}", up.url);
    let pipeline = format!("{}{PATH}", stack.url());

    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    for (name, url) in [("direct", &direct), ("pipeline", &pipeline)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let response = client.get(url).send().await.expect("send");
                response.bytes().await.expect("body")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get_concurrent");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    for (name, url) in [("direct", &direct), ("pipeline", &pipeline)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let calls = (0..CONCURRENCY).map(|_| {
                    let client = client.clone();
                    let url = url.clone();
                    tokio::spawn(async move {
                        client.get(url).send().await.expect("send").bytes().await
                    })
                });
                for call in futures_util::future::join_all(calls).await {
                    call.expect("join").expect("body");
                }
            })
        });
    }
    group.finish();
    rt.block_on(stack.shutdown());
    drop(up);
}

criterion_group!(benches, bench_proxy);
criterion_main!(benches);
