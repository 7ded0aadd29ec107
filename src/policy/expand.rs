//! Catalog-bound rules expanded against a catalog snapshot, for the
//! offline analyses (`policy who-can`, `policy diff` with `--catalog`):
//! each becomes one rule per entity the template can name, its wildcard
//! fixed to the entity's name and its `who` narrowed to the entity's
//! owning (member) users by subject (`user:default/alice`). A rule whose
//! entity has nobody is dropped: it matches nobody.

use std::collections::BTreeMap;

use super::format::{PolicyErrors, RawRule, RawWho, Source};
use super::table::Table;
use crate::catalog::Index;
use crate::catalog::refs::normalize;

/// A template cut where its wildcards are: literal text (canonical) and
/// wildcard names, alternating, starting and ending with text.
struct Shape {
    texts: Vec<String>,
    vars: Vec<String>,
}

/// Sentinels stand for the wildcards while the template is normalized.
fn shape(template: &str) -> Option<Shape> {
    let mut vars = Vec::new();
    let mut sentinel = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}')?;
        sentinel.push_str(&rest[..open]);
        sentinel.push('\u{1}');
        vars.push(rest[open + 1..close].to_owned());
        rest = &rest[close + 1..];
    }
    sentinel.push_str(rest);
    let canonical = normalize(&sentinel, None, "default")?;
    let texts: Vec<String> = canonical.split('\u{1}').map(str::to_owned).collect();
    (texts.len() == vars.len() + 1).then_some(Shape { texts, vars })
}

