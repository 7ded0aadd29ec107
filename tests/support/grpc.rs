//! gRPC test support: a recording fake Firestore gRPC upstream (on the one
//! [`fake`](super::fake) server, h2c) that answers scripted messages and
//! trailers, a tonic client of the same generated crate, and a raw HTTP/2
//! caller for bytes no well-behaved client would send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

pub use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use proto::firestore_client::FirestoreClient;

use super::TestPki;
use super::fake::{self, FakeServer, Received};

/// The tonic client the tests call firegate with.
pub type Client = FirestoreClient<Channel>;

/// One length-prefixed message.
pub fn framed(message: &impl prost::Message) -> Bytes {
    framed_bytes(&message.encode_to_vec())
}

/// `bytes` with a gRPC length prefix.
pub fn framed_bytes(bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + bytes.len());
    out.put_u8(0);
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
    out.freeze()
}

/// The unframed message of a unary request body.
pub fn unframed(body: &[u8]) -> &[u8] {
    assert!(body.len() >= 5, "no gRPC frame in {body:?}");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len, "exactly one message");
    &body[5..]
}

/// A recording fake of Firestore's gRPC service.
pub struct GrpcUpstream {
    server: FakeServer,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<HashMap<String, Vec<Bytes>>>>,
}

impl GrpcUpstream {
    /// Every method answers one empty message (the default of any response
    /// type) and `grpc-status: 0`, unless [`GrpcUpstream::reply`] says otherwise.
    pub async fn start() -> GrpcUpstream {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let replies: Arc<Mutex<HashMap<String, Vec<Bytes>>>> = Arc::default();
        let (r, s) = (Arc::clone(&received), Arc::clone(&replies));
        let server = fake::server()
            .fallback_stream(move |req: Received| {
                let messages = s
                    .lock()
                    .expect("replies")
                    .get(&req.path)
                    .cloned()
                    .unwrap_or_else(|| vec![framed_bytes(b"")]);
                r.lock().expect("received").push(req);
                async move { grpc_response(messages) }
            })
            .start()
            .await;
        GrpcUpstream {
            server,
            received,
            replies,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Answer `method` (`Commit`, `RunQuery`…) with these messages.
    pub fn reply(&self, method: &str, messages: Vec<Bytes>) {
        self.replies
            .lock()
            .expect("replies")
            .insert(format!("/google.firestore.v1.Firestore/{method}"), messages);
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// The one call received.
    pub fn only_call(&self) -> Received {
        let calls = self.calls();
        assert_eq!(
            calls.len(),
            1,
            "{:?}",
            calls.iter().map(|c| &c.path).collect::<Vec<_>>()
        );
        calls.into_iter().next().expect("one call")
    }
}

fn grpc_response(
    messages: Vec<Bytes>,
) -> Response<StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> =
        messages.into_iter().map(|m| Ok(Frame::data(m))).collect();
    frames.push(Ok(Frame::trailers(trailers)));
    let mut response = Response::new(StreamBody::new(stream::iter(frames)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// A tonic client to firegate over h2c.
pub async fn client(addr: SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("h2c channel to firegate");
    FirestoreClient::new(channel)
}

/// A tonic client to firegate over TLS (ALPN h2), trusting the test CA.
pub async fn tls_client(addr: SocketAddr, pki: &TestPki) -> Client {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS channel to firegate");
    FirestoreClient::new(channel)
}

/// `message` with `authorization` (and any extra metadata) attached.
pub fn with_auth<T>(message: T, authorization: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().expect("metadata"));
    request
}

/// What a raw call got back.
#[derive(Debug)]
pub struct RawAnswer {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl RawAnswer {
    /// `grpc-status` from the trailers, or the headers of a trailers-only answer.
    pub fn status(&self) -> String {
        let from = |h: &HeaderMap| {
            h.get("grpc-status")
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        self.trailers
            .as_ref()
            .and_then(from)
            .or_else(|| from(&self.headers))
            .unwrap_or_else(|| panic!("no grpc-status in {self:?}"))
    }
}

/// POST `body` to `path` over h2c with `application/grpc` and these headers.
pub async fn raw_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> RawAnswer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    RawAnswer {
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}
