//! Authentication: a bearer token in, a [`Principal`] out, against the
//! trusted issuers of the config.

mod principal;

use std::sync::Arc;

use http::{HeaderMap, Uri};
use serde::Deserialize;

pub use principal::{Fingerprint, Principal};

use crate::firestore::{ApiError, Code};

/// Raw `authn:` section of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    #[serde(default)]
    pub issuers: Vec<serde_yaml_ng::Value>,
}

/// Why a request was not authenticated. The variant is the audit reason;
/// the client only ever sees a fixed 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("no bearer token")]
    MissingToken,
    #[error("authentication not built yet")]
    NotImplemented,
}

impl AuthnError {
    pub fn api_error(&self) -> ApiError {
        ApiError::new(
            Code::Unauthenticated,
            "Request had invalid authentication credentials.",
        )
    }

    /// A short, stable reason for the audit line (`token_expired`, `unknown_kid`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::MissingToken => "missing_token",
            AuthnError::NotImplemented => "authn_unavailable",
        }
    }
}

/// Verifies bearer tokens against the configured issuers.
pub struct Authenticator {}

impl Authenticator {
    pub async fn new(
        _config: &AuthnConfig,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Authenticator {})
    }

    /// Step 1 of the pipeline: who is calling.
    pub async fn authenticate(
        &self,
        _headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<Arc<Principal>, AuthnError> {
        Err(AuthnError::NotImplemented)
    }

    /// `None` when ready; otherwise what is missing (for `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        None
    }
}

impl AuthnConfig {
    /// Record every problem in the `authn:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}
