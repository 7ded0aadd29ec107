//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

mod client;
mod credentials;
pub mod headers;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use client::{Outbound, Upstream, UpstreamError};
pub use credentials::{AccessToken, Credentials, CredentialsConfig, CredentialsError};

use crate::config::ConfigErrors;

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
    /// Longest wait for a TCP connection to the upstream.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// Longest wait from sending a request to the upstream's response head
    /// (connect and TLS included); the body then streams without a deadline.
    #[serde(default = "default_response_header_timeout")]
    pub response_header_timeout: String,
    /// Extra PEM root certificates to trust for an `https` upstream, besides
    /// the system and webpki roots (a private emulator, a corporate proxy).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_url() -> String {
    "https://firestore.googleapis.com".into()
}

fn default_connect_timeout() -> String {
    "5s".into()
}

fn default_response_header_timeout() -> String {
    "60s".into()
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: default_url(),
            credentials: CredentialsConfig::default(),
            connect_timeout: default_connect_timeout(),
            response_header_timeout: default_response_header_timeout(),
            ca_file: None,
        }
    }
}

impl UpstreamConfig {
    /// Record every problem in the `upstream:` section.
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if let Err(reason) = client::base_uri(&self.url) {
            errors.push("upstream.url", reason);
        }
        for (key, value) in [
            ("upstream.connect_timeout", &self.connect_timeout),
            (
                "upstream.response_header_timeout",
                &self.response_header_timeout,
            ),
        ] {
            match humantime::parse_duration(value) {
                Err(err) => errors.push(key, format!("not a duration ({err}); write e.g. `5s`")),
                Ok(d) if d.is_zero() => errors.push(key, "must be more than zero"),
                Ok(_) => {}
            }
        }
        if let Some(path) = &self.ca_file
            && let Err(err) = client::load_roots(path)
        {
            errors.push("upstream.ca_file", format!("{err:#}"));
        }
    }

    /// `(connect_timeout, response_header_timeout)`.
    fn timeouts(&self) -> anyhow::Result<(Duration, Duration)> {
        let parse = |key: &str, v: &str| {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("upstream.{key}: `{v}` is not a positive duration"))
        };
        Ok((
            parse("connect_timeout", &self.connect_timeout)?,
            parse("response_header_timeout", &self.response_header_timeout)?,
        ))
    }
}
