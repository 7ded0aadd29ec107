//! The Backstage catalog as the source of ownership, end to end: a real
//! Backstage backend (tests/backstage/, with the catalog plugin reading a
//! file location) and a whole firegate whose rules name the catalog. The
//! file is edited while both run; firegate syncs every half second. The
//! same backend's notifications plugin receives firegate's access-request
//! notifications (`access.notify.backstage`).

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use firegate::dev::{DevOptions, Identity, SAMPLE_DATABASE, Stack};
use serde_json::{Value, json};

use support::backstage::Backstage;
use support::within;

const POLICY: &str = r#"rules:
  - id: service-owners
    match: /services/{service}/{rest=**}
    allow: [read, write]
    who: {catalog: {owner_of: "component:default/{service}"}}
requestable:
  - id: service-data
    match: /services/{service}/{rest=**}
    actions: [write]
    who: {authenticated: true}
    approvers: {who: {catalog: {owner_of: "component:default/{service}"}}}
    max_duration: 1h
"#;

const TOKEN: &str = "firegate-catalog-test-token-0123456789";

fn group(name: &str, parent: Option<&str>) -> String {
    let parent = parent.map_or(String::new(), |p| format!(", parent: {p}"));
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {{name: {name}}}\nspec: {{type: team, children: []{parent}}}\n"
    )
}

fn user(name: &str, groups: &[&str]) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: User\nmetadata: {{name: {name}}}\nspec: {{memberOf: [{}]}}\n",
        groups.join(", ")
    )
}

fn component(name: &str, owner: &str) -> String {
    format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec: {{type: service, lifecycle: production, owner: {owner}}}\n"
    )
}

/// The catalog file: a hierarchy (org ⊃ payments, search), users in each,
/// and the components given.
fn write_catalog(path: &Path, components: &[(&str, &str)]) {
    let mut docs = vec![
        group("org", None),
        group("payments", Some("org")),
        group("search", Some("org")),
        user("alice", &["payments"]),
        user("bob", &["search"]),
        user("carol", &["org"]),
        user("guest", &["payments"]),
    ];
    docs.extend(components.iter().map(|(n, o)| component(n, o)));
    // Written whole, then renamed: Backstage never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, docs.join("---\n")).expect("write catalog");
    std::fs::rename(&tmp, path).expect("rename catalog");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn person(name: &str) -> Identity {
    Identity {
        subject: format!("okta|{name}"),
        email: format!("{name}@example.com"),
        groups: vec![],
    }
}

/// A firegate whose catalog is at `backstage`, its dev issuer's callers
/// named `user:default/<email's local part>`.
async fn firegate(dir: &Path, backstage: &str, bs_issuer: bool, notify: bool) -> Stack {
    std::fs::write(dir.join("services.yaml"), POLICY).expect("policy");
    let issuer_port = free_port();
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let token_file = dir.join("catalog-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let mut extra = json!({
        "catalog": {
            "url": backstage,
            "token_file": token_file,
            "interval": "500ms",
            "timeout": "2s",
            "page_size": 3,
            "users": [{
                "issuer": format!("http://127.0.0.1:{issuer_port}"),
                "user_ref": "user:default/{email|local}",
            }],
        },
    });
    if notify {
        extra["access"] = json!({"notify": {"backstage": {
            "url": backstage,
            "token_file": token_file,
            "link": "/catalog/default/component/checkout?request={id}",
            "max_attempts": 2,
        }}});
    }
    if bs_issuer {
        // Both issuers: the list replaces the dev stack's.
        let dev = format!("http://127.0.0.1:{issuer_port}");
        extra["authn"] = json!({"issuers": [
            {
                "name": "dev",
                "issuer": dev,
                "audiences": [firegate::dev::issuer::AUDIENCE],
                "algorithms": ["ES256"],
            },
            {
                "name": "backstage",
                "kind": "backstage",
                "backstage": {"base_url": backstage},
                "jwks_refresh": {"min_interval": "1s"},
            },
        ]});
    }
    within(
        "firegate",
        Stack::start(DevOptions {
            listen: local,
            issuer_listen: SocketAddr::from(([127, 0, 0, 1], issuer_port)),
            emulator_listen: local,
            admin_listen: local,
            policies: Some(dir.to_owned()),
            extra_config: Some(extra),
            ..DevOptions::default()
        }),
    )
    .await
    .expect("firegate starts")
}

