//! The audit trail end to end: records written through the `Auditor` to
//! real files, checked by `firegate audit verify` (the binary) after the
//! edits an attacker or an accident would make.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use firegate::audit::{
    AuditConfig, AuditError, AuditPrincipal, AuditRecord, AuditSettings, AuditTarget, Auditor,
    MemorySink, Outcome, SinkKind, SinkSettings, canonical,
};
use firegate::config::ConfigErrors;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};

const KEY: &str = "an-audit-key-of-32-bytes-length!";

fn record(n: u64) -> AuditRecord {
    AuditRecord {
        access: None,
        time: "2026-11-28T13:00:00Z".into(),
        request_id: format!("req-{n}"),
        client_ip: "203.0.113.7".into(),
        tls: Some("TLSv1.3".into()),
        http_version: "HTTP/1.1".into(),
        principal: Some(AuditPrincipal::new(
            "https://issuer.example",
            &format!("user:default/u{n}"),
            None,
            &["group:default/team-a"],
        )),
        http_method: "POST".into(),
        rpc: Some("commit".into()),
        database: Some("projects/p/databases/(default)".into()),
        targets: vec![AuditTarget {
            resource: format!("/teams/a/deployments/d{n}").into(),
            access: "update".into(),
            allowed: true,
            rule: Some("team-deployments".into()),
            why: Some("allowed".into()),
            grant: None,
        }],
        targets_summary: None,
        decision: Outcome::Allow,
        reason: None,
        upstream_account: Some("writer@p.iam.gserviceaccount.com".into()),
        shadow_decision: None,
        shadow_rule: None,
        upstream_status: Some(200),
        upstream_grpc_status: None,
        status: 200,
        bytes_in: 120,
        bytes_out: 340,
        duration_ms: 4.5,
        client_disconnected: false,
        traceparent: None,
        request_tags: Vec::new(),
        stored_reads: 0,
        masked_fields: 0,
    }
}

fn file_config(path: &Path) -> AuditConfig {
    AuditConfig {
        sink: SinkKind::File,
        path: Some(path.to_owned()),
        ..AuditConfig::default()
    }
}

/// The settings `config` validates to.
fn settings(config: AuditConfig) -> AuditSettings {
    ConfigErrors::collect(|errors| config.validate(errors)).unwrap_or_else(|e| panic!("{e}"))
}

/// Write records `range` through a fresh `Auditor`, and wait for them.
async fn write_records(config: &AuditConfig, range: std::ops::Range<u64>) {
    write_with(&settings(config.clone()), range).await;
}

async fn write_with(settings: &AuditSettings, range: std::ops::Range<u64>) {
    let auditor = Auditor::new(settings, &mut Registry::default())
        .await
        .expect("auditor");
    for n in range {
        auditor.record(record(n));
    }
    auditor.flush().await;
}

async fn audit_file(dir: &Path, records: u64) -> PathBuf {
    let path = dir.join("audit.log");
    write_records(&file_config(&path), 0..records).await;
    path
}

struct Verdict {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn verify(files: &[&Path], extra: &[&str]) -> Verdict {
    let output = Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["audit", "verify"])
        .args(files)
        .args(extra)
        .output()
        .expect("run firegate");
    Verdict {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_broken_at(verdict: &Verdict, path: &Path, line: usize, words: &str) {
    assert!(!verdict.ok, "verify passed: {}", verdict.stdout);
    let at = format!("{}:{line}: ", path.display());
    assert!(
        verdict.stderr.contains(&at) && verdict.stderr.contains(words),
        "expected `{at}` and `{words}` in: {}",
        verdict.stderr
    );
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[tokio::test]
async fn verify_passes_an_untouched_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 5).await;
    assert_eq!(lines(&path).len(), 5);
    let verdict = verify(&[&path], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict
            .stdout
            .contains("ok: 5 records in 1 files, seq 0..=4"),
        "{}",
        verdict.stdout
    );
}

/// Every optional field set, a gRPC call's included (its `grpc-status`
/// and stored reads): the line the writer seals is the one `verify` checks.
#[tokio::test]
async fn a_grpc_record_with_every_field_set_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    let auditor = Auditor::new(&settings(file_config(&path)), &mut Registry::default())
        .await
        .expect("auditor");
    for n in 0..3 {
        let mut r = record(n);
        r.http_version = "HTTP/2".into();
        r.rpc = Some("batch_get_documents".into());
        r.upstream_grpc_status = Some(n as u16);
        r.stored_reads = n + 1;
        r.shadow_decision = Some(Outcome::Deny);
        r.shadow_rule = Some("tighter".into());
        r.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        r.request_tags = vec!["nightly".into()];
        r.reason = Some("upstream_status".into());
        auditor.record(r);
    }
    auditor.flush().await;
    assert!(lines(&path)[2].contains("\"upstream_grpc_status\":2"));
    let verdict = verify(&[&path], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
}

#[tokio::test]
async fn verify_fails_at_an_edited_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 5).await;
    let mut content = lines(&path);
    content[2] = content[2].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    write_lines(&path, &content);
    assert_broken_at(&verify(&[&path], &[]), &path, 3, "edited");
}

