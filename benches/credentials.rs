//! The `access_token` step on a cache hit: the base identity (through
//! `google-cloud-auth`'s cache), an impersonated account (through firegate's
//! per-account cache), and the emulator's fixed token.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use firegate::config::ConfigErrors;
use firegate::upstream::{Credentials, UpstreamConfig};
use prometheus_client::registry::Registry;
use serde_json::json;
use support::google::{DATASTORE, FakeIam, FakeMetadata, IamExpect};

const READER: &str = "reader@test-project.iam.gserviceaccount.com";

async fn build(section: serde_json::Value) -> Credentials {
    let mut section = section;
    support::config::merge(
        &mut section,
        json!({"databases": ["projects/p/databases/(default)"]}),
    );
    let yaml = support::config::yaml(&section);
    let config: UpstreamConfig = serde_yaml_ng::from_str(&yaml).expect("parses");
    let settings =
        ConfigErrors::collect(|errors| config.validate(errors)).unwrap_or_else(|e| panic!("{e}"));
    Credentials::new(&settings.credentials, &mut Registry::default())
        .await
        .expect("builds")
}

fn cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_metadata, _iam, google, emulator) = runtime.block_on(async {
        let metadata = FakeMetadata::start().await;
        let iam = FakeIam::start(IamExpect {
            authorization: "Bearer mds-token-1".into(),
            scope: vec![DATASTORE.into()],
            lifetime: "3600s".into(),
            delegates: vec![],
        })
        .await;
        let google = build(json!({"credentials": {
            "source": "metadata",
            "metadata_endpoint": metadata.server.url(),
            "impersonation": {"iam_endpoint": iam.server.url()},
        }}))
        .await;
        // Warm both caches.
        google.access_token(None).await.expect("base");
        google
            .access_token(Some(READER))
            .await
            .expect("impersonated");
        let emulator =
            build(json!({"url": "http://127.0.0.1:1", "credentials": {"source": "emulator"}}))
                .await;
        (metadata, iam, google, emulator)
    });

    let mut group = c.benchmark_group("access_token");
    group.bench_function("base_cache_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { google.access_token(None).await.expect("hit") })
    });
    group.bench_function("impersonated_cache_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { google.access_token(Some(READER)).await.expect("hit") })
    });
    group.bench_function("emulator", |b| {
        b.to_async(&runtime)
            .iter(|| async { emulator.access_token(None).await.expect("fixed") })
    });
    group.finish();
}

criterion_group!(benches, cache_hit);
criterion_main!(benches);
