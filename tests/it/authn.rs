//! Authentication end to end: an in-process issuer for every way a token
//! can be bad (the real `oidc-provider` is in the peers binary).

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use firegate::authn::LastToken;
use http::{HeaderMap, HeaderValue, Uri, header};
use jsonwebtoken::Algorithm;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use support::authn::{
    authenticator, backstage, bearer, check, check_on, metrics, oidc, ready, reason, uri,
};
use support::clock::{skip_through, skip_until};
use support::config;
use support::issuer::{SigningKey, TestIssuer, tamper};

#[tokio::test]
async fn good_token_passes_once_verified_then_from_cache() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    ready(&authn).await;
    assert_eq!(issuer.discovery_fetches(), 1);

    let token = issuer.token().sign();
    let first = check(&authn, &token).await.expect("accepted");
    assert_eq!(first.subject, "alice");
    assert_eq!(first.email.as_deref(), Some("alice@firegate.test"));
    assert_eq!(first.groups, ["team-a", "readers"]);
    let second = check(&authn, &token).await.expect("accepted again");
    assert!(
        Arc::ptr_eq(&first, &second),
        "second use comes from the cache"
    );

    let text = metrics(&registry);
    assert!(text.contains("outcome=\"verified\"} 1"), "{text}");
    assert!(text.contains("outcome=\"cached\"} 1"), "{text}");
    assert!(!text.contains(&token[..20]), "no token in metrics");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let issuer = TestIssuer::builder().start().await;
    let other = TestIssuer::builder()
        .algorithm(Algorithm::ES256)
        .start()
        .await;
    let (authn, _registry) = authenticator(&[
        oidc(
            "corp",
            &issuer.issuer,
            json!({"required_scopes": ["firestore.read"]}),
        ),
        oidc("other", &other.issuer, json!({})),
    ])
    .await;
    ready(&authn).await;
    let key = issuer.current_key();
    let good = issuer.token().sign();
    let impostor = SigningKey::generate(Algorithm::RS256, &key.kid);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            issuer.token().expires_in(-120).sign(),
            "token_expired",
        ),
        (
            "no exp",
            issuer.token().without("exp").sign(),
            "token_expired",
        ),
        (
            "nbf in the future",
            issuer.token().not_before_in(600).sign(),
            "token_not_yet_valid",
        ),
        (
            "unknown iss",
            issuer
                .token()
                .claim("iss", json!("https://evil.test"))
                .sign(),
            "untrusted_issuer",
        ),
        (
            "no iss",
            issuer.token().without("iss").sign(),
            "untrusted_issuer",
        ),
        (
            "wrong aud",
            issuer
                .token()
                .claim("aud", json!("https://elsewhere"))
                .sign(),
            "wrong_audience",
        ),
        (
            "no aud",
            issuer.token().without("aud").sign(),
            "wrong_audience",
        ),
        (
            "alg none",
            issuer.token().unsigned(),
            "algorithm_not_allowed",
        ),
        (
            "HS256 keyed with the RSA public key",
            issuer.token().sign_hs256(key.public_pem.as_bytes()),
            "algorithm_not_allowed",
        ),
        (
            "tampered payload",
            tamper(&good, |c| {
                c.insert("groups".into(), json!(["admins"]));
            }),
            "bad_signature",
        ),
        (
            "same kid, another key",
            issuer.token().signed_by(&impostor).sign(),
            "bad_signature",
        ),
        (
            "other issuer's key under this iss",
            issuer.token().signed_by(&other.current_key()).sign(),
            "unknown_kid",
        ),
        (
            "iss of one issuer, ES256 alg, RSA kid",
            issuer
                .token()
                .signed_by(&other.current_key())
                .kid(&key.kid)
                .sign(),
            "algorithm_not_allowed",
        ),
        (
            "missing scope",
            issuer
                .token()
                .claim("scope", json!("firestore.write"))
                .sign(),
            "missing_scope",
        ),
        (
            "Backstage token type",
            issuer.token().typ(Some("vnd.backstage.user")).sign(),
            "wrong_token_type",
        ),
        (
            "no sub",
            issuer.token().without("sub").sign(),
            "missing_subject",
        ),
        (
            "malformed base64",
            format!("{}.!!!.abc", good.split('.').next().unwrap_or_default()),
            "malformed_token",
        ),
        ("two parts", "abc.def".to_string(), "malformed_token"),
        (
            "oversized",
            format!("{good}{}", "A".repeat(10_000)),
            "token_too_large",
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(reason(&authn, &token).await, expected, "case: {name}");
    }
    assert_eq!(
        reason(&authn, &good).await,
        "accepted",
        "the good token still passes"
    );
    // ID tokens: `typ: JWT` or no `typ` at all.
    let id_token = issuer
        .token()
        .typ(Some("JWT"))
        .claim("nonce", json!("n"))
        .sign();
    assert_eq!(reason(&authn, &id_token).await, "accepted");
    let untyped = issuer.token().typ(None).sign();
    assert_eq!(reason(&authn, &untyped).await, "accepted");
}

