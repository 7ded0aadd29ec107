//! The gRPC API `google.firestore.v1.Firestore` on the emulator's own port:
//! requests with a gRPC content type come here, the rest go to REST.
//!
//! Each method converts its protobuf request into the REST call of its twin
//! and runs the emulator's one implementation; only Listen has logic of its own.

mod from_rest;
mod listen;
mod methods;
mod status;
mod to_rest;

use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, header};
use http_body::Frame;
use tonic::Status;
use tonic::codegen::Service;
use tonic::server::Grpc;
use tonic_prost::ProstCodec;

use super::Shared;
use crate::body::{self, Body};

/// The service's path prefix.
const SERVICE: &str = "/google.firestore.v1.Firestore/";

/// Messages above this are refused, as the REST side refuses bodies.
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// `application/grpc`, `application/grpc+proto`, …
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Answer one gRPC call.
pub async fn handle(shared: Arc<Shared>, request: Request<Body>) -> Response<Body> {
    let method = request
        .uri()
        .path()
        .strip_prefix(SERVICE)
        .unwrap_or_default()
        .to_owned();
    let s = shared;
    let response = match method.as_str() {
        "GetDocument" => unary(request, move |m| methods::get_document(&s, m)).await,
        "ListDocuments" => unary(request, move |m| methods::list_documents(&s, m)).await,
        "CreateDocument" => unary(request, move |m| methods::create_document(&s, m)).await,
        "UpdateDocument" => unary(request, move |m| methods::update_document(&s, m)).await,
        "DeleteDocument" => unary(request, move |m| methods::delete_document(&s, m)).await,
        "BeginTransaction" => unary(request, move |m| methods::begin_transaction(&s, m)).await,
        "Commit" => unary(request, move |m| methods::commit(&s, m)).await,
        "Rollback" => unary(request, move |m| methods::rollback(&s, m)).await,
        "BatchWrite" => unary(request, move |m| methods::batch_write(&s, m)).await,
        "PartitionQuery" => unary(request, move |m| methods::partition_query(&s, m)).await,
        "ListCollectionIds" => unary(request, move |m| methods::list_collection_ids(&s, m)).await,
        "BatchGetDocuments" => {
            streaming(request, move |m| methods::batch_get_documents(&s, m)).await
        }
        "RunQuery" => streaming(request, move |m| methods::run_query(&s, m)).await,
        "RunAggregationQuery" => {
            streaming(request, move |m| methods::run_aggregation_query(&s, m)).await
        }
        "Listen" => {
            grpc()
                .streaming(Method(Some(move |m| listen::open(s, m))), request)
                .await
        }
        // Write (the streaming write RPC) too: no current server client uses it.
        _ => Status::unimplemented(format!("{method} is not served by this emulator")).into_http(),
    };
    response.map(|b| body::boxed(SyncBody(Mutex::new(b))))
}

fn grpc<Req, Resp>() -> Grpc<ProstCodec<Resp, Req>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::default())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

async fn unary<Req, Resp, F>(request: Request<Body>, method: F) -> Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Result<Resp, Status>,
{
    grpc::<Req, Resp>()
        .unary(Method(Some(method)), request)
        .await
}

/// A server-streaming method whose messages are all known at once.
async fn streaming<Req, Resp, F>(request: Request<Body>, method: F) -> Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Result<Vec<Resp>, Status>,
{
    let method = move |m| method(m).map(|messages| stream::iter(messages.into_iter().map(Ok)));
    grpc::<Req, Resp>()
        .server_streaming(Method(Some(method)), request)
        .await
}

/// One call of a method: tonic's server wants a `Service`, this one runs
/// its function once, synchronously (the store's lock is never held
/// across an await).
struct Method<F>(Option<F>);

impl<Req, Out, F> Service<tonic::Request<Req>> for Method<F>
where
    F: FnOnce(Req) -> Result<Out, Status>,
{
    type Response = tonic::Response<Out>;
    type Error = Status;
    type Future = Ready<Result<tonic::Response<Out>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        ready(match self.0.take() {
            Some(method) => method(request.into_inner()).map(tonic::Response::new),
            None => Err(Status::internal("a method ran twice")),
        })
    }
}

/// tonic's response body is `Send` but not `Sync`, firegate's bodies are
/// both; polling needs `&mut`, so the lock is never contended.
struct SyncBody(Mutex<tonic::body::Body>);

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|b| b.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
    use http_body_util::BodyExt;
    use prost::Message;

    fn call(method: &str, message: impl Message) -> Request<Body> {
        let encoded = message.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(&encoded);
        Request::builder()
            .method("POST")
            .uri(format!("{SERVICE}{method}"))
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body::full(framed))
            .unwrap()
    }

    /// The `grpc-status` of a finished call, from the headers of a
    /// trailers-only answer or from the trailers.
    async fn grpc_status(response: Response<Body>) -> String {
        let (parts, body) = response.into_parts();
        if let Some(status) = parts.headers.get("grpc-status") {
            return status.to_str().unwrap().to_owned();
        }
        let trailers = body.collect().await.unwrap().trailers().cloned().unwrap();
        trailers["grpc-status"].to_str().unwrap().to_owned()
    }

    #[test]
    fn only_grpc_content_types_are_grpc() {
        let with = |ct: &str| {
            Request::builder()
                .header(header::CONTENT_TYPE, ct)
                .body(())
                .unwrap()
        };
        assert!(is_grpc(&with("application/grpc")));
        assert!(is_grpc(&with("application/grpc+proto")));
        assert!(!is_grpc(&with("application/json")));
        assert!(!is_grpc(&Request::new(())));
    }

    #[tokio::test]
    async fn refusals_carry_firestore_codes_and_write_is_unimplemented() {
        let shared = Arc::new(Shared::default());
        let missing = proto::GetDocumentRequest {
            name: "projects/p/databases/d/documents/c/nope".into(),
            ..Default::default()
        };
        let response = handle(Arc::clone(&shared), call("GetDocument", missing)).await;
        assert_eq!(grpc_status(response).await, "5");
        let bad_name = proto::GetDocumentRequest {
            name: "projects/p/databases/d/documents/c".into(),
            ..Default::default()
        };
        let response = handle(Arc::clone(&shared), call("GetDocument", bad_name)).await;
        assert_eq!(grpc_status(response).await, "3");
        let write = proto::WriteRequest::default();
        let response = handle(Arc::clone(&shared), call("Write", write)).await;
        assert_eq!(grpc_status(response).await, "12");
        let response = handle(shared, call("NoSuchMethod", ())).await;
        assert_eq!(grpc_status(response).await, "12");
    }

    #[tokio::test]
    async fn a_unary_call_answers_with_its_message() {
        let shared = Arc::new(Shared::default());
        let begin = proto::BeginTransactionRequest {
            database: "projects/p/databases/d".into(),
            options: None,
        };
        let response = handle(shared, call("BeginTransaction", begin)).await;
        let (_, body) = response.into_parts();
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        let bytes = collected.to_bytes();
        let answer = proto::BeginTransactionResponse::decode(&bytes[5..]).unwrap();
        assert_eq!(answer.transaction.len(), 16);
    }
}
