//! The route table: HTTP method + URL + query + headers → [`Route`]. Exactly
//! the routes of firestore-rest.md §1 are served; the system parameters and
//! headers of §4 are refused or stripped; everything else is refused.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, Method as HttpMethod, Uri, header};
use percent_encoding::utf8_percent_encode;

use crate::model::path::{self, QUERY, decode_segment, encode_segment, validate_id};
use crate::model::{ClassifyError, Database, Method, Segments};

/// The URL-level half of classification: which RPC, which database, the
/// path it names, and what the query string said.
#[derive(Debug, Clone)]
pub struct Route {
    pub database: Database,
    pub method: Method,
    /// Path and query to send upstream: canonical, re-encoded, with stripped
    /// parameters (`key`, `quotaUser`) removed.
    pub upstream_path_and_query: String,
    /// Decoded segments below `{database}/documents` (the document for
    /// get/patch/delete, the collection for list/createDocument, the parent
    /// for queries and listCollectionIds; empty for the root).
    pub path: Segments,
    /// `documentId=` of createDocument.
    pub document_id: Option<String>,
    /// The precondition of patch/delete from the query string:
    /// `Some(true)` for `currentDocument.exists=true` or `updateTime`.
    pub must_exist: Option<bool>,
    /// The request declared no `Content-Type`: only an empty body is then
    /// accepted (we would not know how upstream reads it).
    pub(crate) untyped_body: bool,
    encoded_path: String,
    query: Vec<(&'static str, String)>,
}

impl Route {
    /// True for the methods whose bodies name documents or transactions
    /// (§1–2). patch and createDocument are read too: their body may
    /// re-specify the document `name`, which is refused rather than leaving
    /// upstream to pick between the URL and the body. Everything else streams.
    pub fn needs_body(&self) -> bool {
        has_body(self.method)
    }

    /// The `transaction=` query parameter of get/list, still sealed.
    pub fn query_transaction(&self) -> Option<&str> {
        self.query
            .iter()
            .find(|(name, _)| *name == "transaction")
            .map(|(_, value)| value.as_str())
    }

    /// `requestOptions.requestTags` from the query string (the RPCs whose
    /// body, if any, is the document).
    pub fn request_tags(&self) -> impl Iterator<Item = &str> {
        self.query
            .iter()
            .filter(|(name, _)| *name == REQUEST_TAGS)
            .map(|(_, value)| value.as_str())
    }

    /// `updateMask.fieldPaths` of patch, as given (none: a replace).
    pub fn update_mask(&self) -> impl Iterator<Item = &str> {
        self.query
            .iter()
            .filter(|(name, _)| *name == "updateMask.fieldPaths")
            .map(|(_, value)| value.as_str())
    }

    /// Whether the query string gave an update mask at all.
    pub fn has_update_mask(&self) -> bool {
        self.update_mask().next().is_some()
    }

    /// Pin a patch or delete to the document version a rule saw: the
    /// client's own precondition is replaced (`updateTime` implies the
    /// `exists: true` it may have said).
    pub fn pin_precondition(&mut self, update_time: Option<&str>) {
        self.query
            .retain(|(name, _)| !name.starts_with("currentDocument."));
        match update_time {
            Some(t) => self
                .query
                .push(("currentDocument.updateTime", t.to_owned())),
            None => self
                .query
                .push(("currentDocument.exists", "false".to_owned())),
        }
        self.upstream_path_and_query = upstream(&self.encoded_path, &self.query);
    }

    /// Read at this time (a get checked on the document read then).
    pub fn pin_read_time(&mut self, read_time: &str) {
        self.query.push(("readTime", read_time.to_owned()));
        self.upstream_path_and_query = upstream(&self.encoded_path, &self.query);
    }

    /// The `readTime=` of get/list, if given.
    pub fn query_read_time(&self) -> Option<&str> {
        self.query
            .iter()
            .find(|(name, _)| *name == "readTime")
            .map(|(_, value)| value.as_str())
    }

