//! Audit: one structured, hash-chained line per request, whatever happened.

mod backlog;
mod chain;
mod file;
mod order;
mod record;
pub mod report;
mod shared;
mod sink;
mod spill;
mod targets;
pub mod verify;
mod writer;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use chain::{GENESIS, Hasher, canonical};
pub use file::FileSink;
pub use record::{
    AccessCounts, AuditPrincipal, AuditRecord, AuditTarget, MAX_AUDIT_TAG_CHARS, MAX_AUDIT_TAGS,
    Outcome, TargetsSummary, Text, request_tags,
};
pub use shared::Flushed;
pub use sink::{AppendError, MemorySink, Sink, StdoutSink};
pub use targets::bound_targets;

use crate::config::errors::ConfigErrors;
use crate::config::value::{default_duration, duration};
use shared::{FlushRequest, Shared};
use spill::Spill;
use writer::{Message, Writer, WriterSettings};

/// Where records go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// One line per record on standard output (logs go to stderr).
    #[default]
    Stdout,
    /// Appended to `path`, rotated by size, followed when moved.
    File,
}

/// Raw `audit:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: SinkKind,
    /// The active file, with `sink: file`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Rotate when the next line would take the file past this size.
    #[serde(default = "defaults::max_file_bytes")]
    pub max_file_bytes: u64,
    /// With `sink: file`, `fdatasync` after every batch of lines.
    #[serde(default)]
    pub fsync: bool,
    /// A file holding a secret key: hashes become HMAC-SHA256.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
    /// Refuse new requests (503) once records could be lost: the sink
    /// cannot write and `buffer_bytes` are used up, or the queue is full.
    #[serde(default)]
    pub fail_closed: bool,
    /// Records that may wait for the writer.
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// Bytes of records kept in memory while the sink cannot write (disk
    /// full, a vanished directory); only beyond them are records dropped,
    /// or with `fail_closed` requests refused.
    #[serde(default = "defaults::buffer_bytes")]
    pub buffer_bytes: u64,
    /// How long a flush (at shutdown: after the drain) keeps trying a sink
    /// that cannot write before it spills what waits, or gives it up.
    #[serde(default = "defaults::flush_timeout")]
    pub flush_timeout: String,
    /// A directory, on another volume, for the records a flush could not
    /// write by its deadline; the next start continues the chain from them.
    #[serde(default)]
    pub spill_path: Option<PathBuf>,
    /// Beyond this many targets a record lists only the refused ones (at
    /// most this many) and summarizes the rest.
    #[serde(default = "defaults::max_listed_targets")]
    pub max_listed_targets: usize,
}

mod defaults {
    pub fn max_file_bytes() -> u64 {
        100 * 1024 * 1024
    }
    pub fn queue_capacity() -> usize {
        8192
    }
    pub fn buffer_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn flush_timeout() -> String {
        super::default_duration(super::FLUSH_TIMEOUT)
    }
    pub fn max_listed_targets() -> usize {
        100
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sink: SinkKind::Stdout,
            path: None,
            max_file_bytes: defaults::max_file_bytes(),
            fsync: false,
            hmac_key_file: None,
            fail_closed: false,
            queue_capacity: defaults::queue_capacity(),
            buffer_bytes: defaults::buffer_bytes(),
            flush_timeout: defaults::flush_timeout(),
            spill_path: None,
            max_listed_targets: defaults::max_listed_targets(),
        }
    }
}

/// Within `server.limits.drain_timeout` (30 s) plus this, a replica whose
/// sink cannot write still ends: 45 s, the shipped grace periods.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Smallest rotation size: a record with many targets must fit.
const MIN_FILE_BYTES: u64 = 64 * 1024;
/// Shortest HMAC key accepted (128 bits).
const MIN_KEY_BYTES: usize = 16;

/// Where the validated section sends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSettings {
    Stdout,
    File {
        path: PathBuf,
        max_file_bytes: u64,
        fsync: bool,
    },
}

/// The validated `audit:` section.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub sink: SinkSettings,
    /// Read when the auditor starts: hashes become HMAC-SHA256.
    pub hmac_key_file: Option<PathBuf>,
    pub fail_closed: bool,
    pub queue_capacity: NonZeroUsize,
    pub buffer_bytes: usize,
    pub flush_timeout: Duration,
    pub spill_path: Option<PathBuf>,
    pub max_listed_targets: usize,
}

