//! The bounded decision cache: per-target verdicts keyed by table epoch,
//! principal fingerprint, database, RPC and target, bounded by the bytes
//! its entries hold, with a per-request admission budget.
//!
//! A lookup hashes the key's parts where they lie (a per-process SipHash
//! key) and confirms the whole key stored with the entry: a hit copies
//! nothing, and two keys sharing a hash can only cost a miss, never lend
//! one the other's verdict.

use std::hash::BuildHasher;
use std::sync::Arc;

use moka::sync::Cache;

use super::CacheSettings;
use super::decide::{Request, Verdict};
use super::table::Table;
use crate::authn::Fingerprint;
use crate::model::{Database, Method, Scope, Target};

/// Everything a verdict depends on. The epoch makes a reload invalidate
/// every older entry even before they are evicted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    epoch: u64,
    /// The catalog index's generation (0: none loaded).
    catalog: u64,
    /// The generation of the principal's grants: a grant given or ended
    /// hides every verdict judged without it.
    grants: u64,
    principal: Fingerprint,
    database: Database,
    method: Method,
    target: Target,
}

/// The parts of a [`Key`] as one lookup holds them, borrowed.
#[derive(Hash)]
struct KeyRef<'a> {
    epoch: u64,
    catalog: u64,
    grants: u64,
    principal: &'a Fingerprint,
    database: &'a Database,
    method: Method,
    target: &'a Target,
}

impl KeyRef<'_> {
    fn is(&self, key: &Key) -> bool {
        self.epoch == key.epoch
            && self.catalog == key.catalog
            && self.grants == key.grants
            && *self.principal == key.principal
            && self.method == key.method
            && *self.database == key.database
            && *self.target == key.target
    }

    fn to_key(&self) -> Key {
        Key {
            epoch: self.epoch,
            catalog: self.catalog,
            grants: self.grants,
            principal: *self.principal,
            database: self.database.clone(),
            method: self.method,
            target: self.target.clone(),
        }
    }
}

/// A verdict and the whole key it was stored under.
struct Entry {
    key: Key,
    verdict: Arc<Verdict>,
}

pub struct DecisionCache<S = std::collections::hash_map::RandomState> {
    cache: Cache<u64, Arc<Entry>>,
    hasher: S,
    admit_per_request: usize,
}

/// How many more new entries the current request may add.
pub struct Admission(usize);

/// Where a verdict came from, for metrics (both kinds of hit count as
/// hits there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This cache.
    Hit,
    /// The request's own memo: another of its targets with the same key.
    Memo,
    Miss,
}

impl Lookup {
    /// Judged without evaluating a rule.
    pub fn is_hit(self) -> bool {
        self != Lookup::Miss
    }
}

impl DecisionCache {
    pub fn new(settings: CacheSettings) -> DecisionCache {
        DecisionCache::with_hasher(settings, std::collections::hash_map::RandomState::new())
    }
}

impl<S: BuildHasher> DecisionCache<S> {
    fn with_hasher(settings: CacheSettings, hasher: S) -> DecisionCache<S> {
        DecisionCache {
            // Weighed, not counted: an entry with a 1,500-byte path holds far
            // more than one with a short one, and one request could name
            // thousands of either.
            cache: Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|_: &u64, entry: &Arc<Entry>| weight(&entry.key, &entry.verdict))
                .build(),
            hasher,
            admit_per_request: settings.admit_per_request,
        }
    }

    /// The admission budget of one request.
    pub fn admission(&self) -> Admission {
        Admission(self.admit_per_request)
    }

    /// The cached verdict, or a fresh one, stored unless it read the clock
    /// or the request has used up its admission budget.
    pub fn decide(
        &self,
        table: &Table,
        req: &Request,
        target: &Target,
        admission: &mut Admission,
    ) -> (Arc<Verdict>, Lookup) {
        let key = KeyRef {
            epoch: table.epoch,
            catalog: req
                .catalog
                .filter(|_| table.uses_catalog())
                .map_or(0, |v| v.generation),
            grants: req.grants_generation(),
            principal: req.principal.fingerprint(),
            database: req.database,
            method: req.method,
            target,
        };
        // A request of many targets asks its own memo first: a target whose
        // verdict depends on what an earlier one's did (same rules, same
        // values read) costs neither a lookup here nor a place in the cache.
        let prepared = req.many_targets().then(|| table.prepare(req, target));
        if let Some(prepared) = &prepared
            && let Some(verdict) = table.memoized(req, target, prepared)
        {
            return (verdict, Lookup::Memo);
        }
        let hash = self.hasher.hash_one(&key);
        if let Some(hit) = self.cache.get(&hash)
            && key.is(&hit.key)
        {
            // The request's other targets of this key read it from the
            // memo, not from here: a commit of many writes under one rule
            // costs one lookup, however many of its targets are cached.
            if let Some(prepared) = &prepared {
                table.remember(req, prepared, &hit.verdict);
            }
            return (Arc::clone(&hit.verdict), Lookup::Hit);
        }
        let prepared = prepared.unwrap_or_else(|| table.prepare(req, target));
        let verdict = table.decide_prepared(req, target, &prepared);
        if verdict.cacheable && admission.0 > 0 {
            admission.0 -= 1;
            let entry = Entry {
                key: key.to_key(),
                verdict: Arc::clone(&verdict),
            };
            self.cache.insert(hash, Arc::new(entry));
        }
        (verdict, Lookup::Miss)
    }

    /// Drop every entry (after a reload; the epoch already hides them).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// The estimated bytes held now (after pending maintenance).
    #[cfg(test)]
    fn weighed_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// Roughly the bytes one entry holds: the fixed parts, every string on the
