//! The lifecycle, checked on the server: create a request within a
//! `requestable` entry, then approve, deny, release or revoke it. Each
//! transition is a pure function of the stored request, the table, the
//! caller and the clock, applied again on every compare-and-set retry.

use std::time::Duration;

use serde::Deserialize;

use super::{AccessRequest, Actor, State, Status, Transition};
use crate::authn::Principal;
use crate::catalog::View;
use crate::model::Database;
use crate::policy::Table;
use crate::policy::requestable::{ApprovalInput, Asked, RequestRefused, Reviewer};

/// Why an access-request call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("access requests are not configured")]
    NotConfigured,
    #[error("no such access request")]
    NotFound,
    #[error("the caller may not review this request")]
    NotApprover,
    #[error("only the requester may release a request")]
    NotRequester,
    #[error("the request is {0}")]
    WrongState(&'static str),
    #[error(transparent)]
    Refused(#[from] RequestRefused),
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error("the access store is unavailable: {0}")]
    StoreUnavailable(String),
}

impl AccessError {
    /// For the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            AccessError::NotConfigured => "access_not_configured",
            AccessError::NotFound => "access_request_not_found",
            AccessError::NotApprover => "access_not_approver",
            AccessError::NotRequester => "access_not_requester",
            AccessError::WrongState(_) => "access_wrong_state",
            AccessError::Refused(RequestRefused::OverMaxDuration(_)) => "access_over_max_duration",
            AccessError::Refused(RequestRefused::OutsideEntries) => "access_outside_entries",
            AccessError::Refused(_) => "access_request_invalid",
            AccessError::Invalid(_) => "access_request_invalid",
            AccessError::StoreUnavailable(_) => "access_store_unavailable",
        }
    }
}

/// `POST /firegate/v1/access/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    #[serde(default)]
    pub database: Option<String>,
    pub path: String,
    pub actions: Vec<String>,
    /// `2h`, `30m`.
    pub duration: String,
    #[serde(default)]
    pub reason: String,
}

/// `{"reason"}` of a review.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    #[serde(default)]
    pub reason: String,
}

/// A review verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Approve,
    Deny,
    Release,
    Revoke,
}

impl Verb {
    pub fn parse(name: &str) -> Option<Verb> {
        Some(match name {
            "approve" => Verb::Approve,
            "deny" => Verb::Deny,
            "release" => Verb::Release,
            "revoke" => Verb::Revoke,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Approve => "approve",
            Verb::Deny => "deny",
            Verb::Release => "release",
            Verb::Revoke => "revoke",
        }
    }
}

/// What a request is checked against: the table and the live catalog
/// (`None`: no index yet; a catalog-bound `who` then matches nobody).
#[derive(Clone, Copy)]
pub struct Against<'a> {
    pub table: &'a Table,
    pub catalog: Option<&'a View>,
}

impl<'a> Against<'a> {
    pub fn new(table: &'a Table, catalog: Option<&'a View>) -> Self {
        Against { table, catalog }
    }
}

/// A new pending request, or why it cannot be made.
pub fn create(
    against: Against,
    principal: &Principal,
    new: &NewRequest,
    default_database: &Database,
    ttl: Duration,
    now: u64,
    id: String,
) -> Result<AccessRequest, AccessError> {
    let database = match &new.database {
        Some(name) => crate::model::path::database_name(name)
            .map_err(|_| AccessError::Invalid("`database` is not a database name"))?,
        None => default_database.clone(),
    };
    let duration = humantime::parse_duration(&new.duration)
        .map_err(|_| AccessError::Invalid("`duration` is not a duration (e.g. `2h`)"))?;
    if new.reason.len() > 2000 || new.path.len() > 1500 {
        return Err(AccessError::Invalid("`reason` or `path` too long"));
    }
    let asked = Asked {
        database: &database,
        path: &new.path,
        actions: &new.actions,
        duration,
        reason: &new.reason,
        catalog: against.catalog,
    };
    let fits = against.table.fit_request(principal, &asked)?;
    let requester = Actor::of(principal);
    Ok(AccessRequest {
        id,
        requestable: fits.entry.id.clone(),
        requester: requester.clone(),
        database: database.to_string(),
        path: new.path.clone(),
        actions: new.actions.clone(),
        duration_secs: duration.as_secs().max(1),
        reason: new.reason.clone(),
        state: State::Pending,
        created_at: now,
        pending_until: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        min_approvals: fits.entry.approvers.min,
        approved_at: None,
        ends_at: None,
        break_glass: false,
        history: vec![Transition {
            event: "requested".into(),
            by: requester,
            at: now,
            reason: new.reason.clone(),
        }],
    })
}

/// Whether the transition changed the request (an idempotent repeat
/// does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

