//! Three `firegate serve` processes, each on its own ports, sharing one
//! `firegate emulator` process as the access store: a grant approved on one
//! is used on another, revoked on a third; racing reviews; a replica
//! restarted mid-way; the store stopped.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::support::config::{self};
use crate::support::issuer::{AUDIENCE, TestIssuer};
use crate::support::within;

const DB: &str = "projects/p/databases/(default)";
const API: &str = "/firegate/v1/access/requests";

const POLICY: &str = r#"
rules:
  - id: read-all
    match: /{rest=**}
    allow: [get]
    who: {authenticated: true}
requestable:
  - id: ops
    match: /ops/{rest=**}
    actions: [write]
    who: {groups: [eng]}
    approvers: {who: {groups: [admins]}, min: 1}
    max_duration: 1h
  - id: pair
    match: /pair/{rest=**}
    actions: [write]
    who: {groups: [eng]}
    approvers: {who: {groups: [admins]}, min: 2}
    max_duration: 1h
"#;

/// One `firegate serve` process.
struct Replica {
    child: Child,
    listen: String,
    admin: String,
}

struct Fleet {
    issuer: TestIssuer,
    emulator: Option<Child>,
    emulator_url: String,
    dir: tempfile::TempDir,
    replicas: Vec<Option<Replica>>,
    http: reqwest::Client,
    /// What every replica's webhook delivered.
    hooks: Arc<Mutex<Vec<Value>>>,
    receiver: crate::support::fake::FakeServer,
}

