//! The writer thread: takes records off a bounded channel, chains them and
//! appends them to the sink. While the sink cannot write, records wait in
//! memory (up to `audit.buffer_bytes`) and the append is retried; a flush
//! that reaches its deadline spills what still waits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::AuditRecord;
use super::backlog::{Backlog, Taken};
use super::chain::{Chain, Hasher, NewChain};
use super::shared::{Flushed, Shared};
use super::sink::Sink;
use super::spill::Spill;

/// What the request path sends the writer.
pub(super) enum Message {
    Record(Box<AuditRecord>),
    /// Look at the shared requests (flush, reopen) now.
    Wake,
}

/// Most messages taken between two appends.
const BATCH: usize = 1024;
/// How long the writer lets records gather after the first of a batch.
/// Without it a busy proxy wakes the writer (a futex and two context
/// switches on the request path's core) and writes once for every record.
/// 5 ms rather than 1 ms: ≈ 3 % less CPU per request under load
/// (`benches/compare.sh quick` with `base`), and a record is still in the
/// file (or `fdatasync`ed, with `fsync`) within about 5 ms of its response.
const LINGER: Duration = Duration::from_millis(5);
/// While anything is pending (a failing sink, a flush, drops) the writer
/// looks at the queue this often instead of sleeping on it, so that the
/// queue keeps draining into the buffer between retries.
const POLL: Duration = Duration::from_millis(10);
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Most bytes appended at once while lines that waited are written back
/// (the sink's file size, if smaller: at most one rotation, with its
/// `fdatasync`, per append). Writing a large buffer back takes a while;
/// meanwhile the queue must keep draining. A batch that did not wait is
/// appended whole, in one write (and one `fdatasync` with `fsync`).
pub(super) const CHUNK: usize = 256 * 1024;
/// Drops have stopped once none was counted for this long.
const DROPS_QUIET: Duration = Duration::from_secs(1);

/// The writer's own state, moved into its thread.
pub(super) struct Writer {
    rx: mpsc::Receiver<Message>,
    sink: Box<dyn Sink>,
    chain: Chain,
    shared: Arc<Shared>,
    backlog: Backlog,
    /// `audit.buffer_bytes`: how much may wait while the sink fails.
    buffer_bytes: usize,
    spill: Option<Spill>,
    /// The last append failed and lines still wait.
    failing: bool,
    /// Lines that waited are being written back, [`WriterSettings::chunk`]
    /// bytes at a time, until none is left.
    catching_up: bool,
    chunk: usize,
    retry: Retry,
    /// Messages taken off the channel so far.
    received: u64,
    waits: Vec<Wait>,
    /// Every sender is gone: write what is left, then end.
    closed: bool,
    /// The dropped count last seen, and when it last moved.
    drops_seen: (u64, Instant),
    flush_timeout: Duration,
}

/// A flush being waited for.
struct Wait {
    /// Satisfied once this many messages were taken and written.
    mark: u64,
    /// When the writer stops trying the sink and spills: a fifth of the
    /// flush timeout before the caller's deadline, to leave the spill time.
    give_up_at: Instant,
    /// `None` for the flush the writer does itself when closed.
    done: Option<oneshot::Sender<Flushed>>,
}

/// The settings the writer runs with.
pub(super) struct WriterSettings {
    pub buffer_bytes: usize,
    /// At most [`CHUNK`], and at most the sink's file size.
    pub chunk: usize,
    pub spill: Option<Spill>,
    pub flush_timeout: Duration,
}

impl Writer {
    pub fn new(
        rx: mpsc::Receiver<Message>,
        sink: Box<dyn Sink>,
        chain: Chain,
        shared: Arc<Shared>,
        settings: WriterSettings,
    ) -> Writer {
        Writer {
            rx,
            sink,
            chain,
            shared,
            backlog: Backlog::default(),
            buffer_bytes: settings.buffer_bytes,
            spill: settings.spill,
            failing: false,
            catching_up: false,
            chunk: settings.chunk,
            retry: Retry::new(),
            received: 0,
            waits: Vec::new(),
            closed: false,
            drops_seen: (0, Instant::now()),
            flush_timeout: settings.flush_timeout,
        }
    }

