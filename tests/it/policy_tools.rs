//! The access-review tools through the real binary: `policy who-can`,
//! `what-can`, `diff` (and its `--fail-on` exit codes), `test --coverage`
//! and `audit report`, on the shipped example policies.

use std::path::{Path, PathBuf};
use std::process::Command;

use firegate::audit::canonical;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn firegate(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(args)
        .output()
        .expect("run firegate");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn policies() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

fn json_of(run: &Run) -> Value {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn who_can_answers_for_a_subtree_and_a_document() {
    let run = firegate(&["policy", "who-can", &policies(), "write", "/secrets/{x=**}"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("allowed: nobody\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("by no-secrets"), "{}", run.stdout);
    let answer = json_of(&firegate(&[
        "policy",
        "who-can",
        &policies(),
        "update",
        "/teams/payments/deployments/d1",
        "--format",
        "json",
    ]));
    let allowed = answer["allowed"].as_array().expect("allowed");
    let own = allowed
        .iter()
        .find(|g| g["rule"] == "own-team")
        .expect("own-team");
    assert_eq!(
        own["when"],
        "'group:default/' + 'payments' in principal.groups"
    );
    assert!(allowed.iter().any(|g| g["rule"] == "platform-admins"
        && g["who"]["groups"] == json!([["group:default/platform-admins"]])));
    let bad = firegate(&["policy", "who-can", &policies(), "peek", "/a/b"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("unknown action `peek`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn what_can_lists_one_principals_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let principal = dir.path().join("bob.json");
    std::fs::write(
        &principal,
        r#"{"issuer": "https://idp.example.com", "subject": "bob",
            "groups": ["group:default/engineering", "group:default/search"]}"#,
    )
    .expect("write");
    let answer = json_of(&firegate(&[
        "policy",
        "what-can",
        &policies(),
        &principal.display().to_string(),
        "--format",
        "json",
    ]));
    let allowed = answer["allowed"].as_array().expect("allowed");
    let rules: Vec<&str> = allowed.iter().filter_map(|g| g["rule"].as_str()).collect();
    assert!(rules.contains(&"catalog-readers"), "{rules:?}");
    assert!(!rules.contains(&"platform-admins"), "{rules:?}");
    assert!(allowed.iter().any(|g| g["rule"] == "own-team"
        && g["when"] == "'group:default/' + path.team in principal.groups"));
}

/// A copy of the example policies plus `extra` files.
fn changed_policies(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(policies()).expect("policies") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

const CONTRACTORS: &str = "rules:
  - id: contractors-status
    match: /status/{service}
    allow: [write]
    who: { groups: [group:default/contractors] }
";

#[test]
fn diff_gates_a_change_by_its_direction() {
    let new = changed_policies(&[("contractors.yaml", CONTRACTORS)]);
    let new = new.path().display().to_string();
    let old = policies();
    let same = firegate(&["policy", "diff", &old, &old, "--fail-on", "any"]);
    assert_eq!(same.code, Some(0), "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("no access changes"));
    let gained = firegate(&["policy", "diff", &old, &new, "--fail-on", "gained"]);
    assert_eq!(gained.code, Some(1), "{}", gained.stderr);
    assert!(
        gained.stdout.contains("+ gained create /status/{service}"),
        "{}",
        gained.stdout
    );
    let lost_only = firegate(&["policy", "diff", &old, &new, "--fail-on", "lost"]);
    assert_eq!(lost_only.code, Some(0), "{}", lost_only.stderr);
    let back = json_of(&firegate(&[
        "policy", "diff", &new, &old, "--format", "json",
    ]));
    let changes = back["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3, "{back}");
    assert!(changes.iter().all(|c| c["change"] == "lost"
        && c["rules"] == json!(["contractors-status"])
        && c["path"] == "/status/{service}"));
    let broken = changed_policies(&[("broken.yaml", "rules: [{ id: x }]")]);
    let error = firegate(&[
        "policy",
        "diff",
        &old,
        &broken.path().display().to_string(),
        "--fail-on",
        "any",
    ]);
    assert_eq!(error.code, Some(2), "{}", error.stderr);
}

#[test]
fn test_coverage_names_what_no_case_exercises() {
    let dir = changed_policies(&[("contractors.yaml", CONTRACTORS)]);
    let run = firegate(&[
        "policy",
        "test",
        &dir.path().display().to_string(),
        "--coverage",
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("rule contractors-status: no case reaches it"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("rule no-secrets: no case"),
        "{}",
        run.stdout
    );
}

/// An audit file of `records`, chained as the writer chains them.
fn audit_file(dir: &Path, records: &[Value]) -> PathBuf {
    let mut prev = "0".repeat(64);
    let mut text = String::new();
    for (seq, record) in records.iter().enumerate() {
        let mut value = record.clone();
        value["seq"] = json!(seq);
        value["prev"] = json!(prev);
        let mut bytes = Vec::new();
        canonical(&value, &mut bytes).expect("canonical");
        let hash = hex::encode(Sha256::digest(&bytes));
        value["hash"] = json!(hash);
        text += &format!("{value}\n");
        prev = hash;
    }
    let path = dir.join("audit.log");
    std::fs::write(&path, text).expect("write");
    path
}

fn record(time: &str, subject: &str, resource: &str, denied_by: Option<&str>) -> Value {
    json!({
        "time": time, "request_id": "r", "client_ip": "127.0.0.1", "tls": null,
        "http_version": "HTTP/1.1",
        "principal": {"issuer": "https://idp.example.com", "subject": subject, "email": null, "groups": []},
        "http_method": "GET", "rpc": "get", "database": "projects/p/databases/(default)",
        "targets": [{"resource": resource, "access": "get", "allowed": denied_by.is_none(),
                     "rule": denied_by.unwrap_or("catalog-readers"),
                     "why": if denied_by.is_some() { "deny_matched" } else { "allowed" }}],
        "decision": if denied_by.is_some() { "deny" } else { "allow" },
        "reason": denied_by.map(|r| format!("rule:{r}")),
        "upstream_account": null, "shadow_decision": null, "shadow_rule": null,
        "upstream_status": null, "status": 200, "bytes_in": 0, "bytes_out": 0,
        "duration_ms": 1.0, "client_disconnected": false,
    })
}

#[test]
fn audit_report_summarizes_verified_files_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(
        dir.path(),
        &[
            record("2026-11-28T10:00:00Z", "alice", "/catalog/a", None),
            record(
                "2026-11-28T11:00:00Z",
                "alice",
                "/secrets/s",
                Some("no-secrets"),
            ),
            record("2026-11-28T12:00:00Z", "bob", "/catalog/b", None),
        ],
    );
    let file = path.display().to_string();
    let report = json_of(&firegate(&["audit", "report", &file, "--format", "json"]));
    let alice = &report["principals"]["alice via https://idp.example.com"];
    assert_eq!(alice["requests"], 2);
    assert_eq!(alice["denied"], 1);
    assert_eq!(alice["first_seen"], "2026-11-28T10:00:00Z");
    assert_eq!(alice["last_seen"], "2026-11-28T11:00:00Z");
    assert_eq!(report["collections"]["/catalog"]["requests"], 2);
    assert_eq!(report["denials_by_rule"]["no-secrets"]["requests"], 1);
    assert_eq!(
        report["denials_by_reason"]["rule:no-secrets"]["requests"],
        1
    );
    let text = firegate(&["audit", "report", &file]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("requests per collection:"),
        "{}",
        text.stdout
    );
    let edited = std::fs::read_to_string(&path)
        .expect("read")
        .replacen("bob", "eve", 1);
    std::fs::write(&path, edited).expect("write");
    let refused = firegate(&["audit", "report", &file]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("do not verify"),
        "{}",
        refused.stderr
    );
}

const CATALOG_RULES: &str = r#"rules:
  - id: service-owners
    match: /services/{service}/{rest=**}
    allow: [read, write]
    who: {catalog: {owner_of: "component:default/{service}"}}
"#;

/// A snapshot as `firegate catalog dump` writes it: payments ⊂ org, alice
/// in payments, bob in org, checkout owned by payments.
fn snapshot(dir: &Path) -> PathBuf {
    let items = json!({"items": [
        {"kind": "Group", "metadata": {"name": "org", "namespace": "default"}},
        {"kind": "Group", "metadata": {"name": "payments", "namespace": "default"},
         "relations": [{"type": "childOf", "targetRef": "group:default/org"}]},
        {"kind": "User", "metadata": {"name": "alice", "namespace": "default"},
         "relations": [{"type": "memberOf", "targetRef": "group:default/payments"}]},
        {"kind": "User", "metadata": {"name": "bob", "namespace": "default"},
         "spec": {"memberOf": ["org"]}},
        {"kind": "Component", "metadata": {"name": "checkout", "namespace": "default"},
         "spec": {"owner": "payments", "type": "service"}},
    ]});
    let path = dir.join("catalog.json");
    std::fs::write(&path, items.to_string()).expect("snapshot");
    path
}

#[test]
fn catalog_bound_rules_in_the_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies");
    std::fs::write(policies.join("services.yaml"), CATALOG_RULES).expect("rules");
    let snapshot = snapshot(dir.path());
    let snapshot_arg = snapshot.display().to_string();
    let policies_arg = policies.display().to_string();

    // policy test: a file-level fixture and a case that brings its own.
    std::fs::write(
        policies.join("services.test.yaml"),
        r#"catalog: ../catalog.json
principals:
  alice: {subject: "user:default/alice"}
  bob: {subject: "user:default/bob"}
tests:
  - {name: owner writes, principal: alice, targets: [{access: update, document: /services/checkout/d/1}], expect: allow, rule: service-owners}
  - {name: org member does not, principal: bob, targets: [{access: update, document: /services/checkout/d/1}], expect: deny}
  - {name: no such service, principal: alice, targets: [{access: get, document: /services/nothing/d/1}], expect: deny}
  - name: re-owned in this case's catalog
    principal: bob
    catalog: {items: [{kind: User, metadata: {name: bob}}, {kind: Component, metadata: {name: checkout}, spec: {owner: "user:bob"}}]}
    targets: [{access: update, document: /services/checkout/d/1}]
    expect: allow
"#,
    )
    .expect("tests");
    let run = firegate(&["policy", "test", &policies_arg]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("4 passed, 0 failed"), "{}", run.stdout);

    // policy check names the entity, its owners and the snapshot's age.
    let principal = dir.path().join("alice.json");
    std::fs::write(&principal, r#"{"subject": "user:default/alice"}"#).expect("principal");
    let run = firegate(&[
        "policy",
        "check",
        "--policies",
        &policies_arg,
        "--principal",
        &principal.display().to_string(),
        "--catalog",
        &snapshot_arg,
        "GET",
        "/v1/projects/p/databases/(default)/documents/services/checkout/d/1",
    ]);
    let out = json_of(&run);
    assert_eq!(out["decision"]["allowed"], true, "{out}");
    let seen = &out["catalog"]["rules"][0];
    assert_eq!(seen["rule"], "service-owners", "{out}");
    assert_eq!(seen["decided"], true, "{out}");
    assert_eq!(seen["entity"], "component:default/checkout", "{out}");
    assert_eq!(seen["owners"], json!(["group:default/payments"]), "{out}");
    assert_eq!(seen["user"], "user:default/alice", "{out}");
    assert!(out["catalog"]["index_age_seconds"].is_u64(), "{out}");
    // Without the snapshot the rule fails closed.
    let run = firegate(&[
        "policy",
        "check",
        "--policies",
        &policies_arg,
        "--principal",
        &principal.display().to_string(),
        "GET",
        "/v1/projects/p/databases/(default)/documents/services/checkout/d/1",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);

    // who-can expands the rule per entity: the owning users by subject.
    let run = firegate(&[
        "policy",
        "who-can",
        &policies_arg,
        "write",
        "/services/checkout/d/1",
        "--catalog",
        &snapshot_arg,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("user:default/alice"), "{}", run.stdout);
    assert!(!run.stdout.contains("user:default/bob"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("service-owners[component:default/checkout]"),
        "{}",
        run.stdout
    );

    // what-can turns alice's ownership into the concrete paths; bob, an
    // `org` member, owns nothing; without the snapshot nothing is concrete.
    let what_can = |who: &Path, catalog: bool| {
        let who = who.display().to_string();
        let mut args = vec!["policy", "what-can", &policies_arg, &who];
        if catalog {
            args.extend(["--catalog", &snapshot_arg]);
        }
        let run = firegate(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stdout
    };
    let out = what_can(&principal, true);
    assert!(
        out.contains("/services/checkout/{rest=**}")
            && out.contains("by service-owners[component:default/checkout]"),
        "{out}"
    );
    let bob = dir.path().join("bob.json");
    std::fs::write(&bob, r#"{"subject": "user:default/bob"}"#).expect("principal");
    let out = what_can(&bob, true);
    assert!(!out.contains("/services/checkout"), "{out}");
    let out = what_can(&principal, false);
    assert!(!out.contains("/services/checkout"), "{out}");

    // diff: adding the catalog rule gains alice's access to checkout.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("empty");
    std::fs::write(empty.join("none.yaml"), "rules: []\n").expect("none");
    let run = firegate(&[
        "policy",
        "diff",
        &empty.display().to_string(),
        &policies_arg,
        "--catalog",
        &snapshot_arg,
        "--fail-on",
        "gained",
    ]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("user:default/alice"), "{}", run.stdout);
    assert!(run.stdout.contains("/services/checkout"), "{}", run.stdout);
}
