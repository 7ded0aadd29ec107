//! The write half of the cost per request: a `:commit` classified and
//! decided against the 1,000-rule bench policy (`benches/compare.sh`'s
//! fixture), per write, for the 50-write commit of the comparison (100
//! targets, 1,000 callers so the decision cache mostly misses) and the
//! largest commit Firestore takes (500 writes). Each figure is also shown
//! as a ratio to parsing the same body into `serde_json::Value`, measured
//! in the same run (absolute timings drift on a shared machine).
//!
//! `cargo bench --bench commit` (`-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use firegate::authn::Principal;
use firegate::firestore::{classify_with, route};
use firegate::policy::PolicyEngine;
use http::{HeaderMap, HeaderValue, Method, Uri};
use prometheus_client::registry::Registry;

/// The proxy's allocator (`src/main.rs`): most of a commit's cost is
/// allocation, and the system allocator's is not the proxy's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAME: &str = "projects/p/databases/(default)/documents";
/// Distinct callers, as the comparison's 1,000 tokens.
const CALLERS: usize = 1_000;

/// The comparison's policy (`benches/fixture/bench_fixture.rs`).
#[path = "fixture/policy.rs"]
mod bench_policy;

/// The comparison's commit body with `n` `update` writes.
fn commit(n: usize) -> Bytes {
    let writes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"update":{{"name":"{NAME}/teams/payments/deployments/d{i}","fields":{{"env":{{"stringValue":"prod"}},"n":{{"integerValue":"{i}"}}}}}}}}"#
            )
        })
        .collect();
    Bytes::from(format!(r#"{{"writes":[{}]}}"#, writes.join(",")))
}

fn callers() -> Vec<Principal> {
    (0..CALLERS)
        .map(|i| {
            Principal::new(
                "https://idp.example.com".into(),
                format!("bench-{i}"),
                Some(format!("bench-{i}@bench.example")),
                vec![
                    "group:default/engineering".into(),
                    "group:default/payments".into(),
                ],
                serde_json::Map::new(),
            )
        })
        .collect()
}

/// Classify and decide one commit for the `i`-th caller.
fn classify_decide(
    rt: &tokio::runtime::Runtime,
    engine: &PolicyEngine,
    principal: &Principal,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> bool {
    let r = route(&Method::POST, uri, headers).expect("route");
    // As the pipeline classifies: for what the serving table reads.
    let op = classify_with(&r, Some(body), engine.field_capture())
        .expect("classify")
        .operation;
    rt.block_on(engine.decide(principal, &op)).allowed
}

/// This thread's CPU time (`/proc/thread-self/schedstat`, ns on a CPU):
/// on a shared machine, what the work cost rather than how long it waited.
/// The kernel brings it up to date at each scheduler tick (4 ms here), so
/// a figure is only as good as the number of ticks it spans: see [`ROUND`].
fn cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// How long one round of [`best`] runs: some 60 ticks, so that a tick
/// more or less moves a figure by under 2 %.
const ROUND: Duration = Duration::from_millis(250);

/// How many calls of `f` take about [`ROUND`].
fn calls_per_round(mut f: impl FnMut()) -> u32 {
    let (start, mut calls) = (Instant::now(), 0u32);
    while start.elapsed() < ROUND / 5 {
        f();
        calls += 1;
    }
    calls.saturating_mul(5).max(1)
}

/// Mean CPU time (wall time where it cannot be read) of one call of `f`,
/// the best of five rounds of about [`ROUND`] each.
fn best(mut f: impl FnMut()) -> Duration {
    let iters = calls_per_round(&mut f);
    (0..5)
        .map(|_| {
            let (wall, on_cpu) = (Instant::now(), cpu());
            for _ in 0..iters {
                f();
            }
            match (on_cpu, cpu()) {
                (Some(start), Some(end)) => end.saturating_sub(start) / iters,
                _ => wall.elapsed() / iters,
            }
        })
        .min()
        .unwrap_or_default()
}

/// `n` calls of `f`, apart so that callgrind can count them alone
/// (`--toggle-collect='*counted*'`; see `benches/README.md`).
#[inline(never)]
fn counted_commits(n: u32, f: &mut impl FnMut()) {
    for _ in 0..n {
        f();
    }
}

/// As [`counted_commits`], for the serde reference.
#[inline(never)]
fn counted_serde(n: u32, f: &mut impl FnMut()) {
    for _ in 0..n {
        f();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let uri: Uri = format!("/v1/{NAME}:commit").parse().expect("uri");
    let engine = PolicyEngine::from_yaml(&bench_policy::policy(1_000), &mut Registry::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let callers = callers();
    let mut group = c.benchmark_group("commit");
    for writes in [50usize, 500] {
        let body = commit(writes);
        let mut next = 0usize;
        let mut decide = || {
            next = (next + 1) % CALLERS;
            assert!(classify_decide(
                &rt,
                &engine,
                &callers[next],
                &uri,
                &headers,
                &body
            ));
        };
        let parse = || {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("json"));
        };
        // COMMIT_COUNT=n: n commits of 50 writes (and n serde parses of
        // the body) after every caller's verdicts are cached, for a count
        // of instructions that no machine's load moves; no timings.
        if let Some(n) = std::env::var("COMMIT_COUNT")
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
        {
            if writes == 50 {
                for _ in 0..2 * CALLERS {
                    decide();
                }
                counted_commits(n, &mut decide);
                counted_serde(n, &mut { parse });
            }
            continue;
        }
        group.throughput(Throughput::Elements(writes as u64));
        group.bench_function(format!("serde_value_{writes}_writes"), |b| b.iter(parse));
        group.bench_function(format!("classify_decide_{writes}_writes"), |b| {
            b.iter(&mut decide)
        });
        // The ratio, measured here side by side (criterion's figures above
        // are each from their own stretch of time).
        let reference = best(parse);
        let judged = best(&mut decide);
        eprintln!(
            "commit of {writes} writes: classify+decide {:.2} µs per write ({:.1} µs whole), \
             serde_json::Value {:.2} µs per write: {:.2}x",
            judged.as_secs_f64() * 1e6 / writes as f64,
            judged.as_secs_f64() * 1e6,
            reference.as_secs_f64() * 1e6 / writes as f64,
            judged.as_secs_f64() / reference.as_secs_f64(),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