    /// Run until every sender is gone and what was queued is written,
    /// spilled, or (past the flush deadline, without a spill path) counted
    /// as dropped.
    pub fn run(mut self) {
        loop {
            if !self.receive() && !self.closed {
                self.closed = true;
                let give_up_at = Instant::now() + self.flush_timeout;
                self.wait_for(None, give_up_at);
            }
            self.take_requests();
            self.drain_overflow();
            self.write_backlog();
            self.answer_flushes();
            self.watch_drops();
            self.publish();
            if self.closed && self.waits.is_empty() {
                return;
            }
        }
    }

    /// Take a batch of messages. Sleeps on the channel only when nothing
    /// else is pending; false once every sender is gone.
    fn receive(&mut self) -> bool {
        let first = if self.settled() {
            match self.rx.blocking_recv() {
                Some(message) => message,
                None => return false,
            }
        } else {
            if !self.can_write() {
                std::thread::sleep(POLL);
            }
            if !self.has_room() {
                return !self.rx.is_closed();
            }
            match self.rx.try_recv() {
                Ok(message) => message,
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        };
        // Let a batch gather, unless a whole one is already waiting:
        // lingering then would only cap the records written per second.
        if self.backlog.is_empty() && self.rx.len() < BATCH {
            std::thread::sleep(LINGER);
        }
        self.handle(first);
        for _ in 1..BATCH {
            if !self.has_room() {
                break;
            }
            match self.rx.try_recv() {
                Ok(message) => self.handle(message),
                Err(_) => break,
            }
        }
        true
    }

    /// Nothing to do until the next message.
    fn settled(&self) -> bool {
        self.backlog.is_empty()
            && self.waits.is_empty()
            && !self.shared.dropping.load(Ordering::Acquire)
    }

    /// Lines wait and the backoff allows another append now.
    fn can_write(&self) -> bool {
        !self.backlog.is_empty() && self.retry.due()
    }

    /// While the sink writes, a whole batch is taken; while it fails, only
    /// what fits in `audit.buffer_bytes`.
    fn has_room(&self) -> bool {
        !self.failing || self.backlog.size() < self.buffer_bytes
    }

    fn handle(&mut self, message: Message) {
        self.received += 1;
        match message {
            Message::Record(record) => self.seal(&record),
            Message::Wake => {}
        }
    }

    fn seal(&mut self, record: &AuditRecord) {
        match self.chain.seal(record) {
            Ok(sealed) => {
                self.backlog.push(&sealed.line, self.chain.next_seq());
                self.chain.advance(sealed);
            }
            Err(err) => {
                // Every field is a plain string, number or list: this is
                // not expected, but a record must never stop the writer.
                tracing::error!(error = %err, "cannot serialize an audit record");
                self.shared.dropped();
            }
        }
    }

    /// Flushes asked for, and a reopen (SIGHUP, SIGUSR1).
    fn take_requests(&mut self) {
        for request in self.shared.take_flush_requests() {
            let reserve = self.flush_timeout / 5;
            let give_up_at = request.deadline.checked_sub(reserve);
            self.wait_for(Some(request.done), give_up_at.unwrap_or(request.deadline));
        }
        if self.shared.reopen.swap(false, Ordering::AcqRel) {
            if let Err(err) = self.sink.reopen() {
                tracing::warn!(error = %err, "cannot reopen the audit file yet; records wait in memory");
            }
            // Whatever waits is tried again now, not after the backoff.
            self.retry = Retry::new();
        }
    }

    /// Everything in the channel now was sent before the flush was asked
    /// for, or soon after: it is written before the flush is answered.
    fn wait_for(&mut self, done: Option<oneshot::Sender<Flushed>>, give_up_at: Instant) {
        self.waits.push(Wait {
            mark: self.received + self.rx.len() as u64,
            give_up_at,
            done,
        });
    }

    /// Records kept aside with `fail_closed` were sent before the ones now
    /// arriving; they are few (requests in flight), so the buffer's limit
    /// does not apply to them.
    fn drain_overflow(&mut self) {
        if self.shared.overflow_len.load(Ordering::Acquire) == 0 {
            return;
        }
        for record in self.shared.take_overflow() {
            self.seal(&record);
        }
    }

    /// Hand what waits to the sink, when the backoff allows: a fresh batch
    /// whole, lines that waited a chunk at a time (the queue is drained
    /// between two appends).
    fn write_backlog(&mut self) {
        if !self.can_write() {
            return;
        }
        let limit = if self.catching_up {
            self.chunk
        } else {
            usize::MAX
        };
        let chunk = self.backlog.front(limit);
        let result = self.sink.append(chunk);
        let appended = match &result {
            Ok(()) => chunk.len(),
            Err(err) => err.appended,
        };
        let taken = self.backlog.take_front(appended);
        self.count_written(&taken);
        let was_failing = self.failing;
        self.failing = result.is_err() && !self.backlog.is_empty();
        self.catching_up = (self.catching_up || result.is_err()) && !self.backlog.is_empty();
        match result {
            Ok(()) => {
                self.retry = Retry::new();
                if was_failing {
                    tracing::info!(
                        waited = taken.records + self.backlog.records() as u64,
                        "the audit sink writes again; the records that waited follow, in order"
                    );
                }
            }
            Err(err) => {
                self.retry.failed();
                self.shared.metrics.write_errors.inc();
                if !was_failing && self.failing {
                    tracing::error!(
                        error = %err,
                        buffer_bytes = self.buffer_bytes,
                        "cannot write to the audit sink; records wait in memory (audit.buffer_bytes) and are written when it can"
                    );
                } else if self.shared.warn_due() {
                    tracing::warn!(
                        error = %err,
                        waiting_records = self.backlog.records(),
                        waiting_bytes = self.backlog.size(),
                        "the audit sink still cannot write; retrying"
                    );
                }
            }
        }
    }

    fn count_written(&self, taken: &Taken) {
        let metrics = &self.shared.metrics;
        metrics.written.inc_by(taken.records);
        if let Some(seq) = taken.last_seq {
            metrics.last_seq.set(i64::try_from(seq).unwrap_or(i64::MAX));
        }
    }

    /// Answer the flushes whose records are written; at a flush's deadline,
    /// spill what still waits.
    fn answer_flushes(&mut self) {
        if self.waits.is_empty() {
            return;
        }
        let caught_up =
            self.backlog.is_empty() && self.shared.overflow_len.load(Ordering::Acquire) == 0;
        let received = self.received;
        let now = Instant::now();
        let overdue = self
            .waits
            .iter()
            .any(|w| w.give_up_at <= now && !(caught_up && w.mark <= received));
        let report = if overdue {
            self.give_up()
        } else {
            Flushed::default()
        };
        let received = self.received;
        let (answered, waiting): (Vec<Wait>, Vec<Wait>) =
            std::mem::take(&mut self.waits).into_iter().partition(|w| {
                (self.backlog.is_empty() && w.mark <= received) || (overdue && w.give_up_at <= now)
            });
        self.waits = waiting;
        for wait in answered {
            if let Some(done) = wait.done {
                let _ = done.send(report.clone());
            }
        }
    }

    /// The deadline came with records still waiting: take everything
    /// queued, try the sink once more, then spill the rest (or count it).
    fn give_up(&mut self) -> Flushed {
        while let Ok(message) = self.rx.try_recv() {
            self.handle(message);
        }
        self.drain_overflow();
        // One more try, now: everything if the sink writes again.
        self.retry = Retry::new();
        while self.can_write() {
            self.write_backlog();
        }
        if self.backlog.is_empty() {
            return Flushed::default();
        }
        let records = self.backlog.records() as u64;
        let spilled = self
            .spill
            .as_ref()
            .map(|spill| spill.write(self.backlog.bytes()));
        match spilled {
            Some(Ok(file)) => {
                self.backlog.take_front(self.backlog.size());
                self.failing = false;
                self.shared.metrics.spilled.inc_by(records);
                // The sink's file must not run on from before the spill.
                self.sink.start_new_file();
                tracing::error!(
                    spilled = records,
                    spill_file = %file.display(),
                    "audit records the sink could not take before the flush deadline were spilled, their chain intact"
                );
                Flushed {
                    unwritten: 0,
                    spilled: records,
                    spill_file: Some(file),
                }
            }
            Some(Err(err)) => {
                tracing::error!(
                    unwritten = records,
                    error = %err,
                    "audit records could not be written before the flush deadline, nor spilled"
                );
                self.unwritten(records)
            }
            None => {
                tracing::error!(
                    unwritten = records,
                    "audit records could not be written before the flush deadline (audit.spill_path would keep them)"
                );
                self.unwritten(records)
            }
        }
    }

    /// `records` stay in memory, retried; once the writer is closing they
    /// are lost with it, and counted as dropped.
    fn unwritten(&mut self, records: u64) -> Flushed {
        if self.closed {
            self.backlog.take_front(self.backlog.size());
            self.failing = false;
            self.shared.metrics.dropped.inc_by(records);
        }
        Flushed {
            unwritten: records,
            ..Flushed::default()
        }
    }

    /// End a run of drops once none was counted for [`DROPS_QUIET`].
    fn watch_drops(&mut self) {
        if !self.shared.dropping.load(Ordering::Acquire) {
            return;
        }
        let total = self.shared.metrics.dropped.get();
        let now = Instant::now();
        if total != self.drops_seen.0 {
            self.drops_seen = (total, now);
            return;
        }
        if now.duration_since(self.drops_seen.1) < DROPS_QUIET
            || self.shared.buffer_full.load(Ordering::Acquire)
        {
            return;
        }
        self.shared.dropping.store(false, Ordering::Release);
        let before = self.shared.dropped_before.load(Ordering::Acquire);
        tracing::error!(
            dropped = total.saturating_sub(before),
            dropped_total = total,
            "audit records are no longer being dropped"
        );
    }

    fn publish(&self) {
        let full = self.failing && self.backlog.size() >= self.buffer_bytes;
        self.shared.buffer_full.store(full, Ordering::Release);
        let metrics = &self.shared.metrics;
        metrics
            .buffered_records
            .set(i64::try_from(self.backlog.records()).unwrap_or(i64::MAX));
        metrics
            .buffered_bytes
            .set(i64::try_from(self.backlog.size()).unwrap_or(i64::MAX));
    }
}

/// Resume the chain from the sink's last line, or from the newest spill
/// when it goes further (the last shutdown spilled): then the sink starts
/// a new file, so that each file holds one unbroken run.
pub(super) fn chain_start(sink: &mut dyn Sink, spill: Option<&Spill>, hasher: Hasher) -> Chain {
    let last = match sink.last_line() {
        Ok(last) => last,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the audit sink's last line");
            None
        }
    };
    let (chain, why) = Chain::resume(hasher.clone(), last.as_deref());
    let spilled = spill.and_then(|spill| match spill.last_line() {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the last audit spill");
            None
        }
    });
    if let Some((line, _)) = spilled {
        let (from_spill, spill_why) = Chain::resume(hasher, Some(&line));
        let later = time_of(&line) >= last.as_deref().and_then(time_of);
        let further = why.is_some() || from_spill.next_seq() > chain.next_seq();
        if spill_why.is_none() && later && further {
            tracing::info!(
                seq = from_spill.next_seq(),
                "the audit chain continues from the last spill; starting a new audit file"
            );
            sink.start_new_file();
            return from_spill;
        }
    }
    if why == Some(NewChain::UnverifiableTail) {
        tracing::warn!(
            "the audit sink's last line is not a record this key verifies: starting a new chain"
        );
    }
    chain
}

