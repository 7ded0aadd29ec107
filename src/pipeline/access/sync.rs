//! Keeping this replica's copy of the store current: a Listen stream on
//! the store's collection applies each change as Firestore announces it; a
//! watchdog reopens a stream silent for longer than `access.watchdog`
//! (Firestore's heartbeat, a global `NO_CHANGE`, keeps a healthy idle
//! stream talking); a full read every `access.resync_interval` repairs
//! whatever a stream missed. Expiry never waits for any of it: it is
//! evaluated from the clock at every decision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use http::HeaderMap;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use prost::Message as _;
use tokio::sync::mpsc;

use super::{AccessState, Pipeline};
use crate::access::feed::{self, Change, Feed, Snapshot, Step};
use crate::access::store::{self, StoreError, Versioned, Written};
use crate::access::{Actor, Status, unix_ms};
use crate::body::{self, BoxError};
use crate::upstream::GrpcOutbound;
use crate::upstream::headers::Forwarding;

/// Expiries recorded per round (a backlog drains over rounds).
const EXPIRIES_PER_ROUND: usize = 100;
/// How often expiries are looked for in the local copy (and the age
/// gauge refreshed).
const EXPIRY_ROUND: Duration = Duration::from_secs(1);
/// Largest message read from the stream.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Longest wait before reopening a stream (or reading again) that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a stream ended.
#[derive(Debug)]
enum Ended {
    /// Nothing for longer than `access.watchdog`.
    Silent,
    /// Closed or failed, after `heard` consistent points.
    Closed { heard: usize, why: String },
}

impl AccessState {
    /// Replace the copy with `all` (a whole collection read at some
    /// instant), except what is known newer: a version kept is newer than
    /// the one read, and a request missing from `all` is dropped only if it
    /// was known when the read began (`before`), not if it came since.
    fn replace(&self, all: Vec<Versioned>, before: &HashSet<String>) {
        let mut map = self.requests.write().unwrap_or_else(|e| e.into_inner());
        let mut next: HashMap<String, Versioned> =
            all.into_iter().map(|v| (v.request.id.clone(), v)).collect();
        for (id, known) in map.drain() {
            match next.get(&id) {
                Some(read) if read.stamp() >= known.stamp() => {}
                Some(_) => {
                    next.insert(id, known);
                }
                None if before.contains(&id) => {}
                None => {
                    next.insert(id, known);
                }
            }
        }
        *map = next;
    }

    /// Apply one version, unless the copy already has a newer one.
    pub(super) fn put(&self, v: Versioned) {
        let mut map = self.requests.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&v.request.id) {
            Some(known) if known.stamp() > v.stamp() => {}
            _ => {
                map.insert(v.request.id.clone(), v);
            }
        }
    }

    fn apply(&self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Put(v) => self.put(*v),
                Change::Delete(id) => {
                    self.requests
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                }
            }
        }
    }

    fn ids(&self) -> HashSet<String> {
        self.requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The copy is current as of now.
    fn mark_current(&self) {
        *self.synced.write().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.age.set(0);
    }
}

impl Pipeline {
    /// Keep the local copy and the engine's grants current until the
    /// process ends: the Listen stream, the periodic full read, and the
    /// round that records expiries. A store that cannot be reached keeps
    /// the last copy: its grants still end at their own expiry, which the
    /// engine checks at every decision.
    pub async fn sync_access(self: Arc<Self>) {
        let Some(access) = self.access.as_ref() else {
            return;
        };
        tokio::join!(
            self.listen_store(access),
            self.resync_store(access),
            self.expiry_rounds(access)
        );
    }

