//! A whole firegate for integration tests, built by the same composition
//! root as `firegate serve` ([`App`]): the test issuer, an allow-all policy
//! emulator credentials and an audit file added to the config a test gives.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use firegate::app::App;
use firegate::app::Config;

use super::config::{self, TestConfig};
use super::issuer::{AUDIENCE, TestIssuer};

/// What the emulator credentials put upstream; tests look for it there.
pub const UPSTREAM_TOKEN: &str = "Bearer owner";
pub const DATABASE: &str = "projects/p/databases/(default)";

/// A running firegate in front of a test's upstream.
pub struct TestProxy {
    pub addr: SocketAddr,
    app: Option<App>,
    issuer: TestIssuer,
    _policies: tempfile::TempDir,
}

impl TestProxy {
    /// Start from the YAML a test gives (server and upstream sections, on
    /// port 0), with the test issuer trusted, every path allowed to any
    /// authenticated caller, and emulator credentials.
    pub async fn start(yaml: &str) -> TestProxy {
        TestProxy::start_with(TestIssuer::builder().start().await, yaml).await
    }

    /// [`TestProxy::start`] trusting an issuer the test started first (its
    /// URL can then appear in the config).
    pub async fn start_with(issuer: TestIssuer, yaml: &str) -> TestProxy {
        let given: Value = serde_yaml_ng::from_str(yaml).expect("test config is YAML");
        let policies = tempfile::tempdir().expect("policy dir");
        std::fs::write(
            policies.path().join("all.yaml"),
            "rules:\n  - id: everything\n    match: /{rest=**}\n    allow: [read, write]\n    who: {authenticated: true}\n",
        )
        .expect("write policy");
        let complete = TestConfig::new(json!({
            "upstream": {"credentials": {"source": "emulator"}},
            "authn": {"issuers": [config::oidc_issuer("test", &issuer.issuer, AUDIENCE).value()]},
            "policy": {"dir": policies.path(), "watch": false},
            "audit": {"sink": "file", "path": policies.path().join("audit.log")},
        }))
        .merge(given);
        let config =
            Config::from_yaml(&complete.yaml(), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        let app = App::start(&config).await.expect("firegate starts");
        app.wait_ready(Duration::from_secs(20))
            .await
            .expect("firegate ready");
        TestProxy {
            addr: app.proxy_addr(),
            app: Some(app),
            issuer,
            _policies: policies,
        }
    }

    /// The test issuer firegate trusts (to sign odd tokens, or go down).
    pub fn issuer(&self) -> &TestIssuer {
        &self.issuer
    }

    /// `Authorization` for a caller the policy allows everything.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.issuer.token().sign())
    }

    /// `Authorization` for another caller (subject `subject`), also allowed
    /// everything.
    pub fn bearer_for(&self, subject: &str) -> String {
        let token = self.issuer.token().claim("sub", json!(subject)).sign();
        format!("Bearer {token}")
    }

    /// What `/readyz` reports now.
    pub fn readiness(&self) -> Option<firegate::server::admin::Ready> {
        self.app.as_ref().map(App::readiness)
    }

    /// Reload what SIGHUP reloads (the policy directory among them).
    pub fn reload(&self) {
        if let Some(app) = &self.app {
            app.reload();
        }
    }

    /// Every audit record written so far (queued ones flushed first).
    pub async fn audit(&self) -> Vec<Value> {
        if let Some(app) = &self.app {
            app.flush_audit().await;
        }
        let text =
            std::fs::read_to_string(self._policies.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
            .collect()
    }

    /// A client that sends [`TestProxy::bearer`] on every request.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            self.bearer().parse().expect("header value"),
        );
        reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// Begin the drain `firegate serve` does on SIGTERM; the handle ends
    /// when it is done.
    pub fn shutdown(&mut self) -> JoinHandle<anyhow::Result<firegate::audit::Flushed>> {
        let app = self.app.take().expect("shut down once");
        tokio::spawn(app.shutdown())
    }

    /// The admin listener's `/metrics` page.
    pub async fn metrics(&self) -> String {
        let app = self.app.as_ref().expect("running");
        reqwest::get(format!("http://{}/metrics", app.admin_addr()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one series on [`TestProxy::metrics`] (`name{labels}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}
