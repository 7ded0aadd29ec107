//! One open Listen stream: the loop over the client's messages, the
//! upstream's frames and the periodic re-check, until one of them ends it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::upstream::Leased;
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message as _;

use super::targets::{Masks, Targets};
use super::upstream::{AbortOnDrop, Upstream, UpstreamEvent, grpc_status_of, upstream_event};
use super::{QUEUED, RECHECK_AT_LEAST, RECHECK_UNKNOWN};
use crate::authn::Principal;
use crate::body::{self, BoxError};
use crate::grpc::proto::{listen_request, listen_response, target_change};
use crate::grpc::{self, GrpcError, ListenRequests, frame, proto};
use crate::model::{ClassifyError, Database, Operation};
use crate::pipeline::exchange::StreamEvents;
use crate::pipeline::{Exchange, Pipeline, PipelineError, respond};
use crate::upstream::headers::Forwarding;
use crate::upstream::{GrpcOutbound, UpstreamError};

pub(super) struct Listener {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) principal: Arc<Principal>,
    pub(super) headers: HeaderMap,
    pub(super) uri: http::Uri,
    pub(super) database: Database,
    pub(super) database_name: String,
    pub(super) events: StreamEvents,
    pub(super) request_id: String,
    pub(super) remote: IpAddr,
    pub(super) proto: &'static str,
    /// The messages to the client, then (once the sender is gone) its
    /// trailers through `end`.
    pub(super) out: mpsc::Sender<Bytes>,
    pub(super) end: Option<tokio::sync::oneshot::Sender<HeaderMap>>,
    pub(super) upstream: Upstream,
    /// The targets, by the id Firestore knows them by, with the operation
    /// each was judged as.
    pub(super) targets: Targets,
    /// The caller's `grpc-timeout`: the stream ends `DEADLINE_EXCEEDED` then.
    pub(super) deadline: Option<tokio::time::Instant>,
    /// What the targets were judged against: the policy table's epoch,
    /// the catalog index's generation and the caller's grants
    /// ([`crate::policy::PolicyEngine::version`]).
    pub(super) version: crate::policy::JudgedVersion,
    /// Fires when the table, the catalog or any grant changes (one watcher
    /// per pipeline).
    pub(super) epochs: tokio::sync::watch::Receiver<crate::policy::Changes>,
    /// The client half-closed: so is the upstream request, once open.
    pub(super) client_done: bool,
    /// Fields masked out of the document changes, summed over the stream
    /// (its closing audit record's `masked_fields`).
    pub(super) masked_fields: Arc<std::sync::atomic::AtomicU64>,
}

/// How the stream ends: the trailers the client gets.
type End = HeaderMap;

impl Listener {
    pub(super) async fn run(mut self, requests: ListenRequests, first: proto::ListenRequest) {
        let trailers = self.serve(requests, first).await;
        let end = self.end.take();
        // Every message is queued before the trailers can be read.
        drop(self);
        if let Some(end) = end {
            let _ = end.send(trailers);
        }
    }

