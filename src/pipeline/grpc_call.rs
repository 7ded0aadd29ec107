//! The pipeline for a gRPC call: the same steps as REST, in the same order —
//! admit, authenticate, classify (the typed message), bind the transaction,
//! decide, access_token, forward, seal on the way back — with errors
//! answered as gRPC statuses by the one mapping in [`respond`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tracing::Instrument as _;

use super::metrics::Step;
use super::stored::{Consistency, ReadStored, StoredReadError};
use super::{ConnInfo, Exchange, Pipeline, PipelineError, grpc_pin, respond};
use crate::authn::Principal;
use crate::body::{self, Body};
use crate::firestore::{Database, Operation};
use crate::grpc::{self, GrpcMethod, GrpcRequest, GrpcTimeout};
use crate::transaction::Sealing;
use crate::upstream::GrpcOutbound;
use crate::upstream::headers::Forwarding;

/// A classified call, ready to be bound and judged.
struct Call {
    method: GrpcMethod,
    request: GrpcRequest,
    operation: Arc<Operation>,
    begins_transaction: bool,
}

impl Pipeline {
    /// Answer one gRPC call; never fails, always audited (when the response
    /// stream ends, or the caller goes away).
    pub(super) async fn handle_grpc(&self, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        let mut ex = Exchange::begin(&req, conn, &self.settings.trusted_proxies);
        let span = tracing::info_span!("request", request_id = %ex.request_id, grpc = true);
        let outcome = self
            .run_grpc(req, conn, &mut ex)
            .instrument(span.clone())
            .await;
        let response = self.answer(outcome, &mut ex, respond::grpc_error_response);
        span.in_scope(|| tracing::debug!(rpc = ex.rpc().map(|m| m.as_str()), "gRPC call answered"));
        self.conclude(response, ex)
    }

    /// The steps, in order, as for REST.
    async fn run_grpc(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        self.audit.admit()?;
        let (parts, body) = req.into_parts();
        let timeout = GrpcTimeout::from_headers(&parts.headers)?;
        let mut laps = self.metrics.laps();
        let principal = self.authenticate(&parts, conn, ex).await;
        laps.lap(Step::Authenticate);
        let principal = principal?;
        self.admit_principal(&principal, ex)?;
        let call = self.classify_grpc(&parts, body, ex).await;
        laps.lap(Step::Classify);
        let mut call = call?;
        let sealing = self.bind_grpc_transaction(&principal, &mut call)?;
        let read = self.read_stored_grpc(&principal, &mut call, ex).await?;
        if read.is_some() {
            // Timed as a step of its own.
            laps.restart();
        }
        let decision = self
            .decide(&principal, &call.operation, read.as_ref(), ex)
            .await;
        laps.lap(Step::Decide);
        let decision = decision?;
        if let Some(read) = &read {
            let consistent = call.request.presented_transaction().is_some()
                || grpc_pin::client_read_time(&call.request).is_some();
            grpc_pin::pin(&mut call.request, &call.operation, read, consistent)?;
        }
        let token = self.access_token(decision.as_deref(), ex).await;
        laps.lap(Step::Token);
        let token = token?;
        let remaining = timeout
            .map(|t| t.remaining(ex.started().elapsed()))
            .transpose()?;
        let response = self
            .forward_grpc(&parts.headers, &call, remaining, &token, ex)
            .await;
        laps.lap(Step::UpstreamHead);
        let response = response?;
        Ok(match sealing {
            Some(sealing) => grpc::seal_response(
                call.method,
                response,
                sealing,
                self.settings.max_grpc_message_bytes,
            ),
            None => response,
        })
    }