#[tokio::test]
async fn keys_are_refreshed_on_the_issuers_cache_control() {
    let issuer = TestIssuer::builder()
        .cache_control("public, max-age=1")
        .start()
        .await;
    let (authn, _registry) = authenticator(&[oidc(
        "corp",
        &issuer.issuer,
        json!({"jwks_refresh": {"min_interval": "1s"}}),
    )])
    .await;
    ready(&authn).await;
    // Without Cache-Control the next refresh would be an hour away.
    let second = Duration::from_secs(1);
    let minute = Duration::from_secs(60);
    skip_until("two scheduled refreshes", second, minute, || {
        issuer.jwks_fetches() >= 3
    })
    .await;
    // A rotated key is then picked up by the schedule: no unknown-kid
    // refresh is needed.
    issuer.rotate(false);
    let before = issuer.jwks_fetches();
    skip_until("the schedule fetches again", second, minute, || {
        issuer.jwks_fetches() > before
    })
    .await;
    assert_eq!(reason(&authn, &issuer.token().sign()).await, "accepted");
}

#[tokio::test]
async fn request_shapes_that_carry_tokens_wrongly_are_refused() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, _registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    ready(&authn).await;
    let token = issuer.token().sign();

    let mut two = bearer(&token);
    two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    let refused = authn
        .authenticate(&two, &uri(), None)
        .await
        .expect_err("two headers");
    assert_eq!(refused.reason(), "multiple_authorization_headers");

    let in_query: Uri =
        format!("/v1/projects/p/databases/(default)/documents/a/b?access_token={token}")
            .parse()
            .expect("uri");
    let refused = authn
        .authenticate(&HeaderMap::new(), &in_query, None)
        .await
        .expect_err("query token");
    assert_eq!(refused.reason(), "token_in_query_string");
    let refused = authn
        .authenticate(&bearer(&token), &in_query, None)
        .await
        .expect_err("query token beside a header");
    assert_eq!(refused.reason(), "token_in_query_string");

    let refused = authn
        .authenticate(&HeaderMap::new(), &uri(), None)
        .await
        .expect_err("no token");
    assert_eq!(refused.reason(), "missing_token");
    let refused = firegate::pipeline::PipelineError::from(refused);
    let message = firegate::pipeline::respond::answer(&refused)
        .api_error("id")
        .message
        .to_string();
    assert!(!message.contains(&token[..10]));

    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic YTpi"),
    );
    let refused = authn
        .authenticate(&basic, &uri(), None)
        .await
        .expect_err("basic");
    assert_eq!(refused.reason(), "not_bearer");
}

