//! The store: one Firestore document per request (its JSON in one string
//! field), read and written with firegate's own identity. Every change to
//! a request is a read-write transaction: begin, read the request in it,
//! commit the change in it — Firestore (with its locks) and the emulator
//! (optimistically) answer ABORTED when the request changed in between, and
//! the change is computed again from what is stored now. So two replicas
//! racing on one request apply their changes one after the other, each to
//! what the other wrote. A new request is a commit whose precondition is
//! that its (random) id does not exist yet.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde_json::{Value as Json, json};

use super::{AccessRequest, Store};
use crate::body;
use crate::upstream::{AccessToken, Outbound, Upstream};

/// Largest answer read from the store.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Longest wait for an answer's body.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Documents per page of a full read.
const PAGE_SIZE: usize = 300;

/// A stored request and the update time a change must name.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub request: AccessRequest,
    pub update_time: String,
}

/// How a write ended.
#[derive(Debug)]
pub enum Written {
    Ok,
    /// The precondition failed: someone else wrote first. Read and retry.
    Conflict,
}

/// The store could not be asked (an outage: 503 to callers).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// One call to the store.
async fn call(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    method: http::Method,
    path_and_query: &str,
    body: Option<Json>,
) -> Result<(StatusCode, Json), StoreError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let db = store.database.to_string();
    let response = upstream
        .forward(Outbound {
            method,
            path_and_query,
            client_headers: &headers,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            trusted_proxies: &[],
            client_proto: "https",
            request_id: "access-store",
            database: &db,
            token,
            body: match body {
                Some(b) => body::full(b.to_string()),
                None => body::empty(),
            },
        })
        .await
        .map_err(|e| StoreError(e.reason().into()))?;
    let status = response.status();
    let bytes = tokio::time::timeout(
        ANSWER_TIMEOUT,
        Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
    )
    .await
    .map_err(|_| StoreError("store answer timed out".into()))?
    .map_err(|_| StoreError("store answer unreadable".into()))?
    .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
        return Err(StoreError(format!("store answered {status}")));
    }
    Ok((status, json))
}

impl Versioned {
    /// The update time in nanoseconds since the epoch, to tell which of two
    /// versions of one document is newer.
    pub fn stamp(&self) -> i128 {
        time::OffsetDateTime::parse(
            &self.update_time,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(0, time::OffsetDateTime::unix_timestamp_nanos)
    }
}

/// A document as the Listen stream carries it.
pub fn decode_proto(
    doc: &googleapis_tonic_google_firestore_v1::google::firestore::v1::Document,
) -> Option<Versioned> {
    use googleapis_tonic_google_firestore_v1::google::firestore::v1::value::ValueType;
    let Some(ValueType::StringValue(text)) = doc.fields.get("json")?.value_type.as_ref() else {
        return None;
    };
    let request: AccessRequest = serde_json::from_str(text).ok()?;
    let t = doc.update_time.as_ref()?;
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let update_time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(Versioned {
        request,
        update_time,
    })
}

fn decode(doc: &Json) -> Option<Versioned> {
    let text = doc.pointer("/fields/json/stringValue")?.as_str()?;
    let request: AccessRequest = serde_json::from_str(text).ok()?;
    let update_time = doc.get("updateTime")?.as_str()?.to_string();
    Some(Versioned {
        request,
        update_time,
    })
}

fn name(store: &Store, id: &str) -> String {
    format!("{}/documents/{}/{id}", store.database, store.collection)
}

/// Every request in the store (a full read, page by page).
pub async fn list(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
) -> Result<Vec<Versioned>, StoreError> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/{}/documents/{}?pageSize={PAGE_SIZE}",
            store.database, store.collection
        );
        if let Some(token) = &page {
            path.push_str("&pageToken=");
            path.push_str(
                &percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        let (status, json) = call(upstream, token, store, http::Method::GET, &path, None).await?;
        if !status.is_success() {
            return Err(StoreError(format!("store list answered {status}")));
        }
        if let Some(docs) = json.get("documents").and_then(Json::as_array) {
            out.extend(docs.iter().filter_map(decode));
        }
        match json.get("nextPageToken").and_then(Json::as_str) {
            Some(next) if !next.is_empty() => page = Some(next.to_string()),
            _ => return Ok(out),
        }
    }
}