/// Apply `verb` by `caller` to `req` at `now`.
pub fn review(
    req: &mut AccessRequest,
    against: Against,
    caller: &Principal,
    verb: Verb,
    reason: &str,
    now: u64,
) -> Result<Applied, AccessError> {
    let status = req.status_at(now);
    let by = Actor::of(caller);
    let record = |req: &mut AccessRequest, event: &str| {
        req.history.push(Transition {
            event: event.into(),
            by: by.clone(),
            at: now,
            reason: reason.to_string(),
        })
    };
    match verb {
        Verb::Release => {
            if !req.requester.is(caller) {
                return Err(AccessError::NotRequester);
            }
            match status {
                Status::Released => Ok(Applied::Unchanged),
                Status::Pending | Status::Active => {
                    req.state = State::Released;
                    record(req, "released");
                    Ok(Applied::Changed)
                }
                other => Err(AccessError::WrongState(other.as_str())),
            }
        }
        Verb::Approve | Verb::Deny | Verb::Revoke => {
            let reviewer = reviewer(req, against, caller)?;
            match (verb, status) {
                (Verb::Approve, Status::Active) | (Verb::Deny, Status::Denied) => {
                    Ok(Applied::Unchanged)
                }
                (Verb::Revoke, Status::Revoked) => Ok(Applied::Unchanged),
                (Verb::Approve, Status::Pending) => {
                    if reviewer == Reviewer::BreakGlass {
                        req.break_glass = true;
                        record(req, "break_glass");
                        activate(req, now);
                        return Ok(Applied::Changed);
                    }
                    if req.approvals().iter().any(|a| a.is(caller)) {
                        return Ok(Applied::Unchanged);
                    }
                    record(req, "approved");
                    if req.approvals().len() >= req.min_approvals as usize {
                        activate(req, now);
                    }
                    Ok(Applied::Changed)
                }
                (Verb::Deny, Status::Pending) if reviewer == Reviewer::Approver => {
                    req.state = State::Denied;
                    record(req, "denied");
                    Ok(Applied::Changed)
                }
                (Verb::Revoke, Status::Active) if reviewer == Reviewer::Approver => {
                    req.state = State::Revoked;
                    record(req, "revoked");
                    Ok(Applied::Changed)
                }
                // An approver revoking what is not active yet (or denying
                // what is active): the wrong state, not the wrong caller.
                (Verb::Revoke, Status::Pending) | (Verb::Deny, Status::Active)
                    if reviewer == Reviewer::Approver =>
                {
                    Err(AccessError::WrongState(status.as_str()))
                }
                (Verb::Deny | Verb::Revoke, Status::Pending | Status::Active) => {
                    Err(AccessError::NotApprover)
                }
                (_, other) => Err(AccessError::WrongState(other.as_str())),
            }
        }
    }
}

fn activate(req: &mut AccessRequest, now: u64) {
    req.state = State::Approved;
    req.approved_at = Some(now);
    req.ends_at = Some(now.saturating_add(req.duration_secs.saturating_mul(1000)));
}

/// How `caller` may review `req` under its entry as the table has it now.
fn reviewer(
    req: &AccessRequest,
    against: Against,
    caller: &Principal,
) -> Result<Reviewer, AccessError> {
    let entry = against
        .table
        .requestable(&req.requestable)
        .ok_or(AccessError::NotApprover)?;
    let requester = crate::authn::Principal::new(
        req.requester.issuer.clone(),
        req.requester.subject.clone(),
        req.requester.email.clone(),
        Vec::new(),
        serde_json::Map::new(),
    );
    let input = ApprovalInput {
        path: &req.path,
        actions: &req.actions,
        database: &req.database,
        duration: Duration::from_secs(req.duration_secs),
        reason: &req.reason,
        requester: &requester,
        catalog: against.catalog,
    };
    entry
        .reviewer(caller, &input)
        .ok_or(AccessError::NotApprover)
}

