//! The `server:` config section: listeners, TLS, limits and CORS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::cors::{Cors, RawCors};
pub use crate::body::BodyRate;
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
    #[serde(default)]
    pub cors: RawCors,
    /// Runtime worker threads; unset: one per CPU the process may use.
    #[serde(default)]
    pub worker_threads: Option<usize>,
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
            cors: RawCors::default(),
            worker_threads: None,
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
    #[serde(default = "defaults::body_read_timeout")]
    pub body_read_timeout: String,
    #[serde(default = "defaults::min_body_rate")]
    pub min_body_rate: u64,
    #[serde(default = "defaults::body_rate_window")]
    pub body_rate_window: String,
    #[serde(default = "defaults::max_in_flight_per_principal")]
    pub max_in_flight_per_principal: usize,
    #[serde(default = "defaults::max_targets")]
    pub max_targets: usize,
    #[serde(default = "defaults::max_listen_targets")]
    pub max_listen_targets: usize,
    #[serde(default = "defaults::max_grpc_message_bytes")]
    pub max_grpc_message_bytes: usize,
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
            body_read_timeout: defaults::body_read_timeout(),
            min_body_rate: defaults::min_body_rate(),
            body_rate_window: defaults::body_rate_window(),
            max_in_flight_per_principal: defaults::max_in_flight_per_principal(),
            max_targets: defaults::max_targets(),
            max_listen_targets: defaults::max_listen_targets(),
            max_grpc_message_bytes: defaults::max_grpc_message_bytes(),
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
    pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// 1 KiB/s: a phone on a bad link manages it; a slowloris that trickles
    /// a byte a second does not.
    pub const MIN_BODY_RATE: u64 = 1024;
    pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(5);
    /// The official Node client's own system tests put 1,000 writes in
    /// flight at once (one gRPC channel per 100 calls, channels without
    /// bound); twice that leaves room for the same caller's listeners and
    /// reads meanwhile.
    pub const MAX_IN_FLIGHT_PER_PRINCIPAL: usize = 2048;
    /// A full 500-write `:commit` of upserts names 1,000 targets.
    pub const MAX_TARGETS: usize = 1000;
    /// Targets one Listen stream may hold at once (the SDKs add one per
    /// listener; a thousand listeners on one channel is a lot).
    pub const MAX_LISTEN_TARGETS: usize = 1000;
    /// gRPC's own default receive limit (4 MiB); Firestore's largest
    /// document is 1 MiB, a full commit of them fits in `max_body_bytes`.
    pub const MAX_GRPC_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

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
    pub fn body_read_timeout() -> String {
        default_duration(BODY_READ_TIMEOUT)
    }
    pub fn min_body_rate() -> u64 {
        MIN_BODY_RATE
    }
    pub fn body_rate_window() -> String {
        default_duration(BODY_RATE_WINDOW)
    }
    pub fn max_in_flight_per_principal() -> usize {
        MAX_IN_FLIGHT_PER_PRINCIPAL
    }
    pub fn max_targets() -> usize {
        MAX_TARGETS
    }
    pub fn max_listen_targets() -> usize {
        MAX_LISTEN_TARGETS
    }
    pub fn max_grpc_message_bytes() -> usize {
        MAX_GRPC_MESSAGE_BYTES
    }
}

/// More runtime workers than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

