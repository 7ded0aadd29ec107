//! The two ends of a call, the only places that know its wire: a request
//! decoded into a [`Call`] (the model's `Operation` and every fact a later
//! step needs, typed), and the call encoded again — forwarded upstream, and
//! the answer rewritten on its way back (transaction ids sealed). One
//! encoder per wire, not one per feature.

mod grpc;
mod grpc_pin;
mod pin;
mod rest;

use std::sync::Arc;

use http::request::Parts;
use http::{Request, Response};

use super::stored::{Consistency, ReadStored, StoredReadError};
use super::{Exchange, Pipeline, PipelineError, respond};
use crate::body::Body;
use crate::firestore::mask::{Layout, MaskError, MaskStream};
pub(super) use crate::grpc::Masking;
use crate::model::mask::DocumentMasks;
use crate::model::{Access, Operation, Scope};
use crate::policy::Decision;
use crate::transaction::Sealing;
use crate::upstream::AccessToken;

/// How a request came: decided once, by [`Wire::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// Firestore REST v1 (JSON) over HTTP/1.1 or HTTP/2.
    Rest,
    /// A unary or server-streaming gRPC call.
    Grpc,
    /// The bidirectional `Listen` stream.
    Listen,
}

impl Wire {
    pub(super) fn of<B>(req: &Request<B>) -> Wire {
        if !crate::grpc::is_grpc(req.version(), req.headers()) {
            Wire::Rest
        } else if req.uri().path() == crate::grpc::LISTEN_PATH {
            Wire::Listen
        } else {
            Wire::Grpc
        }
    }

    /// For the request span.
    pub(super) fn name(self) -> &'static str {
        match self {
            Wire::Rest => "rest",
            Wire::Grpc => "grpc",
            Wire::Listen => "listen",
        }
    }

    /// How this wire answers a refusal: Firestore JSON, or a gRPC status.
    pub(super) fn error_response(self) -> fn(&PipelineError, &str) -> Response<Body> {
        match self {
            Wire::Rest => respond::error_response,
            Wire::Grpc | Wire::Listen => respond::grpc_error_response,
        }
    }

    /// What the wire refuses before anything else is asked, token or body:
    /// gRPC-Web and gRPC over HTTP/1.1 on the REST path, an unknown or
    /// unserved gRPC method (`UNIMPLEMENTED` at once), a malformed
    /// `grpc-timeout`.
    pub(super) fn admit(self, parts: &Parts) -> Result<(), PipelineError> {
        match self {
            Wire::Rest => crate::firestore::refuse_grpc(&parts.headers)?,
            Wire::Grpc => grpc::admit(parts)?,
            Wire::Listen => {}
        }
        Ok(())
    }

    /// Decode the request into a [`Call`]: the URL or method path, the body
    /// (bounded, under the body deadline), classified.
    pub(super) async fn classify(
        self,
        pipeline: &Pipeline,
        parts: Parts,
        body: Body,
        ex: &mut Exchange,
    ) -> Result<Call, PipelineError> {
        match self {
            Wire::Rest => rest::classify(pipeline, parts, body, ex).await,
            Wire::Grpc | Wire::Listen => grpc::classify(pipeline, parts, body, ex).await,
        }
    }
}

