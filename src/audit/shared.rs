//! What the request path and the writer thread share: the sink's state, the
//! records kept aside with `fail_closed`, flush and reopen requests, the
//! drop accounting and the metrics.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use super::AuditRecord;
use crate::metrics::registered;

/// At most one warning per this interval about repeated write failures.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a flush achieved by its deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Records the sink could not take and that are nowhere on disk: lost
    /// if the process exits now.
    pub unwritten: u64,
    /// Records written to the spill file instead of the sink.
    pub spilled: u64,
    pub spill_file: Option<PathBuf>,
}

/// One caller of [`super::Auditor::flush`], waiting.
pub(super) struct FlushRequest {
    pub deadline: Instant,
    pub done: oneshot::Sender<Flushed>,
}

pub(super) struct Shared {
    /// The sink cannot write and `audit.buffer_bytes` are used up: the
    /// writer takes no more records, the queue fills, and records drop
    /// (or, with `fail_closed`, requests are refused).
    pub buffer_full: AtomicBool,
    /// Records of admitted requests that found the queue full while
    /// `fail_closed` is set. Bounded by the requests in flight, because
    /// `admit` refuses new ones while it is not empty.
    overflow: Mutex<Vec<AuditRecord>>,
    pub overflow_len: AtomicU64,
    flushes: Mutex<Vec<FlushRequest>>,
    /// SIGHUP or SIGUSR1 asked to look at the file again.
    pub reopen: AtomicBool,
    /// Records are being dropped: set by the first drop (which logs), and
    /// cleared by the writer once drops have stopped (which logs again).
    pub dropping: AtomicBool,
    /// `dropped` when the current run of drops began.
    pub dropped_before: AtomicU64,
    pub metrics: Metrics,
    warned: RateLimit,
}

impl Shared {
    pub fn new(registry: &mut Registry) -> Shared {
        Shared {
            buffer_full: AtomicBool::new(false),
            overflow: Mutex::new(Vec::new()),
            overflow_len: AtomicU64::new(0),
            flushes: Mutex::new(Vec::new()),
            reopen: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
            dropped_before: AtomicU64::new(0),
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

    pub fn take_overflow(&self) -> Vec<AuditRecord> {
        let mut overflow = self.overflow.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = std::mem::take(&mut *overflow);
        self.overflow_len.store(0, Ordering::Release);
        taken
    }

    pub fn request_flush(&self, request: FlushRequest) {
        self.flushes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    pub fn take_flush_requests(&self) -> Vec<FlushRequest> {
        std::mem::take(&mut *self.flushes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Count a dropped record; the first of a run says so in an `error`
    /// line (the writer logs when the run ends).
    pub fn dropped(&self) {
        let before = self.metrics.dropped.inc();
        if self.dropping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.dropped_before.store(before, Ordering::Release);
        let cause = if self.buffer_full.load(Ordering::Acquire) {
            "the audit sink cannot write and audit.buffer_bytes are used up"
        } else {
            "the audit queue is full: the writer is behind"
        };
        tracing::error!(
            cause,
            "audit records are being dropped (counted in firegate_audit_records_dropped_total); audit.fail_closed refuses requests instead"
        );
    }

    /// At most once per [`WARN_EVERY`].
    pub fn warn_due(&self) -> bool {
        self.warned.ready()
    }
}

/// The audit metrics.
pub(super) struct Metrics {
    pub written: Counter,
    pub dropped: Counter,
    pub write_errors: Counter,
    pub refused: Counter,
    pub spilled: Counter,
    pub last_seq: Gauge,
    pub buffered_records: Gauge,
    pub buffered_bytes: Gauge,
}

impl Metrics {
    fn new(registry: &mut Registry) -> Metrics {
        Metrics {
            written: registered(
                registry,
                "audit_records_written",
                "Audit records written to the sink",
            ),
            dropped: registered(
                registry,
                "audit_records_dropped",
                "Audit records lost: the queue was full (fail_closed off), or the sink could not write and audit.buffer_bytes were used up",
            ),
            write_errors: registered(
                registry,
                "audit_write_errors",
                "Failed attempts to append to the audit sink (records wait in memory and are retried)",
            ),
            refused: registered(
                registry,
                "audit_refused_requests",
                "Requests refused with 503 because the audit sink was behind (fail_closed)",
            ),
            spilled: registered(
                registry,
                "audit_records_spilled",
                "Audit records written to audit.spill_path because the sink could not take them before the flush deadline",
            ),
            last_seq: registered(
                registry,
                "audit_chain_seq",
                "seq of the last audit record written; compare with `audit verify` to spot a cut tail",
            ),
            buffered_records: registered(
                registry,
                "audit_buffered_records",
                "Audit records waiting in memory for the sink",
            ),
            buffered_bytes: registered(
                registry,
                "audit_buffered_bytes",
                "Bytes of audit records waiting in memory for the sink (bounded by audit.buffer_bytes)",
            ),
        }
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
