//! The upstream side: Google credentials for the `access_token` step and the
//! pooled, streaming client for the `forward` step.

mod client;
mod credentials;
mod databases;
mod grpc;
pub mod headers;
mod pool;
mod preface;

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

pub use client::{Outbound, Upstream, UpstreamError};
pub use credentials::{
    AccessToken, BaseCredentials, Credentials, CredentialsConfig, CredentialsError,
    CredentialsSettings, EMULATOR_ACCOUNT, ImpersonationConfig, ImpersonationSettings,
    Source as CredentialsSource, is_service_account,
};
pub use grpc::{GrpcOutbound, GrpcUpstream};
pub use pool::{Leased, PoolSettings};

use crate::config::errors::ConfigErrors;
use crate::model::Database;

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
    /// The databases firegate fronts, as full names
    /// (`projects/P/databases/D`); any other is refused.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Most idle connections kept open to the upstream (per client: REST
    /// and gRPC), like nginx's `keepalive`: a burst's extra connections are
    /// closed once idle instead of each holding its buffers.
    #[serde(default = "default_max_idle_connections")]
    pub max_idle_connections: usize,
    /// The HTTP/2 connections to the upstream (gRPC; REST over `https`).
    #[serde(default)]
    pub pool: PoolConfig,
}

/// Raw `upstream.pool:` section: how many HTTP/2 connections, each carrying
/// how many streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Most concurrent streams firegate puts on one connection; the server's
    /// advertised `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it.
    #[serde(default = "default_max_streams_per_connection")]
    pub max_streams_per_connection: usize,
    /// Most HTTP/2 connections open at once (per client, REST and gRPC).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection without a stream this long closes (all but one).
    #[serde(default = "default_pool_idle_timeout")]
    pub idle_timeout: String,
}

const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

fn default_max_streams_per_connection() -> usize {
    100
}

fn default_max_connections() -> usize {
    256
}

fn default_pool_idle_timeout() -> String {
    crate::config::value::default_duration(POOL_IDLE_TIMEOUT)
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_streams_per_connection: default_max_streams_per_connection(),
            max_connections: default_max_connections(),
            idle_timeout: default_pool_idle_timeout(),
        }
    }
}

impl PoolConfig {
    fn validate(&self, errors: &mut ConfigErrors) -> PoolSettings {
        if self.max_streams_per_connection == 0 {
            errors.push(
                "upstream.pool.max_streams_per_connection",
                "must be at least 1",
            );
        }
        if self.max_connections < 2 {
            errors.push(
                "upstream.pool.max_connections",
                "must be at least 2 (long-lived streams never take the last connection's worth)",
            );
        }
        let idle_timeout = crate::config::value::duration(
            "upstream.pool.idle_timeout",
            &self.idle_timeout,
            errors,
        );
        if idle_timeout.is_some_and(|d| d.is_zero()) {
            errors.push("upstream.pool.idle_timeout", "must be more than zero");
        }
        PoolSettings {
            max_streams_per_connection: self.max_streams_per_connection.max(1),
            max_connections: self.max_connections.max(2),
            idle_timeout: idle_timeout.unwrap_or(POOL_IDLE_TIMEOUT),
        }
    }
}

/// Both upstream clients, their metrics registered once.
pub fn clients(
    settings: &UpstreamSettings,
    registry: &mut Registry,
) -> anyhow::Result<(Upstream, GrpcUpstream)> {
    let rest = Upstream::new(settings, registry)?;
    let grpc = GrpcUpstream::new(settings, rest.grpc_pool_metrics.clone())?;
    Ok((rest, grpc))
}

fn default_max_idle_connections() -> usize {
    64
}

fn default_url() -> String {
    "https://firestore.googleapis.com".into()
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

fn default_connect_timeout() -> String {
    crate::config::value::default_duration(CONNECT_TIMEOUT)
}

fn default_response_header_timeout() -> String {
    crate::config::value::default_duration(RESPONSE_HEADER_TIMEOUT)
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
            databases: Vec::new(),
            max_idle_connections: default_max_idle_connections(),
            pool: PoolConfig::default(),
        }
    }
}

/// The validated `upstream:` section.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub scheme: Scheme,
    pub authority: Authority,
    pub credentials: CredentialsSettings,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    /// Extra roots read from `ca_file`, trusted besides the system's.
    pub ca_roots: Vec<CertificateDer<'static>>,
    /// The databases served; never empty.
    pub databases: Vec<Database>,
    pub max_idle_connections: usize,
    pub pool: PoolSettings,
}

impl UpstreamConfig {
    /// The typed `upstream:` section, recording every problem.
    pub fn validate(self, errors: &mut ConfigErrors) -> UpstreamSettings {
        let emulator_allowed = self.emulator || credentials::is_loopback_http(&self.url);
        let credentials = self.credentials.validate(emulator_allowed, errors);
        let (scheme, authority) = client::base_uri(&self.url).unwrap_or_else(|reason| {
            errors.push("upstream.url", reason);
            // Never used: a config with an error is never built.
            (Scheme::HTTPS, Authority::from_static("invalid"))
        });
        let mut positive = |key: &str, value: &str| {
            let d = crate::config::value::duration(key, value, errors);
            if d.is_some_and(|d| d.is_zero()) {
                errors.push(key, "must be more than zero");
            }
            d.unwrap_or_default()
        };
        let connect_timeout = positive("upstream.connect_timeout", &self.connect_timeout);
        let response_header_timeout = positive(
            "upstream.response_header_timeout",
            &self.response_header_timeout,
        );
        let ca_roots = match &self.ca_file {
            Some(path) => client::load_roots(path).unwrap_or_else(|err| {
                errors.push("upstream.ca_file", format!("{err:#}"));
                Vec::new()
            }),
            None => Vec::new(),
        };
        let databases = databases::validate(&self.databases, errors);
        let pool = self.pool.validate(errors);
        UpstreamSettings {
            scheme,
            authority,
            credentials,
            connect_timeout,
            response_header_timeout,
            ca_roots,
            databases,
            max_idle_connections: self.max_idle_connections,
            pool,
        }
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
            ..served()
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

    /// The defaults plus the one key without a default.
    fn served() -> UpstreamConfig {
        UpstreamConfig {
            databases: vec!["projects/p/databases/(default)".into()],
            ..UpstreamConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        let s = ConfigErrors::collect(|errors| served().validate(errors))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.connect_timeout, s.response_header_timeout),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
        assert_eq!(
            (s.scheme, s.authority.as_str()),
            (Scheme::HTTPS, "firestore.googleapis.com")
        );
        assert!(s.ca_roots.is_empty());
    }

    #[test]
    fn the_validated_values_are_the_ones_written() {
        let config: UpstreamConfig = serde_yaml_ng::from_str(
            "{url: 'http://127.0.0.1:8080', connect_timeout: 250ms, response_header_timeout: 2m, \
             databases: ['projects/p/databases/(default)']}",
        )
        .expect("parses");
        let s = ConfigErrors::collect(|errors| config.validate(errors))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.scheme, s.authority.as_str()),
            (Scheme::HTTP, "127.0.0.1:8080")
        );
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.response_header_timeout, Duration::from_secs(120));
    }
}
