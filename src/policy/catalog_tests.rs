//! Catalog-bound `who`: owners and members from the index, path wildcards
//! put into the entity ref, fail closed without an index.

use serde_json::json;

use super::Table;
use super::fixtures::{doc, member, op};
use crate::catalog::{Identities, Index, View};
use crate::model::{Access, Method};

const RULES: &str = r#"rules:
  - id: service-owners
    match: /services/{service}/{rest=**}
    allow: [read, write]
    who: {catalog: {owner_of: "component:default/{service}"}}
  - id: team-space
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: {catalog: {member_of: "group:{team}"}}
  - id: frozen
    match: /frozen/{service}
    deny: [write]
    who: {catalog: {owner_of: "component:{service}"}}
  - id: frozen-open
    match: /frozen/{service}
    allow: [read, write]
    who: {authenticated: true}
"#;

fn view() -> View {
    let index = Index::from_items(vec![
        json!({"kind": "Group", "metadata": {"name": "org"}}),
        json!({"kind": "Group", "metadata": {"name": "payments"}, "spec": {"parent": "org"}}),
        json!({"kind": "User", "metadata": {"name": "alice"}, "spec": {"memberOf": ["payments"]}}),
        json!({"kind": "User", "metadata": {"name": "bob"}, "spec": {"memberOf": ["org"]}}),
        json!({"kind": "Component", "metadata": {"name": "checkout"}, "spec": {"owner": "payments"}}),
    ]);
    View::fixed(index, Identities::from_subjects())
}

fn allowed(table: &Table, view: Option<&View>, who: &str, path: &str, access: Access) -> bool {
    let op = op(Method::Get, vec![doc(path, access)]);
    table.decide_catalog(&member(who, &[]), &op, view).allowed
}

#[test]
fn owners_and_members_are_allowed_and_nobody_else() {
    let table = Table::from_yaml(RULES, 1).expect("table");
    let v = view();
    let v = Some(&v);
    let alice = "user:default/alice";
    assert!(allowed(
        &table,
        v,
        alice,
        "/services/checkout/x/1",
        Access::Update
    ));
    assert!(allowed(
        &table,
        v,
        "user:alice",
        "/services/Checkout/x/1",
        Access::Get
    ));
    assert!(!allowed(
        &table,
        v,
        "user:default/bob",
        "/services/checkout/x/1",
        Access::Get
    ));
    assert!(!allowed(
        &table,
        v,
        "alice",
        "/services/checkout/x/1",
        Access::Get
    ));
    // A wildcard naming no entity matches nobody.
    assert!(!allowed(
        &table,
        v,
        alice,
        "/services/nothing/x/1",
        Access::Get
    ));
    assert!(!allowed(&table, v, alice, "/services/a:b/x/1", Access::Get));
    // Membership through the hierarchy: alice is in payments, a child of org.
    assert!(allowed(&table, v, alice, "/teams/org/d/1", Access::Get));
    assert!(allowed(
        &table,
        v,
        "user:default/bob",
        "/teams/org/d/1",
        Access::Get
    ));
    assert!(!allowed(
        &table,
        v,
        "user:default/bob",
        "/teams/payments/d/1",
        Access::Get
    ));
    assert!(!allowed(&table, v, alice, "/teams/ghost/d/1", Access::Get));
}

#[test]
fn without_an_index_allows_match_nobody_and_denies_apply() {
    let table = Table::from_yaml(RULES, 1).expect("table");
    let alice = "user:default/alice";
    assert!(!allowed(
        &table,
        None,
        alice,
        "/services/checkout/x/1",
        Access::Get
    ));
    assert!(!allowed(
        &table,
        None,
        "user:default/bob",
        "/frozen/checkout",
        Access::Update
    ));
    let v = view();
    assert!(allowed(
        &table,
        Some(&v),
        "user:default/bob",
        "/frozen/checkout",
        Access::Update
    ));
    assert!(!allowed(
        &table,
        Some(&v),
        alice,
        "/frozen/checkout",
        Access::Update
    ));
}

#[test]
fn a_collection_scope_leaves_the_wildcard_unbound() {
    let table = Table::from_yaml(RULES, 1).expect("table");
    let v = view();
    let op = op(
        Method::RunQuery,
        vec![crate::model::Target {
            scope: crate::model::Scope::Collection {
                parent: crate::model::Segments::default(),
                collection: "services".into(),
            },
            access: Access::List,
        }],
    );
    let d = table.decide_catalog(&member("user:default/alice", &[]), &op, Some(&v));
    assert!(!d.allowed);
}

#[test]
fn bad_catalog_selectors_are_refused_at_load() {
    for (who, want) in [
        (
            r#"{catalog: {owner_of: "component:default/{nope}"}}"#,
            "not a single-segment wildcard",
        ),
        (
            r#"{catalog: {owner_of: "component:default/{rest}"}}"#,
            "not a single-segment wildcard",
        ),
        (
            r#"{catalog: {member_of: "component:{service}"}}"#,
            "names a group",
        ),
        (r#"{catalog: {owner_of: "{service}"}}"#, "not an entity ref"),
        (
            r#"{catalog: {owner_of: "component:x", member_of: "group:y"}}"#,
            "one of",
        ),
        (r#"{catalog: {}}"#, "one of"),
    ] {
        let yaml = format!(
            "rules:\n  - id: r\n    match: /services/{{service}}/{{rest=**}}\n    allow: [read]\n    who: {who}\n"
        );
        let err = Table::from_yaml(&yaml, 1).err().expect(who).to_string();
        assert!(err.contains(want), "{who}: {err}");
    }
}

const REQUESTABLE: &str = r#"requestable:
  - id: service-data
    match: /services/{service}/{rest=**}
    actions: [write]
    who: {catalog: {member_of: "group:org"}}
    approvers: {who: {catalog: {owner_of: "component:default/{service}"}}}
    max_duration: 4h
    break_glass: {catalog: {owner_of: "component:{service}"}}
"#;

fn approval<'a>(
    path: &'a str,
    requester: &'a crate::authn::Principal,
    view: Option<&'a View>,
) -> super::requestable::ApprovalInput<'a> {
    super::requestable::ApprovalInput {
        path,
        actions: &[],
        database: "projects/p/databases/(default)",
        duration: std::time::Duration::from_secs(60),
        reason: "",
        requester,
        catalog: view,
    }
}

