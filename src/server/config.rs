//! The `server:` config section: listeners, TLS and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{ConfigErrors, duration};

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
    pub fn listen() -> String {
        "0.0.0.0:8443".into()
    }
    pub fn admin_listen() -> String {
        "127.0.0.1:9090".into()
    }
    pub fn max_body_bytes() -> usize {
        10 * 1024 * 1024
    }
    pub fn max_header_bytes() -> usize {
        64 * 1024
    }
    pub fn header_read_timeout() -> String {
        "10s".into()
    }
    pub fn idle_timeout() -> String {
        "60s".into()
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn drain_timeout() -> String {
        "30s".into()
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<RawTls>,
    pub admin_listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
}

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
        let mut errors = ConfigErrors::default();
        let l = RawLimits::default();
        Limits {
            max_body_bytes: l.max_body_bytes,
            max_header_bytes: l.max_header_bytes,
            header_read_timeout: duration("", &l.header_read_timeout, &mut errors),
            idle_timeout: duration("", &l.idle_timeout, &mut errors),
            max_connections: l.max_connections,
            drain_timeout: duration("", &l.drain_timeout, &mut errors),
        }
    }
}

pub(crate) fn validate_server(raw: RawServer, errors: &mut ConfigErrors) -> ServerConfig {
    let addr = |key: &str, v: &str, errors: &mut ConfigErrors| {
        v.parse::<SocketAddr>().unwrap_or_else(|_| {
            errors.push(key, format!("`{v}` is not an address like 0.0.0.0:8443"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    };
    let listen = addr("server.listen", &raw.listen, errors);
    let admin_listen = addr("server.admin_listen", &raw.admin_listen, errors);
    match (&raw.tls, raw.plain_http) {
        (None, false) => errors.push(
            "server.tls",
            "required: give `cert` and `key`, or set `plain_http: true` behind a TLS-terminating load balancer",
        ),
        (Some(_), true) => errors.push("server.plain_http", "set either `tls` or `plain_http`, not both"),
        _ => {}
    }
    let trusted_proxies = raw
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
    let l = raw.limits;
    let limits = Limits {
        max_body_bytes: l.max_body_bytes,
        max_header_bytes: l.max_header_bytes,
        header_read_timeout: duration(
            "server.limits.header_read_timeout",
            &l.header_read_timeout,
            errors,
        ),
        idle_timeout: duration("server.limits.idle_timeout", &l.idle_timeout, errors),
        max_connections: l.max_connections,
        drain_timeout: duration("server.limits.drain_timeout", &l.drain_timeout, errors),
    };
    if limits.max_connections == 0 {
        errors.push("server.limits.max_connections", "must be at least 1");
    }
    if limits.max_header_bytes < 8192 {
        // hyper's HTTP/1.1 read buffer cannot be smaller.
        errors.push("server.limits.max_header_bytes", "must be at least 8192");
    }
    if limits.max_body_bytes == 0 {
        errors.push("server.limits.max_body_bytes", "must be at least 1");
    }
    for (key, value) in [
        (
            "server.limits.header_read_timeout",
            limits.header_read_timeout,
        ),
        ("server.limits.idle_timeout", limits.idle_timeout),
    ] {
        if value.is_zero() && !errors.errors.iter().any(|e| e.key == key) {
            errors.push(key, "must be more than zero");
        }
    }
    if let Some(tls) = &raw.tls
        && let Err(err) = crate::server::tls::load_certified_key(tls)
    {
        errors.push("server.tls", format!("{err:#}"));
    }
    ServerConfig {
        listen,
        tls: raw.tls,
        admin_listen,
        trusted_proxies,
        limits,
    }
}
