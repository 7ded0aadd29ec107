//! gRPC test support: a recording fake Firestore gRPC upstream (on the one
//! [`fake`](super::fake) server, h2c) that answers scripted messages and
//! trailers, a tonic client of the same generated crate, and a raw HTTP/2
//! caller for bytes no well-behaved client would send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
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
    replies: Arc<Mutex<HashMap<String, Reply>>>,
}

/// What a method answers: its messages, then its trailers.
#[derive(Clone)]
struct Reply {
    messages: Vec<Bytes>,
    trailers: HeaderMap,
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

impl GrpcUpstream {
    /// Every method answers one empty message (the default of any response
    /// type) and `grpc-status: 0`, unless [`GrpcUpstream::reply`] says otherwise.
    pub async fn start() -> GrpcUpstream {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let (r, s) = (Arc::clone(&received), Arc::clone(&replies));
        let server = fake::server()
            .fallback_stream(move |req: Received| {
                let reply = s
                    .lock()
                    .expect("replies")
                    .get(&req.path)
                    .cloned()
                    .unwrap_or_else(|| Reply {
                        messages: vec![framed_bytes(b"")],
                        trailers: ok_trailers(),
                    });
                r.lock().expect("received").push(req);
                async move { scripted(reply) }
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
        self.reply_with(method, messages, ok_trailers());
    }

    /// Answer `method` with these messages and then these trailers (a
    /// failure's `grpc-status`, `grpc-message`, `grpc-status-details-bin`).
    pub fn reply_with(&self, method: &str, messages: Vec<Bytes>, trailers: HeaderMap) {
        self.replies.lock().expect("replies").insert(
            format!("/google.firestore.v1.Firestore/{method}"),
            Reply { messages, trailers },
        );
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

pub type Scripted = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A scripted gRPC answer: these messages, then `grpc-status: 0`.
pub fn grpc_response(messages: Vec<Bytes>) -> Response<Scripted> {
    scripted(Reply {
        messages,
        trailers: ok_trailers(),
    })
}

fn scripted(reply: Reply) -> Response<Scripted> {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = reply
        .messages
        .into_iter()
        .map(|m| Ok(Frame::data(m)))
        .collect();
    frames.push(Ok(Frame::trailers(reply.trailers)));
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

/// A fake Firestore `Listen`: it acknowledges each added target with `ADD`
/// and `CURRENT`, each removed one with `REMOVE`, records every request
/// message it gets and the metadata of each call. Any other method answers
/// one empty message (a `GetDocument` an empty `Document`).
pub struct ListenUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<proto::ListenRequest>>>,
    metadata: Arc<Mutex<Vec<HeaderMap>>>,
    ended: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ListenUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ListenBody =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

impl ListenUpstream {
    pub async fn start() -> ListenUpstream {
        ListenUpstream::start_with(None).await
    }

    /// Speaking HTTP/2 only, advertising `SETTINGS_MAX_CONCURRENT_STREAMS`
    /// of `max_streams` on each connection (as Google's front ends do, ~100).
    pub async fn capped(max_streams: u32) -> ListenUpstream {
        ListenUpstream::start_with(Some(max_streams)).await
    }

    async fn start_with(max_streams: Option<u32>) -> ListenUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<proto::ListenRequest>>> = Arc::default();
        let metadata: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let ended: Arc<AtomicUsize> = Arc::default();
        let connections: Arc<AtomicUsize> = Arc::default();
        let (r, m, e, c) = (
            Arc::clone(&requests),
            Arc::clone(&metadata),
            Arc::clone(&ended),
            Arc::clone(&connections),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, m, e) = (Arc::clone(&r), Arc::clone(&m), Arc::clone(&e));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (r, m, e) = (Arc::clone(&r), Arc::clone(&m), Arc::clone(&e));
                            async move { Ok::<_, Infallible>(listen_answer(req, r, m, e)) }
                        },
                    );
                    let io = TokioIo::new(tcp);
                    match max_streams {
                        Some(max) => {
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .max_concurrent_streams(max)
                                .serve_connection(io, service)
                                .await;
                        }
                        None => {
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(io, service)
                                    .await;
                        }
                    }
                });
            }
        });
        ListenUpstream {
            addr,
            requests,
            metadata,
            ended,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every Listen request message received so far.
    pub fn requests(&self) -> Vec<proto::ListenRequest> {
        self.requests.lock().expect("requests").clone()
    }

    /// How many calls have seen their request stream end (half-close or reset).
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The metadata of every call.
    pub fn metadata(&self) -> Vec<HeaderMap> {
        self.metadata.lock().expect("metadata").clone()
    }

    /// Target ids added (positive) and removed (negative), in order.
    pub fn target_changes(&self) -> Vec<i32> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r.target_change? {
                proto::listen_request::TargetChange::AddTarget(t) => Some(t.target_id),
                proto::listen_request::TargetChange::RemoveTarget(id) => Some(-id),
            })
            .collect()
    }
}