/// A presented transaction id, still sealed, as its wire carries it.
pub(super) enum Sealed<'a> {
    /// REST: proto3-JSON `bytes`, base64 text.
    Text(&'a str),
    /// gRPC: the raw bytes.
    Bytes(&'a [u8]),
}

/// A classified call: what the steps judge, and its encoding, kept for
/// the way out.
pub(super) struct Call {
    pub(super) operation: Arc<Operation>,
    /// The read time the client asked for (a get, batchGet or query).
    read_time: Option<String>,
    /// The answer carries a new transaction id.
    begins: bool,
    /// The upstream transaction id, once [`Call::use_transaction`] bound it.
    transaction: Option<Vec<u8>>,
    encoded: Encoded,
}

enum Encoded {
    Rest(rest::RestCall),
    Grpc(grpc::GrpcCall),
}

impl Call {
    fn new(
        operation: Operation,
        read_time: Option<String>,
        begins: bool,
        encoded: Encoded,
    ) -> Call {
        Call {
            operation: Arc::new(operation),
            read_time,
            begins,
            transaction: None,
            encoded,
        }
    }

    /// The transaction id the client presented, still sealed.
    pub(super) fn presented_transaction(&mut self) -> Option<Sealed<'_>> {
        match &mut self.encoded {
            Encoded::Rest(call) => call.presented().map(Sealed::Text),
            Encoded::Grpc(call) => call.presented().map(Sealed::Bytes),
        }
    }

    /// The answer will carry a new transaction id, to be sealed.
    pub(super) fn begins_transaction(&self) -> bool {
        self.begins
    }

    /// Put the upstream id where the sealed one was; the call remembers it
    /// (a stored read happens in that transaction).
    pub(super) fn use_transaction(&mut self, upstream: Vec<u8>) {
        match &mut self.encoded {
            Encoded::Rest(call) => call.use_transaction(&upstream),
            Encoded::Grpc(call) => call.use_transaction(&upstream),
        }
        self.transaction = Some(upstream);
    }

    /// Where a stored read for this call happens: in its transaction, at
    /// its read time, or now. A call that begins a transaction cannot be
    /// checked against stored documents (there is nothing to read in yet).
    pub(super) fn consistency(&self) -> Result<Consistency, StoredReadError> {
        if self.begins {
            return Err(StoredReadError::BeginsTransaction);
        }
        Ok(match (&self.transaction, &self.read_time) {
            (Some(id), _) => Consistency::Transaction(id.clone()),
            (None, Some(t)) => Consistency::ReadTime(t.clone()),
            (None, None) => Consistency::Now,
        })
    }

    /// Pin the call to the versions the rules saw: each document's first
    /// write gets a precondition, a checked read reads at the time of the
    /// check (unless it is in a transaction or at the client's time).
    pub(super) fn pin(&mut self, stored: &ReadStored) -> Result<(), PipelineError> {
        let consistent = self.transaction.is_some() || self.read_time.is_some();
        match &mut self.encoded {
            Encoded::Rest(call) => call.pin(&self.operation, stored, consistent)?,
            Encoded::Grpc(call) => {
                grpc_pin::pin(&mut call.request, &self.operation, stored, consistent)?
            }
        }
        Ok(())
    }

    /// Encode the call for its wire and send it upstream with `token`; the
    /// answer streams back. `rewritten`: the answer will be rewritten on its
    /// way back, so it is asked for uncompressed.
    pub(super) async fn forward(
        &mut self,
        pipeline: &Pipeline,
        token: &AccessToken,
        rewritten: bool,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        match &mut self.encoded {
            Encoded::Rest(call) => {
                call.forward(pipeline, &self.operation, token, rewritten, ex)
                    .await
            }
            Encoded::Grpc(call) => call.forward(pipeline, &self.operation, token, ex).await,
        }
    }

    /// The one response-side rewrite of each wire, as the answer
    /// streams: the documents' masked fields removed, every new
    /// transaction id sealed to the caller.
    pub(super) fn respond(
        self,
        response: Response<Body>,
        sealing: Option<Sealing>,
        masking: Option<Masking>,
        max_grpc_message_bytes: usize,
    ) -> Result<Response<Body>, PipelineError> {
        if sealing.is_none() && masking.is_none() {
            return Ok(response);
        }
        Ok(match self.encoded {
            Encoded::Rest(_) => {
                let method = self.operation.method;
                let response = match masking {
                    Some(masking) => mask_rest(method, response, masking)?,
                    None => response,
                };
                match sealing {
                    Some(sealing) => sealing.seal_response(response)?,
                    None => response,
                }
            }
            Encoded::Grpc(call) => crate::grpc::seal_response(
                call.method,
                response,
                sealing,
                masking,
                max_grpc_message_bytes,
            ),
        })
    }
}

/// The most one document of a REST answer may take while it is masked:
/// Firestore documents are at most 1 MiB, their JSON a few times that.
const MAX_MASKED_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// A successful REST answer with its documents masked as it streams. A
/// compressed answer cannot be read, so it is refused (firegate asks
/// upstream for identity).
fn mask_rest(
    method: crate::model::Method,
    response: Response<Body>,
    masking: Masking,
) -> Result<Response<Body>, PipelineError> {
    let Some(layout) = Layout::of(method) else {
        return Ok(response);
    };
    if !response.status().is_success() {
        return Ok(response);
    }
    let encoded = response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    if encoded {
        return Err(MaskError::Malformed.into());
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let stream = MaskStream::new(
        layout,
        masking.masks,
        masking.masked,
        MAX_MASKED_DOCUMENT_BYTES,
    );
    Ok(Response::from_parts(
        parts,
        crate::body::rewritten(body, stream),
    ))
}

/// Which mask each document of the answer is under: a target's mask, by
/// document for named documents. A write that answers with the document
/// written (`patch`, `createDocument`) is masked as the caller's own read
/// of it, never by the write rule's mask (see `policy::mask::Answer`).
/// `None` when nothing is masked (the common case costs one scan of the
/// targets).
pub(super) fn read_masks(decision: &Decision) -> Option<DocumentMasks> {
    if !decision.answer.is_empty() {
        if decision.answer.iter().all(|a| a.fields.is_none()) {
            return None;
        }
        let mut masks = DocumentMasks::default();
        for a in &decision.answer {
            match &a.scope {
                Scope::Document { path } => masks.document(path.to_vec(), a.fields.clone()),
                _ => {
                    if let Some(mask) = &a.fields {
                        masks.query(mask);
                    }
                }
            }
        }
        return masks.any().then_some(masks);
    }
    if decision.targets.iter().all(|t| t.mask().is_none()) {
        return None;
    }
    let mut masks = DocumentMasks::default();
    for t in &decision.targets {
        // A write's own mask never masks an answer: the writes that answer
        // with a document are judged in `decision.answer`.
        if !matches!(t.target.access, Access::Get | Access::List) {
            continue;
        }
        let mask = t.mask().map(|m| Arc::clone(&m.fields));
        match &t.target.scope {
            Scope::Document { path } => masks.document(path.to_vec(), mask),
            _ => {
                if let Some(mask) = &mask {
                    masks.query(mask);
                }
            }
        }
    }
    masks.any().then_some(masks)
}
