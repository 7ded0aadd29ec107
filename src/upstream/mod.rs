//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

mod client;
mod credentials;
pub mod headers;

use serde::Deserialize;

pub use client::{Outbound, Upstream, UpstreamError};
pub use credentials::{
    AccessToken, Credentials, CredentialsConfig, CredentialsError, EMULATOR_ACCOUNT,
    ImpersonationConfig, Source as CredentialsSource, is_service_account,
};

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
    /// The upstream is a Firestore emulator: allows `credentials.source:
    /// emulator` (a fixed owner token) on a non-loopback or `https` URL.
    #[serde(default)]
    pub emulator: bool,
}

fn default_url() -> String {
    "https://firestore.googleapis.com".into()
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: default_url(),
            credentials: CredentialsConfig::default(),
            emulator: false,
        }
    }
}

impl UpstreamConfig {
    /// Record every problem in the `upstream:` section.
    pub fn validate(&self, errors: &mut crate::config::ConfigErrors) {
        let emulator_allowed = self.emulator || credentials::is_loopback_http(&self.url);
        self.credentials.validate(emulator_allowed, errors);
    }
}
