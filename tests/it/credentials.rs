//! Upstream credentials against fakes of Google's endpoints on loopback:
//! service-account keys, the metadata server, workload identity federation,
//! per-account impersonation, refresh, and failing closed.
//!
//! ADC reads process-wide environment variables (`GOOGLE_APPLICATION_
//! CREDENTIALS`, `GCE_METADATA_HOST`, `HOME`), so the ADC tests run their
//! check in a child process of this test binary, with its own environment,
//! against fakes served by the parent.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use firegate::config::ConfigErrors;
use firegate::firestore::status::Code;
use firegate::pipeline::respond;
use firegate::upstream::{Credentials, CredentialsError, UpstreamConfig, UpstreamSettings};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use support::clock::{skip, skip_until};
use support::google::{
    DATASTORE, FakeIam, FakeMetadata, FakeSts, IAM_SCOPE, IamExpect, StsExpect, TestKey,
};
use support::{config, within};

const READER: &str = "reader@test-project.iam.gserviceaccount.com";
const WRITER: &str = "writer@test-project.iam.gserviceaccount.com";

/// The `upstream` section `section` gives, parsed from YAML and validated
/// as firegate reads it.
fn upstream(section: &Value) -> UpstreamSettings {
    let mut section = section.clone();
    config::merge(
        &mut section,
        serde_json::json!({"databases": ["projects/p/databases/(default)"]}),
    );
    let config: UpstreamConfig =
        serde_yaml_ng::from_str(&config::yaml(&section)).expect("upstream config parses");
    ConfigErrors::collect(|errors| config.validate(errors))
        .unwrap_or_else(|errors| panic!("config errors: {errors}"))
}

async fn credentials(section: Value) -> (Credentials, Registry) {
    // Failures are logged (never with tokens): show them with the test output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("firegate=debug,google_cloud_auth=debug")
        .with_test_writer()
        .try_init();
    let mut registry = Registry::default();
    let credentials = Credentials::new(&upstream(&section).credentials, &mut registry)
        .await
        .expect("credentials build");
    (credentials, registry)
}

fn bearer(token: &firegate::upstream::AccessToken) -> String {
    let value = token.authorization.to_str().expect("ascii");
    value.strip_prefix("Bearer ").expect("a bearer").to_owned()
}

fn metrics(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

/// Metadata server as base identity, IAM Credentials fake expecting it.
async fn impersonation_setup(lifetime: &str) -> (FakeMetadata, FakeIam, Credentials, Registry) {
    let metadata = FakeMetadata::start().await;
    let iam = FakeIam::start(IamExpect {
        authorization: "Bearer mds-token-1".into(),
        scope: vec![DATASTORE.into()],
        lifetime: lifetime.into(),
        delegates: vec![
            "projects/-/serviceAccounts/hop@test-project.iam.gserviceaccount.com".into(),
        ],
    })
    .await;
    let (credentials, registry) = credentials(json!({"credentials": {
        "source": "metadata",
        "metadata_endpoint": metadata.server.url(),
        "impersonation": {
            "lifetime": lifetime,
            "delegates": ["hop@test-project.iam.gserviceaccount.com"],
            "iam_endpoint": iam.server.url(),
        },
    }}))
    .await;
    (metadata, iam, credentials, registry)
}

#[tokio::test]
async fn service_account_key_sends_a_jwt_signed_by_that_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::generate("firegate@test-project.iam.gserviceaccount.com");
    let path = key.write(dir.path(), "key.json");
    let (credentials, _registry) =
        credentials(json!({"credentials": {"service_account_key": path}})).await;

    let token = credentials.access_token(None).await.expect("token");
    assert_eq!(token.account, key.email);
    assert!(token.authorization.is_sensitive());
    let claims = key.verify(&bearer(&token)).expect("signed by the key");
    assert_eq!(claims["iss"], key.email);
    assert_eq!(claims["sub"], key.email);
    assert_eq!(claims["scope"], DATASTORE);

    let stranger = TestKey::generate("firegate@test-project.iam.gserviceaccount.com");
    assert!(
        stranger.verify(&bearer(&token)).is_err(),
        "another key must not verify it"
    );
    assert_eq!(credentials.not_ready(), None);
}