    /// Open the Listen stream again and again: after a failure with a
    /// growing pause, at once after a silent one.
    async fn listen_store(&self, access: &AccessState) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.listen_once(access).await {
                Ended::Silent => {
                    access.silent_reopens.inc();
                    tracing::warn!(
                        watchdog = ?access.settings.watchdog,
                        "access store stream silent; reopening it"
                    );
                    continue;
                }
                Ended::Closed { heard, why } => {
                    if heard > 0 {
                        backoff = Duration::from_millis(100);
                    }
                    tracing::debug!(reason = %why, "access store stream ended");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One Listen stream, until it ends or falls silent.
    async fn listen_once(&self, access: &AccessState) -> Ended {
        let closed = |heard, why: &str| Ended::Closed {
            heard,
            why: why.to_string(),
        };
        let Ok(token) = self.credentials.access_token(None).await else {
            return closed(0, "no token for the store");
        };
        let before = access.ids();
        // The request side stays open (and the stream with it) while `tx`
        // lives: it is dropped only when this stream is done with.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let _ = tx
            .send(crate::grpc::frame::encode(&feed::listen_request(
                &access.settings.store,
            )))
            .await;
        let request = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, BoxError>(Frame::data(bytes)), rx))
        }));
        let database = access.settings.store.database.to_string();
        let headers = HeaderMap::new();
        let opened = self.grpc_upstream.open_stream(GrpcOutbound {
            path: crate::grpc::LISTEN_PATH,
            client_headers: &headers,
            forwarding: Forwarding {
                remote: std::net::IpAddr::from([127, 0, 0, 1]),
                trusted: &[],
                proto: "https",
                request_id: "access-store",
                database: &database,
                routing: None,
            },
            timeout: None,
            token: &token,
            body: body::boxed(request),
        });
        let watchdog = access.settings.watchdog;
        let response = match tokio::time::timeout(watchdog, opened).await {
            Err(_) => return Ended::Silent,
            Ok(Err(e)) => return closed(0, e.reason()),
            Ok(Ok(r)) => r,
        };
        if !response.status().is_success() || response.headers().contains_key("grpc-status") {
            return closed(0, "the store refused the Listen call");
        }
        let mut body = response.into_body();
        let mut deframer = crate::grpc::frame::Deframer::new(MAX_MESSAGE);
        let mut feed = Feed::default();
        let mut heard = 0;
        loop {
            let frame = match tokio::time::timeout(watchdog, body.frame()).await {
                Err(_) => return Ended::Silent,
                Ok(None) => return closed(heard, "closed"),
                Ok(Some(Err(_))) => return closed(heard, "broken"),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                return closed(heard, "trailers");
            };
            deframer.push(&data);
            loop {
                let message = match deframer.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) => return closed(heard, "malformed frame"),
                };
                let Ok(message) = proto::ListenResponse::decode(message) else {
                    return closed(heard, "undecodable message");
                };
                match feed.apply(message) {
                    Step::Pending => {}
                    Step::Removed(cause) => return closed(heard, &cause),
                    Step::Snapshot(snapshot) => {
                        match snapshot {
                            Snapshot::Whole(all) => access.replace(all, &before),
                            Snapshot::Changes(changes) if changes.is_empty() => {}
                            Snapshot::Changes(changes) => access.apply(changes),
                        }
                        heard += 1;
                        access.mark_current();
                        self.install_grants(access);
                    }
                }
            }
        }
    }

    /// Read the store whole every `access.resync_interval` (at once on
    /// start; sooner again after a failure).
    async fn resync_store(&self, access: &AccessState) {
        let mut failing = false;
        let mut backoff = Duration::from_millis(200);
        loop {
            let before = access.ids();
            let pause = match self.read_store().await {
                Ok(all) => {
                    if failing {
                        tracing::info!("access store readable again");
                    }
                    failing = false;
                    backoff = Duration::from_millis(200);
                    access.replace(all, &before);
                    access.mark_current();
                    self.install_grants(access);
                    access.settings.resync_interval
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(error = %err, "access store unreadable; known grants keep working until they expire");
                    }
                    failing = true;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    backoff.min(access.settings.resync_interval)
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    async fn read_store(&self) -> Result<Vec<Versioned>, StoreError> {
        let access = self.access.as_ref().ok_or(StoreError("off".into()))?;
        let token = self
            .credentials
            .access_token(None)
            .await
            .map_err(|e| StoreError(e.reason().into()))?;
        store::list(&self.upstream, &token, &access.settings.store).await
    }

    /// Every second: refresh the age gauge, hand the engine the grants
    /// still active, and record the expiries due.
    async fn expiry_rounds(&self, access: &AccessState) {
        let mut tick = tokio::time::interval(EXPIRY_ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            access
                .age
                .set(access.age().map_or(-1, |a| a.as_secs() as i64));
            self.install_grants(access);
            self.record_expiries(access).await;
        }
    }

    /// Record each request of the local copy that has expired (pending past
    /// `request_ttl`, or active past its end) and has no `expired`
    /// transition yet, in a transaction that reads it again: the replica
    /// whose commit lands sends the `expired` event, once per request; a
    /// replica whose commit is aborted (or that finds it recorded) sees
    /// the transition arrive on its stream. Expiry itself never waits for this: it is evaluated
    /// from the clock at every decision.
    async fn record_expiries(&self, access: &AccessState) {
        let now = unix_ms(SystemTime::now());
        let due: Vec<Versioned> = access
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|v| v.request.status_at(now) == Status::Expired && !v.request.expiry_recorded())
            .take(EXPIRIES_PER_ROUND)
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        let Ok(token) = self.store_token().await else {
            return;
        };
        let store = &access.settings.store;
        for known in due {
            let Ok(txn) = store::begin(&self.upstream, &token, store).await else {
                return;
            };
            // What is stored decides, read in the transaction: recorded by
            // another replica meanwhile, or no longer expired, nothing to do.
            let stored = store::get_in(&self.upstream, &token, store, &known.request.id, &txn)
                .await
                .ok()
                .flatten()
                .map(|v| v.request)
                .filter(|r| r.status_at(now) == Status::Expired && !r.expiry_recorded());
            let Some(mut request) = stored else {
                store::rollback(&self.upstream, &token, store, txn).await;
                continue;
            };
            request.record_expiry();
            let written = store::commit_in(&self.upstream, &token, store, &request, txn).await;
            match written {
                Ok(Written::Ok) => {
                    tracing::info!(request = %request.id, "access request expired");
                    self.notify(access, "expired", &request, &Actor::firegate(), now);
                    self.remember(access, &token, &request.id).await;
                }
                // Changed meanwhile (recorded by another replica, or
                // reviewed): judged again from what the stream brings.
                Ok(Written::Conflict) => {}
                Err(_) => return,
            }
        }
    }

    /// The active requests of the local copy, as the engine's grants.
    pub(super) fn install_grants(&self, access: &AccessState) {
        let table = self.policy.table();
        let now = unix_ms(SystemTime::now());
        let grants = access
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|v| v.request.status_at(now) == Status::Active)
            .filter_map(|v| v.request.grant(&table))
            .collect();
        self.policy.set_grants(grants);
    }
}
