//! Grants through the engine: one principal, the granted scope and
//! actions, within the entry, deny first, expiry, the cache; and
//! `requestable:` validation.

use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use proptest::prelude::*;

use super::fixtures::{doc, member, op};
use super::requestable::{ApprovalInput, Asked, RequestRefused, Reviewer, requested_pattern};
use super::*;
use crate::authn::Principal;
use crate::model::{Access, Database, Method, Target};

const POLICY: &str = r#"
rules:
  - id: read-all
    match: /teams/{team}/{rest=**}
    allow: [read]
    who: {authenticated: true}
  - id: no-secrets
    match: /teams/{team}/secrets/{s}
    deny: [read, write]
    who: {authenticated: true}
requestable:
  - id: prod-deploy
    match: /teams/{team}/{rest=**}
    actions: [write]
    who: {groups: [eng]}
    approvers:
      who: {groups: [admins]}
      min: 2
      when: "request.reason.matches('^INC-[0-9]+')"
    max_duration: 4h
    reason: required
    break_glass: {groups: [oncall]}
"#;

fn engine() -> PolicyEngine {
    PolicyEngine::from_yaml(POLICY, &mut Registry::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn db() -> Database {
    Database::new("p", "(default)")
}

fn grant(who: &Principal, path: &str, actions: &[&str], for_secs: u64) -> Grant {
    let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    Grant {
        id: format!("g-{path}"),
        entry: "prod-deploy".into(),
        issuer: who.issuer.clone(),
        subject: who.subject.clone(),
        database: db(),
        pattern: requested_pattern(path).unwrap(),
        actions: compile::Actions::parse_all(&actions).unwrap(),
        expires_at: SystemTime::now() + Duration::from_secs(for_secs),
    }
}

async fn write(e: &PolicyEngine, p: &Principal, path: &str) -> Decision {
    e.decide(p, &op(Method::Commit, vec![doc(path, Access::Update)]))
        .await
}

#[tokio::test]
async fn a_grant_allows_its_principal_its_scope_and_actions_only() {
    let e = engine();
    let (alice, bob) = (member("alice", &["eng"]), member("bob", &["eng"]));
    assert!(!write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
    e.set_grants(vec![grant(
        &alice,
        "/teams/pay/deployments/**",
        &["update"],
        60,
    )]);
    let d = write(&e, &alice, "/teams/pay/deployments/d1").await;
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.targets[0].why, Why::Granted);
    assert_eq!(d.targets[0].rule.as_deref(), Some("prod-deploy"));
    assert_eq!(
        d.targets[0].grant.as_deref(),
        Some("g-/teams/pay/deployments/**")
    );
    // Not another principal, scope, access or database.
    assert!(!write(&e, &bob, "/teams/pay/deployments/d1").await.allowed);
    assert!(!write(&e, &alice, "/teams/ops/deployments/d1").await.allowed);
    let delete = op(
        Method::Commit,
        vec![doc("/teams/pay/deployments/d1", Access::Delete)],
    );
    assert!(!e.decide(&alice, &delete).await.allowed);
    let mut other = op(
        Method::Commit,
        vec![doc("/teams/pay/deployments/d1", Access::Update)],
    );
    other.database = Database::new("p", "other");
    assert!(!e.decide(&alice, &other).await.allowed);
    // Revoked: the cached allow does not outlive it.
    e.set_grants(Vec::new());
    assert!(!write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
}

#[tokio::test]
async fn a_deny_rule_beats_a_grant() {
    let e = engine();
    let alice = member("alice", &["eng"]);
    e.set_grants(vec![grant(&alice, "/teams/pay/**", &["write"], 60)]);
    assert!(write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
    let d = write(&e, &alice, "/teams/pay/secrets/s1").await;
    assert!(!d.allowed);
    assert_eq!(d.targets[0].why, Why::DenyMatched);
}

#[tokio::test]
async fn an_expired_grant_allows_nothing() {
    let e = engine();
    let alice = member("alice", &["eng"]);
    let mut g = grant(&alice, "/teams/pay/**", &["write"], 60);
    g.expires_at = SystemTime::now() - Duration::from_secs(1);
    e.set_grants(vec![g]);
    assert!(!write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
}

#[tokio::test]
async fn a_cached_refusal_does_not_hide_a_new_grant() {
    let e = engine();
    let alice = member("alice", &["eng"]);
    let bob = member("bob", &["eng"]);
    assert!(!write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
    assert!(!write(&e, &bob, "/teams/pay/deployments/d1").await.allowed);
    let before = e.grants().generation(&bob);
    e.set_grants(vec![grant(&alice, "/teams/pay/**", &["write"], 60)]);
    assert!(write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
    // Another principal's grants changing leaves bob's generation alone.
    assert_eq!(e.grants().generation(&bob), before);
}

/// Targets judged once for a request (same rules, same values read) still
/// each have their grants judged: a grant of one document lends nothing
/// to its neighbour.
#[tokio::test]
async fn a_grant_is_judged_for_each_target_of_a_request() {
    let e = engine();
    let alice = member("alice", &["eng"]);
    e.set_grants(vec![grant(
        &alice,
        "/teams/pay/deployments/d1",
        &["update"],
        60,
    )]);
    let commit = |paths: &[&str]| {
        op(
            Method::Commit,
            paths.iter().map(|p| doc(p, Access::Update)).collect(),
        )
    };
    for paths in [
        ["/teams/pay/deployments/d1", "/teams/pay/deployments/d2"],
        ["/teams/pay/deployments/d2", "/teams/pay/deployments/d1"],
    ] {
        let d = e.decide(&alice, &commit(&paths)).await;
        assert!(!d.allowed, "{d:?}");
        let granted: Vec<bool> = d.targets.iter().map(|t| t.why == Why::Granted).collect();
        assert_eq!(granted, paths.map(|p| p.ends_with("d1")), "{paths:?}");
    }
}

#[tokio::test]
async fn a_grant_outside_its_entry_or_without_it_allows_nothing() {
    let e = engine();
    let alice = member("alice", &["eng"]);
    // Forged beyond the entry (never made by `fit_request`): the entry
    // still bounds it at decision time.
    let mut g = grant(&alice, "/other/x/**", &["write"], 60);
    e.set_grants(vec![g.clone()]);
    assert!(!write(&e, &alice, "/other/x/y/z").await.allowed);
    g.entry = "gone".into();
    g.pattern = requested_pattern("/teams/pay/**").unwrap();
    e.set_grants(vec![g]);
    assert!(!write(&e, &alice, "/teams/pay/deployments/d1").await.allowed);
    // Nor does it lend the entry's requesters' condition: alice left `eng`.
    e.set_grants(vec![grant(&alice, "/teams/pay/**", &["write"], 60)]);
    let left = member("alice", &[]);
    assert!(!write(&e, &left, "/teams/pay/deployments/d1").await.allowed);
}

fn asked<'a>(db: &'a Database, path: &'a str, actions: &'a [String], secs: u64) -> Asked<'a> {
    Asked {
        database: db,
        path,
        actions,
        duration: Duration::from_secs(secs),
        reason: "INC-1",
        catalog: None,
    }
}

#[test]
fn requests_fit_an_entry_or_are_refused() {
    let e = engine();
    let table = e.table();
    let alice = member("alice", &["eng"]);
    let db = db();
    let write = vec!["write".to_string()];
    let fits = table
        .fit_request(
            &alice,
            &asked(&db, "/teams/pay/deployments/**", &write, 3600),
        )
        .map_err(|e| e.to_string())
        .unwrap();
    assert_eq!(fits.entry.id, "prod-deploy");
    let refused = |path: &str, actions: &[String], secs: u64, who: &Principal| {
        table
            .fit_request(who, &asked(&db, path, actions, secs))
            .err()
    };
    assert_eq!(
        refused("/**", &write, 60, &alice),
        Some(RequestRefused::OutsideEntries)
    );
    assert_eq!(
        refused("/teams/pay/x/y", &["read".into()], 60, &alice),
        Some(RequestRefused::OutsideEntries)
    );
    assert_eq!(
        refused("/teams/pay/x/y", &write, 5 * 3600, &alice),
        Some(RequestRefused::OverMaxDuration("4h".into()))
    );
    assert_eq!(
        refused("/teams/pay/x/y", &write, 60, &member("eve", &[])),
        Some(RequestRefused::OutsideEntries)
    );
    let mut no_reason = asked(&db, "/teams/pay/x/y", &write, 60);
    no_reason.reason = " ";
    assert_eq!(
        table.fit_request(&alice, &no_reason).err(),
        Some(RequestRefused::ReasonRequired)
    );
}

#[test]
fn reviewers_are_approvers_never_the_requester_unless_break_glass() {
    let e = engine();
    let table = e.table();
    let entry = table.requestable("prod-deploy").unwrap();
    let alice = member("alice", &["eng", "admins"]);
    let input = |requester: &Principal, reason: &'static str| {
        let r: &'static Principal = Box::leak(Box::new(requester.clone()));
        ApprovalInput {
            path: "/teams/pay/**",
            actions: &[],
            database: "projects/p/databases/(default)",
            duration: Duration::from_secs(60),
            reason,
            requester: r,
            catalog: None,
        }
    };
    let admin = member("root", &["admins"]);
    assert_eq!(
        entry.reviewer(&admin, &input(&alice, "INC-7")),
        Some(Reviewer::Approver)
    );
    // `approvers.when` reads the request.
    assert_eq!(entry.reviewer(&admin, &input(&alice, "because")), None);
    // An admin who asked cannot approve their own request…
    assert_eq!(entry.reviewer(&alice, &input(&alice, "INC-7")), None);
    // …unless in `break_glass`.
    let oncall = member("sam", &["eng", "oncall"]);
    assert_eq!(
        entry.reviewer(&oncall, &input(&oncall, "INC-7")),
        Some(Reviewer::BreakGlass)
    );
    assert_eq!(
        entry.reviewer(&member("eve", &["eng"]), &input(&alice, "INC-7")),
        None
    );
}

#[test]
fn invalid_entries_are_reported_with_their_line() {
    let text = r#"
rules:
  - id: read-all
    match: /{rest=**}
    allow: [read]
    who: {any: true}
requestable:
  - id: read-all
    match: /teams
    actions: [scribble]
    who: {groups: [eng]}
    approvers: {who: {groups: [admins]}, min: 0, when: "nope.x"}
    max_duration: 30d
"#;
    let errors = Table::from_yaml(text, 1).err().unwrap().to_string();
    for want in [
        "<inline>:8: requestable `read-all`: duplicate id",
        "`match: /teams` names a collection",
        "unknown action `scribble`",
        "`approvers.min` must be at least 1",
        "unknown variable `nope`",
        "`max_duration` may be at most 7 days",
    ] {
        assert!(errors.contains(want), "{want} not in:\n{errors}");
    }
    let missing = "requestable:\n  - id: x\n    match: /a/{b}\n    actions: [write]\n";
    let errors = Table::from_yaml(missing, 1).err().unwrap().to_string();
    for want in [
        "`who`",
        "`approvers` is required",
        "`max_duration` is required",
    ] {
        assert!(errors.contains(want), "{want} not in:\n{errors}");
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("teams".to_string()),
        Just("pay".to_string()),
        Just("deployments".to_string()),
        Just("secrets".to_string()),
        Just("d1".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
    ]
}

fn concrete() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("teams".to_string()),
        Just("pay".to_string()),
        Just("ops".to_string()),
        Just("secrets".to_string()),
        Just("deployments".to_string()),
        Just("d1".to_string()),
        Just("other".to_string()),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Get),
        Just(Access::List),
        Just(Access::Create),
        Just(Access::Update),
        Just(Access::Delete),
    ]
}

proptest! {
    /// Whatever is asked, a grant made from what `fit_request` accepted
    /// allows only targets its entry allows: the entry's scope, actions
    /// and database, for its principal, and never past a deny rule.
    #[test]
    fn a_grant_never_reaches_outside_its_entry(
        asked_path in prop::collection::vec(segment(), 1..6),
        asked_actions in prop::sample::subsequence(
            vec!["read", "write", "get", "create", "update", "delete"], 1..3),
        target in prop::collection::vec(concrete(), 1..4)
            .prop_map(|ids| ids.into_iter().flat_map(|id| [id, "d1".to_string()]).collect::<Vec<_>>()),
        access in access(),
        other_db in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let e = engine();
        let table = e.table();
        let alice = member("alice", &["eng"]);
        let path = format!("/{}", asked_path.join("/"));
        let actions: Vec<String> = asked_actions.iter().map(|a| a.to_string()).collect();
        let database = db();
        let Ok(fits) = table.fit_request(&alice, &asked(&database, &path, &actions, 60)) else {
            return Ok(());
        };
        e.set_grants(vec![Grant {
            id: "g".into(),
            entry: fits.entry.id.clone(),
            issuer: alice.issuer.clone(),
            subject: alice.subject.clone(),
            database: database.clone(),
            pattern: fits.pattern.clone(),
            actions: fits.actions,
            expires_at: SystemTime::now() + Duration::from_secs(60),
        }]);
        let target_path = format!("/{}", target.join("/"));
        let mut o = op(Method::Commit, vec![doc(&target_path, access)]);
        if other_db {
            o.database = Database::new("p", "other");
        }
        let d = rt.block_on(e.decide(&alice, &o));
        if d.targets[0].why == Why::Granted {
            let entry = table.requestable("prod-deploy").unwrap();
            let t: &Target = &d.targets[0].target;
            prop_assert!(entry.actions.contains(t.access));
            prop_assert!(!other_db);
            prop_assert!(target_path.starts_with("/teams/"));
            // `no-secrets` denies `/teams/{team}/secrets/{s}` exactly; a
            // `secrets` deeper down (`/teams/a/teams/b/secrets/c`) is no
            // part of it, and a grant of `/teams/**` may reach it.
            let segments: Vec<&str> = target.iter().map(String::as_str).collect();
            prop_assert!(!matches!(segments.as_slice(), ["teams", _, "secrets", _]));
            prop_assert!(fits.actions.contains(access));
            // Nobody else gains anything from it.
            let bob = member("bob", &["eng"]);
            prop_assert!(!rt.block_on(e.decide(&bob, &o)).allowed);
        }
    }
}
