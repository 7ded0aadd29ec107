//! Backstage entity refs in every spelling Backstage accepts —
//! `kind:namespace/name`, `kind:name` (namespace `default`), `name` where
//! the kind is implied (`spec.owner` → group) — brought to one canonical
//! form: `kind:namespace/name`, lower-cased (Backstage compares refs
//! case-insensitively).

/// The canonical form of `text`, or `None` when it is no entity ref: an
/// empty part, a missing kind with none implied, or a name holding `:` or
/// `/` (a path id substituted into a template must name one entity).
pub fn normalize(
    text: &str,
    default_kind: Option<&str>,
    default_namespace: &str,
) -> Option<String> {
    let text = text.trim();
    let (kind, rest) = match text.split_once(':') {
        Some((kind, rest)) => (kind, rest),
        None => (default_kind?, text),
    };
    let (namespace, name) = match rest.split_once('/') {
        Some((namespace, name)) => (namespace, name),
        None => (default_namespace, rest),
    };
    let bad =
        |s: &str| s.is_empty() || s.contains([':', '/']) || s.chars().any(char::is_whitespace);
    if bad(kind) || bad(namespace) || bad(name) {
        return None;
    }
    let mut out = String::with_capacity(kind.len() + namespace.len() + name.len() + 2);
    out.push_str(kind);
    out.push(':');
    out.push_str(namespace);
    out.push('/');
    out.push_str(name);
    out.make_ascii_lowercase();
    Some(out)
}

/// [`normalize`] of a ref built just now: one already written out in full
/// (`kind:namespace/name`) is lower-cased in place, with no new string.
pub fn normalize_owned(
    mut text: String,
    default_kind: Option<&str>,
    default_namespace: &str,
) -> Option<String> {
    let full = text.split_once(':').is_some_and(|(kind, rest)| {
        let ok = |s: &str| {
            !s.is_empty() && !s.contains([':', '/']) && !s.chars().any(char::is_whitespace)
        };
        ok(kind)
            && rest
                .split_once('/')
                .is_some_and(|(ns, name)| ok(ns) && ok(name))
    });
    if full {
        text.make_ascii_lowercase();
        Some(text)
    } else {
        normalize(&text, default_kind, default_namespace)
    }
}

/// The kind of a canonical ref.
pub fn kind_of(canonical: &str) -> &str {
    canonical.split_once(':').map_or("", |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_gives_one_ref() {
        let want = Some("component:default/payments".to_string());
        for text in [
            "component:default/payments",
            "component:payments",
            "Component:Default/Payments",
            "COMPONENT:PAYMENTS",
            " component:payments ",
        ] {
            assert_eq!(normalize(text, None, "default"), want, "{text}");
        }
        assert_eq!(
            normalize("team-a", Some("group"), "default").as_deref(),
            Some("group:default/team-a")
        );
        assert_eq!(
            normalize("team-a", Some("group"), "ops").as_deref(),
            Some("group:ops/team-a")
        );
        assert_eq!(
            normalize("user:ops/Alice", Some("group"), "default").as_deref(),
            Some("user:ops/alice")
        );
    }

    #[test]
    fn built_refs_normalize_alike() {
        for text in [
            "component:default/payments",
            "Component:Default/Payments",
            "component:payments",
            "payments",
            " component:payments ",
            "component:default/a:b",
            "",
        ] {
            assert_eq!(
                normalize_owned(text.to_string(), Some("component"), "default"),
                normalize(text, Some("component"), "default"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn what_is_no_ref_is_refused() {
        for text in [
            "",
            "payments",
            "component:",
            "component:default/",
            ":default/x",
            "component:default/a:b",
            "component:a/b/c",
            "component:default/a b",
        ] {
            assert_eq!(normalize(text, None, "default"), None, "{text:?}");
        }
    }
}
