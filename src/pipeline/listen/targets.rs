//! The targets of one Listen stream, by the id Firestore knows them by. A
//! target added with id 0 gets its id from the upstream's `ADD`; since the
//! order of ids assigned to several id-0 targets is undefined, one is in
//! flight at a time and the rest are held. A target firegate revoked stays
//! known until the upstream acknowledges its removal, and until then every
//! upstream message is screened so nothing more of it reaches the client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::grpc::proto::{self, listen_response::ResponseType, target_change::TargetChangeType};
use crate::model::Operation;
use crate::model::mask::DocumentMasks;

/// The masks a target's documents are under (`None`: none).
pub(super) type Masks = Option<Arc<DocumentMasks>>;

/// An id-0 target judged and waiting to be forwarded.
pub(super) struct Held {
    pub(super) op: Arc<Operation>,
    pub(super) request: proto::ListenRequest,
}

/// The id-0 target forwarded, waiting for the `ADD` that names its id.
struct Awaiting {
    op: Arc<Operation>,
    masks: Masks,
    /// Revoked before its id was known: removed as soon as it is.
    revoked: bool,
}

#[derive(Default)]
pub(super) struct Targets {
    active: HashMap<i32, Arc<Operation>>,
    awaiting: Option<Awaiting>,
    held: VecDeque<Held>,
    revoked: HashSet<i32>,
    /// The masks of the active targets that have one.
    masks: HashMap<i32, Arc<DocumentMasks>>,
}

/// What one upstream message means for the stream.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Screened {
    /// The message for the client, when anything of it is left.
    pub(super) pass: Option<proto::ListenResponse>,
    /// Upstream ids to remove now (an id-0 target revoked before its id came).
    pub(super) remove: Vec<i32>,
    /// The id-0 target in flight is settled (added or refused): the next
    /// held one may go.
    pub(super) settled: bool,
}

impl Targets {
    /// Targets held in any state: active, in flight, held.
    pub(super) fn len(&self) -> usize {
        self.active.len() + self.held.len() + usize::from(self.awaiting.is_some())
    }

    /// An id the client may not add again yet: active, or revoked and not
    /// yet acknowledged upstream.
    pub(super) fn in_use(&self, id: i32) -> bool {
        self.active.contains_key(&id) || self.revoked.contains(&id)
    }

    /// A target with its own id, forwarded now.
    pub(super) fn add(&mut self, id: i32, op: Arc<Operation>, masks: Masks) {
        self.active.insert(id, op);
        self.set_masks(id, masks);
    }

    /// A target's masks, after it was judged (again).
    pub(super) fn set_masks(&mut self, id: i32, masks: Masks) {
        match masks {
            Some(m) => self.masks.insert(id, m),
            None => self.masks.remove(&id),
        };
    }

    /// The awaited id-0 target's masks, after it was judged again.
    pub(super) fn set_awaiting_masks(&mut self, masks: Masks) {
        if let Some(awaiting) = &mut self.awaiting {
            awaiting.masks = masks;
        }
    }

    /// Whether some target is masked: then every upstream message is
    /// decoded, and its document changes masked.
    pub(super) fn masking(&self) -> bool {
        !self.masks.is_empty() || self.awaiting.as_ref().is_some_and(|a| a.masks.is_some())
    }

    /// Mask a document change by the masks of every target it is for (a
    /// document shared by a masked and an unmasked target is masked: the
    /// client keeps one copy of it). Returns how many fields were removed.
    pub(super) fn mask(&self, message: &mut proto::ListenResponse) -> u64 {
        let Some(ResponseType::DocumentChange(change)) = &mut message.response_type else {
            return 0;
        };
        let Some(doc) = &mut change.document else {
            return 0;
        };
        let mut count = 0;
        let awaited = self.awaiting.as_ref().and_then(|a| a.masks.as_ref());
        for id in &change.target_ids {
            // An id not yet known is the id-0 target in flight's.
            let masks = match self.masks.get(id) {
                Some(masks) => Some(masks),
                None if !self.active.contains_key(id) => awaited,
                None => None,
            };
            if let Some(masks) = masks {
                count += crate::grpc::mask_document(doc, masks);
            }
        }
        count
    }

