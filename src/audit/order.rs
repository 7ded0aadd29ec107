//! The order in which audit files form one chain, whatever they are named
//! (firegate's timestamps, logrotate's `.1`, `.2`, a spill) and however
//! they were given: each file goes after the one whose last record its
//! first record links to.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::GENESIS;
use super::file::read_last_line;

/// What links a file to the others.
struct Ends {
    /// The first record's `prev`, and its `time` (which orders files that
    /// link to none: chain starts and the files after a gap).
    first: Option<(String, String)>,
    /// The last record's `hash`.
    last_hash: Option<String>,
}

/// Why a file could not even be placed.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("{source}")]
    Io {
        #[from]
        source: io::Error,
    },
    #[error("gzip-compressed: decompress it first (`gunzip -k`)")]
    Compressed,
}

/// `files` in chain order. Files that follow none (the start of a chain,
/// the first file after a gap, an empty or damaged one) come by their first
/// record's time, then as given; each is followed by the files that link to
/// it, so that `verify` walks one chain and names any gap where it is.
pub fn chain_order(files: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, Unreadable)> {
    let ends: Vec<Ends> = files
        .iter()
        .map(|f| ends(f).map_err(|e| (f.clone(), e)))
        .collect::<Result<_, _>>()?;
    let mut by_last: HashMap<&str, usize> = HashMap::new();
    for (i, e) in ends.iter().enumerate() {
        if let Some(hash) = &e.last_hash {
            by_last.entry(hash.as_str()).or_insert(i);
        }
    }
    let mut next: Vec<Option<usize>> = vec![None; files.len()];
    let mut heads = Vec::new();
    for (i, e) in ends.iter().enumerate() {
        let before = e
            .first
            .as_ref()
            .filter(|(prev, _)| prev != GENESIS)
            .and_then(|(prev, _)| by_last.get(prev.as_str()).copied())
            .filter(|&b| b != i && next[b].is_none());
        match before {
            Some(b) => next[b] = Some(i),
            None => heads.push(i),
        }
    }
    heads.sort_by(|&a, &b| {
        let time = |i: usize| ends[i].first.as_ref().map(|(_, t)| t.as_str());
        time(a).cmp(&time(b)).then(a.cmp(&b))
    });
    let mut order = Vec::with_capacity(files.len());
    let mut placed = vec![false; files.len()];
    for head in heads {
        let mut at = Some(head);
        while let Some(i) = at.filter(|&i| !placed[i]) {
            placed[i] = true;
            order.push(files[i].clone());
            at = next[i];
        }
    }
    // Only a cycle of links is left, which hashes make impossible.
    order.extend(
        files
            .iter()
            .zip(&placed)
            .filter(|(_, placed)| !**placed)
            .map(|(f, _)| f.clone()),
    );
    Ok(order)
}

fn ends(path: &Path) -> Result<Ends, Unreadable> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut magic = [0u8; 2];
    if len >= 2 {
        file.read_exact(&mut magic)?;
        if magic == [0x1f, 0x8b] {
            return Err(Unreadable::Compressed);
        }
    }
    let mut first_line = Vec::new();
    BufReader::new(File::open(path)?).read_until(b'\n', &mut first_line)?;
    let first = parse(&first_line).and_then(|v| {
        let prev = v.get("prev")?.as_str()?.to_owned();
        let time = v.get("time").and_then(Value::as_str).unwrap_or_default();
        Some((prev, time.to_owned()))
    });
    let last_hash = read_last_line(&mut file, len)?
        .and_then(|line| parse(&line))
        .and_then(|v| v.get("hash")?.as_str().map(str::to_owned));
    Ok(Ends { first, last_hash })
}

fn parse(line: &[u8]) -> Option<Value> {
    serde_json::from_slice(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Chain, Hasher};
    use crate::audit::record::sample;

    /// `runs` consecutive runs of records of one chain, each in a file.
    fn files(dir: &Path, runs: &[(&str, u64)]) -> Vec<PathBuf> {
        let (mut chain, _) = Chain::resume(Hasher::Sha256, None);
        let mut paths = Vec::new();
        let mut n = 0;
        for (name, count) in runs {
            let mut content = Vec::new();
            for _ in 0..*count {
                let mut record = sample(n);
                record.time = format!("2026-11-28T13:00:{n:02}Z");
                let sealed = chain.seal(&record).expect("seal");
                content.extend_from_slice(&sealed.line);
                chain.advance(sealed);
                n += 1;
            }
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write");
            paths.push(path);
        }
        paths
    }

    fn names(order: &[PathBuf]) -> Vec<String> {
        order
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn files_given_in_any_order_are_put_in_chain_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(
            dir.path(),
            &[("audit.log.2", 2), ("audit.log.1", 3), ("audit.log", 2)],
        );
        let given = vec![f[2].clone(), f[0].clone(), f[1].clone()];
        let order = chain_order(&given).expect("order");
        assert_eq!(names(&order), ["audit.log.2", "audit.log.1", "audit.log"]);
    }

    #[test]
    fn the_file_after_a_gap_comes_by_time_and_empty_files_do_not_matter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path(), &[("a", 2), ("b", 2), ("c", 2), ("d", 0)]);
        let given = vec![f[3].clone(), f[2].clone(), f[0].clone()];
        let order = chain_order(&given).expect("order");
        assert_eq!(names(&order), ["d", "a", "c"]);
    }

    #[test]
    fn a_compressed_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gz = dir.path().join("audit.log.2.gz");
        std::fs::write(&gz, b"\x1f\x8b\x08\x00").expect("write");
        let (file, why) = chain_order(std::slice::from_ref(&gz)).expect_err("compressed");
        assert_eq!(file, gz);
        assert!(matches!(why, Unreadable::Compressed));
    }
}