/// The bindings under which `shape` gives `canonical`; a wildcard takes
/// the shortest run that lets the rest match (refs hold no ambiguity the
/// analyses care about).
fn bind(shape: &Shape, canonical: &str) -> Option<BTreeMap<String, String>> {
    let mut rest = canonical.strip_prefix(shape.texts[0].as_str())?;
    let mut out = BTreeMap::new();
    for (i, var) in shape.vars.iter().enumerate() {
        let next = &shape.texts[i + 1];
        let end = if next.is_empty() && i + 1 == shape.vars.len() {
            rest.len()
        } else {
            rest.find(next.as_str())?
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains(['/', ':']) {
            return None;
        }
        if out.get(var).is_some_and(|v: &String| v != value) {
            return None;
        }
        out.insert(var.clone(), value.to_owned());
        rest = &rest[end + next.len()..];
    }
    rest.is_empty().then_some(out)
}

fn expand_rule(raw: &RawRule, index: &Index, out: &mut Vec<RawRule>) {
    let Some(catalog) = raw.who.as_ref().and_then(|w| w.catalog.as_ref()) else {
        out.push(raw.clone());
        return;
    };
    let (template, owner) = match (&catalog.owner_of, &catalog.member_of) {
        (Some(t), _) => (t, true),
        (None, Some(t)) => (t, false),
        (None, None) => return,
    };
    let Some(shape) = shape(template) else { return };
    let candidates: Vec<&str> = if owner {
        index.owned_entities().collect()
    } else {
        index.groups().collect()
    };
    let mut expanded: Vec<(String, RawRule)> = Vec::new();
    for entity in candidates {
        let Some(bindings) = bind(&shape, entity) else {
            continue;
        };
        let users = if owner {
            index.owning_users(entity)
        } else {
            index.members(entity)
        };
        let mut who: RawWho = raw.who.clone().unwrap_or_default();
        who.catalog = None;
        let users: Vec<String> = users
            .into_iter()
            .map(str::to_owned)
            .filter(|u| who.subjects.as_ref().is_none_or(|s| s.contains(u)))
            .collect();
        if users.is_empty() {
            continue;
        }
        who.subjects = Some(users);
        let pattern = raw
            .pattern
            .split('/')
            .map(|segment| {
                segment
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .and_then(|name| bindings.get(name))
                    .map_or(segment.to_owned(), Clone::clone)
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut rule = raw.clone();
        rule.id = format!("{}[{entity}]", raw.id);
        rule.pattern = pattern;
        rule.who = Some(who);
        expanded.push((entity.to_owned(), rule));
    }
    expanded.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(expanded.into_iter().map(|(_, r)| r));
}

impl Table {
    /// The table of `sources` with every catalog-bound rule expanded
    /// against `index` (see the module doc). `sources` must compile as
    /// they are first: problems are reported against the files as written.
    pub fn compile_expanded(
        sources: &[Source],
        index: &Index,
        epoch: u64,
    ) -> Result<Table, PolicyErrors> {
        Table::compile(sources, epoch)?;
        let expanded: Vec<Source> = sources
            .iter()
            .map(|s| {
                let mut rules = Vec::new();
                for raw in &s.file.rules {
                    expand_rule(raw, index, &mut rules);
                }
                Source {
                    name: s.name.clone(),
                    text: s.text.clone(),
                    file: super::format::RawFile {
                        rules,
                        requestable: s.file.requestable.clone(),
                    },
                }
            })
            .collect();
        Table::compile(&expanded, epoch)
    }

    /// [`Table::from_dir`], catalog-bound rules expanded against `index`.
    pub fn from_dir_expanded(
        dir: &std::path::Path,
        index: &Index,
        epoch: u64,
    ) -> Result<Table, PolicyErrors> {
        Table::compile_expanded(&super::format::read_dir(dir)?, index, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::analysis::PathSet;
    use crate::policy::analysis::who_can::who_can;
    use crate::policy::pattern::Pattern;
    use serde_json::json;

    fn index() -> Index {
        Index::from_items(vec![
            json!({"kind": "Group", "metadata": {"name": "payments"}}),
            json!({"kind": "Group", "metadata": {"name": "empty"}}),
            json!({"kind": "User", "metadata": {"name": "alice"}, "spec": {"memberOf": ["payments"]}}),
            json!({"kind": "Component", "metadata": {"name": "checkout"}, "spec": {"owner": "payments"}}),
            json!({"kind": "Component", "metadata": {"name": "orphan"}, "spec": {"owner": "empty"}}),
            json!({"kind": "Component", "metadata": {"name": "elsewhere", "namespace": "ops"}, "spec": {"owner": "group:default/payments"}}),
        ])
    }

    #[test]
    fn templates_bind_only_the_refs_they_can_name() {
        let s = shape("component:{service}").unwrap();
        assert_eq!(
            bind(&s, "component:default/checkout").unwrap()["service"],
            "checkout"
        );
        assert!(bind(&s, "component:ops/checkout").is_none());
        assert!(bind(&s, "group:default/checkout").is_none());
        let s = shape("Component:{ns}/{name}").unwrap();
        let b = bind(&s, "component:ops/x").unwrap();
        assert_eq!((b["ns"].as_str(), b["name"].as_str()), ("ops", "x"));
    }

    #[test]
    fn who_can_names_the_owning_users_per_entity() {
        let yaml = "rules:\n  - id: owners\n    match: /services/{service}/{rest=**}\n    allow: [write]\n    who: {catalog: {owner_of: \"component:default/{service}\"}}\n";
        let source = Source::parse("<inline>", yaml.to_string()).unwrap();
        let table = Table::compile_expanded(&[source], &index(), 1).unwrap();
        let ids: Vec<&str> = table.rules.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["owners[component:default/checkout]"]);
        let pattern = Pattern::parse("/services/checkout/data/d").unwrap();
        let answer = who_can(
            &table,
            &crate::policy::analysis::accesses("write").unwrap(),
            &PathSet::of(&pattern),
            None,
        );
        let text = answer.text();
        assert!(text.contains("user:default/alice"), "{text}");
        let pattern = Pattern::parse("/services/orphan/data/d").unwrap();
        let answer = who_can(
            &table,
            &crate::policy::analysis::accesses("write").unwrap(),
            &PathSet::of(&pattern),
            None,
        );
        assert!(!answer.text().contains("user:"), "{}", answer.text());
    }
}
