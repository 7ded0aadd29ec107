//! Decision semantics through the engine: precedence, aliases, every target,
//! `who`, `when`, `as`, caching and reload.

use prometheus_client::registry::Registry;

use super::fixtures::{doc, ids, op};
use super::*;
use crate::authn::Principal;
use crate::model::{Access, Method, Scope, Segments, Target};

fn principal(subject: &str, groups: &[&str], claims: serde_json::Value) -> Principal {
    let claims = match claims {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Principal::new(
        "https://idp.example".into(),
        subject.into(),
        Some(format!("{subject}@Example.com")),
        groups.iter().map(|g| g.to_string()).collect(),
        claims,
    )
}

fn alice() -> Principal {
    principal(
        "alice",
        &["group:default/payments"],
        serde_json::json!({"team": "payments", "roles": ["oncall"]}),
    )
}

fn engine(yaml: &str) -> PolicyEngine {
    match PolicyEngine::from_yaml(yaml, &mut Registry::default()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

async fn decide(e: &PolicyEngine, p: &Principal, targets: Vec<Target>) -> Decision {
    e.decide(p, &op(Method::Commit, targets)).await
}

const TEAMS: &str = r#"
rules:
  - id: catalog-readers
    match: /catalog/{entity}
    allow: [read]
    who: { authenticated: true }
  - id: own-team
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: { authenticated: true }
    when: "'group:default/' + path.team in principal.groups"
  - id: no-secrets
    match: /{path=**}/secrets/{secret}
    deny: [read, write]
    who: { any: true }
"#;

#[tokio::test]
async fn deny_beats_allow_whatever_the_order() {
    let e = engine(TEAMS);
    let d = decide(
        &e,
        &alice(),
        vec![doc("/teams/payments/secrets/k", Access::Get)],
    )
    .await;
    assert!(!d.allowed);
    assert_eq!(d.reason.as_deref(), Some("rule:no-secrets"));
    assert_eq!(d.targets[0].why, Why::DenyMatched);
    let d = decide(
        &e,
        &alice(),
        vec![doc("/teams/payments/deploys/d1", Access::Get)],
    )
    .await;
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.targets[0].rule.as_deref(), Some("own-team"));
    assert_eq!(d.reason, None);
}

#[tokio::test]
async fn aliases_expand_and_nothing_more() {
    let e = engine(TEAMS);
    let a = alice();
    for access in [Access::Get, Access::List] {
        let target = if access == Access::List {
            Target {
                scope: Scope::Collection {
                    parent: Segments::default(),
                    collection: "catalog".into(),
                },
                access,
            }
        } else {
            doc("/catalog/svc", access)
        };
        assert!(decide(&e, &a, vec![target]).await.allowed, "{access}");
    }
    for access in [Access::Create, Access::Update, Access::Delete] {
        let d = decide(&e, &a, vec![doc("/catalog/svc", access)]).await;
        assert!(!d.allowed, "{access}");
        assert_eq!(d.reason.as_deref(), Some("no_rule_matched"));
        assert!(
            decide(&e, &a, vec![doc("/teams/payments/x/1", access)])
                .await
                .allowed
        );
    }
}

#[tokio::test]
async fn every_target_must_be_allowed() {
    let e = engine(TEAMS);
    let d = decide(
        &e,
        &alice(),
        vec![
            doc("/teams/payments/deploys/d1", Access::Update),
            doc("/teams/search/deploys/d1", Access::Update),
        ],
    )
    .await;
    assert!(!d.allowed);
    assert!(d.targets[0].allowed);
    assert!(!d.targets[1].allowed);
    assert_eq!(d.targets[1].why, Why::ConditionFalse);
    assert_eq!(d.reason.as_deref(), Some("condition_false:own-team"));
    assert_eq!(d.upstream_account, None);
}

#[tokio::test]
async fn no_targets_is_allowed_with_the_base_identity() {
    let e = engine(TEAMS);
    let d = e
        .decide(&alice(), &op(Method::BeginTransaction, vec![]))
        .await;
    assert!(d.allowed);
    assert_eq!(d.upstream_account, None);
}

#[tokio::test]
async fn collection_group_query_needs_a_rule_over_every_depth() {
    let e = engine(TEAMS);
    let group = |parent: &str| Target {
        scope: Scope::CollectionGroup {
            parent: ids(parent),
            collection: "deploys".into(),
        },
        access: Access::List,
    };
    let d = decide(&e, &alice(), vec![group("")]).await;
    assert!(!d.allowed);
    assert_eq!(d.reason.as_deref(), Some("no_rule_matched"));
    assert!(
        decide(&e, &alice(), vec![group("/teams/payments")])
            .await
            .allowed
    );
    assert!(
        !decide(&e, &alice(), vec![group("/teams/search")])
            .await
            .allowed
    );
}

#[tokio::test]
async fn kindless_and_collection_ids_scopes() {
    let e = engine(TEAMS);
    let below = |parent: &str| Target {
        scope: Scope::Descendants {
            parent: ids(parent),
        },
        access: Access::List,
    };
    // Rules are not filters: below the team there may be `secrets`.
    let d = decide(&e, &alice(), vec![below("/teams/payments")]).await;
    assert_eq!(
        (d.allowed, d.reason.as_deref()),
        (false, Some("rule:no-secrets"))
    );
    let without_deny = engine(&TEAMS[..TEAMS.find("  - id: no-secrets").unwrap()]);
    assert!(
        decide(&without_deny, &alice(), vec![below("/teams/payments")])
            .await
            .allowed
    );
    assert!(
        !decide(&without_deny, &alice(), vec![below("")])
            .await
            .allowed
    );
    let names = |parent: &str| Target {
        scope: Scope::CollectionIds {
            parent: ids(parent),
        },
        access: Access::List,
    };
    assert!(
        decide(&e, &alice(), vec![names("/teams/payments")])
            .await
            .allowed
    );
    assert!(!decide(&e, &alice(), vec![names("")]).await.allowed);
}

#[tokio::test]
async fn a_deny_on_part_of_a_scope_refuses_the_whole_query() {
    let e = engine(
        r#"
rules:
  - { id: read-catalog, match: "/catalog/{e}", allow: [read], who: { any: true } }
  - { id: hidden, match: /catalog/hidden, deny: [read], who: { any: true } }
  - { id: admins, match: "/{p=**}", allow: [read], who: { any: true } }
  - { id: no-keys, match: "/vault/{v}/keys/{k}", deny: [read], who: { any: true } }
"#,
    );
    let list = |parent: &str, collection: &str| Target {
        scope: Scope::Collection {
            parent: ids(parent),
            collection: collection.into(),
        },
        access: Access::List,
    };
    let d = decide(&e, &alice(), vec![list("", "catalog")]).await;
    assert_eq!(d.reason.as_deref(), Some("rule:hidden"));
    assert!(
        decide(&e, &alice(), vec![doc("/catalog/shown", Access::Get)])
            .await
            .allowed
    );
    let group = |collection: &str| Target {
        scope: Scope::CollectionGroup {
            parent: Segments::default(),
            collection: collection.into(),
        },
        access: Access::List,
    };
    assert_eq!(
        decide(&e, &alice(), vec![group("keys")])
            .await
            .reason
            .as_deref(),
        Some("rule:no-keys")
    );
    assert!(decide(&e, &alice(), vec![group("locks")]).await.allowed);
    assert!(
        decide(&e, &alice(), vec![list("/vault/v1", "locks")])
            .await
            .allowed
    );
    assert!(
        !decide(&e, &alice(), vec![list("/vault/v1", "keys")])
            .await
            .allowed
    );
}

#[tokio::test]
async fn who_selectors() {
    let e = engine(
        r#"
rules:
  - { id: by-group, match: "/g/{d}", allow: [get], who: { groups: [group:default/payments] } }
  - { id: by-email, match: "/e/{d}", allow: [get], who: { emails: [ALICE@example.COM] } }
  - { id: by-subject, match: "/s/{d}", allow: [get], who: { subjects: [alice] } }
  - { id: by-issuer, match: "/i/{d}", allow: [get], who: { issuers: ["https://idp.example"] } }
  - { id: by-claim, match: "/c/{d}", allow: [get], who: { claims: { team: payments } } }
  - { id: by-contains, match: "/k/{d}", allow: [get], who: { claims: { roles: { contains: oncall } } } }
  - { id: both, match: "/b/{d}", allow: [get], who: { groups: [group:default/payments], subjects: [bob] } }
"#,
    );
    let alice = alice();
    let bob = principal(
        "bob",
        &["group:default/search"],
        serde_json::json!({"team": "search", "roles": []}),
    );
    for (collection, alice_ok) in [
        ("g", true),
        ("e", true),
        ("s", true),
        ("i", true),
        ("c", true),
        ("k", true),
        ("b", false),
    ] {
        let path = format!("/{collection}/x");
        assert_eq!(
            decide(&e, &alice, vec![doc(&path, Access::Get)])
                .await
                .allowed,
            alice_ok,
            "{path}"
        );
        let bob_ok = collection == "i";
        assert_eq!(
            decide(&e, &bob, vec![doc(&path, Access::Get)])
                .await
                .allowed,
            bob_ok,
            "{path} bob"
        );
    }
}

#[tokio::test]
async fn conditions_read_claims_and_paths() {
    let e = engine(
        r#"
rules:
  - id: claim-team
    match: /teams/{team}/deploys/{d}
    allow: [create]
    who: { authenticated: true }
    when: principal.claims.team == path.team && request.method == 'create'
"#,
    );
    let a = alice();
    assert!(
        decide(
            &e,
            &a,
            vec![doc("/teams/payments/deploys/1", Access::Create)]
        )
        .await
        .allowed
    );
    let d = decide(&e, &a, vec![doc("/teams/search/deploys/1", Access::Create)]).await;
    assert_eq!(d.reason.as_deref(), Some("condition_false:claim-team"));
}

#[tokio::test]
async fn database_restriction() {
    let e = engine(
        r#"
rules:
  - { id: other-db, match: "/a/{d}", allow: [get], who: { any: true }, database: analytics }
  - { id: full-name, match: "/b/{d}", allow: [get], who: { any: true }, database: "projects/p/databases/(default)" }
"#,
    );
    assert!(
        !decide(&e, &alice(), vec![doc("/a/x", Access::Get)])
            .await
            .allowed
    );
    assert!(
        decide(&e, &alice(), vec![doc("/b/x", Access::Get)])
            .await
            .allowed
    );
}

const ACCOUNTS: &str = r#"
rules:
  - { id: as-reader, match: "/r/{d}", allow: [get], who: { any: true }, as: reader@p.iam.gserviceaccount.com }
  - { id: as-writer, match: "/w/{d}", allow: [get], who: { any: true }, as: writer@p.iam.gserviceaccount.com }
  - { id: base, match: "/b/{d}", allow: [get], who: { any: true } }
"#;

#[tokio::test]
async fn upstream_account_comes_from_the_allowing_rules() {
    let e = engine(ACCOUNTS);
    let d = decide(
        &e,
        &alice(),
        vec![doc("/r/1", Access::Get), doc("/r/2", Access::Get)],
    )
    .await;
    assert!(d.allowed);
    assert_eq!(
        d.upstream_account.as_deref(),
        Some("reader@p.iam.gserviceaccount.com")
    );
    let d = decide(&e, &alice(), vec![doc("/b/1", Access::Get)]).await;
    assert_eq!((d.allowed, d.upstream_account), (true, None));
}

#[tokio::test]
async fn mixed_upstream_accounts_are_refused() {
    let e = engine(ACCOUNTS);
    for second in ["/w/1", "/b/1"] {
        let d = decide(
            &e,
            &alice(),
            vec![doc("/r/1", Access::Get), doc(second, Access::Get)],
        )
        .await;
        assert!(!d.allowed, "{second}");
        assert!(d.targets.iter().all(|t| t.allowed));
        assert_eq!(d.reason.as_deref(), Some("mixed_upstream_accounts"));
        assert_eq!(d.upstream_account, None);
    }
}

#[test]
fn every_load_error_is_reported_with_its_line() {
    let yaml = r#"rules:
  - id: a
    match: /catalog
    allow: [read]
    who: { any: true }
  - id: a
    match: /x/{y}
    allow: [reed]
    who: { any: true }
  - id: c
    match: /x/{y}
    allow: [read]
    who: { any: true }
    when: user.admin
  - id: d
    match: /x/{y}
    allow: [read]
"#;
    let errors = match Table::from_yaml(yaml, 1) {
        Err(e) => e.0,
        Ok(_) => panic!("invalid table accepted"),
    };
    let lines: Vec<(Option<usize>, &str)> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 5, "{lines:#?}");
    let has = |line: usize, text: &str| {
        lines
            .iter()
            .any(|(l, m)| *l == Some(line) && m.contains(text))
    };
    assert!(has(3, "odd number of segments"), "{lines:#?}");
    assert!(has(6, "duplicate rule id `a`"), "{lines:#?}");
    assert!(has(8, "unknown action `reed`"), "{lines:#?}");
    assert!(has(14, "unknown variable `user`"), "{lines:#?}");
    assert!(has(15, "needs `who`"), "{lines:#?}");
}

fn metric(registry: &Registry, line_start: &str) -> Option<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn decisions_are_cached_except_when_they_read_the_clock() {
    let yaml = r#"
rules:
  - { id: plain, match: "/a/{d}", allow: [get], who: { any: true } }
  - { id: timed, match: "/t/{d}", allow: [get], who: { any: true }, when: "request.time > timestamp('2000-01-01T00:00:00Z')" }
"#;
    let mut registry = Registry::default();
    let e = PolicyEngine::from_yaml(yaml, &mut registry).unwrap_or_else(|e| panic!("{e}"));
    let hits = "policy_cache_lookups_total{result=\"hit\"}";
    for _ in 0..3 {
        assert!(
            decide(&e, &alice(), vec![doc("/a/1", Access::Get)])
                .await
                .allowed
        );
    }
    assert_eq!(metric(&registry, hits).as_deref(), Some("2"));
    for _ in 0..3 {
        assert!(
            decide(&e, &alice(), vec![doc("/t/1", Access::Get)])
                .await
                .allowed
        );
    }
    assert_eq!(metric(&registry, hits).as_deref(), Some("2"));
    let other = principal("bob", &[], serde_json::json!({}));
    assert!(
        decide(&e, &other, vec![doc("/a/1", Access::Get)])
            .await
            .allowed
    );
    assert_eq!(
        metric(&registry, hits).as_deref(),
        Some("2"),
        "other principal"
    );
}

const V1: &str = "rules:\n  - { id: v1, match: '/a/{d}', allow: [get], who: { any: true } }\n";
const V2: &str = "rules:\n  - { id: v2, match: '/a/{d}', deny: [get], who: { any: true } }\n";

#[tokio::test]
async fn invalid_reload_is_refused_and_the_old_table_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), V1).unwrap();
    let mut registry = Registry::default();
    let config = unwatched(dir.path());
    let e = PolicyEngine::new(&config, &mut registry).await.unwrap();
    let target = || vec![doc("/a/1", Access::Get)];
    assert!(decide(&e, &alice(), target()).await.allowed);

    std::fs::write(
        dir.path().join("broken.yaml"),
        "rules:\n  - id: x\n    match: nope\n",
    )
    .unwrap();
    // (A SIGHUP from another test may reload too; from here on it is refused as well.)
    let epoch = e.epoch();
    let errors = e.reload().await.err().unwrap();
    assert!(errors.to_string().contains("broken.yaml:3"), "{errors}");
    assert_eq!(e.epoch(), epoch);
    assert!(e.not_ready().is_none());
    assert!(e.reload_error().unwrap().contains("broken.yaml"));
    assert_eq!(
        metric(&registry, "policy_reload_refused").as_deref(),
        Some("1")
    );
    let d = decide(&e, &alice(), target()).await;
    assert_eq!(
        (d.allowed, d.targets[0].rule.as_deref()),
        (true, Some("v1"))
    );

    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), V2).unwrap();
    assert!(e.reload().await.ok() > Some(epoch));
    assert!(e.reload_error().is_none());
    assert_eq!(
        metric(&registry, "policy_reload_refused").as_deref(),
        Some("0")
    );
    let d = decide(&e, &alice(), target()).await;
    assert_eq!(
        (d.allowed, d.reason.as_deref()),
        (false, Some("rule:v2")),
        "cached allow survived the reload"
    );
}

