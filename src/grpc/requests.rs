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
    /// The last message's `request_options.request_tags`.
    tags: Vec<String>,
}

impl ListenRequests {
    /// Count every byte read in `bytes_in` (the audit line's).
    pub fn new(body: Body, limit: usize, bytes_in: Arc<AtomicU64>) -> ListenRequests {
        ListenRequests {
            body,
            deframer: frame::Deframer::new(limit),
            bytes_in,
            ended: false,
            tags: Vec::new(),
        }
    }

    /// The `request_options.request_tags` of the message `next` returned
    /// last (the generated type has no field for them).
    pub fn take_tags(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tags)
    }

    /// The next message; `None` once the client half-closes. Cancel-safe:
    /// bytes read are kept in the deframer.
    pub async fn next(&mut self) -> Option<Result<proto::ListenRequest, GrpcError>> {
        loop {
            match self.deframer.next_message() {
                Err(e) => return Some(Err(e)),
                Ok(Some(m)) => {
                    self.tags = super::tags::tags_in(&m, super::tags::LISTEN_OPTIONS_FIELD);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_message_tells_its_own_request_tags() {
        let first = proto::ListenRequest {
            database: "projects/p/databases/(default)".into(),
            ..Default::default()
        };
        let mut tagged = first.encode_to_vec();
        let mut options = Vec::new();
        prost::encoding::string::encode(1, &"dashboard".to_owned(), &mut options);
        prost::encoding::bytes::encode(
            super::super::tags::LISTEN_OPTIONS_FIELD,
            &options,
            &mut tagged,
        );
        let mut stream = frame::encode_raw(&tagged).to_vec();
        stream.extend_from_slice(&frame::encode(&first));
        let bytes_in = Arc::new(AtomicU64::new(0));
        let mut requests = ListenRequests::new(crate::body::full(stream), 1 << 20, bytes_in);
        assert_eq!(requests.next().await.unwrap().unwrap(), first);
        assert_eq!(requests.take_tags(), ["dashboard"]);
        assert_eq!(requests.next().await.unwrap().unwrap(), first);
        assert!(
            requests.take_tags().is_empty(),
            "the second message has none"
        );
        assert!(requests.next().await.is_none());
    }
}
