//! Backstage end to end: a real Backstage backend (tests/backstage/) in front
//! of a whole firegate (the dev stack with its in-memory emulator), trusting
//! Backstage's user and plugin tokens. Started once; every scenario in turn.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use firegate::dev::{DevOptions, SAMPLE_DATABASE, Stack};
use serde_json::{Value, json};

use support::backstage::{Backstage, CALLER_PLUGIN, GUEST, GUEST_TEAM, TARGET_PLUGIN};
use support::within;

const POLICY: &str = r#"rules:
  - id: own-team
    match: /teams/{team}/{rest=**}
    allow: [read, write]
    who: {authenticated: true}
    when: "'group:default/' + path.team in principal.groups"
  - id: plugin-sync
    match: /sync/{doc}
    allow: [read, write]
    who: {subjects: [plugin:firegate-caller]}
"#;

/// A port nobody listens on now, for a server whose address another must
/// know before it starts (Backstage's proxy target and firegate's issuer).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn docs(path: &str) -> String {
    format!("/v1/{SAMPLE_DATABASE}/documents/{path}")
}

async fn audit(stack: &Stack, path: &Path, request_id: &str) -> Value {
    stack.app.flush_audit().await;
    let text = std::fs::read_to_string(path).expect("audit file");
    let mut found = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON record per line"))
        .filter(|r| r["request_id"] == request_id);
    let record = found
        .next()
        .unwrap_or_else(|| panic!("no audit record {request_id}"));
    assert!(found.next().is_none(), "one record per request");
    record
}

/// What backend.js's plugin route answers: firegate's status and body.
async fn plugin_call(bs: &Backstage, user: &str, on_behalf: &str, call: Value) -> (u16, Value) {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/{CALLER_PLUGIN}/call/{on_behalf}", bs.base))
        .bearer_auth(user)
        .json(&call)
        .send()
        .await
        .expect("plugin route")
        .error_for_status()
        .expect("plugin route answered 200")
        .json()
        .await
        .expect("plugin route JSON");
    let status = answer["status"].as_u64().expect("firegate status") as u16;
    let body =
        serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (status, body)
}

/// Backstage and firegate running, each trusting the other: Backstage
/// proxies `/api/proxy/firestore` to firegate, firegate trusts Backstage's
/// user tokens and the caller plugin's tokens.
struct Scene {
    bs: Backstage,
    stack: Stack,
    firegate_url: String,
    audit_path: PathBuf,
    /// A guest user token, and a second one not sent anywhere yet.
    user: String,
    unseen_user: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    std::fs::write(dir.path().join("teams.yaml"), POLICY).expect("policy");
    let firegate_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let firegate_url = format!("http://{firegate_addr}");
    let bs = Backstage::start(free_port(), &firegate_url).await;

    // Tokens before firegate starts: a fresh backend publishes its user
    // signing key only once it has signed someone in.
    let user = bs.guest_token().await;
    let unseen_user = bs.guest_token().await;
    assert_ne!(user, unseen_user);

    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let stack = within(
        "firegate",
        Stack::start(DevOptions {
            listen: firegate_addr,
            issuer_listen: local,
            emulator_listen: local,
            admin_listen: local,
            policies: Some(dir.path().to_owned()),
            extra_config: Some(json!({
                "authn": {"issuers": [{
                    "name": "backstage",
                    "kind": "backstage",
                    "backstage": {
                        "base_url": bs.base,
                        "plugin_tokens": {"audience": TARGET_PLUGIN, "plugins": [CALLER_PLUGIN]},
                    },
                    "jwks_refresh": {"min_interval": "1s"},
                }]},
                "audit": {"sink": "file", "path": audit_path},
            })),
            ..DevOptions::default()
        }),
    )
    .await
    .expect("firegate starts");
    Scene {
        bs,
        stack,
        firegate_url,
        audit_path,
        user,
        unseen_user,
        _dir: dir,
    }
}

