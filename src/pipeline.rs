//! The request pipeline. [`Pipeline::serve`] is the one dispatch (REST,
//! gRPC or Listen) and turns the outcome into a response (an error through
//! [`respond`], the one mapping), always leaving one audit record;
//! [`Pipeline::run`] is the steps, written once for every wire, in order,
//! as plain `?` calls — admit, authenticate, classify, limits, bind
//! (transaction ids), judge (stored read, decide), access_token, forward,
//! and respond on the way back. The order is a security property.

mod access;
mod audited;
mod exchange;
mod fairness;
mod listen;
mod metrics;
pub mod respond;
mod stored;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use crate::audit::{AuditError, Auditor};
use crate::authn::{Authenticator, AuthnError, LastToken, Principal};
use crate::body::{self, Body, Pace, ReadError};
use crate::model::mask::DocumentMasks;
use crate::model::{ClassifyError, Database, Operation};
use crate::policy::{Decision, PolicyEngine};
use crate::server::admin::{Check, Ready};
use crate::server::cors::{self, Cors};
use crate::transaction::{SealError, Sealing, TransactionError, TransactionSealer};
use crate::upstream::{AccessToken, Credentials, CredentialsError, Upstream, UpstreamError};

pub use crate::server::ConnInfo;
pub use exchange::Exchange;
pub use metrics::RequestMetrics;
use metrics::{Laps, Step};
pub use stored::StoredReadError;
use stored::{Consistency, ReadStored, StoredRead, StoredReader};
use wire::{Call, Sealed, Wire};

/// What the judgement lets the call go on with.
struct Judged {
    /// The rule's upstream account (`as:`), `None` for the default.
    account: Option<String>,
    /// The documents the rules read, when they read any.
    stored: Option<ReadStored>,
    /// The fields the answer's documents are masked to hide, when any are.
    masks: Option<Arc<DocumentMasks>>,
}

