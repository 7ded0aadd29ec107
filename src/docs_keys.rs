//! The configuration reference stays whole: every key the config file
//! accepts has a row in a docs table, and every row names a key that exists.
//!
//! The keys are not listed by hand: they are traced from `RawConfig`'s own
//! `Deserialize` (serde-reflection records the fields each derived struct
//! asks for), so a field added to any section's raw struct fails here until
//! the docs describe it.

use std::collections::BTreeSet;

use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig, VariantFormat};

use crate::app::RawConfig;

/// The docs that may hold the reference tables, relative to the crate root.
const DOCS: [&str; 3] = ["README.md", "deploy/README.md", "policies/README.md"];

/// Every key path of the config file: `server.limits.max_body_bytes`; an
/// entry of a list is written `[]` (`authn.issuers[].name`), a map's values
/// `*`.
fn config_keys() -> BTreeSet<String> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let (root, _) = tracer
        .trace_simple_type::<RawConfig>()
        .expect("RawConfig traces");
    // One trace visits every field of every struct; only the variants of
    // nested enums would need more rounds, and variants are values, not keys.
    let registry = tracer.registry_unchecked();
    let mut keys = BTreeSet::new();
    walk(&registry, &root, "", &mut keys);
    keys
}

fn walk(registry: &Registry, format: &Format, path: &str, keys: &mut BTreeSet<String>) {
    match format {
        Format::TypeName(name) => match registry.get(name) {
            Some(ContainerFormat::Struct(fields)) => {
                for field in fields {
                    let key = if path.is_empty() {
                        field.name.clone()
                    } else {
                        format!("{path}.{}", field.name)
                    };
                    walk(registry, &field.value, &key, keys);
                    keys.insert(key);
                }
            }
            Some(ContainerFormat::NewTypeStruct(inner)) => walk(registry, inner, path, keys),
            Some(ContainerFormat::Enum(variants)) => {
                for variant in variants.values() {
                    if let VariantFormat::Struct(fields) = &variant.value {
                        for field in fields {
                            let key = format!("{path}.{}", field.name);
                            walk(registry, &field.value, &key, keys);
                            keys.insert(key);
                        }
                    }
                }
            }
            _ => {}
        },
        Format::Option(inner) => walk(registry, inner, path, keys),
        Format::Seq(inner) => walk(registry, inner, &format!("{path}[]"), keys),
        Format::Map { value, .. } => walk(registry, value, &format!("{path}.*"), keys),
        _ => {}
    }
}

/// A key with no keys below it: the ones a reader sets.
fn is_leaf(key: &str, keys: &BTreeSet<String>) -> bool {
    !keys.iter().any(|other| {
        other.len() > key.len()
            && other.starts_with(key)
            && other[key.len()..].starts_with(['.', '['])
    })
}

/// The backticked names in the first cell of every table row of the docs.
fn documented() -> BTreeSet<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut names = BTreeSet::new();
    for doc in DOCS {
        let path = format!("{root}/{doc}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.lines() {
            let Some(row) = line.trim_start().strip_prefix('|') else {
                continue;
            };
            let first = row.split('|').next().unwrap_or_default();
            names.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    names
}

#[test]
fn the_tracer_sees_the_config() {
    let keys = config_keys();
    for key in [
        "server.limits.max_body_bytes",
        "authn.issuers[].backstage.plugin_tokens.audience",
        "upstream.credentials.impersonation.lifetime",
        "log.level",
    ] {
        assert!(keys.contains(key), "{key} not traced; traced: {keys:#?}");
    }
}

#[test]
fn every_config_key_has_a_row_in_the_docs() {
    let keys = config_keys();
    let documented = documented();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| is_leaf(key, &keys) && !documented.contains(*key))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys without a table row (`| \\`key\\` | …`) in {DOCS:?}: {missing:#?}"
    );
}

#[test]
fn every_documented_config_key_exists() {
    let keys = config_keys();
    let sections: BTreeSet<&str> = keys
        .iter()
        .filter(|k| !k.contains(['.', '[']))
        .map(String::as_str)
        .collect();
    let unknown: Vec<String> = documented()
        .into_iter()
        .filter(|name| {
            let section = name.split(['.', '[']).next().unwrap_or_default();
            name.len() > section.len() && sections.contains(section) && !keys.contains(name)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "docs tables name config keys that do not exist: {unknown:#?}"
    );
}
