//! The whole of firegate, end to end: the development issuer, the real
//! pipeline, the example policies, and the emulator (or a recording upstream
//! where a test must see exactly what was forwarded, or that nothing was).

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use firegate::dev::{DevOptions, SAMPLE_DATABASE, Stack, samples};

use support::dev::{Caller, DOCS, options, policies, sample, start};
use support::{Gate, Step, upstream, within};

fn error_status(body: &Value) -> &str {
    body["error"]["status"].as_str().unwrap_or("")
}

fn doc_name(path: &str) -> String {
    format!("{SAMPLE_DATABASE}/documents/{path}")
}

#[tokio::test]
async fn the_dev_samples_are_allowed_and_refused_as_printed() {
    let stack = start(options()).await;
    for sample in samples() {
        let caller = Caller::new(&stack, &sample.identity);
        let ok = &sample.allowed;
        let (status, body) = caller
            .send(ok.method, &ok.url_path(), ok.body.clone())
            .await;
        assert_eq!(status, 200, "{}: {} → {body}", sample.title, ok.what);
        assert!(body["name"].is_string(), "{body}");
        let no = &sample.refused;
        let (status, body) = caller
            .send(no.method, &no.url_path(), no.body.clone())
            .await;
        assert_eq!(status, 403, "{}: {} → {body}", sample.title, no.what);
        assert_eq!(error_status(&body), "PERMISSION_DENIED");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("Missing or insufficient permissions. Request id: "),
            "the client sees a fixed message and the request id, never the policy: {message}"
        );
        assert!(!message.contains("rule"), "{message}");
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn a_commit_whose_second_write_is_forbidden_is_refused_whole_and_never_forwarded() {
    let recording = upstream().start().await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        ..options()
    })
    .await;
    let alice = Caller::new(&stack, &sample("ALICE_TOKEN"));
    let commit = json!({"writes": [
        {"update": {"name": doc_name("teams/payments/deployments/d-9"), "fields": {"status": {"stringValue": "ok"}}}},
        {"update": {"name": doc_name("teams/search/deployments/d-9"), "fields": {"status": {"stringValue": "pwned"}}}},
    ]});
    let (status, body) = alice
        .send("POST", &format!("{DOCS}:commit"), Some(commit))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(recording.requests().is_empty(), "nothing reaches Firestore");

    // The same commit without the foreign write goes through, with
    // firegate's own upstream credential and not the caller's token.
    let commit = json!({"writes": [
        {"update": {"name": doc_name("teams/payments/deployments/d-9"), "fields": {"status": {"stringValue": "ok"}}}},
    ]});
    let (status, body) = alice
        .send("POST", &format!("{DOCS}:commit"), Some(commit))
        .await;
    assert_eq!(status, 200, "{body}");
    let forwarded = recording.single();
    assert_eq!(forwarded.uri.path(), format!("{DOCS}:commit"));
    assert_eq!(forwarded.headers["authorization"], "Bearer owner");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_collection_group_query_is_refused_when_only_one_team_is_allowed() {
    let stack = start(options()).await;
    let query = json!({"structuredQuery": {"from": [{"collectionId": "deployments", "allDescendants": true}]}});
    let alice = Caller::new(&stack, &sample("ALICE_TOKEN"));
    let (status, body) = alice
        .send("POST", &format!("{DOCS}:runQuery"), Some(query.clone()))
        .await;
    assert_eq!(status, 403, "{body}");

    // Scoped to her own team, the same query is allowed and streams back
    // only that team's deployments.
    let (status, body) = alice
        .send(
            "POST",
            &format!("{DOCS}/teams/payments:runQuery"),
            Some(query.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|r| r["document"]["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{body}");
    assert!(
        names.iter().all(|n| n.contains("/teams/payments/")),
        "{names:?}"
    );

    // Rules are not filters: even a platform admin's collection-group query
    // over the whole database is refused, because its scope includes
    // `/secrets/**`, which no one may read; below `/teams/...` it is allowed.
    let admin = Caller::new(&stack, &sample("ADMIN_TOKEN"));
    let (status, body) = admin
        .send("POST", &format!("{DOCS}:runQuery"), Some(query.clone()))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = admin
        .send(
            "POST",
            &format!("{DOCS}/teams/search:runQuery"),
            Some(query),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_policy_change_takes_effect_without_a_restart_and_a_broken_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(policies()).expect("policies") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let stack = start(DevOptions {
        policies: Some(dir.path().to_owned()),
        ..options()
    })
    .await;
    let mallory = Caller::new(&stack, &sample("OUTSIDER_TOKEN"));
    let status_doc = format!("{DOCS}/status/payments-api");
    assert_eq!(mallory.send("GET", &status_doc, None).await.0, 200);

    // Close the status board to outsiders.
    std::fs::write(
        dir.path().join("status.yaml"),
        "rules:\n  - id: status-board-readers\n    match: /status/{service}\n    allow: [read]\n    who: {groups: [group:default/engineering]}\n",
    )
    .expect("rewrite policy");
    let refused = within("the reload", async {
        loop {
            if mallory.send("GET", &status_doc, None).await.0 == 403 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(refused);

    // A broken file is refused; the last good table keeps deciding.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "rules:\n  - id: x\n    mach: /a/{b}\n",
    )
    .expect("write broken policy");
    within("the refused reload", async {
        while stack
            .app
            .readiness()
            .check("policy_table")
            .and_then(|c| c.detail.as_ref())
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(mallory.send("GET", &status_doc, None).await.0, 403);
    // The refusal shows on /readyz, which stays 200: every replica still
    // serves the last good table.
    let readyz = reqwest::get(format!("http://{}/readyz", stack.admin))
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    let body: serde_json::Value = readyz.json().await.expect("JSON body");
    let policy = &body["checks"]["policy_table"];
    assert_eq!(
        (&body["ready"], &policy["ready"]),
        (&true.into(), &true.into()),
        "{body}"
    );
    let detail = policy["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("policy reload refused"), "{body}");
    assert!(detail.contains("broken.yaml"), "{body}");
    let alice = Caller::new(&stack, &sample("ALICE_TOKEN"));
    assert_eq!(
        alice
            .send("GET", &format!("{DOCS}/catalog/payments-api"), None)
            .await
            .0,
        200
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn refused_routes_and_bad_paths_get_firestore_errors_and_are_never_forwarded() {
    let recording = upstream().start().await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        ..options()
    })
    .await;
    let admin = Caller::new(&stack, &sample("ADMIN_TOKEN"));
    let db = "/v1/projects/demo/databases/(default)";
    let cases: Vec<(&str, String, u16)> = vec![
        ("GET", format!("{DOCS}/catalog%2Fx/doc"), 400),
        ("GET", format!("{DOCS}/catalog/%2E%2E"), 400),
        ("GET", format!("{DOCS}/catalog/.."), 400),
        ("GET", format!("{DOCS}/catalog/%252F"), 400),
        ("GET", format!("{DOCS}/catalog//x"), 400),
        ("GET", format!("{DOCS}/catalog/__x__"), 400),
        (
            "GET",
            format!("{DOCS}/catalog/payments-api?$alt=media"),
            400,
        ),
        (
            "GET",
            format!("{DOCS}/catalog/payments-api?callback=f"),
            400,
        ),
        ("GET", format!("{DOCS}/catalog/payments-api?bogus=1"), 400),
        ("POST", "/batch".to_string(), 404),
        (
            "GET",
            "/v1beta1/projects/demo/databases/(default)/documents/catalog/x".to_string(),
            501,
        ),
        ("POST", format!("{DOCS}:listen"), 501),
        ("POST", format!("{db}:exportDocuments"), 501),
    ];
    for (method, path, expected) in &cases {
        let body = (*method == "POST").then(|| json!({}));
        let (status, body) = admin.send(*method, path, body).await;
        assert_eq!(status, *expected, "{method} {path} → {body}");
        assert!(body["error"]["status"].is_string(), "{path}: {body}");
        assert_eq!(body["error"]["code"], *expected, "{path}: {body}");
    }

    // A token in the URL is refused by authentication itself.
    let (status, body) = admin
        .send(
            "GET",
            &format!("{DOCS}/catalog/payments-api?access_token=abc"),
            None,
        )
        .await;
    assert_eq!((status, error_status(&body)), (401, "UNAUTHENTICATED"));

    // X-HTTP-Method-Override would turn a harmless POST into something else.
    let response = reqwest::Client::new()
        .post(format!("{}{DOCS}:runQuery", stack.url()))
        .bearer_auth(stack.token(&sample("ADMIN_TOKEN")).expect("token"))
        .header("X-HTTP-Method-Override", "DELETE")
        .json(&json!({"structuredQuery": {"from": [{"collectionId": "catalog"}]}}))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 400);
    assert!(
        recording.requests().is_empty(),
        "{:?}",
        recording.requests()
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn an_oversized_batch_body_is_413_and_never_forwarded() {
    let recording = upstream().start().await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        overrides: vec![(
            "FIREGATE_SERVER__LIMITS__MAX_BODY_BYTES".into(),
            "4096".into(),
        )],
        ..options()
    })
    .await;
    let admin = Caller::new(&stack, &sample("ADMIN_TOKEN"));
    let big = "x".repeat(8192);
    let commit = json!({"writes": [{"update": {"name": doc_name("teams/search/deployments/d"), "fields": {"log": {"stringValue": big}}}}]});
    let (status, body) = admin
        .send("POST", &format!("{DOCS}:commit"), Some(commit))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], 413);
    assert!(recording.requests().is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn client_credentials_and_hop_by_hop_headers_never_reach_firestore() {
    let recording = upstream().start().await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        ..options()
    })
    .await;
    let token = stack.token(&sample("ALICE_TOKEN")).expect("token");
    let response = reqwest::Client::new()
        .get(format!(
            "{}{DOCS}/catalog/payments-api?key=client-api-key",
            stack.url()
        ))
        .bearer_auth(&token)
        .header("Cookie", "session=secret-cookie")
        .header("Proxy-Authorization", "Basic c2VjcmV0")
        .header("X-Goog-Api-Key", "client-api-key")
        .header("Connection", "x-private-hop")
        .header("X-Private-Hop", "hop-value")
        .header("X-Request-Id", "req-123")
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let forwarded = recording.single();
    assert_eq!(forwarded.headers["authorization"], "Bearer owner");
    for name in [
        "cookie",
        "proxy-authorization",
        "x-goog-api-key",
        "x-private-hop",
    ] {
        assert!(
            !forwarded.headers.contains_key(name),
            "{name} was forwarded"
        );
    }
    let everything = format!("{:?} {:?}", forwarded.uri, forwarded.headers);
    assert!(
        !everything.contains(&token),
        "the caller's token was forwarded"
    );
    assert!(!everything.contains("client-api-key"), "{everything}");
    assert_eq!(forwarded.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(forwarded.headers["x-request-id"], "req-123");
    stack.shutdown().await;
}

/// Records written by the stack's file audit sink, after a flush.
async fn audit_records(stack: &Stack, path: &Path) -> Vec<Value> {
    stack.app.flush_audit().await;
    std::fs::read_to_string(path)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn by_request_id<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["request_id"] == id).collect()
}

#[tokio::test]
async fn every_path_through_the_pipeline_leaves_exactly_one_audit_record_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let gate = Gate::new();
    let recording = upstream()
        .steps(vec![
            Step::chunk("[{\"document\":"),
            Step::Wait(gate.clone()),
            Step::chunk("{}}]"),
        ])
        .start()
        .await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        extra_config: Some(serde_json::json!({"audit": {"sink": "file", "path": audit_path}})),
        ..options()
    })
    .await;
    let http = reqwest::Client::new();
    let alice_token = stack.token(&sample("ALICE_TOKEN")).expect("token");
    // Every request is a GET with a request id the records are found by.
    let get = |id: &'static str, path: &str, token: Option<&str>| {
        let mut req = http
            .get(format!("{}{DOCS}/{path}", stack.url()))
            .header("X-Request-Id", id);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move { req.send().await.expect("response") }
    };
    let alice = Some(alice_token.as_str());

    let missing = get("no-token", "catalog/x", None).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let forged = tampered(&alice_token);
    assert_eq!(
        get("bad-token", "catalog/x", Some(&forged)).await.status(),
        401
    );
    assert_eq!(get("bad-path", "catalog/%2E%2E", alice).await.status(), 400);
    let denied = get("denied", "secrets/stripe?key=api-key-value", alice).await;
    assert_eq!(denied.status(), 403);

    // A streamed success the client abandons half-way.
    let mut streaming = get("disconnect", "catalog/payments-api", alice).await;
    assert_eq!(streaming.status(), 200);
    let first = streaming.chunk().await.expect("first chunk");
    assert!(first.is_some());
    drop(streaming);
    gate.open();

    // A streamed success read to the end.
    let ok = get("success", "catalog/payments-api", alice).await;
    assert_eq!(ok.status(), 200);
    ok.bytes().await.expect("whole body");
    let records = within("the audit records", async {
        loop {
            let records = audit_records(&stack, &audit_path).await;
            if !by_request_id(&records, "disconnect").is_empty() {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let one = |id: &str| {
        let found = by_request_id(&records, id);
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        found[0].clone()
    };
    let r = one("no-token");
    assert_eq!(
        (r["decision"].as_str(), r["status"].as_u64()),
        (Some("error"), Some(401))
    );
    assert_eq!(r["reason"], "missing_token");
    let r = one("bad-token");
    assert_eq!(r["status"], 401);
    assert_eq!(r["reason"], "bad_signature");
    let r = one("bad-path");
    assert_eq!(r["status"], 400);
    assert_eq!(r["principal"]["subject"], "user:default/alice");
    let r = one("denied");
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["reason"], "rule:no-secrets");
    assert_eq!(r["targets"][0]["resource"], "/secrets/stripe");
    assert_eq!(r["targets"][0]["rule"], "no-secrets");
    assert!(r["upstream_status"].is_null(), "never forwarded: {r}");
    let r = one("disconnect");
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["client_disconnected"], true, "{r}");
    let r = one("success");
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["client_disconnected"], false, "{r}");
    assert_eq!(r["upstream_status"], 200);
    assert_eq!(r["upstream_account"], "emulator");
    assert!(r["bytes_out"].as_u64().unwrap_or(0) > 0, "{r}");
    let text = std::fs::read_to_string(&audit_path).expect("audit file");
    assert!(
        !text.contains(&alice_token),
        "a token reached the audit log"
    );
    for secret in ["api-key-value", "Bearer owner"] {
        assert!(!text.contains(secret), "{secret} reached the audit log");
    }
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["audit", "verify"])
        .arg(&audit_path)
        .output()
        .expect("audit verify runs");
    assert!(verify.status.success(), "{verify:?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn request_tags_reach_the_audit_line_escaped_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let recording = upstream().steps(vec![Step::chunk("[]")]).start().await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        extra_config: Some(json!({"audit": {"sink": "file", "path": audit_path}})),
        ..options()
    })
    .await;
    let http = reqwest::Client::new();
    let token = stack.token(&sample("ALICE_TOKEN")).expect("token");
    let mut tags: Vec<String> = vec![
        "checkout".into(),
        "forged\"}\n{\"decision\":\"allow".into(),
        "x".repeat(500),
    ];
    tags.extend((0..30).map(|i| format!("t{i}")));
    let query = json!({
        "structuredQuery": {"from": [{"collectionId": "catalog"}]},
        "requestOptions": {"requestTags": tags},
    });
    let answer = http
        .post(format!("{}{DOCS}:runQuery", stack.url()))
        .header("X-Request-Id", "tagged-query")
        .bearer_auth(&token)
        .json(&query)
        .send()
        .await
        .expect("response");
    assert_eq!(answer.status(), 200);
    let get = http
        .get(format!(
            "{}{DOCS}/catalog/a?requestOptions.requestTags=from-url",
            stack.url()
        ))
        .header("X-Request-Id", "tagged-get")
        .bearer_auth(&token)
        .send()
        .await
        .expect("response");
    assert_eq!(get.status(), 200);
    // The tags went upstream as sent: Firestore records them too.
    let forwarded = recording.requests();
    assert!(
        String::from_utf8_lossy(&forwarded[0].body).contains("requestTags"),
        "{:?}",
        forwarded[0]
    );
    let records = audit_records(&stack, &audit_path).await;
    let r = by_request_id(&records, "tagged-query")[0];
    let kept = r["request_tags"].as_array().expect("tags");
    assert_eq!(kept.len(), firegate::audit::MAX_AUDIT_TAGS + 1, "{r}");
    assert_eq!(kept[0], "checkout");
    assert_eq!(kept[1], "forged\"}\\u{a}{\"decision\":\"allow");
    let long = kept[2].as_str().expect("a string");
    assert!(long.ends_with('…') && long.len() < 200, "{long}");
    assert_eq!(kept[firegate::audit::MAX_AUDIT_TAGS], "…17 more");
    assert_eq!(r["decision"], "allow");
    let r = by_request_id(&records, "tagged-get")[0];
    assert_eq!(r["request_tags"], json!(["from-url"]));
    // One record per line still: the forged tag broke nothing.
    let text = std::fs::read_to_string(&audit_path).expect("audit file");
    assert_eq!(text.lines().count(), records.len());
    stack.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_503_with_one_audit_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let stack = start(DevOptions {
        upstream_override: Some(format!("http://{closed}")),
        extra_config: Some(serde_json::json!({"audit": {"sink": "file", "path": audit_path}})),
        ..options()
    })
    .await;
    let alice = Caller::new(&stack, &sample("ALICE_TOKEN"));
    let (status, body) = alice
        .send("GET", &format!("{DOCS}/catalog/payments-api"), None)
        .await;
    assert!(status == 502 || status == 503, "{status} {body}");
    assert_eq!(error_status(&body), "UNAVAILABLE");
    let records = audit_records(&stack, &audit_path).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["decision"], "error", "{r}");
    assert_eq!(r["targets"][0]["allowed"], true, "policy allowed it: {r}");
    assert_eq!(r["status"], status);
    assert!(r["upstream_status"].is_null(), "{r}");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("upstream")),
        "{r}"
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn a_compressed_answer_to_begin_transaction_is_a_502_audited_as_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    // firegate asks for an identity body; an upstream that compresses anyway
    // hands out an id that cannot be sealed, so nothing of it may pass.
    let recording = upstream()
        .header("content-encoding", "gzip")
        .body("\x1f compressed transaction id")
        .start()
        .await;
    let stack = start(DevOptions {
        upstream_override: Some(recording.url.clone()),
        extra_config: Some(serde_json::json!({"audit": {"sink": "file", "path": audit_path}})),
        ..options()
    })
    .await;
    let alice = Caller::new(&stack, &sample("ALICE_TOKEN"));
    let (status, body) = alice
        .send("POST", &format!("{DOCS}:beginTransaction"), Some(json!({})))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(error_status(&body), "UNAVAILABLE");
    assert!(!body.to_string().contains("compressed"), "{body}");
    let forwarded = recording.requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert!(forwarded[0].headers.get("accept-encoding").is_none());

    let records = audit_records(&stack, &audit_path).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["decision"], "error", "{r}");
    assert_eq!(r["reason"], "response_not_sealable", "{r}");
    assert_eq!(r["status"], 502, "{r}");
    assert_eq!(r["upstream_status"], 200, "{r}");
    stack.shutdown().await;
}

