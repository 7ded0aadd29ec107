//! The in-memory state: databases of documents kept in name order, and the
//! open transactions with what each has read.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value as Json, json};

use super::EmulatorError;
use super::clock::Timestamp;
use super::ids::check_path;
use super::values::{FieldPath, Fields, fields_to_json, project};

/// A document's path below `…/documents`, one entry per segment. Maps keep
/// them in byte order; where Firestore's order shows (numeric ids first),
/// results are sorted with [`super::ids::compare_paths`].
pub type DocPath = Vec<String>;

/// A stored document.
#[derive(Debug, Clone)]
pub struct Doc {
    pub fields: Fields,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

/// Every document of one database, in name order.
pub type Documents = BTreeMap<DocPath, Doc>;

/// An open transaction; optimistic: at commit, everything it read must be
/// unchanged (`None` = it was missing).
#[derive(Debug, Default)]
pub struct Transaction {
    pub database: String,
    pub read_only: bool,
    /// A read-only transaction may read the past.
    pub read_time: Option<Timestamp>,
    pub reads: HashMap<DocPath, Option<Timestamp>>,
}

impl Transaction {
    /// Remember the version first seen of `path`.
    pub fn record(&mut self, path: &DocPath, doc: Option<&Doc>) {
        if !self.read_only {
            self.reads
                .entry(path.clone())
                .or_insert_with(|| doc.map(|d| d.update_time));
        }
    }
}

/// One stored change, kept so reads at a past `readTime` can undo it.
#[derive(Debug)]
pub struct Change {
    pub time: Timestamp,
    pub path: DocPath,
    pub previous: Option<Doc>,
}

#[derive(Debug, Default)]
pub struct State {
    pub databases: HashMap<String, Documents>,
    /// Per database, every change in commit order (memory is not bounded:
    /// the emulator favours correct point-in-time reads).
    pub changes: HashMap<String, Vec<Change>>,
    pub transactions: HashMap<String, Transaction>,
    /// Counts stored changes; Listen streams wait on it to look again.
    pub feed: tokio::sync::watch::Sender<u64>,
}

impl State {
    pub fn documents(&self, database: &str) -> Option<&Documents> {
        self.databases.get(database)
    }

    pub fn documents_mut(&mut self, database: &str) -> &mut Documents {
        self.databases.entry(database.to_owned()).or_default()
    }

    /// Store (`Some`) or remove (`None`) a document, remembering what was there.
    pub fn apply(&mut self, database: &str, time: Timestamp, path: DocPath, doc: Option<Doc>) {
        let documents = self.documents_mut(database);
        let previous = match doc {
            Some(doc) => documents.insert(path.clone(), doc),
            None => documents.remove(&path),
        };
        self.changes
            .entry(database.to_owned())
            .or_default()
            .push(Change {
                time,
                path,
                previous,
            });
        self.feed.send_modify(|changes| *changes += 1);
    }

    /// The documents as they were at `at` (now, when `None`).
    pub fn snapshot(&self, database: &str, at: Option<Timestamp>) -> Option<Cow<'_, Documents>> {
        let current = self.documents(database)?;
        let Some(at) = at else {
            return Some(Cow::Borrowed(current));
        };
        let changes = self
            .changes
            .get(database)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let later = changes.partition_point(|c| c.time <= at);
        if later == changes.len() {
            return Some(Cow::Borrowed(current));
        }
        let mut past = current.clone();
        for change in changes[later..].iter().rev() {
            match &change.previous {
                Some(doc) => past.insert(change.path.clone(), doc.clone()),
                None => past.remove(&change.path),
            };
        }
        Some(Cow::Owned(past))
    }

    pub fn get(&self, database: &str, path: &DocPath) -> Option<&Doc> {
        self.documents(database)?.get(path)
    }

    /// The open transaction `id` on `database`.
    pub fn transaction_mut(
        &mut self,
        database: &str,
        id: &str,
    ) -> Result<&mut Transaction, EmulatorError> {
        match self.transactions.get_mut(id) {
            Some(tx) if tx.database == database => Ok(tx),
            _ => Err(EmulatorError::InvalidArgument(
                "transaction is not valid or has expired".into(),
            )),
        }
    }

