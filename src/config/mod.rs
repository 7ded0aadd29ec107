//! Configuration: one YAML file, `FIREGATE_*` environment overrides, raw
//! serde structs (`deny_unknown_fields`) validated into a typed [`Config`]
//! with every error reported at once.

mod env;
mod errors;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

pub use errors::{ConfigError, ConfigErrors};

use crate::audit::AuditConfig;
use crate::authn::AuthnConfig;
use crate::policy::PolicyConfig;
use crate::server::config::{RawServer, ServerConfig, validate_server};
use crate::transaction::TransactionConfig;
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
        let value: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                let mut errors = ConfigErrors::default();
                errors.push(location(&e), e.to_string());
                errors
            })?
        };
        Config::from_value(value, env)
    }

    /// Validate a config given as a YAML value (built by `firegate dev` and
    /// the tests), with overrides.
    pub fn from_value(
        mut value: Value,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        env::apply_env(&mut value, env, &mut errors);
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

/// Merge `overlay` into `base`: mappings merge key by key, anything else
/// in `overlay` replaces what `base` had.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

fn location(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(loc) => format!("line {}, column {}", loc.line(), loc.column()),
        None => "(structure)".into(),
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
    fn merge_overlays_nested_keys_and_keeps_the_rest() {
        let mut base: Value =
            serde_yaml_ng::from_str("server: {plain_http: true, listen: '127.0.0.1:1'}").unwrap();
        let overlay: Value =
            serde_yaml_ng::from_str("server: {listen: '127.0.0.1:2'}\naudit: {sink: stdout}")
                .unwrap();
        merge(&mut base, overlay);
        let c = Config::from_value(base, env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 2);
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