/// Read `child`'s stderr until `found` picks a value out of a line; the
/// rest of its stderr is drained in the background.
async fn watch<T>(child: &mut Child, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    let value = within(what, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(v) = found(&line) {
                return v;
            }
            log.push(line);
        }
        panic!("exited before {what}: {log:#?}");
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    value
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let issuer = TestIssuer::builder().start().await;
        let mut emulator = Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["emulator", "--listen", "127.0.0.1:0"])
            // Firestore's heartbeat on an idle Listen stream, sooner.
            .args(["--listen-heartbeat", "500ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("firegate emulator runs");
        let emulator_url = watch(&mut emulator, "the emulator's address", |line| {
            let rest = line.split_once(" on http://")?.1;
            Some(format!("http://{}", rest.split_whitespace().next()?))
        })
        .await;
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
        std::fs::write(dir.path().join("hook.key"), "an-hmac-key-of-enough-bytes").unwrap();
        let hooks: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = Arc::clone(&hooks);
        let receiver = crate::support::fake::server()
            .route(http::Method::POST, "/hook", move |r| {
                let event = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                seen.lock().unwrap().push(event);
                "ok"
            })
            .start()
            .await;
        let mut fleet = Fleet {
            hooks,
            receiver,
            issuer,
            emulator: Some(emulator),
            emulator_url,
            dir,
            replicas: Vec::new(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let mut started = Vec::new();
        for i in 0..n {
            started.push(fleet.replica(i));
        }
        for replica in futures_util::future::join_all(started).await {
            fleet.replicas.push(Some(replica));
        }
        fleet
    }

    /// Start replica `i`: `firegate serve` with its own config and audit
    /// log, on free ports; returned once it has read the store.
    async fn replica(&self, i: usize) -> Replica {
        let yaml = config::plain(&self.emulator_url).merge(json!({
            "upstream": {"credentials": {"source": "emulator"}, "databases": [DB]},
            "authn": {"issuers": [config::oidc_issuer("test", &self.issuer.issuer, AUDIENCE).value()]},
            "policy": {"dir": self.dir.path().join("policies"), "watch": false},
            "audit": {"sink": "file", "path": self.dir.path().join(format!("audit-{i}.log"))},
            "access": {
                "store": {"database": "projects/p/databases/firegate", "collection": "access"},
                "max_staleness": "2s",
                "watchdog": "2s",
                "notify": {"webhook": {
                    "url": format!("{}/hook", self.receiver.url()),
                    "secret_file": self.dir.path().join("hook.key"),
                }},
            },
        }));
        let file = self.dir.path().join(format!("replica-{i}.yaml"));
        std::fs::write(&file, yaml.yaml()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["serve", "--config"])
            .arg(&file)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("firegate serve runs");
        let (listen, admin) = watch(&mut child, "the listening log line", |line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let fields = &v["fields"];
            Some((
                fields["listen"].as_str()?.to_owned(),
                fields["admin"].as_str()?.to_owned(),
            ))
        })
        .await;
        let replica = Replica {
            child,
            listen,
            admin,
        };
        within("the replica to read the store", async {
            while self.readiness(&replica).await["checks"]["access_store"]["ready"] != true {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        replica
    }

    async fn readiness(&self, replica: &Replica) -> Value {
        let url = format!("http://{}/readyz", replica.admin);
        match self.http.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    fn url(&self, i: usize) -> String {
        let replica = self.replicas[i].as_ref().expect("running");
        format!("http://{}", replica.listen)
    }

    fn token(&self, subject: &str, groups: &[&str]) -> String {
        self.issuer
            .token()
            .claim("sub", json!(subject))
            .claim("groups", json!(groups))
            .sign()
    }

    async fn call(
        &self,
        i: usize,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url(i)))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = within("a replica", req.send()).await.expect("answer");
        let status = response.status();
        let headers = response.headers().clone();
        let mut value: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(retry) = headers.get("retry-after") {
            value["retry-after"] = json!(retry.to_str().unwrap_or_default());
        }
        (status, value)
    }

    async fn ask(&self, i: usize, token: &str, path: &str) -> String {
        let body = json!({"path": path, "actions": ["write"], "duration": "30m", "reason": "x"});
        let (status, req) = self.call(i, token, "POST", API, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{req}");
        req["id"].as_str().unwrap().to_string()
    }

    async fn act(&self, i: usize, token: &str, id: &str, verb: &str) -> (StatusCode, Value) {
        self.call(
            i,
            token,
            "POST",
            &format!("{API}/{id}:{verb}"),
            Some(json!({"reason": "r"})),
        )
        .await
    }

    async fn write(&self, i: usize, token: &str, path: &str) -> StatusCode {
        let body = json!({"fields": {"v": {"stringValue": "1"}}});
        self.call(
            i,
            token,
            "PATCH",
            &format!("/v1/{DB}/documents{path}"),
            Some(body),
        )
        .await
        .0
    }

    /// How long until `want` holds on replica `i`, polling every 10 ms.
    async fn until(&self, i: usize, token: &str, path: &str, want: StatusCode) -> Duration {
        let start = Instant::now();
        within("propagation", async {
            while self.write(i, token, path).await != want {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        start.elapsed()
    }

    /// Request `id` as replica `i` shows it once it is `state`, or after
    /// 3 s (a state that never comes is the caller's assertion to fail).
    async fn settled(&self, i: usize, token: &str, id: &str, state: &str) -> Value {
        let start = Instant::now();
        loop {
            let (_, shown) = self
                .call(i, token, "GET", &format!("{API}/{id}"), None)
                .await;
            if shown["state"] == state || start.elapsed() > Duration::from_secs(3) {
                return shown;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        for mut replica in self.replicas.drain(..).flatten() {
            let _ = replica.child.kill().await;
        }
        if let Some(mut e) = self.emulator.take() {
            let _ = e.kill().await;
        }
        self.receiver.join().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_through_the_store() {
    let mut fleet = Fleet::start(3).await;
    let eve = fleet.token("eve", &["eng"]);
    let (ann, bob) = (
        fleet.token("ann", &["admins"]),
        fleet.token("bob", &["admins"]),
    );

    // Request on A, approve on B, use on C; revoke on C, refused on A.
    let mut granted = Vec::new();
    let mut revoked = Vec::new();
    for round in 0..10 {
        let path = format!("/ops/r{round}");
        assert_eq!(fleet.write(2, &eve, &path).await, StatusCode::FORBIDDEN);
        let id = fleet.ask(0, &eve, "/ops/**").await;
        let (status, body) = fleet.act(1, &ann, &id, "approve").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        granted.push(fleet.until(2, &eve, &path, StatusCode::OK).await);
        let (status, _) = fleet.act(2, &ann, &id, "revoke").await;
        assert_eq!(status, StatusCode::OK);
        revoked.push(fleet.until(0, &eve, &path, StatusCode::FORBIDDEN).await);
    }
    granted.sort();
    revoked.sort();
    eprintln!(
        "propagation over 10 rounds: approve on B -> allowed on C: median {:?}, max {:?}; revoke on C -> refused on A: median {:?}, max {:?}",
        granted[5], granted[9], revoked[5], revoked[9]
    );
    assert!(granted[9] < Duration::from_secs(2), "{granted:?}");
    assert!(revoked[9] < Duration::from_secs(2), "{revoked:?}");

    // Two distinct approvers racing on two replicas: both count, once each.
    // Raced five times: a lost update (an approval written over the other
    // from the same version) would leave one pending for ever.
    for _ in 0..5 {
        let id = fleet.ask(0, &eve, "/pair/**").await;
        let (a, b) = tokio::join!(
            fleet.act(0, &ann, &id, "approve"),
            fleet.act(1, &bob, &id, "approve")
        );
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
        let shown = fleet.settled(2, &eve, &id, "active").await;
        assert_eq!(shown["state"], "active", "both approvals count: {shown}");
        assert_eq!(shown["approvals"], 2, "{shown}");
        assert_eq!(fleet.act(2, &ann, &id, "revoke").await.0, StatusCode::OK);
    }
    // The same approver racing with itself counts once.
    let id = fleet.ask(0, &eve, "/pair/**").await;
    let (a, b) = tokio::join!(
        fleet.act(1, &ann, &id, "approve"),
        fleet.act(2, &ann, &id, "approve")
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a.1["state"], "pending");
    assert_eq!(b.1["state"], "pending", "one approver, min 2");
    assert_eq!(fleet.act(0, &ann, &id, "approve").await.1["approvals"], 1);

    // An approval racing a revocation never resurrects the grant: two
    // approvals (the second activates it) race a revocation, five times;
    // whenever the revocation was accepted, the request ends revoked.
    let carol = fleet.token("carol", &["admins"]);
    for round in 0..5 {
        let id = fleet.ask(0, &eve, "/pair/**").await;
        let (first, second, revoke) = tokio::join!(
            fleet.act(0, &ann, &id, "approve"),
            fleet.act(1, &carol, &id, "approve"),
            async {
                // Until the grant is active (409 while pending), for 3 s:
                // a lost approval leaves it pending.
                let start = Instant::now();
                loop {
                    let revoke = fleet.act(2, &bob, &id, "revoke").await;
                    if revoke.0 != StatusCode::CONFLICT || start.elapsed() > Duration::from_secs(3)
                    {
                        break revoke;
                    }
                }
            }
        );
        assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
        assert_eq!(revoke.0, StatusCode::OK, "{revoke:?}");
        let shown = fleet.settled(round % 3, &eve, &id, "revoked").await;
        assert_eq!(shown["state"], "revoked", "never resurrected: {shown}");
        fleet
            .until(round % 3, &eve, "/pair/race", StatusCode::FORBIDDEN)
            .await;
    }

    // A grant expiring is recorded once in the store and sent once, by
    // whichever replica's compare-and-set landed first.
    let body = json!({"path": "/ops/**", "actions": ["write"], "duration": "1s", "reason": "x"});
    let (_, req) = fleet.call(0, &eve, "POST", API, Some(body)).await;
    let id = req["id"].as_str().expect("id").to_string();
    assert_eq!(fleet.act(1, &ann, &id, "approve").await.0, StatusCode::OK);
    let expired = || {
        fleet
            .hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "expired" && e["id"] == id.as_str())
            .count()
    };
    within("the expired event", async {
        while expired() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(expired(), 1, "one `expired` event from the fleet");

    // A replica restarted mid-way loads the state: an active grant works
    // on it again.
    let id = fleet.ask(0, &eve, "/ops/**").await;
    fleet.act(0, &ann, &id, "approve").await;
    let mut old = fleet.replicas[2].take().expect("running");
    let _ = old.child.kill().await;
    let restarted = fleet.replica(2).await;
    fleet.replicas[2] = Some(restarted);
    fleet
        .until(2, &eve, "/ops/after-restart", StatusCode::OK)
        .await;

    // The store goes away: reviews 503 with Retry-After; the known grant
    // still decides (its write is not refused by policy, though the same
    // emulator serving the data is gone too); readiness reports the age.
    let pending = fleet.ask(1, &eve, "/ops/**").await;
    if let Some(mut e) = fleet.emulator.take() {
        let _ = e.kill().await;
    }
    let (status, body) = fleet.act(1, &ann, &pending, "approve").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["retry-after"], "5");
    let (status, _) = fleet
        .call(
            1,
            &eve,
            "POST",
            API,
            Some(json!({"path": "/ops/**", "actions": ["write"], "duration": "1m", "reason": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let still = fleet.write(2, &eve, "/ops/store-down").await;
    assert_ne!(still, StatusCode::FORBIDDEN, "the known grant still holds");
    let replica = fleet.replicas[2].as_ref().unwrap();
    within("readiness to report the stale store", async {
        loop {
            let ready = fleet.readiness(replica).await;
            let check = &ready["checks"]["access_store"];
            assert!(check.is_object(), "access_store check: {ready}");
            if check["ready"] == false {
                assert_eq!(ready["ready"], true, "not blocking: {ready}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    fleet.shutdown().await;
}
