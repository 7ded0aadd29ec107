//! The official gRPC clients through the whole gate: Python
//! `google-cloud-firestore` and Node `@google-cloud/firestore` (default gRPC
//! mode) with a real token from the test issuer → firegate (policy, sealed
//! transactions, Listen gating) → the emulator's gRPC API. Python runs both
//! ways a deployment and a developer connect: TLS (ALPN h2) with the token as
//! call credentials, and emulator mode (h2c); a refused read surfaces as
//! `PermissionDenied`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use support::{TestPki, TestProxy, config};

/// The steps of `tests/python/client.py`, in order (listeners included).
const PYTHON_STEPS: [&str; 12] = [
    "set",
    "get",
    "update",
    "delete",
    "query",
    "aggregate",
    "batch",
    "transaction",
    "listCollections",
    "watchDocument",
    "watchQuery",
    "cleanup",
];

/// The steps of `tests/sdk/run.mjs` for its `grpc` client, in order.
const NODE_STEPS: [&str; 16] = [
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
    "findNearest",
    "explain",
    "partitions",
    "listen",
    "cleanup",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let python = repo().join("target/python-peers/bin/python");
    assert!(
        python.is_file(),
        "no {}: scripts/test creates it from tests/python/requirements.txt",
        python.display()
    );
    python
}

struct Outcome {
    success: bool,
    lines: Vec<Value>,
    stderr: String,
}

impl Outcome {
    fn step(&self, step: &str) -> &Value {
        self.lines
            .iter()
            .find(|l| l["step"] == step)
            .unwrap_or_else(|| panic!("no line for {step}; stderr:\n{}", self.stderr))
    }

    fn assert_all_pass(&self, steps: &[&str]) {
        let failed: Vec<String> = steps
            .iter()
            .map(|step| self.step(step))
            .filter(|l| l["ok"] != true && l["pass"] != true)
            .map(Value::to_string)
            .collect();
        assert!(
            failed.is_empty(),
            "failed steps:\n{}\nstderr:\n{}",
            failed.join("\n"),
            self.stderr
        );
        assert!(self.success, "the client script failed: {}", self.stderr);
    }
}

async fn run(program: &Path, args: &[&str], dir: &Path) -> Outcome {
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

async fn emulator() -> firegate::emulator::Running {
    firegate::emulator::spawn("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("the emulator starts")
}

/// Writes allowed, reads refused: for the refusal a client must surface.
fn write_only_policy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("policy dir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: write-only\n    match: /{rest=**}\n    allow: [write]\n    who: {authenticated: true}\n",
    )
    .expect("policy");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_through_the_gate_over_tls_with_a_real_token() {
    let running = emulator().await;
    let pki = TestPki::new();
    let upstream = format!("http://{}", running.local_addr());
    let proxy = TestProxy::start(&config::tls(&pki, &upstream).yaml()).await;
    let token = proxy.issuer().token().sign();
    let endpoint = format!("localhost:{}", proxy.addr.port());
    let ca = pki.ca_path.to_string_lossy().into_owned();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--endpoint",
            &endpoint,
            "--tls-root",
            &ca,
            "--token",
            &token,
            "--project",
            "p",
            "--prefix",
            "gate",
        ],
        &repo().join("tests/python"),
    )
    .await;
    outcome.assert_all_pass(&PYTHON_STEPS);
    let audit = proxy.audit().await;
    let listens = audit.iter().filter(|r| r["rpc"] == "listen").count();
    assert!(
        listens >= 2,
        "the listeners went through the gate: {listens}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["rpc"] == "beginTransaction" && r["decision"] == "allow"),
        "the transaction went through the gate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_through_the_gate_in_emulator_mode_and_a_refused_read() {
    let running = emulator().await;
    let upstream = format!("http://{}", running.local_addr());
    let proxy = TestProxy::start(&config::plain(&upstream).yaml()).await;
    let token = proxy.issuer().token().sign();
    let host = proxy.addr.to_string();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &host,
            "--token",
            &token,
            "--project",
            "p",
            "--prefix",
            "gateemu",
        ],
        &repo().join("tests/python"),
    )
    .await;
    outcome.assert_all_pass(&PYTHON_STEPS);

    let policies = write_only_policy();
    let yaml = config::plain(&upstream)
        .merge(json!({"policy": {"dir": policies.path(), "watch": false}}))
        .yaml();
    let refusing = TestProxy::start(&yaml).await;
    let token = refusing.issuer().token().sign();
    let host = refusing.addr.to_string();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &host,
            "--token",
            &token,
            "--project",
            "p",
            "--prefix",
            "gatedeny",
            "--steps",
            "set,get",
            "--deny",
            "get",
        ],
        &repo().join("tests/python"),
    )
    .await;
    outcome.assert_all_pass(&["set", "get"]);
    let audit = refusing.audit().await;
    assert!(
        audit.iter().any(|r| r["decision"] == "deny"),
        "the refusal is audited: {audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_in_grpc_mode_through_the_gate_with_a_real_token() {
    let dir = repo().join("tests/sdk");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/sdk first (scripts/test does)"
    );
    let running = emulator().await;
    let upstream = format!("http://{}", running.local_addr());
    let proxy = TestProxy::start(&config::plain(&upstream).yaml()).await;
    let token = proxy.issuer().token().sign();
    let port = proxy.addr.port().to_string();
    let outcome = run(
        Path::new("node"),
        &[
            "run.mjs",
            "--port",
            &port,
            "--project",
            "p",
            "--prefix",
            "gatenode",
            "--clients",
            "grpc",
            "--token",
            &token,
        ],
        &dir,
    )
    .await;
    outcome.assert_all_pass(&NODE_STEPS);
}