impl AuditConfig {
    /// The typed `audit:` section, recording every problem.
    pub fn validate(self, errors: &mut ConfigErrors) -> AuditSettings {
        let sink = match (self.sink, self.path) {
            (SinkKind::File, None) => {
                errors.push("audit.path", "required with `sink: file`");
                SinkSettings::Stdout
            }
            (SinkKind::Stdout, Some(_)) => {
                errors.push("audit.path", "only used with `sink: file`");
                SinkSettings::Stdout
            }
            (SinkKind::File, Some(path)) => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                if parent.is_some_and(|p| !p.is_dir()) {
                    errors.push(
                        "audit.path",
                        format!("directory of `{}` does not exist", path.display()),
                    );
                }
                SinkSettings::File {
                    path,
                    max_file_bytes: self.max_file_bytes,
                    fsync: self.fsync,
                }
            }
            (SinkKind::Stdout, None) => SinkSettings::Stdout,
        };
        if self.fsync && self.sink != SinkKind::File {
            errors.push("audit.fsync", "only used with `sink: file`");
        }
        if self.max_file_bytes < MIN_FILE_BYTES {
            errors.push(
                "audit.max_file_bytes",
                format!("must be at least {MIN_FILE_BYTES}"),
            );
        }
        let queue_capacity = NonZeroUsize::new(self.queue_capacity).unwrap_or_else(|| {
            errors.push("audit.queue_capacity", "must be at least 1");
            NonZeroUsize::MIN
        });
        let buffer_bytes = usize::try_from(self.buffer_bytes).unwrap_or_else(|_| {
            errors.push("audit.buffer_bytes", "too large for this machine");
            usize::MAX
        });
        let flush_timeout =
            duration("audit.flush_timeout", &self.flush_timeout, errors).unwrap_or(FLUSH_TIMEOUT);
        if flush_timeout.is_zero() {
            errors.push("audit.flush_timeout", "must be more than 0s");
        }
        if let Some(spill) = &self.spill_path {
            validate_spill_path(spill, &sink, errors);
        }
        if let Some(path) = &self.hmac_key_file
            && let Err(e) = load_hmac_key(path)
        {
            errors.push("audit.hmac_key_file", e.to_string());
        }
        AuditSettings {
            sink,
            hmac_key_file: self.hmac_key_file,
            fail_closed: self.fail_closed,
            queue_capacity,
            buffer_bytes,
            flush_timeout,
            spill_path: self.spill_path,
            max_listed_targets: self.max_listed_targets,
        }
    }
}

/// A spill directory exists, and is not where the sink writes: a spill is
/// for when that place cannot be written.
fn validate_spill_path(spill: &Path, sink: &SinkSettings, errors: &mut ConfigErrors) {
    const KEY: &str = "audit.spill_path";
    if !spill.is_dir() {
        errors.push(KEY, format!("`{}` is not a directory", spill.display()));
        return;
    }
    if let SinkSettings::File { path, .. } = sink {
        let audit_dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(spill, audit_dir.unwrap_or(Path::new("."))) {
            errors.push(
                KEY,
                "is the directory of audit.path; spill to another volume",
            );
        }
    }
}

impl AuditSettings {
    fn hasher(&self) -> anyhow::Result<Hasher> {
        Ok(match &self.hmac_key_file {
            Some(path) => Hasher::Hmac(load_hmac_key(path)?),
            None => Hasher::Sha256,
        })
    }
}

/// Read an HMAC key file: its bytes, without trailing whitespace (so that
/// `echo`-made files and `--hmac-key` agree), at least 16 of them.
pub fn load_hmac_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut key = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if key.len() < MIN_KEY_BYTES {
        anyhow::bail!(
            "key in `{}` is shorter than {MIN_KEY_BYTES} bytes",
            path.display()
        );
    }
    Ok(key)
}

/// Why a request was refused by the audit layer itself.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit queue is full and fail_closed is set")]
    SinkBackedUp,
    #[error("audit sink cannot write and fail_closed is set")]
    SinkUnwritable,
}

