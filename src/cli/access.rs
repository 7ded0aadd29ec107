//! `firegate policy who-can`, `what-can` and `diff`: the access analyses
//! of `policy::analysis` read from policy directories and printed as text
//! or JSON.

use std::path::Path;

use clap::ValueEnum;

use super::principal::PrincipalSpec;
use crate::policy::Table;
use crate::policy::analysis::diff::{FailOn, diff};
use crate::policy::analysis::granted::granted;
use crate::policy::analysis::what_can::what_can;
use crate::policy::analysis::who_can::who_can;
use crate::policy::analysis::{ALL_ACCESSES, PathSet, accesses};
use crate::policy::pattern::Pattern;

/// How a tool prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

fn load(dir: &Path) -> anyhow::Result<Table> {
    Table::from_dir(dir, 1)
        .map_err(|e| anyhow::anyhow!("invalid policy in {}:\n{e}", dir.display()))
}

/// [`load`], catalog-bound rules expanded against the snapshot, if given.
fn load_with(dir: &Path, catalog: Option<&super::catalog::Snapshot>) -> anyhow::Result<Table> {
    match catalog {
        None => load(dir),
        Some(s) => Table::from_dir_expanded(dir, &s.view.index, 1)
            .map_err(|e| anyhow::anyhow!("invalid policy in {}:\n{e}", dir.display())),
    }
}

fn print<T: serde::Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) -> String {
    match format {
        Format::Text => text(),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(value).unwrap_or_default();
            json.push('\n');
            json
        }
    }
}

/// `policy who-can DIR ACTION PATH`.
pub fn who_can_command(
    dir: &Path,
    action: &str,
    path: &str,
    database: Option<&str>,
    format: Format,
    catalog: Option<&Path>,
    grants: Option<&Path>,
) -> anyhow::Result<String> {
    let catalog = catalog.map(super::catalog::load).transpose()?;
    let grants = grants.map(super::state::load).transpose()?;
    let accesses = accesses(action).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown action `{action}` (known: get, list, create, update, delete, read, write)"
        )
    })?;
    let pattern = Pattern::parse(path).map_err(|e| anyhow::anyhow!("path `{path}` {e}"))?;
    let table = load_with(dir, catalog.as_ref())?;
    let paths = PathSet::of(&pattern);
    let mut answer = who_can(&table, &accesses, &paths, database);
    if let Some(grants) = &grants {
        answer.granted = granted(&table, grants, &accesses, &paths, database, None);
    }
    Ok(print(format, &answer, || answer.text()))
}

/// `policy what-can DIR PRINCIPAL-FILE`.
pub fn what_can_command(
    dir: &Path,
    principal_file: &Path,
    database: Option<&str>,
    format: Format,
    catalog: Option<&Path>,
    grants: Option<&Path>,
) -> anyhow::Result<String> {
    let catalog = catalog.map(super::catalog::load).transpose()?;
    let grants = grants.map(super::state::load).transpose()?;
    let text = std::fs::read_to_string(principal_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", principal_file.display()))?;
    let spec: PrincipalSpec = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", principal_file.display()))?;
    let table = load_with(dir, catalog.as_ref())?;
    let principal = spec.principal();
    let mut answer = what_can(&table, &principal, database);
    if let Some(grants) = &grants {
        let everything = PathSet::everything();
        answer.granted = granted(
            &table,
            grants,
            &ALL_ACCESSES,
            &everything,
            database,
            Some(&principal),
        );
    }
    Ok(print(format, &answer, || answer.text()))
}

/// `policy diff OLD NEW`: the output, and whether `--fail-on` fails it.
pub fn diff_command(
    old: &Path,
    new: &Path,
    database: Option<&str>,
    format: Format,
    fail_on: Option<&str>,
    catalog: Option<&Path>,
) -> anyhow::Result<(String, bool)> {
    let catalog = catalog.map(super::catalog::load).transpose()?;
    let fail_on = fail_on
        .map(|f| {
            FailOn::parse(f)
                .ok_or_else(|| anyhow::anyhow!("--fail-on `{f}`: use gained, lost or any"))
        })
        .transpose()?;
    let (old, new) = (
        load_with(old, catalog.as_ref())?,
        load_with(new, catalog.as_ref())?,
    );
    let changes = diff(&old, &new, database);
    let failed = fail_on.is_some_and(|f| changes.fails(f));
    Ok((print(format, &changes, || changes.text()), failed))
}
