//! The request pipeline. [`Pipeline::handle`] turns the outcome into a
//! response (an error through [`respond`], the one mapping) and always
//! leaves one audit record; [`Pipeline::run`] is the steps, in order, as
//! plain `?` calls — admit, authenticate, classify, bind (transaction ids),
//! decide, access_token, forward, and seal on the way back. The order is a
//! security property.

mod audited;
mod exchange;
mod fairness;
mod grpc_call;
mod grpc_pin;
mod listen;
mod metrics;
mod pin;
pub mod respond;
mod stored;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use ipnet::IpNet;
use tracing::Instrument as _;

use crate::audit::{AuditError, Auditor};
use prometheus_client::registry::Registry;

use crate::authn::{Authenticator, AuthnError, Principal};
use crate::body::{self, Body, Pace, ReadError};
use crate::config::Config;
use crate::firestore::{self, ClassifyError, Database, Operation, Route, TransactionUse};
use crate::policy::{Decision, PolicyEngine};
use crate::server::admin::{Check, Ready};
use crate::server::cors::{self, Cors};
use crate::transaction::{SealError, Sealing, TransactionError, TransactionSealer};
use crate::upstream::{
    AccessToken, Credentials, CredentialsError, Outbound, Upstream, UpstreamError,
};

pub use crate::server::ConnInfo;
pub use exchange::Exchange;
pub use metrics::RequestMetrics;
use metrics::Step;
pub use stored::StoredReadError;
use stored::{Consistency, ReadStored, StoredReader};

/// Limits and settings the pipeline itself applies.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Largest request body buffered for classification.
    pub max_body_bytes: usize,
    /// How long a client may take over its body.
    pub body_pace: Pace,
    /// Most targets one request may name.
    pub max_targets: usize,
    /// The databases served (`upstream.databases`).
    pub databases: Vec<Database>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed to read answers (`server.cors`).
    pub cors: Option<Cors>,
    /// Largest gRPC message decoded (`server.limits.max_grpc_message_bytes`).
    pub max_grpc_message_bytes: usize,
}

/// Every way a request can end without its upstream answer passed on.
/// [`respond::answer`] turns each into a Firestore-shaped error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error("request body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error("request body not complete within the read timeout")]
    BodyReadTimeout,
    #[error("request body arrived below the minimum rate")]
    BodyTooSlow,
    #[error("principal already has {limit} requests in flight")]
    PrincipalBusy { limit: usize },
    #[error("request names {count} targets, over the limit of {limit}")]
    TooManyTargets { count: usize, limit: usize },
    #[error("database not served by this proxy")]
    DatabaseNotServed,
    #[error("refused by policy")]
    Denied,
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
    #[error(transparent)]
    StoredRead(#[from] StoredReadError),
}

impl PipelineError {
    /// The precise reason, for the audit line only.
    pub fn reason(&self, decision: Option<&Decision>) -> String {
        match self {
            PipelineError::Audit(e) => e.reason().into(),
            PipelineError::Authn(e) => e.reason().into(),
            PipelineError::Classify(e) => e.reason().into(),
            PipelineError::Transaction(e) => e.reason().into(),
            PipelineError::BodyTooLarge { .. } => "body_too_large".into(),
            PipelineError::BodyRead(_) => "body_unreadable".into(),
            PipelineError::BodyReadTimeout => "body_read_timeout".into(),
            PipelineError::BodyTooSlow => "body_too_slow".into(),
            PipelineError::PrincipalBusy { .. } => "principal_in_flight_limit".into(),
            PipelineError::TooManyTargets { .. } => "too_many_targets".into(),
            PipelineError::DatabaseNotServed => "database_not_served".into(),
            PipelineError::Denied => decision
                .and_then(|d| d.reason.clone())
                .unwrap_or_else(|| "denied".into()),
            PipelineError::Credentials(e) => e.reason().into(),
            PipelineError::Upstream(e) => e.reason().into(),
            PipelineError::Seal(e) => e.reason().into(),
            PipelineError::Grpc(e) => e.reason().into(),
            PipelineError::StoredRead(e) => e.reason().into(),
        }
    }
}

