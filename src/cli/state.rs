//! The state export of `firegate access export`: the active grants the
//! caller may see, read back by `policy who-can --grants` and `what-can
//! --grants`. Each grant is a request as the API shows it (the `path` and
//! `actions` of `policy test`'s `grants:`, with its requester, database,
//! entry and end).

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::policy::{Actions, Grant};

/// The file: when it was taken, and the grants active then.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateExport {
    /// RFC 3339.
    pub exported_at: String,
    pub grants: Vec<ExportedGrant>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Requester {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One active grant (extra fields of the API's view are ignored).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedGrant {
    pub id: String,
    pub requestable: String,
    pub requester: Requester,
    pub database: String,
    pub path: String,
    pub actions: Vec<String>,
    /// RFC 3339: the grant's end.
    pub expires_at: String,
}

fn time(text: &str, what: &str) -> anyhow::Result<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| anyhow::anyhow!("{what} `{text}` is not an RFC 3339 time: {e}"))
}

/// The grants of the export at `file` still active when it was taken.
pub fn load(file: &Path) -> anyhow::Result<Vec<Grant>> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let export: StateExport =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let at = time(&export.exported_at, "exported_at")?;
    let mut grants = Vec::new();
    for g in export.grants {
        let bad = |e: String| anyhow::anyhow!("{}: grant {}: {e}", file.display(), g.id);
        let expires_at = time(&g.expires_at, "expires_at").map_err(|e| bad(e.to_string()))?;
        if expires_at <= at {
            continue;
        }
        grants.push(Grant {
            database: crate::model::path::database_name(&g.database)
                .map_err(|_| bad(format!("`{}` is not a database name", g.database)))?,
            pattern: crate::policy::requestable::requested_pattern(&g.path).map_err(bad)?,
            actions: Actions::parse_all(&g.actions).map_err(bad)?,
            id: g.id,
            entry: g.requestable,
            issuer: g.requester.issuer,
            subject: g.requester.subject,
            expires_at,
        });
    }
    Ok(grants)
}

/// The export of the API's `view=active` answer, taken at `now`: only the
/// requests still active (the API's own view already is).
pub fn export(active: &serde_json::Value, now: SystemTime) -> anyhow::Result<StateExport> {
    let requests = active["requests"].as_array().cloned().unwrap_or_default();
    let grants = requests
        .into_iter()
        .filter(|r| r["state"] == "active")
        .map(serde_json::from_value)
        .collect::<Result<Vec<ExportedGrant>, _>>()
        .map_err(|e| anyhow::anyhow!("the API's answer is not a list of requests: {e}"))?;
    Ok(StateExport {
        exported_at: time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)?,
        grants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_ended_before_the_export_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        let grant = |id: &str, until: &str| {
            serde_json::json!({
                "id": id, "requestable": "ops",
                "requester": {"issuer": "https://idp", "subject": "eve"},
                "database": "projects/p/databases/(default)",
                "path": "/ops/**", "actions": ["write"], "expires_at": until,
            })
        };
        let export = serde_json::json!({
            "exported_at": "2026-12-07T06:00:00Z",
            "grants": [grant("live", "2026-12-07T07:00:00Z"), grant("over", "2026-12-07T05:59:59Z")],
        });
        std::fs::write(&file, export.to_string()).unwrap();
        let grants = load(&file).unwrap();
        let ids: Vec<&str> = grants.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["live"]);
        assert_eq!(grants[0].pattern.to_string(), "/ops/{rest=**}");
        std::fs::write(&file, r#"{"exported_at": "then", "grants": []}"#).unwrap();
        assert!(load(&file).is_err());
    }
}