#[tokio::test]
async fn rotated_key_is_accepted_after_one_refresh() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, _registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    ready(&authn).await;
    assert_eq!(issuer.jwks_fetches(), 1);

    let new_key = issuer.rotate(false);
    let token = issuer.token().sign();
    assert!(token.split('.').next().is_some());
    let principal = check(&authn, &token).await.expect("new kid accepted");
    assert_eq!(principal.subject, "alice");
    assert_eq!(
        issuer.jwks_fetches(),
        2,
        "exactly one refresh for {}",
        new_key.kid
    );

    // The next token under the new key needs no fetch at all.
    let again = issuer.token().claim("sub", json!("bob")).sign();
    assert_eq!(reason(&authn, &again).await, "accepted");
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn unknown_kid_flood_contacts_the_issuer_at_most_at_the_configured_rate() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    ready(&authn).await;
    assert_eq!(issuer.jwks_fetches(), 1);

    let tokens: Vec<String> = (0..200)
        .map(|i| issuer.token().kid(&format!("random-{i}")).sign())
        .collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| reason(&authn, t))).await;
    assert!(results.iter().all(|r| *r == "unknown_kid"), "{results:?}");
    // One start-up fetch plus at most one on-demand refresh per
    // `min_interval` (1h here).
    assert_eq!(issuer.jwks_fetches(), 2);
    let text = metrics(&registry);
    assert!(
        text.contains("firegate_authn_jwks_refresh_rate_limited_total{issuer=\"corp\"}")
            || text.contains("authn_jwks_refresh_rate_limited_total{issuer=\"corp\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn jwks_down_after_start_keeps_the_cached_keys() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    ready(&authn).await;

    issuer.set_available(false);
    // An unknown kid forces a refresh, which fails: the kid may be a key
    // that could not be fetched, so the issuer is at fault, not the token...
    let unknown = issuer.token().kid("not-published").sign();
    assert_eq!(reason(&authn, &unknown).await, "issuer_unreachable");
    assert_eq!(issuer.jwks_fetches(), 1, "503s are not counted as served");
    let text = metrics(&registry);
    assert!(
        text.contains("issuer=\"corp\",outcome=\"error\"} 1"),
        "{text}"
    );
    // ...and the keys held keep verifying new tokens.
    let fresh = issuer.token().claim("sub", json!("carol")).sign();
    let principal = check(&authn, &fresh).await.expect("still verifies");
    assert_eq!(principal.subject, "carol");
    assert!(authn.not_ready().is_none(), "held keys keep it ready");
}

#[tokio::test]
async fn unreachable_issuer_at_start_is_not_ready_until_its_keys_load() {
    let issuer = TestIssuer::builder().down().start().await;
    let (authn, _registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
    let waiting = authn
        .not_ready()
        .expect("not ready while the issuer is down");
    assert!(waiting.contains("corp"), "{waiting}");
    let token = issuer.token().sign();
    assert_eq!(reason(&authn, &token).await, "issuer_unavailable");

    issuer.set_available(true);
    ready(&authn).await;
    assert_eq!(reason(&authn, &token).await, "accepted");
}

/// A connection's memo of its last token answers only for that very
/// token: a tampered copy and another caller's token on the same
/// connection are each judged afresh (an expired one: the test below).
#[tokio::test]
async fn connection_memo_answers_only_for_its_own_live_token() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, registry) =
        authenticator(&[oidc("corp", &issuer.issuer, json!({"leeway": "0s"}))]).await;
    ready(&authn).await;
    let last = LastToken::default();
    let alice = issuer.token().sign();
    let first = check_on(&authn, &last, &alice).await.expect("alice");
    let again = check_on(&authn, &last, &alice).await.expect("alice again");
    assert!(Arc::ptr_eq(&first, &again));
    let text = metrics(&registry);
    assert!(text.contains("outcome=\"verified\"} 1"), "{text}");
    assert!(text.contains("outcome=\"cached\"} 1"), "{text}");

    // The same token with one signature character changed (not the last:
    // its unused low bits would make the base64 itself malformed).
    let mut tampered = alice.clone();
    let at = tampered.len() - 10;
    let swapped = if &tampered[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, swapped);
    let refused = check_on(&authn, &last, &tampered)
        .await
        .expect_err("tampered");
    assert_eq!(refused.reason(), "bad_signature");

    let bob = issuer.token().claim("sub", json!("bob")).sign();
    assert_eq!(
        check_on(&authn, &last, &bob).await.expect("bob").subject,
        "bob"
    );
    assert_eq!(
        check_on(&authn, &last, &alice)
            .await
            .expect("alice")
            .subject,
        "alice",
        "the memo follows the token, not the connection"
    );
}

/// The one test of expiry that waits on the wall clock: `exp` is a time of
/// day (RFC 7519 NumericDate) that the verifier reads from the system
/// clock, so no tokio clock can age a token. A verified token is cached
/// and remembered by its connection; once expired, neither answers for it.
#[tokio::test]
async fn an_expired_token_is_refused_from_the_cache_and_the_connection_memo() {
    let issuer = TestIssuer::builder().start().await;
    let (authn, _registry) =
        authenticator(&[oidc("corp", &issuer.issuer, json!({"leeway": "0s"}))]).await;
    ready(&authn).await;
    let last = LastToken::default();
    // Two seconds: `exp` is whole seconds, so a one-second token may have
    // only a moment left when it is first checked.
    let brief = issuer.token().expires_in(2).sign();
    check_on(&authn, &last, &brief).await.expect("fresh");
    check_on(&authn, &last, &brief)
        .await
        .expect("from the memo");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // First without the memo: the shared cache must recheck its entry.
    assert_eq!(reason(&authn, &brief).await, "token_expired");
    assert_eq!(
        check_on(&authn, &last, &brief)
            .await
            .expect_err("expired")
            .reason(),
        "token_expired"
    );
}

