//! The `Listen` stream (bidirectional gRPC): the caller is authenticated
//! once, then every `add_target` is classified and judged (`get` for a
//! documents target, `list` for a query target) before it is forwarded; a
//! refused one is answered with a `REMOVE` carrying the refusal. While the
//! stream is open the caller's token is re-checked and the targets are
//! re-judged when the policy table changes. Audit: one line when the stream
//! opens, one per target decision, one when it ends (bytes, duration).

mod epochs;
mod listener;
mod targets;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::oneshot;

use tracing::Instrument as _;

use super::{ConnInfo, Exchange, Pipeline, PipelineError};
use crate::body::{self, Body, BoxError};
use crate::grpc::{GrpcError, GrpcTimeout, ListenRequests};
use crate::model::Method;
use crate::model::path::database_name;
use crate::policy::Decision;
pub(super) use epochs::Epochs;
use listener::Listener;
use targets::Targets;
use upstream::Upstream;

/// An open stream re-checks its caller's token when its verification
/// expires (its `exp`, or an introspection answer's cache life) and when
/// one of its caller's grants ends, and at least this often besides (a wall
/// clock that jumps); on a policy reload, a catalog change or a change in
/// any grant it re-judges its targets ([`Epochs`]).
const RECHECK_AT_LEAST: Duration = Duration::from_secs(60);
/// When the token's verification expiry is not known (evicted from the
/// cache): look again this soon.
const RECHECK_UNKNOWN: Duration = Duration::from_secs(1);
/// Messages queued between a stream's listener and either of its ends.
const QUEUED: usize = 32;

impl Pipeline {
    /// The opening of a Listen stream: the same `enter` as every call, then
    /// the first message (it names the database, which must be served), and
    /// the stream is handed to a [`Listener`] task, which judges every
    /// target as [`Pipeline::run`] judges a call. The task runs in the
    /// request's span, so every line it logs carries the request id.
    pub(super) async fn listen(
        self: &Arc<Self>,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        let (parts, body) = req.into_parts();
        let principal = self.enter(&parts, conn, ex).await?;
        // The caller's deadline bounds the whole stream.
        let deadline = GrpcTimeout::from_headers(&parts.headers)?
            .map(|t| tokio::time::Instant::from_std(ex.started()) + t.0);
        let mut requests =
            ListenRequests::new(body, self.settings.max_grpc_message_bytes, ex.bytes_in());
        // A stream that never says what it listens to holds a slot for
        // nothing: it gets as long as a request body does.
        let first = tokio::time::timeout(self.settings.body_pace.deadline, requests.next())
            .await
            .map_err(|_| GrpcError::NoFirstMessage)?
            .ok_or(GrpcError::MalformedFrame(
                "the stream ended before its first message",
            ))??;
        // The first message's tags go to every line of the stream.
        ex.request_tags = crate::audit::request_tags(&requests.take_tags());
        let database = database_name(&first.database)?;
        ex.route = Some((Method::Listen, database.name()));
        self.served(&database)?;
        // The stream itself is admitted; each target's decision is its own line.
        ex.decision = Some(Decision {
            allowed: true,
            targets: Vec::new(),
            upstream_account: None,
            reason: None,
            shadow: None,
            answer: Vec::new(),
        });
        let events = ex.events();
        let mut opening = events.event();
        opening.decision.clone_from(&ex.decision);
        self.audit
            .record(events.record(opening, None, self.audit.max_listed_targets()));
        // Messages as bytes and the trailers once, apart. futures' channel
        // allocates per message queued, where tokio's holds a block of 32
        // slots for as long as the stream lives.
        let (out, rx) = futures_channel::mpsc::channel::<Bytes>(QUEUED);
        let (end, ended) = oneshot::channel::<HeaderMap>();
        let version = self.policy.version(&principal);
        let listener = Listener {
            pipeline: Arc::clone(self),
            principal,
            headers: detached(&parts.headers),
            uri: detached_uri(parts.uri),
            database_name: database.to_string(),
            database,
            events,
            request_id: ex.request_id.clone(),
            remote: ex.remote_ip(),
            proto: ex.proto(),
            out,
            end: Some(end),
            upstream: Upstream::Closed,
            targets: Targets::default(),
            deadline,
            version,
            epochs: Epochs::subscribe(self),
            client_done: false,
            masked_fields: ex.masked_fields(),
        };
        tokio::spawn(listener.run(requests, first).in_current_span());
        let body = StreamBody::new(stream::unfold(Some((rx, ended)), |state| async move {
            let (mut rx, ended) = state?;
            match rx.next().await {
                Some(data) => Some((Ok::<_, BoxError>(Frame::data(data)), Some((rx, ended)))),
                // The listener is gone: its trailers, if it sent them.
                None => Some((Ok(Frame::trailers(ended.await.ok()?)), None)),
            }
        }));
        let mut response = Response::new(body::boxed(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        Ok(response)
    }
}

/// The request's URI in an allocation of its own (`:path` and `:authority`
/// are slices of h2's buffers too, as [`detached`] says of the headers).
fn detached_uri(uri: http::Uri) -> http::Uri {
    http::Uri::try_from(uri.to_string()).unwrap_or(uri)
}

/// The request's headers in allocations of their own. h2 hands header
/// values out as slices of its connection's read and HPACK buffers, and a
/// stream that keeps them for its whole life (to re-authenticate, to open
/// its upstream call) would pin those buffers, shared with every other
/// stream opened with it.
fn detached(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // A value h2 accepted is a valid value: the copy cannot fail.
        if let Ok(mut copy) =
            HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
        {
            copy.set_sensitive(value.is_sensitive());
            out.append(name.clone(), copy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_headers_are_equal_and_share_no_buffer() {
        let buffer = Bytes::from_static(b"Bearer abc.def.ghi application/grpc");
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_maybe_shared(buffer.slice(0..18)).unwrap();
        token.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, token);
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_maybe_shared(buffer.slice(19..)).unwrap(),
        );
        let copy = detached(&headers);
        assert_eq!(copy, headers);
        assert!(copy[header::AUTHORIZATION].is_sensitive());
        let within = |v: &HeaderValue| buffer.as_ptr_range().contains(&v.as_bytes().as_ptr());
        assert!(headers.values().any(within));
        assert!(
            !copy.values().any(within),
            "a copy still points into h2's buffer"
        );
    }
}
