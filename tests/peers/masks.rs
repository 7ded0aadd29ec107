//! Field masks with the official clients through `firegate dev` and the
//! example people directory: Node `@google-cloud/firestore` over REST and
//! gRPC (`tests/sdk/masks.mjs`) and Python `google-cloud-firestore`
//! (`tests/python/masks.py`) read without the private fields — get, a
//! query, getAll, a transaction read, a listener — and are refused the
//! queries on them and a set() without merge; update({name}) passes.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use support::dev::engineer;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run a client script; every line it printed must pass, and each of
/// `steps` must be among them.
async fn run_all(program: &Path, args: &[&str], dir: &Path, steps: &[&str]) {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("FIRESTORE_EMULATOR_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the client script finishes")
        .expect("the client script runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    for step in steps {
        assert!(
            lines.iter().any(|l| l["step"] == *step),
            "no line for {step}; stderr:\n{stderr}"
        );
    }
    let failed: Vec<String> = lines
        .iter()
        .filter(|l| l["ok"] != true && l["pass"] != true)
        .map(Value::to_string)
        .collect();
    assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
    assert!(
        output.status.success(),
        "the client script failed: {stderr}"
    );
}

const STEPS: [&str; 10] = [
    "get",
    "query",
    "getAll",
    "transaction",
    "whereMasked",
    "orderByMasked",
    "cursorMasked",
    "sumMasked",
    "setRefused",
    "updateAllowed",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_clients_over_rest_and_grpc_read_masked() {
    let dir = repo().join("tests/sdk");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/sdk first (scripts/test does)"
    );
    let stack = support::dev_stack().await;
    let token = stack.token(&engineer("alice")).expect("token");
    let port = stack.proxy.port().to_string();
    let args = [
        "masks.mjs",
        "--port",
        &port,
        "--token",
        &token,
        "--clients",
        "admin,grpc",
    ];
    let mut steps = STEPS.to_vec();
    steps.push("listen");
    run_all(Path::new("node"), &args, &dir, &steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reads_masked() {
    let python = repo().join("target/python-peers/bin/python");
    assert!(
        python.is_file(),
        "no {}: scripts/test creates it from tests/python/requirements.txt",
        python.display()
    );
    let stack = support::dev_stack().await;
    let token = stack.token(&engineer("alice")).expect("token");
    let proxy = stack.proxy.to_string();
    let args = ["masks.py", "--emulator", &proxy, "--token", &token];
    let mut steps = STEPS.to_vec();
    steps.push("listener");
    run_all(&python, &args, &repo().join("tests/python"), &steps).await;
}