#[tokio::test]
async fn es256_ps256_and_eddsa_tokens_pass() {
    for alg in [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA] {
        let issuer = TestIssuer::builder().algorithm(alg).start().await;
        let (authn, _registry) = authenticator(&[oidc("corp", &issuer.issuer, json!({}))]).await;
        ready(&authn).await;
        let token = issuer.token().sign();
        assert_eq!(reason(&authn, &token).await, "accepted", "{alg:?}");
    }
}

#[tokio::test]
async fn groups_come_from_a_dotted_claim_path() {
    let issuer = TestIssuer::builder()
        .algorithm(Algorithm::EdDSA)
        .start()
        .await;
    let (authn, _registry) = authenticator(&[oidc(
        "kc",
        &issuer.issuer,
        json!({"claims": {"groups": "realm_access.roles", "email": "mail"}}),
    )])
    .await;
    ready(&authn).await;
    let token = issuer
        .token()
        .claim("realm_access", json!({"roles": ["ops", "dev"]}))
        .claim("mail", json!("a@kc.test"))
        .sign();
    let principal = check(&authn, &token).await.expect("accepted");
    assert_eq!(principal.groups, ["ops", "dev"]);
    assert_eq!(principal.email.as_deref(), Some("a@kc.test"));
}

#[tokio::test]
async fn hs256_passes_only_with_the_configured_shared_secret() {
    let issuer = TestIssuer::builder()
        .algorithm(Algorithm::ES256)
        .start()
        .await;
    let secret = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(secret.path(), "a-long-shared-secret-for-tests\n").expect("write");
    let (authn, _registry) = authenticator(&[oidc(
        "legacy",
        &issuer.issuer,
        json!({"algorithms": ["HS256"], "shared_secret_file": secret.path()}),
    )])
    .await;
    ready(&authn).await;
    let good = issuer.token().sign_hs256(b"a-long-shared-secret-for-tests");
    assert_eq!(reason(&authn, &good).await, "accepted");
    let wrong = issuer.token().sign_hs256(b"another-secret");
    assert_eq!(reason(&authn, &wrong).await, "bad_signature");
    let es = issuer.token().sign();
    assert_eq!(reason(&authn, &es).await, "algorithm_not_allowed");
}

#[tokio::test]
async fn backstage_user_token_with_ent_needs_no_userinfo() {
    let bs = TestIssuer::builder().backstage().start().await;
    let (authn, _registry) = authenticator(&[backstage("backstage", &bs.base)]).await;
    ready(&authn).await;
    let token = bs.token().sign();
    let principal = check(&authn, &token).await.expect("accepted");
    assert_eq!(principal.issuer, format!("{}/api/auth", bs.base));
    assert_eq!(principal.subject, "user:default/alice");
    assert_eq!(
        principal.groups,
        ["user:default/alice", "group:default/team-a"]
    );
    assert_eq!(bs.userinfo_calls(), 0);

    // Plugin tokens are not accepted unless `plugin_tokens` is configured.
    let plugin = bs.plugin_token("catalog", "firegate").sign();
    assert_eq!(reason(&authn, &plugin).await, "untrusted_issuer");
    let limited = bs.limited_user_token("user:default/alice").sign();
    assert_eq!(reason(&authn, &limited).await, "untrusted_issuer");
    let retyped = bs.token().typ(Some("vnd.backstage.limited-user")).sign();
    assert_eq!(reason(&authn, &retyped).await, "wrong_token_type");
    let wrong_aud = bs.token().claim("aud", json!("firegate")).sign();
    assert_eq!(reason(&authn, &wrong_aud).await, "wrong_audience");
}

