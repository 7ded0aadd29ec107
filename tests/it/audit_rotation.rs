//! The audit file under the operator's own tools (issue 33), through a
//! running `firegate serve`: the active file renamed (`mv`, logrotate's
//! `create`), removed (`rm`) or copied and truncated (`copytruncate`) under
//! load, with and without the SIGHUP a `postrotate` sends; its directory
//! gone for a while; and SIGTERM while the sink cannot write. In every case
//! the records written are the requests answered, and `audit verify` over
//! the files (given in any order) sees one unbroken chain.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

use support::config;
use support::issuer::{AUDIENCE, TestIssuer};
use support::proxy::DATABASE;
use support::{upstream, within};

/// The smallest rotation size firegate accepts: about ninety records.
const MAX_FILE_BYTES: u64 = 65536;

/// A test's directories: `logs/` holds the audit file.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("logs")).expect("mkdir logs");
        fs::create_dir(root.path().join("spill")).expect("mkdir spill");
        fs::create_dir(root.path().join("kept")).expect("mkdir kept");
        Dirs { root }
    }

    fn logs(&self) -> PathBuf {
        self.root.path().join("logs")
    }

    fn active(&self) -> PathBuf {
        self.logs().join("audit.log")
    }

    fn spill(&self) -> PathBuf {
        self.root.path().join("spill")
    }

    /// Where a test keeps what it took out of `logs/` (a removed file's
    /// content, read through a descriptor held open as a log shipper would).
    fn kept(&self) -> PathBuf {
        self.root.path().join("kept")
    }
}

/// The real binary, serving.
struct Served {
    child: tokio::process::Child,
    listen: String,
    admin: String,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
    token: String,
    _issuer: TestIssuer,
    _upstream: support::upstream::RecordingUpstream,
}

impl Served {
    /// `firegate serve` with `audit` as its audit section, the test issuer,
    /// an allow-all policy and a recording upstream.
    async fn start(dirs: &Dirs, audit: Value) -> Served {
        let issuer = TestIssuer::builder().start().await;
        let upstream = upstream().start().await;
        let policies = dirs.root.path().join("policies");
        fs::create_dir_all(&policies).expect("mkdir policies");
        fs::write(
            policies.join("all.yaml"),
            "rules:\n  - id: everything\n    match: /{rest=**}\n    allow: [read, write]\n    who: {authenticated: true}\n",
        )
        .expect("policy");
        let config_path = dirs.root.path().join("firegate.yaml");
        let yaml = config::plain(&upstream.url)
            .merge(json!({
                "upstream": {"credentials": {"source": "emulator"}},
                "authn": {"issuers": [config::oidc_issuer("test", &issuer.issuer, AUDIENCE).value()]},
                "policy": {"dir": policies},
                "server": {"limits": {"drain_timeout": "1s"}},
                "audit": audit,
            }))
            .yaml();
        fs::write(&config_path, yaml).expect("config");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dirs.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn firegate");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listen, admin) = within("the listening log line", async {
            while let Some(line) = lines.next_line().await.expect("stderr") {
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line.clone());
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let (Some(l), Some(a)) = (
                    v["fields"]["listen"].as_str(),
                    v["fields"]["admin"].as_str(),
                ) {
                    return (l.to_owned(), a.to_owned());
                }
            }
            panic!("firegate exited before listening: {log:#?}");
        })
        .await;
        let collected = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        let served = Served {
            child,
            listen,
            admin,
            log,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            token: issuer.token().sign(),
            _issuer: issuer,
            _upstream: upstream,
        };
        until("/readyz", || async { served.ready().await }).await;
        served
    }

    async fn ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin);
        self.http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }

    /// One request through the proxy; its status.
    async fn request(&self) -> u16 {
        let url = format!("http://{}/v1/{DATABASE}/documents/teams/a", self.listen);
        match self.http.get(url).bearer_auth(&self.token).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// A metric's value (0 when absent).
    async fn metric(&self, name: &str) -> u64 {
        let url = format!("http://{}/metrics", self.admin);
        let text = match self.http.get(url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    }

    async fn written(&self) -> u64 {
        self.metric("firegate_audit_records_written_total").await
    }

    async fn dropped(&self) -> u64 {
        self.metric("firegate_audit_records_dropped_total").await
    }

    async fn buffered(&self) -> u64 {
        self.metric("firegate_audit_buffered_records").await
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name}");
    }

    fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SIGTERM, and the exit (within the patience).
    async fn terminate(mut self) -> Vec<String> {
        self.signal("TERM");
        let status = within("exit after SIGTERM", self.child.wait())
            .await
            .expect("wait");
        assert!(status.success(), "exit status {status:?}");
        // The stderr reader ends with the process.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.log()
    }
}