/// One request, if it exists.
pub async fn get(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    id: &str,
) -> Result<Option<Versioned>, StoreError> {
    let path = format!("/v1/{}", name(store, id));
    let (status, json) = call(upstream, token, store, http::Method::GET, &path, None).await?;
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(decode(&json)),
        s => Err(StoreError(format!("store get answered {s}"))),
    }
}

/// An open read-write transaction (Firestore's id, base64 as REST has it).
#[derive(Debug, Clone)]
pub struct Transaction(String);

/// Begin a read-write transaction.
pub async fn begin(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
) -> Result<Transaction, StoreError> {
    let path = format!("/v1/{}/documents:beginTransaction", store.database);
    let (status, json) = call(
        upstream,
        token,
        store,
        http::Method::POST,
        &path,
        Some(json!({})),
    )
    .await?;
    match json.get("transaction").and_then(Json::as_str) {
        Some(id) if status.is_success() => Ok(Transaction(id.to_string())),
        _ => Err(StoreError(format!(
            "store beginTransaction answered {status}"
        ))),
    }
}

/// One request, if it exists, read in `txn` (which then fails to commit
/// if it changes before).
pub async fn get_in(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    id: &str,
    txn: &Transaction,
) -> Result<Option<Versioned>, StoreError> {
    let path = format!(
        "/v1/{}?transaction={}",
        name(store, id),
        percent_encoding::utf8_percent_encode(&txn.0, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, json) = call(upstream, token, store, http::Method::GET, &path, None).await?;
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => Ok(decode(&json)),
        s => Err(StoreError(format!("store get answered {s}"))),
    }
}

/// Commit `request` in `txn`: [`Written::Conflict`] when it was aborted
/// (what it read changed): read again and retry.
pub async fn commit_in(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    request: &AccessRequest,
    txn: Transaction,
) -> Result<Written, StoreError> {
    commit(upstream, token, store, request, None, Some(txn)).await
}

/// End `txn` without writing (releases Firestore's locks at once).
pub async fn rollback(upstream: &Upstream, token: &AccessToken, store: &Store, txn: Transaction) {
    let path = format!("/v1/{}/documents:rollback", store.database);
    let body = json!({ "transaction": txn.0 });
    // A failed rollback only leaves the transaction to expire.
    let _ = call(
        upstream,
        token,
        store,
        http::Method::POST,
        &path,
        Some(body),
    )
    .await;
}

/// Write a new request, only if its id is not taken.
pub async fn create(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    request: &AccessRequest,
) -> Result<Written, StoreError> {
    commit(
        upstream,
        token,
        store,
        request,
        Some(json!({ "exists": false })),
        None,
    )
    .await
}

async fn commit(
    upstream: &Upstream,
    token: &AccessToken,
    store: &Store,
    request: &AccessRequest,
    precondition: Option<Json>,
    txn: Option<Transaction>,
) -> Result<Written, StoreError> {
    let text = serde_json::to_string(request).map_err(|e| StoreError(e.to_string()))?;
    let state = serde_json::to_value(request.state).unwrap_or(Json::Null);
    let mut write = json!({
        "update": {
            "name": name(store, &request.id),
            "fields": {
                "json": { "stringValue": text },
                "state": { "stringValue": state },
            },
        },
    });
    if let Some(precondition) = precondition {
        write["currentDocument"] = precondition;
    }
    let mut commit = json!({ "writes": [write] });
    if let Some(Transaction(id)) = txn {
        commit["transaction"] = json!(id);
    }
    let path = format!("/v1/{}/documents:commit", store.database);
    let (status, json) = call(
        upstream,
        token,
        store,
        http::Method::POST,
        &path,
        Some(commit),
    )
    .await?;
    if status.is_success() {
        return Ok(Written::Ok);
    }
    let code = json
        .pointer("/error/status")
        .and_then(Json::as_str)
        .unwrap_or_default();
    match code {
        "FAILED_PRECONDITION" | "ALREADY_EXISTS" | "ABORTED" | "NOT_FOUND" => Ok(Written::Conflict),
        _ => Err(StoreError(format!("store commit answered {status} {code}"))),
    }
}