#[tokio::test]
async fn verify_fails_after_a_deleted_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 5).await;
    let mut content = lines(&path);
    content.remove(1);
    write_lines(&path, &content);
    assert_broken_at(
        &verify(&[&path], &[]),
        &path,
        2,
        "seq 2 where seq 1 was due: records are missing",
    );
}

#[tokio::test]
async fn verify_fails_at_swapped_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 5).await;
    let mut content = lines(&path);
    content.swap(2, 3);
    write_lines(&path, &content);
    assert_broken_at(
        &verify(&[&path], &[]),
        &path,
        3,
        "out of order (seq 2 is at line 4)",
    );
}

#[tokio::test]
async fn verify_fails_at_a_replayed_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 4).await;
    let mut content = lines(&path);
    let copy = content[1].clone();
    content.insert(3, copy);
    write_lines(&path, &content);
    assert_broken_at(
        &verify(&[&path], &[]),
        &path,
        4,
        "seq 1 where seq 3 was due: records are out of order",
    );
}

#[tokio::test]
async fn verify_fails_at_a_truncated_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 5).await;
    let bytes = fs::read(&path).expect("read");
    let cut = lines(&path)[..3].iter().map(|l| l.len() + 1).sum::<usize>() + 40;
    fs::write(&path, &bytes[..cut]).expect("truncate");
    assert_broken_at(&verify(&[&path], &[]), &path, 4, "truncated");
}

#[tokio::test]
async fn verify_refuses_a_file_whose_head_was_cut_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 4).await;
    let content = lines(&path);
    write_lines(&path, &content[1..]);
    assert_broken_at(
        &verify(&[&path], &[]),
        &path,
        1,
        "chain does not start here",
    );
    let verdict = verify(&[&path], &["--allow-partial"]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(verdict.stdout.contains("seq 1..=3"), "{}", verdict.stdout);
}

#[tokio::test]
async fn rotation_keeps_the_chain_verifiable_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    let mut settings = settings(file_config(&path));
    // Below the configurable minimum, so that twenty records rotate.
    settings.sink = SinkSettings::File {
        path: path.clone(),
        max_file_bytes: 2000,
        fsync: false,
    };
    write_with(&settings, 0..20).await;
    let mut rotated: Vec<PathBuf> = fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p != &path)
        .collect();
    rotated.sort();
    assert!(
        rotated.len() >= 3,
        "expected several rotations: {rotated:?}"
    );
    for file in rotated.iter().chain([&path]) {
        let size = fs::metadata(file).expect("metadata").len();
        assert!(size <= 2000, "{} is {size} bytes", file.display());
    }
    let mut in_order: Vec<&Path> = rotated.iter().map(PathBuf::as_path).collect();
    in_order.push(&path);
    let verdict = verify(&in_order, &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict.stdout.contains("ok: 20 records"),
        "{}",
        verdict.stdout
    );

    // Leaving a middle file out is a gap in the chain.
    let mut gap = in_order.clone();
    let left_out = gap.remove(1);
    let first_after = gap[1];
    let verdict = verify(&gap, &[]);
    assert!(
        !verdict.ok,
        "a missing file {} went unnoticed",
        left_out.display()
    );
    assert!(
        verdict
            .stderr
            .contains(&format!("{}:1: ", first_after.display())),
        "{}",
        verdict.stderr
    );
}

#[tokio::test]
async fn a_restart_continues_the_chain_in_the_same_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 3).await;
    write_records(&file_config(&path), 3..6).await;
    let verdict = verify(&[&path], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict
            .stdout
            .contains("ok: 6 records in 1 files, seq 0..=5"),
        "{}",
        verdict.stdout
    );
    assert!(!verdict.stdout.contains("new chains"), "{}", verdict.stdout);
}

