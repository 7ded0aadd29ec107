//! The stored-document read before `decide`, for rules that read
//! `resource`: one `batchGet` with firegate's own token, in the request's
//! transaction or at its read time, counted and metered.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt as _, Limited};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::{Value as Json, json};

use crate::body;
use crate::firestore::data_json;
use crate::metrics;
use crate::model::data::{Stored, StoredDocument};
use crate::model::path::document_name;
use crate::model::{Database, Segments};
use crate::upstream::{AccessToken, Outbound, Upstream};

/// Largest `batchGet` answer read (the documents a rule needs, at most
/// `max_targets` of them).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Longest wait for the whole answer once its head arrived.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the stored documents could not be read. The request is refused:
/// a rule that needs them never fails open.
#[derive(Debug, thiserror::Error)]
pub enum StoredReadError {
    #[error("the stored documents could not be read: {0}")]
    ReadFailed(String),
    #[error("the upstream answered the stored-document read with status {0}")]
    ReadRefused(u16),
    #[error("a read that begins a transaction cannot be checked on its documents")]
    BeginsTransaction,
}

impl StoredReadError {
    pub fn reason(&self) -> &'static str {
        match self {
            StoredReadError::ReadFailed(_) => "stored_read_failed",
            StoredReadError::ReadRefused(_) => "stored_read_refused",
            StoredReadError::BeginsTransaction => "stored_read_in_new_transaction",
        }
    }
}

/// Where the read happens.
pub enum Consistency {
    /// Now; the answer's read time pins a checked read.
    Now,
    /// Inside the request's transaction (the upstream id).
    Transaction(Vec<u8>),
    /// At the read time the client asked for.
    ReadTime(String),
}

/// The documents read and the time they were read at.
pub struct ReadStored {
    pub documents: Stored,
    pub read_time: Option<String>,
}

/// Counts the reads and the documents they read.
pub struct StoredReader {
    /// Reads by result: ok, failed.
    reads: [Counter; 2],
    documents: Counter,
}

impl StoredReader {
    pub fn register(registry: &mut Registry) -> StoredReader {
        StoredReader {
            reads: metrics::counters_by_result(
                registry,
                "stored_reads",
                "Stored-document reads for rules that read `resource`, by result (ok, failed)",
                ["ok", "failed"],
            ),
            documents: metrics::registered(
                registry,
                "stored_documents_read",
                "Documents read for rules that read `resource`",
            ),
        }
    }

    /// One `batchGet` of `read`'s documents, with firegate's own `token`.
    pub async fn read(
        &self,
        upstream: &Upstream,
        token: &AccessToken,
        read: &StoredRead<'_>,
    ) -> Result<ReadStored, StoredReadError> {
        let result = batch_get(upstream, token, read).await;
        let [ok, failed] = &self.reads;
        if result.is_ok() {
            ok.inc();
            self.documents.inc_by(read.paths.len() as u64);
        } else {
            failed.inc();
        }
        result
    }
}

/// One stored read: which documents of which database, and where.
pub struct StoredRead<'a> {
    pub database: &'a Database,
    pub paths: &'a [Segments],
    pub consistency: &'a Consistency,
    pub request_id: &'a str,
}

