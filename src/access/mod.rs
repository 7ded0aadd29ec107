//! Access requests: just-in-time grants with approval. A request names a
//! scope within a `requestable` policy entry; approvers approve or deny it;
//! an approved request is a grant until it ends. Requests live as
//! documents in a Firestore collection (the store) that every replica
//! reads into a local copy; the policy engine judges with its grants.

pub mod backstage;
pub mod feed;
pub mod lifecycle;
pub mod notify;
pub mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::ConfigErrors;
use crate::model::Database;

/// Raw `access:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Where requests and grants are kept.
    pub store: RawStore,
    /// How long a request waits for review before it expires.
    #[serde(default = "default_request_ttl")]
    pub request_ttl: String,
    /// A Listen stream on the store silent for longer than this is
    /// reopened (Firestore says something on an idle stream at least about
    /// once a minute: a global `NO_CHANGE`, its heartbeat).
    #[serde(default = "default_watchdog")]
    pub watchdog: String,
    /// How often each replica also reads the store whole, repairing
    /// whatever its Listen stream missed.
    #[serde(default = "default_resync_interval")]
    pub resync_interval: String,
    /// A local copy not known current for longer than this is reported on
    /// `/readyz` (not blocking: known grants keep working until their own
    /// expiry).
    #[serde(default = "default_max_staleness")]
    pub max_staleness: String,
    /// Where lifecycle events are sent.
    #[serde(default)]
    pub notify: Option<RawNotify>,
}

/// `access.notify:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub webhook: Option<notify::RawWebhook>,
    #[serde(default)]
    pub backstage: Option<backstage::RawBackstage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `projects/P/databases/D`.
    pub database: String,
    /// A root collection id, e.g. `firegate-access`.
    pub collection: String,
}

fn default_request_ttl() -> String {
    "1h".into()
}
fn default_watchdog() -> String {
    "90s".into()
}
fn default_resync_interval() -> String {
    "5m".into()
}
fn default_max_staleness() -> String {
    "3m".into()
}

/// The validated `access:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    pub store: Store,
    pub request_ttl: Duration,
    pub watchdog: Duration,
    pub resync_interval: Duration,
    pub max_staleness: Duration,
    pub webhook: Option<notify::WebhookSettings>,
    pub backstage: Option<backstage::BackstageSettings>,
}

/// The store collection: never reachable through the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub database: Database,
    pub collection: String,
}

impl Store {
    /// Whether `scope` in `database` could reach a document of the store
    /// (over-approximated: a kindless query from the root could).
    pub fn reaches(&self, database: &Database, scope: &crate::model::Scope) -> bool {
        use crate::model::Scope;
        if *database != self.database {
            return false;
        }
        let under =
            |parent: &crate::model::Segments| parent.first() == Some(self.collection.as_str());
        match scope {
            Scope::Document { path } => under(path),
            Scope::Collection { parent, collection } | Scope::Subtree { parent, collection } => {
                under(parent) || (parent.is_empty() && *collection == self.collection)
            }
            Scope::CollectionGroup { parent, collection } => {
                under(parent) || *collection == self.collection
            }
            Scope::Descendants { parent } => parent.is_empty() || under(parent),
            Scope::CollectionIds { parent } => under(parent),
        }
    }
}

impl AccessConfig {
    pub fn validate(self, errors: &mut ConfigErrors) -> AccessSettings {
        use crate::config::value::duration;
        let database = crate::model::path::database_name(&self.store.database)
            .map_err(|_| {
                errors.push(
                    "access.store.database",
                    "must be `projects/PROJECT/databases/DATABASE`",
                )
            })
            .unwrap_or_else(|()| Database::new("invalid", "invalid"));
        let id_ok = !self.store.collection.is_empty()
            && !self.store.collection.contains('/')
            && !self.store.collection.starts_with("__");
        if !id_ok {
            errors.push(
                "access.store.collection",
                "must be one collection id (no `/`, not `__…__`)",
            );
        }
        let d = |key, value: &str, errors: &mut ConfigErrors| {
            let d = duration(key, value, errors).unwrap_or(Duration::from_secs(1));
            if d.is_zero() {
                errors.push(key, "must be positive");
            }
            d
        };
        let (webhook, backstage) = match self.notify {
            Some(n) => (
                n.webhook.map(|w| w.validate(errors)),
                n.backstage.map(|b| b.validate(errors)),
            ),
            None => (None, None),
        };
        AccessSettings {
            store: Store {
                database,
                collection: self.store.collection,
            },
            request_ttl: d("access.request_ttl", &self.request_ttl, errors),
            watchdog: d("access.watchdog", &self.watchdog, errors),
            resync_interval: d("access.resync_interval", &self.resync_interval, errors),
            max_staleness: d("access.max_staleness", &self.max_staleness, errors),
            webhook,
            backstage,
        }
    }
}

/// Who did something: enough to name them in audits and notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Actor {
    pub fn of(p: &crate::authn::Principal) -> Actor {
        Actor {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            email: p.email.clone(),
        }
    }

    pub fn is(&self, p: &crate::authn::Principal) -> bool {
        self.issuer == p.issuer && self.subject == p.subject
    }

    pub fn same(&self, other: &Actor) -> bool {
        self.issuer == other.issuer && self.subject == other.subject
    }

    /// firegate itself, for the transitions no caller makes (`expired`).
    pub fn firegate() -> Actor {
        Actor {
            issuer: "firegate".into(),
            subject: "firegate".into(),
            email: None,
        }
    }
}

