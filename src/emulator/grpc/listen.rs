//! `Listen`: realtime targets over one bidirectional stream, as Firestore's
//! clients expect them (`watch.ts` in Node, `watch.py` in Python).
//!
//! A new target gets `ADD`, its documents, `CURRENT`, then a global
//! `NO_CHANGE` with a read time (what makes a client raise a snapshot).
//! After every stored change each target is evaluated again and compared
//! with what its client already has: new or changed documents, deletes,
//! and documents that left a query (`DocumentRemove`), then a global
//! `NO_CHANGE`. Resume tokens are read times: a target resumed from one is
//! compared with the store as it was then, so only what changed since is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::Stream;
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use googleapis_tonic_google_firestore_v1::google::rpc;
use proto::listen_request::TargetChange as Request;
use proto::listen_response::ResponseType;
use proto::target_change::TargetChangeType;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::super::clock::Timestamp;
use super::super::query::Query;
use super::super::store::{Doc, DocPath, State, document_name, parse_document_name};
use super::super::{EmulatorError, Shared};
use super::from_rest::{stored, timestamp};
use super::methods::parent_name;
use super::status::status;
use super::to_rest;

/// Responses waiting for a slow client before the stream stops reading changes.
const BACKLOG: usize = 256;

/// Open a Listen stream: its own task reads requests and the store's feed.
pub fn open(
    shared: Arc<Shared>,
    requests: Streaming<proto::ListenRequest>,
) -> Result<impl Stream<Item = Result<proto::ListenResponse, Status>> + Send + 'static, Status> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(run(shared, requests, tx));
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|message| (Ok(message), rx))
    }))
}

/// What a target watches.
enum Watch {
    Documents(Vec<DocPath>),
    Query { parent: DocPath, query: Box<Query> },
}

struct Target {
    database: String,
    watch: Watch,
    /// Update time of every document the client holds for this target.
    known: HashMap<DocPath, Timestamp>,
}

/// The client went away.
struct Gone;

struct Listener {
    shared: Arc<Shared>,
    targets: BTreeMap<i32, Target>,
    tx: mpsc::Sender<proto::ListenResponse>,
    /// When the stream last said something (the heartbeat counts from it).
    last_sent: tokio::time::Instant,
}

async fn run(
    shared: Arc<Shared>,
    mut requests: Streaming<proto::ListenRequest>,
    tx: mpsc::Sender<proto::ListenResponse>,
) {
    let mut feed = shared.lock().feed.subscribe();
    let heartbeat = shared.heartbeat;
    let mut listener = Listener {
        shared,
        targets: BTreeMap::new(),
        tx,
        last_sent: tokio::time::Instant::now(),
    };
    loop {
        let beat = listener.last_sent + heartbeat;
        let idle = !heartbeat.is_zero() && !listener.targets.is_empty();
        let outcome = tokio::select! {
            () = tokio::time::sleep_until(beat), if idle => listener.heartbeat().await,
            message = requests.message() => match message {
                Ok(Some(request)) => listener.on_request(request).await,
                // Half-closed, reset or broken: the listen is over.
                Ok(None) | Err(_) => Err(Gone),
            },
            changed = feed.changed() => match changed {
                Ok(()) => listener.refresh().await,
                Err(_) => Err(Gone),
            },
        };
        if outcome.is_err() {
            break;
        }
    }
}

impl Listener {
    async fn on_request(&mut self, request: proto::ListenRequest) -> Result<(), Gone> {
        match request.target_change {
            Some(Request::AddTarget(target)) => self.add(&request.database, target).await,
            Some(Request::RemoveTarget(id)) => {
                self.targets.remove(&id);
                self.send(vec![target_change(
                    TargetChangeType::Remove,
                    vec![id],
                    None,
                )])
                .await
            }
            None => Ok(()),
        }
    }