/// The six steps and what they need.
pub struct Pipeline {
    authn: Authenticator,
    transactions: TransactionSealer,
    policy: PolicyEngine,
    credentials: Credentials,
    upstream: Upstream,
    grpc_upstream: crate::upstream::GrpcUpstream,
    audit: Arc<Auditor>,
    in_flight: fairness::InFlight,
    settings: PipelineSettings,
    metrics: RequestMetrics,
    stored: StoredReader,
}

impl Pipeline {
    /// Build every step from the validated config, registering metrics.
    pub async fn from_config(config: &Config, registry: &mut Registry) -> anyhow::Result<Pipeline> {
        Ok(Pipeline {
            authn: Authenticator::new(&config.authn, registry).await?,
            transactions: TransactionSealer::new(&config.transactions)?,
            policy: PolicyEngine::new(&config.policy, registry).await?,
            credentials: Credentials::new(&config.upstream.credentials, registry).await?,
            upstream: Upstream::new(&config.upstream, registry)?,
            grpc_upstream: crate::upstream::GrpcUpstream::new(&config.upstream)?,
            audit: Arc::new(Auditor::new(&config.audit, registry).await?),
            in_flight: fairness::InFlight::new(config.server.limits.max_in_flight_per_principal),
            settings: PipelineSettings {
                max_body_bytes: config.server.limits.max_body_bytes,
                body_pace: Pace {
                    deadline: config.server.limits.body_read_timeout,
                    min_rate: config.server.limits.min_body_rate,
                },
                max_targets: config.server.limits.max_targets,
                databases: config.upstream.databases.clone(),
                trusted_proxies: config.server.trusted_proxies.clone(),
                cors: config.server.cors.clone(),
                max_grpc_message_bytes: config.server.limits.max_grpc_message_bytes,
            },
            metrics: RequestMetrics::register(registry),
            stored: StoredReader::register(registry),
        })
    }

    /// Reload the policy directory (what SIGHUP or a file change does); on
    /// error the last good table keeps serving.
    pub async fn reload_policy(&self) -> anyhow::Result<()> {
        self.policy.reload().await?;
        Ok(())
    }

    /// Write every queued audit record.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// `None` when every step is ready; otherwise what is not.
    pub fn not_ready(&self) -> Option<String> {
        Ready {
            checks: self.readiness(),
        }
        .blocking()
    }

    /// One `/readyz` check per dependency of the steps. A refused policy
    /// reload is a note on a ready `policy_table`: the last good table serves.
    pub fn readiness(&self) -> Vec<Check> {
        let mut policy = Check::required("policy_table", self.policy.not_ready());
        if policy.ready {
            policy.detail = self
                .policy
                .reload_error()
                .map(|e| format!("policy reload refused; serving the last good table: {e}"));
        }
        vec![
            Check::required("issuer_keys", self.authn.not_ready()),
            Check::required("upstream_token", self.credentials.not_ready()),
            policy,
            Check::required("audit_sink", self.audit.not_ready()),
        ]
    }

