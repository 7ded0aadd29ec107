//! The per-collection policy table: `Principal` × `Operation` → `Decision`.

pub mod analysis;
mod cache;
#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod catalog_tests;
mod compile;
mod condition;
pub mod coverage;
#[cfg(test)]
mod data_tests;
mod decide;
mod engine;
mod expand;
mod explain;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod format;
#[cfg(test)]
mod grant_tests;
pub mod grants;
mod mask;
#[cfg(test)]
mod mask_tests;
pub mod pattern;
mod prefetch;
pub mod requestable;
mod seen;
mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use decide::Verdict;

use crate::model::{Operation, Target};

pub use compile::{Actions, CatalogWho};
pub use decide::Request;
pub use engine::PolicyEngine;

/// What an open stream's verdicts were judged against: the table's epoch
/// and the catalog's generation, the caller's grants' generation and how
/// many were unexpired ([`PolicyEngine::version`]).
pub type JudgedVersion = ((u64, u64), u64, usize);

/// What changes for every caller at once ([`PolicyEngine::changes`]).
pub type Changes = (u64, u64, u64);
pub use explain::{CatalogSeen, DataSeen, FieldSeen};
pub use format::{PolicyError, PolicyErrors};
pub use grants::{Grant, Grants};
pub use mask::Masked;
pub use table::Table;

/// Raw `policy:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `*.yaml` policy files.
    #[serde(default = "default_dir")]
    pub dir: std::path::PathBuf,
    /// Reload when a file in `dir` changes (SIGHUP always reloads).
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// Bytes of per-target decisions kept in the cache (estimated per entry).
    #[serde(default = "default_cache_max_bytes")]
    pub cache_max_bytes: u64,
    /// New decisions one request may add to the cache; its other targets
    /// are judged uncached, so one huge request cannot flush the cache.
    #[serde(default = "default_cache_admit_per_request")]
    pub cache_admit_per_request: usize,
}

fn default_watch() -> bool {
    true
}

/// Default `cache_max_bytes`: 64 MiB, some 200,000 typical entries.
const CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Default `cache_admit_per_request`.
const CACHE_ADMIT_PER_REQUEST: usize = 64;

fn default_cache_max_bytes() -> u64 {
    CACHE_MAX_BYTES
}

fn default_cache_admit_per_request() -> usize {
    CACHE_ADMIT_PER_REQUEST
}

fn default_dir() -> std::path::PathBuf {
    "policies".into()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: default_dir(),
            watch: default_watch(),
            cache_max_bytes: default_cache_max_bytes(),
            cache_admit_per_request: default_cache_admit_per_request(),
        }
    }
}

/// Why one target was allowed or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// An `allow` rule matched and its condition held.
    Allowed,
    /// A `deny` rule matched.
    DenyMatched,
    /// No rule allowed this target.
    NoRuleMatched,
    /// A rule matched but its `when` condition was false (or failed).
    ConditionFalse,
    /// No rule allowed it, an active grant of the caller did (`rule` is
    /// its `requestable` entry, `grant` the grant).
    Granted,
}

/// The verdict on one target (which [`Decided`] names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetDecision {
    pub allowed: bool,
    /// The rule that decided it, if any (shared by every target it
    /// decided, and by their audit lines).
    pub rule: Option<Arc<str>>,
    pub why: Why,
    /// The grant that allowed it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The verdict with the shadow rules enforced, when a shadow rule
    /// would decide this target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
}

/// What a `mode: shadow` rule would have decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadow {
    pub allowed: bool,
    pub rule: String,
}

/// One target's decision within a [`Decision`]: the target, and the
/// verdict on it, shared with the decision cache and with every other
/// target of the request judged alike rather than copied (a verdict names
/// no target, so a commit's writes under one rule hold one verdict). Reads
/// as the [`TargetDecision`] the verdict holds.
#[derive(Debug, Clone)]
pub struct Decided {
    pub target: Target,
    verdict: Arc<Verdict>,
}