    /// Step 2 for gRPC: path → method, the one request message (bounded,
    /// under the body deadline) → typed request → `Operation`. Only a
    /// database in `upstream.databases` gets this far.
    async fn classify_grpc(
        &self,
        parts: &http::request::Parts,
        body: Body,
        ex: &mut Exchange,
    ) -> Result<Call, PipelineError> {
        let method = GrpcMethod::from_path(parts.uri.path())?;
        // The frame header rides on top of the message limit.
        let limit = self.settings.max_grpc_message_bytes.saturating_add(5);
        let bytes: Bytes = self.read_body(body, limit).await.map_err(|err| match err {
            PipelineError::BodyTooLarge { .. } => grpc::GrpcError::MessageTooLarge {
                limit: self.settings.max_grpc_message_bytes,
            }
            .into(),
            err => err,
        })?;
        ex.add_bytes_in(bytes.len() as u64);
        let message = grpc::frame::single(&bytes, self.settings.max_grpc_message_bytes)?;
        let request = GrpcRequest::decode(method, message)?;
        let classified = grpc::classify(&request)?;
        let operation = Arc::new(classified.operation);
        ex.route = Some((operation.method, operation.database.name()));
        ex.operation = Some(Arc::clone(&operation));
        if !self.settings.databases.contains(&operation.database) {
            return Err(PipelineError::DatabaseNotServed);
        }
        let count = operation.targets.len();
        if count > self.settings.max_targets {
            return Err(PipelineError::TooManyTargets {
                count,
                limit: self.settings.max_targets,
            });
        }
        Ok(Call {
            method,
            request,
            operation,
            begins_transaction: classified.begins_transaction,
        })
    }

    /// Between classify and decide: the presented `bytes transaction` must
    /// be a seal owned by this principal and unexpired; the upstream id takes
    /// its place in the message. A response that will carry a new id gets a
    /// `Sealing`.
    fn bind_grpc_transaction(
        &self,
        principal: &Principal,
        call: &mut Call,
    ) -> Result<Option<Sealing>, PipelineError> {
        let fingerprint = principal.fingerprint();
        let database: &Database = &call.operation.database;
        if let Some(sealed) = call.request.presented_transaction() {
            *sealed = self
                .transactions
                .unseal_bytes(sealed, fingerprint, database)?;
        }
        let usage = crate::firestore::TransactionUse {
            presented: None,
            begins: call.begins_transaction,
        };
        Ok(self.transactions.sealing(fingerprint, database, &usage))
    }

    /// Before step 3, as for REST (`read_stored`): the documents a
    /// candidate rule reads, by one REST `batchGet` of the same database —
    /// in the request's transaction (its upstream id, bound already) or at
    /// its read time. A request that begins a transaction cannot be checked.
    async fn read_stored_grpc(
        &self,
        principal: &Principal,
        call: &mut Call,
        ex: &mut Exchange,
    ) -> Result<Option<ReadStored>, PipelineError> {
        let paths = self.policy.stored_needed(principal, &call.operation);
        if paths.is_empty() {
            return Ok(None);
        }
        let t = Instant::now();
        let consistency = if call.begins_transaction {
            return Err(StoredReadError::BeginsTransaction.into());
        } else if let Some(id) = call.request.presented_transaction() {
            Consistency::Transaction(id.clone())
        } else if let Some(read_time) = grpc_pin::client_read_time(&call.request) {
            Consistency::ReadTime(read_time)
        } else {
            Consistency::Now
        };
        self.read_documents(&paths, &consistency, &mut call.operation, ex, t)
            .await
            .map(Some)
    }

    /// Step 5 for gRPC: the re-encoded message over the pooled HTTP/2
    /// channel; the response (messages, then trailers) streams back.
    async fn forward_grpc(
        &self,
        client_headers: &http::HeaderMap,
        call: &Call,
        timeout: Option<HeaderValue>,
        token: &crate::upstream::AccessToken,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        let database = call.operation.database.to_string();
        let response = self
            .grpc_upstream
            .forward(GrpcOutbound {
                path: call.method.path(),
                client_headers,
                forwarding: Forwarding {
                    remote: ex.remote_ip(),
                    trusted: &self.settings.trusted_proxies,
                    proto: ex.proto(),
                    request_id: &ex.request_id,
                    database: &database,
                    routing: None,
                },
                timeout,
                token,
                body: body::full(call.request.encode()),
            })
            .await?;
        ex.upstream_status = Some(response.status().as_u16());
        ex.upstream_grpc_status = grpc::status_code(response.headers());
        Ok(response.map(body::boxed))
    }
}