#[tokio::test]
async fn metadata_server_is_asked_with_metadata_flavor_once_for_a_burst() {
    let metadata = FakeMetadata::start().await;
    let (credentials, _registry) = credentials(
        json!({"credentials": {"source": "metadata", "metadata_endpoint": metadata.server.url()}}),
    )
    .await;
    let credentials = Arc::new(credentials);
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let credentials = Arc::clone(&credentials);
            tokio::spawn(async move { credentials.access_token(None).await })
        })
        .collect();
    for call in burst {
        let token = call.await.expect("joins").expect("token");
        assert_eq!(bearer(&token), "mds-token-1");
        assert_eq!(token.account, "metadata:default");
    }
    assert_eq!(metadata.hits(), 1);
    assert_eq!(metadata.deviations.all(), Vec::<String>::new());

    // The fake does check the header: a request without it is refused.
    let plain = reqwest::get(format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        metadata.server.url()
    ))
    .await
    .expect("reaches the fake");
    assert_eq!(plain.status(), 403);
}

#[tokio::test]
async fn each_account_gets_its_own_impersonated_token() {
    let (_metadata, iam, credentials, registry) = impersonation_setup("600s").await;

    let reader = credentials
        .access_token(Some(READER))
        .await
        .expect("reader");
    let writer = credentials
        .access_token(Some(WRITER))
        .await
        .expect("writer");
    assert_eq!(bearer(&reader), format!("iam:{READER}:1"));
    assert_eq!(bearer(&writer), format!("iam:{WRITER}:1"));
    assert_eq!(reader.account, READER);
    assert_eq!(writer.account, WRITER);
    assert!(reader.authorization.is_sensitive());

    let again = credentials
        .access_token(Some(READER))
        .await
        .expect("cached");
    assert_eq!(again.authorization, reader.authorization);
    let base = credentials.access_token(None).await.expect("base");
    assert_eq!(bearer(&base), "mds-token-1");
    assert_eq!(base.account, "metadata:default");

    assert_eq!(iam.hits(READER), 1);
    assert_eq!(iam.hits(WRITER), 1);
    assert_eq!(iam.deviations.all(), Vec::<String>::new());
    // Two first requests waited for a fetch; the third was served from the cache.
    let text = firegate::metrics::render(&registry);
    assert!(
        text.contains("upstream_token_cache_lookups_total{result=\"miss\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("upstream_token_cache_lookups_total{result=\"hit\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn refused_impersonation_and_bad_names_fail_closed_with_503() {
    let (_metadata, iam, credentials, registry) = impersonation_setup("3600s").await;

    let denied = "denied@test-project.iam.gserviceaccount.com";
    let err = credentials
        .access_token(Some(denied))
        .await
        .expect_err("IAM said 403");
    assert!(matches!(
        err,
        CredentialsError::ImpersonationDenied { status: 403 }
    ));
    assert_eq!(err.reason(), "credentials_impersonation_denied");
    let api = respond::answer(&err.into()).api_error("id");
    assert_eq!(api.code, Code::Unavailable);
    assert_eq!(api.http_status, 503);
    assert!(!api.message.contains(denied), "the client is not told why");

    let err = credentials
        .access_token(Some("reader/../../admin@x.com"))
        .await
        .expect_err("not an email");
    assert_eq!(err.reason(), "credentials_invalid_account");
    assert_eq!(iam.hits("reader/../../admin@x.com"), 0);

    let not_ready = credentials.not_ready().expect("a failing account shows");
    assert!(not_ready.contains(denied), "{not_ready}");
    let text = metrics(&registry);
    assert!(
        text.contains(&format!(
            "upstream_token_refused_total{{account=\"{denied}\",reason=\"credentials_impersonation_denied\"}} 1"
        )),
        "{text}"
    );
    assert!(!text.contains("mds-token"), "metrics never carry a token");
}

#[tokio::test]
async fn a_burst_at_expiry_refreshes_once() {
    let (_metadata, iam, credentials, _registry) = impersonation_setup("3600s").await;
    iam.set_ttl(Duration::from_millis(1500));
    let first = credentials.access_token(Some(READER)).await.expect("first");
    assert_eq!(bearer(&first), format!("iam:{READER}:1"));
    iam.set_ttl(Duration::from_secs(3600));

    // No request while the token ages, so nothing refreshes it ahead of time.
    skip(Duration::from_millis(1700)).await;
    let credentials = Arc::new(credentials);
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let credentials = Arc::clone(&credentials);
            tokio::spawn(async move { credentials.access_token(Some(READER)).await })
        })
        .collect();
    for call in burst {
        let token = call.await.expect("joins").expect("refreshed token");
        assert_eq!(bearer(&token), format!("iam:{READER}:2"));
    }
    assert_eq!(iam.hits(READER), 2);
    assert_eq!(iam.deviations.all(), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_valid_token_then_answers_503() {
    let (_metadata, iam, credentials, registry) = impersonation_setup("3600s").await;
    iam.set_ttl(Duration::from_secs(6));
    let first = credentials.access_token(Some(READER)).await.expect("first");
    iam.set_down(true);

    // Past half-life the token is due: the refresh fails in the background
    // and the still-valid token keeps being used.
    skip(Duration::from_millis(3300)).await;
    let during = credentials
        .access_token(Some(READER))
        .await
        .expect("still valid");
    assert_eq!(during.authorization, first.authorization);
    within("the background refresh", async {
        while iam.hits(READER) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let during = credentials
        .access_token(Some(READER))
        .await
        .expect("still valid");
    assert_eq!(during.authorization, first.authorization);
    assert_eq!(credentials.not_ready(), None, "a valid token is held");

    skip(Duration::from_millis(3000)).await;
    let err = credentials
        .access_token(Some(READER))
        .await
        .expect_err("expired, no new token");
    assert!(matches!(err, CredentialsError::ImpersonationUnavailable));
    assert_eq!(
        respond::answer(&err.into()).api_error("id").http_status,
        503
    );
    let not_ready = credentials.not_ready().expect("not ready");
    assert!(not_ready.contains(READER), "{not_ready}");
    let text = metrics(&registry);
    assert!(
        text.contains(&format!("upstream_token_valid{{account=\"{READER}\"}} 0")),
        "{text}"
    );

    // IAM recovers: the next attempt after the back-off mints again.
    iam.set_down(false);
    iam.set_ttl(Duration::from_secs(3600));
    skip(Duration::from_millis(2100)).await;
    let back = credentials
        .access_token(Some(READER))
        .await
        .expect("recovered");
    assert_ne!(back.authorization, first.authorization);
    assert_eq!(credentials.not_ready(), None);
    assert_eq!(iam.deviations.all(), Vec::<String>::new());
}

#[tokio::test]
async fn base_credentials_failing_is_503_and_not_ready_until_they_recover() {
    let metadata = FakeMetadata::start().await;
    metadata
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (credentials, _registry) = credentials(
        json!({"credentials": {"source": "metadata", "metadata_endpoint": metadata.server.url()}}),
    )
    .await;
    let err = credentials
        .access_token(None)
        .await
        .expect_err("no base token");
    assert!(matches!(err, CredentialsError::BaseUnavailable));
    assert_eq!(
        respond::answer(&err.into()).api_error("id").http_status,
        503
    );
    let not_ready = credentials.not_ready().expect("not ready");
    assert!(
        not_ready.contains("credentials_base_unavailable"),
        "{not_ready}"
    );

    // A 404 is permanent for google-cloud-auth, whose refresh task then stops
    // for good; firegate rebuilds it and readiness recovers without traffic.
    // Flip only once the first rebuild has failed too, so that recovery
    // needs a later rebuild.
    for _ in 0..400 {
        if metadata.hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metadata.hits() >= 2, "the first rebuild fetched");
    metadata
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    skip_until(
        "recovery",
        Duration::from_secs(1),
        Duration::from_secs(60),
        || credentials.not_ready().is_none(),
    )
    .await;
    let token = credentials.access_token(None).await.expect("recovered");
    assert_eq!(
        bearer(&token),
        "mds-token-3",
        "third fetch, by the second rebuild"
    );
}

#[tokio::test]
async fn emulator_sends_the_owner_token_only_to_a_loopback_emulator() {
    let (credentials, _registry) =
        credentials(json!({"url": "http://127.0.0.1:8080", "credentials": {"source": "emulator"}}))
            .await;
    for account in [None, Some(READER)] {
        let token = credentials.access_token(account).await.expect("token");
        assert_eq!(token.authorization, "Bearer owner");
        assert_eq!(token.account, "emulator");
    }
    assert_eq!(credentials.not_ready(), None);

    let refused = |url: &str, extra: Value| {
        let section =
            config::TestConfig::new(json!({"url": url, "credentials": {"source": "emulator"},
                                           "databases": ["projects/p/databases/(default)"]}))
            .merge(extra);
        let config: UpstreamConfig = serde_yaml_ng::from_str(&section.yaml()).expect("parses");
        let mut errors = ConfigErrors::default();
        config.validate(&mut errors);
        errors.errors.into_iter().map(|e| e.key).collect::<Vec<_>>()
    };
    assert_eq!(
        refused("https://firestore.googleapis.com", json!({})),
        ["upstream.credentials.source"]
    );
    assert_eq!(
        refused("http://10.1.2.3:8080", json!({})),
        ["upstream.credentials.source"]
    );
    assert!(refused("http://emulator:8080", json!({"emulator": true})).is_empty());
}

// --- ADC, in child processes ------------------------------------------------

/// Run the `#[ignore]`d test `name` of this binary in a child process with
/// `env` (and without the ADC variables of ours), and return its output.
async fn run_child(name: &'static str, env: Vec<(&'static str, String)>) -> String {
    let exe = std::env::current_exe().expect("test binary");
    // libtest names a test by its path below the crate root.
    let test = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    };
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            &test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT")
        .env("FIREGATE_TEST_CHILD", name);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("child runs")
    })
    .await
    .expect("joins");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("running 1 test"),
        "child {name} did not run:\n{text}"
    );
    text
}

