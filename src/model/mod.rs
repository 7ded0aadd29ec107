//! The wire-neutral model of a Firestore call: the database, the RPC, every
//! document and collection it touches ([`Target`]s with their [`Scope`]s),
//! what its writes write and its query filters ([`data`]), the proto enums
//! they spell by name or number ([`enums`]), resource names ([`path`]) and
//! `__name__` narrowing ([`narrow`]). The REST wire
//! (`firestore`) and the gRPC wire (`grpc`) decode into it; neither knows the
//! other.

pub mod data;
pub mod enums;
mod error;
pub mod mask;
pub mod narrow;
pub mod path;
mod segments;
mod targets;

use std::fmt;

use serde::Serialize;

pub use error::ClassifyError;
pub use segments::Segments;
pub use targets::{
    MAX_NEAREST_NEIGHBORS, nearest_limit_ok, reserve_for_writes, selector_scope, upsert,
};

/// `projects/{project}/databases/{database}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Database {
    pub project: String,
    pub database: String,
}

impl Database {
    pub fn new(project: impl Into<String>, database: impl Into<String>) -> Database {
        Database {
            project: project.into(),
            database: database.into(),
        }
    }

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
    Document { path: Segments },
    /// The documents directly inside `parent/collection`.
    Collection {
        parent: Segments,
        collection: String,
    },
    /// Every collection named `collection` at any depth below `parent`.
    CollectionGroup {
        parent: Segments,
        collection: String,
    },
    /// Every document at any depth below `parent` (a kindless query).
    Descendants { parent: Segments },
    /// The documents of `parent/collection` and every document at any depth
    /// below them (a kindless query bounded to one collection by
    /// `__name__`, as the Node client's `recursiveDelete` sends).
    Subtree {
        parent: Segments,
        collection: String,
    },
    /// The names of the collections directly below `parent`.
    CollectionIds { parent: Segments },
}

impl Scope {
    /// Its spelling's pieces: the segments of its path or parent, then a
    /// separator, a collection and a suffix (each possibly empty).
    fn pieces(&self) -> (&Segments, &str, &str, &str) {
        match self {
            Scope::Document { path } => (path, "", "", ""),
            Scope::Collection { parent, collection } => (parent, "/", collection, ""),
            Scope::CollectionGroup { parent, collection } => (parent, "/**/", collection, ""),
            Scope::Descendants { parent } => (parent, "", "", "/**"),
            Scope::Subtree { parent, collection } => (parent, "/", collection, "/**"),
            Scope::CollectionIds { parent } => (parent, "", "", "/:collectionIds"),
        }
    }

    /// What [`Display`](fmt::Display) writes, in one allocation of its
    /// exact size: an audit record spells every target of a request, and
    /// a `String` grown through the formatter reallocated as it went.
    pub fn spelled(&self) -> String {
        let mut out = String::new();
        self.spell_into(&mut out);
        out
    }

    /// [`Scope::spelled`] into `out`, replacing what it held and growing
    /// it at most once: a buffer reused across the targets of a request.
    pub fn spell_into(&self, out: &mut String) {
        let (segments, middle, last, tail) = self.pieces();
        let segments = segments.spelled();
        out.clear();
        out.reserve_exact(segments.len() + middle.len() + last.len() + tail.len());
        out.push_str(segments);
        out.push_str(middle);
        out.push_str(last);
        out.push_str(tail);
    }
}

impl fmt::Display for Scope {
    /// A stable, human-readable form for audit lines and `policy check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spelled())
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
    /// Every field a query reads to choose or order its results (`where`,
    /// `orderBy` and so the cursors, aggregations, `findNearest`): a query
    /// on a masked field is an oracle for it. Never serialized.
    #[serde(skip)]
    pub queried: Vec<data::FieldPath>,
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
            queried: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Scope, Segments};

    #[test]
    fn scopes_spell_as_audit_lines_show_them() {
        let ids = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Segments>();
        let (parent, collection) = (ids(&["teams", "a"]), "logs".to_string());
        for (scope, spelled) in [
            (
                Scope::Document {
                    path: ids(&["teams", "a"]),
                },
                "/teams/a",
            ),
            (
                Scope::Collection {
                    parent: parent.clone(),
                    collection: collection.clone(),
                },
                "/teams/a/logs",
            ),
            (
                Scope::CollectionGroup {
                    parent: Segments::default(),
                    collection: collection.clone(),
                },
                "/**/logs",
            ),
            (
                Scope::Descendants {
                    parent: parent.clone(),
                },
                "/teams/a/**",
            ),
            (
                Scope::Subtree {
                    parent: parent.clone(),
                    collection,
                },
                "/teams/a/logs/**",
            ),
            (Scope::CollectionIds { parent }, "/teams/a/:collectionIds"),
        ] {
            assert_eq!(scope.to_string(), spelled);
            assert_eq!(scope.spelled(), spelled);
            assert_eq!(scope.spelled().capacity(), spelled.len(), "{spelled}");
        }
    }
}