    /// Ids of the collections directly below `parent` at `at` (now, when
    /// `None`), sorted.
    pub fn collection_ids(
        &self,
        database: &str,
        parent: &[String],
        at: Option<Timestamp>,
    ) -> BTreeSet<String> {
        let Some(documents) = self.snapshot(database, at) else {
            return BTreeSet::new();
        };
        documents
            .keys()
            .filter(|path| path.len() > parent.len() && path.starts_with(parent))
            .map(|path| path[parent.len()].clone())
            .collect()
    }
}

/// The full resource name of a document.
pub fn document_name(database: &str, path: &[String]) -> String {
    format!("{database}/documents/{}", path.join("/"))
}

/// Split a document name from a request body; it must belong to `database`.
pub fn parse_document_name(database: &str, name: &str) -> Result<DocPath, EmulatorError> {
    let path = parse_parent_name(database, name)?;
    if path.is_empty() || !path.len().is_multiple_of(2) {
        return Err(EmulatorError::InvalidArgument(format!(
            "{name:?} is not a document name"
        )));
    }
    Ok(path)
}

/// Split a name that may be the database root (`…/documents`) or a document.
pub fn parse_parent_name(database: &str, name: &str) -> Result<DocPath, EmulatorError> {
    let root = format!("{database}/documents");
    let bad = || EmulatorError::InvalidArgument(format!("{name:?} is not a name in {database}"));
    let rest = name.strip_prefix(&root).ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_prefix('/').ok_or_else(bad)?;
    let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) || !segments.len().is_multiple_of(2) {
        return Err(bad());
    }
    check_path(&segments)?;
    Ok(segments)
}

/// A document as Firestore returns it, optionally cut down to `mask`.
pub fn document_json(
    database: &str,
    path: &[String],
    doc: &Doc,
    mask: Option<&[FieldPath]>,
) -> Json {
    let fields = match mask {
        Some(mask) => fields_to_json(&project(&doc.fields, mask)),
        None => fields_to_json(&doc.fields),
    };
    json!({
        "name": document_name(database, path),
        "fields": fields,
        "createTime": doc.create_time.to_rfc3339(),
        "updateTime": doc.update_time.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "projects/p/databases/d";

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn doc(seconds: i64) -> Doc {
        Doc {
            fields: Fields::new(),
            create_time: at(1),
            update_time: at(seconds),
        }
    }

    #[test]
    fn snapshots_undo_later_changes() {
        let mut state = State::default();
        let a: DocPath = vec!["c".into(), "a".into()];
        let b: DocPath = vec!["c".into(), "b".into()];
        state.apply(DB, at(1), a.clone(), Some(doc(1)));
        state.apply(DB, at(2), b.clone(), Some(doc(2)));
        state.apply(DB, at(3), a.clone(), Some(doc(3)));
        state.apply(DB, at(4), b.clone(), None);

        let then = state.snapshot(DB, Some(at(2))).unwrap();
        assert_eq!(then.get(&a).unwrap().update_time, at(1));
        assert!(then.contains_key(&b));
        let first = state.snapshot(DB, Some(at(1))).unwrap();
        assert_eq!(first.keys().collect::<Vec<_>>(), [&a]);
        let now = state.snapshot(DB, None).unwrap();
        assert_eq!(now.get(&a).unwrap().update_time, at(3));
        assert!(!now.contains_key(&b));
        assert!(matches!(
            state.snapshot(DB, Some(at(9))),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn names_must_belong_to_the_database() {
        assert_eq!(
            parse_document_name(DB, &format!("{DB}/documents/c/a")).unwrap(),
            vec!["c", "a"]
        );
        assert!(parse_document_name(DB, "projects/p/databases/other/documents/c/a").is_err());
        assert!(parse_document_name(DB, &format!("{DB}/documents/c")).is_err());
        assert!(parse_document_name(DB, &format!("{DB}/documentsX/c/a")).is_err());
        assert!(
            parse_parent_name(DB, &format!("{DB}/documents"))
                .unwrap()
                .is_empty()
        );
    }
}