impl AuditError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            AuditError::SinkBackedUp => "audit_backlog",
            AuditError::SinkUnwritable => "audit_sink_unwritable",
        }
    }
}

/// Takes records off the request path and hands them to the writer thread.
pub struct Auditor {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    fail_closed: bool,
    max_listed_targets: usize,
    flush_timeout: Duration,
}

impl Auditor {
    /// Open the configured sink, continue its chain, start the writer, and
    /// reopen the file on SIGHUP and SIGUSR1.
    pub async fn new(settings: &AuditSettings, registry: &mut Registry) -> anyhow::Result<Self> {
        let sink: Box<dyn Sink> = match &settings.sink {
            SinkSettings::Stdout => Box::new(StdoutSink),
            SinkSettings::File {
                path,
                max_file_bytes,
                fsync,
            } => {
                let sink = FileSink::open_with(path, *max_file_bytes, *fsync);
                Box::new(sink.map_err(|e| {
                    anyhow::anyhow!("cannot open audit file `{}`: {e}", path.display())
                })?)
            }
        };
        let auditor = Auditor::with_sink(settings, sink, registry)?;
        auditor.reopen_on_signals(matches!(settings.sink, SinkSettings::File { .. }));
        Ok(auditor)
    }

    /// Like [`Auditor::new`] with any sink, e.g. a [`MemorySink`] whose
    /// clone the caller keeps to read the records (tests) or make writes
    /// fail. `settings.sink` is ignored, and signals are not listened to.
    pub fn with_sink(
        settings: &AuditSettings,
        mut sink: Box<dyn Sink>,
        registry: &mut Registry,
    ) -> anyhow::Result<Self> {
        let spill = settings.spill_path.as_deref().map(Spill::new);
        let chain = writer::chain_start(sink.as_mut(), spill.as_ref(), settings.hasher()?);
        let (tx, rx) = mpsc::channel(settings.queue_capacity.get());
        let shared = Arc::new(Shared::new(registry));
        let writer = Writer::new(
            rx,
            sink,
            chain,
            Arc::clone(&shared),
            WriterSettings {
                buffer_bytes: settings.buffer_bytes,
                chunk: match settings.sink {
                    SinkSettings::File { max_file_bytes, .. } => usize::try_from(max_file_bytes)
                        .map_or(writer::CHUNK, |m| m.min(writer::CHUNK)),
                    SinkSettings::Stdout => writer::CHUNK,
                },
                spill,
                flush_timeout: settings.flush_timeout,
            },
        );
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())?;
        Ok(Auditor {
            tx,
            shared,
            fail_closed: settings.fail_closed,
            max_listed_targets: settings.max_listed_targets,
            flush_timeout: settings.flush_timeout,
        })
    }

    /// SIGHUP and SIGUSR1 (nginx's convention for reopening logs) make the
    /// writer look at the file now: after logrotate's `create` and its
    /// `postrotate` signal the new file exists before the next record.
    /// The writer also looks before every append, so a signal is never
    /// needed for correctness. (SIGHUP also reloads policies and the
    /// certificate, in `app`.) Listened to with any sink, so that SIGUSR1
    /// never ends the process; only a file is reopened.
    fn reopen_on_signals(&self, file: bool) {
        use tokio::signal::unix::{SignalKind, signal};
        for (name, kind) in [
            ("SIGHUP", SignalKind::hangup()),
            ("SIGUSR1", SignalKind::user_defined1()),
        ] {
            let mut signals = match signal(kind) {
                Ok(signals) => signals,
                Err(err) => {
                    tracing::warn!(signal = name, error = %err, "cannot listen for a signal to reopen the audit file");
                    continue;
                }
            };
            let tx = self.tx.downgrade();
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    // The auditor is gone: nothing to reopen.
                    let Some(tx) = tx.upgrade() else { break };
                    if file {
                        tracing::info!(signal = name, "reopening the audit file");
                        request_reopen(&shared, &tx);
                    }
                }
            });
        }
    }

    /// What SIGHUP and SIGUSR1 do: look at the audit file's path now.
    pub fn reopen(&self) {
        request_reopen(&self.shared, &self.tx);
    }

    /// How many targets a record lists in full (`audit.max_listed_targets`).
    pub fn max_listed_targets(&self) -> usize {
        self.max_listed_targets
    }

    /// Called before any work: with `fail_closed`, refuses new requests
    /// once records could be lost: the sink cannot write and the buffer is
    /// full, or the queue is.
    pub fn admit(&self) -> Result<(), AuditError> {
        if !self.fail_closed {
            return Ok(());
        }
        let refusal = if self.buffer_full() {
            Some(AuditError::SinkUnwritable)
        } else if self.tx.capacity() == 0 || self.shared.overflow_len.load(Ordering::Acquire) > 0 {
            Some(AuditError::SinkBackedUp)
        } else {
            None
        };
        match refusal {
            Some(err) => {
                self.shared.metrics.refused.inc();
                Err(err)
            }
            None => Ok(()),
        }
    }

    /// Queue the record of an admitted request; never blocks. When the
    /// queue is full: with `fail_closed` the record is kept aside and
    /// written next (new requests are refused meanwhile); otherwise it is
    /// dropped and counted.
    pub fn record(&self, record: AuditRecord) {
        match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Message::Record(record))) if self.fail_closed => {
                self.shared.push_overflow(*record);
            }
            Err(_) => self.shared.dropped(),
        }
    }

    /// Queue the record of a request [`Auditor::admit`] refused: dropped
    /// and counted when the queue is full, so that a flood of refusals
    /// cannot grow memory.
    pub fn record_refused(&self, record: AuditRecord) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            self.shared.dropped();
        }
    }

    /// Wait until every record queued before this call is written (for
    /// shutdown and tests), but no longer than `audit.flush_timeout`: by
    /// then what the sink could not take is spilled (`audit.spill_path`)
    /// or reported unwritten, and logged either way.
    pub async fn flush(&self) -> Flushed {
        let deadline = Instant::now() + self.flush_timeout;
        let (done, answer) = oneshot::channel();
        self.shared.request_flush(FlushRequest { deadline, done });
        // A full queue wakes the writer anyway.
        let _ = self.tx.try_send(Message::Wake);
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(flushed)) => flushed,
            // The writer is gone, or stuck inside a write: count what it holds.
            _ => {
                let unwritten = self.held();
                tracing::error!(
                    unwritten,
                    "the audit writer did not finish before the flush deadline; the records it holds are not written"
                );
                Flushed {
                    unwritten,
                    ..Flushed::default()
                }
            }
        }
    }

    /// `Some(reason)` once records could be lost: the sink cannot write
    /// and the buffer is full, or (with `fail_closed`) the queue is full.
    /// While records merely wait in the buffer the replica stays ready.
    pub fn not_ready(&self) -> Option<String> {
        if self.tx.is_closed() {
            Some("audit writer stopped".into())
        } else if self.buffer_full() {
            Some("audit sink cannot write and audit.buffer_bytes are used up".into())
        } else if self.fail_closed && self.tx.capacity() == 0 {
            Some("audit queue full".into())
        } else {
            None
        }
    }

    fn buffer_full(&self) -> bool {
        self.tx.is_closed() || self.shared.buffer_full.load(Ordering::Acquire)
    }

    /// Records queued, kept aside or waiting in the writer's buffer.
    fn held(&self) -> u64 {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        let buffered = u64::try_from(self.shared.metrics.buffered_records.get()).unwrap_or(0);
        queued as u64 + buffered + self.shared.overflow_len.load(Ordering::Acquire)
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.metrics.dropped.get()
    }
}