/// Whether `caller` could review `req` (the `to_review` view).
pub fn may_review(req: &AccessRequest, against: Against, caller: &Principal) -> bool {
    reviewer(req, against, caller).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::member;

    const POLICY: &str = r#"
requestable:
  - id: deploy
    match: /teams/{team}/{rest=**}
    actions: [write]
    who: {groups: [eng]}
    approvers: {who: {groups: [admins]}, min: 2}
    max_duration: 4h
    reason: required
    break_glass: {groups: [oncall]}
"#;

    fn setup() -> (Table, AccessRequest) {
        let table = Table::from_yaml(POLICY, 1).unwrap_or_else(|e| panic!("{e}"));
        let new = NewRequest {
            database: None,
            path: "/teams/pay/**".into(),
            actions: vec!["write".into()],
            duration: "2h".into(),
            reason: "INC-1".into(),
        };
        let req = create(
            Against::new(&table, None),
            &member("alice", &["eng", "admins"]),
            &new,
            &Database::new("p", "(default)"),
            Duration::from_secs(3600),
            1_000,
            "r1".into(),
        )
        .unwrap();
        (table, req)
    }

    #[test]
    fn approvals_count_distinct_approvers_never_the_requester() {
        let (table, mut req) = setup();
        let (alice, bob, carol) = (
            member("alice", &["eng", "admins"]),
            member("bob", &["admins"]),
            member("carol", &["admins"]),
        );
        let approve = |req: &mut AccessRequest, who: &Principal| {
            review(
                req,
                Against::new(&table, None),
                who,
                Verb::Approve,
                "ok",
                2_000,
            )
        };
        assert_eq!(approve(&mut req, &alice), Err(AccessError::NotApprover));
        assert_eq!(approve(&mut req, &bob), Ok(Applied::Changed));
        assert_eq!(approve(&mut req, &bob), Ok(Applied::Unchanged));
        assert_eq!(req.status_at(2_000), Status::Pending);
        // Nothing to revoke yet: the wrong state (409), not the wrong caller.
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &bob,
                Verb::Revoke,
                "",
                2_000
            ),
            Err(AccessError::WrongState("pending"))
        );
        assert_eq!(approve(&mut req, &carol), Ok(Applied::Changed));
        assert_eq!(req.status_at(2_000), Status::Active);
        assert_eq!(req.ends_at, Some(2_000 + 2 * 3600 * 1000));
        assert_eq!(req.status_at(2_000 + 2 * 3600 * 1000), Status::Expired);
        // Revoked by an approver, never resurrected by a late approval.
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &bob,
                Verb::Revoke,
                "done",
                3_000
            ),
            Ok(Applied::Changed)
        );
        assert_eq!(
            approve(&mut req, &carol),
            Err(AccessError::WrongState("revoked"))
        );
    }

    #[test]
    fn a_denial_ends_it_and_pending_requests_expire() {
        let (table, mut req) = setup();
        let bob = member("bob", &["admins"]);
        let mut expired = req.clone();
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &bob,
                Verb::Deny,
                "no",
                2_000
            ),
            Ok(Applied::Changed)
        );
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &bob,
                Verb::Approve,
                "",
                2_000
            ),
            Err(AccessError::WrongState("denied"))
        );
        let late = 1_000 + 3600 * 1000;
        assert_eq!(expired.status_at(late), Status::Expired);
        assert_eq!(
            review(
                &mut expired,
                Against::new(&table, None),
                &bob,
                Verb::Approve,
                "",
                late
            ),
            Err(AccessError::WrongState("expired"))
        );
    }

    #[test]
    fn an_expiry_is_recorded_at_its_instant_and_changes_no_state() {
        let (table, mut req) = setup();
        assert_eq!(req.expires_at(), Some(1_000 + 3600 * 1000));
        let (bob, carol) = (member("bob", &["admins"]), member("carol", &["admins"]));
        review(
            &mut req,
            Against::new(&table, None),
            &bob,
            Verb::Approve,
            "",
            2_000,
        )
        .unwrap();
        review(
            &mut req,
            Against::new(&table, None),
            &carol,
            Verb::Approve,
            "",
            2_000,
        )
        .unwrap();
        let end = 2_000 + 2 * 3600 * 1000;
        assert_eq!(req.expires_at(), Some(end));
        assert!(!req.expiry_recorded());
        req.record_expiry();
        assert!(req.expiry_recorded());
        let last = req.history.last().unwrap();
        assert_eq!((last.event.as_str(), last.at), ("expired", end));
        assert_eq!(last.by, crate::access::Actor::firegate());
        assert_eq!(req.state, State::Approved, "expiry stays computed");
        assert_eq!(req.status_at(end - 1), Status::Active);
        assert_eq!(req.approvals().len(), 2);
    }

    #[test]
    fn break_glass_approves_its_own_and_only_the_requester_releases() {
        let table = Table::from_yaml(POLICY, 1).unwrap_or_else(|e| panic!("{e}"));
        let sam = member("sam", &["eng", "oncall"]);
        let new = NewRequest {
            database: None,
            path: "/teams/pay/d/1".into(),
            actions: vec!["update".into()],
            duration: "1h".into(),
            reason: "INC-2".into(),
        };
        let db = Database::new("p", "(default)");
        let ttl = Duration::from_secs(60);
        let mut req = create(
            Against::new(&table, None),
            &sam,
            &new,
            &db,
            ttl,
            0,
            "r2".into(),
        )
        .unwrap();
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &sam,
                Verb::Approve,
                "",
                10
            ),
            Ok(Applied::Changed)
        );
        assert!(req.break_glass);
        assert_eq!(req.status_at(10), Status::Active);
        let bob = member("bob", &["admins"]);
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &bob,
                Verb::Release,
                "",
                20
            ),
            Err(AccessError::NotRequester)
        );
        assert_eq!(
            review(
                &mut req,
                Against::new(&table, None),
                &sam,
                Verb::Release,
                "",
                20
            ),
            Ok(Applied::Changed)
        );
        assert_eq!(req.status_at(20), Status::Released);
        let over = NewRequest {
            duration: "5h".into(),
            ..new
        };
        assert!(matches!(
            create(
                Against::new(&table, None),
                &sam,
                &over,
                &db,
                ttl,
                0,
                "r3".into()
            ),
            Err(AccessError::Refused(RequestRefused::OverMaxDuration(_)))
        ));
    }
}
