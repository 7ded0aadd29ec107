//! The example policies built into the binary, so `firegate dev` works from
//! any directory (an installed binary, an image) with the same quick start.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// `policies/*.yaml` (not the `*.test.yaml` cases), as compiled in.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("catalog.yaml", include_str!("../../policies/catalog.yaml")),
    ("notes.yaml", include_str!("../../policies/notes.yaml")),
    ("people.yaml", include_str!("../../policies/people.yaml")),
    (
        "platform.yaml",
        include_str!("../../policies/platform.yaml"),
    ),
    ("secrets.yaml", include_str!("../../policies/secrets.yaml")),
    ("status.yaml", include_str!("../../policies/status.yaml")),
    ("teams.yaml", include_str!("../../policies/teams.yaml")),
];

/// Where `firegate dev` reads its policies from.
#[derive(Debug)]
pub enum PolicySource {
    /// A directory given with `--policies`, or `./policies` when present.
    Dir(PathBuf),
    /// [`BUILT_IN`] written to a private temporary directory, removed on drop.
    BuiltIn(BuiltInDir),
}

impl PolicySource {
    /// `explicit` wins; else `./policies` if it is a directory; else the
    /// built-in examples.
    pub fn resolve(explicit: Option<&Path>) -> anyhow::Result<PolicySource> {
        if let Some(dir) = explicit {
            return Ok(PolicySource::Dir(dir.to_owned()));
        }
        let local = Path::new("policies");
        if local.is_dir() {
            return Ok(PolicySource::Dir(local.to_owned()));
        }
        Ok(PolicySource::BuiltIn(BuiltInDir::write()?))
    }

    pub fn dir(&self) -> &Path {
        match self {
            PolicySource::Dir(dir) => dir,
            PolicySource::BuiltIn(built_in) => &built_in.0,
        }
    }

    /// For the banner.
    pub fn describe(&self) -> String {
        match self {
            PolicySource::Dir(dir) => dir.display().to_string(),
            PolicySource::BuiltIn(_) => {
                "the examples built into the binary (no ./policies here; --policies DIR to choose)"
                    .to_owned()
            }
        }
    }
}

/// A temporary directory holding [`BUILT_IN`].
#[derive(Debug)]
pub struct BuiltInDir(PathBuf);

impl BuiltInDir {
    fn write() -> anyhow::Result<BuiltInDir> {
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!(
            "firegate-dev-policies-{}-{suffix:016x}",
            std::process::id()
        ));
        // `create_dir` (not `_all`) fails if the name is taken: never write
        // into a directory someone else prepared.
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let built = BuiltInDir(dir);
        for (name, text) in BUILT_IN {
            let path = built.0.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(built)
    }
}

impl Drop for BuiltInDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_policy_file_is_built_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(&root)
            .expect("policies/")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".yaml") && !n.ends_with(".test.yaml"))
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            on_disk, built_in,
            "BUILT_IN must list every policies/*.yaml"
        );
    }

    #[test]
    fn the_built_in_dir_compiles_and_is_removed_on_drop() {
        let source = PolicySource::BuiltIn(BuiltInDir::write().expect("written"));
        let dir = source.dir().to_owned();
        let table = crate::policy::Table::from_dir(&dir, 1);
        assert!(table.is_ok(), "{:?}", table.err());
        drop(source);
        assert!(!dir.exists());
    }
}
