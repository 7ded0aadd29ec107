//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

mod client;
mod credentials;
pub mod headers;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use client::{Outbound, Upstream, UpstreamError};
pub use credentials::{
    AccessToken, Credentials, CredentialsConfig, CredentialsError, EMULATOR_ACCOUNT,
    ImpersonationConfig, Source as CredentialsSource, is_service_account,
};

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
    /// The upstream is a Firestore emulator: allows `credentials.source:
    /// emulator` (a fixed owner token) on a non-loopback or `https` URL.
    #[serde(default)]
    pub emulator: bool,
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
            emulator: false,
        }
    }
}

impl UpstreamConfig {
    /// Record every problem in the `upstream:` section.
    pub fn validate(&self, errors: &mut ConfigErrors) {
        let emulator_allowed = self.emulator || credentials::is_loopback_http(&self.url);
        self.credentials.validate(emulator_allowed, errors);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_upstream_problem_is_reported() {
        let config = UpstreamConfig {
            url: "ftp://x".into(),
            connect_timeout: "0s".into(),
            response_header_timeout: "soon".into(),
            ca_file: Some("/nonexistent/roots.pem".into()),
            ..UpstreamConfig::default()
        };
        let mut errors = ConfigErrors::default();
        config.validate(&mut errors);
        let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "upstream.url",
                "upstream.connect_timeout",
                "upstream.response_header_timeout",
                "upstream.ca_file"
            ]
        );
    }

    #[test]
    fn defaults_are_valid() {
        let mut errors = ConfigErrors::default();
        UpstreamConfig::default().validate(&mut errors);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(
            UpstreamConfig::default().timeouts().unwrap(),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
    }
}
