//! Per-principal fairness: how many requests one identity may have in
//! flight, so that a single token — even one the policy grants nothing —
//! cannot hold every connection's request slot (slow bodies, long streams).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::authn::Principal;

/// Requests in flight per principal (issuer and subject), capped.
pub struct InFlight {
    limit: usize,
    counts: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One request's place under its principal's cap; released on drop, which
/// is when the response body ends (or the client leaves).
pub struct Slot {
    key: Arc<str>,
    counts: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl InFlight {
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            limit,
            counts: Arc::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for `principal`, or `None` when it already has `limit`
    /// requests in flight.
    pub fn admit(&self, principal: &Principal) -> Option<Slot> {
        // The identity, not the fingerprint: a caller whose groups differ
        // between tokens is still one caller.
        let key = Arc::clone(principal.identity());
        let mut counts = self.counts.lock().ok()?;
        let count = counts.entry(Arc::clone(&key)).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            key,
            counts: Arc::clone(&self.counts),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some(count) = counts.get_mut(&self.key)
        {
            *count -= 1;
            if *count == 0 {
                // Idle principals take no memory.
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str) -> Principal {
        Principal::new(
            "https://idp.example".into(),
            subject.into(),
            None,
            Vec::new(),
            serde_json::Map::new(),
        )
    }

    #[test]
    fn one_principal_is_capped_and_others_are_not() {
        let in_flight = InFlight::new(2);
        let (alice, bob) = (principal("alice"), principal("bob"));
        let first = in_flight.admit(&alice).expect("first");
        let _second = in_flight.admit(&alice).expect("second");
        assert!(in_flight.admit(&alice).is_none(), "third admitted");
        assert!(in_flight.admit(&bob).is_some(), "another principal refused");
        drop(first);
        assert!(in_flight.admit(&alice).is_some(), "slot not released");
    }

    #[test]
    fn released_slots_leave_no_entry() {
        let in_flight = InFlight::new(1);
        drop(in_flight.admit(&principal("alice")));
        assert!(in_flight.counts.lock().unwrap().is_empty());
    }
}