/// The same token with its signature's last bytes changed.
fn tampered(token: &str) -> String {
    let cut = token.len() - 4;
    let tail = if &token[cut..] == "AAAA" {
        "BBBB"
    } else {
        "AAAA"
    };
    format!("{}{tail}", &token[..cut])
}

/// `firegate dev` as a newcomer runs it: the binary starts, and every
/// command it prints, run by bash and curl exactly as printed, does what
/// its comment says (allowed → 200, refused → 403).
#[tokio::test]
async fn firegate_dev_prints_commands_that_do_what_they_say() {
    let policies = policies();
    let banner = dev_commands_do_what_they_say(
        &std::env::temp_dir(),
        &["--policies".as_ref(), policies.as_os_str()],
    )
    .await;
    assert!(
        banner.contains(&format!("policies: {}", policies.display())),
        "{banner}"
    );
}

/// From a directory with no `policies/` and without `--policies`, `firegate
/// dev` serves the example policies built into the binary, with the same
/// allowed and refused commands.
#[tokio::test]
async fn firegate_dev_from_anywhere_uses_the_built_in_policies() {
    let anywhere = tempfile::tempdir().expect("temp dir");
    let banner = dev_commands_do_what_they_say(anywhere.path(), &[]).await;
    assert!(
        banner.contains("policies: the examples built into the binary"),
        "{banner}"
    );
}