    /// An id-0 target: `Some(request)` to forward now, or `None` when it is
    /// held behind the one in flight.
    pub(super) fn add_unnumbered(
        &mut self,
        op: Arc<Operation>,
        masks: Masks,
        request: proto::ListenRequest,
    ) -> Option<proto::ListenRequest> {
        if self.awaiting.is_some() {
            self.held.push_back(Held { op, request });
            return None;
        }
        self.awaiting = Some(Awaiting {
            op,
            masks,
            revoked: false,
        });
        Some(request)
    }

    /// The next held id-0 target, once the one in flight is settled.
    pub(super) fn next_held(&mut self) -> Option<Held> {
        if self.awaiting.is_some() {
            return None;
        }
        self.held.pop_front()
    }

    /// Put a held target in flight (after it was judged again).
    pub(super) fn send_held(&mut self, held: Held, masks: Masks) -> proto::ListenRequest {
        self.awaiting = Some(Awaiting {
            op: held.op,
            masks,
            revoked: false,
        });
        held.request
    }

    /// The client removed `id` itself.
    pub(super) fn remove(&mut self, id: i32) {
        self.active.remove(&id);
        self.masks.remove(&id);
    }

    /// Every active target, by id, in order.
    pub(super) fn active(&self) -> Vec<(i32, Arc<Operation>)> {
        let mut all: Vec<_> = self
            .active
            .iter()
            .map(|(id, op)| (*id, Arc::clone(op)))
            .collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Revoke an active target: nothing more of it passes until the
    /// upstream acknowledges its removal.
    pub(super) fn revoke(&mut self, id: i32) {
        self.active.remove(&id);
        self.masks.remove(&id);
        self.revoked.insert(id);
    }

    /// The id-0 target in flight, to re-judge.
    pub(super) fn awaiting(&self) -> Option<Arc<Operation>> {
        self.awaiting
            .as_ref()
            .filter(|a| !a.revoked)
            .map(|a| Arc::clone(&a.op))
    }

    /// Revoke the id-0 target in flight: removed once its id comes.
    pub(super) fn revoke_awaiting(&mut self) {
        if let Some(awaiting) = &mut self.awaiting {
            awaiting.revoked = true;
        }
    }

    /// The held targets, taken out to be judged again.
    pub(super) fn take_held(&mut self) -> VecDeque<Held> {
        std::mem::take(&mut self.held)
    }

    pub(super) fn put_back_held(&mut self, held: VecDeque<Held>) {
        self.held = held;
    }

    /// Whether upstream messages must be decoded and screened: only while
    /// an id is awaited or a revocation is unacknowledged.
    pub(super) fn screening(&self) -> bool {
        self.awaiting.is_some() || !self.revoked.is_empty()
    }

    /// One upstream message: an `ADD` naming the awaited id settles it; a
    /// `REMOVE` acknowledges revocations; what concerns only revoked
    /// targets is dropped, revoked ids are struck from the rest.
    pub(super) fn screen(&mut self, mut message: proto::ListenResponse) -> Screened {
        let mut screened = Screened::default();
        let keep = match &mut message.response_type {
            Some(ResponseType::TargetChange(change)) => self.target_change(change, &mut screened),
            Some(ResponseType::DocumentChange(change)) => {
                let before = change.target_ids.len() + change.removed_target_ids.len();
                self.strike(&mut change.target_ids);
                self.strike(&mut change.removed_target_ids);
                before == 0 || change.target_ids.len() + change.removed_target_ids.len() > 0
            }
            Some(ResponseType::DocumentDelete(change)) => {
                self.strike_all(&mut change.removed_target_ids)
            }
            Some(ResponseType::DocumentRemove(change)) => {
                self.strike_all(&mut change.removed_target_ids)
            }
            Some(ResponseType::Filter(filter)) => !self.revoked.contains(&filter.target_id),
            None => true,
        };
        screened.pass = keep.then_some(message);
        screened
    }

    fn target_change(&mut self, change: &mut proto::TargetChange, screened: &mut Screened) -> bool {
        let kind = TargetChangeType::try_from(change.target_change_type);
        match kind {
            Ok(TargetChangeType::Add) => {
                let fresh = change
                    .target_ids
                    .iter()
                    .copied()
                    .find(|id| !self.active.contains_key(id) && !self.revoked.contains(id));
                if let (Some(id), Some(awaiting)) = (fresh, self.awaiting.take()) {
                    screened.settled = true;
                    if awaiting.revoked {
                        self.revoked.insert(id);
                        screened.remove.push(id);
                    } else {
                        self.active.insert(id, awaiting.op);
                        self.set_masks(id, awaiting.masks);
                    }
                }
            }
            Ok(TargetChangeType::Remove) => {
                if change.target_ids.contains(&0) && self.awaiting.take().is_some() {
                    // The upstream refused the id-0 target in flight.
                    screened.settled = true;
                }
                let mut acknowledged = false;
                change.target_ids.retain(|id| {
                    self.active.remove(id);
                    self.masks.remove(id);
                    let revoked = self.revoked.remove(id);
                    acknowledged |= revoked;
                    !revoked
                });
                // Told to the client when firegate revoked it.
                return !(acknowledged && change.target_ids.is_empty());
            }
            _ => {}
        }
        self.strike_all(&mut change.target_ids)
    }

    /// Strike revoked ids; `false` when that empties a list that named some.
    fn strike_all(&self, ids: &mut Vec<i32>) -> bool {
        let before = ids.len();
        self.strike(ids);
        before == 0 || !ids.is_empty()
    }

    fn strike(&self, ids: &mut Vec<i32>) {
        if !self.revoked.is_empty() {
            ids.retain(|id| !self.revoked.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Database, Method};

    fn op() -> Arc<Operation> {
        Arc::new(Operation::new(
            Database::new("p", "(default)"),
            Method::Listen,
            Vec::new(),
        ))
    }

    fn change(kind: TargetChangeType, ids: &[i32]) -> proto::ListenResponse {
        proto::ListenResponse {
            response_type: Some(ResponseType::TargetChange(proto::TargetChange {
                target_change_type: kind as i32,
                target_ids: ids.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn document(ids: &[i32]) -> proto::ListenResponse {
        proto::ListenResponse {
            response_type: Some(ResponseType::DocumentChange(proto::DocumentChange {
                document: None,
                target_ids: ids.to_vec(),
                removed_target_ids: Vec::new(),
            })),
        }
    }

    #[test]
    fn an_unnumbered_target_takes_the_id_its_add_names_and_the_next_waits() {
        let mut t = Targets::default();
        assert!(t.add_unnumbered(op(), None, Default::default()).is_some());
        assert!(
            t.add_unnumbered(op(), None, Default::default()).is_none(),
            "held"
        );
        assert!(t.next_held().is_none(), "one in flight at a time");
        let add = t.screen(change(TargetChangeType::Add, &[41]));
        assert!(add.settled && add.pass.is_some());
        assert!(t.in_use(41));
        let held = t.next_held().expect("the next one may go");
        t.send_held(held, None);
        assert!(t.screening());
        t.screen(change(TargetChangeType::Add, &[42]));
        assert_eq!(
            t.active().iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [41, 42]
        );
        assert!(!t.screening(), "nothing awaited, nothing revoked");
    }

    #[test]
    fn an_unnumbered_target_revoked_in_flight_is_removed_when_its_id_comes() {
        let mut t = Targets::default();
        t.add_unnumbered(op(), None, Default::default());
        t.revoke_awaiting();
        assert!(t.awaiting().is_none());
        let add = t.screen(change(TargetChangeType::Add, &[7]));
        assert_eq!(add.remove, [7]);
        assert_eq!(add.pass, None, "the client never hears of it");
        assert_eq!(t.screen(document(&[7])).pass, None);
        let ack = t.screen(change(TargetChangeType::Remove, &[7]));
        assert_eq!(ack.pass, None, "the client was told already");
        assert!(!t.in_use(7) && !t.screening());
    }

    #[test]
    fn a_revoked_target_gets_nothing_more_until_the_upstream_acknowledges() {
        let mut t = Targets::default();
        t.add(1, op(), None);
        t.add(2, op(), None);
        t.revoke(1);
        assert!(
            t.in_use(1),
            "not to be added again before the acknowledgement"
        );
        assert_eq!(t.screen(document(&[1])).pass, None);
        let both = t
            .screen(document(&[1, 2]))
            .pass
            .expect("still for target 2");
        assert_eq!(both, document(&[2]));
        assert_eq!(t.screen(change(TargetChangeType::Current, &[1])).pass, None);
        assert!(
            t.screen(change(TargetChangeType::NoChange, &[]))
                .pass
                .is_some()
        );
        t.screen(change(TargetChangeType::Remove, &[1]));
        assert!(!t.in_use(1) && !t.screening());
        assert_eq!(t.screen(document(&[1])).pass, Some(document(&[1])));
    }
}
