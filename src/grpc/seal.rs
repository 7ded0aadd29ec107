//! Response side of transaction binding for gRPC: every `bytes transaction`
//! in the response messages of a call that began a transaction is sealed to
//! the caller before it leaves firegate. Messages stream through one at a
//! time; trailers pass unchanged.

use bytes::{Bytes, BytesMut};
use http::Response;
use prost::Message;

use super::proto;
use super::{GrpcError, GrpcMethod, frame};
use crate::body::{Body, BoxError, Rewrite};
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
        deframer: frame::Deframer::new(limit),
        method,
        sealing,
    };
    Response::from_parts(parts, crate::body::rewritten(body, sealed))
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

/// The [`Rewrite`] of the gRPC wire: messages deframed, each one's
/// transaction sealed and re-encoded.
struct SealedMessages {
    deframer: frame::Deframer,
    method: GrpcMethod,
    sealing: Sealing,
}

impl Rewrite for SealedMessages {
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        self.deframer.push(&data);
        let mut out = BytesMut::new();
        while let Some(message) = self.deframer.next_message()? {
            out.extend_from_slice(&seal_message(self.method, &self.sealing, &message)?);
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
    }

    fn end(&mut self) -> Result<(), BoxError> {
        if self.deframer.is_partial() {
            return Err(
                GrpcError::MalformedFrame("upstream response ended inside a message").into(),
            );
        }
        Ok(())
    }
}
