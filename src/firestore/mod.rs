//! Firestore REST v1: resource names, the route table, and `classify`, which
//! turns a request into the [`Operation`] naming every document and
//! collection it touches.

pub mod status;
pub mod transaction;

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Method as HttpMethod, Uri};
use serde::Serialize;

pub use status::{ApiError, Code};

/// `projects/{project}/databases/{database}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Database {
    pub project: String,
    pub database: String,
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/databases/{}", self.project, self.database)
    }
}

/// The Firestore RPC a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    Get,
    List,
    CreateDocument,
    Patch,
    Delete,
    BatchGet,
    Commit,
    BatchWrite,
    BeginTransaction,
    Rollback,
    RunQuery,
    RunAggregationQuery,
    PartitionQuery,
    ListCollectionIds,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::List => "list",
            Method::CreateDocument => "createDocument",
            Method::Patch => "patch",
            Method::Delete => "delete",
            Method::BatchGet => "batchGet",
            Method::Commit => "commit",
            Method::BatchWrite => "batchWrite",
            Method::BeginTransaction => "beginTransaction",
            Method::Rollback => "rollback",
            Method::RunQuery => "runQuery",
            Method::RunAggregationQuery => "runAggregationQuery",
            Method::PartitionQuery => "partitionQuery",
            Method::ListCollectionIds => "listCollectionIds",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access a target needs, in Firestore Security Rules vocabulary.
/// (`read` and `write` are policy-side aliases and never appear here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Get,
    List,
    Create,
    Update,
    Delete,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Get => "get",
            Access::List => "list",
            Access::Create => "create",
            Access::Update => "update",
            Access::Delete => "delete",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a target covers. Paths are decoded segments relative to
/// `{database}/documents`; an empty `parent` is the database root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// One document (an even number of segments).
    Document { path: Vec<String> },
    /// The documents directly inside `parent/collection`.
    Collection {
        parent: Vec<String>,
        collection: String,
    },
    /// Every collection named `collection` at any depth below `parent`.
    CollectionGroup {
        parent: Vec<String>,
        collection: String,
    },
    /// Every document at any depth below `parent` (a kindless query).
    Descendants { parent: Vec<String> },
    /// The names of the collections directly below `parent`.
    CollectionIds { parent: Vec<String> },
}

impl fmt::Display for Scope {
    /// A stable, human-readable form for audit lines and `policy check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn path(f: &mut fmt::Formatter<'_>, segments: &[String]) -> fmt::Result {
            for s in segments {
                write!(f, "/{s}")?;
            }
            Ok(())
        }
        match self {
            Scope::Document { path: p } => path(f, p),
            Scope::Collection { parent, collection } => {
                path(f, parent)?;
                write!(f, "/{collection}")
            }
            Scope::CollectionGroup { parent, collection } => {
                path(f, parent)?;
                write!(f, "/**/{collection}")
            }
            Scope::Descendants { parent } => {
                path(f, parent)?;
                f.write_str("/**")
            }
            Scope::CollectionIds { parent } => {
                path(f, parent)?;
                f.write_str("/:collectionIds")
            }
        }
    }
}

/// One thing a request touches and the access it needs there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    pub scope: Scope,
    pub access: Access,
}

/// What a request does, in full: the database, the RPC, and every target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub database: Database,
    pub method: Method,
    pub targets: Vec<Target>,
}

/// Why a request could not be classified. Each variant is a condition;
/// [`ClassifyError::api_error`] gives the fixed client-facing answer.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("route not served: {0}")]
    RouteNotFound(String),
    #[error("method not supported: {0}")]
    Unsupported(String),
    #[error("classifier not built yet")]
    NotImplemented,
}

impl ClassifyError {
    /// The client-facing error.
    pub fn api_error(&self) -> ApiError {
        match self {
            ClassifyError::RouteNotFound(_) => ApiError::new(Code::NotFound, "Route not found."),
            ClassifyError::Unsupported(_) => {
                ApiError::new(Code::Unimplemented, "Method not supported by this proxy.")
            }
            ClassifyError::NotImplemented => {
                ApiError::new(Code::Unimplemented, "Method not supported by this proxy.")
            }
        }
    }

    /// A short, stable reason for the audit line (`bad_path_encoding`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            ClassifyError::RouteNotFound(_) => "route_not_found",
            ClassifyError::Unsupported(_) => "unsupported_method",
            ClassifyError::NotImplemented => "classifier_unavailable",
        }
    }
}

/// The URL-level half of classification: which RPC, which database, and
/// whether the body must be read to know the targets.
#[derive(Debug, Clone)]
pub struct Route {
    pub database: Database,
    pub method: Method,
    /// Path and query to send upstream: canonical, with stripped parameters removed.
    pub upstream_path_and_query: String,
}

impl Route {
    /// True for the methods whose bodies name documents (§1–2): only these
    /// bodies are buffered; everything else streams.
    pub fn needs_body(&self) -> bool {
        matches!(
            self.method,
            Method::BatchGet
                | Method::Commit
                | Method::BatchWrite
                | Method::BeginTransaction
                | Method::Rollback
                | Method::RunQuery
                | Method::RunAggregationQuery
                | Method::PartitionQuery
                | Method::ListCollectionIds
                | Method::Patch
                | Method::CreateDocument
        )
    }
}

/// Parse method, URL and headers into a [`Route`]; refuse everything outside
/// the allowlist.
pub fn route(
    _method: &HttpMethod,
    _uri: &Uri,
    _headers: &HeaderMap,
) -> Result<Route, ClassifyError> {
    Err(ClassifyError::NotImplemented)
}

/// Finish classification with the (bounded) body, when the route needs it.
pub fn classify(_route: &Route, _body: Option<&Bytes>) -> Result<Operation, ClassifyError> {
    Err(ClassifyError::NotImplemented)
}
