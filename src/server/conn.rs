//! One accepted connection: TLS handshake under a deadline, HTTP/1.1 or
//! HTTP/2 by hyper-util's auto builder, an idle watchdog, graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::shutdown::ShutdownSignal;
use super::{CloseConnection, ConnInfo, Handler, ServerMetrics, tls};
use crate::body;
use crate::server::Limits;

/// What every connection of one listener shares.
pub(super) struct Shared {
    pub builder: auto::Builder<TokioExecutor>,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
    pub metrics: ServerMetrics,
    pub handler: Handler,
}

impl Shared {
    pub fn new(
        tls: Option<TlsAcceptor>,
        limits: Limits,
        metrics: ServerMetrics,
        handler: Handler,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper refuses a read buffer under 8 KiB; config validation enforces it.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Shared {
            builder,
            tls,
            limits,
            metrics,
            handler,
        }
    }
}

/// Serve one accepted TCP connection until it closes, idles out or drains.
/// The permit is the connection's slot under `max_connections`.
pub(super) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let _open = OpenConnection::new(&shared.metrics);
    // Nagle would hold back the small frames of a streamed response.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = &shared.tls else {
        let info = ConnInfo::new(remote, None);
        return run(TokioIo::new(stream), info, &shared, shutdown).await;
    };
    // The handshake gets the same deadline as a request head: a client that
    // opens a socket and stalls must not hold a connection slot.
    let handshake =
        tokio::time::timeout(shared.limits.header_read_timeout, acceptor.accept(stream));
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        _ = shutdown.wait() => return,
    };
    match accepted {
        Ok(Ok(stream)) => {
            let version = tls::version_name(stream.get_ref().1.protocol_version());
            let info = ConnInfo::new(remote, Some(version));
            run(TokioIo::new(stream), info, &shared, shutdown).await
        }
        Ok(Err(err)) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%remote, error = %err, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(%remote, "TLS handshake timed out");
        }
    }
}

async fn run<I>(io: I, info: ConnInfo, shared: &Arc<Shared>, mut shutdown: ShutdownSignal)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let remote = info.remote;
    let service = {
        let shared = Arc::clone(shared);
        let activity = Arc::clone(&activity);
        service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let activity = Arc::clone(&activity);
            let info = info.clone();
            async move {
                // Dropped with the response body, or with this future if the
                // client resets the stream first.
                let busy = Activity::begin(&activity);
                let version = req.version();
                let mut response = (shared.handler)(req.map(body::boxed), info).await;
                shared.metrics.count_response(response.status());
                if response.extensions().get::<CloseConnection>().is_some() {
                    if version < http::Version::HTTP_2 {
                        response.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    } else {
                        activity.close.notify_one();
                    }
                }
                Ok::<_, Infallible>(response.map(|inner| crate::body::observed(inner, busy)))
            }
        })
    };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    // One idle timer for the connection's life, checked when it fires and
    // moved on then, rather than re-armed after every request (a timer
    // registered and cancelled per request, on the hot path). It never
    // sleeps longer than the shorter limit: the limit that applies changes
    // with the first request.
    let tick = shared
        .limits
        .idle_timeout
        .min(shared.limits.header_read_timeout);
    let idle = tokio::time::sleep(tick);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut idle, if !closing => {
                let limit = activity.idle_limit(&shared.limits);
                match activity.idle_since() {
                    Some(since) if since.elapsed() >= limit => {
                        shared.metrics.idle_closed.inc();
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    // Quiet, not yet for long enough: wake when it will have
                    // been. Busy: a whole limit from now is the earliest.
                    since => {
                        let now = Instant::now();
                        let due = since.map_or(now + limit, |since| since + limit);
                        idle.as_mut().reset(due.min(now + tick));
                    }
                }
            }
            // The pipeline gave up on a client (a stalled body): GOAWAY; the
            // streams in flight, that answer included, still finish.
            _ = activity.close.notified(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Requests in flight on one connection and when it last went quiet.
struct Activity {
    in_flight: AtomicUsize,
    seen_request: AtomicBool,
    quiet_since: Mutex<Instant>,
    /// Woken when a response asks for the connection to be closed.
    close: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            quiet_since: Mutex::new(Instant::now()),
            close: Notify::new(),
        }
    }
}

impl Activity {
    fn begin(this: &Arc<Self>) -> Busy {
        this.seen_request.store(true, Ordering::Relaxed);
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(this))
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(mut since) = self.quiet_since.lock()
        {
            *since = Instant::now();
        }
    }

    /// `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.quiet_since.lock().ok().map(|since| *since)
    }

    /// A connection that has not sent a first request within the header
    /// deadline is as suspect as a slow header; after that, keep-alive rules.
    fn idle_limit(&self, limits: &Limits) -> Duration {
        if self.seen_request.load(Ordering::Relaxed) {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        }
    }
}

/// One request in flight; its drop is the request's end.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Keeps a response's request counted as in flight until its body is done
/// (or dropped): observing the body is holding the [`Busy`].
impl crate::body::Observer for Busy {}

/// Keeps the open-connections gauge honest whichever way a connection ends.
struct OpenConnection(ServerMetrics);

impl OpenConnection {
    fn new(metrics: &ServerMetrics) -> Self {
        metrics.connections_open.inc();
        metrics.connections_accepted.inc();
        OpenConnection(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}
