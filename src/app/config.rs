//! The configuration assembled: one YAML file, `FIREGATE_*` environment
//! overrides, each section's raw serde struct (`deny_unknown_fields`)
//! validated once by its own module, into the typed settings of a
//! [`Config`], with every error reported at once.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml_ng::Value;

use prometheus_client::registry::Registry;

use super::env;
use crate::access::{AccessConfig, AccessSettings};
use crate::audit::Auditor;
use crate::audit::{AuditConfig, AuditSettings};
use crate::authn::Authenticator;
use crate::authn::IssuerKind;
use crate::authn::{AuthnConfig, AuthnSettings};
use crate::body::Pace;
use crate::catalog::{Catalog, CatalogConfig, CatalogSettings};
use crate::config::ConfigErrors;
use crate::logging::{LogSettings, RawLog};
use crate::pipeline::{Pipeline, PipelineSettings, Steps};
use crate::policy::PolicyEngine;
use crate::policy::{PolicyConfig, PolicySettings};
use crate::server::config::{RawServer, ServerSettings};
use crate::transaction::TransactionSealer;
use crate::transaction::{TransactionConfig, TransactionSettings};
use crate::upstream::Credentials;
use crate::upstream::{UpstreamConfig, UpstreamSettings};

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
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub transactions: TransactionConfig,
    #[serde(default)]
    pub log: RawLog,
    /// Access requests (off when absent).
    #[serde(default)]
    pub access: Option<AccessConfig>,
}

/// The validated configuration: every section's typed settings, each
/// parsed once; constructors take them as they are.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub authn: AuthnSettings,
    pub policy: PolicySettings,
    pub catalog: CatalogSettings,
    pub upstream: UpstreamSettings,
    pub audit: AuditSettings,
    pub transactions: TransactionSettings,
    pub log: LogSettings,
    pub access: Option<AccessSettings>,
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

    /// Every section validated, in file order. Only returned to callers
    /// when `errors` stays empty, so no placeholder of a bad value escapes.
    fn validate(raw: RawConfig, errors: &mut ConfigErrors) -> Config {
        Config {
            server: raw.server.validate(errors),
            authn: raw.authn.validate(errors),
            policy: raw.policy.validate(errors),
            catalog: raw.catalog.validate(errors),
            upstream: raw.upstream.validate(errors),
            audit: raw.audit.validate(errors),
            transactions: raw.transactions.validate(errors),
            log: raw.log.validate(errors),
            access: raw.access.map(|a| a.validate(errors)),
        }
    }
}

impl Config {
    /// Every step of the pipeline built from its section, and the
    /// pipeline's own settings gathered from the sections that bound it.
    pub async fn pipeline(&self, registry: &mut Registry) -> anyhow::Result<Pipeline> {
        let limits = &self.server.limits;
        let (upstream, grpc_upstream) = crate::upstream::clients(&self.upstream, registry)?;
        let steps = Steps {
            authn: Authenticator::new(&self.authn, registry).await?,
            transactions: TransactionSealer::new(&self.transactions)?,
            policy: PolicyEngine::new(&self.policy, registry)
                .await?
                .with_catalog(self.catalog(registry)?),
            credentials: Credentials::new(&self.upstream.credentials, registry).await?,
            upstream,
            grpc_upstream,
            audit: Auditor::new(&self.audit, registry).await?,
        };
        let settings = PipelineSettings {
            max_body_bytes: limits.max_body_bytes,
            body_pace: Pace {
                deadline: limits.body_read_timeout,
                min_rate: limits.min_body_rate,
            },
            max_targets: limits.max_targets,
            max_listen_targets: limits.max_listen_targets,
            databases: self.upstream.databases.clone(),
            trusted_proxies: self.server.trusted_proxies.clone(),
            cors: self.server.cors.clone(),
            max_in_flight_per_principal: limits.max_in_flight_per_principal,
            max_grpc_message_bytes: limits.max_grpc_message_bytes,
            access: self.access.clone(),
        };
        Ok(Pipeline::new(steps, settings, registry))
    }
}

impl Config {
    /// The Backstage catalog, its sync started, when `catalog.url` is set.
    /// Callers of every Backstage issuer are catalog users by their `sub`.
    fn catalog(&self, registry: &mut Registry) -> anyhow::Result<Option<Arc<Catalog>>> {
        let backstage: Vec<String> = self
            .authn
            .issuers
            .iter()
            .filter(|i| i.kind == IssuerKind::Backstage)
            .map(|i| i.issuer.clone())
            .collect();
        let catalog = Catalog::new(&self.catalog, &backstage, registry)?;
        if let Some(catalog) = &catalog {
            catalog.spawn();
        }
        Ok(catalog)
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
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The smallest valid config: plain HTTP, one database.
    const MINIMAL: &str =
        "server: {plain_http: true}\nupstream: {databases: ['projects/p/databases/(default)']}";

    #[test]
    fn plain_http_minimal_config_loads() {
        let c = Config::from_yaml(MINIMAL, env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 8443);
        assert_eq!(c.server.limits.max_body_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_fails_loudly() {
        let err = Config::from_yaml("server: {plain_http: true, lisen: x}", env(&[])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = Config::from_yaml("server: {plain_http: true}", env(&[])).unwrap_err();
        assert!(err.to_string().contains("upstream.databases"), "{err}");
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
                "server.limits.idle_timeout",
                "upstream.databases",
            ]
        );
    }

    #[test]
    fn merge_overlays_nested_keys_and_keeps_the_rest() {
        let mut base: Value = serde_yaml_ng::from_str(
            "server: {plain_http: true, listen: '127.0.0.1:1'}\n\
             upstream: {databases: ['projects/p/databases/d']}",
        )
        .unwrap();
        let overlay: Value =
            serde_yaml_ng::from_str("server: {listen: '127.0.0.1:2'}\naudit: {sink: stdout}")
                .unwrap();
        merge(&mut base, overlay);
        let c = Config::from_value(base, env(&[])).unwrap();
        assert_eq!(c.server.listen.port(), 2);
    }

    #[test]
    fn sections_carry_the_values_written_and_refuse_bad_ones() {
        let c = Config::from_yaml(
            "server: {plain_http: true}\ntransactions: {ttl: 90s}\n\
             upstream: {connect_timeout: 250ms, databases: [projects/p/databases/d]}\n\
             audit: {queue_capacity: 3}\n\
             authn: {http_timeout: 2s}\npolicy: {cache_max_bytes: 9000, watch: false}",
            env(&[]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.transactions.ttl, Duration::from_secs(90));
        assert_eq!(c.upstream.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.audit.queue_capacity.get(), 3);
        assert_eq!(c.authn.http_timeout, Duration::from_secs(2));
        assert_eq!((c.policy.cache.max_bytes, c.policy.watch), (9000, false));

        let err = Config::from_yaml(
            "server: {plain_http: true}\ntransactions: {ttl: 0s}\n\
             upstream: {credentials: {impersonation: {lifetime: 13h}}, databases: [projects/p/databases/d]}",
            env(&[]),
        )
        .unwrap_err();
        let keys: Vec<_> = err.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "upstream.credentials.impersonation.lifetime",
                "transactions.ttl"
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
            MINIMAL,
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
