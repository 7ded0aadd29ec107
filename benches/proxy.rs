//! Requests per second and latency through firegate's server and upstream
//! client (no authn, no policy) to a local fake upstream, HTTP/1.1
//! keep-alive, against the same upstream called directly.
//!
//! `cargo bench --bench proxy -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

use support::proxy::plain_config;
use support::{TestProxy, upstream};

const PATH: &str = "/v1/projects/p/databases/(default)/documents/catalog/entity";
const CONCURRENCY: usize = 32;

fn bench_proxy(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let (up, proxy) = rt.block_on(async {
        let up = upstream()
            .body(
                r#"{"name":"projects/p/databases/(default)/documents/catalog/entity","fields":{}}"#,
            )
            .start()
            .await;
        let proxy = TestProxy::start(&plain_config(&up.url, "")).await;
        (up, proxy)
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let direct = format!("{}{PATH}", up.url);
    let proxied = proxy.http(PATH);

    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    for (name, url) in [("direct", &direct), ("proxied", &proxied)] {
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
    for (name, url) in [("direct", &direct), ("proxied", &proxied)] {
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
    drop(up);
}

criterion_group!(benches, bench_proxy);
criterion_main!(benches);
