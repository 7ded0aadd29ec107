//! The response side of the gRPC wire: messages deframed one at a time,
//! the transaction ids of a call that began a transaction sealed to the
//! caller, the documents' masked fields removed, re-encoded. Trailers pass
//! unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use http::Response;
use prost::Message;

use super::proto;
use super::{GrpcError, GrpcMethod, frame, mask};
use crate::body::{Body, BoxError, Rewrite};
use crate::model::mask::DocumentMasks;
use crate::transaction::Sealing;

/// The masks of an answer's documents, and the count of fields removed.
#[derive(Clone)]
pub struct Masking {
    pub masks: Arc<DocumentMasks>,
    pub masked: Arc<AtomicU64>,
}

/// Rewrite `response`: transaction ids sealed (only the methods that can
/// begin a transaction come with a `Sealing`), documents masked.
pub fn seal_response(
    method: GrpcMethod,
    response: Response<Body>,
    sealing: Option<Sealing>,
    masking: Option<Masking>,
    limit: usize,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let rewrite = Messages {
        deframer: frame::Deframer::new(limit),
        method,
        sealing,
        masking,
    };
    Response::from_parts(parts, crate::body::rewritten(body, rewrite))
}

/// Decode one message as `M`, change it, encode it again.
fn rewrite<M: Message + Default>(
    bytes: &[u8],
    change: impl FnOnce(&mut M),
) -> Result<Bytes, BoxError> {
    let mut message = M::decode(bytes).map_err(|_| GrpcError::MalformedMessage)?;
    change(&mut message);
    Ok(frame::encode(&message))
}

impl Messages {
    fn seal(&self, id: &mut Vec<u8>) {
        if let Some(sealing) = &self.sealing
            && !id.is_empty()
        {
            *id = sealing.seal_bytes(id);
        }
    }

    fn mask(&self, doc: Option<&mut proto::Document>) {
        if let (Some(m), Some(doc)) = (&self.masking, doc) {
            let n = mask::mask_document(doc, &m.masks);
            if n > 0 {
                m.masked.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// One response message, rewritten.
    fn message(&self, bytes: &[u8]) -> Result<Bytes, BoxError> {
        use proto::batch_get_documents_response::Result as Found;
        match self.method {
            GrpcMethod::BeginTransaction => {
                rewrite::<proto::BeginTransactionResponse>(bytes, |m| self.seal(&mut m.transaction))
            }
            GrpcMethod::BatchGetDocuments => {
                rewrite::<proto::BatchGetDocumentsResponse>(bytes, |m| {
                    self.seal(&mut m.transaction);
                    if let Some(Found::Found(doc)) = &mut m.result {
                        self.mask(Some(doc));
                    }
                })
            }
            GrpcMethod::RunQuery => rewrite::<proto::RunQueryResponse>(bytes, |m| {
                self.seal(&mut m.transaction);
                self.mask(m.document.as_mut());
            }),
            GrpcMethod::RunAggregationQuery => {
                rewrite::<proto::RunAggregationQueryResponse>(bytes, |m| {
                    self.seal(&mut m.transaction)
                })
            }
            // A write answers with the document written, whole.
            GrpcMethod::GetDocument | GrpcMethod::CreateDocument | GrpcMethod::UpdateDocument => {
                rewrite::<proto::Document>(bytes, |doc| self.mask(Some(doc)))
            }
            GrpcMethod::ListDocuments => rewrite::<proto::ListDocumentsResponse>(bytes, |m| {
                m.documents.iter_mut().for_each(|d| self.mask(Some(d)))
            }),
            // No other response carries a document: passed on as it came.
            _ if self.sealing.is_none() => Ok(frame::encode_raw(bytes)),
            // Nor a transaction id; passing one on unread would be what
            // this module exists to keep in.
            _ => Err(GrpcError::MethodNotServed("no transaction in this response").into()),
        }
    }
}

/// The [`Rewrite`] of the gRPC wire.
struct Messages {
    deframer: frame::Deframer,
    method: GrpcMethod,
    sealing: Option<Sealing>,
    masking: Option<Masking>,
}

impl Rewrite for Messages {
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        self.deframer.push(&data);
        let mut out = BytesMut::new();
        while let Some(message) = self.deframer.next_message()? {
            out.extend_from_slice(&self.message(&message)?);
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
