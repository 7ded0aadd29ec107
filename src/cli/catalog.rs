//! Catalog snapshots for the offline tools: `firegate catalog dump` writes
//! one from a running Backstage (`{"items": [...]}`, entities as
//! `by-query` returns them); `policy check`, `who-can`, `diff` and `test`
//! read one with `--catalog FILE` (or a test file's `catalog:`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::catalog::{Identities, Index, PAGE_SIZE, View, fetch_all, snapshot_items};

/// A snapshot read from a file.
pub struct Snapshot {
    pub view: View,
    /// How long ago the file was written.
    pub age: Option<Duration>,
}

/// The index of the snapshot at `path`. Principals are catalog users by
/// their subject (`user:default/alice`).
pub fn load(path: &Path) -> anyhow::Result<Snapshot> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let items = snapshot_items(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok());
    Ok(Snapshot {
        view: View::fixed(Index::from_items(items), Identities::from_subjects()),
        age,
    })
}

/// A fixture given inline (`{items: [...]}` or a list of entities) or as a
/// snapshot file's path relative to `dir`.
pub fn fixture(value: &Value, dir: &Path) -> Result<View, String> {
    let items = match value {
        Value::String(file) => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("catalog {}: {e}", path.display()))?;
            snapshot_items(&text)?
        }
        other => snapshot_items(&other.to_string())?,
    };
    Ok(View::fixed(
        Index::from_items(items),
        Identities::from_subjects(),
    ))
}

/// `firegate catalog dump`: every entity of the catalog at `url`, as the
/// snapshot JSON.
pub async fn dump(url: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("firegate/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let items = fetch_all(&client, url.trim_end_matches('/'), token, PAGE_SIZE).await?;
    let mut out = serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?;
    out.push('\n');
    Ok(out)
}