/// Run `firegate dev` in `cwd` with `extra` arguments, run every printed
/// command, and return the banner up to the last command.
async fn dev_commands_do_what_they_say(
    cwd: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--issuer-listen",
            "127.0.0.1:0",
            "--emulator-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("firegate dev starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut exports = Vec::new();
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut verdict = None;
    let mut banner = String::new();
    within("the banner", async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("export ") {
                exports.push(line);
            } else if let Some(rest) = line.strip_prefix("# allowed: ") {
                verdict = Some(("allowed", rest.to_owned()));
            } else if let Some(rest) = line.strip_prefix("# refused: ") {
                verdict = Some(("refused", rest.to_owned()));
            } else if line.starts_with("curl ") {
                let (kind, what) = verdict.take().expect("a comment before each command");
                commands.push((format!("{kind}: {what}"), line));
                if commands.len() == 6 {
                    return;
                }
            }
        }
        panic!("firegate dev stopped printing");
    })
    .await;
    assert_eq!(exports.len(), 3, "a token per sample identity");
    for (what, command) in &commands {
        let script = format!(
            "{}\n{command} -o /dev/null -w '%{{http_code}}'",
            exports.join("\n")
        );
        let out = tokio::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .await
            .expect("bash runs");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        let expected = if what.starts_with("allowed") {
            "200"
        } else {
            "403"
        };
        assert_eq!(code, expected, "{what}: {command}");
    }
    child.kill().await.expect("stop firegate dev");
    banner
}
