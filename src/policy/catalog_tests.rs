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
                parent: vec![],
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
