//! Dependencies point one way: the allow-list of `crate::` edges between
//! top-level modules, checked against the source. `app` assembles; the
//! pipeline uses the steps; the steps know each other only through the
//! small value types they exchange; the wires (`firestore`, `grpc`) depend
//! on `model`, never on each other; `config`'s leaves import nothing.
//! Test code (`tests.rs`, `*_tests.rs`, `proptests.rs`, and everything
//! after a file's `#[cfg(test)]`) may reach further: a parity test compares
//! the wires.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and the modules it may name.
const ALLOWED: &[(&str, &[&str])] = &[
    // The composition root and the command line: anything they assemble.
    (
        "app",
        &[
            "access",
            "audit",
            "authn",
            "body",
            "catalog",
            "config",
            "logging",
            "metrics",
            "pipeline",
            "policy",
            "server",
            "transaction",
            "upstream",
        ],
    ),
    (
        "cli",
        &[
            "app",
            "audit",
            "authn",
            "catalog",
            "dev",
            "emulator",
            "firestore",
            "logging",
            "model",
            "policy",
        ],
    ),
    ("dev", &["app", "body", "emulator", "server"]),
    // The steps, in order, and the wires at their ends.
    (
        "pipeline",
        &[
            "access",
            "audit",
            "authn",
            "body",
            "catalog",
            "crypto",
            "error",
            "firestore",
            "grpc",
            "metrics",
            "model",
            "policy",
            "server",
            "transaction",
            "upstream",
        ],
    ),
    // The steps themselves.
    (
        "access",
        &[
            "authn", "body", "catalog", "config", "metrics", "model", "policy", "upstream",
        ],
    ),
    ("authn", &["config", "fetch", "metrics"]),
    (
        "policy",
        &["authn", "catalog", "config", "metrics", "model"],
    ),
    // The Backstage catalog: its sync and the ownership index.
    ("catalog", &["authn", "config", "fetch", "metrics"]),
    ("transaction", &["authn", "body", "config", "model"]),
    (
        "upstream",
        &[
            "body", "config", "crypto", "error", "fetch", "metrics", "model",
        ],
    ),
    ("audit", &["authn", "config", "crypto", "metrics"]),
    // The wires and the model they decode into.
    ("firestore", &["body", "model"]),
    ("grpc", &["body", "model", "transaction"]),
    ("model", &[]),
    // The edge and the leaves.
    ("server", &["body", "config", "crypto", "metrics"]),
    ("emulator", &["body", "firestore", "server"]),
    ("logging", &["config"]),
    ("config", &[]),
    ("fetch", &["body", "error"]),
    ("body", &[]),
    ("crypto", &[]),
    ("error", &[]),
    ("metrics", &[]),
];

/// Test-only modules, not part of the layering (this test, the docs check).
const EXEMPT: &[&str] = &["docs_keys", "layering"];

#[test]
fn dependencies_follow_the_allow_list() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, deps)| (*module, deps.iter().copied().collect()))
        .collect();
    let mut problems = Vec::new();
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if ["lib", "main"].contains(&name) || EXEMPT.contains(&name) {
            continue;
        }
        modules.insert(name.to_owned());
    }
    for module in &modules {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!("{module}: not in the allow-list"));
            continue;
        };
        let mut used = BTreeSet::new();
        for file in sources(&src, module) {
            let text = std::fs::read_to_string(&file).expect("read");
            used.extend(crate_edges(production_part(&file, &text)));
        }
        used.remove(module.as_str());
        for dep in &used {
            if !may.contains(dep.as_str()) {
                problems.push(format!("{module} -> {dep}: not allowed"));
            }
        }
        for dep in may {
            if !used.contains(*dep) {
                problems.push(format!(
                    "{module} -> {dep}: allowed but unused (tighten the list)"
                ));
            }
        }
    }
    for module in allowed.keys() {
        if !modules.contains(*module) {
            problems.push(format!("{module}: in the allow-list but not in src/"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `src/{module}.rs` and every file under `src/{module}/`.
fn sources(src: &Path, module: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The part of a file that is not test code.
fn production_part<'a>(file: &Path, text: &'a str) -> &'a str {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "tests.rs" || name == "proptests.rs" || name.ends_with("_tests.rs") {
        return "";
    }
    match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The top-level modules named as `crate::name` or inside `crate::{…}`
/// (comments included: a doc link is a dependency of the reader too).
fn crate_edges(text: &str) -> BTreeSet<String> {
    let mut edges = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the group's own items name top-level modules, not those
            // of a nested group (`crate::{a::{b, c}, d}` names a and d).
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        edges.extend(ident(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        edges.extend(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            edges.extend(ident(rest));
        }
    }
    edges
}

fn ident(text: &str) -> Option<String> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    (!name.is_empty() && name != "self").then(|| name.to_owned())
}

#[test]
fn edges_are_read_from_paths_and_groups() {
    let edges = crate_edges("use crate::a::b;\nuse crate::{c, d::{e, g}, self};\n// crate::f\n");
    assert_eq!(edges.into_iter().collect::<Vec<_>>(), ["a", "c", "d", "f"]);
}
