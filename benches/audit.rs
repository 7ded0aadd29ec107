//! Records per second through the audit writer: queue, canonical form,
//! SHA-256 or HMAC chain, and the sink.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firegate::audit::{
    AppendError, AuditConfig, AuditPrincipal, AuditRecord, AuditSettings, AuditTarget, Auditor,
    Outcome, Sink, SinkKind,
};
use firegate::config::ConfigErrors;
use prometheus_client::registry::Registry;

/// Records per measured batch; the queue holds them all, so none drop.
const BATCH: u64 = 5_000;

struct NullSink;

impl Sink for NullSink {
    fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        std::hint::black_box(lines);
        Ok(())
    }
}

fn record() -> AuditRecord {
    AuditRecord {
        access: None,
        time: "2026-11-28T13:00:00.123456Z".into(),
        request_id: "4f1c2b7d9a0e4c3fa1b2c3d4e5f60718".into(),
        client_ip: "203.0.113.7".into(),
        tls: Some("TLSv1.3".into()),
        http_version: "HTTP/2".into(),
        principal: Some(AuditPrincipal::new(
            "https://backstage.example.com/api/auth",
            "user:default/ada",
            Some("ada@example.com"),
            &["group:default/team-a", "group:default/sre"],
        )),
        http_method: "POST".into(),
        rpc: Some("commit".into()),
        database: Some("projects/p/databases/(default)".into()),
        targets: (0..3)
            .map(|i| AuditTarget {
                resource: format!("/teams/a/deployments/d{i}").into(),
                access: "update".into(),
                allowed: true,
                rule: Some("team-deployments".into()),
                why: Some("allowed".into()),
                grant: None,
            })
            .collect(),
        targets_summary: None,
        decision: Outcome::Allow,
        reason: None,
        upstream_account: Some("writer@p.iam.gserviceaccount.com".into()),
        shadow_decision: None,
        shadow_rule: None,
        upstream_status: Some(200),
        upstream_grpc_status: None,
        status: 200,
        bytes_in: 812,
        bytes_out: 240,
        duration_ms: 12.375,
        client_disconnected: false,
        traceparent: None,
        request_tags: vec!["checkout".into()],
        stored_reads: 0,
        masked_fields: 0,
    }
}

/// Time `iters` batches of `BATCH` records: queue them all, wait until
/// written. `after` runs untimed after each batch.
fn run(rt: &tokio::runtime::Runtime, auditor: &Auditor, iters: u64, after: &dyn Fn()) -> Duration {
    let template = record();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        for _ in 0..BATCH {
            auditor.record(template.clone());
        }
        rt.block_on(auditor.flush());
        total += start.elapsed();
        after();
    }
    assert_eq!(auditor.dropped(), 0, "the bench must not drop records");
    total
}

fn remove_rotated(dir: &Path, active: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path() != active {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn settings(config: AuditConfig) -> AuditSettings {
    ConfigErrors::collect(|errors| config.validate(errors)).unwrap_or_else(|e| panic!("{e}"))
}

fn writer(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = AuditConfig {
        queue_capacity: BATCH as usize + 16,
        ..AuditConfig::default()
    };
    let mut group = c.benchmark_group("audit_writer");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);

    let null = Auditor::with_sink(
        &settings(config.clone()),
        Box::new(NullSink),
        &mut Registry::default(),
    )
    .expect("auditor");
    group.bench_function("sha256_null_sink", |b| {
        b.iter_custom(|iters| run(&rt, &null, iters, &|| {}))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").expect("key");
    let hmac = AuditConfig {
        hmac_key_file: Some(key),
        ..config.clone()
    };
    let hmac_null = Auditor::with_sink(
        &settings(hmac),
        Box::new(NullSink),
        &mut Registry::default(),
    )
    .expect("auditor");
    group.bench_function("hmac_null_sink", |b| {
        b.iter_custom(|iters| run(&rt, &hmac_null, iters, &|| {}))
    });

    let files = tempfile::tempdir().expect("tempdir");
    let active = files.path().join("audit.log");
    let file_config = AuditConfig {
        sink: SinkKind::File,
        path: Some(active.clone()),
        max_file_bytes: 16 * 1024 * 1024,
        ..config.clone()
    };
    let file = rt
        .block_on(Auditor::new(
            &settings(file_config),
            &mut Registry::default(),
        ))
        .expect("auditor");
    group.bench_function("sha256_file_sink", |b| {
        b.iter_custom(|iters| run(&rt, &file, iters, &|| remove_rotated(files.path(), &active)))
    });
    group.finish();
}

/// The parts of sealing one record, to see where the writer's time goes.
fn seal_parts(c: &mut Criterion) {
    let rec = record();
    let mut group = c.benchmark_group("audit_seal");
    group.sample_size(10);
    group.bench_function("clone", |b| b.iter(|| rec.clone()));
    group.bench_function("to_vec", |b| b.iter(|| serde_json::to_vec(&rec)));
    group.bench_function("to_value", |b| b.iter(|| serde_json::to_value(&rec)));
    let value = serde_json::to_value(&rec).expect("value");
    let mut canonical_bytes = Vec::new();
    firegate::audit::canonical(&value, &mut canonical_bytes).expect("canonical");
    group.bench_function("canonical", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            firegate::audit::canonical(&value, &mut out).map(|()| out)
        })
    });
    let sha = firegate::audit::Hasher::Sha256;
    group.bench_function("sha256", |b| b.iter(|| sha.digest(&canonical_bytes)));
    let hmac = firegate::audit::Hasher::Hmac(b"0123456789abcdef0123456789abcdef".to_vec());
    group.bench_function("hmac", |b| b.iter(|| hmac.digest(&canonical_bytes)));
    group.finish();
}

criterion_group!(benches, seal_parts, writer);
criterion_main!(benches);