/// A record's `time`: RFC 3339 UTC strings of one writer order as strings.
fn time_of(line: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    value.get("time")?.as_str().map(str::to_owned)
}

/// Exponential backoff between appends to a failing sink.
struct Retry {
    wait: Duration,
    next: Option<Instant>,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            wait: RETRY_FIRST,
            next: None,
        }
    }

    fn due(&self) -> bool {
        self.next.is_none_or(|next| Instant::now() >= next)
    }

    fn failed(&mut self) {
        self.next = Some(Instant::now() + self.wait);
        self.wait = (self.wait * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::audit::record::sample;
    use crate::audit::verify::verify;
    use crate::audit::{AuditConfig, AuditSettings, Auditor, MemorySink};
    use crate::config::ConfigErrors;

    fn settings(config: AuditConfig) -> AuditSettings {
        ConfigErrors::collect(|errors| config.validate(errors)).expect("valid")
    }

    fn ids(sink: &MemorySink) -> Vec<String> {
        sink.records()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Poll `check` for up to ten seconds.
    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..1000 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting for {what}");
    }

    fn write_lines(path: &std::path::Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").expect("write");
    }

    #[tokio::test]
    async fn records_wait_in_memory_while_the_sink_fails_and_follow_in_order() {
        let sink = MemorySink::new();
        let config = AuditConfig {
            fail_closed: true,
            queue_capacity: 16,
            ..AuditConfig::default()
        };
        let mut registry = Registry::default();
        let auditor = Auditor::with_sink(&settings(config), Box::new(sink.clone()), &mut registry)
            .expect("auditor");
        auditor.record(sample(0));
        auditor.flush().await;
        sink.set_failing(true);
        // Far more than the queue holds, each admitted: the buffer takes them.
        let buffered = || auditor.shared.metrics.buffered_records.get();
        for n in 1..200 {
            assert!(auditor.admit().is_ok(), "refused at {n}");
            auditor.record(sample(n));
            if n % 8 == 0 {
                until("the writer to take them", || buffered() == n as i64).await;
            }
        }
        until("the writer to hold them all", || buffered() == 199).await;
        assert_eq!(
            auditor.not_ready(),
            None,
            "waiting records keep a replica ready"
        );
        assert_eq!(auditor.dropped(), 0);
        sink.set_failing(false);
        auditor.flush().await;
        let expected: Vec<String> = (0..200).map(|n| format!("req-{n}")).collect();
        assert_eq!(ids(&sink), expected);
        assert_eq!(auditor.shared.metrics.buffered_bytes.get(), 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("copy.log");
        write_lines(&copy, &sink.lines());
        verify(&[copy], &Hasher::Sha256, false).expect("one unbroken chain");
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_without_fail_closed() {
        let sink = MemorySink::new();
        let config = AuditConfig {
            queue_capacity: 2,
            buffer_bytes: 3000,
            ..AuditConfig::default()
        };
        let auditor = Auditor::with_sink(
            &settings(config),
            Box::new(sink.clone()),
            &mut Registry::default(),
        )
        .expect("auditor");
        sink.set_failing(true);
        for n in 0..100 {
            auditor.record(sample(n));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        until("drops", || auditor.dropped() > 0).await;
        assert!(auditor.not_ready().is_some());
        sink.set_failing(false);
        auditor.flush().await;
        assert_eq!(sink.records().len() as u64 + auditor.dropped(), 100);
        until("the end of the run of drops", || {
            !auditor.shared.dropping.load(Ordering::Acquire)
        })
        .await;
        assert_eq!(auditor.not_ready(), None);
    }

    #[tokio::test]
    async fn a_flush_past_its_deadline_spills_what_waits_with_its_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = MemorySink::new();
        // The spill gets a fifth of the timeout: room enough on a loaded
        // machine (500 ms left 100 ms, which a busy CI could miss).
        let config = AuditConfig {
            flush_timeout: "2s".into(),
            spill_path: Some(dir.path().to_owned()),
            ..AuditConfig::default()
        };
        let auditor = Auditor::with_sink(
            &settings(config),
            Box::new(sink.clone()),
            &mut Registry::default(),
        )
        .expect("auditor");
        for n in 0..3 {
            auditor.record(sample(n));
        }
        assert_eq!(auditor.flush().await, Flushed::default());
        sink.set_failing(true);
        for n in 3..10 {
            auditor.record(sample(n));
        }
        let flushed = auditor.flush().await;
        assert_eq!((flushed.spilled, flushed.unwritten), (7, 0), "{flushed:?}");
        let spill_file = flushed.spill_file.expect("a spill file");
        assert_eq!(sink.new_files(), 1, "the sink's file must not run on");
        let head = dir.path().join("head.log");
        write_lines(&head, &sink.lines());
        let summary = verify(&[spill_file, head], &Hasher::Sha256, false).expect("verifies");
        assert_eq!(summary.records, 10);
        assert_eq!(auditor.shared.metrics.spilled.get(), 7);
    }

    #[tokio::test]
    async fn a_flush_past_its_deadline_without_a_spill_path_reports_what_waits() {
        let sink = MemorySink::new();
        let config = AuditConfig {
            flush_timeout: "300ms".into(),
            ..AuditConfig::default()
        };
        let auditor = Auditor::with_sink(
            &settings(config),
            Box::new(sink.clone()),
            &mut Registry::default(),
        )
        .expect("auditor");
        sink.set_failing(true);
        for n in 0..5 {
            auditor.record(sample(n));
        }
        let flushed = auditor.flush().await;
        assert_eq!(flushed.unwritten, 5, "{flushed:?}");
        // Still held, and written once the sink takes them.
        sink.set_failing(false);
        assert_eq!(auditor.flush().await, Flushed::default());
        assert_eq!(sink.records().len(), 5);
    }

    #[tokio::test]
    async fn a_reopen_makes_the_file_again_without_a_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let sink = crate::audit::FileSink::open(&path, 1 << 20).expect("open");
        let auditor = Auditor::with_sink(
            &settings(AuditConfig::default()),
            Box::new(sink),
            &mut Registry::default(),
        )
        .expect("auditor");
        auditor.record(sample(0));
        auditor.flush().await;
        std::fs::rename(&path, dir.path().join("audit.log.1")).expect("mv");
        auditor.reopen();
        until("the file made again", || path.exists()).await;
    }

    #[test]
    fn the_chain_continues_from_a_spill_that_goes_further() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = Spill::new(dir.path());
        let (mut chain, _) = Chain::resume(Hasher::Sha256, None);
        let mut sink = MemorySink::new();
        let mut lines = Vec::new();
        for n in 0..4 {
            let sealed = chain.seal(&sample(n)).expect("seal");
            lines.push(sealed.line.clone());
            chain.advance(sealed);
        }
        sink.append(&lines[..2].concat()).expect("append");
        spill.write(&lines[2..].concat()).expect("spill");
        let resumed = chain_start(&mut sink, Some(&spill), Hasher::Sha256);
        assert_eq!(resumed.next_seq(), 4);
        assert_eq!(sink.new_files(), 1);
        // An older spill than the sink's own tail is left alone.
        let mut ahead = MemorySink::new();
        ahead.append(&lines.concat()).expect("append");
        let sealed = chain.seal(&sample(4)).expect("seal");
        ahead.append(&sealed.line).expect("append");
        let resumed = chain_start(&mut ahead, Some(&spill), Hasher::Sha256);
        assert_eq!(resumed.next_seq(), 5);
        assert_eq!(ahead.new_files(), 0);
    }
}
