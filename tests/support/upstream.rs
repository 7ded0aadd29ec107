//! A recording upstream: answers with a scripted response (status, headers,
//! chunks, waits on gates) and keeps every request it received; it runs on
//! the one [`fake`](super::fake) server.
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
use http::{Response, StatusCode};
use http_body::Frame;
use tokio::sync::{mpsc, watch};

use super::TestPki;
use super::fake::{self, FakeBuilder, FakeServer, Received};

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
pub type Recorded = Received;

pub fn upstream() -> UpstreamBuilder {
    UpstreamBuilder {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/json".into())],
        steps: vec![Step::chunk("{}")],
        head_delay: None,
        fake: fake::server(),
    }
}

pub struct UpstreamBuilder {
    status: StatusCode,
    headers: Vec<(String, String)>,
    steps: Vec<Step>,
    head_delay: Option<Duration>,
    /// The fake it runs on, TLS already chosen.
    fake: FakeBuilder,
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
        self.fake = self.fake.tls(pki);
        self
    }

    pub async fn start(self) -> RecordingUpstream {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Script {
            status: self.status,
            headers: self.headers,
            steps: self.steps,
            head_delay: self.head_delay,
            requests: Arc::clone(&requests),
        });
        let server = self
            .fake
            .fallback_stream(move |req| {
                let script = Arc::clone(&script);
                async move { script.answer(req).await }
            })
            .start()
            .await;
        RecordingUpstream {
            addr: server.addr(),
            url: server.url(),
            requests,
            server,
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
    async fn answer(&self, req: Received) -> Response<ChannelBody> {
        self.requests.lock().expect("requests").push(req);
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

/// A running recording upstream; stops when dropped or joined.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    server: FakeServer,
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

    /// Stop it and fail with its panic, if it had one.
    pub async fn join(self) {
        self.server.join().await;
    }
}