    /// Replace the `transaction=` query parameter (with the unsealed id).
    pub fn set_query_transaction(&mut self, value: String) {
        for (name, v) in &mut self.query {
            if *name == "transaction" {
                *v = value.clone();
            }
        }
        self.upstream_path_and_query = upstream(&self.encoded_path, &self.query);
    }
}

/// The query-string spelling of `RequestOptions.request_tags`.
const REQUEST_TAGS: &str = "requestOptions.requestTags";

/// RPCs Firestore has but firegate does not serve (501, not 404).
const NOT_SERVED_VERBS: &[&str] = &[
    "listen",
    "write",
    "executePipeline",
    "exportDocuments",
    "importDocuments",
    "bulkDeleteDocuments",
];

/// Parse method, URL and headers into a [`Route`]; refuse everything outside
/// the allowlist.
pub fn route(method: &HttpMethod, uri: &Uri, headers: &HeaderMap) -> Result<Route, ClassifyError> {
    check_headers(method, headers)?;
    let raw = uri.path();
    let Some(rest) = raw.strip_prefix("/v1/") else {
        return Err(
            if raw.starts_with("/v1beta1/") || raw.starts_with("/v1beta2/") {
                ClassifyError::Unsupported("v1beta API")
            } else {
                ClassifyError::RouteNotFound("not under /v1/")
            },
        );
    };
    let (rest, verb) = split_verb(rest)?;
    let mut segments = rest.split('/');
    let mut next = || segments.next();
    let database = match (next(), next(), next(), next(), next()) {
        (Some("projects"), Some(project), Some("databases"), Some(db), Some("documents")) => {
            database(project, db)?
        }
        (Some("projects"), Some(_), Some("databases"), Some(_), _) => {
            return Err(ClassifyError::Unsupported("database admin route"));
        }
        _ => return Err(ClassifyError::RouteNotFound("not a documents route")),
    };
    // The decoded segments, spelled as a `Segments` holds them.
    let mut spelled = String::with_capacity(rest.len());
    let mut count = 0;
    for raw in segments {
        spelled.push('/');
        spelled.push_str(&decode_segment(raw)?);
        count += 1;
    }
    let path = Segments::counted(&spelled, count);
    let method = rpc(method, verb, path.len())?;
    let untyped_body = content_type(method, headers)?;
    let query = Query::parse(method, uri.query())?;

    // Re-encoded from the decoded names: what is forwarded is exactly what
    // was authorized. Sized once (an encoded segment is rarely longer than
    // the raw one).
    let mut encoded_path = String::with_capacity(raw.len() + 16);
    encoded_path.push_str("/v1/projects/");
    encoded_path.push_str(&encode_segment(&database.project));
    encoded_path.push_str("/databases/");
    encoded_path.push_str(&encode_segment(&database.database));
    encoded_path.push_str("/documents");
    for segment in &path {
        encoded_path.push('/');
        encoded_path.push_str(&encode_segment(segment));
    }
    if let Some(verb) = verb {
        encoded_path.push(':');
        encoded_path.push_str(verb);
    }
    Ok(Route {
        upstream_path_and_query: upstream(&encoded_path, &query.forward),
        database,
        method,
        path,
        document_id: query.document_id,
        must_exist: query.must_exist,
        untyped_body,
        encoded_path,
        query: query.forward,
    })
}

fn upstream(encoded_path: &str, query: &[(&'static str, String)]) -> String {
    let mut out = encoded_path.to_owned();
    for (i, (name, value)) in query.iter().enumerate() {
        let sep = if i == 0 { '?' } else { '&' };
        let _ = write!(out, "{sep}{name}={}", utf8_percent_encode(value, QUERY));
    }
    out
}

/// A raw `:` ends the path and starts the verb (ids carry `:` as `%3A`), so
/// it may appear only once, in the last segment.
fn split_verb(rest: &str) -> Result<(&str, Option<&str>), ClassifyError> {
    let Some((path, verb)) = rest.split_once(':') else {
        return Ok((rest, None));
    };
    if verb.contains('/') || verb.contains(':') {
        return Err(ClassifyError::AmbiguousResourceName);
    }
    Ok((path, Some(verb)))
}

fn database(project: &str, db: &str) -> Result<Database, ClassifyError> {
    Ok(Database {
        project: decode_segment(project)?.into_owned(),
        database: decode_segment(db)?.into_owned(),
    })
}

/// The route table of §1. `depth` is the number of segments below
/// `documents`.
fn rpc(method: &HttpMethod, verb: Option<&str>, depth: usize) -> Result<Method, ClassifyError> {
    let even = depth.is_multiple_of(2);
    let found = match (method.as_str(), verb) {
        ("GET", None) if depth > 0 && even => Method::Get,
        ("GET", None) if !even => Method::List,
        ("POST", None) if !even => Method::CreateDocument,
        ("PATCH", None) if depth > 0 && even => Method::Patch,
        ("DELETE", None) if depth > 0 && even => Method::Delete,
        ("POST", Some("batchGet")) if depth == 0 => Method::BatchGet,
        ("POST", Some("commit")) if depth == 0 => Method::Commit,
        ("POST", Some("batchWrite")) if depth == 0 => Method::BatchWrite,
        ("POST", Some("beginTransaction")) if depth == 0 => Method::BeginTransaction,
        ("POST", Some("rollback")) if depth == 0 => Method::Rollback,
        ("POST", Some("runQuery")) if even => Method::RunQuery,
        ("POST", Some("runAggregationQuery")) if even => Method::RunAggregationQuery,
        ("POST", Some("partitionQuery")) if even => Method::PartitionQuery,
        ("POST", Some("listCollectionIds")) if even => Method::ListCollectionIds,
        (_, Some(verb)) if NOT_SERVED_VERBS.contains(&verb) => {
            return Err(ClassifyError::Unsupported("streaming or admin RPC"));
        }
        _ => return Err(ClassifyError::RouteNotFound("no such route")),
    };
    Ok(found)
}

/// gRPC is not served (yet): a gRPC caller is told so at once, before its
/// token or body is looked at, so that it stops instead of retrying a 404.
/// `application/grpc`, `application/grpc+proto`, `application/grpc-web…`.
pub fn refuse_grpc(headers: &HeaderMap) -> Result<(), ClassifyError> {
    let grpc = headers.get_all(header::CONTENT_TYPE).iter().any(|value| {
        value
            .as_bytes()
            .get(..16)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
    });
    if grpc {
        Err(ClassifyError::GrpcNotServed)
    } else {
        Ok(())
    }
}

/// Method overrides: refused, since upstream could honour one.
static METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers that change what a request means (§4).
fn check_headers(method: &HttpMethod, headers: &HeaderMap) -> Result<(), ClassifyError> {
    for name in &METHOD_OVERRIDES {
        if headers.contains_key(name) {
            return Err(ClassifyError::MethodOverride);
        }
    }
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let identity = value
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"));
        if !identity {
            // We would classify bytes other than the ones upstream decodes.
            return Err(ClassifyError::UnsupportedContentEncoding);
        }
    }
    if *method == HttpMethod::GET || *method == HttpMethod::DELETE {
        let declares_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if declares_body {
            return Err(ClassifyError::BodyNotAllowed);
        }
    }
    Ok(())
}

/// JSON bodies only: `application/json`, or `text/plain` as Firebase lite
/// sends it to avoid a CORS preflight; UTF-8 only. Returns whether the
/// request declared no type at all.
/// The methods that carry a body: every one but get, list and delete.
fn has_body(method: Method) -> bool {
    match method {
        Method::Get | Method::List | Method::Delete => false,
        Method::CreateDocument
        | Method::Patch
        | Method::BatchGet
        | Method::Commit
        | Method::BatchWrite
        | Method::BeginTransaction
        | Method::Rollback
        | Method::RunQuery
        | Method::RunAggregationQuery
        | Method::PartitionQuery
        | Method::ListCollectionIds
        | Method::Listen => true,
    }
}

fn content_type(method: Method, headers: &HeaderMap) -> Result<bool, ClassifyError> {
    if !has_body(method) {
        return Ok(false);
    }
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::CONTENT_TYPE) {
            Err(ClassifyError::UnsupportedContentType)
        } else {
            Ok(true)
        };
    };
    let value = value
        .to_str()
        .map_err(|_| ClassifyError::UnsupportedContentType)?
        .to_ascii_lowercase();
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if media != "application/json" && media != "text/plain" {
        return Err(ClassifyError::UnsupportedContentType);
    }
    for param in parts.filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("charset", cs)) if matches!(cs.trim_matches('"'), "utf-8" | "utf8") => {}
            _ => return Err(ClassifyError::UnsupportedContentType),
        }
    }
    Ok(false)
}

