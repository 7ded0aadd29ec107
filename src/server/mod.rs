//! Listeners: rustls TLS (HTTP/1.1 + HTTP/2 by ALPN) or plain HTTP,
//! connection limits, graceful drain, and the admin listener.

pub mod admin;
pub mod config;
mod conn;
pub mod cors;
pub mod shutdown;
pub mod tls;

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::metrics::registered;
pub use config::{BodyRate, Limits, ServerSettings};

pub use shutdown::{Shutdown, ShutdownSignal};
pub use tls::CertStore;

/// What a listener does with each request. Never fails: errors are responses.
pub type Handler =
    Arc<dyn Fn(Request<Body>, ConnInfo) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// Connections the kernel may hold accepted before the accept loop takes
/// them (capped by `net.core.somaxconn`). tokio's default of 1,024 overflows
/// when a fleet's load balancer or a proxy opening one connection per
/// stream dials thousands at once: the overflow is dropped SYNs and
/// connections reset mid-request.
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted firegate rebinds its port
    // while the old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Wrap an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Body>, ConnInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req, conn| Box::pin(f(req, conn)))
}

/// What the server knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Negotiated TLS version (`TLSv1.3`), `None` for plain HTTP.
    pub tls: Option<&'static str>,
    /// What the handler keeps for the connection (the pipeline's token
    /// memo), shared by all its requests and dropped with it.
    pub slot: ConnSlot,
}

impl ConnInfo {
    /// A new connection's: nothing remembered yet.
    pub fn new(remote: SocketAddr, tls: Option<&'static str>) -> ConnInfo {
        ConnInfo {
            remote,
            tls,
            slot: ConnSlot::default(),
        }
    }
}

/// A per-connection slot the handler fills on first use, as pingora
/// carries a connection's context: the server holds it without knowing
/// what is in it.
#[derive(Clone, Default)]
pub struct ConnSlot(Arc<OnceLock<Box<dyn Any + Send + Sync>>>);

impl ConnSlot {
    /// The connection's `T`, made on first use. `None` when the slot holds
    /// another type (one handler per listener: it does not happen).
    pub fn get<T: Any + Send + Sync + Default>(&self) -> Option<&T> {
        self.0.get_or_init(|| Box::new(T::default())).downcast_ref()
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnSlot")
    }
}

/// A response extension asking the server to close the connection after
/// this response (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY): the client
/// was too slow with its body, and its connection is not worth keeping.
#[derive(Debug, Clone, Copy)]
pub struct CloseConnection;

/// A response's status as a label; numeric, so counting allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// Connection and request counters of one listener.
#[derive(Clone)]
pub struct ServerMetrics {
    connections_accepted: Counter,
    connections_refused: Counter,
    connections_open: Gauge,
    tls_handshake_failures: Counter,
    idle_closed: Counter,
    responses: Family<StatusLabels, Counter>,
    by_status: crate::metrics::Resolved,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_open: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            idle_closed: Counter::default(),
            responses: Family::default(),
            by_status: crate::metrics::Resolved::statuses(),
        }
    }
}

impl ServerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("server");
        ServerMetrics {
            connections_accepted: registered(r, "connections_accepted", "Connections accepted"),
            connections_refused: registered(
                r,
                "connections_refused",
                "Connections closed at once because max_connections were open",
            ),
            connections_open: registered(r, "connections_open", "Connections open now"),
            tls_handshake_failures: registered(
                r,
                "tls_handshake_failures",
                "TLS handshakes that failed or timed out",
            ),
            idle_closed: registered(
                r,
                "idle_closed",
                "Connections closed for idling past idle_timeout",
            ),
            responses: registered(r, "responses", "Responses by HTTP status"),
            by_status: crate::metrics::Resolved::statuses(),
        }
    }

    fn count_response(&self, status: StatusCode) {
        let status = status.as_u16();
        self.by_status
            .inc(crate::metrics::Resolved::status(status), || {
                self.responses
                    .get_or_create(&StatusLabels { status })
                    .clone()
            });
    }
}

/// A bound listener, ready to [`serve`](Server::serve).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: ServerMetrics,
}

impl Server {
    /// Bind the main listener (`server.listen`), with TLS unless `plain_http`.
    pub async fn bind(config: &ServerSettings, registry: &mut Registry) -> anyhow::Result<Server> {
        let tls = match &config.tls {
            Some(files) => Some(CertStore::load(files)?.acceptor()?),
            None => None,
        };
        let metrics = ServerMetrics::register(registry);
        Server::bind_with(config.listen, tls, config.limits.clone(), metrics).await
    }

    /// Bind a listener with an explicit TLS acceptor (e.g. from a
    /// [`CertStore`] that is reloaded on SIGHUP).
    pub async fn bind_with(
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        limits: Limits,
        metrics: ServerMetrics,
    ) -> anyhow::Result<Server> {
        let listener = listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener,
            local_addr,
            tls,
            limits,
            metrics,
        })
    }

    /// Bind the admin listener (`server.admin_listen`): plain HTTP, the same
    /// limits, metrics not counted with the main listener's.
    pub async fn bind_admin(config: &ServerSettings) -> anyhow::Result<Server> {
        Server::bind_with(
            config.admin_listen,
            None,
            config.limits.clone(),
            ServerMetrics::default(),
        )
        .await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accept until `shutdown`, then stop accepting and let open connections
    /// finish for up to `drain_timeout`; the handle resolves after that.
    pub fn serve(self, handler: Handler, shutdown: ShutdownSignal) -> JoinHandle<()> {
        tokio::spawn(self.accept_loop(handler, shutdown))
    }

    async fn accept_loop(self, handler: Handler, mut shutdown: ShutdownSignal) {
        let Server {
            listener,
            local_addr,
            tls,
            limits,
            metrics,
        } = self;
        let drain_timeout = limits.drain_timeout;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let shared = Arc::new(conn::Shared::new(tls, limits, metrics.clone(), handler));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        // Over the limit, close at once: queueing would only
                        // hand a slowloris more sockets to hold.
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            metrics.connections_refused.inc();
                            drop(stream);
                            continue;
                        };
                        connections.spawn(conn::serve(
                            stream,
                            remote,
                            slot,
                            Arc::clone(&shared),
                            shutdown.clone(),
                        ));
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(%local_addr, error = %err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let open = connections.len();
        tracing::info!(%local_addr, open, "stopped accepting; draining");
        let drained = tokio::time::timeout(drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                %local_addr,
                remaining = connections.len(),
                "drain timeout reached; closing the remaining connections"
            );
            connections.shutdown().await;
        }
    }
}