/// The status of a write of `/services/{service}/data/d` with `token`.
async fn write(stack: &Stack, token: &str, service: &str) -> u16 {
    reqwest::Client::new()
        .patch(format!(
            "{}/v1/{SAMPLE_DATABASE}/documents/services/{service}/data/d",
            stack.url()
        ))
        .bearer_auth(token)
        .json(&json!({"fields": {"v": {"stringValue": "x"}}}))
        .send()
        .await
        .expect("write")
        .status()
        .as_u16()
}

/// Wait (at most 40 s: Backstage processes the file every second or so,
/// firegate reads it every half second) until `token` gets `want`.
async fn until(stack: &Stack, token: &str, service: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let got = write(stack, token, service).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "write to {service}: still {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn catalog_check(stack: &Stack) -> Value {
    let ready = stack.app.readiness();
    let check = ready.check("catalog").expect("a catalog check");
    json!({"ready": check.ready, "required": check.required, "detail": check.detail})
}

async fn metric(stack: &Stack, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", stack.admin))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_catalog_decides_who_owns_a_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Beside the policy directory, not in it.
    let bs_dir = tempfile::tempdir().expect("tempdir");
    let catalog = bs_dir.path().join("catalog-info.yaml");
    write_catalog(&catalog, &[("checkout", "payments"), ("indexer", "search")]);
    let mut bs = Backstage::start_catalog(free_port(), "http://127.0.0.1:1", &catalog, TOKEN).await;
    // A fresh backend publishes its user key only after a first sign-in.
    let guest = bs.guest_token().await;
    let stack = firegate(dir.path(), &bs.base, true, true).await;
    let [alice, bob, carol] =
        ["alice", "bob", "carol"].map(|n| stack.token(&person(n)).expect("token"));

    // The owning team (alice, and the Backstage guest by its token's `sub`)
    // writes its service; a sibling team, a parent group's member and the
    // other service's team do not.
    // Backstage processes each entity on its own: wait for all of them.
    until(&stack, &alice, "checkout", 200).await;
    until(&stack, &guest, "checkout", 200).await; // GUEST, in payments
    until(&stack, &bob, "indexer", 200).await;
    assert_eq!(write(&stack, &bob, "checkout").await, 403);
    assert_eq!(
        write(&stack, &carol, "checkout").await,
        403,
        "org's member owns no team's service"
    );
    assert_eq!(write(&stack, &alice, "indexer").await, 403);
    // A wildcard that names no entity matches nobody.
    assert_eq!(write(&stack, &alice, "nothing").await, 403);
    let check = catalog_check(&stack);
    assert_eq!(check["ready"], true, "{check}");
    assert_eq!(check["required"], false, "{check}");

    // `firegate catalog dump` reads the same catalog into a snapshot the
    // offline tools decide with alike.
    let snapshot = firegate::cli::catalog::dump(&bs.base, Some(TOKEN), Duration::from_secs(10))
        .await
        .expect("dump");
    let items = firegate::catalog::snapshot_items(&snapshot).expect("snapshot");
    let index = firegate::catalog::Index::from_items(items);
    assert_eq!(
        index.owners("component:default/checkout"),
        ["group:default/payments"]
    );
    assert!(index.owns("user:default/alice", "component:default/checkout"));
    assert!(!index.owns("user:default/carol", "component:default/checkout"));

    access_requests_notify_through_backstage(&bs, &stack, &carol, &bob).await;

    // A component added: its owner may write once a sync has seen it.
    assert_eq!(write(&stack, &bob, "ledger").await, 403, "not before");
    write_catalog(
        &catalog,
        &[
            ("checkout", "payments"),
            ("indexer", "search"),
            ("ledger", "search"),
        ],
    );
    until(&stack, &bob, "ledger", 200).await;
    assert_eq!(write(&stack, &alice, "ledger").await, 403);

    // The owner changed: access moves.
    write_catalog(
        &catalog,
        &[
            ("checkout", "search"),
            ("indexer", "search"),
            ("ledger", "search"),
        ],
    );
    until(&stack, &bob, "checkout", 200).await;
    assert_eq!(write(&stack, &alice, "checkout").await, 403);

    // The entity deleted: access gone.
    write_catalog(&catalog, &[("checkout", "search"), ("ledger", "search")]);
    until(&stack, &bob, "indexer", 403).await;
    assert_eq!(write(&stack, &bob, "ledger").await, 200);

    // Backstage stopped: the last index keeps deciding; its age shows.
    bs.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(write(&stack, &bob, "checkout").await, 200);
    assert_eq!(write(&stack, &alice, "checkout").await, 403);
    let check = catalog_check(&stack);
    assert_eq!(check["ready"], true, "{check}");
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("serving the last index (age") && detail.contains("latest sync failed"),
        "{check}"
    );
    let age = metric(&stack, "firegate_catalog_index_age_seconds").await;
    assert!(age.is_some_and(|a| a >= 1.0), "age {age:?}");
    within("firegate to stop", stack.shutdown()).await;
}

