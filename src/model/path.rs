//! Resource names: URL segments decoded exactly once, body names split, and
//! every id checked against Firestore's rules (firestore-rest.md §3).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{ClassifyError, Database, Segments};

/// Firestore refuses ids longer than this many bytes.
pub const MAX_ID_BYTES: usize = 1500;

/// Everything but RFC 3986 unreserved characters and the parentheses of
/// `(default)` is encoded on the way upstream; a `:` inside an id must be
/// `%3A` there, since a raw `:` starts the verb.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'(')
    .remove(b')');

/// Query values are encoded the same way (`;` in `json;enum-encoding=int`
/// becomes `%3B`, as the Node client sends it).
pub const QUERY: &AsciiSet = SEGMENT;

/// Percent-encode one decoded segment for the upstream URL.
pub fn encode_segment(segment: &str) -> Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT).into()
}

/// Decode one raw URL path segment exactly once and validate it as an id.
pub fn decode_segment(raw: &str) -> Result<Cow<'_, str>, ClassifyError> {
    let escaped = raw.contains('%');
    // Without an escape the segment is its own decoding (and already UTF-8).
    let decoded = if escaped {
        Cow::Owned(percent_decode_strict(raw, false)?)
    } else {
        Cow::Borrowed(raw)
    };
    if escaped && looks_percent_encoded(&decoded) {
        // `%2541` decodes to `%41`: a second decoder somewhere downstream
        // would see a different name than the one we authorized.
        return Err(ClassifyError::BadPathEncoding("double percent-encoding"));
    }
    if decoded.contains('/') {
        return Err(ClassifyError::BadPathEncoding(
            "encoded '/' inside a segment",
        ));
    }
    validate_id(&decoded)?;
    Ok(decoded)
}

/// Percent-decode `raw`, refusing malformed escapes and invalid UTF-8.
/// With `plus_is_space`, `+` decodes to a space (query strings).
pub fn percent_decode_strict(raw: &str, plus_is_space: bool) -> Result<String, ClassifyError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(ClassifyError::BadPathEncoding("malformed percent escape")),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ClassifyError::BadPathEncoding("not UTF-8 after decoding"))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn looks_percent_encoded(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
}

/// Firestore's id rules: not empty, not `.` or `..`, no `/`, at most 1,500
/// bytes, not `__…__` (reserved) except the numeric ids `__id<n>__` of
/// Datastore entities, `n` a signed 64-bit integer; control characters are
/// refused too, so that ids are safe to show in audit lines.
pub fn validate_id(id: &str) -> Result<(), ClassifyError> {
    // Printable ASCII but '/' (nearly every id): one pass over the bytes,
    // and neither scan for a '/' nor for a control character can refuse it.
    let plain = id.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'/');
    let reason = if id.is_empty() {
        "empty id"
    } else if id == "." || id == ".." {
        "dot segment"
    } else if !plain && id.contains('/') {
        "'/' inside an id"
    } else if id.len() > MAX_ID_BYTES {
        "id over 1500 bytes"
    } else if is_reserved(id) {
        "reserved __id__"
    } else if !plain && id.chars().any(char::is_control) {
        "control character in id"
    } else {
        return Ok(());
    };
    Err(ClassifyError::InvalidResourceId(reason))
}

fn is_reserved(id: &str) -> bool {
    if id.len() < 4 || !id.starts_with("__") || !id.ends_with("__") {
        return false;
    }
    let inner = &id[2..id.len() - 2];
    !inner.strip_prefix("id").is_some_and(is_canonical_i64)
}

/// `n` written as Firestore writes a numeric id: an `i64` in its one
/// canonical form. `__id007__`, `__id-0__` or `__id+7__` would be a second
/// name for the entity `__id7__` (or `__id0__`) if upstream reads the number,
/// so a policy on one spelling could be passed with another: refused.
fn is_canonical_i64(n: &str) -> bool {
    n.parse::<i64>().is_ok_and(|v| v.to_string() == n)
}

