//! The store's Listen stream read as Firestore's clients read it
//! (`watch.ts`): document changes are gathered, and handed over only at a
//! global `NO_CHANGE` with a read time once the target is `CURRENT` — the
//! moment the whole collection is consistent. The first such snapshot of a
//! stream (or the first after a `RESET`) is the whole collection; later
//! ones are the changes since.

use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use proto::listen_response::ResponseType;
use proto::target_change::TargetChangeType;

use super::Store;
use super::store::Versioned;

/// The one target of the store's stream.
pub const TARGET_ID: i32 = 1;

/// The request that opens the stream: every document of the collection.
pub fn listen_request(store: &Store) -> proto::ListenRequest {
    use proto::structured_query::CollectionSelector;
    use proto::target::query_target::QueryType;
    use proto::target::{QueryTarget, TargetType};
    let database = store.database.to_string();
    proto::ListenRequest {
        target_change: Some(proto::listen_request::TargetChange::AddTarget(
            proto::Target {
                target_id: TARGET_ID,
                target_type: Some(TargetType::Query(QueryTarget {
                    parent: format!("{database}/documents"),
                    query_type: Some(QueryType::StructuredQuery(proto::StructuredQuery {
                        from: vec![CollectionSelector {
                            collection_id: store.collection.clone(),
                            all_descendants: false,
                        }],
                        ..Default::default()
                    })),
                })),
                ..Default::default()
            },
        )),
        database,
        labels: Default::default(),
    }
}

/// One change to the local copy.
#[derive(Debug, Clone)]
pub enum Change {
    Put(Box<Versioned>),
    /// The request id of a document gone from the collection.
    Delete(String),
}

/// What a consistent point of the stream hands over.
#[derive(Debug)]
pub enum Snapshot {
    /// The whole collection (a stream's first snapshot, or after a reset).
    Whole(Vec<Versioned>),
    /// What changed since the last snapshot (often nothing: a heartbeat).
    Changes(Vec<Change>),
}

/// What one message of the stream means.
#[derive(Debug)]
pub enum Step {
    /// Nothing to apply yet.
    Pending,
    /// The copy is current as of this message.
    Snapshot(Snapshot),
    /// The target was removed (with Firestore's cause): reopen.
    Removed(String),
}

/// The state of one stream.
#[derive(Debug)]
pub struct Feed {
    current: bool,
    /// The next snapshot is the whole collection.
    whole: bool,
    changes: Vec<Change>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            current: false,
            whole: true,
            changes: Vec::new(),
        }
    }
}

impl Feed {
    pub fn apply(&mut self, message: proto::ListenResponse) -> Step {
        match message.response_type {
            Some(ResponseType::DocumentChange(change)) => {
                let document = change.document.unwrap_or_default();
                if change.target_ids.contains(&TARGET_ID) {
                    match super::store::decode_proto(&document) {
                        Some(v) => self.changes.push(Change::Put(Box::new(v))),
                        // Not a request firegate wrote: not in the copy.
                        None => self.changes.push(Change::Delete(id_of(&document.name))),
                    }
                } else if change.removed_target_ids.contains(&TARGET_ID) {
                    self.changes.push(Change::Delete(id_of(&document.name)));
                }
                Step::Pending
            }
            Some(ResponseType::DocumentDelete(gone)) => {
                self.changes.push(Change::Delete(id_of(&gone.document)));
                Step::Pending
            }
            Some(ResponseType::DocumentRemove(gone)) => {
                self.changes.push(Change::Delete(id_of(&gone.document)));
                Step::Pending
            }
            Some(ResponseType::TargetChange(change)) => self.target_change(change),
            Some(ResponseType::Filter(_)) | None => Step::Pending,
        }
    }

    fn target_change(&mut self, change: proto::TargetChange) -> Step {
        let ours = change.target_ids.contains(&TARGET_ID);
        match TargetChangeType::try_from(change.target_change_type) {
            Ok(TargetChangeType::Current) if ours => {
                self.current = true;
                Step::Pending
            }
            Ok(TargetChangeType::Reset) if ours => {
                self.whole = true;
                self.changes.clear();
                Step::Pending
            }
            Ok(TargetChangeType::Remove) if ours || change.target_ids.is_empty() => {
                Step::Removed(change.cause.map(|c| c.message).unwrap_or_default())
            }
            Ok(TargetChangeType::NoChange)
                if change.target_ids.is_empty() && change.read_time.is_some() && self.current =>
            {
                let changes = std::mem::take(&mut self.changes);
                if std::mem::replace(&mut self.whole, false) {
                    let mut all = std::collections::BTreeMap::new();
                    for change in changes {
                        match change {
                            Change::Put(v) => {
                                all.insert(v.request.id.clone(), *v);
                            }
                            Change::Delete(id) => {
                                all.remove(&id);
                            }
                        }
                    }
                    Step::Snapshot(Snapshot::Whole(all.into_values().collect()))
                } else {
                    Step::Snapshot(Snapshot::Changes(changes))
                }
            }
            _ => Step::Pending,
        }
    }
}

