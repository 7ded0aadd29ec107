//! The per-document REST methods (get, list, createDocument, patch, delete)
//! and listCollectionIds.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Value as Json, json};

use super::clock::Timestamp;
use super::ids::{check_path, compare_paths};
use super::routes::{Call, Params};
use super::store::{Doc, DocPath, document_json, document_name};
use super::values::{FieldPath, fields_from_json};
use super::write::{Precondition, Write, check_field_names, commit};
use super::{Answer, EmulatorError, Shared};

/// `GET …/documents/{path}`.
pub fn get(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let mask = mask_param(&call.params)?;
    let mut at = read_time_param(&call.params)?;
    let mut state = shared.lock();
    if let Some(id) = call.params.get("transaction") {
        at = at.or(state.transaction_mut(&call.database, id)?.read_time);
    }
    let doc = state
        .snapshot(&call.database, at)
        .and_then(|documents| documents.get(&call.path).cloned());
    if let Some(id) = call.params.get("transaction") {
        state
            .transaction_mut(&call.database, id)?
            .record(&call.path, doc.as_ref());
    }
    let doc = doc.ok_or_else(|| not_found(&call.database, &call.path))?;
    Ok(Answer::Object(document_json(
        &call.database,
        &call.path,
        &doc,
        mask.as_deref(),
    )))
}

/// `GET …/documents[/{doc}]/{collection}`: pages of documents, by name or
/// by `orderBy`; `showMissing` adds documents that only have subcollections.
pub fn list(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let mask = mask_param(&call.params)?;
    let page_size = match call.params.get("pageSize") {
        None | Some("") | Some("0") => usize::MAX,
        Some(n) => n
            .parse()
            .map_err(|_| EmulatorError::InvalidArgument("pageSize must be a number".into()))?,
    };
    let start = match call.params.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => decode_page_token(token)?,
    };
    let show_missing = call.params.get("showMissing") == Some("true");
    let order = order_by_param(call.params.get("orderBy"))?;
    let at = read_time_param(&call.params)?;

    let state = shared.lock();
    let snapshot = state.snapshot(&call.database, at);
    let (parent, collection) = call.path.split_at(call.path.len() - 1);
    let collection = &collection[0];
    let mut rows: Vec<(DocPath, Option<&Doc>)> = Vec::new();
    if let Some(documents) = snapshot.as_deref() {
        for (path, doc) in documents {
            if path.len() < parent.len() + 2
                || !path.starts_with(parent)
                || path[parent.len()] != *collection
            {
                continue;
            }
            let child: DocPath = path[..parent.len() + 2].to_vec();
            if path.len() == parent.len() + 2 {
                rows.push((child, Some(doc)));
            } else if show_missing
                && !documents.contains_key(&child)
                && rows.last().is_none_or(|(last, _)| *last != child)
            {
                rows.push((child, None));
            }
        }
    }
    // By name (numeric ids first) unless `orderBy` says otherwise.
    sort_rows(&mut rows, &order);
    let end = start.saturating_add(page_size).min(rows.len());
    let page: Vec<Json> = rows
        .get(start.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|(path, doc)| match doc {
            Some(doc) => document_json(&call.database, path, doc, mask.as_deref()),
            None => json!({ "name": document_name(&call.database, path) }),
        })
        .collect();
    let mut body = json!({ "documents": page });
    if end < rows.len() {
        body["nextPageToken"] = Json::from(encode_page_token(end));
    }
    Ok(Answer::Object(body))
}

/// `POST …/documents[/{doc}]/{collection}?documentId=`.
pub fn create(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let mask = mask_param(&call.params)?;
    let id = match call.params.get("documentId").filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => new_document_id(),
    };
    if id.contains('/') {
        return Err(EmulatorError::InvalidArgument(
            "documentId must not contain '/'".into(),
        ));
    }
    let mut path = call.path.clone();
    path.push(id);
    check_path(&path)?;
    let fields = fields_from_json(call.body.get("fields"))?;
    check_field_names(&fields)?;
    let write = Write::update(path.clone(), fields, None, Precondition::Exists(false));
    store_and_show(shared, call, write, mask)
}

/// `PATCH …/documents/{path}?updateMask…&currentDocument…`: an upsert unless
/// a precondition says otherwise.
pub fn patch(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let mask = mask_param(&call.params)?;
    let update_mask = paths_param(&call.params, "updateMask.fieldPaths")?;
    let precondition = precondition_param(&call.params)?;
    let fields = fields_from_json(call.body.get("fields"))?;
    check_field_names(&fields)?;
    let write = Write::update(call.path.clone(), fields, update_mask, precondition);
    store_and_show(shared, call, write, mask)
}

/// `DELETE …/documents/{path}`.
pub fn delete(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let precondition = precondition_param(&call.params)?;
    let write = Write::delete(call.path.clone(), precondition);
    let now = shared.clock.now();
    let mut state = shared.lock();
    commit(&mut state, &call.database, &[write], now)?;
    Ok(Answer::Object(json!({})))
}

