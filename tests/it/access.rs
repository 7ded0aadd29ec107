//! Access requests through `firegate dev` with real HTTP: the lifecycle
//! against the example policies, the rules of approval, expiry, the store
//! out of reach of clients, and a revoked grant's Listen target removed.

use std::time::Duration;

use firegate::dev::{DevOptions, Identity, Stack};
use serde_json::{Value, json};

use crate::support::dev::{self, Caller, DOCS};
use crate::support::within;

const API: &str = "/firegate/v1/access/requests";

fn admin(subject: &str) -> Identity {
    Identity {
        subject: subject.into(),
        email: format!("{subject}@example.com"),
        groups: vec![
            "group:default/engineering".into(),
            "group:default/platform-admins".into(),
        ],
    }
}

fn deployment(version: &str) -> Value {
    json!({"fields": {"service": {"stringValue": "search-api"}, "version": {"stringValue": version}}})
}

async fn write(c: &Caller, id: &str) -> u16 {
    c.patch(
        format!("{DOCS}/teams/search/deployments/{id}"),
        deployment("1"),
    )
    .await
    .0
}

async fn ask(c: &Caller, path: &str, duration: &str) -> (u16, Value) {
    c.post(
        API,
        json!({"path": path, "actions": ["write"], "duration": duration, "reason": "INC-7 hotfix"}),
    )
    .await
}

async fn act(c: &Caller, id: &str, verb: &str) -> (u16, Value) {
    c.post(format!("{API}/{id}:{verb}"), json!({"reason": "because"}))
        .await
}

#[tokio::test]
async fn request_approve_use_release_against_the_example_policies() {
    let audit_dir = tempfile::tempdir().expect("audit dir");
    let stack = dev::start(DevOptions {
        extra_config: Some(json!({
            "audit": {"sink": "file", "path": audit_dir.path().join("audit.log")},
        })),
        ..dev::options()
    })
    .await;
    let alice = Caller::new(&stack, &dev::sample("ALICE_TOKEN"));
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN"));
    assert_eq!(write(&alice, "d-1").await, 403);

    let (status, req) = ask(&alice, "/teams/search/deployments/**", "1h").await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["state"], "pending");
    assert_eq!(req["requestable"], "cross-team-deployments");
    assert!(req["expires_at"].as_str().is_some_and(|t| !t.is_empty()));
    let id = req["id"].as_str().expect("id").to_string();
    assert_eq!(
        write(&alice, "d-1").await,
        403,
        "still refused while pending"
    );

    // The requester cannot approve (not an approver, not break-glass).
    let (status, err) = act(&alice, &id, "approve").await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
    let (_, pending) = admin
        .send("GET", &format!("{API}?view=to_review"), None)
        .await;
    assert!(
        pending["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );

    let (status, approved) = act(&admin, &id, "approve").await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "active");
    assert_eq!(write(&alice, "d-1").await, 200, "allowed by the grant");
    // Only within the granted scope.
    let other = alice
        .patch(format!("{DOCS}/teams/search/profile/x"), deployment("1"))
        .await
        .0;
    assert_eq!(other, 403);

    let (status, released) = act(&alice, &id, "release").await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["state"], "released");
    assert_eq!(write(&alice, "d-2").await, 403, "refused once released");
    // Idempotent; and a released request cannot be approved again.
    assert_eq!(act(&alice, &id, "release").await.0, 200);
    let (status, err) = act(&admin, &id, "approve").await;
    assert_eq!(status, 409, "{err}");

    // The audit trail: every transition, and the write the grant allowed.
    stack.app.flush_audit().await;
    let audit = audit_records(&audit_dir);
    let events: Vec<&str> = audit
        .iter()
        .filter_map(|r| r["access"]["event"].as_str())
        .collect();
    assert_eq!(events, ["requested", "approved", "released"]);
    // API calls carry their own decision: allow when done, deny when the
    // caller may not act (403), error otherwise (409 here).
    let api: Vec<(&str, &str, u64)> = audit
        .iter()
        .filter(|r| r["http_method"] == "POST" && r["rpc"].is_null())
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        api,
        [
            ("allow", "", 201),
            ("deny", "access_not_approver", 403),
            ("allow", "", 200),
            ("allow", "", 200),
            ("allow", "", 200),
            ("error", "access_wrong_state", 409),
        ],
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .filter(|r| r["access"]["event"].is_string())
            .all(|r| r["decision"] == "allow")
    );
    let granted = audit
        .iter()
        .flat_map(|r| r["targets"].as_array().cloned().unwrap_or_default())
        .find(|t| t["why"] == "granted")
        .expect("a granted decision");
    assert_eq!(granted["grant"], id.as_str());
    assert_eq!(granted["rule"], "cross-team-deployments");
    stack.shutdown().await;
}

