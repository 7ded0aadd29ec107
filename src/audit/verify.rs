//! `firegate audit verify`: walk the chain across files, in chain order
//! whatever order they were given in, and name the first record that is
//! edited, missing or out of place.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{ChainFields, GENESIS, Hasher};
use super::order::{Unreadable, chain_order};

/// What a clean run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub records: u64,
    /// Where a new chain began (`prev` is the zero marker), first included.
    pub chain_starts: Vec<Location>,
    /// The first record continues an earlier chain (`--allow-partial`).
    pub partial: bool,
    /// The first record's `seq` (non-zero when older files were left out).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    /// The files in the order walked; `reordered` when not as given.
    pub order: Vec<PathBuf>,
    pub reordered: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok: {} records in {} files", self.records, self.files)?;
        if let (Some(first), Some(last)) = (self.first_seq, self.last_seq) {
            write!(f, ", seq {first}..={last}")?;
        }
        if let Some(hash) = &self.last_hash {
            write!(f, ", last hash {hash}")?;
        }
        if self.reordered {
            write!(f, "\nfiles in chain order:")?;
            for file in &self.order {
                write!(f, " {}", file.display())?;
            }
        }
        // After a partial first chain, any start is a new one.
        let new_chains = self.chain_starts.len() > usize::from(!self.partial);
        if new_chains {
            write!(f, "\nnew chains began at:")?;
            for at in &self.chain_starts {
                write!(f, " {at}")?;
            }
        }
        Ok(())
    }
}

/// A line in a file (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The first problem found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{at}: {problem}")]
    Broken { at: Location, problem: Problem },
    #[error("{}: {source}", .file.display())]
    Io { file: PathBuf, source: io::Error },
    #[error("{}: gzip-compressed: decompress it first (`gunzip -k`)", .file.display())]
    Compressed { file: PathBuf },
}

impl VerifyError {
    /// Where the chain broke, if it did (not for I/O errors).
    pub fn location(&self) -> Option<&Location> {
        match self {
            VerifyError::Broken { at, .. } => Some(at),
            VerifyError::Io { .. } | VerifyError::Compressed { .. } => None,
        }
    }
}

/// How a record fails the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not an audit record (not JSON with seq, prev and hash)")]
    NotARecord,
    #[error("line is not terminated: the file was truncated or a write was cut short")]
    Unterminated,
    #[error("hash does not match the record: it was edited (or written with a different HMAC key)")]
    HashMismatch,
    #[error(
        "chain does not start here (seq {seq}): earlier records are missing; pass --allow-partial if older files were removed on purpose"
    )]
    NoChainStart { seq: u64 },
    #[error("record seq {found} where seq {expected} was due: records are missing ({})", gap(*.expected, *.found, .before.as_ref()))]
    Missing {
        expected: u64,
        found: u64,
        /// Where the record before the gap is.
        before: Option<Location>,
    },
    #[error("record seq {found} where seq {expected} was due: records are out of order{}", .expected_line.map(|l| format!(" (seq {expected} is at line {l})")).unwrap_or_default())]
    Reordered {
        expected: u64,
        found: u64,
        /// Where the due record sits later in the same file, if it does.
        expected_line: Option<u64>,
    },
    #[error("prev does not match the hash of the record before: the chain is broken")]
    BrokenLink,
    #[error("a new chain starts with seq {seq}, not 0")]
    BadChainStart { seq: u64 },
}

/// `seq a..=b, after seq a-1 at FILE:LINE`: the records missing and the
/// one on each side.
fn gap(expected: u64, found: u64, before: Option<&Location>) -> String {
    let last_missing = found.saturating_sub(1);
    let mut text = if last_missing > expected {
        format!("seq {expected}..={last_missing}")
    } else {
        format!("seq {expected}")
    };
    if let Some(at) = before {
        text.push_str(&format!(
            ", between seq {} at {at} and seq {found} here",
            expected.saturating_sub(1)
        ));
    }
    text
}

/// Check `files` as one chain, put in chain order first (each file after
/// the one its first record links to). `allow_partial` accepts a first
/// record that continues an earlier chain (older rotated files deleted).
pub fn verify(
    files: &[PathBuf],
    hasher: &Hasher,
    allow_partial: bool,
) -> Result<Summary, VerifyError> {
    let order = chain_order(files).map_err(|(file, why)| match why {
        Unreadable::Io { source } => VerifyError::Io { file, source },
        Unreadable::Compressed => VerifyError::Compressed { file },
    })?;
    let mut walk = Walk {
        hasher,
        allow_partial,
        last_at: None,
        summary: Summary {
            files: files.len(),
            records: 0,
            chain_starts: Vec::new(),
            partial: false,
            first_seq: None,
            last_seq: None,
            last_hash: None,
            reordered: order != files,
            order: Vec::new(),
        },
    };
    for file in &order {
        walk.file(file)?;
    }
    walk.summary.order = order;
    Ok(walk.summary)
}

