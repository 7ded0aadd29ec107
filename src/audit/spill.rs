//! The emergency spill: records the sink could not take before the flush
//! deadline (shutdown) go to a new file in `audit.spill_path`, on another
//! volume, their chain intact; the next start continues the chain from it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::file::{read_last_line, rotated_name};

/// Spill files are `audit.spill.<UTC timestamp>`: names sort in time.
const PREFIX: &str = "audit.spill";

/// The spill directory.
#[derive(Debug, Clone)]
pub(super) struct Spill {
    dir: PathBuf,
}

impl Spill {
    pub fn new(dir: &Path) -> Spill {
        Spill {
            dir: dir.to_owned(),
        }
    }

    /// Write `lines` to a new file and make them durable.
    pub fn write(&self, lines: &[u8]) -> io::Result<PathBuf> {
        let path = rotated_name(&self.dir.join(PREFIX))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(lines)?;
        file.sync_all()?;
        // The new name itself must survive a power loss too.
        File::open(&self.dir)?.sync_all()?;
        Ok(path)
    }

    /// The last line of the newest spill, and when it was written.
    pub fn last_line(&self) -> io::Result<Option<(Vec<u8>, std::time::SystemTime)>> {
        let mut newest: Option<PathBuf> = None;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let is_spill = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{PREFIX}.")));
            if is_spill && newest.as_ref().is_none_or(|n| path > *n) {
                newest = Some(path);
            }
        }
        let Some(path) = newest else {
            return Ok(None);
        };
        let mut file = File::open(&path)?;
        let meta = file.metadata()?;
        let modified = meta.modified()?;
        Ok(read_last_line(&mut file, meta.len())?.map(|line| (line, modified)))
    }
}
