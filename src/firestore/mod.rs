//! Firestore REST v1: resource names, the route table, and `classify`, which
//! turns a request into the [`Operation`] naming every document and
//! collection it touches.

mod body;
mod classify;
pub mod data;
pub(crate) mod data_json;
mod messages;
pub mod narrow;
pub mod path;
#[cfg(test)]
mod proptests;
mod route;
mod shape;
pub mod status;

use std::fmt;

use serde::Serialize;

pub use classify::{Classified, Location, Presented, TransactionUse, classify, classify_request};
pub(crate) use classify::{nearest_limit_ok, selector_scope, upsert};
pub use route::{Route, refuse_grpc, route};

/// `projects/{project}/databases/{database}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Database {
    pub project: String,
    pub database: String,
}

impl Database {
    /// `projects/P/databases/D`, allocated once at its final size (what
    /// `to_string` gives, without growing the string piece by piece).
    pub fn name(&self) -> String {
        const PROJECTS: &str = "projects/";
        const DATABASES: &str = "/databases/";
        let len = PROJECTS.len() + self.project.len() + DATABASES.len() + self.database.len();
        let mut name = String::with_capacity(len);
        name.push_str(PROJECTS);
        name.push_str(&self.project);
        name.push_str(DATABASES);
        name.push_str(&self.database);
        name
    }
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
    /// The gRPC `Listen` stream (no REST twin): each target is judged as
    /// the `get`/`list` it would be as a read.
    Listen,
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
            Method::Listen => "listen",
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
    /// The documents of `parent/collection` and every document at any depth
    /// below them (a kindless query bounded to one collection by
    /// `__name__`, as the Node client's `recursiveDelete` sends).
    Subtree {
        parent: Vec<String>,
        collection: String,
    },
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
            Scope::Subtree { parent, collection } => {
                path(f, parent)?;
                write!(f, "/{collection}/**")
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
    /// What the writes write, one entry per write, for the rules that see
    /// the data. Document contents: never serialized (audited).
    #[serde(skip)]
    pub writes: Vec<data::Written>,
    /// The query's `where`, for the rules that see the data (filters as
    /// proofs). Never serialized.
    #[serde(skip)]
    pub filter: Option<data::Filter>,
}

impl Operation {
    /// An operation that says nothing about document contents.
    pub fn new(database: Database, method: Method, targets: Vec<Target>) -> Operation {
        Operation {
            database,
            method,
            targets,
            writes: Vec::new(),
            filter: None,
        }
    }
}

/// Why a request could not be classified. Each variant is a condition;
/// `pipeline::respond` gives the fixed client-facing answer. Details are
/// static descriptions, never request content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("route not served: {0}")]
    RouteNotFound(&'static str),
    #[error("method not supported: {0}")]
    Unsupported(&'static str),
    #[error("bad path encoding: {0}")]
    BadPathEncoding(&'static str),
    #[error("raw ':' inside the resource path")]
    AmbiguousResourceName,
    #[error("invalid resource id: {0}")]
    InvalidResourceId(&'static str),
    #[error("malformed resource name: {0}")]
    MalformedResourceName(&'static str),
    #[error("document/collection parity mismatch: {0}")]
    ParityMismatch(&'static str),
    #[error("a name in the request belongs to another database")]
    ForeignDatabase,
    #[error("repeated JSON key")]
    DuplicateKey,
    #[error("field given in both spellings: {0}")]
    MixedFieldSpelling(&'static str),
    #[error("unknown field in {0}")]
    UnknownField(&'static str),
    #[error("path-bound field re-specified in {0}")]
    PathFieldRespecified(&'static str),
    #[error("malformed body: {0}")]
    MalformedBody(&'static str),
    #[error("invalid write: {0}")]
    InvalidWrite(&'static str),
    #[error("invalid query: {0}")]
    InvalidQuery(&'static str),
    #[error("system parameter refused: {0}")]
    SystemParameterRefused(&'static str),
    #[error("credential in the query string")]
    CredentialInQuery,
    #[error("unknown query parameter")]
    UnknownParameter,
    #[error("repeated query parameter")]
    DuplicateParameter,
    #[error("invalid query parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("X-HTTP-Method-Override present")]
    MethodOverride,
    #[error("unsupported content type")]
    UnsupportedContentType,
    #[error("unsupported content encoding")]
    UnsupportedContentEncoding,
    #[error("body on a method without one")]
    BodyNotAllowed,
    #[error("gRPC request; only REST is served")]
    GrpcNotServed,
    #[error("a pipeline expression value ({0}) outside executePipeline")]
    PipelineValue(&'static str),
}

impl ClassifyError {
    /// A short, stable reason for the audit line (`bad_path_encoding`, …).
    pub fn reason(&self) -> &'static str {
        use ClassifyError as E;
        match self {
            E::RouteNotFound(_) => "route_not_found",
            E::Unsupported(_) => "unsupported_method",
            E::BadPathEncoding(_) => "bad_path_encoding",
            E::AmbiguousResourceName => "ambiguous_resource_name",
            E::InvalidResourceId(_) => "invalid_resource_id",
            E::MalformedResourceName(_) => "invalid_resource_name",
            E::ParityMismatch(_) => "resource_parity_mismatch",
            E::ForeignDatabase => "foreign_database",
            E::DuplicateKey => "duplicate_key",
            E::MixedFieldSpelling(_) => "mixed_field_spelling",
            E::UnknownField(_) => "unknown_field",
            E::PathFieldRespecified(_) => "path_field_respecified",
            E::MalformedBody(_) => "malformed_body",
            E::InvalidWrite(_) => "invalid_write",
            E::InvalidQuery(_) => "invalid_query",
            E::SystemParameterRefused(_) => "system_parameter_refused",
            E::CredentialInQuery => "credential_in_query",
            E::UnknownParameter => "unknown_query_parameter",
            E::DuplicateParameter => "duplicate_query_parameter",
            E::InvalidParameter(_) => "invalid_query_parameter",
            E::MethodOverride => "method_override",
            E::UnsupportedContentType => "unsupported_content_type",
            E::UnsupportedContentEncoding => "unsupported_content_encoding",
            E::BodyNotAllowed => "body_not_allowed",
            E::GrpcNotServed => "grpc_not_served",
            E::PipelineValue(_) => "pipeline_value_refused",
        }
    }
}