struct Walk<'a> {
    hasher: &'a Hasher,
    allow_partial: bool,
    /// Where the last record was.
    last_at: Option<Location>,
    summary: Summary,
}

impl Walk<'_> {
    fn file(&mut self, path: &Path) -> Result<(), VerifyError> {
        let io_error = |source| VerifyError::Io {
            file: path.to_owned(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io_error)? == 0 {
                return Ok(());
            }
            number += 1;
            let at = Location {
                file: path.to_owned(),
                line: number,
            };
            if let Err(problem) = self.line(&line, &at) {
                let problem = match problem {
                    Problem::Missing {
                        expected,
                        found,
                        before,
                    } => {
                        // A record due here that shows up further down was
                        // moved, not deleted.
                        match find_seq(&mut reader, expected, number) {
                            Some(line) => Problem::Reordered {
                                expected,
                                found,
                                expected_line: Some(line),
                            },
                            None => Problem::Missing {
                                expected,
                                found,
                                before,
                            },
                        }
                    }
                    other => other,
                };
                return Err(VerifyError::Broken { at, problem });
            }
        }
    }

    fn line(&mut self, line: &[u8], at: &Location) -> Result<(), Problem> {
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err(Problem::Unterminated);
        };
        let record = ChainFields::check(body, self.hasher).ok_or(Problem::NotARecord)?;
        if !record.hash_ok {
            return Err(Problem::HashMismatch);
        }
        self.link(&record, at)?;
        let s = &mut self.summary;
        s.records += 1;
        s.first_seq.get_or_insert(record.seq);
        s.last_seq = Some(record.seq);
        s.last_hash = Some(record.hash);
        self.last_at = Some(at.clone());
        Ok(())
    }

    /// Does `record` follow the one before it?
    fn link(&mut self, record: &ChainFields, at: &Location) -> Result<(), Problem> {
        if record.prev == GENESIS {
            if record.seq != 0 {
                return Err(Problem::BadChainStart { seq: record.seq });
            }
            self.summary.chain_starts.push(at.clone());
            return Ok(());
        }
        let (Some(last_seq), Some(last_hash)) = (self.summary.last_seq, &self.summary.last_hash)
        else {
            return if self.allow_partial {
                self.summary.partial = true;
                Ok(())
            } else {
                Err(Problem::NoChainStart { seq: record.seq })
            };
        };
        let expected = last_seq.saturating_add(1);
        if record.seq > expected {
            Err(Problem::Missing {
                expected,
                found: record.seq,
                before: self.last_at.clone(),
            })
        } else if record.seq < expected {
            Err(Problem::Reordered {
                expected,
                found: record.seq,
                expected_line: None,
            })
        } else if &record.prev != last_hash {
            Err(Problem::BrokenLink)
        } else {
            Ok(())
        }
    }
}

/// The line number, after `from`, of the first record with `seq` in the
/// rest of `reader`.
fn find_seq(reader: &mut impl BufRead, seq: u64, from: u64) -> Option<u64> {
    let mut line = Vec::new();
    let mut number = from;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => number += 1,
        }
        let found = serde_json::from_slice::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        if found == Some(seq) {
            return Some(number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::record::sample;

    /// A file of `count` records continuing `chain`, from `start` seconds.
    fn file(dir: &Path, name: &str, chain: &mut Chain, start: u64, count: u64) -> PathBuf {
        let mut content = Vec::new();
        for n in start..start + count {
            let mut record = sample(n);
            record.time = format!("2026-11-28T13:00:{n:02}Z");
            let sealed = chain.seal(&record).expect("seal");
            content.extend_from_slice(&sealed.line);
            chain.advance(sealed);
        }
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    #[test]
    fn a_new_chain_after_a_partial_one_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut old, _) = Chain::resume(Hasher::Sha256, None);
        let _dropped = file(dir.path(), "a", &mut old, 0, 2);
        let partial = file(dir.path(), "b", &mut old, 2, 2);
        let (mut new, _) = Chain::resume(Hasher::Sha256, None);
        let fresh = file(dir.path(), "c", &mut new, 4, 2);
        let summary = verify(&[partial, fresh.clone()], &Hasher::Sha256, true).expect("ok");
        assert!(summary.partial);
        let text = summary.to_string();
        assert!(
            text.contains(&format!("new chains began at: {}:1", fresh.display())),
            "{text}"
        );
    }

    #[test]
    fn a_gap_names_the_records_on_either_side() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut chain, _) = Chain::resume(Hasher::Sha256, None);
        let first = file(dir.path(), "audit.log.3", &mut chain, 0, 3);
        let _missing = file(dir.path(), "audit.log.2", &mut chain, 3, 4);
        let last = file(dir.path(), "audit.log.1", &mut chain, 7, 2);
        let err =
            verify(&[last.clone(), first.clone()], &Hasher::Sha256, false).expect_err("a gap");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:1: record seq 7 where seq 3 was due: records are missing (seq 3..=6, between seq 2 at {}:3 and seq 7 here)",
                last.display(),
                first.display()
            )
        );
    }
}