    async fn add(&mut self, database: &str, target: proto::Target) -> Result<(), Gone> {
        // Id 0: Firestore assigns one and names it in the ADD.
        let id = match target.target_id {
            0 => self.targets.keys().next_back().map_or(1, |last| last + 1),
            id => id,
        };
        let messages = match self.watch(database, &target) {
            Ok(mut watched) => {
                let (mut messages, read_time) = {
                    let state = self.shared.lock();
                    let read_time = self.shared.clock.now();
                    (diff(&state, id, &mut watched, read_time), read_time)
                };
                messages.insert(0, target_change(TargetChangeType::Add, vec![id], None));
                messages.push(target_change(
                    TargetChangeType::Current,
                    vec![id],
                    Some(read_time),
                ));
                messages.push(target_change(
                    TargetChangeType::NoChange,
                    Vec::new(),
                    Some(read_time),
                ));
                self.targets.insert(id, watched);
                messages
            }
            Err(error) => {
                let refused = status(&error);
                let mut change = target_change(TargetChangeType::Remove, vec![id], None);
                if let Some(ResponseType::TargetChange(change)) = &mut change.response_type {
                    change.cause = Some(rpc::Status {
                        code: refused.code() as i32,
                        message: refused.message().to_owned(),
                        details: Vec::new(),
                    });
                }
                vec![change]
            }
        };
        self.send(messages).await
    }

    /// Parse a target and what its client already holds (from its resume point).
    fn watch(&self, database: &str, target: &proto::Target) -> Result<Target, EmulatorError> {
        use proto::target::query_target::QueryType;
        use proto::target::{ResumeType, TargetType};
        let watch = match &target.target_type {
            Some(TargetType::Documents(documents)) => Watch::Documents(
                documents
                    .documents
                    .iter()
                    .map(|name| parse_document_name(database, name))
                    .collect::<Result<_, _>>()?,
            ),
            Some(TargetType::Query(query)) => {
                let (parent_database, parent) = parent_name(&query.parent)?;
                if parent_database != database {
                    return Err(EmulatorError::InvalidArgument(
                        "the query's parent is in another database".into(),
                    ));
                }
                let Some(QueryType::StructuredQuery(structured)) = &query.query_type else {
                    return Err(EmulatorError::InvalidArgument(
                        "a query target needs a structured query".into(),
                    ));
                };
                let query = Query::parse(&to_rest::structured_query(structured))?;
                Watch::Query {
                    parent,
                    query: Box::new(query),
                }
            }
            None => {
                return Err(EmulatorError::InvalidArgument(
                    "a target needs documents or a query".into(),
                ));
            }
        };
        let resume_at = match &target.resume_type {
            Some(ResumeType::ResumeToken(token)) => Some(decode_token(token)?),
            Some(ResumeType::ReadTime(t)) => Some(Timestamp {
                seconds: t.seconds,
                nanos: u32::try_from(t.nanos).map_err(|_| {
                    EmulatorError::InvalidArgument("read_time is not a timestamp".into())
                })?,
            }),
            None => None,
        };
        let mut watched = Target {
            database: database.to_owned(),
            watch,
            known: HashMap::new(),
        };
        if let Some(at) = resume_at {
            let state = self.shared.lock();
            watched.known = matching(&state, &watched, Some(at))
                .into_iter()
                .map(|(path, doc)| (path, doc.update_time))
                .collect();
        }
        Ok(watched)
    }

    /// Look at every target again after a stored change.
    async fn refresh(&mut self) -> Result<(), Gone> {
        let messages = {
            let state = self.shared.lock();
            let read_time = self.shared.clock.now();
            let mut messages = Vec::new();
            for (id, target) in &mut self.targets {
                messages.extend(diff(&state, *id, target, read_time));
            }
            if !messages.is_empty() {
                messages.push(target_change(
                    TargetChangeType::NoChange,
                    Vec::new(),
                    Some(read_time),
                ));
            }
            messages
        };
        self.send(messages).await
    }

    /// Firestore's heartbeat on an idle stream: a global `NO_CHANGE` with a
    /// fresh read time and resume token, which tells the client its
    /// targets are still current (and lets it watch for a silent stream).
    async fn heartbeat(&mut self) -> Result<(), Gone> {
        let read_time = self.shared.clock.now();
        self.send(vec![target_change(
            TargetChangeType::NoChange,
            Vec::new(),
            Some(read_time),
        )])
        .await
    }

    async fn send(&mut self, messages: Vec<proto::ListenResponse>) -> Result<(), Gone> {
        for message in messages {
            self.tx.send(message).await.map_err(|_| Gone)?;
            self.last_sent = tokio::time::Instant::now();
        }
        Ok(())
    }
}

/// The documents a target matches at `at` (now, when `None`).
fn matching(state: &State, target: &Target, at: Option<Timestamp>) -> BTreeMap<DocPath, Doc> {
    let Some(documents) = state.snapshot(&target.database, at) else {
        return BTreeMap::new();
    };
    match &target.watch {
        Watch::Documents(paths) => paths
            .iter()
            .filter_map(|path| Some((path.clone(), documents.get(path)?.clone())))
            .collect(),
        Watch::Query { parent, query } => query
            .run(&target.database, parent, &documents)
            .documents
            .into_iter()
            .map(|(path, doc)| (path.clone(), doc.clone()))
            .collect(),
    }
}