#[tokio::test]
async fn an_invalid_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), "rules:\n  - id: x\n").unwrap();
    let err = PolicyEngine::from_dir(dir.path(), &mut Registry::default())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("rules.yaml"), "{err:#}");
    let missing = dir.path().join("missing");
    assert!(
        PolicyEngine::from_dir(&missing, &mut Registry::default())
            .await
            .is_err()
    );
}

#[test]
fn rule_shape_errors() {
    let cases = [
        (
            "{ id: x, match: '/a/{b}', allow: [get], deny: [get], who: { any: true } }",
            "not both",
        ),
        (
            "{ id: x, match: '/a/{b}', deny: [get], who: { any: true }, as: a@b.c }",
            "only makes sense on an allow rule",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [get], who: { any: true }, as: nobody }",
            "not a service-account email",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [], who: { any: true } }",
            "lists no action",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [get], who: { authenticated: false } }",
            "matches nobody",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [get], who: { groups: [] } }",
            "would match nobody",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [get], who: {} }",
            "selects nobody",
        ),
        (
            "{ id: 'x y', match: '/a/{b}', allow: [get], who: { any: true } }",
            "without spaces",
        ),
        (
            "{ id: x, match: '/a/{b}', allow: [get], who: { any: true }, when: 'path.c == 1' }",
            "does not bind",
        ),
    ];
    for (rule, want) in cases {
        let yaml = format!("rules:\n  - {rule}\n");
        match Table::from_yaml(&yaml, 1) {
            Ok(_) => panic!("accepted: {rule}"),
            Err(e) => assert!(e.to_string().contains(want), "{rule}: {e}"),
        }
    }
}