/// In a child: build `source: adc` credentials and print the base token's
/// bearer and account for the parent to check.
async fn child_prints_the_adc_token(name: &str) {
    if std::env::var("FIREGATE_TEST_CHILD").as_deref() != Ok(name) {
        return;
    }
    let (credentials, _registry) = credentials(json!({"credentials": {"source": "adc"}})).await;
    let token = credentials.access_token(None).await.expect("ADC token");
    println!("BEARER={} ACCOUNT={}", bearer(&token), token.account);
}

#[tokio::test]
async fn adc_falls_back_to_the_metadata_server_at_gce_metadata_host() {
    let metadata = FakeMetadata::start().await;
    let home = tempfile::tempdir().expect("tempdir");
    let out = run_child(
        "child_adc_metadata",
        vec![
            ("GCE_METADATA_HOST", metadata.server.host()),
            ("HOME", home.path().display().to_string()),
        ],
    )
    .await;
    assert!(
        out.contains("BEARER=mds-token-1 ACCOUNT=metadata:default"),
        "{out}\ndeviations: {:?}",
        metadata.deviations.all()
    );
    assert_eq!(metadata.hits(), 1);
    assert_eq!(metadata.deviations.all(), Vec::<String>::new());
}

#[tokio::test]
#[ignore = "run by adc_falls_back_to_the_metadata_server_at_gce_metadata_host"]
async fn child_adc_metadata() {
    child_prints_the_adc_token("child_adc_metadata").await;
}

