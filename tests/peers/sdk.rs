//! The official Firestore clients (`@google-cloud/firestore` 8.x and 7.x over
//! REST, and `firebase/firestore/lite`) against the emulator, in-process on
//! a free port, and through firegate.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The steps of `run.mjs` every client runs, in order (then `cleanup`).
const COMMON: [&str; 11] = [
    "set",
    "get",
    "update",
    "delete",
    "query",
    "collectionGroup",
    "count",
    "batch",
    "transaction",
    "listCollections",
    "vector",
];
/// What only the Node admin clients can do (lite has no such calls), and
/// `burst`: 1,000 writes in flight at once.
const ADMIN_ONLY: [&str; 4] = ["findNearest", "explain", "partitions", "burst"];
/// `admin` is `@google-cloud/firestore` 8.x, `admin7` its 7.x line.
const CLIENTS: [&str; 3] = ["admin", "admin7", "lite"];

/// The steps `client` runs, in order.
fn steps(client: &str) -> Vec<&'static str> {
    let mut steps = COMMON.to_vec();
    if client != "lite" {
        steps.extend(ADMIN_ONLY);
    }
    steps.push("cleanup");
    steps
}

struct Outcome {
    success: bool,
    lines: Vec<Value>,
    stderr: String,
}

/// Run `tests/sdk/run.mjs` with `args` against `port`.
async fn run_script(port: u16, args: &[&str]) -> Outcome {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/sdk first (scripts/test does)"
    );
    let port = port.to_string();
    let child = Command::new("node")
        .arg("run.mjs")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--project",
            "sdk-test",
        ])
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the SDK script finishes")
        .expect("the SDK script runs");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    Outcome {
        success: output.status.success(),
        lines,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every step of every one of `clients` ran and did what was expected.
fn assert_all_pass(outcome: &Outcome, clients: &[&str]) {
    let failed: Vec<String> = clients
        .iter()
        .flat_map(|client| steps(client).into_iter().map(move |step| (*client, step)))
        .map(|(client, step)| line(outcome, client, step))
        .filter(|line| line["pass"] != true)
        .map(Value::to_string)
        .collect();
    assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
}

fn line<'a>(outcome: &'a Outcome, client: &str, step: &str) -> &'a Value {
    outcome
        .lines
        .iter()
        .find(|l| l["client"] == client && l["step"] == step)
        .unwrap_or_else(|| panic!("no line for {client}:{step}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_work_unchanged_against_the_emulator() {
    let running = firegate::emulator::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let outcome = run_script(running.local_addr().port(), &["--prefix", "sdk"]).await;
    assert_all_pass(&outcome, &CLIENTS);
    let all: usize = CLIENTS.iter().map(|c| steps(c).len()).sum();
    assert_eq!(outcome.lines.len(), all);
    assert!(outcome.success, "script failed: {}", outcome.stderr);

    // The clients' deletes really emptied the store.
    let db = "projects/sdk-test/databases/(default)";
    for path in [
        "sdk_admin/alpha",
        "sdk_admin/delta",
        "sdk_admin7/alpha",
        "sdk_admin/alpha/sdk_admin_parts/p000",
        "sdk_admin/alpha/sdk_admin_vec/a",
        "sdk_lite/alpha",
        "sdk_lite/delta",
        "sdk_lite/vec",
    ] {
        assert!(running.emulator().fields(db, path).is_none(), "{path} left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_reports_a_step_that_was_not_refused_as_expected() {
    let running = firegate::emulator::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let outcome = run_script(
        running.local_addr().port(),
        &[
            "--prefix",
            "deny",
            "--clients",
            "lite",
            "--deny",
            "lite:count",
        ],
    )
    .await;
    assert!(
        !outcome.success,
        "a refusal that did not happen must fail the run"
    );
    let count = line(&outcome, "lite", "count");
    assert_eq!(count["pass"], false);
    assert_eq!(count["expected"], "PERMISSION_DENIED");
    assert_eq!(line(&outcome, "lite", "get")["pass"], true);
}

/// The same official clients through the whole of firegate: real tokens
/// from the development issuer, a policy, and the emulator behind. The
/// policy refuses aggregation queries on one collection and everything to a
/// caller outside the `sdk` group; both SDKs must surface refusals as
/// `PERMISSION_DENIED`, while everything else (transactions included, whose
/// ids firegate seals to the caller) works unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_work_through_firegate_and_see_refusals_as_permission_denied() {
    let policies = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        policies.path().join("sdk.yaml"),
        r#"rules:
  - id: sdk-clients
    match: /{rest=**}
    allow: [read, write]
    who: {groups: [sdk]}
  - id: no-aggregations-on-admin
    match: /proxied_admin/{doc}
    deny: [list]
    who: {any: true}
    when: "request.rpc == 'runAggregationQuery'"
"#,
    )
    .expect("policy");
    let stack = crate::support::dev::start(firegate::dev::DevOptions {
        policies: Some(policies.path().to_owned()),
        extra_config: Some(serde_json::json!({"upstream": {"databases": [
            firegate::dev::SAMPLE_DATABASE,
            "projects/sdk-test/databases/(default)",
        ]}})),
        ..crate::support::dev::options()
    })
    .await;
    let token = stack
        .token(&firegate::dev::Identity {
            subject: "svc:sdk-tests".into(),
            email: "sdk@example.com".into(),
            groups: vec!["sdk".into()],
        })
        .expect("token");
    let outcome = run_script(
        stack.proxy.port(),
        &[
            "--prefix",
            "proxied",
            "--token",
            &token,
            "--deny",
            "admin:count",
        ],
    )
    .await;
    assert_all_pass(&outcome, &CLIENTS);
    assert_eq!(
        line(&outcome, "admin", "count")["expected"],
        "PERMISSION_DENIED"
    );
    assert!(outcome.success, "script failed: {}", outcome.stderr);

    let outsider = stack
        .token(&firegate::dev::Identity {
            subject: "user:default/mallory".into(),
            email: "mallory@example.com".into(),
            groups: Vec::new(),
        })
        .expect("token");
    let every_step = steps("lite").join(",");
    let outcome = run_script(
        stack.proxy.port(),
        &[
            "--prefix",
            "outsider",
            "--clients",
            "lite",
            "--token",
            &outsider,
            "--deny",
            &every_step,
        ],
    )
    .await;
    // (The admin client's BulkWriter swallows per-write errors in its
    // cleanup step, so the lite client stands for both here.)
    for step in steps("lite") {
        let line = line(&outcome, "lite", step);
        assert_eq!(line["pass"], true, "lite:{step}: {line}");
        assert_eq!(line["expected"], "PERMISSION_DENIED", "{line}");
    }
    assert!(outcome.success, "script failed: {}", outcome.stderr);
    stack.shutdown().await;
}
