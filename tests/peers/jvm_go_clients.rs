//! The official Java (`google-cloud-firestore`) and Go
//! (`cloud.google.com/go/firestore`) clients, both gRPC, against the emulator
//! directly; then through `firegate dev` both ways a caller connects: TLS
//! with a real token from the dev issuer, and the clients' emulator mode
//! (`FIRESTORE_EMULATOR_HOST`, h2c) with the caller's token in place of the
//! `Bearer owner` they send there; and a read the policy refuses, raised as
//! `PERMISSION_DENIED`. The drivers are `tests/java` and `tests/go`, built by
//! `scripts/java-peers` and `scripts/go-peers`.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use support::TestPki;

const PROJECT: &str = "peers-test";
const DB: &str = "projects/peers-test/databases/(default)";

/// The steps of both drivers, in order.
const STEPS: [&str; 12] = [
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy)]
enum Peer {
    Java,
    Go,
}

impl Peer {
    /// The collection suffix the driver writes under (`<prefix>_java`).
    fn name(self) -> &'static str {
        match self {
            Peer::Java => "java",
            Peer::Go => "go",
        }
    }

    fn command(self) -> Command {
        match self {
            Peer::Java => {
                let built = repo().join("target/java-peers");
                let classpath = std::fs::read_to_string(built.join("classpath.txt"))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{}/classpath.txt: {e}; scripts/java-peers builds it",
                            built.display()
                        )
                    });
                let mut command = Command::new("java");
                command
                    .arg("-cp")
                    .arg(format!(
                        "{}:{}",
                        built.join("classes").display(),
                        classpath.trim()
                    ))
                    .arg("firegate.Client");
                command
            }
            Peer::Go => {
                let binary = repo().join("target/go-peers/goclient");
                assert!(
                    binary.is_file(),
                    "no {}: scripts/go-peers builds it from tests/go",
                    binary.display()
                );
                Command::new(binary)
            }
        }
    }
}

/// Where the driver connects.
enum Via<'a> {
    /// Emulator mode: plaintext to this host:port.
    EmulatorMode(String),
    /// TLS to this host:port, trusting this CA.
    Tls(String, &'a Path),
}

struct Outcome {
    success: bool,
    lines: Vec<Value>,
    stderr: String,
}

