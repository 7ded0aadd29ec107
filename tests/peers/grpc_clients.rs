//! The official gRPC Firestore clients — Python `google-cloud-firestore` and
//! Node `@google-cloud/firestore` in its default gRPC mode — against the
//! emulator's gRPC API, which shares its port with REST. Realtime listeners
//! (`on_snapshot`, `onSnapshot`) included. Then the same clients through
//! `firegate dev`: a real token over TLS, the clients' emulator mode with a
//! real token in place of `Bearer owner`, and a refused read.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use support::TestPki;

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
const NODE_STEPS: [&str; 17] = [
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
    "burst",
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

/// The policy of the through-firegate runs: the `grpc` group may read and
/// write everything, except `get` in the `secret_py` collection. (A deny of
/// `list` there would refuse every collection-group and kindless query too,
/// recursive deletes included: their scopes overlap it.)
const POLICY: &str = r#"rules:
  - id: grpc-clients
    match: /{rest=**}
    allow: [read, write]
    who: {groups: [grpc]}
  - id: no-secrets
    match: /secret_py/{doc}
    deny: [get]
    who: {any: true}
"#;

/// `firegate dev` with [`POLICY`], serving the tests' database, with
/// `server` merged into its server config.
async fn dev_stack(server: serde_json::Value) -> (firegate::dev::Stack, tempfile::TempDir) {
    let policies = tempfile::tempdir().expect("tempdir");
    std::fs::write(policies.path().join("grpc.yaml"), POLICY).expect("policy");
    let config = serde_json::json!({
        "server": server,
        "upstream": {"databases": [firegate::dev::SAMPLE_DATABASE, DB]},
    });
    let stack = support::dev::start(firegate::dev::DevOptions {
        policies: Some(policies.path().to_owned()),
        extra_config: Some(config),
        ..support::dev::options()
    })
    .await;
    (stack, policies)
}

fn grpc_token(stack: &firegate::dev::Stack) -> String {
    stack
        .token(&firegate::dev::Identity {
            subject: "svc:grpc-tests".into(),
            email: "grpc@example.com".into(),
            groups: vec!["grpc".into()],
        })
        .expect("token")
}

/// A deployment's path: TLS to firegate (`api_endpoint`, the test CA as the
/// trust root) and a real token as call credentials; then a read the
/// policy refuses, which the client raises as `PermissionDenied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_through_firegate_over_tls_with_a_real_token() {
    let pki = TestPki::new();
    let (stack, _policies) = dev_stack(serde_json::json!({
        "plain_http": false,
        "tls": {"cert": pki.cert_path, "key": pki.key_path},
    }))
    .await;
    let token = grpc_token(&stack);
    let endpoint = format!("localhost:{}", stack.proxy.port());
    let ca = pki.ca_path.to_string_lossy().into_owned();
    let tls = |prefix: &'static str| {
        vec![
            "client.py",
            "--endpoint",
            &endpoint,
            "--tls-root",
            &ca,
            "--token",
            &token,
            "--project",
            "grpc-test",
            "--prefix",
            prefix,
        ]
    };
    let dir = repo().join("tests/python");
    let outcome = run(&python(), &tls("tls"), &dir).await;
    outcome.assert_all_pass(&PYTHON_STEPS);
    assert!(stack.emulator.fields(DB, "tls_py/alpha").is_none());

    stack
        .emulator
        .put(
            DB,
            "secret_py/alpha",
            serde_json::json!({"n": {"integerValue": "1"}}),
        )
        .expect("seed");
    let mut refused = tls("secret");
    refused.extend(["--steps", "get", "--deny", "get"]);
    let outcome = run(&python(), &refused, &dir).await;
    outcome.assert_all_pass(&["get"]);
}

/// The clients' emulator mode pointed at `firegate dev` (plaintext h2c),
/// with a real token in place of `Bearer owner`; and `Bearer owner` itself,
/// which only the emulator accepts, refused by the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_in_emulator_mode_through_firegate_dev() {
    let (stack, _policies) = dev_stack(serde_json::json!({})).await;
    let token = grpc_token(&stack);
    let proxy = stack.proxy.to_string();
    let dir = repo().join("tests/python");
    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &proxy,
            "--token",
            &token,
            "--project",
            "grpc-test",
            "--prefix",
            "dev",
        ],
        &dir,
    )
    .await;
    outcome.assert_all_pass(&PYTHON_STEPS);
    assert!(stack.emulator.fields(DB, "dev_py/alpha").is_none());

    let outcome = run(
        &python(),
        &[
            "client.py",
            "--emulator",
            &proxy,
            "--project",
            "grpc-test",
            "--prefix",
            "owner",
            "--steps",
            "set",
        ],
        &dir,
    )
    .await;
    assert!(!outcome.success, "Bearer owner must not pass the gate");
    let error = outcome.lines[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Unauthenticated"), "{error}");
}

/// Node's default gRPC mode through `firegate dev` with a real token,
/// `onSnapshot` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_in_grpc_mode_through_firegate_dev() {
    let dir = repo().join("tests/sdk");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/sdk first (scripts/test does)"
    );
    let (stack, _policies) = dev_stack(serde_json::json!({})).await;
    let token = grpc_token(&stack);
    let port = stack.proxy.port().to_string();
    let outcome = run(
        Path::new("node"),
        &[
            "run.mjs",
            "--port",
            &port,
            "--project",
            "grpc-test",
            "--prefix",
            "gated",
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