fn audit_records(dir: &tempfile::TempDir) -> Vec<Value> {
    std::fs::read_to_string(dir.path().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .collect()
}

const POLICY: &str = r#"
rules:
  - id: read-teams
    match: /teams/{team}/{rest=**}
    allow: [get]
    who: {groups: [group:default/engineering]}
requestable:
  - id: two-admins
    match: /teams/{team}/deployments/{rest=**}
    actions: [read, write]
    who: {groups: [group:default/engineering]}
    approvers: {who: {groups: [group:default/platform-admins]}, min: 2}
    max_duration: 2h
    reason: required
  - id: quick
    match: /quick/{rest=**}
    actions: [read, write]
    who: {groups: [group:default/engineering]}
    approvers: {who: {groups: [group:default/platform-admins]}}
    max_duration: 1h
"#;

async fn custom_stack() -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("policy dir");
    std::fs::write(dir.path().join("access.yaml"), POLICY).expect("policy");
    let stack = dev::start(DevOptions {
        policies: Some(dir.path().to_owned()),
        ..dev::options()
    })
    .await;
    (stack, dir)
}

#[tokio::test]
async fn approvals_count_once_per_approver_a_denial_wins_and_durations_are_bounded() {
    let (stack, _dir) = custom_stack().await;
    let eve = Caller::new(&stack, &dev::engineer("eve"));
    let (a, b) = (
        Caller::new(&stack, &admin("ann")),
        Caller::new(&stack, &admin("bob")),
    );
    let (status, err) = ask(&eve, "/teams/search/deployments/**", "3h").await;
    assert_eq!(status, 400, "over max_duration: {err}");
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    let (status, _) = ask(&eve, "/teams/search/profile/x", "1h").await;
    assert_eq!(status, 400, "outside every entry");

    let (_, req) = ask(&eve, "/teams/search/deployments/**", "1h").await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(act(&a, &id, "approve").await.1["state"], "pending");
    let (status, again) = act(&a, &id, "approve").await;
    assert_eq!(status, 200);
    assert_eq!(again["state"], "pending", "the same approver counts once");
    assert_eq!(again["approvals"], 1);
    assert_eq!(write(&eve, "d-1").await, 403);
    assert_eq!(act(&b, &id, "approve").await.1["state"], "active");
    assert_eq!(write(&eve, "d-1").await, 200);
    // Revoked by an approver: refused at once.
    assert_eq!(act(&a, &id, "revoke").await.1["state"], "revoked");
    assert_eq!(write(&eve, "d-1").await, 403);

    // One denial ends a request, whatever approvals follow.
    let (_, req) = ask(&eve, "/teams/search/deployments/**", "1h").await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(act(&a, &id, "approve").await.0, 200);
    assert_eq!(act(&b, &id, "deny").await.1["state"], "denied");
    let (status, _) = act(&a, &id, "approve").await;
    assert_eq!(status, 409);
    assert_eq!(write(&eve, "d-2").await, 403);
    // Not an approver: 403; unknown: 404.
    assert_eq!(act(&eve, &id, "deny").await.0, 403);
    assert_eq!(act(&a, "nope", "approve").await.0, 404);
    stack.shutdown().await;
}