/// The stored state of a request. `expired` is never stored: it is
/// computed in process from the clock (see [`AccessRequest::state_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    /// Approved: a grant from `approved_at` until `ends_at`.
    Approved,
    Denied,
    Released,
    Revoked,
}

/// What a request is at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Active,
    Denied,
    Expired,
    Released,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Released => "released",
            Status::Revoked => "revoked",
        }
    }
}

/// One transition: who, when (unix ms), why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// `requested`, `approved` (one approval), `break_glass`, `denied`,
    /// `released`, `revoked`; `expired` (by firegate, at the instant of
    /// expiry) once a replica has recorded it.
    pub event: String,
    pub by: Actor,
    pub at: u64,
    #[serde(default)]
    pub reason: String,
}

/// One access request, as stored (JSON in one document field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    /// The `requestable` entry it falls under.
    pub requestable: String,
    pub requester: Actor,
    pub database: String,
    pub path: String,
    pub actions: Vec<String>,
    pub duration_secs: u64,
    pub reason: String,
    pub state: State,
    pub created_at: u64,
    /// A pending request expires then (`request_ttl`).
    pub pending_until: u64,
    /// Distinct approvals needed.
    pub min_approvals: u32,
    #[serde(default)]
    pub approved_at: Option<u64>,
    /// `approved_at + duration`.
    #[serde(default)]
    pub ends_at: Option<u64>,
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub history: Vec<Transition>,
}

/// Milliseconds since the epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl AccessRequest {
    /// What the request is at `now` (ms).
    pub fn status_at(&self, now: u64) -> Status {
        match self.state {
            State::Pending if now >= self.pending_until => Status::Expired,
            State::Pending => Status::Pending,
            State::Approved if self.ends_at.is_some_and(|e| now < e) => Status::Active,
            State::Approved => Status::Expired,
            State::Denied => Status::Denied,
            State::Released => Status::Released,
            State::Revoked => Status::Revoked,
        }
    }

    /// When a pending request or a grant expires (or expired).
    pub fn expires_at(&self) -> Option<u64> {
        match self.state {
            State::Pending => Some(self.pending_until),
            State::Approved => self.ends_at,
            State::Denied | State::Released | State::Revoked => None,
        }
    }

    /// Whether an `expired` transition is in the history.
    pub fn expiry_recorded(&self) -> bool {
        self.history.iter().any(|t| t.event == "expired")
    }

    /// Append the `expired` transition (the state stays: expiry is always
    /// computed from the clock, [`AccessRequest::status_at`]).
    pub fn record_expiry(&mut self) {
        let at = self
            .expires_at()
            .or_else(|| self.history.last().map(|t| t.at))
            .unwrap_or(self.created_at);
        self.history.push(Transition {
            event: "expired".into(),
            by: Actor::firegate(),
            at,
            reason: String::new(),
        });
    }

    /// The distinct approvers so far.
    pub fn approvals(&self) -> Vec<&Actor> {
        let mut out: Vec<&Actor> = Vec::new();
        for t in &self.history {
            if t.event == "approved" && !out.iter().any(|a| a.same(&t.by)) {
                out.push(&t.by);
            }
        }
        out
    }

    /// The grant this request is while active, for the policy engine.
    pub fn grant(&self, table: &crate::policy::Table) -> Option<crate::policy::Grant> {
        let ends_at = self.ends_at?;
        let database = crate::model::path::database_name(&self.database).ok()?;
        let pattern = crate::policy::requestable::requested_pattern(&self.path).ok()?;
        let actions = crate::policy::Actions::parse_all(&self.actions).ok()?;
        // The entry is re-checked at every decision too; an unknown one
        // makes no grant at all.
        table.requestable(&self.requestable)?;
        Some(crate::policy::Grant {
            id: self.id.clone(),
            entry: self.requestable.clone(),
            issuer: self.requester.issuer.clone(),
            subject: self.requester.subject.clone(),
            database,
            pattern,
            actions,
            expires_at: from_unix_ms(ends_at),
        })
    }

    /// The JSON shown to API callers: the stored fields, the status now,
    /// times as RFC 3339.
    pub fn view(&self, now: u64) -> serde_json::Value {
        let time = |ms: u64| {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let history: Vec<serde_json::Value> = self
            .history
            .iter()
            .map(|t| {
                serde_json::json!({
                    "event": t.event, "by": t.by, "at": time(t.at), "reason": t.reason,
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "state": self.status_at(now).as_str(),
            "requestable": self.requestable,
            "requester": self.requester,
            "database": self.database,
            "path": self.path,
            "actions": self.actions,
            "duration": humantime::format_duration(Duration::from_secs(self.duration_secs)).to_string(),
            "reason": self.reason,
            "created_at": time(self.created_at),
            "expires_at": match self.state {
                State::Pending => time(self.pending_until),
                _ => self.ends_at.map(time).unwrap_or_default(),
            },
            "approved_at": self.approved_at.map(time),
            "min_approvals": self.min_approvals,
            "approvals": self.approvals().len(),
            "break_glass": self.break_glass,
            "history": history,
        })
    }
}