const SHADOWED: &str = r#"
rules:
  - id: catalog-readers
    match: /catalog/{entity}
    allow: [read]
    who: { authenticated: true }
  - id: hide-drafts
    mode: shadow
    match: /catalog/{entity}
    deny: [read]
    who: { any: true }
    when: "path.entity.startsWith('draft-')"
  - id: open-teams
    mode: shadow
    match: /teams/{team}
    allow: [get]
    who: { any: true }
"#;

#[tokio::test]
async fn shadow_rules_are_judged_but_never_decide() {
    let e = engine(SHADOWED);
    let d = decide(&e, &alice(), vec![doc("/catalog/draft-x", Access::Get)]).await;
    assert!(d.allowed, "a shadow deny does not refuse");
    assert_eq!(d.targets[0].rule.as_deref(), Some("catalog-readers"));
    let shadow = d.shadow.expect("the shadow deny would decide");
    assert_eq!(
        (shadow.allowed, shadow.rule.as_str()),
        (false, "hide-drafts")
    );
    let d = decide(&e, &alice(), vec![doc("/catalog/final", Access::Get)]).await;
    assert!(d.allowed);
    assert_eq!(d.shadow, None, "no shadow rule decides here");
    let d = decide(&e, &alice(), vec![doc("/teams/a", Access::Get)]).await;
    assert!(!d.allowed, "a shadow allow does not allow");
    let shadow = d.shadow.expect("the shadow allow would decide");
    assert_eq!((shadow.allowed, shadow.rule.as_str()), (true, "open-teams"));
    // Mixed: the request would be refused with the shadow deny enforced.
    let d = decide(
        &e,
        &alice(),
        vec![
            doc("/teams/a", Access::Get),
            doc("/catalog/draft-y", Access::Get),
        ],
    )
    .await;
    let shadow = d.shadow.expect("shadow");
    assert_eq!(
        (shadow.allowed, shadow.rule.as_str()),
        (false, "hide-drafts")
    );
}