#[tokio::test]
async fn a_restart_on_a_freshly_rotated_file_continues_from_the_rotated_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 3).await;
    // As if the process stopped right after a rotation.
    let rotated = dir.path().join("audit.log.20261128T130000.000000Z");
    fs::rename(&path, &rotated).expect("rename");
    write_records(&file_config(&path), 3..5).await;
    let verdict = verify(&[&rotated, &path], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict
            .stdout
            .contains("ok: 5 records in 2 files, seq 0..=4"),
        "{}",
        verdict.stdout
    );
}

#[tokio::test]
async fn a_restart_after_a_damaged_tail_starts_a_marked_new_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = audit_file(dir.path(), 3).await;
    let mut content = lines(&path);
    content[2].truncate(30);
    fs::write(&path, content.join("\n")).expect("write");
    write_records(&file_config(&path), 3..5).await;
    let content = lines(&path);
    assert_eq!(content.len(), 5);
    let fourth: Value = serde_json::from_str(&content[3]).expect("json");
    assert_eq!(fourth["seq"], 0);
    assert_eq!(fourth["prev"], firegate::audit::GENESIS);
    // The damaged line itself is still reported.
    assert_broken_at(&verify(&[&path], &[]), &path, 3, "not an audit record");
}

#[tokio::test]
async fn chains_restarted_by_stdout_sinks_verify_and_are_listed() {
    // A stdout sink cannot read back its output: each start begins a new
    // chain, and a collector concatenating them gets several in one file.
    let mut all = Vec::new();
    for run in 0..2u64 {
        let sink = MemorySink::new();
        let auditor = Auditor::with_sink(
            &settings(AuditConfig::default()),
            Box::new(sink.clone()),
            &mut Registry::default(),
        )
        .expect("auditor");
        for n in 0..3 {
            auditor.record(record(run * 10 + n));
        }
        auditor.flush().await;
        all.extend(sink.lines());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collected.log");
    write_lines(&path, &all);
    let verdict = verify(&[&path], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert!(
        verdict.stdout.contains(&format!(
            "new chains began at: {p}:1 {p}:4",
            p = path.display()
        )),
        "{}",
        verdict.stdout
    );
}

/// Re-hash a line with plain SHA-256 after setting `prev`, as someone who
/// can edit the file but does not hold the key would.
fn forge(line: &str, prev: &str) -> (String, String) {
    let mut value: Value = serde_json::from_str(line).expect("json");
    let fields = value.as_object_mut().expect("object");
    fields.remove("hash");
    fields.insert("prev".into(), Value::from(prev));
    let mut bytes = Vec::new();
    canonical(&value, &mut bytes).expect("canonical");
    let hash = hex::encode(Sha256::digest(&bytes));
    value["hash"] = Value::from(hash.clone());
    (value.to_string(), hash)
}

#[tokio::test]
async fn hmac_chain_detects_an_edit_with_recomputed_sha256_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("audit.key");
    fs::write(&key, format!("{KEY}\n")).expect("key");
    let path = dir.path().join("audit.log");
    let config = AuditConfig {
        hmac_key_file: Some(key.clone()),
        ..file_config(&path)
    };
    write_records(&config, 0..4).await;
    let key_arg = ["--hmac-key", key.to_str().expect("utf-8 path")];
    let verdict = verify(&[&path], &key_arg);
    assert!(verdict.ok, "{}", verdict.stderr);
    assert_broken_at(&verify(&[&path], &[]), &path, 1, "HMAC");

    // Edit line 2 and re-chain it and every later line with SHA-256.
    let mut content = lines(&path);
    content[1] = content[1].replace("\"status\":200", "\"status\":404");
    let mut prev: String = serde_json::from_str::<Value>(&content[0]).expect("json")["hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    for line in content.iter_mut().skip(1) {
        let (forged, hash) = forge(line, &prev);
        *line = forged;
        prev = hash;
    }
    write_lines(&path, &content);
    assert_broken_at(&verify(&[&path], &key_arg), &path, 2, "edited");

    // The same forgery fools a plain SHA-256 chain: that is what the key is for.
    let plain = dir.path().join("plain.log");
    write_records(&file_config(&plain), 0..3).await;
    let mut content = lines(&plain);
    content[1] = content[1].replace("\"status\":200", "\"status\":404");
    let first: Value = serde_json::from_str(&content[0]).expect("json");
    let (forged, hash) = forge(&content[1], first["hash"].as_str().expect("hash"));
    content[1] = forged;
    let (forged, _) = forge(&content[2], &hash);
    content[2] = forged;
    write_lines(&plain, &content);
    assert!(verify(&[&plain], &[]).ok);
}

/// Poll `admit` until it gives the wanted answer (the writer retries with
/// backoff, so the change is not immediate).
async fn until_admit(auditor: &Auditor, want_ok: bool) -> Result<(), AuditError> {
    for _ in 0..500 {
        let got = auditor.admit();
        if got.is_ok() == want_ok {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "admit() never became {}",
        if want_ok { "Ok" } else { "Err" }
    );
}

fn metrics(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text
}

#[tokio::test]
async fn fail_closed_refuses_while_the_sink_cannot_write_then_recovers() {
    let sink = MemorySink::new();
    let mut registry = Registry::default();
    // No buffer: fail_closed applies as soon as the sink cannot write.
    let config = AuditConfig {
        fail_closed: true,
        queue_capacity: 4,
        buffer_bytes: 0,
        ..AuditConfig::default()
    };
    let auditor = Auditor::with_sink(&settings(config), Box::new(sink.clone()), &mut registry)
        .expect("auditor");
    assert!(auditor.admit().is_ok());
    auditor.record(record(0));
    auditor.flush().await;

    sink.set_failing(true);
    auditor.record(record(1));
    let refused = until_admit(&auditor, false).await;
    assert!(
        matches!(refused, Err(AuditError::SinkUnwritable)),
        "{refused:?}"
    );
    assert!(auditor.not_ready().is_some());
    // Requests admitted before the failure still finish: their records are
    // kept even though they overflow the queue of 4.
    for n in 2..12 {
        auditor.record(record(n));
    }
    assert!(auditor.admit().is_err());

    sink.set_failing(false);
    until_admit(&auditor, true).await.expect("admitted again");
    auditor.flush().await;
    assert_eq!(auditor.not_ready(), None);
    assert_eq!(auditor.dropped(), 0);
    let mut ids: Vec<String> = sink
        .records()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort_by_key(|id| id[4..].parse::<u64>().unwrap_or(u64::MAX));
    let expected: Vec<String> = (0..12).map(|n| format!("req-{n}")).collect();
    assert_eq!(ids, expected);
    let text = metrics(&registry);
    assert!(text.contains("audit_records_dropped_total 0"), "{text}");
    assert!(!text.contains("audit_refused_requests_total 0"), "{text}");
    assert!(!text.contains("audit_write_errors_total 0"), "{text}");

    // What reached the sink, in its order, is one verifiable chain.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("copy.log");
    write_lines(&copy, &sink.lines());
    let verdict = verify(&[&copy], &[]);
    assert!(verdict.ok, "{}", verdict.stderr);
}

#[tokio::test]
async fn fail_closed_keeps_admitted_records_but_not_those_of_refused_requests() {
    let sink = MemorySink::new();
    let config = AuditConfig {
        fail_closed: true,
        queue_capacity: 1,
        buffer_bytes: 0,
        ..AuditConfig::default()
    };
    let auditor = Auditor::with_sink(
        &settings(config),
        Box::new(sink.clone()),
        &mut Registry::default(),
    )
    .expect("auditor");
    sink.set_failing(true);
    auditor.record(record(0));
    until_admit(&auditor, false).await.expect_err("refused");
    auditor.record(record(1));
    auditor.record(record(2));
    // A refused request's record must not pile up while the sink is down.
    auditor.record_refused(record(3));
    assert_eq!(auditor.dropped(), 1);

    sink.set_failing(false);
    until_admit(&auditor, true).await.expect("admitted again");
    auditor.flush().await;
    let mut ids: Vec<String> = sink
        .records()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["req-0", "req-1", "req-2"]);
}

#[tokio::test]
async fn without_fail_closed_a_full_queue_drops_and_counts() {
    let sink = MemorySink::new();
    let mut registry = Registry::default();
    let config = AuditConfig {
        queue_capacity: 2,
        buffer_bytes: 0,
        ..AuditConfig::default()
    };
    let auditor = Auditor::with_sink(&settings(config), Box::new(sink.clone()), &mut registry)
        .expect("auditor");
    sink.set_failing(true);
    for n in 0..20 {
        assert!(auditor.admit().is_ok(), "admit refused without fail_closed");
        auditor.record(record(n));
    }
    let dropped = auditor.dropped();
    assert!(dropped >= 17, "only {dropped} dropped");
    sink.set_failing(false);
    auditor.flush().await;
    let written = sink.records().len() as u64;
    assert_eq!(written + dropped, 20);
    let text = metrics(&registry);
    assert!(
        text.contains(&format!("audit_records_dropped_total {dropped}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("audit_records_written_total {written}")),
        "{text}"
    );
}

#[test]
fn the_hasher_ignores_whitespace_around_a_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.key");
    let b = dir.path().join("b.key");
    fs::write(&a, KEY).expect("key");
    fs::write(&b, format!("{KEY}\r\n")).expect("key");
    let load = |p: &Path| firegate::audit::load_hmac_key(p).expect("key");
    assert_eq!(load(&a), load(&b));
    fs::write(&a, "short\n").expect("key");
    assert!(firegate::audit::load_hmac_key(&a).is_err());
}

mod over_a_socket {
    //! The `Audited` body under a real hyper server: hyper drops the body
    //! when the client goes away, and that drop writes the record.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use firegate::audit::{AuditConfig, Auditor, MemorySink};
    use firegate::body::{Body, BoxError};

    use super::settings;
    use firegate::pipeline::{ConnInfo, Exchange};
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use prometheus_client::registry::Registry;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A body that sends `chunk` every 10 ms, forever.
    fn endless(chunk: &'static str) -> Body {
        let frames = stream::unfold((), move |()| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let frame: Result<Frame<Bytes>, BoxError> = Ok(Frame::data(Bytes::from(chunk)));
            Some((frame, ()))
        });
        BodyExt::boxed(StreamBody::new(frames))
    }

    /// Serve one connection: `/endless` streams forever, anything else
    /// answers `hello` (5 bytes).
    async fn serve(auditor: Arc<Auditor>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, remote)) = listener.accept().await {
                let auditor = Arc::clone(&auditor);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let auditor = Arc::clone(&auditor);
                    async move {
                        let conn = ConnInfo::new(remote, None);
                        let ex = Exchange::begin(&req, &conn, &[]);
                        let body = if req.uri().path() == "/endless" {
                            endless("tick\n")
                        } else {
                            firegate::body::full("hello")
                        };
                        Ok::<_, std::convert::Infallible>(
                            ex.finish(http::Response::new(body), auditor),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    async fn records_when(sink: &MemorySink, auditor: &Auditor, count: usize) -> Vec<Value> {
        for _ in 0..500 {
            auditor.flush().await;
            let records = sink.records();
            if records.len() >= count {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sink.records()
    }

    fn auditor() -> (Arc<Auditor>, MemorySink) {
        let sink = MemorySink::new();
        let auditor = Auditor::with_sink(
            &settings(AuditConfig::default()),
            Box::new(sink.clone()),
            &mut Registry::default(),
        )
        .expect("auditor");
        (Arc::new(auditor), sink)
    }

    #[tokio::test]
    async fn a_client_leaving_mid_stream_gets_one_disconnected_record() {
        let (auditor, sink) = auditor();
        let addr = serve(Arc::clone(&auditor)).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /endless HTTP/1.1\r\nhost: firegate\r\nx-request-id: leaver\r\n\r\n")
            .await
            .expect("send");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("tick\n") {
            let n = client.read(&mut buf).await.expect("read");
            assert!(n > 0, "server closed first");
            seen.extend_from_slice(&buf[..n]);
        }
        drop(client);

        let records = records_when(&sink, &auditor, 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!(r["request_id"], "leaver");
        assert_eq!(r["client_disconnected"], true);
        assert_eq!(r["status"], 200);
        assert_eq!(r["http_version"], "HTTP/1.1");
        assert!(r["bytes_out"].as_u64().unwrap_or(0) >= 5, "{r}");
        // No second record turns up later.
        tokio::time::sleep(Duration::from_millis(100)).await;
        auditor.flush().await;
        assert_eq!(sink.records().len(), 1);
    }

    #[tokio::test]
    async fn a_complete_response_gets_one_record_with_its_size() {
        let (auditor, sink) = auditor();
        let addr = serve(Arc::clone(&auditor)).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /hello HTTP/1.1\r\nhost: firegate\r\nconnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.expect("read");
        assert!(String::from_utf8_lossy(&response).ends_with("hello"));

        let records = records_when(&sink, &auditor, 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["client_disconnected"], false);
        assert_eq!(records[0]["bytes_out"], 5);
        assert_eq!(records[0]["client_ip"], "127.0.0.1");
    }
}
