//! A pool of HTTP/2 connections to the upstream, opened as the calls in
//! flight need them.
//!
//! One HTTP/2 connection carries at most the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` streams (Google's front ends: about
//! 100); a call past that waits inside h2 until a stream ends, so a
//! connection full of Listen streams stalls every other call. Each call here
//! takes a *lease* on the least-loaded connection with a free stream (the
//! cap: the lower of the server's advertised limit and
//! `upstream.pool.max_streams_per_connection`), opening another connection
//! when none has one, up to `upstream.pool.max_connections`. Long-lived
//! calls (Listen, streamed reads) may hold at most all but one connection's
//! worth of streams, so a unary call always finds room. The lease ends when
//! the response body ends or is dropped, not at its head. Connections idle
//! past `upstream.pool.idle_timeout` close, all but one.
//!
//! Neither hyper-util's client (one HTTP/2 connection per host) nor tonic's
//! `Channel` (balances over endpoints, knows nothing of stream caps, and
//! wants its own body type) does this; hyper's `client::conn::http2` gives
//! the connection, its `SendRequest` (cheap to clone) and the server's
//! advertised limit (`current_max_send_streams`), and this module adds the
//! counting.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::client::UpstreamError;
use super::preface::{Preface, Sniffed};
use crate::body::Body;

/// The validated `upstream.pool` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_streams_per_connection: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// One client's pool gauges and counter (`client` = `rest` or `grpc`).
#[derive(Clone, Default)]
pub struct PoolMetrics {
    connections: Gauge,
    streams: Gauge,
    opened: Counter,
}

impl PoolMetrics {
    /// The families, registered once, and the series of both clients.
    pub fn register(registry: &mut Registry) -> [PoolMetrics; 2] {
        type ByClient<M> = Family<[(&'static str, &'static str); 1], M>;
        let connections: ByClient<Gauge> = crate::metrics::registered(
            registry,
            "upstream_connections",
            "HTTP/2 connections open to the upstream, by client",
        );
        let streams: ByClient<Gauge> = crate::metrics::registered(
            registry,
            "upstream_streams",
            "Upstream HTTP/2 streams in use (calls whose response has not ended), by client",
        );
        let opened: ByClient<Counter> = crate::metrics::registered(
            registry,
            "upstream_connections_opened",
            "HTTP/2 connections opened to the upstream, by client",
        );
        ["rest", "grpc"].map(|client| {
            let label = [("client", client)];
            let connections = connections.get_or_create(&label).clone();
            let streams = streams.get_or_create(&label).clone();
            let opened = opened.get_or_create(&label).clone();
            PoolMetrics {
                connections,
                streams,
                opened,
            }
        })
    }
}

/// The HTTP/2 connection pool of one client (REST or gRPC).
pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    conns: RwLock<Vec<Arc<Conn>>>,
    /// Dials under way, counted against `max_connections`.
    opening: AtomicUsize,
    /// Callers waiting for a stream; a lease ending wakes them only if any.
    waiting: AtomicUsize,
    freed: tokio::sync::Notify,
    /// Leases of long-lived calls now held.
    long_lived: AtomicUsize,
    /// The lowest per-connection cap seen (the server's limit, or ours).
    cap: AtomicUsize,
    settings: PoolSettings,
    /// Longest wait for a new connection's SETTINGS (`connect_timeout`).
    settle: Duration,
    connector: HttpsConnector<HttpConnector>,
    /// Only `https` with ALPN may answer HTTP/1.1 (the REST client offers it).
    h2: http2::Builder<TokioExecutor>,
    /// Scheme and authority the connector dials.
    uri: Uri,
    metrics: PoolMetrics,
    next_id: AtomicU64,
    epoch: Instant,
    reaping: AtomicBool,
}

struct Conn {
    id: u64,
    send: SendRequest<Body>,
    in_use: AtomicUsize,
    /// min(server's advertised limit, ours), kept by the connection's task.
    cap: Arc<AtomicUsize>,
    /// Milliseconds since the pool's epoch when `in_use` last fell to 0.
    idle_since: AtomicU64,
}

/// Why no lease was taken yet.
enum Miss {
    /// Every connection is at its cap.
    Full,
    /// Long-lived calls hold all they may; only a unary call may go on.
    LongLimit,
}

/// A stream held on one connection, given back when dropped.
pub(super) struct Lease {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    long: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.in_use.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .idle_since
                .store(self.shared.now_ms(), Ordering::Relaxed);
        }
        if self.long {
            self.shared.long_lived.fetch_sub(1, Ordering::AcqRel);
        }
        self.shared.metrics.streams.dec();
        if self.shared.waiting.load(Ordering::Acquire) > 0 {
            self.shared.freed.notify_waiters();
        }
    }
}

