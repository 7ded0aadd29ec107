//! Audit: one structured, hash-chained line per request, whatever happened.

mod record;

use serde::Deserialize;

pub use record::{AuditPrincipal, AuditRecord, AuditTarget, Outcome};

use crate::firestore::{ApiError, Code};

/// Raw `audit:` section of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {}

/// Why a request was refused by the audit layer itself.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit sink is behind and fail_closed is set")]
    SinkBackedUp,
}

impl AuditError {
    pub fn api_error(&self) -> ApiError {
        ApiError::new(Code::Unavailable, "The service is currently unavailable.")
    }

    pub fn reason(&self) -> &'static str {
        match self {
            AuditError::SinkBackedUp => "audit_unavailable",
        }
    }
}

/// Takes records off the request path and writes them to the sink.
pub struct Auditor {}

impl Auditor {
    pub async fn new(
        _config: &AuditConfig,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Auditor {})
    }

    /// Called before any work: refuses new requests when the sink is behind
    /// and `fail_closed` is set.
    pub fn admit(&self) -> Result<(), AuditError> {
        Ok(())
    }

    /// Queue one record; never blocks.
    pub fn record(&self, record: AuditRecord) {
        if let Ok(line) = serde_json::to_string(&record) {
            println!("{line}");
        }
    }

    pub fn not_ready(&self) -> Option<String> {
        None
    }
}

impl AuditConfig {
    /// Record every problem in the `audit:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}
