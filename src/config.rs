//! Configuration: one YAML file, `FIREGATE_*` environment overrides, raw
//! serde structs (`deny_unknown_fields`) validated into a typed [`Config`]
//! with every error reported at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::audit::AuditConfig;
use crate::authn::AuthnConfig;
use crate::firestore::transaction::TransactionConfig;
use crate::policy::PolicyConfig;
use crate::upstream::UpstreamConfig;

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub authn: AuthnConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub transactions: TransactionConfig,
}

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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub authn: AuthnConfig,
    pub policy: PolicyConfig,
    pub upstream: UpstreamConfig,
    pub audit: AuditConfig,
    pub transactions: TransactionConfig,
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

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `server.limits.idle_timeout`.
    pub key: String,
    pub reason: String,
}

/// Every problem found, with the file they came from.
#[derive(Debug, Default)]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<config>".into());
        for e in &self.errors {
            writeln!(f, "{file}: {}: {}", e.key, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parse a humantime duration, recording an error under `key`.
pub fn duration(key: &str, value: &str, errors: &mut ConfigErrors) -> Duration {
    humantime::parse_duration(value).unwrap_or_else(|e| {
        errors.push(key, format!("not a duration ({e}); write e.g. `30s`"));
        Duration::ZERO
    })
}

impl Config {
    /// Read `path`, apply `FIREGATE_*` overrides from `env`, and validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errors = ConfigErrors {
                file: Some(path.to_owned()),
                ..Default::default()
            };
            errors.push("(file)", e.to_string());
            errors
        })?;
        Config::from_yaml(&text, env).map_err(|mut errors| {
            errors.file = Some(path.to_owned());
            errors
        })
    }

    /// Parse YAML text with overrides and validate.
    pub fn from_yaml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut value: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let mut errors = ConfigErrors::default();
                errors.push(location(&e), e.to_string());
                errors
            })?
        };
        apply_env(&mut value, env, &mut errors);
        let raw: RawConfig = serde_yaml_ng::from_value(value).map_err(|e| {
            errors.push(location(&e), e.to_string());
            std::mem::take(&mut errors)
        })?;
        let config = Config::validate(raw, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn validate(raw: RawConfig, errors: &mut ConfigErrors) -> Config {
        let server = validate_server(raw.server, errors);
        raw.authn.validate(errors);
        raw.policy.validate(errors);
        raw.upstream.validate(errors);
        raw.audit.validate(errors);
        raw.transactions.validate(errors);
        Config {
            server,
            authn: raw.authn,
            policy: raw.policy,
            upstream: raw.upstream,
            audit: raw.audit,
            transactions: raw.transactions,
        }
    }
}

fn location(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(loc) => format!("line {}, column {}", loc.line(), loc.column()),
        None => "(structure)".into(),
    }
}

fn validate_server(raw: RawServer, errors: &mut ConfigErrors) -> ServerConfig {
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

/// `FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT=5s` sets `server.limits.idle_timeout`:
/// the prefix is dropped, `__` separates keys, names are lower-cased, and the
/// value is read as a YAML scalar.
fn apply_env(
    root: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut ConfigErrors,
) {
    for (name, raw_value) in env {
        let Some(rest) = name.strip_prefix("FIREGATE_") else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            errors.push(name.clone(), "malformed override name");
            continue;
        }
        let value: Value = serde_yaml_ng::from_str(&raw_value)
            .unwrap_or_else(|_| Value::String(raw_value.clone()));
        let mut node = &mut *root;
        for key in &keys[..keys.len() - 1] {
            let Value::Mapping(map) = node else {
                errors.push(name.clone(), "overrides a key below a non-mapping value");
                break;
            };
            node = map
                .entry(Value::String(key.clone()))
                .or_insert_with(|| Value::Mapping(Default::default()));
        }
        match node {
            Value::Mapping(map) => {
                map.insert(Value::String(keys[keys.len() - 1].clone()), value);
            }
            _ => errors.push(name, "overrides a key below a non-mapping value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_http_minimal_config_loads() {
        let c = Config::from_yaml("server: {plain_http: true}", env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 8443);
        assert_eq!(c.server.limits.max_body_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_fails_loudly() {
        let err = Config::from_yaml("server: {plain_http: true, lisen: x}", env(&[])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let yaml = "server:\n  listen: nope\n  admin_listen: nope\n  plain_http: true\n  trusted_proxies: [bad]\n  limits: {idle_timeout: forever}\n";
        let err = Config::from_yaml(yaml, env(&[])).unwrap_err();
        let keys: Vec<_> = err.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.admin_listen",
                "server.trusted_proxies[0]",
                "server.limits.idle_timeout"
            ]
        );
    }

    #[test]
    fn tls_or_plain_http_is_required() {
        let err = Config::from_yaml("", env(&[])).unwrap_err();
        assert_eq!(err.errors[0].key, "server.tls");
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let c = Config::from_yaml(
            "server: {plain_http: true}",
            env(&[
                ("FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT", "5s"),
                ("FIREGATE_SERVER__LISTEN", "127.0.0.1:1234"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.server.listen.port(), 1234);
    }
}
