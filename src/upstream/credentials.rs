//! Google credentials for the `access_token` step: ADC, key files, the
//! metadata server, workload identity federation, per-rule impersonation.

use http::HeaderValue;
use serde::Deserialize;

use super::UpstreamConfig;
use crate::firestore::{ApiError, Code};

/// Raw `upstream.credentials:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {}

/// A short-lived Google access token, ready to be sent upstream.
#[derive(Clone)]
pub struct AccessToken {
    /// The full `Authorization` header value, marked sensitive.
    pub authorization: HeaderValue,
    /// The service account (or `"emulator"`) the token belongs to, for the audit line.
    pub account: String,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Why no upstream token could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials not built yet")]
    NotImplemented,
}

impl CredentialsError {
    pub fn api_error(&self) -> ApiError {
        ApiError::new(Code::Unavailable, "The service is currently unavailable.")
    }

    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::NotImplemented => "credentials_unavailable",
        }
    }
}

/// Mints (and caches) the Google tokens firegate forwards with.
pub struct Credentials {}

impl Credentials {
    pub async fn new(
        _config: &UpstreamConfig,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Credentials {})
    }

    /// Step 4: a token for `account` (`None`: the base credentials).
    pub async fn access_token(
        &self,
        _account: Option<&str>,
    ) -> Result<AccessToken, CredentialsError> {
        Err(CredentialsError::NotImplemented)
    }

    pub fn not_ready(&self) -> Option<String> {
        None
    }
}
