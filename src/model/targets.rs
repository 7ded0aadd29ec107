//! The target rules both wires share: what a write without a precondition
//! needs, what a query selector covers, and Firestore's bounds on them.

use super::data::Written;
use super::path::validate_id;
use super::{Access, ClassifyError, Scope, Segments, Target};

/// Firestore's bound on `findNearest.limit` (query.proto: "a positive
/// integer of no more than 1000").
pub const MAX_NEAREST_NEIGHBORS: i64 = 1000;

/// A write without precondition is an upsert: it needs both create and
/// update; `must_exist` is what a precondition said.
pub fn upsert(targets: &mut Vec<Target>, scope: Scope, must_exist: Option<bool>) {
    let mut push = |scope, access| targets.push(Target { scope, access });
    match must_exist {
        Some(true) => push(scope, Access::Update),
        Some(false) => push(scope, Access::Create),
        None => {
            push(scope.clone(), Access::Create);
            push(scope, Access::Update);
        }
    }
}

/// Room for what `count` writes make, at most: up to two targets each (an
/// upsert needs create and update) and one write each, reserved once
/// rather than grown a doubling at a time; capped, so that a body of many
/// tiny writes reserves no more than it could fill before it is refused.
pub fn reserve_for_writes(targets: &mut Vec<Target>, writes: &mut Vec<Written>, count: usize) {
    const MOST: usize = 1024;
    let count = count.min(MOST);
    targets.reserve(2 * count);
    writes.reserve(count);
}

/// One `structuredQuery.from[]` selector below `parent` → its scope.
pub fn selector_scope(
    parent: &Segments,
    collection: String,
    all_descendants: bool,
) -> Result<Scope, ClassifyError> {
    let parent = parent.clone();
    match (collection.is_empty(), all_descendants) {
        (true, true) => Ok(Scope::Descendants { parent }),
        (true, false) => Err(ClassifyError::InvalidQuery("selector without a collection")),
        (false, descendants) => {
            validate_id(&collection)?;
            Ok(if descendants {
                Scope::CollectionGroup { parent, collection }
            } else {
                Scope::Collection { parent, collection }
            })
        }
    }
}

/// `findNearest.limit` as Firestore bounds it.
pub fn nearest_limit_ok(limit: i64) -> bool {
    (1..=MAX_NEAREST_NEIGHBORS).contains(&limit)
}
