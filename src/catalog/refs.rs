//! Backstage entity refs in every spelling Backstage accepts —
//! `kind:namespace/name`, `kind:name` (namespace `default`), `name` where
//! the kind is implied (`spec.owner` → group) — brought to one canonical
//! form: `kind:namespace/name`, lower-cased (Backstage compares refs
//! case-insensitively).

/// Whether `s` may be one part of a ref: not empty, no `:` or `/`, no
/// whitespace. Byte by byte for ASCII (refs nearly always are).
fn part_ok(s: &str) -> bool {
    !s.is_empty()
        && !s
            .bytes()
            .any(|b| matches!(b, b':' | b'/' | b' ' | b'\t'..=b'\r'))
        && (s.is_ascii() || !s.chars().any(char::is_whitespace))
}

/// Whether `text` is written out in full (`kind:namespace/name`), each
/// part a valid one.
fn full(text: &str) -> bool {
    text.split_once(':').is_some_and(|(kind, rest)| {
        part_ok(kind)
            && rest
                .split_once('/')
                .is_some_and(|(ns, name)| part_ok(ns) && part_ok(name))
    })
}

/// Whether `text` is already canonical: in full and lower-case. Such a
/// ref is looked up as it is, with no new string. An ASCII ref (nearly
/// every one) is told in one pass over its bytes, since a decision asks.
pub fn is_canonical(text: &str) -> bool {
    let (mut colon, mut slash) = (None, None);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b':' if colon.is_none() => colon = Some(i),
            b'/' if colon.is_some() && slash.is_none() => slash = Some(i),
            b':' | b'/' | b' ' | b'\t'..=b'\r' | b'A'..=b'Z' => return false,
            0x80.. => return full(text) && !text.bytes().any(|b| b.is_ascii_uppercase()),
            _ => {}
        }
    }
    // Kind, namespace and name each non-empty.
    matches!((colon, slash), (Some(c), Some(s)) if c > 0 && s > c + 1 && s + 1 < text.len())
}

/// Whether `id` stands as the name of a canonical ref as it is: a
/// non-empty lower-case ASCII part (see [`part_ok`]). A path id that is
/// puts into a template with no case folding and no check of the rest.
pub fn is_plain_name(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii() && !matches!(b, b':' | b'/' | b' ' | b'\t'..=b'\r' | b'A'..=b'Z'))
}

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
    if !part_ok(kind) || !part_ok(namespace) || !part_ok(name) {
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
    if canonicalize_in_place(&mut text) {
        Some(text)
    } else {
        normalize(&text, default_kind, default_namespace)
    }
}

/// Lower-case `text` in place when it is written out in full; `false`
/// (and `text` untouched) when it needs [`normalize`].
pub fn canonicalize_in_place(text: &mut str) -> bool {
    if full(text) {
        text.make_ascii_lowercase();
        true
    } else {
        false
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
    fn canonical_refs_are_told_without_a_copy() {
        for text in ["component:default/payments", "user:ops/alice", "a:b/c-1.x"] {
            assert!(is_canonical(text), "{text}");
            assert_eq!(normalize(text, None, "default").as_deref(), Some(text));
        }
        for text in [
            "Component:default/payments",
            "component:payments",
            " component:default/payments",
            "component:default/a b",
            "component:default/a\u{a0}b",
            "component:default/a\u{b}b",
            "payments",
        ] {
            assert!(!is_canonical(text), "{text:?}");
        }
    }

    /// The one-pass check agrees with the definition, whatever the text.
    #[test]
    fn is_canonical_is_full_and_lower_case() {
        let slow = |t: &str| full(t) && !t.bytes().any(|b| b.is_ascii_uppercase());
        let alphabet = ["a", "B", ":", "/", " ", "\u{b}", "é", "\u{a0}"];
        // Every text of up to five symbols (`a:a/a` is the shortest ref).
        let mut texts = vec![String::new()];
        let mut last = texts.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|t| alphabet.iter().map(move |a| format!("{t}{a}")))
                .collect();
            texts.extend(last.iter().cloned());
        }
        for text in &texts {
            assert_eq!(is_canonical(text), slow(text), "{text:?}");
        }
        proptest::proptest!(|(text in "[a-zA-Z:/ \t\u{b}\u{a0}é-]{0,12}")| {
            proptest::prop_assert_eq!(is_canonical(&text), slow(&text), "{:?}", text);
        });
    }

    #[test]
    fn plain_names_are_parts_with_nothing_to_fold() {
        for id in ["svc-77", "a", "a.b_c~1", "0"] {
            assert!(is_plain_name(id), "{id}");
        }
        for id in ["", "Svc", "a:b", "a/b", "a b", " a", "a\t", "é", "a\u{a0}"] {
            assert!(!is_plain_name(id), "{id:?}");
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
            "component:default/a\tb",
            "component:default/a\u{b}b",
            "component:default/a\u{2003}b",
        ] {
            assert_eq!(normalize(text, None, "default"), None, "{text:?}");
        }
    }
}