#[tokio::test]
async fn backstage_user_token_without_ent_asks_userinfo_once() {
    let bs = TestIssuer::builder().backstage().start().await;
    bs.set_ownership(
        "user:default/alice",
        &["user:default/alice", "group:default/platform"],
    );
    let (authn, _registry) = authenticator(&[backstage("backstage", &bs.base)]).await;
    ready(&authn).await;
    let token = bs.token().without("ent").sign();
    let principal = check(&authn, &token).await.expect("accepted");
    assert_eq!(
        principal.groups,
        ["user:default/alice", "group:default/platform"]
    );
    assert_eq!(bs.userinfo_calls(), 1);
    check(&authn, &token).await.expect("accepted again");
    assert_eq!(
        bs.userinfo_calls(),
        1,
        "ownership cached for the token's life"
    );

    // Userinfo down: the token cannot be given its groups, so it is refused
    // rather than passed with none.
    let other = bs
        .token()
        .without("ent")
        .claim("sub", json!("user:default/bob"))
        .sign();
    bs.set_available(false);
    assert_eq!(reason(&authn, &other).await, "userinfo_unavailable");
}

/// The whole pipeline over one OIDC issuer, and its answer to `token`.
async fn pipeline_answer(issuer: &TestIssuer, token: &str) -> (http::response::Parts, Vec<u8>) {
    let gate = AuditedPipeline::over(oidc("corp", &issuer.issuer, json!({}))).await;
    gate.answer(token).await
}

