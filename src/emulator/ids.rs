//! Document and collection ids as Firestore sees them: `__id<n>__` numeric
//! ids (Datastore's integer keys) sort before string ids and in numeric
//! order, and every other `__…__` id is reserved.

use std::cmp::Ordering;

use super::EmulatorError;

/// The number of a numeric id (`__id42__`, `__id-7__`), if it is one.
pub fn numeric_id(segment: &str) -> Option<i64> {
    let digits = segment.strip_prefix("__id")?.strip_suffix("__")?;
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_reserved(segment: &str) -> bool {
    segment.len() >= 4 && segment.starts_with("__") && segment.ends_with("__")
}

/// Firestore's order of two path segments: numeric ids first, by number,
/// then everything else by UTF-8 bytes.
pub fn compare_segments(a: &str, b: &str) -> Ordering {
    match (numeric_id(a), numeric_id(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Firestore's order of two paths, segment by segment; a parent sorts
/// before its descendants.
pub fn compare_paths<'a>(
    a: impl IntoIterator<Item = &'a str>,
    b: impl IntoIterator<Item = &'a str>,
) -> Ordering {
    let mut a = a.into_iter();
    let mut b = b.into_iter();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match compare_segments(x, y) {
                Ordering::Equal => {}
                ord => return ord,
            },
        }
    }
}

/// Refuse reserved ids in a path below `…/documents` (collection ids at even
/// positions, document ids at odd ones), with Firestore's own wording.
pub fn check_path(path: &[String]) -> Result<(), EmulatorError> {
    for (index, segment) in path.iter().enumerate() {
        let document = index % 2 == 1;
        if !is_reserved(segment) || (document && numeric_id(segment).is_some()) {
            continue;
        }
        let kind = if document { "Resource" } else { "Collection" };
        return Err(EmulatorError::InvalidArgument(format!(
            "{kind} id \"{segment}\" is invalid because it is reserved."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_parse_with_sign_and_nothing_else() {
        assert_eq!(numeric_id("__id42__"), Some(42));
        assert_eq!(numeric_id("__id-7__"), Some(-7));
        for not in [
            "__id__",
            "__id-__",
            "__idx__",
            "id42",
            "__id4 2__",
            "__id99999999999999999999__",
        ] {
            assert_eq!(numeric_id(not), None, "{not}");
        }
    }

    #[test]
    fn numeric_ids_sort_first_and_by_number() {
        let mut ids = ["b", "__id10__", "A", "__id-3__", "__id2__", "__x"];
        ids.sort_by(|a, b| compare_segments(a, b));
        assert_eq!(ids, ["__id-3__", "__id2__", "__id10__", "A", "__x", "b"]);
        assert_eq!(
            compare_paths(["c", "a"], ["c", "a", "s", "x"]),
            Ordering::Less
        );
        assert_eq!(compare_paths(["c", "__id9__"], ["c", "a"]), Ordering::Less);
    }

    #[test]
    fn reserved_ids_are_refused_except_numeric_document_ids() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_path(&path(&["c", "__id5__", "s", "__id-1__"])).is_ok());
        assert!(check_path(&path(&["c", "_x_", "s", "__"])).is_ok());
        let err = check_path(&path(&["c", "__doc__"])).unwrap_err();
        assert!(err.to_string().contains("Resource id \"__doc__\""), "{err}");
        let err = check_path(&path(&["__id5__", "a"])).unwrap_err();
        assert!(err.to_string().contains("Collection id"), "{err}");
        assert!(check_path(&path(&["c", "__idx__"])).is_err());
    }
}
