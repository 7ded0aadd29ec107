//! The official gRPC Firestore clients — Python `google-cloud-firestore` and
//! Node `@google-cloud/firestore` in its default gRPC mode — against the
//! emulator's gRPC API, which shares its port with REST. Realtime listeners
//! (`on_snapshot`, `onSnapshot`) included.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const DB: &str = "projects/grpc-test/databases/(default)";

/// The steps of `tests/python/client.py`, in order.
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

/// The venv `scripts/test` and `.ci/run` make from `tests/python/requirements.txt`.
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
    /// Every one of `steps` reported and passed (`ok` in Python, `pass` in Node).
    fn assert_all_pass(&self, steps: &[&str]) {
        let failed: Vec<String> = steps
            .iter()
            .map(|step| {
                self.lines
                    .iter()
                    .find(|l| l["step"] == *step)
                    .unwrap_or_else(|| panic!("no line for {step}; stderr:\n{}", self.stderr))
            })
            .filter(|l| l["ok"] != true && l["pass"] != true)
            .map(Value::to_string)
            .collect();
        assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
        assert_eq!(self.lines.len(), steps.len(), "{:?}", self.lines);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_works_against_the_emulator_listeners_included() {
    let running = emulator().await;
    let emulator_host = running.local_addr().to_string();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &emulator_host,
            "--project",
            "grpc-test",
            "--prefix",
            "py",
        ],
        &repo().join("tests/python"),
    )
    .await;
    outcome.assert_all_pass(&PYTHON_STEPS);
    for path in ["py_py/alpha", "py_py/delta", "py_py/epsilon"] {
        assert!(running.emulator().fields(DB, path).is_none(), "{path} left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_in_grpc_mode_works_against_the_emulator_listeners_included() {
    let dir = repo().join("tests/sdk");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/sdk first (scripts/test does)"
    );
    let running = emulator().await;
    let port = running.local_addr().port().to_string();
    let outcome = run(
        Path::new("node"),
        &[
            "run.mjs",
            "--port",
            &port,
            "--project",
            "grpc-test",
            "--prefix",
            "node",
            "--clients",
            "grpc",
        ],
        &dir,
    )
    .await;
    outcome.assert_all_pass(&NODE_STEPS);
    for path in ["node_grpc/alpha", "node_grpc/delta", "node_grpc/epsilon"] {
        assert!(running.emulator().fields(DB, path).is_none(), "{path} left");
    }
}

/// The Python script's expectations can fail: a read it is told will be
/// refused is not, and the run says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_script_reports_a_refusal_that_did_not_happen() {
    let running = emulator().await;
    let emulator_host = running.local_addr().to_string();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &emulator_host,
            "--prefix",
            "deny",
            "--steps",
            "set,get",
            "--deny",
            "get",
        ],
        &repo().join("tests/python"),
    )
    .await;
    assert!(!outcome.success, "a refusal that did not happen must fail");
    assert_eq!(outcome.lines[0]["ok"], true, "{:?}", outcome.lines);
    assert_eq!(outcome.lines[1]["ok"], false, "{:?}", outcome.lines);
}

/// gRPC and REST answer on the one port: what a gRPC client wrote, REST reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_answers_beside_grpc_on_the_same_port() {
    let running = emulator().await;
    let emulator_host = running.local_addr().to_string();
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &emulator_host,
            "--project",
            "grpc-test",
            "--prefix",
            "both",
            "--steps",
            "set",
        ],
        &repo().join("tests/python"),
    )
    .await;
    outcome.assert_all_pass(&["set"]);
    let url = format!("http://{emulator_host}/v1/{DB}/documents/both_py/alpha");
    let doc: Value = reqwest::get(&url)
        .await
        .expect("REST answers")
        .json()
        .await
        .expect("a JSON document");
    assert_eq!(doc["fields"]["name"]["stringValue"], "alpha", "{doc}");
}
