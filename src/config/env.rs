//! `FIREGATE_*` environment overrides applied to the YAML tree before it is
//! deserialized.

use serde_yaml_ng::Value;

use super::ConfigErrors;

/// `FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT=5s` sets `server.limits.idle_timeout`:
/// the prefix is dropped, `__` separates keys, names are lower-cased, and the
/// value is read as a YAML scalar.
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
