//! `firegate audit report`: from audit files whose chain verifies, requests
//! per principal and per collection, denials by rule and reason, shadow
//! verdicts, each with when it was first and last seen.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::Hasher;
use super::verify::{Summary, VerifyError, verify};

/// Counts over a time span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    pub errors: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

impl Tally {
    fn add(&mut self, decision: &str, time: &str) {
        self.requests += 1;
        match decision {
            "allow" => self.allowed += 1,
            "deny" => self.denied += 1,
            _ => self.errors += 1,
        }
        // RFC 3339 UTC times of one writer order as strings.
        if self.first_seen.as_deref().is_none_or(|f| time < f) {
            self.first_seen = Some(time.to_string());
        }
        if self.last_seen.as_deref().is_none_or(|l| time > l) {
            self.last_seen = Some(time.to_string());
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub records: u64,
    pub totals: Tally,
    /// Keyed `subject (email) via issuer`; `(unauthenticated)` when none.
    pub principals: BTreeMap<String, Tally>,
    /// Collection paths with document ids as `*` (`/teams/*/deployments`).
    pub collections: BTreeMap<String, Tally>,
    /// Refused requests by reason (`rule:no-secrets`, `no_rule_matched`, …).
    pub denials_by_reason: BTreeMap<String, Tally>,
    /// Refused targets by the rule that refused them.
    pub denials_by_rule: BTreeMap<String, Tally>,
    /// Shadow verdicts: `rule → would allow / would deny` counts.
    pub shadow: BTreeMap<String, Tally>,
    /// Access requests per `requestable` entry: the evidence an access
    /// review asks for.
    pub grants: BTreeMap<String, GrantCounts>,
}

/// One `requestable` entry's requests and grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GrantCounts {
    pub requested: u64,
    pub denied: u64,
    pub released: u64,
    pub revoked: u64,
    /// Requests that became grants (approved, or break-glass).
    pub approved: BTreeSet<String>,
    /// Grants that allowed at least one decision.
    pub used: BTreeSet<String>,
}

impl GrantCounts {
    /// Approved grants that never allowed anything.
    pub fn unused(&self) -> usize {
        self.approved.difference(&self.used).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("audit files do not verify, no report: {0}")]
    Unverified(#[from] VerifyError),
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// Verify `files` as one chain, then summarize them.
pub fn report(
    files: &[PathBuf],
    hasher: &Hasher,
    allow_partial: bool,
) -> Result<(Summary, Report), ReportError> {
    let summary = verify(files, hasher, allow_partial)?;
    let mut report = Report::default();
    for file in files {
        let io = |source| ReportError::Io {
            file: file.clone(),
            source,
        };
        for line in BufReader::new(File::open(file).map_err(io)?).lines() {
            let line = line.map_err(io)?;
            // Verified lines are JSON objects; anything else was refused above.
            if let Ok(record) = serde_json::from_str::<Value>(&line) {
                report.add(&record);
            }
        }
    }
    Ok((summary, report))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(String::from)
}

impl Report {
    pub fn add(&mut self, r: &Value) {
        let time = text(r, "time").unwrap_or_default();
        let decision = text(r, "decision").unwrap_or_default();
        self.records += 1;
        self.totals.add(&decision, &time);
        let principal = r
            .get("principal")
            .filter(|p| !p.is_null())
            .map(|p| {
                let subject = text(p, "subject").unwrap_or_default();
                let issuer = text(p, "issuer").unwrap_or_default();
                match text(p, "email") {
                    Some(email) => format!("{subject} ({email}) via {issuer}"),
                    None => format!("{subject} via {issuer}"),
                }
            })
            .unwrap_or_else(|| "(unauthenticated)".into());
        self.principals
            .entry(principal)
            .or_default()
            .add(&decision, &time);
        let targets: Vec<&Value> = r
            .get("targets")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let collections: BTreeSet<String> = targets
            .iter()
            .filter_map(|t| text(t, "resource"))
            .map(|res| collection_of(&res))
            .collect();
        for c in collections {
            self.collections.entry(c).or_default().add(&decision, &time);
        }
        if decision == "deny" {
            let reason = text(r, "reason").unwrap_or_else(|| "(none)".into());
            self.denials_by_reason
                .entry(reason)
                .or_default()
                .add(&decision, &time);
            let rules: BTreeSet<String> = targets
                .iter()
                .filter(|t| t.get("allowed") == Some(&Value::Bool(false)))
                .map(|t| text(t, "rule").unwrap_or_else(|| "(no rule)".into()))
                .collect();
            for rule in rules {
                self.denials_by_rule
                    .entry(rule)
                    .or_default()
                    .add(&decision, &time);
            }
        }
        if let Some(access) = r.get("access").filter(|a| a.is_object()) {
            let entry = text(access, "requestable").unwrap_or_default();
            let id = text(access, "id").unwrap_or_default();
            let counts = self.grants.entry(entry).or_default();
            match text(access, "event").as_deref() {
                Some("requested") => counts.requested += 1,
                Some("denied") => counts.denied += 1,
                Some("released") => counts.released += 1,
                Some("revoked") => counts.revoked += 1,
                Some("approved" | "break_glass")
                    if text(access, "state").as_deref() == Some("active") =>
                {
                    counts.approved.insert(id);
                }
                _ => {}
            }
        }
        for t in &targets {
            if let (Some(grant), Some(entry)) = (text(t, "grant"), text(t, "rule")) {
                self.grants.entry(entry).or_default().used.insert(grant);
            }
        }
        if let (Some(rule), Some(shadow)) = (text(r, "shadow_rule"), text(r, "shadow_decision")) {
            self.shadow.entry(rule).or_default().add(&shadow, &time);
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} records: {} allowed, {} denied, {} errors, {} .. {}",
            self.records,
            self.totals.allowed,
            self.totals.denied,
            self.totals.errors,
            self.totals.first_seen.as_deref().unwrap_or("-"),
            self.totals.last_seen.as_deref().unwrap_or("-"),
        );
        section(&mut out, "requests per principal", &self.principals);
        section(&mut out, "requests per collection", &self.collections);
        section(&mut out, "denials by reason", &self.denials_by_reason);
        section(&mut out, "denials by rule", &self.denials_by_rule);
        if !self.grants.is_empty() {
            let _ = writeln!(out, "\naccess requests per requestable entry:");
            for (entry, g) in &self.grants {
                let _ = writeln!(
                    out,
                    "  {entry}: {} requested, {} approved, {} denied, {} released, {} revoked; grants used {}, unused {}",
                    g.requested,
                    g.approved.len(),
                    g.denied,
                    g.released,
                    g.revoked,
                    g.used.len(),
                    g.unused(),
                );
            }
        }
        if !self.shadow.is_empty() {
            section(
                &mut out,
                "shadow rules (would allow / would deny)",
                &self.shadow,
            );
        }
        out
    }
}

fn section(out: &mut String, title: &str, rows: &BTreeMap<String, Tally>) {
    let _ = writeln!(out, "\n{title}:");
    if rows.is_empty() {
        out.push_str("  (none)\n");
    }
    for (key, t) in rows {
        let _ = writeln!(
            out,
            "  {key}: {} requests ({} allowed, {} denied, {} errors), first {}, last {}",
            t.requests,
            t.allowed,
            t.denied,
            t.errors,
            t.first_seen.as_deref().unwrap_or("-"),
            t.last_seen.as_deref().unwrap_or("-"),
        );
    }
}

/// The collection a target's resource lies in, document ids as `*`:
/// `/teams/a/deployments/d1` → `/teams/*/deployments`; scopes over many
/// collections keep their marker (`/teams/*/**/logs`, `/teams/*/**`).
pub fn collection_of(resource: &str) -> String {
    let segments: Vec<&str> = resource.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        if *s == "**" || s.starts_with(':') {
            out.push('/');
            out.push_str(s);
            out.extend(segments[i + 1..].iter().map(|s| format!("/{s}")));
            return out;
        }
        let last = i + 1 == segments.len();
        // Even positions are collection ids; a trailing document id goes.
        if i.is_multiple_of(2) {
            out.push('/');
            out.push_str(s);
        } else if !last {
            out.push_str("/*");
        }
    }
    if out.is_empty() { "/".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::record::{AuditTarget, Outcome, sample};

    #[test]
    fn collections_hide_document_ids() {
        assert_eq!(
            collection_of("/teams/a/deployments/d1"),
            "/teams/*/deployments"
        );
        assert_eq!(
            collection_of("/teams/a/deployments"),
            "/teams/*/deployments"
        );
        assert_eq!(collection_of("/catalog/x"), "/catalog");
        assert_eq!(collection_of("/teams/a/**/logs"), "/teams/*/**/logs");
        assert_eq!(collection_of("/:collectionIds"), "/:collectionIds");
    }

    fn write(records: &[crate::audit::AuditRecord]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (mut chain, _) = Chain::resume(Hasher::Sha256, None);
        let mut bytes = Vec::new();
        for r in records {
            let sealed = chain.seal(r).unwrap();
            bytes.extend_from_slice(&sealed.line);
            chain.advance(sealed);
        }
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn counts_principals_collections_and_denials() {
        let allowed = sample(1);
        let mut denied = sample(2);
        denied.time = "2026-11-29T09:00:00Z".into();
        denied.decision = Outcome::Deny;
        denied.reason = Some("rule:no-secrets".into());
        denied.targets = vec![AuditTarget {
            resource: "/secrets/s1".into(),
            access: "get".into(),
            allowed: false,
            rule: Some("no-secrets".into()),
            why: Some("deny_matched".into()),
            grant: None,
        }];
        denied.shadow_decision = Some(Outcome::Deny);
        denied.shadow_rule = Some("hide".into());
        let (_dir, path) = write(&[allowed, denied]);
        let (summary, report) =
            report(std::slice::from_ref(&path), &Hasher::Sha256, false).unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(report.records, 2);
        let ada =
            &report.principals["user:default/ada (ada@example.com) via https://issuer.example"];
        assert_eq!((ada.requests, ada.allowed, ada.denied), (2, 1, 1));
        assert_eq!(ada.first_seen.as_deref(), Some("2026-11-28T13:00:00Z"));
        assert_eq!(ada.last_seen.as_deref(), Some("2026-11-29T09:00:00Z"));
        assert_eq!(report.collections["/teams/*/deployments"].allowed, 1);
        assert_eq!(report.collections["/secrets"].denied, 1);
        assert_eq!(report.denials_by_reason["rule:no-secrets"].requests, 1);
        assert_eq!(report.denials_by_rule["no-secrets"].requests, 1);
        assert_eq!(report.shadow["hide"].denied, 1);
        let text = report.text();
        assert!(
            text.contains("denials by rule:\n  no-secrets: 1 requests"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_chain_gets_no_report() {
        let (_dir, path) = write(&[sample(1), sample(2)]);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("ada", "eve", 1)).unwrap();
        let err = report(&[path], &Hasher::Sha256, false).unwrap_err();
        assert!(err.to_string().contains("do not verify"), "{err}");
    }
}

#[cfg(test)]
mod grant_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn access_requests_are_counted_per_entry_with_used_and_unused_grants() {
        let mut report = Report::default();
        let event = |event: &str, id: &str, state: &str| {
            json!({"time": "t", "decision": "error", "targets": [],
                   "access": {"event": event, "id": id, "requestable": "deploys", "state": state}})
        };
        for r in [
            event("requested", "a", "pending"),
            event("requested", "b", "pending"),
            event("requested", "c", "pending"),
            event("approved", "a", "active"),
            event("approved", "b", "pending"),
            event("approved", "b", "active"),
            event("denied", "c", "denied"),
            event("revoked", "b", "revoked"),
            json!({"time": "t", "decision": "allow", "targets": [
                {"access": "update", "allowed": true, "resource": "/x/y", "rule": "deploys",
                 "why": "granted", "grant": "a"}]}),
        ] {
            report.add(&r);
        }
        let g = &report.grants["deploys"];
        assert_eq!((g.requested, g.denied, g.revoked), (3, 1, 1));
        assert_eq!(g.approved.len(), 2);
        assert_eq!((g.used.len(), g.unused()), (1, 1));
        assert!(
            report.text().contains(
                "deploys: 3 requested, 2 approved, 1 denied, 0 released, 1 revoked; grants used 1, unused 1"
            ),
            "{}",
            report.text()
        );
    }
}
