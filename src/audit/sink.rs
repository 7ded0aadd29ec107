//! Where audit lines go: stdout, an append-only file (`file.rs`), or memory
//! (tests only).

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// A destination for complete audit lines. Called only from the writer
/// thread, so it may block.
pub trait Sink: Send + 'static {
    /// Append `lines` (whole lines, each ending with `\n`) in order. On
    /// error the first [`AppendError::appended`] bytes (whole lines) are in
    /// the medium and nothing of the rest is, so a retry of the rest writes
    /// each line exactly once.
    fn append(&mut self, lines: &[u8]) -> Result<(), AppendError>;

    /// The last complete line already in the sink, to continue its chain.
    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Look again at where lines go now rather than at the next append
    /// (SIGHUP, SIGUSR1): a file someone renamed or removed is replaced at
    /// once.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The next line does not follow the last one in the medium (the lines
    /// between were written elsewhere): a file sink starts a new file, so
    /// that every file holds one unbroken run of the chain.
    fn start_new_file(&mut self) {}
}

/// Part of an append failed.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct AppendError {
    /// Bytes at the start of the lines that did reach the medium.
    pub appended: usize,
    #[source]
    pub error: io::Error,
}

impl AppendError {
    pub fn nothing(error: io::Error) -> AppendError {
        AppendError { appended: 0, error }
    }
}

/// Standard output, for container platforms that collect it.
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        let mut out = io::stdout().lock();
        let mut written = 0;
        while written < lines.len() {
            match out.write(&lines[written..]) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(whole_lines(lines, written, error));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A pipe cannot take a fragment back: the retry repeats the
                // cut line whole after it, and `verify` names the fragment.
                Err(error) => return Err(whole_lines(lines, written, error)),
            }
        }
        out.flush().map_err(|error| AppendError {
            appended: lines.len(),
            error,
        })
    }
}

/// `written` bytes of `lines` went out: count only the whole lines.
fn whole_lines(lines: &[u8], written: usize, error: io::Error) -> AppendError {
    let appended = lines[..written]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    AppendError { appended, error }
}

/// Lines kept in memory, for tests (not selectable from the config). Clones
/// share the same lines; [`MemorySink::set_failing`] makes every append
/// fail until it is turned off, to exercise `fail_closed` and the buffer.
#[derive(Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<MemoryLines>>,
}

#[derive(Default)]
struct MemoryLines {
    lines: Vec<String>,
    failing: bool,
    new_files: usize,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Make appends fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Every line written so far, without the trailing newline.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// Every record written so far, parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.lock()
            .lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How often the writer asked for a new file.
    pub fn new_files(&self) -> usize {
        self.lock().new_files
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLines> {
        // A panicking test thread must not hide the lines from the others.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for MemorySink {
    fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        let mut inner = self.lock();
        if inner.failing {
            return Err(AppendError::nothing(io::Error::other(
                "memory sink set to fail",
            )));
        }
        let text = String::from_utf8_lossy(lines);
        inner.lines.extend(text.lines().map(str::to_owned));
        Ok(())
    }

    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().lines.last().map(|l| l.as_bytes().to_vec()))
    }

    fn start_new_file(&mut self) {
        self.lock().new_files += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_lines_count_as_appended() {
        let lines = b"one\ntwo\nthree\n";
        let cut = |n| whole_lines(lines, n, io::Error::other("x")).appended;
        assert_eq!(cut(0), 0);
        assert_eq!(cut(3), 0);
        assert_eq!(cut(4), 4);
        assert_eq!(cut(9), 8);
        assert_eq!(cut(lines.len()), lines.len());
    }
}
