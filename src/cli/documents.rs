//! Stored documents given to `policy test` and `policy check`, written as
//! plain YAML/JSON (`{"/notes/n1": {owner: alice}, "/notes/n2": null}`).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::model::Segments;
use crate::model::data::{FieldValue, Fields, Stored, StoredDocument};

/// The version a given document is said to have (the pin of a write).
const GIVEN_UPDATE_TIME: &str = "2000-01-01T00:00:00Z";

/// The documents, by path; `null` for one that does not exist.
pub type GivenDocuments = BTreeMap<String, Option<serde_json::Map<String, Json>>>;

/// What the proxy would have read for `needed`: each document as given,
/// absent when not given.
pub fn stored(given: &GivenDocuments, needed: &[Segments]) -> Result<Stored, String> {
    let mut by_path = BTreeMap::new();
    for (path, fields) in given {
        let segments: Segments = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() || !segments.len().is_multiple_of(2) {
            return Err(format!("stored document `{path}` is not a document path"));
        }
        by_path.insert(segments, fields.as_ref().map(plain_fields));
    }
    Ok(needed
        .iter()
        .map(|path| {
            let doc = by_path
                .get(path)
                .cloned()
                .flatten()
                .map(|fields| StoredDocument {
                    fields,
                    update_time: GIVEN_UPDATE_TIME.into(),
                });
            (path.clone(), doc)
        })
        .collect())
}

fn plain_fields(map: &serde_json::Map<String, Json>) -> Fields {
    map.iter().map(|(k, v)| (k.clone(), plain(v))).collect()
}

/// A plain JSON value as the Firestore value a client would have stored.
fn plain(v: &Json) -> FieldValue {
    match v {
        Json::Null => FieldValue::Null,
        Json::Bool(b) => FieldValue::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::Integer(i),
            None => FieldValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => FieldValue::String(s.clone()),
        Json::Array(items) => FieldValue::Array(items.iter().map(plain).collect()),
        Json::Object(map) => FieldValue::Map(plain_fields(map)),
    }
}