/// What the query string said, after §4.
struct Query {
    forward: Vec<(&'static str, String)>,
    document_id: Option<String>,
    must_exist: Option<bool>,
}

/// How one accepted query parameter is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    /// Forwarded under this canonical name.
    Forward(&'static str),
    /// Forwarded; may repeat.
    Repeated(&'static str),
    /// Removed: the client's API key, quota attribution.
    Strip,
    Alt,
    PrettyPrint,
    ErrorFormat,
    DocumentId,
    Exists,
    UpdateTime,
}

impl Query {
    fn parse(method: Method, raw: Option<&str>) -> Result<Query, ClassifyError> {
        let mut query = Query {
            forward: Vec::new(),
            document_id: None,
            must_exist: None,
        };
        let mut seen: Vec<(Param, String)> = Vec::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = path::percent_decode_strict(raw_name, true)
                .map_err(|_| ClassifyError::InvalidParameter("name encoding"))?;
            let value = path::percent_decode_strict(raw_value, true)
                .map_err(|_| ClassifyError::InvalidParameter("value encoding"))?;
            let param = param(method, &name)?;
            let previous = seen.iter().find(|(p, _)| *p == param);
            if let Some((_, spelled)) = previous.filter(|_| param != Param::Strip) {
                if *spelled != name {
                    return Err(ClassifyError::MixedFieldSpelling("query parameter"));
                }
                if !matches!(param, Param::Repeated(_)) {
                    return Err(ClassifyError::DuplicateParameter);
                }
            }
            if previous.is_none() {
                seen.push((param, name));
            }
            query.accept(param, value)?;
        }
        Ok(query)
    }

    fn accept(&mut self, param: Param, value: String) -> Result<(), ClassifyError> {
        match param {
            Param::Forward(name) | Param::Repeated(name) => self.forward.push((name, value)),
            Param::Strip => {}
            Param::Alt => {
                if value != "json" && value != "json;enum-encoding=int" {
                    return Err(ClassifyError::SystemParameterRefused("alt"));
                }
                self.forward.push(("$alt", value));
            }
            Param::PrettyPrint => {
                if value != "true" && value != "false" {
                    return Err(ClassifyError::InvalidParameter("prettyPrint"));
                }
                self.forward.push(("prettyPrint", value));
            }
            Param::ErrorFormat => {
                if value != "1" && value != "2" {
                    return Err(ClassifyError::InvalidParameter("$.xgafv"));
                }
                self.forward.push(("$.xgafv", value));
            }
            Param::DocumentId => {
                validate_id(&value)?;
                self.forward.push(("documentId", value.clone()));
                self.document_id = Some(value);
            }
            Param::Exists => {
                let exists = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ClassifyError::InvalidParameter("currentDocument.exists")),
                };
                self.set_precondition(exists)?;
                self.forward.push(("currentDocument.exists", value));
            }
            Param::UpdateTime => {
                self.set_precondition(true)?;
                self.forward.push(("currentDocument.updateTime", value));
            }
        }
        Ok(())
    }

    /// `currentDocument` is a oneof: `exists` or `updateTime`, not both.
    fn set_precondition(&mut self, exists: bool) -> Result<(), ClassifyError> {
        if self.must_exist.is_some() {
            return Err(ClassifyError::InvalidParameter("currentDocument"));
        }
        self.must_exist = Some(exists);
        Ok(())
    }
}