/// `POST …/documents[/{doc}]:listCollectionIds`, now or at `readTime`.
pub fn list_collection_ids(shared: &Shared, call: &Call) -> Result<Answer, EmulatorError> {
    let page_size = match call.body.get("pageSize") {
        None | Some(Json::Null) => usize::MAX,
        Some(n) => match super::wire::count(n, "pageSize")? {
            0 => usize::MAX,
            n => n,
        },
    };
    let start = match call.body_str("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => decode_page_token(token)?,
    };
    let at = super::rpc::read_time(call.body.get("readTime"))?;
    let ids: Vec<String> = shared
        .lock()
        .collection_ids(&call.database, &call.path, at)
        .into_iter()
        .collect();
    let end = start.saturating_add(page_size).min(ids.len());
    let mut body = json!({ "collectionIds": ids.get(start.min(end)..end).unwrap_or_default() });
    if end < ids.len() {
        body["nextPageToken"] = Json::from(encode_page_token(end));
    }
    Ok(Answer::Object(body))
}

fn store_and_show(
    shared: &Shared,
    call: &Call,
    write: Write,
    mask: Option<Vec<FieldPath>>,
) -> Result<Answer, EmulatorError> {
    let now = shared.clock.now();
    let mut state = shared.lock();
    commit(
        &mut state,
        &call.database,
        std::slice::from_ref(&write),
        now,
    )?;
    let doc = state
        .get(&call.database, &write.path)
        .ok_or_else(|| not_found(&call.database, &write.path))?;
    Ok(Answer::Object(document_json(
        &call.database,
        &write.path,
        doc,
        mask.as_deref(),
    )))
}

fn not_found(database: &str, path: &[String]) -> EmulatorError {
    EmulatorError::NotFound(format!(
        "Document \"{}\" not found.",
        document_name(database, path)
    ))
}

/// A 20-character id like the ones Firestore's clients generate.
pub fn new_document_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

fn read_time_param(params: &Params) -> Result<Option<Timestamp>, EmulatorError> {
    super::rpc::read_time(params.get("readTime").map(Json::from).as_ref())
}

fn mask_param(params: &Params) -> Result<Option<Vec<FieldPath>>, EmulatorError> {
    paths_param(params, "mask.fieldPaths")
}

fn paths_param(params: &Params, key: &str) -> Result<Option<Vec<FieldPath>>, EmulatorError> {
    let mut values = params.all(key).peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    values
        .filter(|v| !v.is_empty())
        .map(FieldPath::parse)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn precondition_param(params: &Params) -> Result<Precondition, EmulatorError> {
    if let Some(exists) = params.get("currentDocument.exists") {
        return match exists {
            "true" => Ok(Precondition::Exists(true)),
            "false" => Ok(Precondition::Exists(false)),
            _ => Err(EmulatorError::InvalidArgument(
                "currentDocument.exists must be true or false".into(),
            )),
        };
    }
    match params.get("currentDocument.updateTime") {
        None => Ok(Precondition::None),
        Some(time) => Precondition::parse(Some(&json!({ "updateTime": time }))),
    }
}

/// `orderBy=a desc, b` → [(a, descending), (b, ascending)].
fn order_by_param(text: Option<&str>) -> Result<Vec<(FieldPath, bool)>, EmulatorError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let field = words
                .next()
                .ok_or_else(|| EmulatorError::InvalidArgument("empty orderBy term".into()))?;
            let descending = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(EmulatorError::InvalidArgument(format!(
                        "bad orderBy direction {other:?}"
                    )));
                }
            };
            Ok((FieldPath::parse(field)?, descending))
        })
        .collect()
}

fn sort_rows(rows: &mut [(DocPath, Option<&Doc>)], order: &[(FieldPath, bool)]) {
    use super::values::{Value, compare, lookup};
    let key = |path: &DocPath, doc: Option<&Doc>, field: &FieldPath| -> Option<Value> {
        if field.is_document_name() {
            return Some(Value::Reference(path.join("/")));
        }
        doc.and_then(|d| lookup(&d.fields, field)).cloned()
    };
    rows.sort_by(|(pa, da), (pb, db)| {
        for (field, descending) in order {
            // A missing field sorts first, as if it were below null.
            let ord = match (key(pa, *da, field), key(pb, *db, field)) {
                (Some(a), Some(b)) => compare(&a, &b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            };
            let ord = if *descending { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        compare_paths(pa.iter().map(String::as_str), pb.iter().map(String::as_str))
    });
}

pub fn encode_page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(offset.to_string())
}

pub fn decode_page_token(token: &str) -> Result<usize, EmulatorError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EmulatorError::InvalidArgument("invalid page token".into()))
}