#[tokio::test]
async fn adc_workload_identity_federation_exchanges_then_impersonates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let subject = "eyJhbGciOiJSUzI1NiJ9.oidc-subject.sig";
    let subject_file = dir.path().join("subject.jwt");
    std::fs::write(&subject_file, subject).expect("write subject");
    let audience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/oidc";
    let subject_type = "urn:ietf:params:oauth:token-type:jwt";
    let sts = FakeSts::start(StsExpect {
        subject_token: subject.into(),
        subject_token_type: subject_type.into(),
        audience: audience.into(),
        // Impersonation follows, so STS is asked for an IAM-capable token.
        scope: IAM_SCOPE.into(),
    })
    .await;
    let iam = FakeIam::start(IamExpect {
        authorization: "Bearer sts-token".into(),
        scope: vec![DATASTORE.into()],
        lifetime: "3600s".into(),
        delegates: vec![],
    })
    .await;
    let wif = "wif@test-project.iam.gserviceaccount.com";
    let adc = serde_json::json!({
        "type": "external_account",
        "audience": audience,
        "subject_token_type": subject_type,
        "token_url": format!("{}/v1/token", sts.server.url()),
        "service_account_impersonation_url": format!(
            "{}/v1/projects/-/serviceAccounts/{wif}:generateAccessToken",
            iam.server.url()
        ),
        "credential_source": {"file": subject_file.display().to_string()},
    });
    let adc_file = dir.path().join("adc.json");
    std::fs::write(&adc_file, adc.to_string()).expect("write adc");

    let out = run_child(
        "child_adc_external_account",
        vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                adc_file.display().to_string(),
            ),
            ("HOME", dir.path().display().to_string()),
        ],
    )
    .await;
    assert!(
        out.contains(&format!("BEARER=iam:{wif}:1 ACCOUNT={wif}")),
        "{out}\nSTS deviations: {:?}\nIAM deviations: {:?}",
        sts.deviations.all(),
        iam.deviations.all()
    );
    assert_eq!(sts.hits(), 1);
    assert_eq!(iam.hits(wif), 1);
    assert_eq!(sts.deviations.all(), Vec::<String>::new());
    assert_eq!(iam.deviations.all(), Vec::<String>::new());
}