/// Limits and settings the pipeline itself applies.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Largest request body buffered for classification.
    pub max_body_bytes: usize,
    /// How long a client may take over its body.
    pub body_pace: Pace,
    /// Most targets one request may name.
    pub max_targets: usize,
    /// Most targets one Listen stream may hold.
    pub max_listen_targets: usize,
    /// The databases served (`upstream.databases`).
    pub databases: Vec<Database>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed to read answers (`server.cors`).
    pub cors: Option<Cors>,
    /// Requests one principal may have in flight.
    pub max_in_flight_per_principal: usize,
    /// Largest gRPC message decoded (`server.limits.max_grpc_message_bytes`).
    pub max_grpc_message_bytes: usize,
    /// Access requests (`access:`), when configured.
    pub access: Option<crate::access::AccessSettings>,
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
    Mask(#[from] crate::firestore::mask::MaskError),
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
    #[error(transparent)]
    StoredRead(#[from] StoredReadError),
    #[error(transparent)]
    Access(#[from] crate::access::lifecycle::AccessError),
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
            PipelineError::Mask(e) => e.reason().into(),
            PipelineError::Grpc(e) => e.reason().into(),
            PipelineError::StoredRead(e) => e.reason().into(),
            PipelineError::Access(e) => e.reason().into(),
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
    /// Open Listen streams learn of policy reloads here.
    listen_epochs: listen::Epochs,
    access: Option<access::AccessState>,
}

/// The steps a pipeline runs, each built by `app` from its config section.
pub struct Steps {
    pub authn: Authenticator,
    pub transactions: TransactionSealer,
    pub policy: PolicyEngine,
    pub credentials: Credentials,
    pub upstream: Upstream,
    pub grpc_upstream: crate::upstream::GrpcUpstream,
    pub audit: Auditor,
}

impl Pipeline {
    /// The pipeline over `steps`, applying `settings`, registering its
    /// request metrics.
    pub fn new(steps: Steps, settings: PipelineSettings, registry: &mut Registry) -> Pipeline {
        Pipeline {
            authn: steps.authn,
            transactions: steps.transactions,
            policy: steps.policy,
            credentials: steps.credentials,
            upstream: steps.upstream,
            grpc_upstream: steps.grpc_upstream,
            audit: Arc::new(steps.audit),
            in_flight: fairness::InFlight::new(settings.max_in_flight_per_principal),
            access: settings
                .access
                .clone()
                .map(|a| access::AccessState::new(a, registry)),
            settings,
            metrics: RequestMetrics::register(registry),
            stored: StoredReader::register(registry),
            listen_epochs: listen::Epochs::default(),
        }
    }

    /// Reload the policy directory (what SIGHUP or a file change does); on
    /// error the last good table keeps serving.
    pub async fn reload_policy(&self) -> anyhow::Result<()> {
        self.policy.reload().await?;
        Ok(())
    }

    /// Write every queued audit record, within `audit.flush_timeout`:
    /// what could not be written is counted (and spilled, when configured).
    pub async fn flush_audit(&self) -> crate::audit::Flushed {
        self.audit.flush().await
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
        let mut checks = vec![
            Check::required("issuer_keys", self.authn.not_ready()),
            Check::required("upstream_token", self.credentials.not_ready()),
            policy,
            Check::required("audit_sink", self.audit.not_ready()),
        ];
        // The catalog: its index's age, or why there is none. Required only
        // when configured so; otherwise catalog rules fail closed meanwhile.
        if let Some(catalog) = self.policy.catalog() {
            let (ready, detail) = catalog.readiness();
            checks.push(Check {
                name: "catalog",
                ready,
                required: catalog.required(),
                detail: Some(detail),
            });
        }
        checks.extend(self.access_check());
        checks
    }

    /// Answer one request, whatever its wire. Never fails: every error
    /// becomes the wire's error (Firestore JSON or a gRPC status), and the
    /// audit record is written when the response body ends (or the client
    /// goes away). One dispatch, one request span: every log line of the
    /// request, a Listen stream's included, carries its id.
    pub async fn serve(self: &Arc<Self>, req: Request<Body>, conn: &ConnInfo) -> Response<Body> {
        let wire = Wire::of(&req);
        let cors = self.settings.cors.as_ref().filter(|_| wire == Wire::Rest);
        if let Some(preflight) = cors::preflight(cors, &req) {
            return preflight;
        }
        let origin = cors.and_then(|_| cors::origin(&req));
        let mut ex = Exchange::begin(&req, conn, &self.settings.trusted_proxies);
        let span = tracing::info_span!("request", request_id = %ex.request_id, wire = wire.name());
        // Boxed: the steps' state is kilobytes, and every future that holds
        // it inline (this one, and the handler's around it) is copied whole
        // each time it is moved; one allocation costs less.
        let outcome = match wire {
            Wire::Rest if Self::is_access_api(&req) => {
                Box::pin(self.access_api(req, conn, &mut ex))
                    .instrument(span.clone())
                    .await
            }
            Wire::Listen => {
                Box::pin(self.listen(req, conn, &mut ex))
                    .instrument(span.clone())
                    .await
            }
            Wire::Rest | Wire::Grpc => {
                Box::pin(self.run(wire, req, conn, &mut ex))
                    .instrument(span.clone())
                    .await
            }
        };
        let mut response = self.answer(outcome, &mut ex, wire.error_response());
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

    /// The outer half every wire shares: a failure becomes `render`'s
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

    /// The steps, in order, for every call that is one request and one
    /// answer (REST, unary and server-streaming gRPC). Each `?` ends the
    /// call with that step's error. The wire is decoded in `classify` and
    /// encoded in `forward` and `respond`; nothing between knows it.
    async fn run(
        &self,
        wire: Wire,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        let (parts, body) = req.into_parts();
        wire.admit(&parts)?;
        let mut laps = self.metrics.laps();
        let principal = self.enter(&parts, conn, ex).await;
        laps.lap(Step::Authenticate);
        let principal = principal?;
        let call = wire.classify(self, parts, body, ex).await;
        laps.lap(Step::Classify);
        let mut call = call?;
        self.within_limits(&call.operation, ex)?;
        let sealing = self.bind(&principal, &mut call)?;
        let consistency = Some(call.consistency());
        let judged = self
            .judge(&principal, &mut call.operation, consistency, ex, &mut laps)
            .await?;
        if let Some(stored) = &judged.stored {
            call.pin(stored)?;
        }
        let token = self.access_token(judged.account, ex).await;
        laps.lap(Step::Token);
        let token = token?;
        let masks = judged.masks.map(|masks| wire::Masking {
            masks,
            masked: ex.masked_fields(),
        });
        let rewritten = sealing.is_some() || masks.is_some();
        let response = call.forward(self, &token, rewritten, ex).await;
        laps.lap(Step::UpstreamHead);
        call.respond(
            response?,
            sealing,
            masks,
            self.settings.max_grpc_message_bytes,
        )
    }

    /// Every call's way in, Listen's too: the audit sink admits it, the
    /// bearer token becomes a `Principal` (401; 503 when the issuer cannot
    /// be asked), and the principal takes a place under
    /// `max_in_flight_per_principal`, held until the response ends (429).
    async fn enter(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Arc<Principal>, PipelineError> {
        self.audit.admit()?;
        let principal = self
            .authn
            .authenticate(&parts.headers, &parts.uri, conn.slot.get::<LastToken>())
            .await?;
        ex.principal = Some(Arc::clone(&principal));
        let slot = self
            .in_flight
            .admit(&principal)
            .ok_or(PipelineError::PrincipalBusy {
                limit: self.in_flight.limit(),
            })?;
        ex.hold(slot);
        Ok(principal)
    }

    /// Only a database in `upstream.databases` is served (403): checked
    /// for every call and Listen target, and when a Listen stream opens.
    fn served(&self, database: &Database) -> Result<(), PipelineError> {
        if self.settings.databases.contains(database) {
            Ok(())
        } else {
            Err(PipelineError::DatabaseNotServed)
        }
    }

    /// Once for every call and every Listen target: its database must be
    /// served and it must not reach the access store (403); from here on the operation is on the exchange (its
    /// audit record); it names at most `max_targets` targets (400).
    fn within_limits(&self, op: &Arc<Operation>, ex: &mut Exchange) -> Result<(), PipelineError> {
        self.served(&op.database)?;
        // The access store is firegate's own: no client reaches it, whatever
        // the policy says.
        if let Some(access) = &self.access
            && op
                .targets
                .iter()
                .any(|t| access.settings.store.reaches(&op.database, &t.scope))
        {
            return Err(PipelineError::DatabaseNotServed);
        }
        ex.operation = Some(Arc::clone(op));
        let count = op.targets.len();
        if count > self.settings.max_targets {
            return Err(PipelineError::TooManyTargets {
                count,
                limit: self.settings.max_targets,
            });
        }
        Ok(())
    }

    /// Between classify and decide: a presented transaction id must be a
    /// seal owned by this principal and unexpired (400/403); the call
    /// carries the upstream id from here on. A call whose answer will carry
    /// a new id gets the `Sealing` that seals it on the way back.
    fn bind(
        &self,
        principal: &Principal,
        call: &mut Call,
    ) -> Result<Option<Sealing>, PipelineError> {
        let fingerprint = principal.fingerprint();
        let op = Arc::clone(&call.operation);
        let upstream = match call.presented_transaction() {
            Some(Sealed::Text(sealed)) => {
                self.transactions
                    .unseal(sealed, fingerprint, &op.database)?
            }
            Some(Sealed::Bytes(sealed)) => {
                self.transactions
                    .unseal_bytes(sealed, fingerprint, &op.database)?
            }
            None => return Ok(self.sealing(principal, call)),
        };
        call.use_transaction(upstream);
        Ok(self.sealing(principal, call))
    }

    fn sealing(&self, principal: &Principal, call: &Call) -> Option<Sealing> {
        call.begins_transaction().then(|| {
            self.transactions
                .sealing(principal.fingerprint(), &call.operation.database)
        })
    }

    /// The judgement of one operation, the same for every call and every
    /// Listen target: the documents a candidate rule reads (only when one
    /// reads `resource`, or the document after a write that depends on it;
    /// `consistency` says where, `None` when no one read can vouch for the
    /// operation, as for a watched document: its rules then fail closed),
    /// then `Principal` × `Operation` → `Decision` (403). The decision goes
    /// to the exchange (the audit record); what follows needs only its
    /// upstream account (`as:`) and the documents read, to pin the call to
    /// the versions the rules saw.
    async fn judge(
        &self,
        principal: &Principal,
        op: &mut Arc<Operation>,
        consistency: Option<Result<Consistency, StoredReadError>>,
        ex: &mut Exchange,
        laps: &mut Laps<'_>,
    ) -> Result<Judged, PipelineError> {
        let stored = self.read_stored(principal, op, consistency, ex).await?;
        if stored.is_some() {
            // Timed as a step of its own.
            laps.restart();
        }
        let documents = stored.as_ref().map(|r| &r.documents);
        let decision = self.policy.decide_with(principal, op, documents).await;
        laps.lap(Step::Decide);
        let decision = ex.decision.insert(decision);
        if !decision.allowed {
            return Err(PipelineError::Denied);
        }
        Ok(Judged {
            account: decision.upstream_account.clone(),
            stored,
            masks: wire::read_masks(decision).map(Arc::new),
        })
    }

    /// One `batchGet` of the documents the rules read, with firegate's own
    /// token, at `consistency` (503 when it fails). The operation is
    /// settled: the accesses the read makes impossible are gone from it,
    /// and from its audit record.
    async fn read_stored(
        &self,
        principal: &Principal,
        op: &mut Arc<Operation>,
        consistency: Option<Result<Consistency, StoredReadError>>,
        ex: &mut Exchange,
    ) -> Result<Option<ReadStored>, PipelineError> {
        let Some(consistency) = consistency else {
            return Ok(None);
        };
        let paths = self.policy.stored_needed(principal, op);
        if paths.is_empty() {
            return Ok(None);
        }
        let consistency = consistency?;
        ex.stored_reads = paths.len() as u64;
        // Boxed: only requests whose rules read documents pay for the
        // read's state (a whole upstream call) in their future.
        let read = StoredRead {
            database: &op.database,
            paths: &paths,
            consistency: &consistency,
            request_id: &ex.request_id,
        };
        let read = Box::pin(self.read_documents(read)).await?;
        Arc::make_mut(op).settle(&read.documents);
        ex.operation = Some(Arc::clone(op));
        Ok(Some(read))
    }

    /// The stored read, with firegate's own token, metered.
    async fn read_documents(&self, read: StoredRead<'_>) -> Result<ReadStored, PipelineError> {
        let started = Instant::now();
        let token = self.credentials.access_token(None).await?;
        let read = self.stored.read(&self.upstream, &token, &read).await;
        self.metrics.step(Step::ReadStored, started);
        Ok(read?)
    }

    /// The decision's upstream identity → Google token (503).
    async fn access_token(
        &self,
        account: Option<String>,
        ex: &mut Exchange,
    ) -> Result<AccessToken, PipelineError> {
        let token = self.credentials.access_token(account.as_deref()).await?;
        ex.upstream_account = Some(token.account.clone());
        Ok(token)
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
