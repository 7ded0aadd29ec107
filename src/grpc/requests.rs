//! The messages of a client's streaming request body (Listen), decoded as
//! they complete, each under the message size limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use prost::Message as _;

use super::{GrpcError, frame, proto};
use crate::body::Body;

/// The client's request messages, as they arrive.
pub struct ListenRequests {
    body: Body,
    deframer: frame::Deframer,
    bytes_in: Arc<AtomicU64>,
    ended: bool,
}

impl ListenRequests {
    /// Count every byte read in `bytes_in` (the audit line's).
    pub fn new(body: Body, limit: usize, bytes_in: Arc<AtomicU64>) -> ListenRequests {
        ListenRequests {
            body,
            deframer: frame::Deframer::new(limit),
            bytes_in,
            ended: false,
        }
    }

    /// The next message; `None` once the client half-closes. Cancel-safe:
    /// bytes read are kept in the deframer.
    pub async fn next(&mut self) -> Option<Result<proto::ListenRequest, GrpcError>> {
        loop {
            match self.deframer.next_message() {
                Err(e) => return Some(Err(e)),
                Ok(Some(m)) => {
                    return Some(
                        proto::ListenRequest::decode(m).map_err(|_| GrpcError::MalformedMessage),
                    );
                }
                Ok(None) => {}
            }
            if self.ended {
                return self
                    .deframer
                    .is_partial()
                    .then_some(Err(GrpcError::MalformedFrame(
                        "the stream ended inside a message",
                    )));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.bytes_in
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        self.deframer.push(&data);
                    }
                }
                Some(Err(_)) => {
                    return Some(Err(GrpcError::MalformedFrame("the request stream failed")));
                }
                None => self.ended = true,
            }
        }
    }
}