/// The pool cannot dial HTTP/2: the `https` server chose HTTP/1.1 by ALPN.
pub(super) struct NotHttp2;

/// Counts a waiting caller for as long as it waits (cancellation included).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives back a dial's reservation, whether it succeeded or not.
struct Dialing<'a>(&'a Shared);

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        self.0.opening.fetch_sub(1, Ordering::AcqRel);
        if self.0.waiting.load(Ordering::Acquire) > 0 {
            self.0.freed.notify_waiters();
        }
    }
}

impl Pool {
    pub(super) fn new(
        settings: PoolSettings,
        connector: HttpsConnector<HttpConnector>,
        uri: Uri,
        settle: Duration,
        metrics: PoolMetrics,
    ) -> Pool {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // Until the server's SETTINGS say otherwise.
            .initial_max_send_streams(settings.max_streams_per_connection)
            // Long-lived Listen streams sit idle between changes; pings keep
            // NATs and Google's front end from dropping the connection.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Pool {
            shared: Arc::new(Shared {
                conns: RwLock::new(Vec::new()),
                opening: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                freed: tokio::sync::Notify::new(),
                long_lived: AtomicUsize::new(0),
                cap: AtomicUsize::new(settings.max_streams_per_connection),
                settings,
                settle,
                connector,
                h2,
                uri,
                metrics,
                next_id: AtomicU64::new(0),
                epoch: Instant::now(),
                reaping: AtomicBool::new(false),
            }),
        }
    }

    /// Send `request` on a leased stream; the lease ends with the response
    /// body. `Err(Ok(NotHttp2))` gives the request back: the server speaks
    /// only HTTP/1.1.
    pub(super) async fn send(
        &self,
        request: Request<Body>,
        long: bool,
    ) -> Result<Response<Leased>, Result<(NotHttp2, Request<Body>), UpstreamError>> {
        let (mut send, lease) = match self.lease(long).await {
            Ok(leased) => leased,
            Err(Ok(NotHttp2)) => return Err(Ok((NotHttp2, request))),
            Err(Err(err)) => return Err(Err(err)),
        };
        match send.send_request(request).await {
            Ok(response) => Ok(response.map(|body| Leased {
                body,
                lease: Some(lease),
            })),
            Err(err) => Err(Err(UpstreamError::ProtocolError(crate::error::chain(&err)))),
        }
    }

    async fn lease(
        &self,
        long: bool,
    ) -> Result<(SendRequest<Body>, Lease), Result<NotHttp2, UpstreamError>> {
        let s = &self.shared;
        loop {
            let miss = match s.try_lease(long) {
                Ok(leased) => return Ok(leased),
                Err(miss) => miss,
            };
            if matches!(miss, Miss::Full) && s.reserve_dial() {
                s.dial().await?;
                continue;
            }
            // Wait for a lease to end, a dial to finish or a connection to go.
            let notified = s.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            s.waiting.fetch_add(1, Ordering::AcqRel);
            let _waiting = Waiting(&s.waiting);
            match s.try_lease(long) {
                Ok(leased) => return Ok(leased),
                Err(Miss::Full) if s.reserve_dial() => {
                    s.dial().await?;
                    continue;
                }
                Err(_) => notified.await,
            }
        }
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How many long-lived streams may be held at once: all but one
    /// connection's worth, so unary calls always have a connection.
    fn long_limit(&self) -> usize {
        let cap = self.cap.load(Ordering::Relaxed);
        (self.settings.max_connections.saturating_sub(1) * cap).max(1)
    }

    /// The least-loaded connection with a free stream, leased; scans only
    /// the (bounded) connection list, under a read lock never held across
    /// an await.
    fn try_lease(self: &Arc<Self>, long: bool) -> Result<(SendRequest<Body>, Lease), Miss> {
        if long && self.long_lived.fetch_add(1, Ordering::AcqRel) >= self.long_limit() {
            self.long_lived.fetch_sub(1, Ordering::AcqRel);
            return Err(Miss::LongLimit);
        }
        let leased = self.pick();
        if leased.is_none() && long {
            self.long_lived.fetch_sub(1, Ordering::AcqRel);
        }
        let (conn, send) = leased.ok_or(Miss::Full)?;
        self.metrics.streams.inc();
        Ok((
            send,
            Lease {
                conn,
                shared: Arc::clone(self),
                long,
            },
        ))
    }

    fn pick(&self) -> Option<(Arc<Conn>, SendRequest<Body>)> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut best: Option<(&Arc<Conn>, usize)> = None;
            for conn in conns.iter() {
                let in_use = conn.in_use.load(Ordering::Acquire);
                if in_use >= conn.cap.load(Ordering::Relaxed) || conn.send.is_closed() {
                    continue;
                }
                if best.is_none_or(|(_, least)| in_use < least) {
                    best = Some((conn, in_use));
                }
            }
            let (conn, in_use) = best?;
            if conn
                .in_use
                .compare_exchange(in_use, in_use + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // another call took it meanwhile: look again
            }
            let cap = conn.cap.load(Ordering::Relaxed);
            if cap < self.cap.load(Ordering::Relaxed) {
                self.cap.fetch_min(cap, Ordering::Relaxed);
            }
            return Some((Arc::clone(conn), conn.send.clone()));
        }
    }

    /// Reserve one of the connections still allowed, if any, and only
    /// while the dials under way cannot serve the callers waiting: a burst
    /// of calls opens the connections it needs, not the bound's worth.
    fn reserve_dial(&self) -> bool {
        let open = self.conns.read().unwrap_or_else(|e| e.into_inner()).len();
        let opening = self.opening.fetch_add(1, Ordering::AcqRel);
        let waiting = self.waiting.load(Ordering::Acquire);
        let needed = opening == 0 || waiting > opening * self.cap.load(Ordering::Relaxed);
        if needed && open + opening < self.settings.max_connections {
            true
        } else {
            self.opening.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }

    /// Open one connection (already reserved) and add it to the pool.
    async fn dial(self: &Arc<Self>) -> Result<(), Result<NotHttp2, UpstreamError>> {
        let _reserved = Dialing(self);
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, self.uri.clone())
            .await
            .map_err(|err| Err(UpstreamError::from_connect(&*err)))?;
        let connected = io.connected();
        if self.uri.scheme() == Some(&http::uri::Scheme::HTTPS) && !connected.is_negotiated_h2() {
            return Err(Ok(NotHttp2));
        }
        let cap = Arc::new(AtomicUsize::new(self.settings.max_streams_per_connection));
        let preface = Preface::new(Arc::clone(&cap));
        let (send, connection) = self
            .h2
            .handshake(Sniffed::new(io, Arc::clone(&preface)))
            .await
            .map_err(|err| Err(UpstreamError::ConnectFailed(crate::error::chain(&err))))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            send,
            in_use: AtomicUsize::new(0),
            cap: Arc::clone(&cap),
            idle_since: AtomicU64::new(self.now_ms()),
        });
        let weak = Arc::downgrade(self);
        let watched = Arc::clone(&cap);
        tokio::spawn(async move {
            // The preface set the cap; a later, lower limit (read by hyper
            // as it dispatches) lowers it again.
            let mut connection = std::pin::pin!(connection);
            let ended = std::future::poll_fn(|cx| {
                let polled = connection.as_mut().poll(cx);
                watched.fetch_min(
                    connection.current_max_send_streams().max(1),
                    Ordering::Relaxed,
                );
                polled
            })
            .await;
            if let Err(err) = ended {
                tracing::debug!(error = %err, "upstream HTTP/2 connection ended");
            }
            if let Some(shared) = weak.upgrade() {
                shared.remove(id);
            }
        });
        // The server's first frame says how many streams it allows; waiting
        // for it (one round trip, once per connection) keeps the second call
        // from going where the first left no room.
        if tokio::time::timeout(self.settle, preface.read.notified())
            .await
            .is_err()
        {
            tracing::debug!("no HTTP/2 SETTINGS from the upstream within connect_timeout");
        }
        self.cap
            .fetch_min(cap.load(Ordering::Relaxed), Ordering::Relaxed);
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        self.metrics.connections.inc();
        self.metrics.opened.inc();
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self), self.settings.idle_timeout));
        }
        Ok(())
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        let before = conns.len();
        conns.retain(|c| c.id != id);
        if conns.len() < before {
            self.metrics.connections.dec();
        }
        drop(conns);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Close the connections idle past `idle_timeout`, keeping one.
    fn close_idle(&self) {
        let now = self.now_ms();
        let limit = u64::try_from(self.settings.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        let mut kept = conns.len();
        // Leases are only taken under the read lock: with the write lock
        // held, an idle connection stays idle until it is gone.
        conns.retain(|c| {
            let idle = c.in_use.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.idle_since.load(Ordering::Relaxed)) >= limit;
            if idle && kept > 1 {
                kept -= 1;
                self.metrics.connections.dec();
                false
            } else {
                true
            }
        });
    }
}

/// One task per pool: close idle connections every half idle timeout;
/// ends with the pool.
async fn reap(shared: Weak<Shared>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match shared.upgrade() {
            Some(shared) => shared.close_idle(),
            None => return,
        }
    }
}

/// A response body that holds its stream's lease until it ends or is dropped.
pub struct Leased {
    body: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    /// A body outside the pool (the HTTP/1.1 client's).
    pub(super) fn unpooled(body: Incoming) -> Leased {
        Leased { body, lease: None }
    }
}

impl http_body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => this.lease = None,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
