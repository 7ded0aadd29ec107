//! Response side of transaction binding for gRPC: every `bytes transaction`
//! in the response messages of a call that began a transaction is sealed to
//! the caller before it leaves firegate. Messages stream through one at a
//! time; trailers pass unchanged.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame};
use prost::Message;

use super::proto;
use super::{GrpcError, GrpcMethod, frame};
use crate::body::{Body, BoxError};
use crate::transaction::Sealing;

/// Rewrite `response` so the transaction ids it carries are sealed. Only
/// the methods that can begin a transaction are passed here.
pub fn seal_response(
    method: GrpcMethod,
    response: Response<Body>,
    sealing: Sealing,
    limit: usize,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let sealed = SealedMessages {
        inner: body,
        deframer: frame::Deframer::new(limit),
        method,
        sealing,
        done: false,
    };
    Response::from_parts(parts, crate::body::boxed(sealed))
}

/// Seal the transaction of one response message, re-encoded.
fn seal_message(method: GrpcMethod, sealing: &Sealing, bytes: &[u8]) -> Result<Bytes, BoxError> {
    fn reseal<M: Message + Default>(
        bytes: &[u8],
        sealing: &Sealing,
        field: impl FnOnce(&mut M) -> &mut Vec<u8>,
    ) -> Result<Bytes, BoxError> {
        let mut message = M::decode(bytes).map_err(|_| GrpcError::MalformedMessage)?;
        let id = field(&mut message);
        if !id.is_empty() {
            *id = sealing.seal_bytes(id);
        }
        Ok(frame::encode(&message))
    }
    match method {
        GrpcMethod::BeginTransaction => {
            reseal::<proto::BeginTransactionResponse>(bytes, sealing, |m| &mut m.transaction)
        }
        GrpcMethod::BatchGetDocuments => {
            reseal::<proto::BatchGetDocumentsResponse>(bytes, sealing, |m| &mut m.transaction)
        }
        GrpcMethod::RunQuery => {
            reseal::<proto::RunQueryResponse>(bytes, sealing, |m| &mut m.transaction)
        }
        GrpcMethod::RunAggregationQuery => {
            reseal::<proto::RunAggregationQueryResponse>(bytes, sealing, |m| &mut m.transaction)
        }
        // No other response carries a transaction id; passing one on
        // unread would be the unsealed id this module exists to keep in.
        _ => Err(GrpcError::MethodNotServed("no transaction in this response").into()),
    }
}

struct SealedMessages {
    inner: Body,
    deframer: frame::Deframer,
    method: GrpcMethod,
    sealing: Sealing,
    done: bool,
}

impl HttpBody for SealedMessages {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(message) = this.deframer.next_message()? {
                let sealed = seal_message(this.method, &this.sealing, &message)?;
                return Poll::Ready(Some(Ok(Frame::data(sealed))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => this.deframer.push(&data),
                    Err(f) => {
                        if this.deframer.is_partial() {
                            return Poll::Ready(Some(Err(GrpcError::MalformedFrame(
                                "upstream response ended inside a message",
                            )
                            .into())));
                        }
                        return Poll::Ready(Some(Ok(f)));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    if this.deframer.is_partial() {
                        return Poll::Ready(Some(Err(GrpcError::MalformedFrame(
                            "upstream response ended inside a message",
                        )
                        .into())));
                    }
                }
            }
        }
    }
}