#[test]
fn unknown_modes_are_refused() {
    let err = Table::from_yaml(
        "rules:\n  - { id: x, mode: audit, match: \"/a/{b}\", allow: [get], who: { any: true } }\n",
        0,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("audit"), "{err}");
}

/// Settings for `dir` without the file watcher, through the config's validation.
fn unwatched(dir: &std::path::Path) -> PolicySettings {
    let config = PolicyConfig {
        dir: dir.to_owned(),
        watch: false,
        ..PolicyConfig::default()
    };
    crate::config::errors::ConfigErrors::collect(|errors| config.validate(errors)).unwrap()
}

/// The targets of one request whose verdicts are judged once for all
/// (same rules, same path values read) never lend a verdict to a target
/// whose rules read something else.
#[tokio::test]
async fn targets_judged_once_differ_where_their_conditions_read() {
    let e = engine(
        r#"
rules:
  - id: own-team
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: { authenticated: true }
    when: "'group:default/' + path.team in principal.groups"
  - id: whole-path
    match: /orgs/{org}/{rest=**}
    allow: [update]
    who: { authenticated: true }
    when: "path['rest'] == 'a/1'"
  - id: deep-rest
    match: /units/{unit}/{rest=**}
    allow: [update]
    who: { authenticated: true }
    when: "path.rest.startsWith('open/')"
"#,
    );
    let a = alice();
    let update = |path: &str| doc(path, Access::Update);
    let uncached = e.table();
    for (targets, allowed) in [
        // The same rule, the same team, in many documents: judged once.
        (
            vec![
                update("/teams/payments/d/1"),
                update("/teams/payments/d/2"),
                update("/teams/payments/e/3"),
            ],
            vec![true, true, true],
        ),
        // Another team's document after one of the caller's.
        (
            vec![update("/teams/payments/d/1"), update("/teams/search/d/1")],
            vec![true, false],
        ),
        // The whole `path` read: each target on its own.
        (
            vec![update("/orgs/o/a/1"), update("/orgs/o/a/2")],
            vec![true, false],
        ),
        // A recursive wildcard's value read.
        (
            vec![update("/units/u/open/1"), update("/units/u/shut/1")],
            vec![true, false],
        ),
        // The access is part of what is judged.
        (
            vec![
                update("/teams/payments/d/1"),
                doc("/teams/payments/d/1", Access::Get),
            ],
            vec![true, true],
        ),
    ] {
        judged_as_one_commit(&e, &a, &targets, &allowed).await;
        // And as each target alone would be judged.
        for (target, allowed) in targets.iter().zip(&allowed) {
            let alone = uncached.decide(&a, &op(Method::Commit, vec![target.clone()]));
            assert_eq!(alone.allowed, *allowed, "{target:?}");
        }
    }
}

