//! A firegate listener with a handler that forwards through the real
//! [`Upstream`] client (no authn/policy): the server and client halves of the
//! pipeline, end to end.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use firegate::body;
use firegate::config::Config;
use firegate::server::{self, Handler, Server, Shutdown};
use firegate::upstream::{AccessToken, Outbound, Upstream};

/// The token the fake credentials step "mints"; tests look for it upstream.
pub const UPSTREAM_TOKEN: &str = "Bearer upstream-token";
pub const DATABASE: &str = "projects/p/databases/(default)";

/// Forward every request as the pipeline's `forward` step would.
pub fn forwarding_handler(upstream: Arc<Upstream>, trusted: Vec<IpNet>) -> Handler {
    let trusted = Arc::new(trusted);
    server::handler(move |req, conn| {
        let upstream = Arc::clone(&upstream);
        let trusted = Arc::clone(&trusted);
        async move {
            let (parts, body) = req.into_parts();
            let token = AccessToken {
                authorization: HeaderValue::from_static(UPSTREAM_TOKEN),
                account: "test@example.iam.gserviceaccount.com".into(),
            };
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let forwarded = upstream
                .forward(Outbound {
                    method: parts.method.clone(),
                    path_and_query: path,
                    client_headers: &parts.headers,
                    client_ip: conn.remote.ip(),
                    trusted_proxies: &trusted,
                    client_proto: if conn.tls.is_some() { "https" } else { "http" },
                    request_id: "test-request-id",
                    database: DATABASE,
                    token: &token,
                    body,
                })
                .await;
            match forwarded {
                Ok(response) => response.map(body::boxed),
                Err(err) => err.api_error().to_response(),
            }
        }
    })
}

/// A running listener; `stop` drains it.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub done: JoinHandle<()>,
    pub registry: Arc<Registry>,
}

impl TestProxy {
    /// Start from a full YAML config (its `server.listen` should use port 0).
    pub async fn start(yaml: &str) -> TestProxy {
        let config = Config::from_yaml(yaml, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        TestProxy::start_config(&config).await
    }

    pub async fn start_config(config: &Config) -> TestProxy {
        let mut registry = firegate::metrics::registry();
        let upstream = Arc::new(Upstream::new(&config.upstream, &mut registry).expect("upstream"));
        let server = Server::bind(&config.server, &mut registry)
            .await
            .expect("bind");
        let addr = server.local_addr();
        let shutdown = Shutdown::new();
        let handler = forwarding_handler(upstream, config.server.trusted_proxies.clone());
        let done = server.serve(handler, shutdown.signal());
        TestProxy {
            addr,
            shutdown,
            done,
            registry: Arc::new(registry),
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}