#[tokio::test]
async fn firegate_started_while_backstage_is_down_refuses_catalog_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let stack = firegate(dir.path(), &nowhere, false, false).await;
    let alice = stack.token(&person("alice")).expect("token");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(write(&stack, &alice, "checkout").await, 403);
    let check = catalog_check(&stack);
    assert_eq!(check["ready"], false, "{check}");
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("no catalog index yet: catalog answer"),
        "{check}"
    );
    assert_eq!(
        metric(&stack, "firegate_catalog_index_age_seconds").await,
        Some(-1.0)
    );
    within("firegate to stop", stack.shutdown()).await;
}

/// An access request through firegate: Backstage's notifications plugin
/// tells the owners of the service (bob, in search, which owns `indexer`)
/// and, once bob approves, the requester (carol) — each read back as
/// that user from `GET /api/notifications/notifications`.
async fn access_requests_notify_through_backstage(
    bs: &Backstage,
    stack: &Stack,
    carol: &str,
    bob: &str,
) {
    let api = format!("{}/firegate/v1/access/requests", stack.url());
    let http = reqwest::Client::new();
    let post = |token: &str, url: String, body: Value| {
        http.post(url).bearer_auth(token).json(&body).send()
    };
    let asked: Value = post(
        carol,
        api.clone(),
        json!({"path": "/services/indexer/**", "actions": ["write"], "duration": "10m", "reason": "INC-9"}),
    )
    .await
    .expect("request")
    .json()
    .await
    .expect("request JSON");
    let id = asked["id"].as_str().expect("request id").to_owned();
    let [bob_bs, carol_bs, alice_bs] = [
        bs.user_token("bob").await,
        bs.user_token("carol").await,
        bs.user_token("alice").await,
    ];
    // Sent with the static token: its subject is the origin.
    let mine = |n: &[Value]| -> Vec<Value> {
        n.iter()
            .filter(|n| n["payload"]["topic"] == "firegate-access")
            .inspect(|n| assert_eq!(n["origin"], "firegate-catalog", "{n}"))
            .map(|n| n["payload"].clone())
            .collect()
    };
    let wait = |token: String, what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = mine(&bs.notifications(&token).await);
            if !got.is_empty() {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no notification: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let to_bob = wait(bob_bs.clone(), "bob, an owner of indexer, of the request").await;
    assert_eq!(to_bob.len(), 1, "{to_bob:?}");
    let title = to_bob[0]["title"].as_str().unwrap_or_default();
    assert!(title.contains("/services/indexer/**"), "{title}");
    assert_eq!(
        to_bob[0]["link"],
        format!("/catalog/default/component/checkout?request={id}")
    );
    assert!(
        mine(&bs.notifications(&carol_bs).await).is_empty(),
        "the requester is not told of her own request"
    );

    let approved = post(bob, format!("{api}/{id}:approve"), json!({"reason": "ok"}))
        .await
        .expect("approve");
    assert_eq!(approved.status(), 200);
    let to_carol = wait(carol_bs, "carol, the requester, of the approval").await;
    assert_eq!(to_carol.len(), 1, "{to_carol:?}");
    let title = to_carol[0]["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("Access granted"), "{title}");
    assert_eq!(
        write(stack, carol, "indexer").await,
        200,
        "the grant allows"
    );
    // Nobody else hears of it: alice owns checkout, not indexer.
    assert!(mine(&bs.notifications(&alice_bs).await).is_empty());
    assert_eq!(mine(&bs.notifications(&bob_bs).await).len(), 1);
}
