//! The audit file: appended in whole lines, rotated by size, and followed
//! when someone else renames, removes or truncates it (logrotate's `create`
//! and `copytruncate`, a cleanup job, a person).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

use super::sink::{AppendError, Sink};

/// An append-only file at `path`. When the next line would take it past
/// `max_bytes` it is renamed to `<path>.<UTC timestamp>` and a new file is
/// started. Before every append the path is looked at again (one `stat`),
/// so that lines follow the file to wherever the operator's tools moved it:
/// the chain runs on across files, because it lives in the writer.
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    fsync: bool,
    /// The file lines are appended to; `None` until one can be opened.
    open: Option<Active>,
    /// The next line starts a new file ([`Sink::start_new_file`]).
    new_file_due: bool,
    /// Appending to the file we have open although `path` no longer names
    /// it and no new file can be made there (logged once).
    stranded: bool,
}

/// The open file and what firegate knows of it.
struct Active {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes in the file: where the next line starts.
    len: u64,
}

impl Active {
    /// Open (or create) `path` for appending. A fragment left at the end by
    /// a crash is closed with a newline, so that new lines stay whole.
    fn open(path: &Path) -> io::Result<Active> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let meta = file.metadata()?;
        let mut active = Active {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        };
        active.close_fragment()?;
        Ok(active)
    }

    fn close_fragment(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let mut last = [0u8; 1];
        self.file.read_exact_at(&mut last, self.len - 1)?;
        if last[0] != b'\n' {
            self.file.write_all(b"\n")?;
            self.len += 1;
        }
        Ok(())
    }

    fn is(&self, meta: &Metadata) -> bool {
        (meta.dev(), meta.ino()) == (self.dev, self.ino)
    }

    /// Append `bytes` whole. A partial append is cut back, so the retry
    /// writes each line exactly once.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(err) = self.file.write_all(bytes) {
            // Never below what is there now: the file may have been
            // truncated meanwhile, and `set_len` would then grow it. If the
            // cut fails the fragment is closed by the next open, and
            // `verify` reports it.
            if self.file.metadata().is_ok_and(|m| m.len() > self.len) {
                let _ = self.file.set_len(self.len);
            }
            return Err(err);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

impl FileSink {
    /// Open (or create) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<FileSink> {
        FileSink::open_with(path, max_bytes, false)
    }

    /// [`FileSink::open`], and with `fsync` every append also reaches the
    /// disk (survives a power loss, at the cost of one `fdatasync` per batch).
    pub fn open_with(path: &Path, max_bytes: u64, fsync: bool) -> io::Result<FileSink> {
        Ok(FileSink {
            path: path.to_owned(),
            max_bytes,
            fsync,
            open: Some(Active::open(path)?),
            new_file_due: false,
            stranded: false,
        })
    }

    fn append_from(&mut self, lines: &[u8], appended: &mut usize) -> io::Result<()> {
        self.follow()?;
        if self.new_file_due {
            self.rotate()?;
            self.new_file_due = false;
        }
        while *appended < lines.len() {
            let rest = &lines[*appended..];
            let max_bytes = self.max_bytes;
            let active = self.active()?;
            let take = fitting(rest, active.len, max_bytes);
            if take == 0 {
                self.rotate()?;
                continue;
            }
            active.append(&rest[..take])?;
            *appended += take;
        }
        if self.fsync
            && let Some(active) = &self.open
        {
            active.file.sync_data()?;
        }
        Ok(())
    }

    /// The file lines go to, opened (created) at `path` if none is.
    fn active(&mut self) -> io::Result<&mut Active> {
        let active = match self.open.take() {
            Some(active) => active,
            None => Active::open(&self.path)?,
        };
        Ok(self.open.insert(active))
    }

    /// Keep appending to the file at `path`: if it is no longer the one
    /// open (renamed by logrotate's `create` mode, removed), open the one
    /// there now, creating it; if it shrank under the end of what was
    /// written (`copytruncate`), go on from its new end.
    fn follow(&mut self) -> io::Result<()> {
        let Some(active) = &mut self.open else {
            return Ok(());
        };
        // Any error is "not our file": a vanished directory, or one
        // replaced by a file (ENOTDIR), leaves nothing to append to there.
        let at_path = fs::metadata(&self.path).ok();
        if let Some(meta) = at_path.as_ref().filter(|m| active.is(m)) {
            if meta.len() < active.len {
                tracing::info!(
                    path = %self.path.display(),
                    was = active.len,
                    now = meta.len(),
                    "the audit file was truncated in place (copytruncate); appending from its new end"
                );
            }
            if meta.len() != active.len {
                active.len = meta.len();
                active.close_fragment()?;
            }
            self.stranded = false;
            return Ok(());
        }
        match Active::open(&self.path) {
            Ok(new) => {
                tracing::info!(
                    path = %self.path.display(),
                    "the audit file was renamed or removed; continuing the chain in a new file at its path"
                );
                self.open = Some(new);
                self.stranded = false;
                Ok(())
            }
            // The file we have open still exists under some name (its
            // directory moved, say): the lines are safer there than in
            // memory. Once it is removed too, they wait in the buffer.
            Err(err) if active.file.metadata()?.nlink() > 0 => {
                if !self.stranded {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %err,
                        "cannot open the audit file at its path; appending to the file already open, wherever it was moved"
                    );
                    self.stranded = true;
                }
                Ok(())
            }
            Err(err) => {
                self.open = None;
                Err(err)
            }
        }
    }

    /// Move the full file aside and start a new one. Never depends on
    /// `path` still naming the open file: if someone moved or removed it,
    /// it is already aside, and only the new file is made.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(active) = &self.open else {
            return Ok(());
        };
        if active.len == 0 {
            return Ok(());
        }
        active.file.sync_data()?;
        let still_there = fs::metadata(&self.path).is_ok_and(|m| active.is(&m));
        if still_there {
            match fs::rename(&self.path, rotated_name(&self.path)?) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let new = Active::open(&self.path)?;
        self.open = Some(new);
        self.stranded = false;
        Ok(())
    }
}