    /// Answer one request. Never fails: every error becomes a Firestore JSON
    /// error, and the audit record is written when the response body ends
    /// (or the client goes away).
    pub async fn handle(&self, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        if crate::grpc::is_grpc(req.version(), req.headers()) {
            // Boxed, as `run` is below: not part of every REST request's state.
            return Box::pin(self.handle_grpc(req, conn)).await;
        }
        let cors = self.settings.cors.as_ref();
        if let Some(preflight) = cors::preflight(cors, &req) {
            return preflight;
        }
        let origin = cors::origin(&req);
        let mut ex = Exchange::begin(&req, conn, &self.settings.trusted_proxies);
        // One span per request: every log line of its steps carries the id.
        let span = tracing::info_span!("request", request_id = %ex.request_id);
        // Boxed: the steps' state is kilobytes, and every future that holds
        // it inline (this one, and the handler's around it) is copied whole
        // each time it is moved; one allocation costs less.
        let run = Box::pin(self.run(req, conn, &mut ex));
        let outcome = run.instrument(span.clone()).await;
        let mut response = self.answer(outcome, &mut ex, respond::error_response);
        cors::decorate(cors, origin.as_ref(), &mut response);
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                rpc = ex.rpc().map(|m| m.as_str()),
                "request answered"
            )
        });
        self.conclude(response, ex)
    }

    /// The outer half every wire format shares: a failure becomes `render`'s
    /// answer (and the exchange's refusal); the answer carries the request id.
    fn answer(
        &self,
        outcome: Result<Response<Body>, PipelineError>,
        ex: &mut Exchange,
        render: fn(&PipelineError, &str) -> Response<Body>,
    ) -> Response<Body> {
        let mut response = match outcome {
            Ok(response) => response,
            Err(err) => {
                let reason = err.reason(ex.decision.as_ref());
                ex.refuse(reason, &err);
                render(&err, &ex.request_id)
            }
        };
        if let Ok(id) = HeaderValue::from_str(&ex.request_id) {
            response
                .headers_mut()
                .insert(crate::upstream::headers::X_REQUEST_ID.clone(), id);
        }
        response
    }

    /// Count the request and hand its record to the response body, which
    /// writes it when the body ends or the client goes away.
    fn conclude(&self, response: Response<Body>, ex: Exchange) -> Response<Body> {
        let status = response.status().as_u16();
        self.metrics
            .request(ex.rpc(), ex.outcome(), status, ex.started().elapsed());
        ex.finish(response, Arc::clone(&self.audit))
    }

    /// The steps, in order. Each `?` ends the request with that step's error.
    async fn run(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        self.audit.admit()?;
        let (mut parts, body) = req.into_parts();
        firestore::refuse_grpc(&parts.headers)?;
        let mut laps = self.metrics.laps();
        let principal = self.authenticate(&parts, conn, ex).await;
        laps.lap(Step::Authenticate);
        let principal = principal?;
        self.admit_principal(&principal, ex)?;
        let classified = self.classify(&parts, body, ex).await;
        laps.lap(Step::Classify);
        let (mut route, mut op, usage, body) = classified?;
        let (bytes, sealing) = self.bind_transaction(&principal, &mut route, &usage, body)?;
        if sealing.is_some() {
            // The response is rewritten on the way back: ask for it uncompressed.
            parts.headers.remove(header::ACCEPT_ENCODING);
        }
        let read = self
            .read_stored(&principal, &mut op, &route, &usage, &bytes, ex)
            .await?;
        if read.is_some() {
            // Timed as a step of its own.
            laps.restart();
        }
        let account = self.decide(&principal, &op, read.as_ref(), ex).await;
        laps.lap(Step::Decide);
        let account = account?;
        let body = self.request_body(&mut route, bytes, &op, read.as_ref(), &usage)?;
        let token = self.access_token(account.as_deref(), ex).await;
        laps.lap(Step::Token);
        let token = token?;
        let response = self.forward(&parts, &route, body, &token, ex).await;
        laps.lap(Step::UpstreamHead);
        let response = response?;
        Ok(match sealing {
            Some(sealing) => sealing.seal_response(response)?,
            None => response,
        })
    }

    /// Step 1: bearer token → `Principal` (401; 503 when the issuer cannot be asked).
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Arc<Principal>, PipelineError> {
        let principal = self
            .authn
            .authenticate(&parts.headers, &parts.uri, Some(&conn.last_token))
            .await?;
        ex.principal = Some(Arc::clone(&principal));
        Ok(principal)
    }

    /// After step 1: the principal's place under
    /// `max_in_flight_per_principal`, held until the response ends (429).
    fn admit_principal(
        &self,
        principal: &Principal,
        ex: &mut Exchange,
    ) -> Result<(), PipelineError> {
        let slot = self
            .in_flight
            .admit(principal)
            .ok_or(PipelineError::PrincipalBusy {
                limit: self.in_flight.limit(),
            })?;
        ex.hold(slot);
        Ok(())
    }

    /// Step 2: method + URL + body → `Operation` (400/403/404/408/413).
    /// Only a database in `upstream.databases` gets this far. Every body is
    /// read under the body deadline: in full for the methods whose bodies
    /// name documents, and for get, list and delete only to make sure there
    /// is none (HTTP/2 can send DATA without declaring a length).
    async fn classify(
        &self,
        parts: &http::request::Parts,
        body: Body,
        ex: &mut Exchange,
    ) -> Result<(Route, Arc<Operation>, TransactionUse, Bytes), PipelineError> {
        let route = firestore::route(&parts.method, &parts.uri, &parts.headers)?;
        ex.route = Some((route.method, route.database.name()));
        if !self.settings.databases.contains(&route.database) {
            return Err(PipelineError::DatabaseNotServed);
        }
        let bytes = if route.needs_body() {
            self.read_body(body, self.settings.max_body_bytes).await?
        } else {
            self.read_body(body, 0).await.map_err(|err| match err {
                PipelineError::BodyTooLarge { .. } => ClassifyError::BodyNotAllowed.into(),
                err => err,
            })?
        };
        ex.add_bytes_in(bytes.len() as u64);
        let classified = firestore::classify_request(&route, Some(&bytes))?;
        let count = classified.operation.targets.len();
        // Shared with the exchange (its audit record), not copied.
        let operation = Arc::new(classified.operation);
        ex.operation = Some(Arc::clone(&operation));
        ex.request_tags = crate::audit::request_tags(&classified.request_tags);
        if count > self.settings.max_targets {
            return Err(PipelineError::TooManyTargets {
                count,
                limit: self.settings.max_targets,
            });
        }
        Ok((route, operation, classified.transaction, bytes))
    }

    /// Between classify and decide: a presented transaction id must be a
    /// seal owned by this principal and unexpired; it is replaced by the
    /// upstream id. A response that will carry a new id gets a `Sealing`.
    fn bind_transaction(
        &self,
        principal: &Principal,
        route: &mut Route,
        usage: &TransactionUse,
        bytes: Bytes,
    ) -> Result<(Bytes, Option<Sealing>), PipelineError> {
        let fingerprint = principal.fingerprint();
        let bytes = self
            .transactions
            .unseal_request(fingerprint, route, usage, Some(bytes))?
            .unwrap_or_default();
        let sealing = self
            .transactions
            .sealing(fingerprint, &route.database, usage);
        Ok((bytes, sealing))
    }

    /// Before step 3, only when a candidate rule reads `resource` (or the
    /// document after a write that depends on it): one `batchGet` of those
    /// documents with firegate's own token, in the request's transaction
    /// or at its read time (503 when it fails).
    async fn read_stored(
        &self,
        principal: &Principal,
        op: &mut Arc<Operation>,
        route: &Route,
        usage: &TransactionUse,
        bytes: &Bytes,
        ex: &mut Exchange,
    ) -> Result<Option<ReadStored>, PipelineError> {
        let paths = self.policy.stored_needed(principal, op);
        if paths.is_empty() {
            return Ok(None);
        }
        let t = Instant::now();
        let consistency = match (&usage.presented, client_read_time(route, bytes)) {
            (Some(presented), _) => Consistency::Transaction(self.transactions.unseal(
                &presented.sealed,
                principal.fingerprint(),
                &op.database,
            )?),
            (None, _) if usage.begins => return Err(StoredReadError::BeginsTransaction.into()),
            (None, Some(read_time)) => Consistency::ReadTime(read_time),
            (None, None) => Consistency::Now,
        };
        // Boxed: only requests whose rules read documents pay for the
        // read's state (a whole upstream call) in their future.
        Box::pin(self.read_documents(&paths, &consistency, op, ex, t))
            .await
            .map(Some)
    }

    /// The stored read of both wire formats: `paths` at `consistency`, with
    /// firegate's own token (503 when it fails), metered from `started`.
    async fn read_documents(
        &self,
        paths: &[Vec<String>],
        consistency: &Consistency,
        op: &mut Arc<Operation>,
        ex: &mut Exchange,
        started: Instant,
    ) -> Result<ReadStored, PipelineError> {
        let token = self.credentials.access_token(None).await?;
        ex.stored_reads = paths.len() as u64;
        let read = self
            .stored
            .read(
                &self.upstream,
                &token,
                &op.database,
                paths,
                consistency,
                &ex.request_id,
            )
            .await;
        self.metrics.step(Step::ReadStored, started);
        let read = read?;
        // The exchange shares the classified operation; the settled one,
        // with the accesses the pin makes impossible gone, is what is audited.
        Arc::make_mut(op).settle(&read.documents);
        ex.operation = Some(Arc::clone(op));
        Ok(read)
    }

    /// After step 3: the body to forward, with the writes pinned to the
    /// documents the rules read. A bodiless method goes upstream as it
    /// came, with no body at all.
    fn request_body(
        &self,
        route: &mut Route,
        bytes: Bytes,
        op: &Operation,
        read: Option<&ReadStored>,
        usage: &TransactionUse,
    ) -> Result<Body, PipelineError> {
        let bytes = match read {
            Some(read) => {
                let consistent =
                    usage.presented.is_some() || client_read_time(route, &bytes).is_some();
                pin::pin(route, bytes, op, read, consistent)?
            }
            None => bytes,
        };
        Ok(if route.needs_body() {
            body::full(bytes)
        } else {
            body::empty()
        })
    }

    /// Step 3: `Principal` × `Operation` → `Decision` (403). The decision
    /// goes to the exchange (the audit record); the steps after it need only
    /// its upstream account (`as:`).
    async fn decide(
        &self,
        principal: &Principal,
        op: &Operation,
        read: Option<&ReadStored>,
        ex: &mut Exchange,
    ) -> Result<Option<String>, PipelineError> {
        let stored = read.map(|r| &r.documents);
        let decision = ex
            .decision
            .insert(self.policy.decide_with(principal, op, stored).await);
        if decision.allowed {
            Ok(decision.upstream_account.clone())
        } else {
            Err(PipelineError::Denied)
        }
    }

    /// Step 4: the decision's upstream identity → Google token (503).
    async fn access_token(
        &self,
        account: Option<&str>,
        ex: &mut Exchange,
    ) -> Result<AccessToken, PipelineError> {
        let token = self.credentials.access_token(account).await?;
        ex.upstream_account = Some(token.account.clone());
        Ok(token)
    }

    /// Step 5: streamed to Firestore, streamed back (502/503/504).
    async fn forward(
        &self,
        parts: &http::request::Parts,
        route: &Route,
        body: Body,
        token: &AccessToken,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        // Classify named the database on the exchange already.
        let formatted;
        let database = match &ex.route {
            Some((_, name)) => name.as_str(),
            None => {
                formatted = route.database.name();
                &formatted
            }
        };
        let response = self
            .upstream
            .forward(Outbound {
                method: parts.method.clone(),
                path_and_query: &route.upstream_path_and_query,
                client_headers: &parts.headers,
                client_ip: ex.remote_ip(),
                trusted_proxies: &self.settings.trusted_proxies,
                client_proto: ex.proto(),
                request_id: &ex.request_id,
                database,
                token,
                body,
            })
            .await?;
        ex.upstream_status = Some(response.status().as_u16());
        Ok(response.map(body::boxed))
    }

    /// Buffer a body up to `limit` bytes under the body deadline and rate.
    async fn read_body(&self, body: Body, limit: usize) -> Result<Bytes, PipelineError> {
        body::read_paced(body, limit, self.settings.body_pace)
            .await
            .map_err(|err| match err {
                ReadError::TooLarge { limit } => PipelineError::BodyTooLarge { limit },
                ReadError::Failed(err) => PipelineError::BodyRead(crate::error::chain(&*err)),
                ReadError::TimedOut(_) => PipelineError::BodyReadTimeout,
                ReadError::TooSlow(_) => PipelineError::BodyTooSlow,
            })
    }
}

/// The read time the client asked for: `readTime=` of get, `readTime` of
/// a batchGet body.
fn client_read_time(route: &Route, bytes: &Bytes) -> Option<String> {
    match route.method {
        firestore::Method::Get => route.query_read_time().map(str::to_owned),
        firestore::Method::BatchGet => {
            let body: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            body.get("readTime")
                .or_else(|| body.get("read_time"))
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        }
        _ => None,
    }
}