/// The whole pipeline over one issuer entry, auditing to a file.
struct AuditedPipeline {
    pipeline: std::sync::Arc<firegate::pipeline::Pipeline>,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl AuditedPipeline {
    async fn over(entry: Value) -> AuditedPipeline {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit.log");
        let yaml = config::yaml(&json!({
            "server": {"plain_http": true},
            "authn": {"issuers": [entry]},
            "audit": {"sink": "file", "path": audit},
            "upstream": {"databases": ["projects/p/databases/(default)"]},
        }));
        let config = firegate::app::Config::from_yaml(&yaml, Vec::new()).expect("config");
        let mut registry = Registry::default();
        let pipeline = config.pipeline(&mut registry).await.expect("pipeline");
        AuditedPipeline {
            pipeline: std::sync::Arc::new(pipeline),
            audit,
            _dir: dir,
        }
    }

    /// The answer to a GET with `token`.
    async fn answer(&self, token: &str) -> (http::response::Parts, Vec<u8>) {
        use http_body_util::BodyExt;
        let conn = firegate::pipeline::ConnInfo::new("127.0.0.1:5555".parse().expect("addr"), None);
        let request = http::Request::builder()
            .uri("/v1/projects/p/databases/(default)/documents/a/b")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(firegate::body::empty())
            .expect("request");
        let (parts, body) = self.pipeline.serve(request, &conn).await.into_parts();
        let body = body.collect().await.expect("body").to_bytes().to_vec();
        (parts, body)
    }

    /// The last audit record written.
    async fn last_record(&self) -> Value {
        self.pipeline.flush_audit().await;
        let lines = std::fs::read_to_string(&self.audit).expect("audit file");
        serde_json::from_str(lines.lines().last().expect("one record")).expect("record")
    }

    /// Until the authenticator's keys have loaded (readiness of the other
    /// steps does not matter here).
    async fn keys_loaded(&self) {
        for _ in 0..500 {
            if !self
                .pipeline
                .not_ready()
                .is_some_and(|why| why.contains("authn"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("keys not loaded: {:?}", self.pipeline.not_ready());
    }
}

#[tokio::test]
async fn pipeline_answers_an_issuer_outage_with_503_and_retry_after() {
    let issuer = TestIssuer::builder().down().start().await;
    let token = issuer.token().sign();
    let (response, body) = pipeline_answer(&issuer, &token).await;
    assert_eq!(response.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "5");
    assert!(
        response.headers.get(header::WWW_AUTHENTICATE).is_none(),
        "an outage is not the caller's credentials"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(json["error"]["status"], "UNAVAILABLE");
    assert_eq!(json["error"]["code"], 503);
}

#[tokio::test]
async fn pipeline_answers_refusals_with_a_fixed_firestore_401() {
    let issuer = TestIssuer::builder()
        .algorithm(Algorithm::ES256)
        .start()
        .await;
    let expired = issuer.token().expires_in(-3600).sign();
    let (response, body) = pipeline_answer(&issuer, &expired).await;
    assert_eq!(response.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    assert!(response.headers.get(header::RETRY_AFTER).is_none());
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(json["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(json["error"]["code"], 401);
    let text = String::from_utf8_lossy(&body);
    for part in expired.split('.') {
        assert!(!text.contains(part), "no part of the token is echoed");
    }
}

#[tokio::test]
async fn backstage_plugin_tokens_act_for_the_plugin_or_its_user() {
    let bs = TestIssuer::builder().backstage().start().await;
    let mut entry = backstage("backstage", &bs.base);
    config::merge(
        &mut entry,
        json!({"backstage": {"plugin_tokens": {"audience": "firegate", "plugins": ["catalog"]}}}),
    );
    let (authn, _registry) = authenticator(&[entry]).await;
    ready(&authn).await;

    let plugin = bs.plugin_token("catalog", "firegate").sign();
    let principal = check(&authn, &plugin).await.expect("plugin token");
    assert_eq!(principal.subject, "plugin:catalog");
    assert_eq!(principal.claims["backstage_plugin"], "catalog");

    let user = bs.limited_user_token("user:default/alice").sign();
    let obo = bs
        .plugin_token("catalog", "firegate")
        .claim("obo", json!(user))
        .sign();
    let principal = check(&authn, &obo).await.expect("on-behalf-of token");
    assert_eq!(principal.subject, "user:default/alice");
    assert!(
        !principal.claims.contains_key("obo"),
        "no credential in claims"
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another target",
            bs.plugin_token("catalog", "scaffolder").sign(),
            "wrong_audience",
        ),
        (
            "plugin not accepted",
            bs.plugin_token("scaffolder", "firegate").sign(),
            "untrusted_issuer",
        ),
        (
            "expired",
            bs.plugin_token("catalog", "firegate")
                .expires_in(-120)
                .sign(),
            "token_expired",
        ),
        (
            "obo signed by a plugin key",
            bs.plugin_token("catalog", "firegate")
                .claim(
                    "obo",
                    json!(
                        bs.plugin_token("catalog", "firegate")
                            .typ(Some("vnd.backstage.limited-user"))
                            .sign()
                    ),
                )
                .sign(),
            "unknown_kid",
        ),
        (
            "obo expired",
            bs.plugin_token("catalog", "firegate")
                .claim(
                    "obo",
                    json!(
                        bs.limited_user_token("user:default/alice")
                            .expires_in(-120)
                            .sign()
                    ),
                )
                .sign(),
            "token_expired",
        ),
        (
            "obo tampered",
            bs.plugin_token("catalog", "firegate")
                .claim(
                    "obo",
                    json!(tamper(&user, |c| {
                        c.insert("sub".into(), json!("user:default/admin"));
                    })),
                )
                .sign(),
            "bad_signature",
        ),
        (
            "user token signed by a plugin key",
            bs.token()
                .signed_by(&bs.plugin_token("catalog", "x").signing_key())
                .typ(Some("vnd.backstage.user"))
                .sign(),
            "unknown_kid",
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(reason(&authn, &token).await, expected, "case: {name}");
    }
}

#[tokio::test]
async fn pipeline_answers_a_backstage_userinfo_outage_with_503() {
    let bs = TestIssuer::builder().backstage().start().await;
    let token = bs.token().without("ent").sign();
    let gate = AuditedPipeline::over(backstage("backstage", &bs.base)).await;
    gate.keys_loaded().await;
    bs.set_available(false);
    let (response, body) = gate.answer(&token).await;
    let record = gate.last_record().await;
    assert_eq!(response.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "5");
    assert!(response.headers.get(header::WWW_AUTHENTICATE).is_none());
    let json: Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(json["error"]["status"], "UNAVAILABLE");
    assert_eq!(record["reason"], "userinfo_unavailable", "{record}");
    assert_eq!(record["status"], 503, "{record}");
}

#[tokio::test]
async fn backstage_plugin_token_without_plugin_tokens_is_an_untrusted_issuer() {
    let bs = TestIssuer::builder().backstage().start().await;
    let (authn, _registry) = authenticator(&[backstage("backstage", &bs.base)]).await;
    ready(&authn).await;
    let plugin = bs.plugin_token("catalog", "firegate").sign();
    assert_eq!(reason(&authn, &plugin).await, "untrusted_issuer");
    // Naming the trusted Backstage as its issuer changes nothing: the
    // plugin type routes it, and no issuer takes plugin tokens.
    let with_iss = bs
        .plugin_token("catalog", "backstage")
        .claim("iss", json!(bs.issuer))
        .sign();
    assert_eq!(reason(&authn, &with_iss).await, "untrusted_issuer");
    let user = bs.limited_user_token("user:default/alice").sign();
    let obo = bs
        .plugin_token("catalog", "firegate")
        .claim("obo", json!(user))
        .sign();
    assert_eq!(reason(&authn, &obo).await, "untrusted_issuer");
}

/// A Backstage issuer that accepts plugin tokens from `catalog` for `firegate`.
fn backstage_with_plugins(base: &str) -> Value {
    let mut entry = backstage("backstage", base);
    config::merge(
        &mut entry,
        json!({"backstage": {"plugin_tokens": {"audience": "firegate", "plugins": ["catalog"]}}}),
    );
    entry
}

#[tokio::test]
async fn backstage_on_behalf_of_token_gets_the_users_groups_from_userinfo() {
    let bs = TestIssuer::builder().backstage().start().await;
    bs.set_ownership(
        "user:default/alice",
        &["user:default/alice", "group:default/platform"],
    );
    let (authn, _registry) = authenticator(&[backstage_with_plugins(&bs.base)]).await;
    ready(&authn).await;

    // What a real Backstage sends: a limited user token (no `ent`) inside
    // the plugin token.
    let limited = bs.limited_user_token("user:default/alice").sign();
    let obo = |jti: &str| {
        bs.plugin_token("catalog", "firegate")
            .claim("obo", json!(limited))
            .claim("jti", json!(jti))
            .sign()
    };
    let principal = check(&authn, &obo("one")).await.expect("on-behalf-of");
    assert_eq!(principal.subject, "user:default/alice");
    assert_eq!(
        principal.groups,
        ["user:default/alice", "group:default/platform"]
    );
    assert_eq!(bs.userinfo_calls(), 1);
    // Another plugin token for the same user token shares the lookup.
    let again = check(&authn, &obo("two"))
        .await
        .expect("second plugin token");
    assert_eq!(again.groups, principal.groups);
    assert_eq!(bs.userinfo_calls(), 1, "cached for the user token's life");

    // A full user token that carries `ent` needs no lookup.
    let full = bs.token().sign();
    let with_ent = bs
        .plugin_token("catalog", "firegate")
        .claim("obo", json!(full))
        .sign();
    let principal = check(&authn, &with_ent).await.expect("full user token");
    assert_eq!(
        principal.groups,
        ["user:default/alice", "group:default/team-a"]
    );
    assert_eq!(bs.userinfo_calls(), 1);

    // Userinfo down: refused as an outage, never passed without groups.
    bs.set_available(false);
    let bob = bs.limited_user_token("user:default/bob").sign();
    let for_bob = bs
        .plugin_token("catalog", "firegate")
        .claim("obo", json!(bob))
        .sign();
    assert_eq!(reason(&authn, &for_bob).await, "userinfo_unavailable");
}

#[tokio::test]
async fn an_empty_backstage_key_set_is_loaded_and_refreshed_for_an_unknown_kid() {
    let bs = TestIssuer::builder().backstage().empty_jwks().start().await;
    let (authn, registry) = authenticator(&[backstage("backstage", &bs.base)]).await;
    ready(&authn).await;
    // Loaded means scheduled on `max_interval` (1h), not retried as a failure
    // (after 250 ms, then doubling).
    skip_through(Duration::from_secs(10), Duration::from_secs(1)).await;
    assert_eq!(bs.jwks_fetches(), 1, "no retries of a valid empty set");
    let text = metrics(&registry);
    assert!(
        text.contains("issuer=\"backstage\",outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(!text.contains("outcome=\"error\""), "{text}");

    // The first sign-in publishes a key: a token under it refreshes once.
    bs.set_publishing(true);
    let token = bs.token().sign();
    assert_eq!(reason(&authn, &token).await, "accepted");
    assert_eq!(bs.jwks_fetches(), 2);
    // Further unknown kids stay within the rate limit.
    let unknown = bs.token().kid("never-published").sign();
    assert_eq!(reason(&authn, &unknown).await, "unknown_kid");
    assert_eq!(bs.jwks_fetches(), 2);
}
