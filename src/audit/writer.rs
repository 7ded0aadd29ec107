//! The writer thread: takes records off a bounded channel, chains them and
//! writes them to the sink, retrying a failed write until it succeeds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::AuditRecord;
use super::chain::{Chain, NewChain};
use super::sink::Sink;

/// What the request path sends the writer.
pub(super) enum Message {
    Record(Box<AuditRecord>),
    /// Answer once everything sent before has been written and flushed.
    Flush(oneshot::Sender<()>),
}

/// Most messages handled between two sink flushes.
const BATCH: usize = 1024;
/// How long the writer lets records gather after the first of a batch.
/// Without it a busy proxy wakes the writer (a futex and two context
/// switches on the request path's core) and writes once for every record.
/// 5 ms rather than 1 ms: ≈ 3 % less CPU per request under load
/// (`benches/compare.sh quick` with `base`), and a record is still in the
/// file (or `fdatasync`ed, with `fsync`) within about 5 ms of its response.
const LINGER: Duration = Duration::from_millis(5);
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// At most one warning per this interval about drops or write failures.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// State shared by the request path and the writer thread.
pub(super) struct Shared {
    /// False from a failed write until the next successful one.
    pub sink_ok: AtomicBool,
    /// Records of admitted requests that found the channel full while
    /// `fail_closed` is set. Bounded by the requests in flight, because
    /// `admit` refuses new ones while it is not empty.
    pub overflow: Mutex<Vec<AuditRecord>>,
    pub overflow_len: AtomicU64,
    pub metrics: Metrics,
    warned: RateLimit,
}

impl Shared {
    pub fn new(registry: &mut Registry) -> Shared {
        Shared {
            sink_ok: AtomicBool::new(true),
            overflow: Mutex::new(Vec::new()),
            overflow_len: AtomicU64::new(0),
            metrics: Metrics::new(registry),
            warned: RateLimit::new(),
        }
    }

    pub fn push_overflow(&self, record: AuditRecord) {
        let mut overflow = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        overflow.push(record);
        self.overflow_len
            .store(overflow.len() as u64, Ordering::Release);
    }

    fn take_overflow(&self) -> Vec<AuditRecord> {
        let mut overflow = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::take(&mut *overflow);
        self.overflow_len.store(0, Ordering::Release);
        taken
    }

    /// Count a dropped record and warn, at most once per [`WARN_EVERY`].
    pub fn dropped(&self) {
        self.metrics.dropped.inc();
        if self.warned.ready() {
            tracing::warn!(
                dropped_total = self.metrics.dropped.get(),
                "audit queue full: records are being dropped (set audit.fail_closed to refuse requests instead)"
            );
        }
    }
}

/// The audit metrics.
pub(super) struct Metrics {
    pub written: Counter,
    pub dropped: Counter,
    pub write_errors: Counter,
    pub refused: Counter,
    pub last_seq: Gauge,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            written: Counter::default(),
            dropped: Counter::default(),
            write_errors: Counter::default(),
            refused: Counter::default(),
            last_seq: Gauge::default(),
        };
        registry.register(
            "audit_records_written",
            "Audit records written to the sink",
            m.written.clone(),
        );
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the queue was full (fail_closed off)",
            m.dropped.clone(),
        );
        registry.register(
            "audit_write_errors",
            "Failed attempts to write an audit record (each is retried)",
            m.write_errors.clone(),
        );
        registry.register(
            "audit_refused_requests",
            "Requests refused with 503 because the audit sink was behind (fail_closed)",
            m.refused.clone(),
        );
        registry.register(
            "audit_chain_seq",
            "seq of the last audit record written; compare with `audit verify` to spot a cut tail",
            m.last_seq.clone(),
        );
        m
    }
}

/// Lets one event through per [`WARN_EVERY`].
struct RateLimit {
    origin: Instant,
    /// Milliseconds since `origin` of the last event let through, plus one
    /// (zero: never).
    last: AtomicU64,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn ready(&self) -> bool {
        self.ready_at(self.origin.elapsed().as_millis() as u64 + 1)
    }