#[tokio::test]
#[ignore = "run by adc_workload_identity_federation_exchanges_then_impersonates"]
async fn child_adc_external_account() {
    child_prints_the_adc_token("child_adc_external_account").await;
}

/// Per-rule upstream identity through the whole proxy: two rules naming
/// different service accounts; each request reaches Firestore with its own
/// account's impersonated token, a request spanning both is refused
/// before anything is forwarded, and the audit line names the account.
#[tokio::test]
async fn each_rule_runs_as_its_account_through_the_proxy_and_mixed_accounts_are_refused() {
    let metadata = FakeMetadata::start().await;
    let iam = FakeIam::start(IamExpect {
        authorization: "Bearer mds-token-1".into(),
        scope: vec![DATASTORE.into()],
        lifetime: "3600s".into(),
        delegates: Vec::new(),
    })
    .await;
    let firestore = support::upstream()
        .body(r#"{"name":"x","fields":{}}"#)
        .start()
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("dir");
    std::fs::write(
        policies.join("accounts.yaml"),
        format!(
            "rules:
  - id: catalog-readers
    match: /catalog/{{doc}}
    allow: [read]
    who: {{authenticated: true}}
    as: {READER}
  - id: log-writers
    match: /logs/{{doc}}
    allow: [read, write]
    who: {{authenticated: true}}
    as: {WRITER}
"
        ),
    )
    .expect("policy");
    let audit = dir.path().join("audit.log");
    let env = |k: &str, v: String| (format!("FIREGATE_UPSTREAM__CREDENTIALS__{k}"), v);
    let stack = support::dev::start(firegate::dev::DevOptions {
        policies: Some(policies),
        upstream_override: Some(firestore.url.clone()),
        extra_config: Some(serde_json::json!({
            "audit": {"sink": "file", "path": audit},
            "upstream": {"databases": ["projects/p/databases/(default)"]},
        })),
        overrides: vec![
            env("SOURCE", "metadata".into()),
            env("METADATA_ENDPOINT", metadata.server.url()),
            env("IMPERSONATION__IAM_ENDPOINT", iam.server.url()),
            env("IMPERSONATION__LIFETIME", "3600s".into()),
        ],
        ..support::dev::options()
    })
    .await;
    let token = stack
        .token(&firegate::dev::Identity {
            subject: "svc:deployer".into(),
            email: "deployer@example.com".into(),
            groups: Vec::new(),
        })
        .expect("token");
    let http = reqwest::Client::new();
    let docs = format!(
        "{}/v1/projects/p/databases/(default)/documents",
        stack.url()
    );
    let get = |path: &str| {
        http.get(format!("{docs}/{path}"))
            .bearer_auth(&token)
            .send()
    };

    assert_eq!(get("catalog/a").await.expect("catalog").status(), 200);
    assert_eq!(get("logs/a").await.expect("logs").status(), 200);
    let seen: Vec<String> = firestore
        .requests()
        .iter()
        .map(|r| {
            r.headers["authorization"]
                .to_str()
                .expect("ascii")
                .to_owned()
        })
        .collect();
    assert_eq!(
        seen,
        [
            format!("Bearer iam:{READER}:1"),
            format!("Bearer iam:{WRITER}:1")
        ]
    );

    let both = serde_json::json!({"documents": [
        "projects/p/databases/(default)/documents/catalog/a",
        "projects/p/databases/(default)/documents/logs/a",
    ]});
    let mixed = http
        .post(format!("{docs}:batchGet"))
        .bearer_auth(&token)
        .json(&both)
        .send()
        .await
        .expect("batchGet");
    assert_eq!(mixed.status(), 403);
    assert_eq!(
        firestore.requests().len(),
        2,
        "the mixed request was not forwarded"
    );
    assert_eq!(iam.deviations.all(), Vec::<String>::new());

    stack.app.flush_audit().await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let accounts: Vec<&str> = records
        .iter()
        .map(|r| r["upstream_account"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(accounts, [READER, WRITER, "-"]);
    assert_eq!(records[2]["reason"], "mixed_upstream_accounts");
    let text = std::fs::read_to_string(&audit).expect("audit");
    assert!(
        !text.contains("iam:"),
        "an upstream token reached the audit log"
    );
    stack.shutdown().await;
}
