//! The bounded decision cache: per-target verdicts keyed by table epoch,
//! principal fingerprint, database, RPC and target.

use std::sync::Arc;

use moka::sync::Cache;

use super::decide::{Request, Verdict};
use super::table::Table;
use crate::authn::Fingerprint;
use crate::firestore::{Database, Method, Target};

/// Everything a verdict depends on. The epoch makes a reload invalidate
/// every older entry even before they are evicted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    epoch: u64,
    principal: Fingerprint,
    database: Database,
    method: Method,
    target: Target,
}

pub struct DecisionCache {
    cache: Cache<Key, Arc<Verdict>>,
}

/// Whether a verdict came from the cache, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl DecisionCache {
    pub fn new(capacity: u64) -> DecisionCache {
        DecisionCache {
            cache: Cache::builder().max_capacity(capacity).build(),
        }
    }

    /// The cached verdict, or a fresh one (stored unless it read the clock).
    pub fn decide(&self, table: &Table, req: &Request, target: &Target) -> (Arc<Verdict>, Lookup) {
        let key = Key {
            epoch: table.epoch,
            principal: *req.principal.fingerprint(),
            database: req.database.clone(),
            method: req.method,
            target: target.clone(),
        };
        if let Some(hit) = self.cache.get(&key) {
            return (hit, Lookup::Hit);
        }
        let verdict = Arc::new(table.decide_target(req, target));
        if verdict.cacheable {
            self.cache.insert(key, Arc::clone(&verdict));
        }
        (verdict, Lookup::Miss)
    }

    /// Drop every entry (after a reload; the epoch already hides them).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}
