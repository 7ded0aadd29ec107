//! What the policy tests (and `policy check`'s) build again and again:
//! operations on `projects/p/databases/(default)`, document targets and
//! principals known by subject and groups only.

use crate::authn::Principal;
use crate::model::{Access, Database, Method, Operation, Scope, Segments, Target};

/// A path's ids: `"/teams/a/x"` → `["teams", "a", "x"]`.
pub(crate) fn ids(path: &str) -> Segments {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `access` to the document at `path`.
pub(crate) fn doc(path: &str, access: Access) -> Target {
    Target {
        scope: Scope::Document { path: ids(path) },
        access,
    }
}

/// `method` on `targets` in `projects/p/databases/(default)`, with no
/// writes and no filter.
pub(crate) fn op(method: Method, targets: Vec<Target>) -> Operation {
    Operation {
        writes: Vec::new(),
        filter: None,
        queried: Vec::new(),
        database: Database {
            project: "p".into(),
            database: "(default)".into(),
        },
        method,
        targets,
    }
}

/// A principal of one issuer with `subject` and `groups`, no email and no
/// claims.
pub(crate) fn member(subject: &str, groups: &[&str]) -> Principal {
    Principal::new(
        "https://idp.example".into(),
        subject.into(),
        None,
        groups.iter().map(|g| g.to_string()).collect(),
        serde_json::Map::new(),
    )
}