#[tokio::test]
async fn backstage_users_and_plugins_reach_firestore_through_firegate() {
    let Scene {
        mut bs,
        stack,
        firegate_url,
        audit_path,
        user,
        unseen_user,
        _dir,
    } = start().await;
    let http = reqwest::Client::new();
    let through_backstage = |method: reqwest::Method, path: &str, id: &str| {
        http.request(
            method,
            format!("{}/api/proxy/firestore{}", bs.base, docs(path)),
        )
        .bearer_auth(&user)
        .header("X-Request-Id", id)
    };

    // 1. A user's write through Backstage's proxy: allowed by the group the
    //    guest owns (from /api/auth/v1/userinfo: the token has no `ent`).
    let write = through_backstage(
        reqwest::Method::POST,
        "teams/payments/deployments?documentId=d1",
        "bs-write",
    )
    .json(&json!({"fields": {"version": {"stringValue": "1.2.3"}}}))
    .send()
    .await
    .expect("write through Backstage");
    assert_eq!(
        write.status(),
        200,
        "{}",
        write.text().await.unwrap_or_default()
    );
    let written = stack
        .emulator
        .fields(SAMPLE_DATABASE, "teams/payments/deployments/d1")
        .expect("the write reached Firestore");
    assert_eq!(written["version"]["stringValue"], "1.2.3");
    let record = audit(&stack, &audit_path, "bs-write").await;
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["principal"]["subject"], GUEST);
    assert_eq!(record["principal"]["groups"], json!([GUEST, GUEST_TEAM]));

    // 2. A read of another team's data: firegate's 403, as Backstage returns it.
    let read = through_backstage(
        reqwest::Method::GET,
        "teams/search/deployments/x",
        "bs-read",
    )
    .send()
    .await
    .expect("read through Backstage");
    assert_eq!(read.status(), 403);
    let body: Value = read.json().await.expect("Firestore-shaped error");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    let record = audit(&stack, &audit_path, "bs-read").await;
    assert_eq!(record["reason"], "condition_false:own-team");

    // Without a token Backstage answers itself; nothing reaches firegate.
    let anonymous = http
        .get(format!(
            "{}/api/proxy/firestore{}",
            bs.base,
            docs("teams/payments/deployments/d1")
        ))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), 401);

    // 3. A plugin calling firegate directly with its own plugin token.
    let create = json!({
        "method": "POST",
        "path": docs("sync?documentId=s1"),
        "body": {"fields": {"n": {"integerValue": "1"}}},
        "requestId": "plugin-write",
    });
    let (status, body) = plugin_call(&bs, &user, "plugin", create).await;
    assert_eq!(status, 200, "{body}");
    let record = audit(&stack, &audit_path, "plugin-write").await;
    assert_eq!(
        record["principal"]["subject"],
        format!("plugin:{CALLER_PLUGIN}")
    );
    let team_read =
        json!({"path": docs("teams/payments/deployments/d1"), "requestId": "plugin-read"});
    let (status, _) = plugin_call(&bs, &user, "plugin", team_read).await;
    assert_eq!(status, 403, "a plugin alone owns no team");

    // 4. The plugin on behalf of the user: the principal is the user (their
    //    groups: on_behalf_of_keeps_the_users_groups, below).
    let obo_read = json!({"path": docs("teams/payments/deployments/d1"), "requestId": "obo-read"});
    plugin_call(&bs, &user, "user", obo_read).await;
    let record = audit(&stack, &audit_path, "obo-read").await;
    assert_eq!(record["principal"]["subject"], GUEST);
    assert_eq!(
        record["principal"]["issuer"],
        format!("{}/api/auth", bs.base)
    );

    // 5. Backstage gone: firegate keeps verifying with the keys it holds.
    bs.stop().await;
    let direct = |token: &str, id: &str| {
        http.get(format!(
            "{firegate_url}{}",
            docs("teams/payments/deployments/d1")
        ))
        .bearer_auth(token)
        .header("X-Request-Id", id)
        .send()
    };
    let known = direct(&user, "down-known").await.expect("known token");
    assert_eq!(
        known.status(),
        200,
        "a verified token and its groups stay cached"
    );
    // A token never seen: its signature checks out with the held key, but
    // its groups cannot be fetched, so it is an outage (never a pass
    // without groups, never a 401).
    let unseen = direct(&unseen_user, "down-unseen")
        .await
        .expect("unseen token");
    assert_eq!(unseen.status(), 503);
    assert!(unseen.headers().contains_key("retry-after"));
    let record = audit(&stack, &audit_path, "down-unseen").await;
    assert_eq!(record["reason"], "userinfo_unavailable");
    // A forged one is still refused as forged.
    let forged = format!("{}AAAA", &unseen_user[..unseen_user.len() - 4]);
    let forged = direct(&forged, "down-forged").await.expect("forged token");
    assert_eq!(forged.status(), 401);
    let record = audit(&stack, &audit_path, "down-forged").await;
    assert_eq!(record["reason"], "bad_signature");

    within("firegate to stop", stack.shutdown()).await;
}

/// A real Backstage never puts `ent` in the limited user token an
/// on-behalf-of plugin token carries: firegate asks userinfo for it, so the
/// user keeps their groups and team rules apply.
#[tokio::test]
async fn on_behalf_of_keeps_the_users_groups() {
    let scene = start().await;
    let obo_write = json!({
        "method": "POST",
        "path": docs("teams/payments/deployments?documentId=obo1"),
        "body": {"fields": {"by": {"stringValue": "plugin"}}},
        "requestId": "obo-write",
    });
    let (status, body) = plugin_call(&scene.bs, &scene.user, "user", obo_write).await;
    let record = audit(&scene.stack, &scene.audit_path, "obo-write").await;
    assert_eq!(record["principal"]["subject"], GUEST);
    assert_eq!(record["principal"]["groups"], json!([GUEST, GUEST_TEAM]));
    assert_eq!(status, 200, "{body}");
    within("firegate to stop", scene.stack.shutdown()).await;
}