async fn batch_get(
    upstream: &Upstream,
    token: &AccessToken,
    read: &StoredRead<'_>,
) -> Result<ReadStored, StoredReadError> {
    let StoredRead {
        database,
        paths,
        consistency,
        request_id,
    } = *read;
    let names: Vec<String> = paths.iter().map(|p| full_name(database, p)).collect();
    let mut request = json!({ "documents": names });
    match consistency {
        Consistency::Now => {}
        Consistency::Transaction(id) => request["transaction"] = json!(BASE64.encode(id)),
        Consistency::ReadTime(t) => request["readTime"] = json!(t),
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let db = database.to_string();
    let path_and_query = format!("/v1/{db}/documents:batchGet");
    let response = upstream
        .forward(Outbound {
            method: http::Method::POST,
            path_and_query: &path_and_query,
            client_headers: &headers,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            trusted_proxies: &[],
            client_proto: "https",
            request_id,
            database: &db,
            token,
            body: body::full(request.to_string()),
        })
        .await
        .map_err(|e| StoredReadError::ReadFailed(e.reason().into()))?;
    let status = response.status();
    let answer = tokio::time::timeout(
        ANSWER_TIMEOUT,
        Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
    )
    .await
    .map_err(|_| StoredReadError::ReadFailed("answer timed out".into()))?
    .map_err(|_| StoredReadError::ReadFailed("answer unreadable or too large".into()))?
    .to_bytes();
    if !status.is_success() {
        return Err(StoredReadError::ReadRefused(status.as_u16()));
    }
    parse(database, paths, &answer)
}

fn full_name(database: &Database, path: &Segments) -> String {
    format!("{database}/documents{}", path.spelled())
}

/// The `batchGet` answer (a JSON array of `found`/`missing`): every asked
/// document must be answered for, or the read failed.
fn parse(
    database: &Database,
    paths: &[Segments],
    answer: &Bytes,
) -> Result<ReadStored, StoredReadError> {
    let bad = |what: &str| StoredReadError::ReadFailed(format!("unexpected answer: {what}"));
    let items: Vec<Json> = serde_json::from_slice(answer).map_err(|_| bad("not a JSON array"))?;
    let mut documents = Stored::new();
    let mut read_time = None;
    for item in &items {
        if read_time.is_none() {
            read_time = item
                .get("readTime")
                .and_then(Json::as_str)
                .map(String::from);
        }
        if let Some(found) = item.get("found") {
            let name = found
                .get("name")
                .and_then(Json::as_str)
                .ok_or(bad("name"))?;
            let path = document_name(database, name).map_err(|_| bad("name"))?;
            let fields = match found.get("fields") {
                Some(f) => data_json::fields_of(f).map_err(|_| bad("fields"))?,
                None => Default::default(),
            };
            let update_time = found
                .get("updateTime")
                .and_then(Json::as_str)
                .ok_or(bad("updateTime"))?
                .to_owned();
            documents.insert(
                path,
                Some(StoredDocument {
                    fields,
                    update_time,
                }),
            );
        } else if let Some(name) = item.get("missing").and_then(Json::as_str) {
            let path = document_name(database, name).map_err(|_| bad("missing"))?;
            documents.insert(path, None);
        }
    }
    if paths.iter().any(|p| !documents.contains_key(p)) {
        return Err(bad("a document was not answered for"));
    }
    Ok(ReadStored {
        documents,
        read_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Database {
        Database::new("p", "(default)")
    }

    #[test]
    fn found_and_missing_documents_are_read() {
        let answer = Bytes::from(
            r#"[{"found":{"name":"projects/p/databases/(default)/documents/notes/a",
                 "fields":{"owner":{"stringValue":"alice"}},
                 "updateTime":"2026-01-01T00:00:00.000001Z"},"readTime":"2026-01-02T00:00:00Z"},
                {"missing":"projects/p/databases/(default)/documents/notes/b","readTime":"2026-01-02T00:00:00Z"}]"#,
        );
        let a = Segments::from(&["notes", "a"][..]);
        let b = Segments::from(&["notes", "b"][..]);
        let read = parse(&db(), &[a.clone(), b.clone()], &answer).unwrap();
        let doc = read.documents[&a].as_ref().unwrap();
        assert_eq!(doc.update_time, "2026-01-01T00:00:00.000001Z");
        assert!(read.documents[&b].is_none());
        assert_eq!(read.read_time.as_deref(), Some("2026-01-02T00:00:00Z"));
    }

    #[test]
    fn an_unanswered_document_fails_the_read() {
        let a = Segments::from(&["notes", "a"][..]);
        assert!(parse(&db(), &[a], &Bytes::from_static(b"[]")).is_err());
        assert!(parse(&db(), &[], &Bytes::from_static(b"{}")).is_err());
    }
}