impl Outcome {
    /// Every one of `steps` reported, in order, and passed.
    fn assert_all_pass(&self, steps: &[&str]) {
        let reported: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l["step"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(reported, steps, "stderr:\n{}", self.stderr);
        let failed: Vec<String> = self
            .lines
            .iter()
            .filter(|l| l["ok"] != true)
            .map(Value::to_string)
            .collect();
        assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
        assert!(self.success, "the driver failed: {}", self.stderr);
    }
}

async fn run(peer: Peer, via: &Via<'_>, token: Option<&str>, args: &[&str]) -> Outcome {
    let mut command = peer.command();
    command.args(["--project", PROJECT]).args(args);
    match via {
        Via::EmulatorMode(host) => {
            command.env("FIRESTORE_EMULATOR_HOST", host);
        }
        Via::Tls(endpoint, ca) => {
            command
                .env_remove("FIRESTORE_EMULATOR_HOST")
                .arg("--endpoint")
                .arg(endpoint)
                .arg("--tls-root")
                .arg(ca);
        }
    }
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let child = command
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("the {} driver starts: {e}", peer.name()));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the driver finishes")
        .expect("the driver runs");
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

/// What the steps leave behind: nothing.
fn assert_cleaned_up(emulator: &firegate::emulator::Emulator, peer: Peer, prefix: &str) {
    for doc in ["alpha", "delta", "epsilon"] {
        let path = format!("{prefix}_{}/{doc}", peer.name());
        assert!(emulator.fields(DB, &path).is_none(), "{path} left");
    }
}

async fn against_the_emulator(peer: Peer) {
    let running = emulator().await;
    let via = Via::EmulatorMode(running.local_addr().to_string());
    let outcome = run(peer, &via, None, &["--prefix", "direct"]).await;
    outcome.assert_all_pass(&STEPS);
    assert_cleaned_up(running.emulator(), peer, "direct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_client_works_against_the_emulator_listeners_included() {
    against_the_emulator(Peer::Java).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_works_against_the_emulator_listeners_included() {
    against_the_emulator(Peer::Go).await;
}

/// The drivers' expectations can fail: a read they are told will be
/// refused is not, and the run says so.
async fn reports_a_refusal_that_did_not_happen(peer: Peer) {
    let running = emulator().await;
    let via = Via::EmulatorMode(running.local_addr().to_string());
    let args = ["--prefix", "deny", "--steps", "set,get", "--deny", "get"];
    let outcome = run(peer, &via, None, &args).await;
    assert!(!outcome.success, "a refusal that did not happen must fail");
    assert_eq!(outcome.lines[0]["ok"], true, "{:?}", outcome.lines);
    assert_eq!(outcome.lines[1]["ok"], false, "{:?}", outcome.lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_driver_reports_a_refusal_that_did_not_happen() {
    reports_a_refusal_that_did_not_happen(Peer::Java).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_driver_reports_a_refusal_that_did_not_happen() {
    reports_a_refusal_that_did_not_happen(Peer::Go).await;
}

/// The policy of the through-firegate runs: the `peers` group may read and
/// write everything, except `get` in the `secret_*` collections.
const POLICY: &str = r#"rules:
  - id: peers
    match: /{rest=**}
    allow: [read, write]
    who: {groups: [peers]}
  - id: no-java-secrets
    match: /secret_java/{doc}
    deny: [get]
    who: {any: true}
  - id: no-go-secrets
    match: /secret_go/{doc}
    deny: [get]
    who: {any: true}
"#;

/// `firegate dev` with [`POLICY`], serving the tests' database, with
/// `server` merged into its server config.
async fn dev_stack(server: Value) -> (firegate::dev::Stack, tempfile::TempDir) {
    let policies = tempfile::tempdir().expect("tempdir");
    std::fs::write(policies.path().join("peers.yaml"), POLICY).expect("policy");
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

fn token(stack: &firegate::dev::Stack) -> String {
    stack
        .token(&firegate::dev::Identity {
            subject: "svc:peers-tests".into(),
            email: "peers@example.com".into(),
            groups: vec!["peers".into()],
        })
        .expect("token")
}

/// A deployment's path: TLS to firegate trusting the test CA, a real token
/// as call credentials; then a read the policy refuses, which the client
/// raises as `PERMISSION_DENIED`.
async fn through_firegate_over_tls(peer: Peer) {
    let pki = TestPki::new();
    let (stack, _policies) = dev_stack(serde_json::json!({
        "plain_http": false,
        "tls": {"cert": pki.cert_path, "key": pki.key_path},
    }))
    .await;
    let token = token(&stack);
    // By address: the Java client takes any host naming `localhost` for an
    // emulator and drops TLS and credentials (the certificate names both).
    let via = Via::Tls(format!("127.0.0.1:{}", stack.proxy.port()), &pki.ca_path);
    let outcome = run(peer, &via, Some(&token), &["--prefix", "tls"]).await;
    outcome.assert_all_pass(&STEPS);
    assert_cleaned_up(&stack.emulator, peer, "tls");

    let secret = format!("secret_{}/alpha", peer.name());
    let seed = serde_json::json!({"n": {"integerValue": "1"}});
    stack.emulator.put(DB, &secret, seed).expect("seed");
    let args = ["--prefix", "secret", "--steps", "get", "--deny", "get"];
    let outcome = run(peer, &via, Some(&token), &args).await;
    outcome.assert_all_pass(&["get"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_client_through_firegate_over_tls_with_a_real_token() {
    through_firegate_over_tls(Peer::Java).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_through_firegate_over_tls_with_a_real_token() {
    through_firegate_over_tls(Peer::Go).await;
}

/// The clients' emulator mode pointed at `firegate dev` (plaintext h2c),
/// with a real token in place of `Bearer owner`; and `Bearer owner` itself,
/// which only the emulator accepts, refused by the gate.
async fn emulator_mode_through_firegate_dev(peer: Peer) {
    let (stack, _policies) = dev_stack(serde_json::json!({})).await;
    let token = token(&stack);
    let via = Via::EmulatorMode(stack.proxy.to_string());
    let outcome = run(peer, &via, Some(&token), &["--prefix", "dev"]).await;
    outcome.assert_all_pass(&STEPS);
    assert_cleaned_up(&stack.emulator, peer, "dev");

    let outcome = run(peer, &via, None, &["--prefix", "owner", "--steps", "set"]).await;
    assert!(!outcome.success, "Bearer owner must not pass the gate");
    assert_eq!(
        outcome.lines[0]["code"], "UNAUTHENTICATED",
        "{:?}",
        outcome.lines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_client_in_emulator_mode_through_firegate_dev() {
    emulator_mode_through_firegate_dev(Peer::Java).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_in_emulator_mode_through_firegate_dev() {
    emulator_mode_through_firegate_dev(Peer::Go).await;
}
