//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

mod client;
mod credentials;
pub mod headers;

use serde::Deserialize;

pub use client::{Outbound, Upstream, UpstreamError};
pub use credentials::{AccessToken, Credentials, CredentialsConfig, CredentialsError};

/// Raw `upstream:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of Firestore (or of an emulator, `http://host:port`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Where firegate's own Google credentials come from.
    #[serde(default)]
    pub credentials: CredentialsConfig,
}

fn default_url() -> String {
    "https://firestore.googleapis.com".into()
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: default_url(),
            credentials: CredentialsConfig::default(),
        }
    }
}

impl UpstreamConfig {
    /// Record every problem in the `upstream:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}