/// heap, and moka's own bookkeeping per entry.
fn weight(key: &Key, verdict: &Verdict) -> u32 {
    const OVERHEAD: usize = 128;
    let database = key.database.project.len() + key.database.database.len();
    let target = scope_bytes(&key.target.scope);
    let decision = verdict.decision.rule.as_ref().map_or(0, |r| r.len())
        + verdict.upstream_account.as_ref().map_or(0, String::len)
        + verdict.mask.as_ref().map_or(0, |m| {
            // The mask itself is shared with the rule; its rule names are not.
            m.rules.iter().map(String::len).sum::<usize>() + 64
        });
    let total = OVERHEAD
        + std::mem::size_of::<Entry>()
        + std::mem::size_of::<Verdict>()
        + database
        + target
        + decision;
    u32::try_from(total).unwrap_or(u32::MAX)
}

fn scope_bytes(scope: &Scope) -> usize {
    let strings = |segments: &crate::model::Segments| -> usize { segments.spelled().len() };
    match scope {
        Scope::Document { path } => strings(path),
        Scope::Collection { parent, collection }
        | Scope::CollectionGroup { parent, collection }
        | Scope::Subtree { parent, collection } => strings(parent) + collection.len(),
        Scope::Descendants { parent } | Scope::CollectionIds { parent } => strings(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Operation};
    use crate::policy::fixtures::{doc, member, op};

    /// One rule whose condition reads each target's whole path: no two
    /// targets of a request share a verdict, each is looked up here.
    fn table() -> Table {
        Table::from_yaml(
            "rules:\n  - id: all\n    match: /{rest=**}\n    allow: [read]\n    who: {any: true}\n    when: \"path.rest != ''\"\n",
            1,
        )
        .expect("table")
    }

    /// A `batchGet` of `n` documents with long ids, numbered from `from`.
    fn batch_get(from: usize, n: usize) -> Operation {
        let targets = (from..from + n)
            .map(|i| doc(&format!("logs/{i:0>200}"), Access::Get))
            .collect();
        op(Method::BatchGet, targets)
    }

    fn judge<S: BuildHasher>(cache: &DecisionCache<S>, op: &Operation) {
        let (table, principal) = (table(), member("alice", &[]));
        let req = Request::new(&principal, op);
        let mut admission = cache.admission();
        for target in &op.targets {
            let (verdict, _) = cache.decide(&table, &req, target, &mut admission);
            assert!(verdict.decision.allowed);
        }
    }

    #[test]
    fn the_cache_is_bounded_by_bytes_not_entries() {
        let max_bytes = 64 * 1024;
        let cache = DecisionCache::new(CacheSettings {
            max_bytes,
            admit_per_request: 10,
        });
        for request in 0..1000 {
            judge(&cache, &batch_get(request * 10, 10));
        }
        let size = cache.weighed_size();
        let entries = cache.cache.entry_count();
        assert!(size <= max_bytes, "{size} bytes held");
        // Each entry weighs well over 400 bytes (two 200-byte ids).
        assert!(entries <= max_bytes / 400, "{entries} entries held");
        assert!(entries > 0, "nothing cached");
    }

    /// Every key hashes alike: only the stored key tells entries apart.
    #[derive(Default)]
    struct Colliding;

    impl BuildHasher for Colliding {
        type Hasher = Colliding;
        fn build_hasher(&self) -> Colliding {
            Colliding
        }
    }

    impl std::hash::Hasher for Colliding {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    /// A request of many targets under one rule, its first target already
    /// cached: that one lookup answers the rest from the request's memo,
    /// request after request (not one more target from this cache each
    /// time until every target is looked up here).
    #[test]
    fn a_cached_target_answers_its_memo_key() {
        let table = Table::from_yaml(
            "rules:\n  - id: own\n    match: /teams/{team}/{rest=**}\n    allow: [update]\n    who: {any: true}\n    when: \"path.team == 'a'\"\n",
            1,
        )
        .expect("table");
        let cache = DecisionCache::new(CacheSettings {
            max_bytes: 1024 * 1024,
            admit_per_request: 64,
        });
        let principal = member("alice", &[]);
        let targets = (0..6)
            .map(|i| doc(&format!("teams/a/d/{i}"), Access::Update))
            .collect();
        let commit = op(Method::Commit, targets);
        for round in 0..4 {
            let req = Request::new(&principal, &commit);
            let mut admission = cache.admission();
            let (verdicts, lookups): (Vec<Arc<Verdict>>, Vec<Lookup>) = commit
                .targets
                .iter()
                .map(|target| {
                    let (verdict, lookup) = cache.decide(&table, &req, target, &mut admission);
                    assert!(verdict.decision.allowed, "{target:?}");
                    (verdict, lookup)
                })
                .unzip();
            // The targets judged alike share one verdict: the one cached.
            assert!(
                verdicts.iter().all(|v| Arc::ptr_eq(v, &verdicts[0])),
                "round {round}"
            );
            let first = if round == 0 {
                Lookup::Miss
            } else {
                Lookup::Hit
            };
            assert_eq!(lookups[0], first, "round {round}");
            assert!(
                lookups[1..].iter().all(|l| *l == Lookup::Memo),
                "round {round}: {lookups:?}"
            );
        }
    }

    #[test]
    fn keys_sharing_a_hash_never_share_a_verdict() {
        let table = Table::from_yaml(
            "rules:\n  - id: open\n    match: /open/{d}\n    allow: [read]\n    who: {any: true}\n",
            1,
        )
        .expect("table");
        let cache = DecisionCache::with_hasher(
            CacheSettings {
                max_bytes: 1024 * 1024,
                admit_per_request: 64,
            },
            Colliding,
        );
        let principal = member("alice", &[]);
        let get = |collection: &str| {
            let mut op = batch_get(0, 1);
            op.targets[0].scope = Scope::Document {
                path: vec![collection.to_string(), "d".into()].into(),
            };
            op
        };
        let (open, shut) = (get("open"), get("shut"));
        for _ in 0..3 {
            for (op, allowed) in [(&open, true), (&shut, false)] {
                let req = Request::new(&principal, op);
                let (verdict, _) =
                    cache.decide(&table, &req, &op.targets[0], &mut cache.admission());
                assert_eq!(verdict.decision.allowed, allowed, "{:?}", op.targets[0]);
            }
        }
        // The same key again is a hit.
        let req = Request::new(&principal, &shut);
        let (_, lookup) = cache.decide(&table, &req, &shut.targets[0], &mut cache.admission());
        assert_eq!(lookup, Lookup::Hit);
    }

    #[test]
    fn targets_judged_alike_take_no_place_in_the_cache() {
        let table = Table::from_yaml(
            "rules:\n  - id: all\n    match: /{rest=**}\n    allow: [read]\n    who: {any: true}\n",
            1,
        )
        .expect("table");
        let cache = DecisionCache::new(CacheSettings {
            max_bytes: 64 * 1024 * 1024,
            admit_per_request: 64,
        });
        let op = batch_get(0, 100);
        let principal = member("alice", &[]);
        let req = Request::new(&principal, &op);
        let mut admission = cache.admission();
        for target in &op.targets {
            let (verdict, _) = cache.decide(&table, &req, target, &mut admission);
            assert!(verdict.decision.allowed);
            assert_eq!(verdict.decision.rule.as_deref(), Some("all"));
        }
        cache.cache.run_pending_tasks();
        assert_eq!(cache.cache.entry_count(), 1);
    }

    #[test]
    fn one_request_admits_at_most_its_budget() {
        let cache = DecisionCache::new(CacheSettings {
            max_bytes: 64 * 1024 * 1024,
            admit_per_request: 64,
        });
        judge(&cache, &batch_get(0, 5000));
        cache.cache.run_pending_tasks();
        assert_eq!(cache.cache.entry_count(), 64);
        // The next request gets a budget of its own.
        judge(&cache, &batch_get(5000, 10));
        cache.cache.run_pending_tasks();
        assert_eq!(cache.cache.entry_count(), 74);
    }
}