/// Poll `check` until true, for up to the patience.
async fn until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Requests sent in a loop by a few clients, counted.
struct Load {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<u16>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(served: &Arc<Served>) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            pause: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicU64::new(0)),
            answered: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let tasks = (0..4)
            .map(|_| {
                let served = Arc::clone(served);
                let (stop, pause) = (Arc::clone(&load.stop), Arc::clone(&load.pause));
                let (in_flight, answered) =
                    (Arc::clone(&load.in_flight), Arc::clone(&load.answered));
                let failures = Arc::clone(&load.failures);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Acquire) {
                        if pause.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        in_flight.fetch_add(1, Ordering::AcqRel);
                        let status = served.request().await;
                        if status == 200 {
                            answered.fetch_add(1, Ordering::AcqRel);
                        } else {
                            failures
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(status);
                        }
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Stop sending and wait until no request is in flight.
    async fn pause(&self, served: &Served) {
        self.pause.store(true, Ordering::Release);
        until("the requests in flight", || async {
            self.in_flight.load(Ordering::Acquire) == 0
        })
        .await;
        let answered = self.answered();
        until("their records", || async {
            served.written().await >= answered
        })
        .await;
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::Release);
    }

    /// Stop; every request answered, and how many.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            within("a client to stop", task).await.expect("client task");
        }
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(failures.is_empty(), "requests failed: {failures:?}");
        self.answered.load(Ordering::Acquire)
    }
}

/// Every audit file in `dirs` (the logs, what was kept, spills).
fn audit_files(dirs: &Dirs) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [dirs.logs(), dirs.kept(), dirs.spill()] {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            files.push(entry.path());
        }
    }
    files.sort();
    files
}

fn records_in(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| fs::read_to_string(f).expect("read").lines().count() as u64)
        .sum()
}