/// A full document or collection name from a body, as the segments below
/// `{database}/documents` (one allocation, however many), after checking
/// it is in `database` and that every segment is a valid id.
pub fn split_name(database: &Database, name: &str) -> Result<Segments, ClassifyError> {
    let mut parts = slash_separated(name);
    let head = [
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ];
    let [
        Some("projects"),
        Some(project),
        Some("databases"),
        Some(db),
        Some("documents"),
    ] = head
    else {
        return Err(ClassifyError::MalformedResourceName(
            "not projects/*/databases/*/documents/…",
        ));
    };
    if project != database.project || db != database.database {
        return Err(ClassifyError::ForeignDatabase);
    }
    let mut len = 0;
    for segment in parts {
        validate_id(segment)?;
        len += 1;
    }
    // What follows `…/documents` is the segments' spelling: each one
    // preceded by `/`, or nothing for the root.
    let head_len =
        "projects/".len() + project.len() + "/databases/".len() + db.len() + "/documents".len();
    Ok(Segments::counted(&name[head_len..], len))
}

/// `name.split('/')`, by a plain byte loop: a name's segments are short,
/// and `str::split` sets up a `memchr` search for each (`document_name`
/// took half as many instructions again with it).
fn slash_separated(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(name);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b'/') {
            Some(slash) => {
                rest = Some(&text[slash + 1..]);
                Some(&text[..slash])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The database a full resource name names (`projects/P/databases/D`,
/// optionally followed by `/documents…`). A gRPC message carries its
/// database in such a name rather than in a URL; the rest of the name is
/// then checked by [`split_name`] against this database. Names in protobuf
/// are not percent-encoded: each id is validated as written.
pub fn database_of(name: &str) -> Result<Database, ClassifyError> {
    let mut parts = name.splitn(5, '/');
    let head = [parts.next(), parts.next(), parts.next(), parts.next()];
    let [Some("projects"), Some(project), Some("databases"), Some(db)] = head else {
        return Err(ClassifyError::MalformedResourceName(
            "not projects/*/databases/*",
        ));
    };
    validate_id(project)?;
    validate_id(db)?;
    Ok(Database {
        project: project.to_owned(),
        database: db.to_owned(),
    })
}

/// A `database` field: exactly `projects/P/databases/D`.
pub fn database_name(name: &str) -> Result<Database, ClassifyError> {
    let database = database_of(name)?;
    if name.len() != database.to_string().len() {
        return Err(ClassifyError::MalformedResourceName(
            "not projects/*/databases/*",
        ));
    }
    Ok(database)
}

/// A `parent` field of a query or listing: the database root
/// (`…/documents`) or a document below it, split into segments.
pub fn parent_name(name: &str) -> Result<(Database, Segments), ClassifyError> {
    let database = database_of(name)?;
    let path = split_name(&database, name)?;
    if !path.len().is_multiple_of(2) {
        return Err(ClassifyError::ParityMismatch(
            "expected a document or the root",
        ));
    }
    Ok((database, path))
}

/// A document name from a body: in `database`, an even number of segments.
pub fn document_name(database: &Database, name: &str) -> Result<Segments, ClassifyError> {
    let path = split_name(database, name)?;
    if path.is_empty() || !path.len().is_multiple_of(2) {
        return Err(ClassifyError::ParityMismatch("expected a document name"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Database {
        Database::new("p", "(default)")
    }

    #[test]
    fn names_split_at_each_slash_as_str_split_does() {
        for name in [
            "",
            "/",
            "a",
            "a/b",
            "/a//b/",
            "é/ü//x",
            "projects/p/databases/d/documents/c/d",
        ] {
            let ours: Vec<&str> = slash_separated(name).collect();
            let std: Vec<&str> = name.split('/').collect();
            assert_eq!(ours, std, "{name:?}");
        }
    }

    #[test]
    fn segments_decode_exactly_once() {
        assert_eq!(decode_segment("a%3Ab").unwrap(), "a:b");
        assert_eq!(decode_segment("%28default%29").unwrap(), "(default)");
        assert_eq!(decode_segment("caf%C3%A9").unwrap(), "café");
    }

    #[test]
    fn segment_traps_are_refused() {
        let cases = [
            ("a%2Fb", "bad_path_encoding"),
            ("a%2fb", "bad_path_encoding"),
            ("%2541", "bad_path_encoding"),
            ("%252F", "bad_path_encoding"),
            ("%zz", "bad_path_encoding"),
            ("%4", "bad_path_encoding"),
            ("%FF", "bad_path_encoding"),
            ("", "invalid_resource_id"),
            (".", "invalid_resource_id"),
            ("..", "invalid_resource_id"),
            ("%2E", "invalid_resource_id"),
            ("%2E%2e", "invalid_resource_id"),
            ("__x__", "invalid_resource_id"),
            ("____", "invalid_resource_id"),
            ("__id__", "invalid_resource_id"),
            ("__ida1__", "invalid_resource_id"),
            ("a%00b", "invalid_resource_id"),
        ];
        for (raw, reason) in cases {
            let err = decode_segment(raw).expect_err(raw);
            assert_eq!(err.reason(), reason, "{raw}");
        }
    }

    #[test]
    fn slashes_and_control_characters_are_refused_in_any_byte_range() {
        let reason = |id: &str| match validate_id(id) {
            Err(ClassifyError::InvalidResourceId(reason)) => Some(reason),
            _ => None,
        };
        for id in ["a/b", "é/"] {
            assert_eq!(reason(id), Some("'/' inside an id"), "{id:?}");
        }
        // C0, DEL and C1 (two bytes in UTF-8) controls.
        for id in ["a\tb", "\u{0}", "a\u{7f}", "é\u{1f}", "a\u{85}b", "\u{9f}"] {
            assert_eq!(reason(id), Some("control character in id"), "{id:?}");
        }
        for id in [" ", "~", "a b~", "é", "\u{a0}", "日本"] {
            assert_eq!(reason(id), None, "{id:?}");
        }
    }

    #[test]
    fn length_limit_is_1500_bytes() {
        assert!(validate_id(&"a".repeat(1500)).is_ok());
        assert!(validate_id(&"a".repeat(1501)).is_err());
        // Multi-byte characters count as bytes, not chars.
        assert!(validate_id(&"é".repeat(751)).is_err());
    }

    #[test]
    fn numeric_id_escape_and_plain_underscores_are_ids() {
        for id in ["__id123__", "__", "___", "_a_", "__a", "a__"] {
            assert!(validate_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn negative_numeric_ids_are_ids_in_their_one_spelling() {
        for id in [
            "__id-2__",
            "__id-9223372036854775808__",
            "__id9223372036854775807__",
            "__id0__",
        ] {
            assert!(validate_id(id).is_ok(), "{id}");
            assert_eq!(decode_segment(id).as_deref(), Ok(id));
        }
        // Second spellings of a number, and numbers no i64 holds.
        for id in [
            "__id007__",
            "__id-0__",
            "__id+7__",
            "__id--2__",
            "__id-__",
            "__id9223372036854775808__",
            "__id-9223372036854775809__",
            "__id 1__",
        ] {
            assert_eq!(
                validate_id(id).map_err(|e| e.reason()),
                Err("invalid_resource_id"),
                "{id}"
            );
        }
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        for id in ["a:b", "(default)", "a b", "café", "a%b", "x?y#z&"] {
            let encoded = encode_segment(id);
            assert!(!encoded.contains(':') && !encoded.contains('/'));
            assert_eq!(percent_decode_strict(&encoded, false).unwrap(), id);
        }
        assert_eq!(encode_segment("(default)"), "(default)");
    }

    #[test]
    fn body_names_must_be_in_the_url_database() {
        let name = "projects/p/databases/(default)/documents/a/b";
        assert_eq!(document_name(&db(), name).unwrap(), ["a", "b"]);
        let other = "projects/q/databases/(default)/documents/a/b";
        assert_eq!(
            document_name(&db(), other).unwrap_err().reason(),
            "foreign_database"
        );
        let other_db = "projects/p/databases/other/documents/a/b";
        assert_eq!(
            document_name(&db(), other_db).unwrap_err().reason(),
            "foreign_database"
        );
    }

    #[test]
    fn body_name_traps_are_refused() {
        let cases = [
            (
                "projects/p/databases/(default)/documents/a",
                "resource_parity_mismatch",
            ),
            (
                "projects/p/databases/(default)/documents",
                "resource_parity_mismatch",
            ),
            (
                "projects/p/databases/(default)/documents/a//b",
                "invalid_resource_id",
            ),
            (
                "projects/p/databases/(default)/documents/a/..",
                "invalid_resource_id",
            ),
            (
                "projects/p/databases/(default)/documents/__x__/b",
                "invalid_resource_id",
            ),
            (
                "projects/p/databases/(default)/documents/a/b/",
                "invalid_resource_id",
            ),
            (
                "projects/p/databases/(default)/a/b",
                "invalid_resource_name",
            ),
            (
                "/projects/p/databases/(default)/documents/a/b",
                "invalid_resource_name",
            ),
            ("", "invalid_resource_name"),
        ];
        for (name, reason) in cases {
            let err = document_name(&db(), name).expect_err(name);
            assert_eq!(err.reason(), reason, "{name}");
        }
    }
}
