//! Where audit lines go: stdout, an append-only file rotated by size, or
//! memory (tests only).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;
use time::macros::format_description;

/// A destination for complete audit lines. Called only from the writer
/// thread, so it may block.
pub trait Sink: Send + 'static {
    /// Append one line (it ends with `\n`), or buffer it until [`Sink::flush`].
    /// On error nothing of the line may remain, so that a retry cannot leave
    /// a fragment behind.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;

    /// Push buffered lines to the medium. On error they stay buffered for
    /// the next flush, and nothing of them remains in the medium.
    fn flush(&mut self) -> io::Result<()>;

    /// The last complete line already in the sink, to continue its chain.
    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// Standard output, for container platforms that collect it.
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// An append-only file. When the next line would take it past `max_bytes`
/// it is renamed to `<path>.<UTC timestamp>` and a new file is started; the
/// chain runs on across files, because it lives in the writer, not here.
pub struct FileSink {
    path: PathBuf,
    file: File,
    /// Bytes of the active file, the buffered lines included.
    len: u64,
    /// Bytes of the active file already written to it.
    written: u64,
    /// Lines taken since the last flush: the writer flushes once per batch,
    /// so a busy proxy makes one `write` per batch, not one per record.
    buffer: Vec<u8>,
    max_bytes: u64,
    fsync: bool,
}

impl FileSink {
    /// Open (or create) `path` for appending. A fragment left at the end by
    /// a crash is closed with a newline, so that new lines stay whole.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<FileSink> {
        FileSink::open_with(path, max_bytes, false)
    }

    /// [`FileSink::open`], and with `fsync` every flush also reaches the
    /// disk (survives a power loss, at the cost of one `fdatasync` per batch).
    pub fn open_with(path: &Path, max_bytes: u64, fsync: bool) -> io::Result<FileSink> {
        let mut file = open_append(path)?;
        let mut len = file.metadata()?.len();
        if len > 0 && last_byte(path, len)? != b'\n' {
            file.write_all(b"\n")?;
            len += 1;
        }
        Ok(FileSink {
            path: path.to_owned(),
            file,
            len,
            written: len,
            buffer: Vec::new(),
            max_bytes,
            fsync,
        })
    }

    /// Append the buffered lines. A partial append is cut back and the
    /// lines stay buffered, so the retry writes each of them exactly once.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.file.write_all(&self.buffer) {
            // If even the cut fails the fragment is closed by the next
            // successful open, and `verify` reports it.
            let _ = self.file.set_len(self.written);
            return Err(err);
        }
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        self.file.sync_data()?;
        let rotated = rotated_name(&self.path)?;
        fs::rename(&self.path, &rotated)?;
        self.file = open_append(&self.path)?;
        self.len = 0;
        self.written = 0;
        Ok(())
    }
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let size = line.len() as u64;
        if self.len > 0 && self.len.saturating_add(size) > self.max_bytes {
            self.rotate()?;
        }
        self.buffer.extend_from_slice(line);
        self.len += size;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.write_buffer()?;
        if self.written > 0 {
            return read_last_line(&mut File::open(&self.path)?, self.written);
        }
        // An empty file after a rotation: the chain goes on from the newest
        // rotated file.
        match newest_rotated(&self.path)? {
            Some(rotated) => {
                let mut file = File::open(rotated)?;
                let len = file.metadata()?.len();
                read_last_line(&mut file, len)
            }
            None => Ok(None),
        }
    }
}