/// The request id a document name ends with.
fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessRequest, Actor, State};

    fn doc(id: &str, seconds: i64) -> proto::Document {
        let request = AccessRequest {
            id: id.into(),
            requestable: "ops".into(),
            requester: Actor::firegate(),
            database: "projects/p/databases/(default)".into(),
            path: "/ops/**".into(),
            actions: vec!["write".into()],
            duration_secs: 60,
            reason: String::new(),
            state: State::Pending,
            created_at: 0,
            pending_until: 1,
            min_approvals: 1,
            approved_at: None,
            ends_at: None,
            break_glass: false,
            history: Vec::new(),
        };
        let json = proto::Value {
            value_type: Some(proto::value::ValueType::StringValue(
                serde_json::to_string(&request).unwrap(),
            )),
        };
        proto::Document {
            name: format!("projects/p/databases/f/documents/access/{id}"),
            fields: [("json".to_string(), json)].into(),
            create_time: None,
            update_time: Some(prost_types::Timestamp { seconds, nanos: 5 }),
        }
    }

    fn change(d: proto::Document) -> proto::ListenResponse {
        proto::ListenResponse {
            response_type: Some(ResponseType::DocumentChange(proto::DocumentChange {
                document: Some(d),
                target_ids: vec![TARGET_ID],
                removed_target_ids: Vec::new(),
            })),
        }
    }

    fn target(kind: TargetChangeType, ids: Vec<i32>) -> proto::ListenResponse {
        proto::ListenResponse {
            response_type: Some(ResponseType::TargetChange(proto::TargetChange {
                target_change_type: kind as i32,
                target_ids: ids,
                cause: None,
                resume_token: Vec::new(),
                read_time: Some(prost_types::Timestamp::default()),
            })),
        }
    }

    fn ids(snapshot: &Snapshot) -> Vec<String> {
        match snapshot {
            Snapshot::Whole(all) => all.iter().map(|v| v.request.id.clone()).collect(),
            Snapshot::Changes(changes) => changes
                .iter()
                .map(|c| match c {
                    Change::Put(v) => v.request.id.clone(),
                    Change::Delete(id) => format!("-{id}"),
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_snapshot_is_whole_and_only_once_current_then_changes() {
        let mut feed = Feed::default();
        let global = || target(TargetChangeType::NoChange, Vec::new());
        assert!(matches!(
            feed.apply(target(TargetChangeType::Add, vec![1])),
            Step::Pending
        ));
        feed.apply(change(doc("a", 1)));
        feed.apply(change(doc("b", 1)));
        assert!(
            matches!(feed.apply(global()), Step::Pending),
            "not current yet"
        );
        feed.apply(target(TargetChangeType::Current, vec![1]));
        let Step::Snapshot(first) = feed.apply(global()) else {
            panic!("a snapshot once current")
        };
        assert!(matches!(first, Snapshot::Whole(_)));
        assert_eq!(ids(&first), ["a", "b"]);
        let b = doc("b", 2);
        assert_eq!(
            crate::access::store::decode_proto(&b).unwrap().update_time,
            "1970-01-01T00:00:02.000000005Z"
        );
        feed.apply(change(b));
        feed.apply(proto::ListenResponse {
            response_type: Some(ResponseType::DocumentDelete(proto::DocumentDelete {
                document: "projects/p/databases/f/documents/access/a".into(),
                removed_target_ids: vec![1],
                read_time: None,
            })),
        });
        let Step::Snapshot(next) = feed.apply(global()) else {
            panic!("changes")
        };
        assert_eq!(ids(&next), ["b", "-a"]);
        let Step::Snapshot(Snapshot::Changes(beat)) = feed.apply(global()) else {
            panic!("a heartbeat is an empty snapshot")
        };
        assert!(beat.is_empty());
        feed.apply(target(TargetChangeType::Reset, vec![1]));
        feed.apply(change(doc("c", 3)));
        let Step::Snapshot(reset) = feed.apply(global()) else {
            panic!("whole again")
        };
        assert!(matches!(reset, Snapshot::Whole(_)));
        assert!(matches!(
            feed.apply(target(TargetChangeType::Remove, vec![1])),
            Step::Removed(_)
        ));
    }
}
