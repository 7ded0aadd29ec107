//! Token verification cost: cold (signature check, the token not yet
//! cached) against warm (a verified-token cache hit), and cold with 100
//! configured issuers to show that finding the issuer does not grow with
//! their number. `signature/…` is aws-lc's signature check alone (the key
//! parsed once, the token already split and decoded): the floor of a first
//! sight. Before criterion's figures, one line per algorithm gives the
//! first sight (`cold`, one issuer) as a ratio to that floor, measured
//! interleaved in the same run, so that a busy machine moves both alike.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};

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

/// The issuer's public key as aws-lc parses it for `alg`.
fn parsed_key(issuer: &TestIssuer, alg: Algorithm) -> ParsedPublicKey {
    let key = DecodingKey::from_jwk(&issuer.current_key().jwk).expect("jwk");
    match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            sig::RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
                .expect("rsa key")
        }
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
            ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).expect("ec key")
        }
        other => panic!("no bare verifier for {other:?}"),
    }
}

/// A token as the signature check sees it: the signed bytes and the
/// decoded signature.
fn signed_parts(token: &str) -> (Vec<u8>, Vec<u8>) {
    let (message, signature) = token.rsplit_once('.').expect("jws");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64");
    (message.as_bytes().to_vec(), signature)
}

/// First sight ÷ the bare signature check, timed in alternating blocks;
/// the median of the blocks' ratios.
fn ratio_line(
    rt: &tokio::runtime::Runtime,
    alg: Algorithm,
    cold: &Authenticator,
    pool: &[HeaderMap],
    parts: &[(Vec<u8>, Vec<u8>)],
    key: &ParsedPublicKey,
    uri: &Uri,
) {
    const BLOCK: usize = 64;
    let rounds = if std::env::args().any(|a| a == "--bench") {
        25
    } else {
        2
    };
    let mut ratios = Vec::with_capacity(rounds);
    let (mut first_total, mut sig_total) = (Duration::ZERO, Duration::ZERO);
    let mut next = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..BLOCK {
                next = (next + 1) % POOL;
                cold.authenticate(&pool[next], uri, None)
                    .await
                    .expect("valid");
            }
        });
        let first = start.elapsed();
        let start = Instant::now();
        for _ in 0..BLOCK {
            next = (next + 1) % POOL;
            let (message, signature) = &parts[next];
            key.verify_sig(message, signature).expect("signature");
        }
        let bare = start.elapsed();
        ratios.push(first.as_secs_f64() / bare.as_secs_f64());
        first_total += first;
        sig_total += bare;
    }
    ratios.sort_by(f64::total_cmp);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * BLOCK) as f64;
    println!(
        "authn/{alg:?}: first sight {:.1} µs, signature alone {:.1} µs: {:.2}x (median of {rounds} blocks)",
        per(first_total),
        per(sig_total),
        ratios[rounds / 2],
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let uri = Uri::from_static("/v1/projects/p/databases/(default)/documents/a/b");
    let mut group = c.benchmark_group("authn");
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let issuer = rt.block_on(TestIssuer::builder().algorithm(alg).start());
        let tokens: Vec<String> = (0..POOL)
            .map(|i| issuer.token().claim("jti", json!(i)).sign())
            .collect();
        let pool: Vec<HeaderMap> = tokens.iter().map(|t| headers(t)).collect();
        let parts: Vec<(Vec<u8>, Vec<u8>)> = tokens.iter().map(|t| signed_parts(t)).collect();
        let key = parsed_key(&issuer, alg);
        {
            let cold = rt.block_on(ready(&config(&issuer, 0, 1)));
            ratio_line(&rt, alg, &cold, &pool, &parts, &key, &uri);
        }
        let mut next = 0;
        group.bench_function(format!("signature/{alg:?}"), |b| {
            b.iter(|| {
                next = (next + 1) % POOL;
                let (message, signature) = &parts[next];
                key.verify_sig(message, signature).expect("signature")
            })
        });
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