/// The validated `server:` section.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls: Option<RawTls>,
    pub admin_listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    /// `None`: no origin configured, no CORS header is ever sent.
    pub cors: Option<Cors>,
    /// Runtime worker threads (`None`: one per CPU the process may use).
    pub worker_threads: Option<usize>,
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
    /// The whole buffered request body must arrive within this.
    pub body_read_timeout: Duration,
    /// Slowest request body accepted, averaged over each `body_rate_window`
    /// (`None`: no floor).
    pub min_body_rate: Option<BodyRate>,
    /// Requests one principal may have in flight at once.
    pub max_in_flight_per_principal: usize,
    /// Most targets (documents and scopes) one request may name.
    pub max_targets: usize,
    /// Most targets one Listen stream may hold at once.
    pub max_listen_targets: usize,
    /// Largest gRPC message, either way, that firegate decodes (requests,
    /// Listen messages, responses it re-seals).
    pub max_grpc_message_bytes: usize,
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
            body_read_timeout: defaults::BODY_READ_TIMEOUT,
            min_body_rate: Some(BodyRate {
                bytes: defaults::MIN_BODY_RATE * defaults::BODY_RATE_WINDOW.as_secs(),
                window: defaults::BODY_RATE_WINDOW,
            }),
            max_in_flight_per_principal: defaults::MAX_IN_FLIGHT_PER_PRINCIPAL,
            max_targets: defaults::MAX_TARGETS,
            max_listen_targets: defaults::MAX_LISTEN_TARGETS,
            max_grpc_message_bytes: defaults::MAX_GRPC_MESSAGE_BYTES,
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
        let cors = self.cors.validate(errors);
        if let Some(n) = self.worker_threads
            && !(1..=MAX_WORKER_THREADS).contains(&n)
        {
            errors.push(
                "server.worker_threads",
                format!("must be from 1 to {MAX_WORKER_THREADS}"),
            );
        }
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
            cors,
            worker_threads: self.worker_threads,
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
        let body_read_timeout = positive("body_read_timeout", &self.body_read_timeout);
        let body_rate_window = positive("body_rate_window", &self.body_rate_window);
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
        // The length prefix of a gRPC message is 32 bits.
        if !(1024..=u32::MAX as usize).contains(&self.max_grpc_message_bytes) {
            errors.push(
                "server.limits.max_grpc_message_bytes",
                "must be between 1024 and 4294967295",
            );
        }
        // The floor is counted per window, in whole bytes.
        let min_body_rate = (self.min_body_rate > 0).then(|| BodyRate {
            bytes: (self.min_body_rate as f64 * body_rate_window.as_secs_f64()).ceil() as u64,
            window: body_rate_window,
        });
        if self.max_in_flight_per_principal == 0 {
            errors.push(
                "server.limits.max_in_flight_per_principal",
                "must be at least 1",
            );
        }
        if self.max_targets == 0 {
            errors.push("server.limits.max_targets", "must be at least 1");
        }
        if self.max_listen_targets == 0 {
            errors.push("server.limits.max_listen_targets", "must be at least 1");
        }
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout,
            idle_timeout,
            max_connections: self.max_connections,
            drain_timeout,
            body_read_timeout,
            min_body_rate,
            max_in_flight_per_principal: self.max_in_flight_per_principal,
            max_targets: self.max_targets,
            max_listen_targets: self.max_listen_targets,
            max_grpc_message_bytes: self.max_grpc_message_bytes,
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

    fn worker_threads(yaml: &str) -> Result<Option<usize>, ConfigErrors> {
        let raw: RawServer = serde_yaml_ng::from_str(yaml).expect("yaml");
        ConfigErrors::collect(|errors| raw.validate(errors)).map(|s| s.worker_threads)
    }

    #[test]
    fn worker_threads_is_optional_and_bounded() {
        assert_eq!(worker_threads("plain_http: true").expect("valid"), None);
        assert_eq!(
            worker_threads("{plain_http: true, worker_threads: 2}").expect("valid"),
            Some(2)
        );
        for bad in ["0", "1025"] {
            let errors = worker_threads(&format!("{{plain_http: true, worker_threads: {bad}}}"))
                .expect_err(bad);
            assert!(
                errors.to_string().contains("server.worker_threads"),
                "{errors}"
            );
        }
    }

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
                limits.body_read_timeout,
                limits.min_body_rate,
                limits.max_in_flight_per_principal,
                limits.max_targets,
                limits.max_listen_targets,
                limits.max_grpc_message_bytes,
            ),
            (
                typed.header_read_timeout,
                typed.idle_timeout,
                typed.drain_timeout,
                typed.max_body_bytes,
                typed.max_header_bytes,
                typed.max_connections,
                typed.body_read_timeout,
                typed.min_body_rate,
                typed.max_in_flight_per_principal,
                typed.max_targets,
                typed.max_listen_targets,
                typed.max_grpc_message_bytes,
            )
        );
    }

    #[test]
    fn the_grpc_message_limit_is_bounded() {
        for (bytes, ok) in [(1023, false), (1024, true), (u32::MAX as usize + 1, false)] {
            let raw = RawLimits {
                max_grpc_message_bytes: bytes,
                ..RawLimits::default()
            };
            let result = ConfigErrors::collect(|errors| raw.validate(errors));
            assert_eq!(result.is_ok(), ok, "{bytes}");
        }
    }
}
