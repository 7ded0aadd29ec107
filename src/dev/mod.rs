//! `firegate dev`: the embedded default. Emulator upstream, a development
//! OIDC issuer, the example policies, and ready-to-paste `curl` commands.
//!
//! [`Stack`] is also how the end-to-end tests run a whole firegate.

pub mod issuer;
pub mod policies;
mod sample;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, StatusCode};
use serde_yaml_ng::Value;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::app::{self, Config};
use crate::body;
use crate::emulator::{self, Emulator};
use crate::server::Limits;
use crate::server::{self, Server, Shutdown};

pub use issuer::{DevIssuer, Identity};
pub use policies::PolicySource;
pub use sample::{SAMPLE_DATABASE, SAMPLE_PROJECT, Sample, samples};

/// Flags of `firegate dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The proxy's address (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The development issuer's address.
    pub issuer_listen: SocketAddr,
    /// The emulator's address.
    pub emulator_listen: SocketAddr,
    /// The admin listener's address.
    pub admin_listen: SocketAddr,
    /// Policy directory; `None`: `./policies` if present, else the examples
    /// built into the binary.
    pub policies: Option<PathBuf>,
    /// Config merged over the generated one, key by key (tests use it).
    pub extra_config: Option<serde_json::Value>,
    /// Upstream URL to use instead of the embedded emulator.
    pub upstream_override: Option<String>,
    /// `FIREGATE_*` overrides applied to the generated config (tests use it).
    pub overrides: Vec<(String, String)>,
}

impl Default for DevOptions {
    fn default() -> Self {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        DevOptions {
            listen: local(8080),
            issuer_listen: local(8082),
            emulator_listen: local(8081),
            admin_listen: local(9090),
            policies: None,
            extra_config: None,
            upstream_override: None,
            overrides: Vec::new(),
        }
    }
}

/// A running development stack: issuer, emulator and proxy.
pub struct Stack {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub issuer: Arc<DevIssuer>,
    pub emulator: Emulator,
    pub emulator_addr: SocketAddr,
    pub app: App,
    /// Kept so built-in policies stay on disk while the stack runs.
    pub policies: PolicySource,
    emulator_running: emulator::Running,
    stop: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Start everything and seed the sample data.
    pub async fn start(options: DevOptions) -> anyhow::Result<Stack> {
        let stop = Shutdown::new();
        let mut tasks = Vec::new();
        let issuer_server = Server::bind_with(
            options.issuer_listen,
            None,
            Limits::default(),
            Default::default(),
        )
        .await
        .context("development issuer")?;
        let issuer = Arc::new(DevIssuer::generate(&format!(
            "http://{}",
            issuer_server.local_addr()
        ))?);
        tasks.push(issuer_server.serve(issuer_handler(Arc::clone(&issuer)), stop.signal()));

        let emulator = Emulator::new();
        let emulator_running = emulator
            .spawn(options.emulator_listen)
            .await
            .context("emulator")?;
        let emulator_addr = emulator_running.local_addr();
        sample::seed(&emulator)?;

        let upstream = options
            .upstream_override
            .clone()
            .unwrap_or_else(|| format!("http://{emulator_addr}"));
        let policies = PolicySource::resolve(options.policies.as_deref())?;
        let generated = dev_config(&options, policies.dir(), issuer.issuer(), &upstream)?;
        let config = Config::from_value(generated, options.overrides.clone())
            .map_err(|e| anyhow::anyhow!("dev config:\n{e}"))?;

        let app = App::start(&config).await?;
        let stack = Stack {
            proxy: app.proxy_addr(),
            admin: app.admin_addr(),
            issuer,
            emulator,
            emulator_addr,
            app,
            policies,
            emulator_running,
            stop,
            tasks,
        };
        stack.app.wait_ready(Duration::from_secs(20)).await?;
        Ok(stack)
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// A token for `who` from the development issuer, valid for a day.
    pub fn token(&self, who: &Identity) -> anyhow::Result<String> {
        self.issuer.mint(who, Duration::from_secs(24 * 3600))
    }

    /// Stop accepting, drain, and wait for every listener.
    pub async fn shutdown(self) {
        if let Err(err) = self.app.shutdown().await {
            tracing::warn!(error = %format!("{err:#}"), "firegate did not stop cleanly");
        }
        self.stop.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
        self.emulator_running.shutdown().await;
    }
}

/// Run the whole development stack until interrupted.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let stack = Stack::start(options).await?;
    print!("{}", banner(&stack)?);
    server::shutdown::terminate().await?;
    stack.shutdown().await;
    Ok(())
}