fn target_change(kind: proto::target_change::TargetChangeType, id: i32) -> Bytes {
    framed(&proto::ListenResponse {
        response_type: Some(proto::listen_response::ResponseType::TargetChange(
            proto::TargetChange {
                target_change_type: kind as i32,
                target_ids: vec![id],
                ..Default::default()
            },
        )),
    })
}

fn listen_answer(
    req: http::Request<hyper::body::Incoming>,
    requests: Arc<Mutex<Vec<proto::ListenRequest>>>,
    metadata: Arc<Mutex<Vec<HeaderMap>>>,
    ended: Arc<AtomicUsize>,
) -> Response<ListenBody> {
    use futures_util::StreamExt as _;
    use proto::target_change::TargetChangeType as T;
    metadata
        .lock()
        .expect("metadata")
        .push(req.headers().clone());
    if !req.uri().path().ends_with("/Listen") {
        let frames = vec![
            Ok(Frame::data(framed_bytes(b""))),
            Ok(Frame::trailers(ok_trailers())),
        ];
        let mut response = Response::new(StreamBody::new(stream::iter(frames).boxed()));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        return response;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let mut body = req.into_body();
    tokio::spawn(async move {
        let mut buffer = BytesMut::new();
        // Firestore assigns the ids of targets added with id 0.
        let mut assigned = 1000;
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while buffer.len() >= 5 {
                let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
                if buffer.len() < 5 + len {
                    break;
                }
                let message = buffer.split_to(5 + len);
                let request = proto::ListenRequest::decode(&message[5..]).expect("a ListenRequest");
                let answers = match &request.target_change {
                    Some(proto::listen_request::TargetChange::AddTarget(t)) => {
                        let id = match t.target_id {
                            0 => {
                                assigned += 1;
                                assigned
                            }
                            id => id,
                        };
                        vec![target_change(T::Add, id), target_change(T::Current, id)]
                    }
                    Some(proto::listen_request::TargetChange::RemoveTarget(id)) => {
                        vec![target_change(T::Remove, *id)]
                    }
                    None => Vec::new(),
                };
                requests.lock().expect("requests").push(request);
                for a in answers {
                    let _ = tx.send(Ok(Frame::data(a))).await;
                }
            }
        }
        ended.fetch_add(1, Ordering::SeqCst);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) })
            .boxed();
    let mut response = Response::new(StreamBody::new(stream));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// An open Listen call through firegate: send requests, read responses.
pub struct ListenCall {
    pub requests: tokio::sync::mpsc::Sender<proto::ListenRequest>,
    pub responses: tonic::Streaming<proto::ListenResponse>,
}

/// Open `Listen` with `authorization`, sending `first` (firegate reads the
/// database from it before it answers).
pub async fn listen(
    client: &mut Client,
    authorization: &str,
    request_id: &str,
    first: proto::ListenRequest,
) -> Result<ListenCall, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::ListenRequest>(16);
    tx.send(first).await.expect("queue the first request");
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut request = with_auth(stream, authorization);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("id"));
    let responses = client.listen(request).await?.into_inner();
    Ok(ListenCall {
        requests: tx,
        responses,
    })
}

/// Read `responses` to their end: the status code the stream ended with
/// (`None` for a clean end), within the tests' patience.
pub async fn end_of(
    responses: &mut tonic::Streaming<proto::ListenResponse>,
) -> Option<tonic::Code> {
    super::within("the stream's end", async {
        loop {
            match responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
}

/// A Listen request adding a documents target.
pub fn add_documents(database: &str, id: i32, documents: &[String]) -> proto::ListenRequest {
    proto::ListenRequest {
        database: database.into(),
        labels: Default::default(),
        target_change: Some(proto::listen_request::TargetChange::AddTarget(
            proto::Target {
                target_id: id,
                target_type: Some(proto::target::TargetType::Documents(
                    proto::target::DocumentsTarget {
                        documents: documents.to_vec(),
                    },
                )),
                ..Default::default()
            },
        )),
    }
}

/// The target change of a Listen response: (kind, ids, cause code).
pub fn change_of(response: &proto::ListenResponse) -> Option<(i32, Vec<i32>, Option<i32>)> {
    match &response.response_type {
        Some(proto::listen_response::ResponseType::TargetChange(c)) => Some((
            c.target_change_type,
            c.target_ids.clone(),
            c.cause.as_ref().map(|s| s.code),
        )),
        _ => None,
    }
}
