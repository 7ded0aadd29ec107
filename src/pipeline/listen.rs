//! The `Listen` stream (bidirectional gRPC): the caller is authenticated
//! once, then every `add_target` is classified and judged (`get` for a
//! documents target, `list` for a query target) before it is forwarded; a
//! refused one is answered with a `REMOVE` carrying the refusal. While the
//! stream is open the caller's token is re-checked and the targets are
//! re-judged when the policy table changes. Audit: one line when the stream
//! opens, one per target decision, one when it ends (bytes, duration).

mod listener;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::sync::mpsc;

use super::{ConnInfo, Exchange, Pipeline, PipelineError, respond};
use crate::body::{self, Body, BoxError};
use crate::firestore::Method;
use crate::firestore::path::database_name;
use crate::grpc::{self, GrpcError, ListenRequests};
use crate::policy::Decision;
use listener::Listener;
use upstream::Upstream;

/// How often an open stream re-checks its caller's token and the policy
/// table's epoch: both are cheap (a token-cache lookup, an atomic load).
const RECHECK: Duration = Duration::from_secs(1);

type ClientFrame = Result<Frame<Bytes>, BoxError>;

impl Pipeline {
    /// [`Pipeline::handle`] for a caller holding the pipeline shared: a
    /// Listen stream outlives the call that opens it.
    pub async fn handle_shared(
        self: &Arc<Self>,
        req: Request<Body>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        if grpc::is_grpc(req.version(), req.headers()) && req.uri().path() == grpc::LISTEN_PATH {
            // Boxed: a Listen's opening is not part of every request's state.
            return Box::pin(self.listen(req, conn)).await;
        }
        self.handle(req, conn).await
    }

    async fn listen(self: &Arc<Self>, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        let mut ex = Exchange::begin(&req, conn, &self.settings.trusted_proxies);
        let outcome = self.open_listen(req, conn, &mut ex).await;
        let response = self.answer(outcome, &mut ex, respond::grpc_error_response);
        self.conclude(response, ex)
    }

    /// Admit, authenticate, read the first message (it names the database),
    /// then hand the stream to a [`Listener`] task.
    async fn open_listen(
        self: &Arc<Self>,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        self.audit.admit()?;
        let (parts, body) = req.into_parts();
        let principal = self.authenticate(&parts, conn, ex).await?;
        self.admit_principal(&principal, ex)?;
        let mut requests =
            ListenRequests::new(body, self.settings.max_grpc_message_bytes, ex.bytes_in());
        let first = requests.next().await.ok_or(GrpcError::MalformedFrame(
            "the stream ended before its first message",
        ))??;
        let database = database_name(&first.database)?;
        ex.route = Some((Method::Listen, database.to_string()));
        if !self.settings.databases.contains(&database) {
            return Err(PipelineError::DatabaseNotServed);
        }
        // The stream itself is admitted; each target's decision is its own line.
        ex.decision = Some(Decision {
            allowed: true,
            targets: Vec::new(),
            upstream_account: None,
            reason: None,
            shadow: None,
        });
        let events = ex.events();
        self.audit.record(events.record(
            None,
            ex.decision.as_ref(),
            None,
            self.audit.max_listed_targets(),
        ));
        let (out, rx) = mpsc::channel::<ClientFrame>(32);
        let listener = Listener {
            pipeline: Arc::clone(self),
            principal,
            headers: parts.headers,
            uri: parts.uri,
            database_name: database.to_string(),
            database,
            events,
            request_id: ex.request_id.clone(),
            remote: ex.remote_ip(),
            proto: ex.proto(),
            out,
            upstream: Upstream::Closed,
            targets: HashMap::new(),
            epoch: self.policy.epoch(),
            client_done: false,
        };
        tokio::spawn(listener.run(requests, first));
        let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        }));
        let mut response = Response::new(body::boxed(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        Ok(response)
    }
}