#[test]
fn the_requested_path_binds_the_entry_wildcards() {
    use super::requestable::{asked_binding, requested_pattern};
    let entry = super::pattern::Pattern::parse("/services/{service}/{rest=**}").unwrap();
    let bound = |path: &str| {
        let asked = requested_pattern(path).unwrap();
        asked_binding(&entry, &asked, "service").map(String::from)
    };
    assert_eq!(bound("/services/checkout/**").as_deref(), Some("checkout"));
    assert_eq!(bound("/services/checkout/x/1").as_deref(), Some("checkout"));
    assert_eq!(bound("/services/*/**"), None);
    assert_eq!(bound("/services/**"), None);
    let asked = requested_pattern("/services/checkout/**").unwrap();
    assert_eq!(asked_binding(&entry, &asked, "rest"), None);
}

#[test]
fn owners_of_the_requested_service_approve_and_nobody_else() {
    let table = Table::from_yaml(REQUESTABLE, 1).expect("table");
    let entry = table.requestable("service-data").unwrap();
    let v = view();
    let bob = member("user:default/bob", &[]);
    let alice = member("user:default/alice", &[]);
    let carol = member("user:default/carol", &[]);
    use super::requestable::Reviewer;
    let checkout = approval("/services/checkout/**", &bob, Some(&v));
    assert_eq!(entry.reviewer(&alice, &checkout), Some(Reviewer::Approver));
    assert_eq!(entry.reviewer(&carol, &checkout), None);
    // bob (org) is no owner of checkout: a member of its owner's parent.
    let by_alice = approval("/services/checkout/**", &alice, Some(&v));
    assert_eq!(entry.reviewer(&bob, &by_alice), None);
    // The owner asking for their own: break-glass, through the catalog.
    assert_eq!(
        entry.reviewer(&alice, &by_alice),
        Some(Reviewer::BreakGlass)
    );
    // A wildcard the request leaves open binds nothing: nobody approves.
    let any = approval("/services/*/**", &bob, Some(&v));
    assert_eq!(entry.reviewer(&alice, &any), None);
    // No index: nobody.
    let blind = approval("/services/checkout/**", &bob, None);
    assert_eq!(entry.reviewer(&alice, &blind), None);
    assert_eq!(entry.reviewer(&bob, &blind), None);
}

#[test]
fn who_may_ask_is_judged_against_the_catalog() {
    use super::requestable::{Asked, RequestRefused};
    let table = Table::from_yaml(REQUESTABLE, 1).expect("table");
    let v = view();
    let db = crate::model::Database::new("p", "(default)");
    let write = vec!["write".to_string()];
    let asked = |view| Asked {
        database: &db,
        path: "/services/checkout/**",
        actions: &write,
        duration: std::time::Duration::from_secs(60),
        reason: "",
        catalog: view,
    };
    let bob = member("user:default/bob", &[]);
    assert!(table.fit_request(&bob, &asked(Some(&v))).is_ok());
    assert_eq!(
        table
            .fit_request(&member("user:default/carol", &[]), &asked(Some(&v)))
            .err(),
        Some(RequestRefused::OutsideEntries)
    );
    assert_eq!(
        table.fit_request(&bob, &asked(None)).err(),
        Some(RequestRefused::OutsideEntries)
    );
    assert!(
        table.uses_catalog(),
        "grant decisions depend on the catalog"
    );
}

#[test]
fn a_grant_holds_only_while_its_holder_may_still_ask() {
    use super::decide::Request;
    use super::grants::{Grant, PrincipalGrants};
    use super::requestable::requested_pattern;
    let table = Table::from_yaml(REQUESTABLE, 1).expect("table");
    let grant = |who: &crate::authn::Principal, path: &str| PrincipalGrants {
        generation: 1,
        grants: vec![std::sync::Arc::new(Grant {
            id: "g".into(),
            entry: "service-data".into(),
            issuer: who.issuer.clone(),
            subject: who.subject.clone(),
            database: crate::model::Database::new("p", "(default)"),
            pattern: requested_pattern(path).unwrap(),
            actions: super::compile::Actions::parse_all(&["write".to_string()]).unwrap(),
            expires_at: std::time::SystemTime::now() + std::time::Duration::from_secs(60),
        })],
    };
    let op = op(
        Method::Commit,
        vec![doc("/services/checkout/x/1", Access::Update)],
    );
    let bob = member("user:default/bob", &[]);
    let grants = grant(&bob, "/services/checkout/**");
    let v = view();
    let decide = |who, view| {
        table
            .decide_request(
                &Request::new(who, &op)
                    .with_catalog(view)
                    .granted(Some(&grants)),
            )
            .allowed
    };
    assert!(decide(&bob, Some(&v)));
    // bob left the catalog's `org`: the grant no longer holds.
    let without_bob = View::fixed(
        Index::from_items(vec![
            json!({"kind": "Group", "metadata": {"name": "org"}}),
            json!({"kind": "User", "metadata": {"name": "bob"}}),
        ]),
        Identities::from_subjects(),
    );
    assert!(!decide(&bob, Some(&without_bob)));
    assert!(!decide(&bob, None), "no index: fail closed");
}