    /// The stream's task lives as long as the stream and is as large as
    /// its biggest state, so what awaits a decision, a stored read or a
    /// token mint is boxed: an idle stream holds only the `select!` below.
    async fn serve(&mut self, mut requests: ListenRequests, first: proto::ListenRequest) -> End {
        if let Err(err) = Box::pin(self.on_request(first)).await {
            return self.fail(&err);
        }
        // One timer per stream, at its token's expiry: no periodic tick.
        let recheck = tokio::time::sleep_until(self.next_recheck());
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                event = upstream_event(&mut self.upstream) => {
                    let end = match event {
                        UpstreamEvent::Opened(opened) => self.on_opened(opened),
                        UpstreamEvent::Frame(frame) => Box::pin(self.on_upstream_frame(frame)).await,
                    };
                    if let Some(end) = end {
                        return end;
                    }
                }
                request = requests.next(), if !self.client_done => match request {
                    Some(Ok(r)) => {
                        if let Err(err) = Box::pin(self.on_request(r)).await {
                            return self.fail(&err);
                        }
                    }
                    Some(Err(e)) => return self.fail(&e.into()),
                    None => {
                        self.client_done = true;
                        // Half-close upstream too; with nothing forwarded, done.
                        match &mut self.upstream {
                            Upstream::Closed => return ok(),
                            Upstream::Opening { .. } => {}
                            Upstream::Open { tx, .. } => *tx = None,
                        }
                    }
                },
                () = &mut recheck => {
                    if let Err(err) = Box::pin(self.recheck()).await {
                        return self.fail(&err);
                    }
                    recheck.as_mut().reset(self.next_recheck());
                }
                Ok(()) = self.epochs.changed() => {
                    if let Err(err) = Box::pin(self.recheck()).await {
                        return self.fail(&err);
                    }
                }
                _ = sleep_until(self.deadline) => {
                    return self.fail(&GrpcError::StreamDeadline.into());
                }
                () = client_gone(&mut self.end) => return HeaderMap::new(),
            }
        }
    }

    /// One client message: the database must stay the stream's; a new
    /// target is judged, a removal passes.
    async fn on_request(&mut self, r: proto::ListenRequest) -> Result<(), PipelineError> {
        if r.database != self.database_name {
            return Err(ClassifyError::ForeignDatabase.into());
        }
        match r.target_change {
            Some(listen_request::TargetChange::AddTarget(target)) => {
                self.add_target(r.labels, target).await
            }
            Some(listen_request::TargetChange::RemoveTarget(id)) => {
                self.targets.remove(id);
                self.forward(proto::ListenRequest {
                    database: r.database,
                    labels: r.labels,
                    target_change: Some(listen_request::TargetChange::RemoveTarget(id)),
                })
                .await;
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn add_target(
        &mut self,
        labels: HashMap<String, String>,
        target: proto::Target,
    ) -> Result<(), PipelineError> {
        let id = target.target_id;
        if id != 0 && self.targets.in_use(id) {
            // Never forwarded: Firestore would refuse it, and firegate would
            // lose track of the target already known by that id.
            return Err(GrpcError::TargetIdInUse.into());
        }
        let mut event = self.events.event();
        let limit = self.pipeline.settings.max_listen_targets;
        if self.targets.len() >= limit {
            let err = GrpcError::TooManyListenTargets { limit }.into();
            return self.refuse(id, event, &err).await;
        }
        let op = match grpc::listen_target(&self.database, &target) {
            Ok(op) => Arc::new(op),
            Err(err) => return self.refuse(id, event, &err.into()).await,
        };
        let (account, masks) = match self.judge(&op, &mut event).await {
            Ok(judged) => judged,
            Err(err) => return self.refuse(id, event, &err).await,
        };
        // One stream, one upstream identity: a target whose rule names
        // another account cannot ride on this stream's token.
        match &self.upstream {
            Upstream::Closed => self.open(account).await?,
            Upstream::Opening { account: a, .. } | Upstream::Open { account: a, .. }
                if *a != account =>
            {
                let reason = Some("listen_upstream_account_differs".to_owned());
                self.record(event, reason);
                return self.remove_on_client(id, &PipelineError::Denied).await;
            }
            _ => {}
        }
        self.record(event, None);
        let request = proto::ListenRequest {
            database: self.database_name.clone(),
            labels,
            target_change: Some(listen_request::TargetChange::AddTarget(target)),
        };
        if id == 0 {
            if let Some(request) = self.targets.add_unnumbered(op, masks, request) {
                self.forward(request).await;
            }
        } else {
            self.targets.add(id, op, masks);
            self.forward(request).await;
        }
        Ok(())
    }

    /// A target's judgement, the same as a call's: `within_limits`, then
    /// [`Pipeline::judge`] — without a stored read: a watched document
    /// would need one on every change, not once, so a rule that reads
    /// `resource` refuses it. The upstream account its rule names comes back.
    async fn judge(
        &self,
        op: &Arc<Operation>,
        event: &mut Exchange,
    ) -> Result<(Option<String>, Masks), PipelineError> {
        let pipeline = &self.pipeline;
        let mut op = Arc::clone(op);
        pipeline.within_limits(&op, event)?;
        let mut laps = pipeline.metrics.laps();
        let judged = pipeline
            .judge(&self.principal, &mut op, None, event, &mut laps)
            .await?;
        Ok((judged.account, judged.masks))
    }

    /// Refuse one target: audited, and the client told with a `REMOVE`.
    async fn refuse(
        &mut self,
        id: i32,
        event: Exchange,
        err: &PipelineError,
    ) -> Result<(), PipelineError> {
        let reason = err.reason(event.decision.as_ref());
        self.record(event, Some(reason));
        self.remove_on_client(id, err).await
    }

    /// Why a `REMOVE` with a `cause` rather than ending the stream: the
    /// stream may carry other, allowed targets (the web SDKs multiplex), and
    /// the server clients treat it as final — Node's `watch.ts` and Python's
    /// `watch.py` close the listener with "Error 7: …" and do not retry,
    /// where some stream-level codes would be retried with backoff.
    async fn remove_on_client(
        &mut self,
        id: i32,
        err: &PipelineError,
    ) -> Result<(), PipelineError> {
        let (code, message) = respond::grpc_cause(err, &self.request_id);
        let remove = proto::ListenResponse {
            response_type: Some(listen_response::ResponseType::TargetChange(
                proto::TargetChange {
                    target_change_type: target_change::TargetChangeType::Remove as i32,
                    target_ids: vec![id],
                    cause: Some(grpc::rpc::Status {
                        code,
                        message,
                        details: Vec::new(),
                    }),
                    resume_token: Vec::new(),
                    read_time: None,
                },
            )),
        };
        let _ = send(&mut self.out, frame::encode(&remove)).await;
        Ok(())
    }

    fn record(&self, event: Exchange, reason: Option<String>) {
        let audit = &self.pipeline.audit;
        audit.record(
            self.events
                .record(event, reason, audit.max_listed_targets()),
        );
    }

    /// Mint the token for `account` and open the upstream call; messages
    /// queue in the request channel until it is connected.
    async fn open(&mut self, account: Option<String>) -> Result<(), PipelineError> {
        let token = self
            .pipeline
            .credentials
            .access_token(account.as_deref())
            .await?;
        let (tx, rx) = mpsc::channel::<Bytes>(QUEUED);
        let body = StreamBody::new(rx.map(|bytes| Ok::<_, BoxError>(Frame::data(bytes))));
        let pipeline = Arc::clone(&self.pipeline);
        let headers = self.headers.clone();
        let (remote, proto, request_id) = (self.remote, self.proto, self.request_id.clone());
        let database = self.database_name.clone();
        let call = tokio::spawn(async move {
            pipeline
                .grpc_upstream
                .open_stream(GrpcOutbound {
                    path: grpc::LISTEN_PATH,
                    client_headers: &headers,
                    forwarding: Forwarding {
                        remote,
                        trusted: &pipeline.settings.trusted_proxies,
                        proto,
                        request_id: &request_id,
                        database: &database,
                        routing: None,
                    },
                    timeout: None,
                    token: &token,
                    body: body::boxed(body),
                })
                .await
        });
        self.upstream = Upstream::Opening {
            account,
            tx,
            call: AbortOnDrop(call),
        };
        Ok(())
    }

    /// Send one (re-encoded) message upstream. A closed upstream shows up
    /// as the end of its response, which ends the stream.
    async fn forward(&mut self, message: proto::ListenRequest) {
        let tx = match &mut self.upstream {
            Upstream::Opening { tx, .. } => Some(tx),
            Upstream::Open { tx, .. } => tx.as_mut(),
            Upstream::Closed => None,
        };
        if let Some(tx) = tx {
            let _ = send(tx, frame::encode(&message)).await;
        }
    }

    fn on_opened(
        &mut self,
        opened: Result<Result<Response<Leased>, UpstreamError>, tokio::task::JoinError>,
    ) -> Option<End> {
        let response = match opened {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Some(self.fail(&err.into())),
            Err(_) => {
                return Some(
                    self.fail(&UpstreamError::ProtocolError("the call task failed".into()).into()),
                );
            }
        };
        let (parts, body) = response.into_parts();
        // Trailers-only: upstream refused the stream; its status is the end.
        if parts.headers.contains_key("grpc-status") {
            return Some(grpc_status_of(&parts.headers));
        }
        let Upstream::Opening { account, tx, .. } =
            std::mem::replace(&mut self.upstream, Upstream::Closed)
        else {
            return None;
        };
        self.upstream = Upstream::Open {
            account,
            tx: (!self.client_done).then_some(tx),
            body,
            deframer: frame::Deframer::new(self.pipeline.settings.max_grpc_message_bytes),
        };
        None
    }

    /// Upstream messages pass to the client one by one; its trailers end it.
    async fn on_upstream_frame(
        &mut self,
        frame: Option<Result<Frame<Bytes>, hyper::Error>>,
    ) -> Option<End> {
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => {
                return Some(self.fail(&UpstreamError::ProtocolError(err.to_string()).into()));
            }
            None => {
                return Some(
                    self.fail(
                        &UpstreamError::ProtocolError("the stream ended without a status".into())
                            .into(),
                    ),
                );
            }
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                return Some(
                    frame
                        .into_trailers()
                        .map(|t| grpc_status_of(&t))
                        .unwrap_or_default(),
                );
            }
        };
        let Upstream::Open { deframer, .. } = &mut self.upstream else {
            return None;
        };
        deframer.push(&data);
        let mut messages = Vec::new();
        loop {
            match deframer.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(_) => return Some(self.fail(&unreadable())),
            }
        }
        for m in messages {
            // Passed through as they came unless an id is awaited or a
            // revocation is unacknowledged: only then decoded.
            let m = if self.targets.screening() || self.targets.masking() {
                let Ok(message) = proto::ListenResponse::decode(m.as_ref()) else {
                    return Some(self.fail(&unreadable()));
                };
                match self.on_screened(message).await {
                    Some(mut message) => {
                        let masked = self.targets.mask(&mut message);
                        if masked > 0 {
                            self.masked_fields
                                .fetch_add(masked, std::sync::atomic::Ordering::Relaxed);
                        }
                        frame::encode(&message)
                    }
                    None => continue,
                }
            } else {
                frame::encode_raw(&m)
            };
            if send(&mut self.out, m).await.is_err() {
                return Some(HeaderMap::new());
            }
        }
        None
    }

    /// One decoded upstream message through the target bookkeeping: what
    /// is left for the client, if anything. A settled id-0 target lets the
    /// next held one go, judged again.
    async fn on_screened(
        &mut self,
        message: proto::ListenResponse,
    ) -> Option<proto::ListenResponse> {
        let screened = self.targets.screen(message);
        for id in screened.remove {
            self.forward_remove(id).await;
        }
        if screened.settled {
            while let Some(held) = self.targets.next_held() {
                let mut event = self.events.event();
                match self.judge(&held.op, &mut event).await {
                    Ok((_, masks)) => {
                        self.record(event, None);
                        let request = self.targets.send_held(held, masks);
                        self.forward(request).await;
                    }
                    Err(err) => {
                        let _ = self.refuse(0, event, &err).await;
                    }
                }
            }
        }
        screened.pass
    }

    async fn forward_remove(&mut self, id: i32) {
        self.forward(proto::ListenRequest {
            database: self.database_name.clone(),
            labels: HashMap::new(),
            target_change: Some(listen_request::TargetChange::RemoveTarget(id)),
        })
        .await;
    }

    /// When to re-check the caller's token and grants: just after its
    /// verification expires or one of its grants ends, and at least every
    /// [`RECHECK_AT_LEAST`].
    fn next_recheck(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let wall = std::time::SystemTime::now();
        let until = |at: std::time::SystemTime| {
            at.duration_since(wall)
                .unwrap_or_default()
                .saturating_add(std::time::Duration::from_millis(10))
        };
        let mut wait = match self.pipeline.authn.verified_until(&self.headers, &self.uri) {
            Some(at) => until(at).min(RECHECK_AT_LEAST),
            None => RECHECK_UNKNOWN,
        };
        if let Some(at) = self.pipeline.policy.next_grant_end(&self.principal) {
            wait = wait.min(until(at));
        }
        now + wait
    }

    /// The token must still hold; a changed policy table, catalog or a
    /// change in the caller's grants (one given, revoked or expired)
    /// re-judges every
    /// target, and a revoked one is removed on both sides.
    async fn recheck(&mut self) -> Result<(), PipelineError> {
        if let Err(err) = self
            .pipeline
            .authn
            .authenticate(&self.headers, &self.uri, None)
            .await
        {
            let err = PipelineError::Authn(err);
            if respond::is_unauthenticated(&err) {
                self.record(self.events.event(), Some(err.reason(None)));
                return Err(err);
            }
        }
        let version = self.pipeline.policy.version(&self.principal);
        if version == self.version {
            return Ok(());
        }
        self.version = version;
        for (id, op) in self.targets.active() {
            let (reason, cause) = match self.rejudge(&op).await {
                Ok(masks) => {
                    self.targets.set_masks(id, masks);
                    continue;
                }
                Err(refused) => refused,
            };
            self.targets.revoke(id);
            self.remove_on_client(id, &cause).await?;
            self.record_revoked(&op, reason);
            self.forward_remove(id).await;
        }
        // An id-0 target in flight is removed once its id comes; held ones
        // are dropped before they go anywhere.
        if let Some(op) = self.targets.awaiting() {
            match self.rejudge(&op).await {
                Ok(masks) => self.targets.set_awaiting_masks(masks),
                Err((reason, cause)) => {
                    self.targets.revoke_awaiting();
                    self.remove_on_client(0, &cause).await?;
                    self.record_revoked(&op, reason);
                }
            }
        }
        let mut kept = std::collections::VecDeque::new();
        for held in self.targets.take_held() {
            match self.rejudge(&held.op).await {
                Ok(_) => kept.push_back(held),
                Err((reason, cause)) => {
                    self.remove_on_client(0, &cause).await?;
                    self.record_revoked(&held.op, reason);
                }
            }
        }
        self.targets.put_back_held(kept);
        Ok(())
    }

    /// A target judged again: its masks while it holds, else why it goes.
    async fn rejudge(&self, op: &Arc<Operation>) -> Result<Masks, (String, PipelineError)> {
        let mut event = self.events.event();
        Err(match self.judge(op, &mut event).await {
            Ok((account, masks)) if account == *self.upstream.account() => return Ok(masks),
            Ok(_) => (
                "listen_upstream_account_differs".to_owned(),
                PipelineError::Denied,
            ),
            Err(PipelineError::Denied) => {
                ("listen_target_revoked".to_owned(), PipelineError::Denied)
            }
            // Fail closed: a target that cannot be judged now is not kept.
            Err(err) => (err.reason(event.decision.as_ref()), err),
        })
    }

    fn record_revoked(&self, op: &Arc<Operation>, reason: String) {
        let mut event = self.events.event();
        event.operation = Some(Arc::clone(op));
        self.record(event, Some(reason));
    }

    /// End the stream with `err`: audited with its reason, logged, and
    /// answered as the stream's status.
    fn fail(&self, err: &PipelineError) -> End {
        let reason = err.reason(None);
        tracing::debug!(reason = %reason, "Listen stream ended");
        self.record(self.events.event(), Some(reason));
        respond::grpc_error_trailers(err, &self.request_id)
    }
}

fn unreadable() -> PipelineError {
    UpstreamError::ProtocolError("unreadable upstream message".into()).into()
}

/// Until `deadline`, or forever.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn ok() -> End {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

/// Queue `message`, waiting while the channel is full; `Err` once the
/// other end is gone.
async fn send(tx: &mut mpsc::Sender<Bytes>, message: Bytes) -> Result<(), mpsc::SendError> {
    std::future::poll_fn(|cx| tx.poll_ready(cx)).await?;
    tx.start_send(message)
}

/// Resolves once the client's response body is dropped (the client went
/// away): the trailers' receiver goes with it.
async fn client_gone(end: &mut Option<tokio::sync::oneshot::Sender<HeaderMap>>) {
    match end {
        Some(end) => end.closed().await,
        None => std::future::pending().await,
    }
}
