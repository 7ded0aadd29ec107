//! Transaction ids bound to the principal that began them, statelessly:
//! the proxy hands out the upstream id sealed with an HMAC and unseals it on
//! the way back, so any replica behind a load balancer can check it.

use serde::Deserialize;

/// Raw `transactions:` section of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionConfig {
    /// File holding the HMAC key shared by every replica.
    pub key_file: Option<std::path::PathBuf>,
}

impl TransactionConfig {
    /// Record every problem in the `transactions:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}

/// Seals upstream transaction ids to the principal that obtained them.
pub struct TransactionSealer {}

impl TransactionSealer {
    pub fn new(_config: &TransactionConfig) -> anyhow::Result<Self> {
        Ok(TransactionSealer {})
    }
}
