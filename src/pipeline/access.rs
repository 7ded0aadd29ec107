//! The access-request API on the proxy listener (`/firegate/v1/access/
//! requests…`, authenticated like every Firestore call), and this
//! replica's local copy of the store (kept current by [`sync`]).

mod sync;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ConnInfo, Exchange, Pipeline, PipelineError};
use crate::access::lifecycle::{self, AccessError, Against, Applied, NewRequest, ReviewBody, Verb};
use crate::access::store::{self, StoreError, Versioned, Written};
use crate::access::{AccessRequest, AccessSettings, Actor, Status, unix_ms};
use crate::authn::Principal;
use crate::body::{self, Body};

/// The API's path prefix: no Firestore route starts with it.
pub const PREFIX: &str = "/firegate/v1/access/requests";

/// Largest API request body.
const MAX_BODY: usize = 64 * 1024;

/// Compare-and-set attempts before a busy request is answered 503.
const ATTEMPTS: usize = 8;

/// This replica's copy of the store.
pub struct AccessState {
    pub settings: AccessSettings,
    requests: RwLock<HashMap<String, Versioned>>,
    /// When the copy was last known current: the last consistent point of
    /// the Listen stream (a heartbeat included) or full read of the store.
    synced: RwLock<Option<Instant>>,
    age: Gauge,
    /// Listen streams on the store reopened because they fell silent.
    silent_reopens: Counter,
    notify: crate::access::notify::Notifier,
}

impl AccessState {
    pub fn new(settings: AccessSettings, registry: &mut Registry) -> AccessState {
        let age = Gauge::default();
        registry.register(
            "access_store_age_seconds",
            "Seconds since this replica's copy of the access-request store was last known current: its Listen stream's last consistent point or the last full read (-1: never)",
            age.clone(),
        );
        age.set(-1);
        let silent_reopens = Counter::default();
        registry.register(
            "access_store_silent_reopens",
            "Listen streams on the access-request store reopened by the watchdog because they fell silent",
            silent_reopens.clone(),
        );
        AccessState {
            notify: crate::access::notify::Notifier::start(&settings, registry),
            settings,
            requests: RwLock::new(HashMap::new()),
            synced: RwLock::new(None),
            age,
            silent_reopens,
        }
    }

    /// How old the local copy is, `None` before the first read.
    pub fn age(&self) -> Option<Duration> {
        self.synced
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    fn snapshot(&self) -> Vec<AccessRequest> {
        self.requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|v| v.request.clone())
            .collect()
    }

    fn local(&self, id: &str) -> Option<AccessRequest> {
        self.requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|v| v.request.clone())
    }
}

impl Pipeline {
    /// Whether a request is for the access API.
    pub(super) fn is_access_api<B>(req: &Request<B>) -> bool {
        let path = req.uri().path();
        path == PREFIX || path.starts_with(PREFIX)
    }

    /// `/readyz`: how old the local copy of the store is. Not blocking:
    /// the grants already known keep working until their own expiry.
    pub(super) fn access_check(&self) -> Option<crate::server::admin::Check> {
        let access = self.access.as_ref()?;
        let (ready, detail) = match access.age() {
            None => (false, "the access store has not been read yet".to_string()),
            Some(age) => (
                age <= access.settings.max_staleness,
                format!("local copy of the access store is {}s old", age.as_secs()),
            ),
        };
        Some(crate::server::admin::Check {
            name: "access_store",
            ready,
            required: false,
            detail: Some(detail),
        })
    }

    /// One API call: authenticated as every call is (`enter`), then
    /// routed. Errors go to [`super::respond`] like every other. Audited
    /// as `allow` when done, `deny` when the caller may not act (403),
    /// `error` otherwise.
    pub(super) async fn access_api(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        let answer = self.access_call(req, conn, ex).await;
        ex.verdict = match &answer {
            Ok(_) => Some(crate::audit::Outcome::Allow),
            Err(PipelineError::Access(AccessError::NotApprover | AccessError::NotRequester)) => {
                Some(crate::audit::Outcome::Deny)
            }
            Err(_) => None,
        };
        answer
    }