impl Sink for FileSink {
    fn append(&mut self, lines: &[u8]) -> Result<(), AppendError> {
        let mut appended = 0;
        self.append_from(lines, &mut appended)
            .map_err(|error| AppendError { appended, error })
    }

    fn last_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(active) = &mut self.open
            && active.len > 0
        {
            return read_last_line(&mut active.file, active.len);
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

    fn reopen(&mut self) -> io::Result<()> {
        self.follow()?;
        self.active().map(|_| ())
    }

    fn start_new_file(&mut self) {
        self.new_file_due = true;
    }
}

/// How many bytes at the start of `lines` (whole lines) fit in a file of
/// `len` bytes without passing `max_bytes`; an empty file takes at least
/// one line, however long.
fn fitting(lines: &[u8], len: u64, max_bytes: u64) -> usize {
    let room = usize::try_from(max_bytes.saturating_sub(len)).unwrap_or(usize::MAX);
    if lines.len() <= room {
        return lines.len();
    }
    match lines[..room].iter().rposition(|&b| b == b'\n') {
        Some(at) => at + 1,
        None if len == 0 => lines
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |at| at + 1),
        None => 0,
    }
}

/// The rotated sibling of `path` written last: `<name>.<digit>…` (firegate's
/// own timestamps, logrotate's `.1`), not compressed, newest by mtime —
/// logrotate's numbers count backwards, so names do not sort in time.
fn newest_rotated(path: &Path) -> io::Result<Option<PathBuf>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(candidate) = entry.file_name().into_string() else {
            continue;
        };
        let is_rotated = candidate
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            && !candidate.ends_with(".gz");
        if !is_rotated {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        let path = dir.join(&candidate);
        if newest
            .as_ref()
            .is_none_or(|(time, p)| (modified, &path) > (*time, p))
        {
            newest = Some((modified, path));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// `<path>.<YYYYmmddTHHMMSS.ffffffZ>` (with `-n` if taken): names sort in
/// rotation order.
pub(super) fn rotated_name(path: &Path) -> io::Result<PathBuf> {
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
pub(super) fn read_last_line(file: &mut File, len: u64) -> io::Result<Option<Vec<u8>>> {
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

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
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
    fn only_whole_lines_that_fit_are_taken() {
        let lines = b"aaaa\nbbbb\ncccc\n";
        assert_eq!(fitting(lines, 0, 100), 15);
        assert_eq!(fitting(lines, 0, 10), 10);
        assert_eq!(fitting(lines, 0, 9), 5);
        assert_eq!(fitting(lines, 0, 2), 5, "an empty file takes one line");
        assert_eq!(fitting(lines, 8, 10), 0);
        assert_eq!(fitting(lines, 5, 10), 5);
    }

    #[test]
    fn rotation_moves_the_full_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 10).expect("open");
        sink.append(b"12345678\n").expect("append");
        sink.append(b"abcdefgh\n").expect("append");
        assert_eq!(names(dir.path()).len(), 2);
        assert_eq!(fs::read(&path).expect("read"), b"abcdefgh\n");
    }

    #[test]
    fn one_append_rotates_as_often_as_its_lines_need() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 10).expect("open");
        sink.append(b"1111\n2222\n3333\n4444\n5555\n")
            .expect("append");
        assert_eq!(names(dir.path()).len(), 3);
        assert_eq!(fs::read(&path).expect("read"), b"5555\n");
    }

    #[test]
    fn a_fragment_left_by_a_crash_is_closed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        fs::write(&path, b"whole\nfrag").expect("write");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"next\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"whole\nfrag\nnext\n");
        assert_eq!(sink.last_line().expect("last"), Some(b"next".to_vec()));
    }

    #[test]
    fn a_renamed_file_is_followed_by_a_new_one_at_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let moved = dir.path().join("audit.log.1");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"one\n").expect("append");
        fs::rename(&path, &moved).expect("mv");
        sink.append(b"two\n").expect("append");
        assert_eq!(fs::read(&moved).expect("read"), b"one\n");
        assert_eq!(fs::read(&path).expect("read"), b"two\n");
    }

    #[test]
    fn a_removed_file_is_recreated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"one\n").expect("append");
        fs::remove_file(&path).expect("rm");
        sink.append(b"two\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"two\n");
    }

    #[test]
    fn reopen_creates_the_file_before_any_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"one\n").expect("append");
        fs::rename(&path, dir.path().join("audit.log.1")).expect("mv");
        sink.reopen().expect("reopen");
        assert_eq!(fs::read(&path).expect("read"), b"");
    }

    #[test]
    fn a_file_truncated_in_place_is_appended_from_its_new_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 12).expect("open");
        sink.append(b"1111\n2222\n").expect("append");
        fs::copy(&path, dir.path().join("audit.log.1")).expect("cp");
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        // Without noticing the truncation the sink would count 10 bytes
        // and rotate before this line.
        sink.append(b"3333\n").expect("append");
        sink.append(b"4444\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"3333\n4444\n");
        assert_eq!(names(dir.path()), ["audit.log", "audit.log.1"]);
    }

    #[test]
    fn rotation_goes_on_when_the_path_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 10).expect("open");
        sink.append(b"12345678\n").expect("append");
        // Removed between the check before this append and its rotation.
        fs::remove_file(&path).expect("rm");
        sink.rotate().expect("rotate");
        sink.append(b"abcdefgh\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"abcdefgh\n");
    }

    #[test]
    fn lines_wait_while_the_directory_is_gone_and_go_on_when_it_is_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).expect("mkdir");
        let path = logs.join("audit.log");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"one\n").expect("append");
        fs::remove_dir_all(&logs).expect("rm -r");
        let failed = sink.append(b"two\n").expect_err("no directory");
        assert_eq!(failed.appended, 0);
        fs::create_dir(&logs).expect("mkdir");
        sink.append(b"two\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"two\n");
    }

    #[test]
    fn a_moved_directory_keeps_the_lines_in_the_open_file_until_it_fills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("logs");
        let away = dir.path().join("away");
        fs::create_dir(&logs).expect("mkdir");
        let path = logs.join("audit.log");
        let mut sink = FileSink::open(&path, 10).expect("open");
        sink.append(b"1111\n").expect("append");
        fs::rename(&logs, &away).expect("mv");
        fs::write(&logs, b"not a directory").expect("file in its place");
        sink.append(b"2222\n").expect("append to the moved file");
        let full = sink.append(b"3333\n").expect_err("full, and no new file");
        assert_eq!(full.appended, 0);
        fs::remove_file(&logs).expect("rm");
        fs::rename(&away, &logs).expect("mv back");
        sink.append(b"3333\n").expect("append");
        let mut all = names(&logs);
        all.retain(|n| n != "audit.log");
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(fs::read(logs.join(&all[0])).expect("read"), b"1111\n2222\n");
        assert_eq!(fs::read(&path).expect("read"), b"3333\n");
    }

    #[test]
    fn a_new_file_is_started_on_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let mut sink = FileSink::open(&path, 1 << 20).expect("open");
        sink.append(b"one\n").expect("append");
        sink.start_new_file();
        sink.append(b"three\n").expect("append");
        assert_eq!(names(dir.path()).len(), 2);
        assert_eq!(fs::read(&path).expect("read"), b"three\n");
    }

    #[test]
    fn the_newest_rotated_file_is_the_last_written_whatever_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let old = dir.path().join("audit.log.2");
        let new = dir.path().join("audit.log.1");
        fs::write(&old, b"old\n").expect("write");
        fs::write(dir.path().join("audit.log.3.gz"), b"\x1f\x8b").expect("write");
        fs::write(&new, b"new\n").expect("write");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("mtime");
        assert_eq!(newest_rotated(&path).expect("dir"), Some(new));
    }
}