/// Decide what one (decoded) query parameter name means for `method`.
fn param(method: Method, name: &str) -> Result<Param, ClassifyError> {
    let system = match name {
        "fields" | "$fields" => Some(Param::Forward("fields")),
        "prettyPrint" | "$prettyPrint" => Some(Param::PrettyPrint),
        "alt" | "$alt" => Some(Param::Alt),
        "$.xgafv" => Some(Param::ErrorFormat),
        // Quota goes to firegate's project, whatever the caller says.
        "key" | "$key" | "quotaUser" | "$quotaUser" => Some(Param::Strip),
        "access_token" | "$access_token" | "oauth_token" | "$oauth_token" | "bearer_token"
        | "$bearer_token" => return Err(ClassifyError::CredentialInQuery),
        "name" | "parent" | "database" | "collectionId" | "collection_id" | "document.name" => {
            return Err(ClassifyError::PathFieldRespecified("query parameter"));
        }
        _ if name.starts_with('$') => {
            return Err(ClassifyError::SystemParameterRefused("system parameter"));
        }
        "ct" | "callback" | "uploadType" | "upload_protocol" | "userIp" | "upload_type" => {
            return Err(ClassifyError::SystemParameterRefused("system parameter"));
        }
        _ => None,
    };
    if let Some(param) = system {
        return Ok(param);
    }
    let mask = ("mask.fieldPaths", "mask.field_paths");
    let transaction = ("transaction", "transaction");
    let read_time = ("readTime", "read_time");
    let exists = ("currentDocument.exists", "current_document.exists");
    let update_time = ("currentDocument.updateTime", "current_document.update_time");
    let is = |(camel, snake): (&str, &str)| name == camel || name == snake;
    let tags = (REQUEST_TAGS, "request_options.request_tags");
    let found = match method {
        Method::Get | Method::List | Method::CreateDocument | Method::Patch | Method::Delete
            if is(tags) =>
        {
            Param::Repeated(REQUEST_TAGS)
        }
        Method::Get if is(mask) => Param::Repeated("mask.fieldPaths"),
        Method::Get if is(transaction) => Param::Forward("transaction"),
        Method::Get if is(read_time) => Param::Forward("readTime"),
        Method::List if is(mask) => Param::Repeated("mask.fieldPaths"),
        Method::List if is(transaction) => Param::Forward("transaction"),
        Method::List if is(read_time) => Param::Forward("readTime"),
        Method::List if is(("pageSize", "page_size")) => Param::Forward("pageSize"),
        Method::List if is(("pageToken", "page_token")) => Param::Forward("pageToken"),
        Method::List if is(("orderBy", "order_by")) => Param::Forward("orderBy"),
        Method::List if is(("showMissing", "show_missing")) => Param::Forward("showMissing"),
        Method::CreateDocument if is(mask) => Param::Repeated("mask.fieldPaths"),
        Method::CreateDocument if is(("documentId", "document_id")) => Param::DocumentId,
        Method::Patch if is(mask) => Param::Repeated("mask.fieldPaths"),
        Method::Patch if is(("updateMask.fieldPaths", "update_mask.field_paths")) => {
            Param::Repeated("updateMask.fieldPaths")
        }
        Method::Patch | Method::Delete if is(exists) => Param::Exists,
        Method::Patch | Method::Delete if is(update_time) => Param::UpdateTime,
        _ => return Err(ClassifyError::UnknownParameter),
    };
    Ok(found)
}

#[cfg(test)]
mod tests;
