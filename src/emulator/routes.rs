//! REST routing: split `/v1/projects/P/databases/D/documents/…[:verb]`,
//! read the query string and the JSON body, and call the method.

use bytes::{Bytes, BytesMut};
use http::Method;
use http::request::Parts;
use http_body_util::BodyExt;
use percent_encoding::percent_decode_str;
use serde_json::Value as Json;

use super::ids::check_path;
use super::store::DocPath;
use super::wire::{camel_case, normalize};
use super::{Answer, EmulatorError, Shared, documents, partition, rpc};
use crate::body::Body;

/// Bodies above this are refused; the emulator keeps everything in memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The query string, keys in camelCase (`update_mask.field_paths` too).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parameters given as pairs, keys already in camelCase (the gRPC
    /// methods build their calls this way).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    fn parse(query: Option<&str>) -> Result<Params, EmulatorError> {
        let mut pairs = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_component(key)?;
            let key = key.split('.').map(camel_case).collect::<Vec<_>>().join(".");
            pairs.push((key, decode_component(value)?));
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn decode_component(text: &str) -> Result<String, EmulatorError> {
    let text = text.replace('+', " ");
    percent_decode_str(&text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| EmulatorError::InvalidArgument("the query string is not UTF-8".into()))
}

/// One parsed call.
#[derive(Debug)]
pub struct Call {
    /// `projects/P/databases/D`.
    pub database: String,
    /// Segments after `documents`.
    pub path: DocPath,
    pub params: Params,
    /// The JSON body with camelCase keys; `Null` when there was none.
    pub body: Json,
}

impl Call {
    /// A string field of the body.
    pub fn body_str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Json::as_str)
    }
}

/// Read a request body, refusing one over the limit.
pub async fn read_body(mut body: Body) -> Result<Bytes, EmulatorError> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| EmulatorError::InvalidArgument("the request body broke off".into()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(EmulatorError::InvalidArgument(
                    "the request body is too large".into(),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// Call the method `parts` names with the body `bytes`.
pub fn route(shared: &Shared, parts: &Parts, bytes: &[u8]) -> Result<Answer, EmulatorError> {
    let raw_path = parts.uri.path().to_owned();
    let params = Params::parse(parts.uri.query())?;
    check_alt(&params)?;
    let (database, path, verb) = split_path(&raw_path)?;
    // Firebase's SDK sends JSON as text/plain, so the content type is not consulted.
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Json::Null
    } else {
        let parsed: Json = serde_json::from_slice(bytes)
            .map_err(|e| EmulatorError::InvalidArgument(format!("invalid JSON body: {e}")))?;
        normalize(parsed)
    };
    if let Some(db) = body.get("database").and_then(Json::as_str)
        && db != database
    {
        return Err(EmulatorError::InvalidArgument(format!(
            "body database {db:?} differs from the URL's {database:?}"
        )));
    }
    let call = Call {
        database,
        path,
        params,
        body,
    };
    let document_path = !call.path.is_empty() && call.path.len().is_multiple_of(2);
    let parent_path = call.path.len().is_multiple_of(2);
    match (&parts.method, verb.as_deref()) {
        (&Method::GET, None) if document_path => documents::get(shared, &call),
        (&Method::GET, None) if !parent_path => documents::list(shared, &call),
        (&Method::POST, None) if !parent_path => documents::create(shared, &call),
        (&Method::PATCH, None) if document_path => documents::patch(shared, &call),
        (&Method::DELETE, None) if document_path => documents::delete(shared, &call),
        (&Method::POST, Some("listCollectionIds")) if parent_path => {
            documents::list_collection_ids(shared, &call)
        }
        (&Method::POST, Some("runQuery")) if parent_path => rpc::run_query(shared, &call),
        (&Method::POST, Some("partitionQuery")) if parent_path => {
            partition::partition_query(shared, &call)
        }
        (&Method::POST, Some("runAggregationQuery")) if parent_path => {
            rpc::run_aggregation_query(shared, &call)
        }
        (&Method::POST, Some(verb)) if call.path.is_empty() => match verb {
            "batchGet" => rpc::batch_get(shared, &call),
            "commit" => rpc::commit(shared, &call),
            "batchWrite" => rpc::batch_write(shared, &call),
            "beginTransaction" => rpc::begin_transaction(shared, &call),
            "rollback" => rpc::rollback(shared, &call),
            _ => Err(EmulatorError::RouteNotFound(raw_path)),
        },
        _ => Err(EmulatorError::RouteNotFound(raw_path)),
    }
}

/// `alt` may only ask for JSON (with or without integer enums): this
/// emulator speaks nothing else.
fn check_alt(params: &Params) -> Result<(), EmulatorError> {
    for alt in params.all("$alt").chain(params.all("alt")) {
        if alt != "json" && alt != "json;enum-encoding=int" {
            return Err(EmulatorError::InvalidArgument(format!(
                "unsupported alt {alt:?}"
            )));
        }
    }
    Ok(())
}

/// `/v1/projects/P/databases/D/documents[/a/b…][:verb]` → (database, path, verb).
fn split_path(raw: &str) -> Result<(String, DocPath, Option<String>), EmulatorError> {
    let not_found = || EmulatorError::RouteNotFound(raw.to_owned());
    let rest = raw.strip_prefix("/v1/").ok_or_else(not_found)?;
    // A raw ':' can only be the verb separator: ':' inside an id arrives as %3A.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (rest, verb) = match rest[last_slash..].find(':') {
        Some(i) => (
            &rest[..last_slash + i],
            Some(rest[last_slash + i + 1..].to_owned()),
        ),
        None => (rest, None),
    };
    let segments = rest
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| EmulatorError::InvalidArgument("the path is not UTF-8".into()))
        })
        .collect::<Result<Vec<String>, _>>()?;
    match segments.as_slice() {
        [projects, project, databases, database, documents, path @ ..]
            if projects == "projects"
                && databases == "databases"
                && documents == "documents"
                && !project.is_empty()
                && !database.is_empty() =>
        {
            if path.iter().any(|s| s.is_empty() || s.contains('/')) {
                return Err(EmulatorError::InvalidArgument(format!(
                    "bad resource path {raw:?}"
                )));
            }
            check_path(path)?;
            Ok((
                format!("projects/{project}/databases/{database}"),
                path.to_vec(),
                verb,
            ))
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths_and_verbs() {
        let (db, path, verb) =
            split_path("/v1/projects/p/databases/(default)/documents/a/b%3Ac:runQuery").unwrap();
        assert_eq!(db, "projects/p/databases/(default)");
        assert_eq!(path, vec!["a", "b:c"]);
        assert_eq!(verb.as_deref(), Some("runQuery"));
        let (_, path, verb) = split_path("/v1/projects/p/databases/d/documents:commit").unwrap();
        assert!(path.is_empty());
        assert_eq!(verb.as_deref(), Some("commit"));
        assert!(split_path("/v1/projects/p/databases/d/documents/a//b").is_err());
        assert!(split_path("/v2/projects/p").is_err());
    }

    #[test]
    fn params_accept_snake_case_and_repeats() {
        let params = Params::parse(Some(
            "mask.field_paths=a&mask.fieldPaths=b%2Ec&%24alt=json%3Benum-encoding%3Dint",
        ))
        .unwrap();
        assert_eq!(
            params.all("mask.fieldPaths").collect::<Vec<_>>(),
            ["a", "b.c"]
        );
        assert!(check_alt(&params).is_ok());
        assert!(check_alt(&Params::parse(Some("alt=proto")).unwrap()).is_err());
    }
}