    /// `now`: milliseconds since `origin`, plus one.
    fn ready_at(&self, now: u64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        due && self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The writer's own state, moved into its thread.
pub(super) struct Writer {
    pub rx: mpsc::Receiver<Message>,
    pub sink: Box<dyn Sink>,
    pub chain: Chain,
    pub shared: Arc<Shared>,
}

impl Writer {
    /// Resume the chain from the sink's last line.
    pub fn chain_start(sink: &mut dyn Sink, hasher: super::chain::Hasher) -> Chain {
        let last = match sink.last_line() {
            Ok(last) => last,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the audit sink's last line");
                None
            }
        };
        let (chain, why) = Chain::resume(hasher, last.as_deref());
        if why == Some(NewChain::UnverifiableTail) {
            tracing::warn!(
                "the audit sink's last line is not a record this key verifies: starting a new chain"
            );
        }
        chain
    }

    /// Run until every sender is gone and the queue is drained.
    pub fn run(mut self) {
        while let Some(message) = self.rx.blocking_recv() {
            // Let a batch gather, unless a whole one is already waiting:
            // lingering then would only cap the records written per second.
            if self.rx.len() < BATCH {
                std::thread::sleep(LINGER);
            }
            let mut flushes = Vec::new();
            self.handle(message, &mut flushes);
            for _ in 1..BATCH {
                match self.rx.try_recv() {
                    Ok(message) => self.handle(message, &mut flushes),
                    Err(_) => break,
                }
            }
            self.drain_overflow();
            self.flush_sink();
            for done in flushes {
                let _ = done.send(());
            }
        }
        self.drain_overflow();
        self.flush_sink();
    }

    fn handle(&mut self, message: Message, flushes: &mut Vec<oneshot::Sender<()>>) {
        match message {
            Message::Record(record) => self.write(&record),
            Message::Flush(done) => {
                // Overflowed records were sent before this flush was asked for.
                self.drain_overflow();
                flushes.push(done);
            }
        }
    }

    fn drain_overflow(&mut self) {
        if self.shared.overflow_len.load(Ordering::Acquire) == 0 {
            return;
        }
        for record in self.shared.take_overflow() {
            self.write(&record);
        }
    }

    /// Write one record, retrying with backoff until the sink takes it: a
    /// record accepted into the queue is never lost to a transient failure.
    fn write(&mut self, record: &AuditRecord) {
        let sealed = match self.chain.seal(record) {
            Ok(sealed) => sealed,
            Err(err) => {
                // Every field is a plain string, number or list: this is
                // not expected, but a record must never stop the writer.
                tracing::error!(error = %err, "cannot serialize an audit record");
                self.shared.metrics.dropped.inc();
                return;
            }
        };
        let mut wait = RETRY_FIRST;
        while let Err(err) = self.sink.write_line(&sealed.line) {
            self.shared.sink_ok.store(false, Ordering::Release);
            self.shared.metrics.write_errors.inc();
            if self.shared.warned.ready() {
                tracing::warn!(error = %err, "cannot write to the audit sink; retrying");
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
        self.shared.sink_ok.store(true, Ordering::Release);
        self.shared.metrics.written.inc();
        self.shared
            .metrics
            .last_seq
            .set(i64::try_from(self.chain.next_seq()).unwrap_or(i64::MAX));
        self.chain.advance(sealed);
    }

    /// Push the batch to the medium, retrying like [`Writer::write`]: a
    /// buffering sink holds lines already chained, which must not be lost.
    fn flush_sink(&mut self) {
        let mut wait = RETRY_FIRST;
        while let Err(err) = self.sink.flush() {
            self.shared.sink_ok.store(false, Ordering::Release);
            self.shared.metrics.write_errors.inc();
            if self.shared.warned.ready() {
                tracing::warn!(error = %err, "cannot flush the audit sink; retrying");
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
        self.shared.sink_ok.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_lets_one_event_through_per_interval() {
        let every = WARN_EVERY.as_millis() as u64;
        let limit = RateLimit::new();
        assert!(limit.ready_at(1));
        assert!(!limit.ready_at(2));
        assert!(!limit.ready_at(every));
        assert!(limit.ready_at(every + 1));
        assert!(!limit.ready_at(every + 2));
        assert!(limit.ready_at(3 * every));
    }
}
