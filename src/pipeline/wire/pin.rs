//! After the stored documents were read: the forwarded request pinned to
//! the versions the rules saw, so a concurrent change fails the write (Firestore's own
//! precondition failure) and a checked read returns what was checked.

use serde_json::json;

use crate::firestore::splice::{Splices, top_object};
use crate::firestore::{self, Route};
use crate::model::data::{Precondition, Stored, Written};
use crate::model::{Method, Operation, Scope};
use crate::pipeline::stored::{ReadStored, StoredReadError};

/// The precondition a write is pinned with.
pub(in crate::pipeline) enum Pin<'s> {
    /// The stored version (RFC 3339).
    UpdateTime(&'s str),
    /// The document was read absent.
    Missing,
}

/// The precondition that pins `w` to the stored version, if it needs one
/// (the client's own `updateTime` or `exists: false` already does; an
/// `exists: true` on an absent document already fails).
pub(in crate::pipeline) fn pin_of<'s>(w: &Written, stored: &'s Stored) -> Option<Pin<'s>> {
    let Scope::Document { path } = &w.scope else {
        return None;
    };
    let doc = stored.get(path)?;
    match (doc, &w.precondition) {
        (_, Precondition::UpdateTime(_) | Precondition::Exists(false)) => None,
        (Some(d), _) => Some(Pin::UpdateTime(&d.update_time)),
        (None, Precondition::None) => Some(Pin::Missing),
        (None, Precondition::Exists(true)) => None,
    }
}

/// The writes to pin, by their position in the request: only a document's
/// first write (the commit is atomic, and a later write sees the first
/// one's version, not the read's).
pub(in crate::pipeline) fn first_write_pins<'s>(
    op: &Operation,
    stored: &'s Stored,
) -> Vec<(usize, Pin<'s>)> {
    let mut pinned: Vec<&Scope> = Vec::new();
    let mut pins = Vec::new();
    for w in &op.writes {
        if pinned.contains(&&w.scope) {
            continue;
        }
        pinned.push(&w.scope);
        if let Some(p) = pin_of(w, stored) {
            pins.push((w.index, p));
        }
    }
    pins
}

fn json_of(pin: &Pin<'_>) -> String {
    match pin {
        Pin::UpdateTime(t) => json!({ "updateTime": t }).to_string(),
        Pin::Missing => r#"{"exists":false}"#.to_owned(),
    }
}

/// Rewrite the forwarded request: writes pinned, checked reads read at the
/// time of the check (unless in a transaction or at the client's time).
/// The writes' places are read from the body only when one is pinned
/// ([`firestore::write_sites`]).
pub fn pin(
    route: &mut Route,
    splices: &mut Splices,
    body: &[u8],
    op: &Operation,
    read: &ReadStored,
    consistent: bool,
) -> Result<(), StoredReadError> {
    let stored = &read.documents;
    match op.method {
        Method::Patch | Method::Delete => {
            if let Some(pin) = op.writes.first().and_then(|w| pin_of(w, stored)) {
                route.pin_precondition(match pin {
                    Pin::UpdateTime(t) => Some(t),
                    Pin::Missing => None,
                });
            }
        }
        Method::Commit | Method::BatchWrite => {
            let pins = first_write_pins(op, stored);
            if pins.is_empty() {
                return Ok(());
            }
            let sites = std::str::from_utf8(body)
                .map_err(unpinnable)
                .and_then(|text| firestore::write_sites(text).map_err(unpinnable))?;
            for (index, pin) in pins {
                let site = sites
                    .get(index)
                    .ok_or_else(|| unpinnable("no such write"))?;
                let precondition = json_of(&pin);
                match &site.precondition {
                    Some(range) => splices.replace(range.clone(), precondition),
                    None => splices.insert_member(
                        body,
                        site.object.start,
                        &format!(r#""currentDocument":{precondition}"#),
                    ),
                }
            }
        }
        Method::Get if !consistent => {
            if let Some(t) = &read.read_time {
                route.pin_read_time(t);
            }
        }
        Method::BatchGet if !consistent => {
            if let Some(t) = &read.read_time {
                let open = top_object(body).ok_or_else(|| unpinnable("not an object"))?;
                splices.insert_member(body, open, &format!(r#""readTime":{}"#, json!(t)));
            }
        }
        _ => {}
    }
    Ok(())
}

fn unpinnable(e: impl std::fmt::Display) -> StoredReadError {
    StoredReadError::ReadFailed(format!("the request could not be pinned: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::data::{Change, StoredDocument};
    use crate::model::{Access, Database, Target};

    fn path(id: &str) -> crate::model::Segments {
        crate::model::Segments::from(&["notes", id][..])
    }

    fn op() -> Operation {
        let doc = |id: &str| Scope::Document { path: path(id) };
        let write = |id: &str, index| Written {
            scope: doc(id),
            index,
            change: Change::Delete,
            precondition: Precondition::None,
        };
        let mut op = Operation::new(
            Database::new("p", "(default)"),
            Method::Commit,
            ["a", "b"]
                .iter()
                .flat_map(|id| {
                    [Access::Create, Access::Update].map(|access| Target {
                        scope: doc(id),
                        access,
                    })
                })
                .collect(),
        );
        op.writes = vec![write("a", 0), write("b", 1)];
        op
    }

    fn stored() -> Stored {
        Stored::from([
            (
                path("a"),
                Some(StoredDocument {
                    fields: Default::default(),
                    update_time: "2026-01-01T00:00:00Z".into(),
                }),
            ),
            (path("b"), None),
        ])
    }

    #[test]
    fn upserts_settle_to_what_the_read_found() {
        let mut op = op();
        op.settle(&stored());
        let accesses: Vec<Access> = op.targets.iter().map(|t| t.access).collect();
        assert_eq!(accesses, [Access::Update, Access::Create]);
    }

    #[test]
    fn commit_writes_are_pinned_to_the_read_versions_where_the_body_has_them() {
        let body = bytes::Bytes::from_static(
            br#"{"writes":[{"delete":"projects/p/databases/(default)/documents/notes/a","current_document":{"exists":true}},{"delete":"projects/p/databases/(default)/documents/notes/b"}]}"#,
        );
        let read = ReadStored {
            documents: stored(),
            read_time: None,
        };
        let mut route = crate::firestore::route(
            &http::Method::POST,
            &"/v1/projects/p/databases/(default)/documents:commit"
                .parse()
                .unwrap(),
            &http::HeaderMap::from_iter([(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )]),
        )
        .unwrap();
        crate::firestore::classify_request(&route, Some(&body)).unwrap();
        let mut splices = Splices::default();
        pin(&mut route, &mut splices, &body, &op(), &read, false).unwrap();
        let out = splices.apply(&body).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out["writes"][0]["current_document"],
            json!({"updateTime": "2026-01-01T00:00:00Z"}),
            "the client's own precondition, replaced in place"
        );
        assert_eq!(
            out["writes"][1]["currentDocument"],
            json!({"exists": false})
        );
        assert_eq!(
            out["writes"][1]["delete"],
            "projects/p/databases/(default)/documents/notes/b"
        );
    }
}
