//! The per-collection policy table: `Principal` × `Operation` → `Decision`.

use serde::{Deserialize, Serialize};

use crate::authn::Principal;
use crate::firestore::{Operation, Target};

/// Raw `policy:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `*.yaml` policy files.
    #[serde(default = "default_dir")]
    pub dir: std::path::PathBuf,
}

fn default_dir() -> std::path::PathBuf {
    "policies".into()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig { dir: default_dir() }
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
}

/// The verdict on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetDecision {
    pub target: Target,
    pub allowed: bool,
    /// The rule that decided it, if any.
    pub rule: Option<String>,
    pub why: Why,
}

/// The verdict on a whole request: allowed only if every target is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub targets: Vec<TargetDecision>,
    /// The service account the request runs as upstream (rule `as:`);
    /// `None` means firegate's base credentials.
    pub upstream_account: Option<String>,
    /// For a refusal, the precise reason for the audit line
    /// (`rule:no-secrets`, `no_rule_matched`, `mixed_upstream_accounts`).
    pub reason: Option<String>,
}

impl Decision {
    /// The refusal every request gets while no table is loaded.
    pub fn deny_all(op: &Operation, reason: &str) -> Decision {
        Decision {
            allowed: false,
            targets: op
                .targets
                .iter()
                .map(|t| TargetDecision {
                    target: t.clone(),
                    allowed: false,
                    rule: None,
                    why: Why::NoRuleMatched,
                })
                .collect(),
            upstream_account: None,
            reason: Some(reason.to_string()),
        }
    }
}

/// The compiled, hot-reloadable policy table and its decision cache.
pub struct PolicyEngine {}

impl PolicyEngine {
    pub async fn new(
        _config: &PolicyConfig,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        Ok(PolicyEngine {})
    }

    /// Step 3 of the pipeline. A deny is a value, not an error.
    pub async fn decide(&self, _principal: &Principal, op: &Operation) -> Decision {
        Decision::deny_all(op, "policy_unavailable")
    }

    /// `None` when ready; otherwise what is wrong (for `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        None
    }
}

impl PolicyConfig {
    /// Record every problem in the `policy:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}