/// What the client of target `id` must hear to hold the target's documents now.
fn diff(
    state: &State,
    id: i32,
    target: &mut Target,
    read_time: Timestamp,
) -> Vec<proto::ListenResponse> {
    let now = matching(state, target, None);
    let mut messages = Vec::new();
    for (path, doc) in &now {
        if target.known.get(path) != Some(&doc.update_time) {
            messages.push(response(ResponseType::DocumentChange(
                proto::DocumentChange {
                    document: Some(stored(&target.database, path, doc)),
                    target_ids: vec![id],
                    removed_target_ids: Vec::new(),
                },
            )));
        }
    }
    for path in target.known.keys().filter(|path| !now.contains_key(*path)) {
        let document = document_name(&target.database, path);
        let removed_target_ids = vec![id];
        let read_time = Some(timestamp(read_time));
        // Still stored: it only left the query.
        messages.push(response(if state.get(&target.database, path).is_some() {
            ResponseType::DocumentRemove(proto::DocumentRemove {
                document,
                removed_target_ids,
                read_time,
            })
        } else {
            ResponseType::DocumentDelete(proto::DocumentDelete {
                document,
                removed_target_ids,
                read_time,
            })
        }));
    }
    target.known = now
        .into_iter()
        .map(|(path, doc)| (path, doc.update_time))
        .collect();
    messages
}

fn response(kind: ResponseType) -> proto::ListenResponse {
    proto::ListenResponse {
        response_type: Some(kind),
    }
}

/// A target change; one with a read time carries it as its resume token too.
fn target_change(
    kind: TargetChangeType,
    target_ids: Vec<i32>,
    read_time: Option<Timestamp>,
) -> proto::ListenResponse {
    response(ResponseType::TargetChange(proto::TargetChange {
        target_change_type: kind as i32,
        target_ids,
        cause: None,
        resume_token: read_time.map(encode_token).unwrap_or_default(),
        read_time: read_time.map(timestamp),
    }))
}

/// A resume token is the read time it was sent with: 8 bytes of seconds
/// and 4 of nanoseconds, big-endian.
fn encode_token(at: Timestamp) -> Vec<u8> {
    let mut token = at.seconds.to_be_bytes().to_vec();
    token.extend_from_slice(&at.nanos.to_be_bytes());
    token
}

