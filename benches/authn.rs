//! Token verification cost: cold (signature check, the token not yet
//! cached) against warm (a verified-token cache hit), and cold with 100
//! configured issuers to show that finding the issuer does not grow with
//! their number.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use firegate::authn::{Authenticator, AuthnConfig, AuthnSettings};
use firegate::config::ConfigErrors;
use http::{HeaderMap, HeaderValue, Uri, header};
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::issuer::{AUDIENCE, TestIssuer};

/// Tokens cycled through by the cold benchmarks.
const POOL: usize = 512;

fn config(issuer: &TestIssuer, extra_issuers: usize, cache: u64) -> AuthnSettings {
    let mut issuers = vec![json!({
        "name": "main",
        "issuer": issuer.issuer,
        "audiences": [AUDIENCE],
        "jwks_uri": issuer.jwks_uri(),
    })];
    for i in 0..extra_issuers {
        issuers.push(json!({
            "name": format!("other{i}"),
            "issuer": format!("https://other-{i}.example"),
            "audiences": ["x"],
            "jwks_uri": issuer.jwks_uri(),
        }));
    }
    let yaml = support::config::yaml(&json!({
        "token_cache": {"max_entries": cache},
        "issuers": issuers,
    }));
    let config: AuthnConfig = serde_yaml_ng::from_str(&yaml).expect("config");
    ConfigErrors::collect(|errors| config.validate(errors)).unwrap_or_else(|e| panic!("{e}"))
}

async fn ready(config: &AuthnSettings) -> Authenticator {
    let mut registry = prometheus_client::registry::Registry::default();
    let authn = Authenticator::new(config, &mut registry)
        .await
        .expect("authenticator");
    while authn.not_ready().is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    authn
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let uri = Uri::from_static("/v1/projects/p/databases/(default)/documents/a/b");
    let mut group = c.benchmark_group("authn");
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let issuer = rt.block_on(TestIssuer::builder().algorithm(alg).start());
        let pool: Vec<HeaderMap> = (0..POOL)
            .map(|i| headers(&issuer.token().claim("jti", json!(i)).sign()))
            .collect();
        for extra in [0, 99] {
            // A one-entry cache: cycling through the pool misses every time.
            let cold = rt.block_on(ready(&config(&issuer, extra, 1)));
            let mut next = 0;
            group.bench_function(format!("cold/{alg:?}/issuers={}", extra + 1), |b| {
                b.to_async(&rt).iter(|| {
                    next = (next + 1) % POOL;
                    let h = &pool[next];
                    let cold = &cold;
                    let uri = &uri;
                    async move { cold.authenticate(h, uri, None).await.expect("valid") }
                })
            });
        }
        let warm = rt.block_on(ready(&config(&issuer, 0, 10_000)));
        let h = &pool[0];
        group.bench_function(format!("warm/{alg:?}"), |b| {
            b.to_async(&rt)
                .iter(|| async { warm.authenticate(h, &uri, None).await.expect("valid") })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