fn request_reopen(shared: &Shared, tx: &mpsc::Sender<Message>) {
    shared.reopen.store(true, Ordering::Release);
    // A full queue wakes the writer anyway.
    let _ = tx.try_send(Message::Wake);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<(String, String)> {
        let config: AuditConfig = match serde_yaml_ng::from_str(yaml) {
            Ok(config) => config,
            Err(e) => return vec![("(parse)".into(), e.to_string())],
        };
        let mut errors = ConfigErrors::default();
        config.validate(&mut errors);
        errors
            .errors
            .into_iter()
            .map(|e| (e.key, e.reason))
            .collect()
    }

    #[test]
    fn the_default_is_stdout_and_valid() {
        assert_eq!(errors("{}"), []);
        let settings =
            ConfigErrors::collect(|errors| AuditConfig::default().validate(errors)).expect("valid");
        assert_eq!(settings.sink, SinkSettings::Stdout);
        assert!(!settings.fail_closed);
        assert_eq!(settings.queue_capacity.get(), defaults::queue_capacity());
        assert_eq!(settings.buffer_bytes, 64 * 1024 * 1024);
        assert_eq!(settings.flush_timeout, FLUSH_TIMEOUT);
        assert_eq!(settings.spill_path, None);
    }

    #[test]
    fn a_file_sink_with_a_key_is_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("key");
        let yaml = format!(
            "{{sink: file, path: {}, hmac_key_file: {}, fsync: true, fail_closed: true}}",
            dir.path().join("audit.log").display(),
            key.display()
        );
        assert_eq!(errors(&yaml), []);
        let config: AuditConfig = serde_yaml_ng::from_str(&format!(
            "{{max_file_bytes: 65536, queue_capacity: 3, {}",
            &yaml[1..]
        ))
        .expect("parses");
        let settings = ConfigErrors::collect(|errors| config.validate(errors)).expect("valid");
        assert_eq!(
            settings.sink,
            SinkSettings::File {
                path: dir.path().join("audit.log"),
                max_file_bytes: 65536,
                fsync: true
            }
        );
        assert_eq!(settings.queue_capacity.get(), 3);
        assert_eq!(settings.hmac_key_file.as_deref(), Some(key.as_path()));
        assert!(settings.fail_closed);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = "{sink: stdout, path: /tmp/x.log, fsync: true, max_file_bytes: 10, queue_capacity: 0, flush_timeout: soon, spill_path: /nonexistent/spill, hmac_key_file: /nonexistent/key}";
        let keys: Vec<String> = errors(yaml).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "audit.path",
                "audit.fsync",
                "audit.max_file_bytes",
                "audit.queue_capacity",
                "audit.flush_timeout",
                "audit.spill_path",
                "audit.hmac_key_file"
            ]
        );
        let found = errors("{sink: file}");
        assert_eq!(found[0].0, "audit.path");
        let found = errors("{sink: file, path: /nonexistent-dir/audit.log}");
        assert!(found[0].1.contains("does not exist"), "{found:?}");
    }

    #[test]
    fn buffer_flush_and_spill_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        let spill = dir.path().join("spill");
        std::fs::create_dir(&logs).expect("mkdir");
        std::fs::create_dir(&spill).expect("mkdir");
        let file = |extra: &str| {
            format!(
                "{{sink: file, path: {}, {extra}}}",
                logs.join("audit.log").display()
            )
        };
        let yaml = file(&format!(
            "buffer_bytes: 0, flush_timeout: 2s, spill_path: {}",
            spill.display()
        ));
        assert_eq!(errors(&yaml), []);
        let config: AuditConfig = serde_yaml_ng::from_str(&yaml).expect("parses");
        let settings = ConfigErrors::collect(|errors| config.validate(errors)).expect("valid");
        assert_eq!(settings.buffer_bytes, 0);
        assert_eq!(settings.flush_timeout, Duration::from_secs(2));
        assert_eq!(settings.spill_path.as_deref(), Some(spill.as_path()));

        let found = errors(&file("flush_timeout: 0s"));
        assert_eq!(found[0].0, "audit.flush_timeout", "{found:?}");
        let found = errors(&file(&format!("spill_path: {}", logs.display())));
        assert_eq!(found[0].0, "audit.spill_path", "{found:?}");
        assert!(found[0].1.contains("another volume"), "{found:?}");
        let not_a_dir = dir.path().join("f");
        std::fs::write(&not_a_dir, "").expect("write");
        let found = errors(&file(&format!("spill_path: {}", not_a_dir.display())));
        assert!(found[0].1.contains("not a directory"), "{found:?}");
        // A spill path with the stdout sink: the pipe can break too.
        assert_eq!(errors(&format!("{{spill_path: {}}}", spill.display())), []);
    }

    #[test]
    fn unknown_keys_and_sinks_are_refused() {
        assert!(errors("{fail_close: true}")[0].1.contains("fail_close"));
        assert!(errors("{sink: syslog}")[0].1.contains("syslog"));
    }
}
