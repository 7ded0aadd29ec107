//! Test configs as values: a base merged with overrides and serialised to
//! YAML, so no test depends on the indentation of a string.
//!
//! ```ignore
//! let yaml = config::plain(&up.url)
//!     .merge(json!({"server": {"limits": {"max_connections": 1}}}))
//!     .yaml();
//! ```

use serde_json::{Value, json};

use super::TestPki;
use super::proxy::DATABASE;

/// A config (or one section of it) being built.
#[derive(Debug, Clone)]
pub struct TestConfig(Value);

impl TestConfig {
    pub fn new(value: Value) -> TestConfig {
        TestConfig(value)
    }

    /// Merge `over` into this: objects key by key, recursively; any other
    /// value (arrays included) replaces what was there; `null` removes.
    pub fn merge(mut self, over: Value) -> TestConfig {
        merge(&mut self.0, over);
        self
    }

    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The YAML firegate reads.
    pub fn yaml(&self) -> String {
        yaml(&self.0)
    }
}

/// `value` as YAML.
pub fn yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).expect("a JSON value is YAML")
}

/// Merge `over` into `base` as [`TestConfig::merge`] does.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    base.remove(&key);
                } else {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Plain HTTP on ephemeral ports in front of `upstream_url`.
pub fn plain(upstream_url: &str) -> TestConfig {
    TestConfig(json!({
        "server": {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "plain_http": true,
        },
        "upstream": {"url": upstream_url, "databases": [DATABASE]},
    }))
}

/// TLS with the test PKI's certificate on ephemeral ports in front of
/// `upstream_url`.
pub fn tls(pki: &TestPki, upstream_url: &str) -> TestConfig {
    TestConfig(json!({
        "server": {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "tls": {"cert": pki.cert_path, "key": pki.key_path},
        },
        "upstream": {"url": upstream_url, "databases": [DATABASE]},
    }))
}

/// One OIDC issuer entry as `authn.issuers` lists it.
pub fn oidc_issuer(name: &str, issuer: &str, audience: &str) -> TestConfig {
    TestConfig(json!({
        "name": name,
        "issuer": issuer,
        "audiences": [audience],
    }))
}
