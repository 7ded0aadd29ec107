//! Authentication against a real OpenID provider: `oidc-provider`
//! (tests/oidc/) issues a client-credentials JWT and an opaque token that
//! firegate introspects.

use crate::support;

use serde_json::json;
use support::authn::{authenticator, check, metrics, oidc, ready, reason};
use support::config;
use support::oidc_provider::{INTROSPECTION_SECRET, OPAQUE_AUDIENCE, OidcProvider};

#[tokio::test]
async fn real_oidc_provider_client_credentials_token_passes() {
    let provider = OidcProvider::start().await;
    let (authn, _registry) = authenticator(&[oidc(
        "op",
        &provider.issuer,
        json!({"required_scopes": ["firestore.read"]}),
    )])
    .await;
    ready(&authn).await;

    let token = provider
        .client_credentials("svc-reader", "reader-secret", "firestore.read")
        .await;
    let principal = check(&authn, &token).await.expect("reader token accepted");
    assert_eq!(principal.issuer, provider.issuer);
    assert_eq!(principal.subject, "svc-reader");
    assert_eq!(principal.email.as_deref(), Some("reader@firegate.test"));
    assert_eq!(principal.groups, ["team-a", "readers"]);
    assert_eq!(principal.claims["client_id"], "svc-reader");
    assert!(
        !principal.claims.contains_key("exp"),
        "volatile claims dropped"
    );

    let writer = provider
        .client_credentials("svc-writer", "writer-secret", "firestore.write")
        .await;
    assert_eq!(
        reason(&authn, &writer).await,
        "missing_scope",
        "a token without the required scope is refused"
    );

    // The same real token against a config that expects another audience.
    let strict = config::oidc_issuer("op", &provider.issuer, "someone-else");
    let (strict, _r) = authenticator(&[strict.value().clone()]).await;
    ready(&strict).await;
    assert_eq!(reason(&strict, &token).await, "wrong_audience");
}

#[tokio::test]
async fn real_oidc_provider_opaque_token_is_introspected() {
    let provider = OidcProvider::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, INTROSPECTION_SECRET).expect("write secret");
    let introspected = config::oidc_issuer("op", &provider.issuer, OPAQUE_AUDIENCE).merge(json!({
        "claims": {"subject": "client_id"},
        "introspection": {
            "endpoint": format!("{}/token/introspection", provider.issuer),
            "client_id": "firegate",
            "client_secret_file": secret,
        },
    }));
    let (authn, registry) = authenticator(&[introspected.value().clone()]).await;
    ready(&authn).await;

    let token = provider
        .client_credentials_for(
            "svc-reader",
            "reader-secret",
            "firestore.read",
            OPAQUE_AUDIENCE,
        )
        .await;
    assert!(!token.contains('.'), "an opaque token, not a JWT");
    let principal = check(&authn, &token).await.expect("introspected as active");
    assert_eq!(principal.subject, "svc-reader");
    assert_eq!(principal.email.as_deref(), Some("reader@firegate.test"));
    assert_eq!(principal.groups, ["team-a", "readers"]);
    assert!(!principal.claims.contains_key("active"));
    check(&authn, &token).await.expect("again");
    assert!(metrics(&registry).contains("outcome=\"cached\"} 1"));

    assert_eq!(
        reason(&authn, "NotAnIssuedToken0123456789abcdef").await,
        "introspection_inactive"
    );
}
