//! The one fake server of the test support: a builder of routes on
//! `127.0.0.1:0` (HTTP/1.1 and HTTP/2, optionally TLS) whose handle re-raises
//! any panic of a handler, so a test fails with the fake's own message.
//!
//! ```ignore
//! let fake = fake::server()
//!     .route(Method::GET, "/hello", |_| "hello")
//!     .fallback(|req| (StatusCode::NOT_FOUND, json!({"path": req.path})))
//!     .start()
//!     .await;
//! reqwest::get(fake.url() + "/hello").await?;
//! fake.join().await; // panics here if a handler panicked
//! ```

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::TestPki;

/// A response body the fake can send: whole or streamed.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;
type Answer = Pin<Box<dyn Future<Output = Response<FakeBody>> + Send>>;
type Handler = Arc<dyn Fn(Received) -> Answer + Send + Sync>;
type Panic = Box<dyn Any + Send>;

/// A request as the fake received it, body read whole.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `application/x-www-form-urlencoded` body fields.
    pub fn form(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(&self.body).replace('+', " ");
        text.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A whole response: status, headers, body.
pub struct Reply(Response<Full<Bytes>>);

impl Reply {
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", body.to_string())
    }

    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        Reply::new(status, "text/plain", body)
    }

    fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        let mut response = Response::new(Full::new(body.into()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        Reply(response)
    }

    /// Add a header (replacing one of the same name).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("fake header name");
        let value = HeaderValue::from_str(value).expect("fake header value");
        self.0.headers_mut().insert(name, value);
        self
    }
}

impl From<(StatusCode, serde_json::Value)> for Reply {
    fn from((status, body): (StatusCode, serde_json::Value)) -> Reply {
        Reply::json(status, &body)
    }
}

impl From<&'static str> for Reply {
    fn from(body: &'static str) -> Reply {
        Reply::text(StatusCode::OK, body)
    }
}

/// Start building a fake.
pub fn server() -> FakeBuilder {
    FakeBuilder {
        routes: Vec::new(),
        fallback: None,
        tls: None,
    }
}

pub struct FakeBuilder {
    routes: Vec<(Option<Method>, String, Handler)>,
    fallback: Option<Handler>,
    tls: Option<TlsAcceptor>,
}

impl FakeBuilder {
    /// Answer `method path` (path without the query) with `reply`.
    pub fn route<R: Into<Reply>>(
        self,
        method: Method,
        path: &str,
        reply: impl Fn(Received) -> R + Send + Sync + 'static,
    ) -> Self {
        self.add(Some(method), path, whole(reply))
    }

    /// Answer `path` with `reply` whatever the method.
    pub fn any<R: Into<Reply>>(
        self,
        path: &str,
        reply: impl Fn(Received) -> R + Send + Sync + 'static,
    ) -> Self {
        self.add(None, path, whole(reply))
    }

    /// Answer every request no route took (default: 404).
    pub fn fallback<R: Into<Reply>>(
        mut self,
        reply: impl Fn(Received) -> R + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Some(whole(reply));
        self
    }

    /// Answer every request no route took with a response of any body
    /// (streamed, delayed), produced asynchronously.
    pub fn fallback_stream<Fut, B>(
        mut self,
        answer: impl Fn(Received) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        self.fallback = Some(Arc::new(move |req| {
            let answer = answer(req);
            Box::pin(async move { answer.await.map(|b| b.boxed_unsync()) })
        }));
        self
    }

    /// Serve TLS (ALPN h2 + http/1.1) with the test PKI's certificate.
    pub fn tls(mut self, pki: &TestPki) -> Self {
        self.tls = Some(pki.acceptor());
        self
    }

    fn add(mut self, method: Option<Method>, path: &str, handler: Handler) -> Self {
        self.routes.push((method, path.to_owned(), handler));
        self
    }

    pub async fn start(self) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake addr");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let panics: Arc<Mutex<Vec<Panic>>> = Arc::default();
        let router = Arc::new(Router {
            routes: self.routes,
            fallback: self.fallback,
            panics: Arc::clone(&panics),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept(listener, router, self.tls, stopped));
        FakeServer {
            addr,
            url: format!("{scheme}://{addr}"),
            panics,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A synchronous whole-response handler as a [`Handler`].
fn whole<R: Into<Reply>>(reply: impl Fn(Received) -> R + Send + Sync + 'static) -> Handler {
    let reply = Arc::new(reply);
    Arc::new(move |req| {
        let reply = Arc::clone(&reply);
        // Called inside the future, so `catch_unwind` sees its panics.
        Box::pin(async move { reply(req).into().0.map(|b| b.boxed_unsync()) })
    })
}

struct Router {
    routes: Vec<(Option<Method>, String, Handler)>,
    fallback: Option<Handler>,
    panics: Arc<Mutex<Vec<Panic>>>,
}

impl Router {
    async fn answer(&self, req: Request<Incoming>) -> Response<FakeBody> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let received = Received {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        };
        let handler = self
            .routes
            .iter()
            .find(|(method, path, _)| {
                *path == received.path && method.as_ref().is_none_or(|m| *m == received.method)
            })
            .map(|(_, _, handler)| handler)
            .or(self.fallback.as_ref());
        let Some(handler) = handler else {
            return Reply::text(StatusCode::NOT_FOUND, "no route in the fake")
                .0
                .map(|b| b.boxed_unsync());
        };
        let handler = Arc::clone(handler);
        match AssertUnwindSafe(async move { handler(received).await })
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(panic) => {
                // Kept for `join`; the client sees a 500 meanwhile.
                self.panics.lock().expect("panics").push(panic);
                Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "the fake panicked")
                    .0
                    .map(|b| b.boxed_unsync())
            }
        }
    }
}

async fn accept(
    listener: TcpListener,
    router: Arc<Router>,
    tls: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    // Connections live in the set, so they end with the fake.
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        while let Some(done) = connections.try_join_next() {
            if let Err(err) = done
                && err.is_panic()
            {
                router.panics.lock().expect("panics").push(err.into_panic());
            }
        }
        connections.spawn(connection(stream, Arc::clone(&router), tls.clone()));
    }
}

async fn connection(stream: TcpStream, router: Arc<Router>, tls: Option<TlsAcceptor>) {
    // Head and body go out in separate writes; Nagle would hold the body
    // back for a delayed ACK (~40 ms per request).
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let router = Arc::clone(&router);
        async move { Ok::<_, Infallible>(router.answer(req).await) }
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
}

/// A running fake. [`FakeServer::join`] stops it and re-raises a handler's
/// panic; dropping it stops it too (re-raising unless already unwinding).
pub struct FakeServer {
    addr: SocketAddr,
    url: String,
    panics: Arc<Mutex<Vec<Panic>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https` with TLS).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `127.0.0.1:PORT`, as `GCE_METADATA_HOST` wants it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Stop serving and fail with the first panic a handler raised, if any.
    pub async fn join(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
        self.raise();
    }

    fn raise(&self) {
        let first = self.panics.lock().expect("panics").drain(..).next();
        if let Some(panic) = first {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if !std::thread::panicking() {
            self.raise();
        }
    }
}