impl Decided {
    pub(crate) fn new(target: Target, verdict: Arc<Verdict>) -> Decided {
        Decided { target, verdict }
    }

    /// `decision` on `target`, judged apart (no mask, not cached).
    pub fn of(target: Target, decision: TargetDecision) -> Decided {
        Decided::new(
            target,
            Arc::new(Verdict {
                decision,
                upstream_account: None,
                cacheable: false,
                mask: None,
            }),
        )
    }
}

impl Decided {
    /// The mask this target's access is under, if any.
    pub fn mask(&self) -> Option<&Arc<Masked>> {
        self.verdict.mask.as_ref()
    }
}

impl std::ops::Deref for Decided {
    type Target = TargetDecision;
    fn deref(&self) -> &TargetDecision {
        &self.verdict.decision
    }
}

impl PartialEq for Decided {
    fn eq(&self, other: &Decided) -> bool {
        self.target == other.target && **self == **other
    }
}

impl Eq for Decided {}

impl Serialize for Decided {
    /// The target's decision, and the mask it is under (`policy check`
    /// shows which rules' masks applied).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WithMask<'a> {
            target: &'a Target,
            #[serde(flatten)]
            decision: &'a TargetDecision,
            #[serde(skip_serializing_if = "Option::is_none")]
            mask: Option<&'a Masked>,
        }
        WithMask {
            target: &self.target,
            decision: self,
            mask: self.mask().map(AsRef::as_ref),
        }
        .serialize(serializer)
    }
}

/// The verdict on a whole request: allowed only if every target is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub targets: Vec<Decided>,
    /// The service account the request runs as upstream (rule `as:`);
    /// `None` means firegate's base credentials.
    pub upstream_account: Option<String>,
    /// For a refusal, the precise reason for the audit line
    /// (`rule:no-secrets`, `no_rule_matched`, `mixed_upstream_accounts`).
    pub reason: Option<String>,
    /// The decision with the shadow rules enforced, when one would decide
    /// a target (audited as `shadow_decision` and `shadow_rule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// For a write whose answer is the document written (`patch`,
    /// `createDocument`, gRPC `Create`/`UpdateDocument`): what that answer
    /// may show, judged as the caller's own read of the document (see
    /// [`mask::Answer`]). Empty for every other request.
    #[serde(skip)]
    pub answer: Vec<mask::Answer>,
}

impl Decision {
    /// The refusal every request gets while no table is loaded.
    pub fn deny_all(op: &Operation, reason: &str) -> Decision {
        Decision {
            allowed: false,
            targets: op
                .targets
                .iter()
                .map(|t| {
                    Decided::of(
                        t.clone(),
                        TargetDecision {
                            allowed: false,
                            rule: None,
                            why: Why::NoRuleMatched,
                            grant: None,
                            shadow: None,
                        },
                    )
                })
                .collect(),
            upstream_account: None,
            reason: Some(reason.to_string()),
            shadow: None,
            answer: Vec::new(),
        }
    }
}

/// The validated `policy:` section.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    pub dir: std::path::PathBuf,
    pub watch: bool,
    pub cache: CacheSettings,
}

/// The decision cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_bytes: u64,
    pub admit_per_request: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_bytes: CACHE_MAX_BYTES,
            admit_per_request: CACHE_ADMIT_PER_REQUEST,
        }
    }
}

impl PolicyConfig {
    /// The typed `policy:` section, recording every problem.
    pub fn validate(self, errors: &mut crate::config::errors::ConfigErrors) -> PolicySettings {
        if self.dir.as_os_str().is_empty() {
            errors.push("policy.dir", "must name the policy directory");
        }
        // Below this no entry fits (one weighs a few hundred bytes).
        if self.cache_max_bytes < 4096 {
            errors.push("policy.cache_max_bytes", "must be at least 4096");
        }
        PolicySettings {
            dir: self.dir,
            watch: self.watch,
            cache: CacheSettings {
                max_bytes: self.cache_max_bytes,
                admit_per_request: self.cache_admit_per_request,
            },
        }
    }
}