fn decode_token(token: &[u8]) -> Result<Timestamp, EmulatorError> {
    let invalid = || EmulatorError::InvalidArgument("the resume token is not one of ours".into());
    let (seconds, nanos) = token.split_at_checked(8).ok_or_else(invalid)?;
    let seconds = i64::from_be_bytes(seconds.try_into().map_err(|_| invalid())?);
    let nanos = u32::from_be_bytes(nanos.try_into().map_err(|_| invalid())?);
    if nanos >= 1_000_000_000 {
        return Err(invalid());
    }
    Ok(Timestamp { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Emulator;
    use crate::emulator::write::{Precondition, Write, commit};
    use serde_json::json;

    const DB: &str = "projects/p/databases/d";

    fn put(emulator: &Emulator, path: &str, n: i64) {
        emulator
            .put(DB, path, json!({ "n": { "integerValue": n.to_string() } }))
            .unwrap();
    }

    fn kinds(messages: &[proto::ListenResponse]) -> Vec<(&'static str, String)> {
        messages
            .iter()
            .map(|m| match &m.response_type {
                Some(ResponseType::DocumentChange(c)) => {
                    ("change", c.document.as_ref().unwrap().name.clone())
                }
                Some(ResponseType::DocumentRemove(r)) => ("remove", r.document.clone()),
                Some(ResponseType::DocumentDelete(d)) => ("delete", d.document.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn name(path: &str) -> String {
        format!("{DB}/documents/{path}")
    }

    #[test]
    fn a_query_target_hears_joins_changes_leaves_and_deletes() {
        let emulator = Emulator::new();
        put(&emulator, "c/a", 7);
        put(&emulator, "c/b", 1);
        let query = Query::parse(&json!({
            "from": [{"collectionId": "c"}],
            "where": {"fieldFilter": {"field": {"fieldPath": "n"}, "op": "GREATER_THAN_OR_EQUAL", "value": {"integerValue": "5"}}},
        }))
        .unwrap();
        let mut target = Target {
            database: DB.into(),
            watch: Watch::Query {
                parent: Vec::new(),
                query: Box::new(query),
            },
            known: HashMap::new(),
        };
        let shared = &emulator.shared;
        let at = || shared.clock.now();
        let first = diff(&shared.lock(), 1, &mut target, at());
        assert_eq!(kinds(&first), [("change", name("c/a"))]);
        assert!(diff(&shared.lock(), 1, &mut target, at()).is_empty());

        put(&emulator, "c/b", 9);
        put(&emulator, "c/a", 0);
        let now = emulator.shared.clock.now();
        commit(
            &mut shared.lock(),
            DB,
            &[Write::delete(
                vec!["c".into(), "b".into()],
                Precondition::None,
            )],
            now,
        )
        .unwrap();
        put(&emulator, "c/z", 5);
        let later = diff(&shared.lock(), 1, &mut target, at());
        // b joined and was deleted between two looks: the client never held it.
        assert_eq!(
            kinds(&later),
            [("change", name("c/z")), ("remove", name("c/a"))]
        );
        commit(
            &mut shared.lock(),
            DB,
            &[Write::delete(
                vec!["c".into(), "z".into()],
                Precondition::None,
            )],
            at(),
        )
        .unwrap();
        assert_eq!(
            kinds(&diff(&shared.lock(), 1, &mut target, at())),
            [("delete", name("c/z"))]
        );
    }

    #[test]
    fn a_resumed_target_hears_only_what_changed_since_its_token() {
        let emulator = Emulator::new();
        put(&emulator, "c/a", 1);
        put(&emulator, "c/b", 2);
        let token = encode_token(emulator.shared.clock.now());
        put(&emulator, "c/b", 3);
        put(&emulator, "c/new", 4);
        let (tx, _rx) = mpsc::channel(1);
        let listener = Listener {
            shared: Arc::clone(&emulator.shared),
            targets: BTreeMap::new(),
            tx,
            last_sent: tokio::time::Instant::now(),
        };
        let target = proto::Target {
            target_id: 7,
            target_type: Some(proto::target::TargetType::Documents(
                proto::target::DocumentsTarget {
                    documents: vec![name("c/a"), name("c/b"), name("c/new")],
                },
            )),
            resume_type: Some(proto::target::ResumeType::ResumeToken(token)),
            ..Default::default()
        };
        let mut watched = listener.watch(DB, &target).unwrap();
        let now = emulator.shared.clock.now();
        let changes = diff(&emulator.shared.lock(), 7, &mut watched, now);
        assert_eq!(
            kinds(&changes),
            [("change", name("c/b")), ("change", name("c/new"))]
        );

        let stranger = proto::Target {
            resume_type: Some(proto::target::ResumeType::ResumeToken(b"x".to_vec())),
            ..target
        };
        assert!(listener.watch(DB, &stranger).is_err());
    }

    #[tokio::test]
    async fn a_target_added_with_id_zero_gets_its_id_in_the_add() {
        let emulator = Emulator::new();
        put(&emulator, "c/a", 1);
        let (tx, mut rx) = mpsc::channel(16);
        let mut listener = Listener {
            shared: Arc::clone(&emulator.shared),
            targets: BTreeMap::new(),
            tx,
            last_sent: tokio::time::Instant::now(),
        };
        let target = |id| proto::Target {
            target_id: id,
            target_type: Some(proto::target::TargetType::Documents(
                proto::target::DocumentsTarget {
                    documents: vec![name("c/a")],
                },
            )),
            ..Default::default()
        };
        for id in [5, 0] {
            assert!(listener.add(DB, target(id)).await.is_ok());
        }
        let mut added = Vec::new();
        while let Ok(message) = rx.try_recv() {
            if let Some(ResponseType::TargetChange(change)) = message.response_type
                && change.target_change_type == TargetChangeType::Add as i32
            {
                added.extend(change.target_ids);
            }
        }
        assert_eq!(added, [5, 6], "the next free id, named in the ADD");
        assert_eq!(listener.targets.keys().copied().collect::<Vec<_>>(), [5, 6]);
    }

    #[test]
    fn resume_tokens_round_trip_and_refuse_strangers() {
        let at = Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_000,
        };
        assert_eq!(decode_token(&encode_token(at)).unwrap(), at);
        assert!(decode_token(b"short").is_err());
        assert!(decode_token(&[0; 13]).is_err());
    }
}