/// What `firegate dev` prints: the URL, and per sample identity a token and
/// one allowed and one refused `curl` command.
pub fn banner(stack: &Stack) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let url = stack.url();
    writeln!(
        out,
        "firegate dev — DEVELOPMENT ONLY: in-memory emulator, throwaway issuer, example policies"
    )?;
    writeln!(out, "proxy:    {url}")?;
    writeln!(out, "admin:    http://{}/readyz", stack.admin)?;
    writeln!(
        out,
        "issuer:   {} (tokens below are valid for 24h)",
        stack.issuer.issuer()
    )?;
    writeln!(
        out,
        "emulator: http://{} (REST and gRPC; FIRESTORE_EMULATOR_HOST={0} reaches it without the gate)",
        stack.emulator_addr
    )?;
    writeln!(out, "policies: {}", stack.policies.describe())?;
    for sample in samples() {
        let token = stack.token(&sample.identity)?;
        writeln!(out)?;
        writeln!(
            out,
            "# {} ({}, groups {:?})",
            sample.title, sample.identity.subject, sample.identity.groups
        )?;
        writeln!(out, "export {}='{token}'", sample.token_var)?;
        for (verdict, request) in [("allowed", &sample.allowed), ("refused", &sample.refused)] {
            writeln!(out, "# {verdict}: {}", request.what)?;
            writeln!(out, "{}", request.curl(&url, sample.token_var))?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "# access requests: alice asks to write the search team's deployments, the admin approves, alice's refused write above now works"
    )?;
    writeln!(
        out,
        "firegate access request /teams/search/deployments/** --actions write --for 1h --reason 'INC-1 hotfix' --url {url}  # FIREGATE_TOKEN=$ALICE_TOKEN; prints the id"
    )?;
    writeln!(
        out,
        "FIREGATE_TOKEN=$ADMIN_TOKEN firegate access approve ID --reason ok --url {url}"
    )?;
    Ok(out)
}

/// The collection of the embedded emulator that keeps access requests.
pub const ACCESS_COLLECTION: &str = "firegate-access";

/// The generated config, as a value: `extra_config` merges over it.
fn dev_config(
    options: &DevOptions,
    policies: &std::path::Path,
    issuer: &str,
    upstream: &str,
) -> anyhow::Result<Value> {
    let generated = serde_json::json!({
        "server": {
            "listen": options.listen.to_string(),
            "admin_listen": options.admin_listen.to_string(),
            "plain_http": true,
            // Pages served from any local port (a Vite or webpack dev server).
            "cors": { "origins": ["http://localhost:*", "http://127.0.0.1:*"] },
        },
        "authn": {
            "issuers": [{
                "name": "dev",
                "issuer": issuer,
                "audiences": [issuer::AUDIENCE],
                "algorithms": ["ES256"],
            }],
        },
        "policy": { "dir": policies },
        "upstream": {
            "url": upstream,
            "credentials": { "source": "emulator" },
            "databases": [SAMPLE_DATABASE],
        },
    });
    let mut generated = generated;
    // The embedded emulator keeps the access requests too; with another
    // upstream (tests recording what is forwarded) there is no store.
    if options.upstream_override.is_none() {
        generated["access"] = serde_json::json!({
            "store": { "database": SAMPLE_DATABASE, "collection": ACCESS_COLLECTION },
        });
    }
    let mut config = serde_yaml_ng::to_value(generated)?;
    if let Some(extra) = &options.extra_config {
        app::merge(&mut config, serde_yaml_ng::to_value(extra)?);
    }
    Ok(config)
}

fn issuer_handler(issuer: Arc<DevIssuer>) -> server::Handler {
    server::handler(move |req, _conn| {
        let issuer = Arc::clone(&issuer);
        async move {
            if req.method() != Method::GET {
                return body::json(StatusCode::METHOD_NOT_ALLOWED, "{}");
            }
            match req.uri().path() {
                "/.well-known/openid-configuration" => {
                    body::json(StatusCode::OK, issuer.discovery_document().to_string())
                }
                "/jwks" => body::json(StatusCode::OK, issuer.jwks().to_string()),
                _ => body::json(StatusCode::NOT_FOUND, "{}"),
            }
        }
    })
}
