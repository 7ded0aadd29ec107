//! A recording upstream: answers with a scripted response (status, headers,
//! chunks, waits on gates) and keeps every request it received.
//!
//! ```ignore
//! let gate = Gate::new();
//! let up = upstream()
//!     .steps(vec![Step::chunk("[{\"a\":1}"), Step::Wait(gate.clone()), Step::chunk(",{}]")])
//!     .start()
//!     .await;
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::TestPki;

/// A one-way latch a scripted response can wait on.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(watch::channel(false).0))
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// One step of a scripted response body.
#[derive(Clone)]
pub enum Step {
    Chunk(Bytes),
    /// Send `chunk` `times` times (a large body without holding it).
    Repeat {
        chunk: Bytes,
        times: u64,
    },
    Wait(Gate),
    Sleep(Duration),
    /// Open a gate (tells the test how far the upstream got).
    Signal(Gate),
}

impl Step {
    pub fn chunk(bytes: impl Into<Bytes>) -> Step {
        Step::Chunk(bytes.into())
    }
}

/// What arrived at the upstream.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn upstream() -> UpstreamBuilder {
    UpstreamBuilder {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/json".into())],
        steps: vec![Step::chunk("{}")],
        head_delay: None,
        tls: None,
    }
}

pub struct UpstreamBuilder {
    status: StatusCode,
    headers: Vec<(String, String)>,
    steps: Vec<Step>,
    head_delay: Option<Duration>,
    tls: Option<TlsAcceptor>,
}

impl UpstreamBuilder {
    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("status");
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.steps = vec![Step::Chunk(body.into())];
        self
    }

    pub fn steps(mut self, steps: Vec<Step>) -> Self {
        self.steps = steps;
        self
    }

    /// Wait this long before sending the response head.
    pub fn head_delay(mut self, delay: Duration) -> Self {
        self.head_delay = Some(delay);
        self
    }

    /// Serve TLS (ALPN h2 + http/1.1) with the test PKI's certificate.
    pub fn tls(mut self, pki: &TestPki) -> Self {
        self.tls = Some(pki.acceptor());
        self
    }

    pub async fn start(self) -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Script {
            status: self.status,
            headers: self.headers,
            steps: self.steps,
            head_delay: self.head_delay,
            requests: Arc::clone(&requests),
        });
        let tls = self.tls;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Head and body go out in separate writes; Nagle would hold
                // the body back for a delayed ACK (~40 ms per request).
                let _ = stream.set_nodelay(true);
                let script = Arc::clone(&script);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let script = Arc::clone(&script);
                        async move { Ok::<_, Infallible>(script.answer(req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        RecordingUpstream {
            addr,
            url: format!("{scheme}://127.0.0.1:{}", addr.port()),
            requests,
            task,
        }
    }
}

struct Script {
    status: StatusCode,
    headers: Vec<(String, String)>,
    steps: Vec<Step>,
    head_delay: Option<Duration>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Script {
    async fn answer(&self, req: Request<Incoming>) -> Response<ChannelBody> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.requests.lock().expect("requests").push(Recorded {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        });
        if let Some(delay) = self.head_delay {
            tokio::time::sleep(delay).await;
        }
        let (tx, rx) = mpsc::channel(4);
        let steps = self.steps.clone();
        tokio::spawn(async move {
            for step in steps {
                match step {
                    Step::Chunk(bytes) => {
                        if tx.send(bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::Repeat { chunk, times } => {
                        for _ in 0..times {
                            if tx.send(chunk.clone()).await.is_err() {
                                return;
                            }
                        }
                    }
                    Step::Wait(gate) => gate.wait().await,
                    Step::Sleep(d) => tokio::time::sleep(d).await,
                    Step::Signal(gate) => gate.open(),
                }
            }
        });
        let mut response = Response::new(ChannelBody(rx));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(value).expect("header value"),
            );
        }
        response
    }
}

/// A response body fed chunk by chunk from the script task.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A running recording upstream; stops when dropped.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }

    /// The only request received; fails the test if there were others.
    pub fn single(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "upstream requests: {requests:?}");
        requests.into_iter().next().expect("one request")
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
