//! `FIREGATE_*` environment overrides applied to the YAML tree before it is
//! deserialized.

use serde_yaml_ng::Value;

use crate::config::ConfigErrors;

/// The top-level sections an override may name. Anything else under the
/// prefix is someone else's variable: Kubernetes injects
/// `FIREGATE_SERVICE_HOST`, `FIREGATE_PORT_8443_TCP_ADDR`, … for a Service
/// named `firegate`, and reading those as config would stop the pod.
const SECTIONS: &[&str] = &[
    "server",
    "authn",
    "policy",
    "catalog",
    "upstream",
    "audit",
    "transactions",
];

/// `FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT=5s` sets `server.limits.idle_timeout`:
/// the prefix is dropped, `__` separates keys, names are lower-cased, and the
/// value is read as a YAML scalar. Only `FIREGATE_<SECTION>__…` naming one
/// of [`SECTIONS`] is config; other `FIREGATE_*` variables are ignored.
pub(super) fn apply_env(
    root: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    errors: &mut ConfigErrors,
) {
    for (name, raw_value) in env {
        let Some(rest) = name.strip_prefix("FIREGATE_") else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.len() < 2 || !SECTIONS.contains(&keys[0].as_str()) {
            tracing::debug!(variable = %name, "not a FIREGATE_<SECTION>__<KEY> override; ignored");
            continue;
        }
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

    fn apply(pairs: &[(&str, &str)]) -> (Value, ConfigErrors) {
        let mut root = Value::Mapping(Default::default());
        let mut errors = ConfigErrors::default();
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut root, env, &mut errors);
        (root, errors)
    }

    #[test]
    fn kubernetes_service_links_are_not_config() {
        let (root, errors) = apply(&[
            ("FIREGATE_SERVICE_HOST", "10.96.0.12"),
            ("FIREGATE_SERVICE_PORT", "8443"),
            ("FIREGATE_SERVICE_PORT_HTTPS", "8443"),
            ("FIREGATE_PORT", "tcp://10.96.0.12:8443"),
            ("FIREGATE_PORT_8443_TCP_ADDR", "10.96.0.12"),
            ("FIREGATE_PORT_8443_TCP", "tcp://10.96.0.12:8443"),
            ("FIREGATE_SERVER", "x"),
            ("FIREGATE_SERVERX__LISTEN", "x"),
        ]);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(root, Value::Mapping(Default::default()));
    }

    #[test]
    fn section_overrides_still_apply_and_bad_names_are_errors() {
        let (root, errors) = apply(&[
            ("FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT", "5s"),
            ("FIREGATE_AUDIT____SINK", "file"),
        ]);
        assert_eq!(root["server"]["limits"]["idle_timeout"], "5s");
        let keys: Vec<_> = errors.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["FIREGATE_AUDIT____SINK"]);
    }
}
