//! The `server:` config section: listeners, TLS and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::errors::ConfigErrors;
use crate::config::value::duration;

/// `server:` — listeners, TLS and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// PEM certificate chain and key. Required unless `plain_http: true`.
    pub tls: Option<RawTls>,
    /// Serve plain HTTP (behind a TLS-terminating load balancer).
    #[serde(default)]
    pub plain_http: bool,
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: String,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub limits: RawLimits,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: defaults::listen(),
            tls: None,
            plain_http: false,
            admin_listen: defaults::admin_listen(),
            trusted_proxies: Vec::new(),
            limits: RawLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `server.limits:` — durations are humantime strings (`30s`, `2m`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: defaults::max_body_bytes(),
            max_header_bytes: defaults::max_header_bytes(),
            header_read_timeout: defaults::header_read_timeout(),
            idle_timeout: defaults::idle_timeout(),
            max_connections: defaults::max_connections(),
            drain_timeout: defaults::drain_timeout(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    use crate::config::value::default_duration;

    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    pub const MAX_CONNECTIONS: usize = 10_000;

    pub fn listen() -> String {
        "0.0.0.0:8443".into()
    }
    pub fn admin_listen() -> String {
        "127.0.0.1:9090".into()
    }
    pub fn max_body_bytes() -> usize {
        MAX_BODY_BYTES
    }
    pub fn max_header_bytes() -> usize {
        MAX_HEADER_BYTES
    }
    pub fn header_read_timeout() -> String {
        default_duration(HEADER_READ_TIMEOUT)
    }
    pub fn idle_timeout() -> String {
        default_duration(IDLE_TIMEOUT)
    }
    pub fn max_connections() -> usize {
        MAX_CONNECTIONS
    }
    pub fn drain_timeout() -> String {
        default_duration(DRAIN_TIMEOUT)
    }
}

/// The validated `server:` section.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls: Option<RawTls>,
    pub admin_listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
}

/// The validated `server.limits:`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    /// The documented defaults of `server.limits`.
    fn default() -> Self {
        Limits {
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            max_connections: defaults::MAX_CONNECTIONS,
            drain_timeout: defaults::DRAIN_TIMEOUT,
        }
    }
}

impl RawServer {
    /// The typed `server:` section, recording every problem. Values under a
    /// recorded error are placeholders: a `Config` is only
    /// built when there are none.
    pub fn validate(self, errors: &mut ConfigErrors) -> ServerSettings {
        let listen = address("server.listen", &self.listen, errors);
        let admin_listen = address("server.admin_listen", &self.admin_listen, errors);
        match (&self.tls, self.plain_http) {
            (None, false) => errors.push(
                "server.tls",
                "required: give `cert` and `key`, or set `plain_http: true` behind a TLS-terminating load balancer",
            ),
            (Some(_), true) => errors.push("server.plain_http", "set either `tls` or `plain_http`, not both"),
            _ => {}
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, cidr)| {
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        errors.push(
                            format!("server.trusted_proxies[{i}]"),
                            format!("`{cidr}` is not a CIDR"),
                        )
                    })
                    .ok()
            })
            .collect();
        let limits = self.limits.validate(errors);
        if let Some(tls) = &self.tls
            && let Err(err) = crate::server::tls::load_certified_key(tls)
        {
            errors.push("server.tls", format!("{err:#}"));
        }
        ServerSettings {
            listen,
            tls: self.tls,
            admin_listen,
            trusted_proxies,
            limits,
        }
    }
}

impl RawLimits {
    fn validate(self, errors: &mut ConfigErrors) -> Limits {
        const KEY: &str = "server.limits";
        let mut positive = |name: &str, value: &str| {
            let key = format!("{KEY}.{name}");
            let d = duration(&key, value, errors);
            if d.is_some_and(|d| d.is_zero()) {
                errors.push(key, "must be more than zero");
            }
            d.unwrap_or_default()
        };
        let header_read_timeout = positive("header_read_timeout", &self.header_read_timeout);
        let idle_timeout = positive("idle_timeout", &self.idle_timeout);
        let drain_timeout = duration(&format!("{KEY}.drain_timeout"), &self.drain_timeout, errors)
            .unwrap_or_default();
        if self.max_connections == 0 {
            errors.push("server.limits.max_connections", "must be at least 1");
        }
        if self.max_header_bytes < 8192 {
            // hyper's HTTP/1.1 read buffer cannot be smaller.
            errors.push("server.limits.max_header_bytes", "must be at least 8192");
        }
        if self.max_body_bytes == 0 {
            errors.push("server.limits.max_body_bytes", "must be at least 1");
        }
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout,
            idle_timeout,
            max_connections: self.max_connections,
            drain_timeout,
        }
    }
}

fn address(key: &str, value: &str, errors: &mut ConfigErrors) -> SocketAddr {
    value.parse::<SocketAddr>().unwrap_or_else(|_| {
        errors.push(
            key,
            format!("`{value}` is not an address like 0.0.0.0:8443"),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_defaults_validate_to_the_typed_defaults() {
        let limits = ConfigErrors::collect(|errors| RawLimits::default().validate(errors))
            .expect("defaults are valid");
        let typed = Limits::default();
        assert_eq!(
            (
                limits.header_read_timeout,
                limits.idle_timeout,
                limits.drain_timeout,
                limits.max_body_bytes,
                limits.max_header_bytes,
                limits.max_connections,
            ),
            (
                typed.header_read_timeout,
                typed.idle_timeout,
                typed.drain_timeout,
                typed.max_body_bytes,
                typed.max_header_bytes,
                typed.max_connections,
            )
        );
    }
}
