//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

pub mod headers;

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Response};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::body::Body;
use crate::firestore::{ApiError, Code};

/// Raw `upstream:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of Firestore (or of an emulator, `http://host:port`).
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    "https://firestore.googleapis.com".into()
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig { url: default_url() }
    }
}

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

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("forwarding not built yet")]
    NotImplemented,
}

impl UpstreamError {
    pub fn api_error(&self) -> ApiError {
        match self {
            UpstreamError::NotImplemented => {
                ApiError::new(Code::Unavailable, "The service is currently unavailable.")
            }
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::NotImplemented => "upstream_unavailable",
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

/// Everything `forward` needs to build the upstream request.
pub struct Outbound<'a> {
    pub method: http::Method,
    /// Canonical path and query (client API keys already stripped).
    pub path_and_query: &'a str,
    /// The client's headers; sanitized by [`headers::outbound`] before use.
    pub client_headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// `https` or `http`, as the client reached firegate.
    pub client_proto: &'static str,
    pub request_id: &'a str,
    /// `projects/P/databases/D`, for the regenerated routing header.
    pub database: &'a str,
    pub token: &'a AccessToken,
    pub body: Body,
}

/// The pooled, streaming client to Firestore.
pub struct Upstream {}

impl Upstream {
    pub fn new(
        _config: &UpstreamConfig,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        Ok(Upstream {})
    }

    /// Step 5: send the request, stream the response back.
    pub async fn forward(&self, _out: Outbound<'_>) -> Result<Response<Incoming>, UpstreamError> {
        Err(UpstreamError::NotImplemented)
    }
}

impl UpstreamConfig {
    /// Record every problem in the `upstream:` section.
    pub fn validate(&self, _errors: &mut crate::config::ConfigErrors) {}
}