/// Consecutive targets of one scope share the rules their scope matched;
/// the next scope is matched afresh, whatever its access.
#[tokio::test]
async fn each_scope_of_a_request_is_matched_for_itself() {
    let e = engine(
        r#"
rules:
  - id: open
    match: /open/{d}
    allow: [create, update, delete]
    who: { authenticated: true }
  - id: shut
    match: /open/locked
    deny: [update]
    who: { authenticated: true }
"#,
    );
    let a = alice();
    for (targets, allowed) in [
        (
            vec![
                doc("/open/1", Access::Create),
                doc("/open/1", Access::Update),
                doc("/shut/1", Access::Create),
                doc("/shut/1", Access::Update),
                doc("/open/2", Access::Delete),
            ],
            vec![true, true, false, false, true],
        ),
        (
            vec![
                doc("/open/locked", Access::Create),
                doc("/open/locked", Access::Update),
                doc("/open/3", Access::Update),
            ],
            vec![true, false, true],
        ),
    ] {
        judged_as_one_commit(&e, &a, &targets, &allowed).await;
    }
}

/// `targets` judged as one commit through the engine (its cache and the
/// request's memo) and by the table alone (the memo only): each allowed
/// as `allowed` says.
async fn judged_as_one_commit(
    e: &PolicyEngine,
    p: &Principal,
    targets: &[Target],
    allowed: &[bool],
) {
    let d = decide(e, p, targets.to_vec()).await;
    let got: Vec<bool> = d.targets.iter().map(|t| t.allowed).collect();
    assert_eq!(got, allowed, "{targets:?}");
    let d = e.table().decide(p, &op(Method::Commit, targets.to_vec()));
    let got: Vec<bool> = d.targets.iter().map(|t| t.allowed).collect();
    assert_eq!(got, allowed, "{targets:?}");
}
