//! Bounding the target list of one record: a request may name thousands of
//! documents, and its audit line must not grow with them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{AccessCounts, AuditTarget, TargetsSummary};

/// `targets` as a record carries them. Up to `max_listed` they are listed
/// in full; beyond, only the refused ones that the policy judged (at most
/// `max_listed`), with a summary of all: counts per access and outcome and
/// a SHA-256 digest of the full list, so the list can still be matched
/// against one recomputed elsewhere (`firegate policy check`).
pub fn bound_targets(
    targets: Vec<AuditTarget>,
    max_listed: usize,
) -> (Vec<AuditTarget>, Option<TargetsSummary>) {
    if targets.len() <= max_listed {
        return (targets, None);
    }
    // Counted per access kind in a short list (there are a handful), and
    // each target's canonical form written to one reused buffer: nothing
    // is allocated per target.
    let mut counted: Vec<(&str, AccessCounts)> = Vec::new();
    let mut json = Vec::new();
    let mut hasher = Sha256::new();
    hasher.update(b"[");
    for (i, target) in targets.iter().enumerate() {
        let access: &str = &target.access;
        let at = match counted.iter().position(|(a, _)| *a == access) {
            Some(at) => at,
            None => {
                counted.push((access, AccessCounts::default()));
                counted.len() - 1
            }
        };
        let counts = &mut counted[at].1;
        if target.allowed {
            counts.allowed += 1;
        } else {
            counts.refused += 1;
        }
        if i > 0 {
            hasher.update(b",");
        }
        // AuditTarget declares its fields sorted: this is its canonical form.
        json.clear();
        if serde_json::to_writer(&mut json, target).is_ok() {
            hasher.update(&json);
        }
    }
    hasher.update(b"]");
    let by_access: BTreeMap<String, AccessCounts> = counted
        .into_iter()
        .map(|(access, counts)| (access.to_owned(), counts))
        .collect();
    let count = targets.len() as u64;
    let listed: Vec<AuditTarget> = targets
        .into_iter()
        .filter(|t| !t.allowed && t.why.is_some())
        .take(max_listed)
        .collect();
    let summary = TargetsSummary {
        by_access,
        count,
        digest: hex::encode(hasher.finalize()),
        listed: listed.len() as u64,
    };
    (listed, Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: usize, access: &'static str, allowed: bool) -> AuditTarget {
        AuditTarget {
            access: access.into(),
            allowed,
            resource: format!("/logs/{i}").into(),
            rule: allowed.then(|| "logs".into()),
            grant: None,
            why: Some(
                if allowed {
                    "allowed"
                } else {
                    "no_rule_matched"
                }
                .into(),
            ),
        }
    }

    #[test]
    fn a_short_list_is_kept_whole() {
        let targets = vec![target(0, "get", true), target(1, "get", false)];
        let (listed, summary) = bound_targets(targets.clone(), 2);
        assert_eq!(listed, targets);
        assert!(summary.is_none());
    }

    #[test]
    fn a_long_list_keeps_the_refused_ones_counts_and_a_digest() {
        let targets: Vec<AuditTarget> = (0..10_000)
            .map(|i| target(i, if i % 2 == 0 { "get" } else { "update" }, i != 7))
            .collect();
        let full = serde_json::to_vec(&targets).unwrap();
        let (listed, summary) = bound_targets(targets, 100);
        let summary = summary.expect("summarized");
        assert_eq!(listed, vec![target(7, "update", false)]);
        assert_eq!(summary.count, 10_000);
        assert_eq!(summary.listed, 1);
        assert_eq!(
            summary.by_access["get"],
            AccessCounts {
                allowed: 5000,
                refused: 0
            }
        );
        assert_eq!(
            summary.by_access["update"],
            AccessCounts {
                allowed: 4999,
                refused: 1
            }
        );
        assert_eq!(summary.digest, hex::encode(Sha256::digest(&full)));
    }

    #[test]
    fn refused_targets_listed_are_capped_too() {
        let targets: Vec<AuditTarget> = (0..1000).map(|i| target(i, "get", false)).collect();
        let (listed, summary) = bound_targets(targets, 10);
        assert_eq!(listed.len(), 10);
        assert_eq!(summary.expect("summarized").by_access["get"].refused, 1000);
    }
}
