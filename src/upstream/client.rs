//! The pooled, streaming hyper client that forwards to Firestore.

use std::net::IpAddr;

use http::{HeaderMap, Response};
use hyper::body::Incoming;

use super::{AccessToken, UpstreamConfig};
use crate::body::Body;
use crate::firestore::{ApiError, Code};

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
