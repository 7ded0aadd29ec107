//! An `Authenticator` as the authn tests build it: from `authn.issuers`
//! entries as values, with its registry; and the calls they make of it.

use std::sync::Arc;
use std::time::Duration;

use firegate::authn::{Authenticator, AuthnConfig, AuthnError, LastToken, Principal};
use http::{HeaderMap, HeaderValue, Uri, header};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::config;
use super::issuer::AUDIENCE;

/// An authenticator over `issuers` (`authn.issuers` entries), with its registry.
pub async fn authenticator(issuers: &[Value]) -> (Authenticator, Registry) {
    // Logs show only for failing tests.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let yaml = config::yaml(&json!({"issuers": issuers}));
    let config: AuthnConfig = serde_yaml_ng::from_str(&yaml).expect("authn yaml");
    let settings = firegate::config::ConfigErrors::collect(|errors| config.validate(errors))
        .unwrap_or_else(|errors| panic!("{errors}"));
    let mut registry = Registry::default();
    let authn = Authenticator::new(&settings, &mut registry)
        .await
        .expect("authenticator");
    (authn, registry)
}

/// An OIDC issuer entry found by discovery, with `extra` keys merged in.
pub fn oidc(name: &str, issuer: &str, extra: Value) -> Value {
    config::oidc_issuer(name, issuer, AUDIENCE)
        .merge(json!({"jwks_refresh": {"min_interval": "1h", "max_interval": "1h"}}))
        .merge(extra)
        .value()
        .clone()
}

pub fn backstage(name: &str, base: &str) -> Value {
    json!({
        "name": name,
        "kind": "backstage",
        "backstage": {"base_url": base},
        "jwks_refresh": {"min_interval": "1h", "max_interval": "1h"},
    })
}

pub async fn ready(authn: &Authenticator) {
    for _ in 0..500 {
        if authn.not_ready().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not ready: {:?}", authn.not_ready());
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
    );
    headers
}

pub fn uri() -> Uri {
    Uri::from_static("/v1/projects/p/databases/(default)/documents/a/b")
}

pub async fn check(authn: &Authenticator, token: &str) -> Result<Arc<Principal>, AuthnError> {
    authn.authenticate(&bearer(token), &uri(), None).await
}

pub async fn check_on(
    authn: &Authenticator,
    last: &LastToken,
    token: &str,
) -> Result<Arc<Principal>, AuthnError> {
    authn.authenticate(&bearer(token), &uri(), Some(last)).await
}

pub async fn reason(authn: &Authenticator, token: &str) -> &'static str {
    match check(authn, token).await {
        Ok(_) => "accepted",
        Err(e) => e.reason(),
    }
}

pub fn metrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}