#[tokio::test]
async fn expiry_ends_access() {
    let (stack, _dir) = custom_stack().await;
    let eve = Caller::new(&stack, &dev::engineer("eve"));
    let ann = Caller::new(&stack, &admin("ann"));
    let (_, req) = eve
        .post(
            API,
            json!({"path": "/quick/**", "actions": ["write"], "duration": "2s"}),
        )
        .await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(act(&ann, &id, "approve").await.1["state"], "active");
    let put = |n: &'static str| {
        let eve = &eve;
        async move {
            eve.patch(format!("{DOCS}/quick/{n}"), deployment("1"))
                .await
                .0
        }
    };
    assert_eq!(put("a").await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(put("b").await, 403, "expired");
    let (_, shown) = eve.send("GET", &format!("{API}/{id}"), None).await;
    assert_eq!(shown["state"], "expired");
    stack.shutdown().await;
}

#[tokio::test]
async fn the_store_is_out_of_every_clients_reach() {
    let stack = dev::start(dev::options()).await;
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN"));
    let alice = Caller::new(&stack, &dev::sample("ALICE_TOKEN"));
    let (_, req) = ask(&alice, "/teams/search/deployments/**", "1h").await;
    let id = req["id"].as_str().unwrap().to_string();
    let collection = firegate::dev::ACCESS_COLLECTION;
    for (method, path) in [
        ("GET", format!("{DOCS}/{collection}/{id}")),
        ("GET", format!("{DOCS}/{collection}")),
        ("DELETE", format!("{DOCS}/{collection}/{id}")),
    ] {
        let (status, body) = admin.send(method, &path, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (status, _) = admin
        .patch(format!("{DOCS}/{collection}/{id}"), json!({"fields": {}}))
        .await;
    assert_eq!(status, 403);
    // A kindless query from the root could reach it too.
    let (status, _) = admin
        .post(
            format!("{DOCS}:runQuery"),
            json!({"structuredQuery": {"from": [{"allDescendants": true}]}}),
        )
        .await;
    assert_eq!(status, 403);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_revoked_grant_removes_the_listen_target_it_allowed() {
    use crate::support::grpc::{self, add_documents, listen};
    use grpc::proto::target_change::TargetChangeType as T;
    let (stack, _dir) = custom_stack().await;
    let eve = Caller::new(&stack, &dev::engineer("eve"));
    let ann = Caller::new(&stack, &admin("ann"));
    let (_, req) = eve
        .post(
            API,
            json!({"path": "/quick/**", "actions": ["read"], "duration": "1h"}),
        )
        .await;
    let id = req["id"].as_str().unwrap().to_string();
    assert_eq!(act(&ann, &id, "approve").await.1["state"], "active");

    let mut client = grpc::client(stack.proxy).await;
    let doc = format!("{}/quick/a", dev::ROOT);
    let first = add_documents(dev::DATABASE, 3, &[doc]);
    let bearer = format!("Bearer {}", eve.token);
    let mut call = listen(&mut client, &bearer, "listen-granted", first)
        .await
        .expect("Listen opens");
    let mut next_change = async || loop {
        let message = within("a Listen response", call.responses.message())
            .await
            .expect("stream")
            .expect("message");
        if let Some(change) = grpc::change_of(&message) {
            return change;
        }
    };
    assert_eq!(next_change().await.0, T::Add as i32, "allowed by the grant");
    // Past the stream's first re-check, so only the revocation can end it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(act(&ann, &id, "revoke").await.1["state"], "revoked");
    let removed = loop {
        let change = next_change().await;
        if change.0 == T::Remove as i32 {
            break change;
        }
    };
    assert_eq!(removed.1, vec![3]);
    assert_eq!(removed.2, Some(tonic::Code::PermissionDenied as i32));
    drop(call);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_state_export_puts_active_grants_into_who_can_and_what_can() {
    let stack = dev::start(dev::options()).await;
    let alice = dev::sample("ALICE_TOKEN");
    let admin = dev::sample("ADMIN_TOKEN");
    let (_, req) = ask(
        &Caller::new(&stack, &alice),
        "/teams/search/deployments/**",
        "1h",
    )
    .await;
    let id = req["id"].as_str().expect("id").to_string();
    // A pending request is no grant: not in the export.
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state.json");
    let export = async |file: &std::path::Path| {
        let (code, out) = cli(&stack, &admin, &["export"]).await;
        assert_eq!(code, 0, "{out}");
        std::fs::write(file, &out).expect("write the export");
        serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    assert_eq!(export(&state).await["grants"], json!([]));
    let (_, approved) = act(&Caller::new(&stack, &admin), &id, "approve").await;
    assert_eq!(approved["state"], "active");
    let exported = export(&state).await;
    let grant = &exported["grants"][0];
    assert_eq!(grant["id"], id.as_str(), "{exported}");
    assert_eq!(grant["requester"]["subject"], alice.subject.as_str());

    let policies = dev::policies().display().to_string();
    let tool = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
            .arg("policy")
            .args(args)
            .output()
            .expect("firegate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = "/teams/payments/deployments/d1";
    let state_arg = state.display().to_string();
    let with: Value = serde_json::from_str(&tool(&[
        "who-can", &policies, "update", path, "--grants", &state_arg, "--format", "json",
    ]))
    .expect("JSON");
    assert!(
        with.get("granted").is_none(),
        "the grant is for search, not payments: {with}"
    );
    let search = "/teams/search/deployments/d1";
    let text = tool(&[
        "who-can", &policies, "update", search, "--grants", &state_arg,
    ]);
    assert!(
        text.contains(&format!("by grant {id} of cross-team-deployments")),
        "{text}"
    );
    let without = tool(&["who-can", &policies, "update", search]);
    assert!(!without.contains("by grant"), "{without}");

    let principal = dir.path().join("alice.json");
    std::fs::write(
        &principal,
        json!({"issuer": grant["requester"]["issuer"], "subject": alice.subject}).to_string(),
    )
    .expect("write");
    let principal = principal.display().to_string();
    let what: Value = serde_json::from_str(&tool(&[
        "what-can", &policies, &principal, "--grants", &state_arg, "--format", "json",
    ]))
    .expect("JSON");
    let actions: Vec<&str> = what["granted"]
        .as_array()
        .expect("granted")
        .iter()
        .filter(|g| g["grant"] == id.as_str())
        .filter_map(|g| g["action"].as_str())
        .collect();
    assert_eq!(actions, ["create", "update", "delete"], "{what}");
    assert_eq!(
        what["granted"][0]["path"],
        "/teams/search/deployments/{rest=**}"
    );
    stack.shutdown().await;
}

/// `firegate access …` as a user runs it: its output and exit code.
async fn cli(stack: &Stack, who: &Identity, args: &[&str]) -> (i32, String) {
    let token = stack.token(who).expect("token");
    let url = stack.url();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"));
        command.arg("access").args(&args).args(["--url", &url]);
        command.env("FIREGATE_TOKEN", token);
        command.output().expect("firegate runs")
    })
    .await
    .expect("joined");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_cli_drives_every_verb_with_its_exit_code() {
    let (stack, _dir) = custom_stack().await;
    let eve = dev::engineer("eve");
    let (ann, bob) = (admin("ann"), admin("bob"));
    let (code, out) = cli(
        &stack,
        &eve,
        &[
            "request",
            "/quick/**",
            "--actions",
            "write",
            "--for",
            "30m",
            "--reason",
            "INC-9",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    let id = created["id"].as_str().unwrap().to_string();
    let (code, out) = cli(&stack, &eve, &["list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("pending"), "{out}");
    let (code, out) = cli(&stack, &ann, &["list", "--view", "to_review"]).await;
    assert!(code == 0 && out.contains(&id), "{out}");
    let (code, out) = cli(&stack, &eve, &["approve", &id]).await;
    assert_eq!(code, 1, "self-approval refused: {out}");
    assert!(out.contains("403"), "{out}");
    let (code, out) = cli(&stack, &ann, &["approve", &id, "--reason", "ok"]).await;
    assert!(code == 0 && out.contains("active"), "{out}");
    let (code, out) = cli(&stack, &eve, &["show", &id]).await;
    assert!(code == 0 && out.contains("approved by ann"), "{out}");
    let (code, out) = cli(&stack, &bob, &["revoke", &id]).await;
    assert!(code == 0 && out.contains("revoked"), "{out}");
    let (code, _) = cli(&stack, &eve, &["release", &id]).await;
    assert_eq!(code, 1, "409: already revoked");

    let (_, out) = cli(
        &stack,
        &eve,
        &[
            "request",
            "/quick/x",
            "--actions",
            "write",
            "--for",
            "10m",
            "--format",
            "json",
        ],
    )
    .await;
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let (code, out) = cli(&stack, &bob, &["deny", &id, "--reason", "no"]).await;
    assert!(code == 0 && out.contains("denied"), "{out}");
    let (code, _) = cli(
        &stack,
        &eve,
        &[
            "request",
            "/elsewhere/x",
            "--actions",
            "write",
            "--for",
            "1m",
        ],
    )
    .await;
    assert_eq!(code, 1, "400 outside every entry");
    // No token: exit 2 before asking; no answer: exit 2 too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["access", "list", "--url", &stack.url()])
        .env_remove("FIREGATE_TOKEN")
        .output()
        .expect("firegate runs");
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["access", "list", "--url", "http://127.0.0.1:1"])
        .env("FIREGATE_TOKEN", "x")
        .output()
        .expect("firegate runs");
    assert_eq!(out.status.code(), Some(2));
    stack.shutdown().await;
}

#[tokio::test]
async fn the_webhook_gets_every_event_signed_in_order() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(String, bytes::Bytes)>>> = Arc::default();
    let seen = Arc::clone(&got);
    let receiver = crate::support::fake::server()
        .route(http::Method::POST, "/hook", move |r| {
            let signature = r.header("x-firegate-signature").unwrap_or("").to_string();
            seen.lock().unwrap().push((signature, r.body.clone()));
            "ok"
        })
        .start()
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let key = "an-hmac-key-of-enough-bytes";
    std::fs::write(dir.path().join("key"), key).unwrap();
    let stack = dev::start(DevOptions {
        extra_config: Some(json!({"access": {"notify": {"webhook": {
            "url": format!("{}/hook", receiver.url()),
            "secret_file": dir.path().join("key"),
        }}}})),
        ..dev::options()
    })
    .await;
    let alice = Caller::new(&stack, &dev::sample("ALICE_TOKEN"));
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN"));
    let (_, req) = ask(&alice, "/teams/search/deployments/**", "1h").await;
    let id = req["id"].as_str().unwrap().to_string();
    act(&admin, &id, "approve").await;
    act(&alice, &id, "release").await;
    within("three webhook deliveries", async {
        while got.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let got = got.lock().unwrap().clone();
    let events: Vec<String> = got
        .iter()
        .map(|(signature, body)| {
            assert_eq!(
                *signature,
                firegate::access::notify::signature(key.as_bytes(), body),
                "signed with the configured key"
            );
            let v: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["id"], id.as_str());
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(events, ["requested", "approved", "released"]);
    stack.shutdown().await;
    receiver.join().await;
}

#[tokio::test]
async fn the_webhook_gets_one_expired_event_per_request() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = Arc::clone(&got);
    let receiver = crate::support::fake::server()
        .route(http::Method::POST, "/hook", move |r| {
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&r.body).unwrap_or(Value::Null));
            "ok"
        })
        .start()
        .await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("key"), "an-hmac-key-of-enough-bytes").unwrap();
    let stack = dev::start(DevOptions {
        extra_config: Some(json!({"access": {
            "request_ttl": "2s",
            "notify": {"webhook": {
                "url": format!("{}/hook", receiver.url()),
                "secret_file": dir.path().join("key"),
            }},
        }})),
        ..dev::options()
    })
    .await;
    let alice = Caller::new(&stack, &dev::sample("ALICE_TOKEN"));
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN"));
    // One left pending past `request_ttl`, one approved for a second.
    let (_, pending) = ask(&alice, "/teams/search/deployments/**", "1h").await;
    let (_, granted) = ask(&alice, "/teams/search/deployments/**", "1s").await;
    let (pending, granted) = (
        pending["id"].as_str().unwrap().to_string(),
        granted["id"].as_str().unwrap().to_string(),
    );
    assert_eq!(act(&admin, &granted, "approve").await.1["state"], "active");
    let expired = |id: &str| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == "expired" && v["id"] == id)
            .cloned()
            .collect::<Vec<Value>>()
    };
    within("both expired events", async {
        while expired(&pending).is_empty() || expired(&granted).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Several reads of the store later, still one each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in [&pending, &granted] {
        let events = expired(id);
        assert_eq!(events.len(), 1, "one expired event for {id}: {events:?}");
        assert_eq!(events[0]["state"], "expired");
        assert_eq!(events[0]["by"]["issuer"], "firegate");
    }
    // Recorded in the history, once.
    let (_, shown) = alice.send("GET", &format!("{API}/{granted}"), None).await;
    assert_eq!(shown["state"], "expired");
    let recorded = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"] == "expired")
        .count();
    assert_eq!(recorded, 1, "{shown}");
    stack.shutdown().await;
    receiver.join().await;
}

/// `approvers: {who: {catalog: {owner_of: …}}}`: the owners of the
/// service named by the requested path approve; anybody else gets 403.
#[tokio::test]
async fn the_catalog_owners_of_a_service_approve_access_to_its_data() {
    use crate::support::catalog::{CATALOG_TOKEN, FakeCatalog, entities};
    // alice is in payments, which owns checkout; bob is in search.
    let catalog = FakeCatalog::start(entities(&[("checkout", "payments")])).await;
    let dir = tempfile::tempdir().expect("policy dir");
    std::fs::write(
        dir.path().join("access.yaml"),
        r#"
requestable:
  - id: service-data
    match: /services/{service}/{rest=**}
    actions: [write]
    who: {groups: [group:default/engineering]}
    approvers: {who: {catalog: {owner_of: "component:default/{service}"}}}
    max_duration: 1h
"#,
    )
    .expect("policy");
    std::fs::write(dir.path().join("token"), CATALOG_TOKEN).expect("token");
    // The issuer's address is fixed ahead: the catalog maps its callers.
    let issuer_listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let stack = dev::start(DevOptions {
        policies: Some(dir.path().to_owned()),
        issuer_listen,
        extra_config: Some(json!({
            "catalog": {
                "url": catalog.url(),
                "token_file": dir.path().join("token"),
                "interval": "200ms",
                "required": true,
                "users": [{"issuer": format!("http://{issuer_listen}"), "user_ref": "user:default/{sub}"}],
            },
        })),
        ..dev::options()
    })
    .await;
    stack
        .app
        .wait_ready(Duration::from_secs(10))
        .await
        .expect("ready once the catalog is read");
    let eve = Caller::new(&stack, &dev::engineer("eve"));
    let alice = Caller::new(&stack, &dev::engineer("alice"));
    let bob = Caller::new(&stack, &dev::engineer("bob"));
    async fn put(c: &Caller) -> u16 {
        c.patch(
            format!("{DOCS}/services/checkout/config/c1"),
            deployment("1"),
        )
        .await
        .0
    }
    assert_eq!(put(&eve).await, 403);
    let (status, req) = ask(&eve, "/services/checkout/**", "1h").await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().expect("id").to_string();
    // bob owns nothing: not a reviewer, so the request is not even his
    // to see (404, as for any caller neither requester nor reviewer).
    let (status, err) = act(&bob, &id, "approve").await;
    assert_eq!(status, 404, "{err}");
    async fn to_review(c: &Caller) -> usize {
        let (_, listing) = c.send("GET", &format!("{API}?view=to_review"), None).await;
        listing["requests"].as_array().map_or(0, Vec::len)
    }
    assert_eq!(to_review(&bob).await, 0);
    assert_eq!(to_review(&alice).await, 1);
    // The requester is no owner either: 403.
    let (status, err) = act(&eve, &id, "approve").await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(put(&eve).await, 403, "still pending");
    let (status, approved) = act(&alice, &id, "approve").await;
    assert_eq!(status, 200, "alice's team owns checkout: {approved}");
    assert_eq!(approved["state"], "active");
    assert_eq!(put(&eve).await, 200, "allowed by the grant");
    stack.shutdown().await;
}

/// `access.notify.backstage`: the approvers' group hears of the request
/// (the requester excluded), the requester of the approval — each a POST
/// to Backstage's notifications API with the service token, in
/// Backstage's `{recipients, payload}` shape, counted as sent. A refusal
/// (401) is counted as failed and not retried; a 503 is retried.
#[tokio::test]
async fn backstage_notifies_the_approvers_and_then_the_requester() {
    use crate::support::fake::Reply;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::{Arc, Mutex};
    let token = "a-backstage-static-token-for-firegate";
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = Arc::clone(&got);
    // 0: accept; 1: refuse (401); 2: unavailable once, then accept.
    let mode = Arc::new(AtomicU8::new(0));
    let answer = Arc::clone(&mode);
    let backstage = crate::support::fake::server()
        .route(
            http::Method::POST,
            "/api/notifications/notifications",
            move |r| {
                let auth = r.header("authorization").unwrap_or("").to_string();
                seen.lock()
                    .unwrap()
                    .push((auth, r.json().unwrap_or(Value::Null)));
                match answer.load(Ordering::SeqCst) {
                    1 => Reply::json(http::StatusCode::UNAUTHORIZED, &json!({})),
                    2 => {
                        answer.store(0, Ordering::SeqCst);
                        Reply::json(http::StatusCode::SERVICE_UNAVAILABLE, &json!({}))
                    }
                    _ => Reply::json(http::StatusCode::OK, &json!([])),
                }
            },
        )
        .start()
        .await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let stack = dev::start(DevOptions {
        extra_config: Some(json!({"access": {"notify": {"backstage": {
            "url": format!("{}/", backstage.url()),
            "token_file": dir.path().join("token"),
            "link": "/firegate/requests/{id}",
        }}}})),
        ..dev::options()
    })
    .await;
    let alice = Caller::new(&stack, &dev::sample("ALICE_TOKEN"));
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN"));
    let (_, req) = ask(&alice, "/teams/search/deployments/**", "1h").await;
    let id = req["id"].as_str().unwrap().to_string();
    act(&admin, &id, "approve").await;
    act(&alice, &id, "release").await;
    within("two notifications", async {
        while got.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Released by the requester: nobody to tell.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = got.lock().unwrap().clone();
    assert_eq!(first.len(), 2, "{first:?}");
    for (auth, _) in &first {
        assert_eq!(*auth, format!("Bearer {token}"));
    }
    let (requested, approved) = (&first[0].1, &first[1].1);
    assert_eq!(
        requested["recipients"],
        json!({"type": "entity", "entityRef": ["group:default/platform-admins"],
               "excludeEntityRef": "user:default/alice"})
    );
    assert_eq!(
        requested["payload"]["link"],
        format!("/firegate/requests/{id}")
    );
    assert_eq!(requested["payload"]["topic"], "firegate-access");
    let title = requested["payload"]["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("write on /teams/search/deployments/**"),
        "{title}"
    );
    let description = requested["payload"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("alice@example.com") && description.contains("INC-7"),
        "{description}"
    );
    assert_eq!(
        approved["recipients"],
        json!({"type": "entity", "entityRef": ["user:default/alice"]})
    );
    assert!(
        approved["payload"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("pat@example.com")),
        "{approved}"
    );
    // Refused: one attempt, counted failed. Unavailable: tried again.
    let posts = |n: usize| {
        let got = Arc::clone(&got);
        async move {
            while got.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    mode.store(1, Ordering::SeqCst);
    ask(&alice, "/teams/search/deployments/**", "1h").await;
    within("the refused notification", posts(3)).await;
    mode.store(2, Ordering::SeqCst);
    ask(&alice, "/teams/search/deployments/**", "1h").await;
    within("the retried notification", posts(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().unwrap().len(), 5, "a refusal is not retried");
    let metrics = reqwest::get(format!("http://{}/metrics", stack.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (result, n) in [
        ("sent", 3),
        ("failed", 1),
        ("dropped", 0),
        ("unaddressed", 0),
    ] {
        let line =
            format!("firegate_access_backstage_notifications_total{{result=\"{result}\"}} {n}");
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    stack.shutdown().await;
    backstage.join().await;
}