    async fn access_call(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        ex: &mut Exchange,
    ) -> Result<Response<Body>, PipelineError> {
        let (parts, body) = req.into_parts();
        let principal = self.enter(&parts, conn, ex).await?;
        let access = self.access.as_ref().ok_or(AccessError::NotConfigured)?;
        let rest = &parts.uri.path()[PREFIX.len()..];
        let query = parts.uri.query().unwrap_or("");
        let now = unix_ms(SystemTime::now());
        let (status, value) = match (&parts.method, rest) {
            (&http::Method::POST, "") => {
                let bytes = self.read_body(body, MAX_BODY).await?;
                let new: NewRequest = parse_body(&bytes)?;
                let created = self.create(access, &principal, &new, now).await?;
                let by = Actor::of(&principal);
                ex.access = Some(self.notify(access, "requested", &created, &by, now));
                (StatusCode::CREATED, created.view(now))
            }
            (&http::Method::GET, "") => {
                let view = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("view="))
                    .unwrap_or("mine");
                let list = self.list(access, &principal, view, now)?;
                (StatusCode::OK, serde_json::json!({ "requests": list }))
            }
            (&http::Method::GET, id) if id.starts_with('/') && !id.contains(':') => {
                let request = self.visible(access, &principal, &id[1..], now).await?;
                (StatusCode::OK, request.view(now))
            }
            (&http::Method::POST, id) if id.starts_with('/') => {
                let (id, verb) = id[1..]
                    .rsplit_once(':')
                    .and_then(|(id, v)| Some((id, Verb::parse(v)?)))
                    .ok_or(AccessError::NotFound)?;
                let bytes = self.read_body(body, MAX_BODY).await?;
                let review: ReviewBody = if bytes.iter().all(u8::is_ascii_whitespace) {
                    ReviewBody::default()
                } else {
                    parse_body(&bytes)?
                };
                let (request, applied) = self
                    .review(access, &principal, id, verb, &review.reason)
                    .await?;
                if applied == Applied::Changed {
                    let name = match request.history.last() {
                        Some(t) => t.event.clone(),
                        None => verb.as_str().to_string(),
                    };
                    let by = Actor::of(&principal);
                    ex.access = Some(self.notify(access, &name, &request, &by, now));
                }
                (StatusCode::OK, request.view(now))
            }
            _ => return Err(AccessError::NotFound.into()),
        };
        let mut response = Response::new(body::full(Bytes::from(value.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        Ok(response)
    }

    async fn store_token(&self) -> Result<crate::upstream::AccessToken, AccessError> {
        self.credentials
            .access_token(None)
            .await
            .map_err(|e| AccessError::StoreUnavailable(e.reason().into()))
    }

    /// The live catalog a catalog-bound `who` of an entry is judged
    /// against (`None`: no catalog or no index yet; it matches nobody).
    fn catalog_view(&self) -> Option<std::sync::Arc<crate::catalog::View>> {
        self.policy.catalog().and_then(|c| c.view())
    }

    async fn create(
        &self,
        access: &AccessState,
        principal: &Principal,
        new: &NewRequest,
        now: u64,
    ) -> Result<AccessRequest, AccessError> {
        let table = self.policy.table();
        let catalog = self.catalog_view();
        let default = self
            .settings
            .databases
            .first()
            .ok_or(AccessError::Invalid("no database is served"))?;
        let token = self.store_token().await?;
        for _ in 0..ATTEMPTS {
            let id = new_id();
            let request = lifecycle::create(
                Against::new(&table, catalog.as_deref()),
                principal,
                new,
                default,
                access.settings.request_ttl,
                now,
                id,
            )?;
            let written = store::create(&self.upstream, &token, &access.settings.store, &request)
                .await
                .map_err(|e| AccessError::StoreUnavailable(e.0))?;
            if let Written::Ok = written {
                self.remember(access, &token, &request.id).await;
                return Ok(request);
            }
        }
        Err(AccessError::StoreUnavailable("id collisions".into()))
    }

    /// In a transaction, read the request, apply the transition and commit;
    /// again from what is stored now while the commit is aborted (the
    /// request changed in between).
    async fn review(
        &self,
        access: &AccessState,
        principal: &Principal,
        id: &str,
        verb: Verb,
        reason: &str,
    ) -> Result<(AccessRequest, Applied), AccessError> {
        let token = self.store_token().await?;
        let store = &access.settings.store;
        let unavailable = |e: StoreError| AccessError::StoreUnavailable(e.0);
        for _ in 0..ATTEMPTS {
            let txn = store::begin(&self.upstream, &token, store)
                .await
                .map_err(unavailable)?;
            let reviewed = match store::get_in(&self.upstream, &token, store, id, &txn).await {
                Ok(current) => self.reviewed(current, principal, verb, reason),
                Err(e) => Err(unavailable(e)),
            };
            let (request, applied) = match reviewed {
                Ok((request, Applied::Changed)) => (request, Applied::Changed),
                other => {
                    store::rollback(&self.upstream, &token, store, txn).await;
                    return other;
                }
            };
            let written = store::commit_in(&self.upstream, &token, store, &request, txn)
                .await
                .map_err(unavailable)?;
            if let Written::Ok = written {
                self.remember(access, &token, id).await;
                return Ok((request, applied));
            }
        }
        Err(AccessError::StoreUnavailable(
            "too many concurrent changes".into(),
        ))
    }

    /// The request as `verb` by `principal` leaves it, from what is stored.
    fn reviewed(
        &self,
        current: Option<Versioned>,
        principal: &Principal,
        verb: Verb,
        reason: &str,
    ) -> Result<(AccessRequest, Applied), AccessError> {
        let mut request = current.ok_or(AccessError::NotFound)?.request;
        let catalog = self.catalog_view();
        let table = self.policy.table();
        let against = Against::new(&table, catalog.as_deref());
        if !may_see(&request, against, principal) {
            return Err(AccessError::NotFound);
        }
        let now = unix_ms(SystemTime::now());
        let applied = lifecycle::review(&mut request, against, principal, verb, reason, now)?;
        Ok((request, applied))
    }

    /// Read back what was just written into the local copy, so this
    /// replica sees its own change at once (the others when their stream
    /// brings it).
    async fn remember(&self, access: &AccessState, token: &crate::upstream::AccessToken, id: &str) {
        if let Ok(Some(v)) = store::get(&self.upstream, token, &access.settings.store, id).await {
            access.put(v);
            self.install_grants(access);
        }
    }

    fn list(
        &self,
        access: &AccessState,
        principal: &Principal,
        view: &str,
        now: u64,
    ) -> Result<Vec<serde_json::Value>, AccessError> {
        let table = self.policy.table();
        let catalog = self.catalog_view();
        let against = Against::new(&table, catalog.as_deref());
        let mut all = access.snapshot();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let keep = |r: &AccessRequest| {
            let mine = r.requester.is(principal);
            match view {
                "mine" => mine,
                "to_review" => {
                    r.status_at(now) == Status::Pending
                        && !mine
                        && lifecycle::may_review(r, against, principal)
                }
                "active" => r.status_at(now) == Status::Active && may_see(r, against, principal),
                _ => may_see(r, against, principal),
            }
        };
        if !matches!(view, "mine" | "to_review" | "active" | "all") {
            return Err(AccessError::Invalid(
                "`view` is one of mine, to_review, active, all",
            ));
        }
        Ok(all
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.view(now))
            .collect())
    }

    async fn visible(
        &self,
        access: &AccessState,
        principal: &Principal,
        id: &str,
        _now: u64,
    ) -> Result<AccessRequest, AccessError> {
        let request = match access.local(id) {
            Some(r) => r,
            None => {
                let token = self.store_token().await?;
                store::get(&self.upstream, &token, &access.settings.store, id)
                    .await
                    .map_err(|e| AccessError::StoreUnavailable(e.0))?
                    .ok_or(AccessError::NotFound)?
                    .request
            }
        };
        let (table, catalog) = (self.policy.table(), self.catalog_view());
        if may_see(
            &request,
            Against::new(&table, catalog.as_deref()),
            principal,
        ) {
            Ok(request)
        } else {
            Err(AccessError::NotFound)
        }
    }
}

impl Pipeline {
    /// The audit record's `access` object for event `name`, sent to every
    /// notification sink too (never waits).
    fn notify(
        &self,
        access: &AccessState,
        name: &str,
        request: &AccessRequest,
        by: &Actor,
        now: u64,
    ) -> serde_json::Value {
        let record = event(name, request, by, now);
        let mut audience = crate::access::backstage::Audience::default();
        if access.notify.wants_audience() {
            let view = self.catalog_view();
            if let Some(entry) = self.policy.table().requestable(&request.requestable) {
                audience.approvers =
                    crate::access::backstage::approver_refs(entry, request, view.as_deref());
            }
            let identities = self.policy.catalog().map(|c| c.identities());
            audience.requester =
                crate::access::backstage::requester_ref(&request.requester, identities.as_deref());
        }
        access.notify.send(name, by, request, &record, &audience);
        record
    }
}

/// A request is seen by its requester and whoever may review it.
fn may_see(r: &AccessRequest, against: Against, p: &Principal) -> bool {
    r.requester.is(p) || lifecycle::may_review(r, against, p)
}

fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AccessError> {
    serde_json::from_slice(bytes)
        .map_err(|_| AccessError::Invalid("the body is not the JSON expected"))
}

fn new_id() -> String {
    let bytes: [u8; 10] = rand::random();
    crate::crypto::hex_lower(&bytes)
}

/// The audit record's `access` object for a lifecycle event.
fn event(name: &str, r: &AccessRequest, by: &Actor, now: u64) -> serde_json::Value {
    serde_json::json!({
        "event": name,
        "id": r.id,
        "requestable": r.requestable,
        "requester": r.requester,
        "by": by,
        "database": r.database,
        "path": r.path,
        "actions": r.actions,
        "reason": r.history.last().map(|t| t.reason.clone()).unwrap_or_default(),
        "state": r.status_at(now).as_str(),
        "approvals": r.approvals().len(),
        "break_glass": r.break_glass,
        "approved_at": r.approved_at,
        "ends_at": r.ends_at,
    })
}