/// The rotated sibling of `path` whose name sorts last (the newest).
fn newest_rotated(path: &Path) -> io::Result<Option<PathBuf>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut newest: Option<String> = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(candidate) = entry.file_name().into_string() else {
            continue;
        };
        let is_rotated = candidate
            .strip_prefix(&prefix)
            .is_some_and(|stamp| stamp.starts_with(|c: char| c.is_ascii_digit()));
        if is_rotated && newest.as_ref().is_none_or(|n| candidate > *n) {
            newest = Some(candidate);
        }
    }
    Ok(newest.map(|n| dir.join(n)))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn last_byte(path: &Path, len: u64) -> io::Result<u8> {
    let mut reader = File::open(path)?;
    reader.seek(SeekFrom::Start(len - 1))?;
    let mut byte = [0u8; 1];
    reader.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// `<path>.<YYYYmmddTHHMMSS.ffffffZ>`: names sort in rotation order.
fn rotated_name(path: &Path) -> io::Result<PathBuf> {
    let stamp = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
        ))
        .map_err(io::Error::other)?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    let mut candidate = PathBuf::from(&name);
    let mut n = 1;
    while candidate.exists() {
        let mut next = name.clone();
        next.push(format!("-{n}"));
        candidate = PathBuf::from(next);
        n += 1;
    }
    Ok(candidate)
}

/// The last non-empty line of the first `len` bytes, read backwards in
/// chunks so a large file is not read whole.
fn read_last_line(file: &mut File, len: u64) -> io::Result<Option<Vec<u8>>> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    while end > 0 {
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(end - 1))?;
        file.read_exact(&mut byte)?;
        if byte[0] != b'\n' {
            break;
        }
        end -= 1;
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut start = end;
    while start > 0 {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        if let Some(pos) = tail[..(end - start) as usize]
            .iter()
            .rposition(|&b| b == b'\n')
        {
            return Ok(Some(tail[pos + 1..(end - start) as usize].to_vec()));
        }
    }
    Ok((end > 0).then(|| tail[..end as usize].to_vec()))
}

/// Lines kept in memory, for tests (not selectable from the config). Clones
/// share the same lines; [`MemorySink::set_failing`] makes every write fail
/// until it is turned off, to exercise `fail_closed`.
#[derive(Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<MemoryLines>>,
}

#[derive(Default)]
struct MemoryLines {
    lines: Vec<String>,
    failing: bool,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Make writes fail (`true`) or succeed again (`false`).
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

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLines> {
        // A panicking test thread must not hide the lines from the others.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for MemorySink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.failing {
            return Err(io::Error::other("memory sink set to fail"));
        }
        let text = String::from_utf8_lossy(line);
        inner.lines.push(text.trim_end_matches('\n').to_owned());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().lines.last().map(|l| l.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(content: &[u8]) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        fs::write(&path, content).expect("write");
        let mut file = File::open(&path).expect("open");
        read_last_line(&mut file, content.len() as u64).expect("read")
    }

    #[test]
    fn last_line_is_found_across_chunks_and_trailing_newlines() {
        assert_eq!(last(b""), None);
        assert_eq!(last(b"\n\n"), None);
        assert_eq!(last(b"one"), Some(b"one".to_vec()));
        assert_eq!(last(b"one\ntwo\n"), Some(b"two".to_vec()));
        assert_eq!(last(b"one\ntwo\n\n"), Some(b"two".to_vec()));
        let long = vec![b'x'; 200 * 1024];
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.push(b'\n');
        assert_eq!(last(&content), Some(long));
    }

    #[test]
    fn rotation_moves_the_full_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 10).expect("open");
        sink.write_line(b"12345678\n").expect("write");
        sink.write_line(b"abcdefgh\n").expect("write");
        sink.flush().expect("flush");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(fs::read(&path).expect("read"), b"abcdefgh\n");
    }

    #[test]
    fn a_fragment_left_by_a_crash_is_closed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        fs::write(&path, b"whole\nfrag").expect("write");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.write_line(b"next\n").expect("write");
        sink.flush().expect("flush");
        assert_eq!(fs::read(&path).expect("read"), b"whole\nfrag\nnext\n");
    }

    #[test]
    fn lines_reach_the_file_in_one_write_per_flush_and_only_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.write_line(b"one\n").expect("write");
        sink.write_line(b"two\n").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"");
        sink.flush().expect("flush");
        sink.flush().expect("a second flush writes nothing again");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\n");
        assert_eq!(sink.last_line().expect("last"), Some(b"two".to_vec()));
    }
}