struct Verdict {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn verify(files: &[PathBuf], extra: &[&str]) -> Verdict {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["audit", "verify"])
        .args(files)
        .args(extra)
        .output()
        .expect("run firegate audit verify");
    Verdict {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// All of `files`, given newest name first (not chain order), are one
/// chain of exactly `records` records from seq 0.
fn assert_one_chain(files: &[PathBuf], records: u64) {
    let mut shuffled = files.to_vec();
    shuffled.reverse();
    let verdict = verify(&shuffled, &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    let expected = format!(
        "ok: {records} records in {} files, seq 0..={}",
        files.len(),
        records - 1
    );
    assert!(verdict.stdout.contains(&expected), "{}", verdict.stdout);
    assert!(!verdict.stdout.contains("new chains"), "{}", verdict.stdout);
}

fn file_audit(dirs: &Dirs) -> Value {
    json!({"sink": "file", "path": dirs.active(), "max_file_bytes": MAX_FILE_BYTES})
}

/// What the operator's tool does to the active file.
#[derive(Debug, Clone, Copy)]
enum Tool {
    /// `mv audit.log audit.log.1`: a person, or logrotate's `create` mode
    /// (which also makes a new empty file when `create_new` is set).
    Move { create_new: bool },
    /// `rm audit.log`, while a log shipper still holds it open.
    Remove,
    /// logrotate's `copytruncate`: copy, then truncate in place.
    CopyTruncate,
}

/// Traffic flows; the tool acts on the active file (optionally followed by
/// `signal`, as a `postrotate` script would); traffic goes on past several
/// more rotations. Nothing fails, nothing drops, every answered request is
/// in exactly one record, and the files are one chain.
async fn rotate_under_load(tool: Tool, signal: Option<&str>) {
    let dirs = Dirs::new();
    let served = Arc::new(Served::start(&dirs, file_audit(&dirs)).await);
    let load = Load::start(&served);
    until("a few rotations", || async {
        served.written().await >= 300
    })
    .await;

    // Act on a file with room left, so that one not followed would fill up.
    until("a file half empty", || async {
        fs::metadata(dirs.active()).is_ok_and(|m| m.len() < MAX_FILE_BYTES / 2)
    })
    .await;
    let mut held = None;
    match tool {
        Tool::Move { create_new } => {
            fs::rename(dirs.active(), dirs.logs().join("audit.log.1")).expect("mv");
            if create_new {
                fs::write(dirs.active(), b"").expect("create");
            }
        }
        Tool::Remove => {
            held = Some(fs::File::open(dirs.active()).expect("hold open"));
            fs::remove_file(dirs.active()).expect("rm");
        }
        Tool::CopyTruncate => {
            // copytruncate loses what is appended between its copy and its
            // truncate (logrotate(8) says so); no tool can close that
            // window, so the test keeps traffic out of it.
            load.pause(&served).await;
            fs::copy(dirs.active(), dirs.logs().join("audit.log.1")).expect("cp");
            fs::OpenOptions::new()
                .write(true)
                .open(dirs.active())
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            load.resume();
        }
    }
    if let Some(signal) = signal {
        served.signal(signal);
    }
    let at_rotation = served.written().await;
    until("several rotations after the tool", || async {
        served.written().await >= at_rotation + 400
    })
    .await;
    let answered = load.stop().await;
    until("every record", || async {
        served.written().await == answered
    })
    .await;
    assert_eq!(served.dropped().await, 0);

    if let Some(mut held) = held {
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut held, &mut content).expect("read the removed file");
        fs::write(dirs.kept().join("audit.log.removed"), content).expect("keep");
    }
    match tool {
        Tool::Move { .. } => assert_left_behind(&dirs.logs().join("audit.log.1")),
        Tool::Remove => assert_left_behind(&dirs.kept().join("audit.log.removed")),
        Tool::CopyTruncate => {}
    }
    let files = audit_files(&dirs);
    assert_eq!(
        records_in(&files),
        answered,
        "records written = requests answered"
    );
    assert_one_chain(&files, answered);
    if let Tool::CopyTruncate = tool {
        assert_rotated_files_are_full(&dirs);
    }
    let log = Arc::into_inner(served)
        .expect("one owner")
        .terminate()
        .await;
    assert!(
        !log.iter().any(|l| l.contains("\"level\":\"ERROR\"")),
        "{log:#?}"
    );
}

/// The file the tool took away got no more than the lines in flight when
/// it acted: firegate went on in a new file, instead of filling this one.
fn assert_left_behind(file: &Path) {
    let size = fs::metadata(file).expect("metadata").len();
    assert!(
        size < MAX_FILE_BYTES * 3 / 4,
        "{} grew to {size} bytes after it was taken away",
        file.display()
    );
}

/// Every file firegate rotated by size was full: the next line would not
/// have fitted. After a `copytruncate` that holds only if firegate counted
/// from the truncated file's new size.
fn assert_rotated_files_are_full(dirs: &Dirs) {
    let longest = audit_files(dirs)
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(|l| l.len() as u64 + 1)
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    for file in audit_files(dirs) {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        // firegate's own names: audit.log.<timestamp>.
        if !name.starts_with("audit.log.2") {
            continue;
        }
        let size = fs::metadata(&file).expect("metadata").len();
        assert!(
            size + longest > MAX_FILE_BYTES,
            "{name} was rotated at {size} bytes, with room for more"
        );
    }
}

#[tokio::test]
async fn mv_of_the_active_file_under_load_is_followed() {
    rotate_under_load(Tool::Move { create_new: false }, None).await;
}

/// logrotate's default: rename, create an empty file, `postrotate` SIGHUP.
#[tokio::test]
async fn logrotate_create_with_a_sighup_is_followed() {
    rotate_under_load(Tool::Move { create_new: true }, Some("HUP")).await;
}

#[tokio::test]
async fn rm_of_the_active_file_under_load_is_followed() {
    rotate_under_load(Tool::Remove, None).await;
}

#[tokio::test]
async fn rm_of_the_active_file_then_sighup_is_followed() {
    rotate_under_load(Tool::Remove, Some("HUP")).await;
}

#[tokio::test]
async fn copytruncate_is_followed() {
    rotate_under_load(Tool::CopyTruncate, None).await;
}

#[tokio::test]
async fn copytruncate_then_sighup_is_followed() {
    rotate_under_load(Tool::CopyTruncate, Some("HUP")).await;
}

/// With no traffic at all, SIGUSR1 (nginx's reopen signal) and SIGHUP
/// make firegate create the file again at once; neither ends the process.
#[tokio::test]
async fn sigusr1_and_sighup_reopen_the_file_without_traffic() {
    let dirs = Dirs::new();
    let served = Served::start(&dirs, file_audit(&dirs)).await;
    assert_eq!(served.request().await, 200);
    until("the first record", || async { served.written().await == 1 }).await;
    for (n, signal) in ["USR1", "HUP"].into_iter().enumerate() {
        fs::rename(
            dirs.active(),
            dirs.logs().join(format!("audit.log.{}", n + 1)),
        )
        .expect("mv");
        served.signal(signal);
        until("the file made again", || async { dirs.active().exists() }).await;
        assert_eq!(served.request().await, 200, "alive after SIGUSR1/SIGHUP");
    }
    until("every record", || async { served.written().await == 3 }).await;
    let files = audit_files(&dirs);
    assert_eq!(records_in(&files), 3);
    assert_one_chain(&files, 3);
    served.terminate().await;
}

/// The directory is replaced by a file for a while (root ignores
/// permissions; this stops root too): the open file takes lines until it
/// is full, then records wait in memory, the replica stays ready, and once
/// the directory is back they are written in order.
#[tokio::test]
async fn records_wait_while_the_directory_is_gone_and_follow_when_it_is_back() {
    let dirs = Dirs::new();
    // A small queue: the buffer, not the queue, must absorb the outage.
    let audit = file_audit(&dirs)
        .as_object()
        .cloned()
        .map(|mut a| {
            a.insert("queue_capacity".into(), json!(1024));
            Value::Object(a)
        })
        .expect("object");
    let served = Arc::new(Served::start(&dirs, audit).await);
    let load = Load::start(&served);
    until("a few rotations", || async {
        served.written().await >= 300
    })
    .await;

    let away = dirs.root.path().join("logs.away");
    fs::rename(dirs.logs(), &away).expect("mv the directory away");
    fs::write(dirs.logs(), b"not a directory").expect("a file in its place");
    until("records waiting in memory", || async {
        served.buffered().await >= 300
    })
    .await;
    assert!(
        served.ready().await,
        "waiting records keep the replica ready"
    );
    fs::remove_file(dirs.logs()).expect("rm the file");
    fs::rename(&away, dirs.logs()).expect("the directory back");
    until("the buffer written", || async {
        served.buffered().await == 0
    })
    .await;
    let back = served.written().await;
    until("more records after", || async {
        served.written().await >= back + 200
    })
    .await;

    let answered = load.stop().await;
    until("every record", || async {
        served.written().await == answered
    })
    .await;
    assert_eq!(served.dropped().await, 0);
    let files = audit_files(&dirs);
    assert_eq!(
        records_in(&files),
        answered,
        "records written = requests answered"
    );
    assert_one_chain(&files, answered);
    let log = Arc::into_inner(served)
        .expect("one owner")
        .terminate()
        .await;
    let said = |words: &str| log.iter().any(|l| l.contains(words));
    assert!(said("cannot write to the audit sink"), "{log:#?}");
    assert!(said("the audit sink writes again"), "{log:#?}");
}

/// A replica whose audit directory was removed: `requests` more answered
/// requests, whose records wait in memory. Returns the records written
/// before the removal.
async fn lose_the_directory(dirs: &Dirs, served: &Served, requests: u64) -> u64 {
    for _ in 0..20 {
        assert_eq!(served.request().await, 200);
    }
    until("the first records", || async {
        served.written().await == 20
    })
    .await;
    fs::remove_dir_all(dirs.logs()).expect("rm -r logs");
    for _ in 0..requests {
        assert_eq!(served.request().await, 200);
    }
    until("the records waiting", || async {
        served.buffered().await == requests
    })
    .await;
    20
}

/// SIGTERM while the sink cannot write: the process still ends (drain
/// 1 s, flush deadline 2 s, here within the test's patience), the records
/// are spilled with their chain, the log says so, and the next start
/// continues the chain from the spill.
#[tokio::test]
async fn sigterm_with_an_unwritable_sink_ends_and_spills() {
    let dirs = Dirs::new();
    let audit = json!({
        "sink": "file",
        "path": dirs.active(),
        "flush_timeout": "2s",
        "spill_path": dirs.spill(),
    });
    let served = Served::start(&dirs, audit.clone()).await;
    let before = lose_the_directory(&dirs, &served, 30).await;
    let log = served.terminate().await;
    let spilled = log
        .iter()
        .rev()
        .find(|l| l.contains("were spilled"))
        .unwrap_or_else(|| panic!("no spill line: {log:#?}"));
    let line: Value = serde_json::from_str(spilled).expect("json log line");
    assert_eq!(line["fields"]["spilled"], 30, "{spilled}");
    let spills = audit_files(&dirs);
    assert_eq!(spills.len(), 1, "{spills:?}");
    assert_eq!(records_in(&spills), 30);
    let verdict = verify(&spills, &["--allow-partial"]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict
            .stdout
            .contains(&format!("seq {before}..={}", before + 29)),
        "{}",
        verdict.stdout
    );

    // Back with a directory: the chain goes on from the spill.
    fs::create_dir(dirs.logs()).expect("mkdir logs");
    let served = Served::start(&dirs, audit).await;
    for _ in 0..5 {
        assert_eq!(served.request().await, 200);
    }
    until("the new records", || async { served.written().await == 5 }).await;
    served.terminate().await;
    let files = audit_files(&dirs);
    let verdict = verify(&files, &["--allow-partial"]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict.stdout.contains(&format!(
            "ok: 35 records in {} files, seq {before}..={}",
            files.len(),
            before + 34
        )),
        "{}",
        verdict.stdout
    );
    assert!(!verdict.stdout.contains("new chains"), "{}", verdict.stdout);
}

/// The same without a spill path: the process ends all the same, and its
/// log counts the records it could not write.
#[tokio::test]
async fn sigterm_with_an_unwritable_sink_ends_and_counts_what_was_not_written() {
    let dirs = Dirs::new();
    let audit = json!({"sink": "file", "path": dirs.active(), "flush_timeout": "2s"});
    let served = Served::start(&dirs, audit).await;
    lose_the_directory(&dirs, &served, 30).await;
    let log = served.terminate().await;
    let unwritten = log
        .iter()
        .rev()
        .find(|l| l.contains("could not be written before the flush deadline"))
        .unwrap_or_else(|| panic!("no count of unwritten records: {log:#?}"));
    let line: Value = serde_json::from_str(unwritten).expect("json log line");
    assert_eq!(line["fields"]["unwritten"], 30, "{unwritten}");
    // And the process's last line says it, where an operator looks first.
    let last = log
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON line: {log:#?}"));
    assert_eq!(last["fields"]["unwritten"], 30, "{last}");
    assert!(
        last["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("drained; exiting")),
        "{last}"
    );
}

/// `audit verify` names a gap by the records on either side, whatever the
/// files' names and order.
#[tokio::test]
async fn verify_names_a_gap_between_rotated_files_by_the_records_on_either_side() {
    let dirs = Dirs::new();
    let served = Served::start(&dirs, file_audit(&dirs)).await;
    for _ in 0..400 {
        assert_eq!(served.request().await, 200);
    }
    until("every record", || async { served.written().await == 400 }).await;
    served.terminate().await;
    // As logrotate would name them: .1 newest.
    let mut rotated: Vec<PathBuf> = audit_files(&dirs)
        .into_iter()
        .filter(|f| f != &dirs.active())
        .collect();
    rotated.sort();
    assert!(rotated.len() >= 3, "{rotated:?}");
    let count = rotated.len();
    let mut renamed = Vec::new();
    for (i, file) in rotated.iter().enumerate() {
        let to = dirs.logs().join(format!("audit.log.{}", count - i));
        fs::rename(file, &to).expect("rename");
        renamed.push(to);
    }
    let mut all = renamed.clone();
    all.push(dirs.active());
    assert_one_chain(&all, 400);

    let left_out = renamed.remove(1);
    let lines = |p: &Path| fs::read_to_string(p).expect("read").lines().count() as u64;
    let first_missing = lines(&renamed[0]);
    let after = first_missing + lines(&left_out);
    let mut given = renamed.clone();
    given.push(dirs.active());
    given.reverse();
    let verdict = verify(&given, &[]);
    assert!(
        !verdict.ok,
        "a missing file went unnoticed: {}",
        verdict.stdout
    );
    let expected = format!(
        "{}:1: record seq {after} where seq {first_missing} was due: records are missing (seq {first_missing}..={}, between seq {} at {}:{} and seq {after} here)",
        renamed[1].display(),
        after - 1,
        first_missing - 1,
        renamed[0].display(),
        first_missing,
    );
    assert!(
        verdict.stderr.contains(&expected),
        "{}\nwanted: {expected}",
        verdict.stderr
    );
}

/// The shipped stanza (`deploy/logrotate/firegate`), run by the real
/// logrotate(8) three times under load, its postrotate signal aimed at this
/// firegate: every record is in one chain across `audit.log`, `.1` and the
/// `.2.gz`, `.3.gz` decompressed as an operator would.
#[tokio::test]
#[ignore = "runs logrotate(8), which must be on PATH"]
async fn the_shipped_logrotate_stanza_rotates_without_loss() {
    let dirs = Dirs::new();
    // logrotate does the rotating; firegate's own is out of the way.
    let audit = json!({"sink": "file", "path": dirs.active(), "max_file_bytes": 1u64 << 30});
    let served = Arc::new(Served::start(&dirs, audit).await);
    let pid = served.child.id().expect("running");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/logrotate/firegate");
    let stanza: String = fs::read_to_string(shipped)
        .expect("the shipped stanza")
        .lines()
        .map(|line| {
            let line = line.replace(
                "/var/log/firegate/audit.log",
                &dirs.active().display().to_string(),
            );
            if line.contains("systemctl kill") {
                format!("        kill -USR1 {pid}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf = dirs.root.path().join("logrotate.conf");
    fs::write(&conf, stanza + "\n").expect("conf");
    let state = dirs.root.path().join("logrotate.state");

    let load = Load::start(&served);
    for round in 1..=3 {
        until("records to rotate", || async {
            served.written().await >= round * 200
        })
        .await;
        let out = std::process::Command::new("logrotate")
            .args(["--force", "--verbose", "--state"])
            .arg(&state)
            .arg(&conf)
            .output()
            .expect("run logrotate");
        assert!(
            out.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let at_last = served.written().await;
    until("records after the last rotation", || async {
        served.written().await >= at_last + 100
    })
    .await;
    let answered = load.stop().await;
    until("every record", || async {
        served.written().await == answered
    })
    .await;
    assert_eq!(served.dropped().await, 0);
    for gz in audit_files(&dirs)
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "gz"))
    {
        let status = std::process::Command::new("gzip")
            .arg("-dk")
            .arg(gz)
            .status()
            .expect("gzip");
        assert!(status.success());
    }
    let files: Vec<PathBuf> = audit_files(&dirs)
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "gz"))
        .collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    );
    assert_eq!(
        records_in(&files),
        answered,
        "records written = requests answered"
    );
    assert_one_chain(&files, answered);
    Arc::into_inner(served)
        .expect("one owner")
        .terminate()
        .await;
}

/// The Deployment's grace period covers its preStop pause, the drain and
/// the audit flush the ConfigMap asks for: a replica whose sink cannot
/// write still ends, and reports, before the kubelet's SIGKILL.
#[test]
fn kubernetes_grace_period_covers_the_drain_and_the_audit_flush() {
    use serde::Deserialize as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let read = |name: &str| fs::read_to_string(root.join(name)).expect("manifest");
    let deployment: Value = serde_yaml_ng::from_str(&read("deployment.yaml")).expect("yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let config_maps = read("configmap.yaml");
    let config_map = serde_yaml_ng::Deserializer::from_str(&config_maps)
        .map(|doc| Value::deserialize(doc).expect("yaml"))
        .find(|doc| doc["metadata"]["name"] == "firegate")
        .expect("the firegate ConfigMap");
    let config: Value = serde_yaml_ng::from_str(
        config_map["data"]["firegate.yaml"]
            .as_str()
            .expect("firegate.yaml"),
    )
    .expect("yaml");
    let seconds = |value: &Value| {
        let text = value.as_str().expect("a duration");
        humantime::parse_duration(text).expect("duration").as_secs()
    };
    let drain = seconds(&config["server"]["limits"]["drain_timeout"]);
    let flush = seconds(&config["audit"]["flush_timeout"]);
    assert!(
        grace >= pre_stop + drain + flush + 5,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain} + audit flush {flush} + 5"
    );
}
