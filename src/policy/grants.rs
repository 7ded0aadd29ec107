//! Grants: time-bound allows for one principal, each within a
//! `requestable` entry, indexed by principal so a decision looks at the
//! caller's grants only, never at the fleet's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::compile::Actions;
use super::pattern::Pattern;
use crate::authn::Principal;
use crate::model::Database;

/// One active grant, as the engine judges with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The request's id; named in every decision it allows.
    pub id: String,
    /// The `requestable` entry it was granted under.
    pub entry: String,
    pub issuer: String,
    pub subject: String,
    /// The one database the grant is for (full name).
    pub database: Database,
    /// The granted scope: the entry's `match` or a narrowing of it.
    pub pattern: Pattern,
    pub actions: Actions,
    /// Never allows at or after this instant.
    pub expires_at: SystemTime,
}

impl Grant {
    pub fn is_for(&self, p: &Principal) -> bool {
        self.issuer == p.issuer && self.subject == p.subject
    }
}

/// One principal's grants, and a generation that changes whenever they
/// do (part of every decision-cache key of that principal).
#[derive(Debug, Default)]
pub struct PrincipalGrants {
    pub generation: u64,
    pub grants: Vec<Arc<Grant>>,
}

/// Every active grant, by principal identity (issuer NUL subject).
#[derive(Debug, Default)]
pub struct Grants {
    by_principal: HashMap<Arc<str>, Arc<PrincipalGrants>>,
}

/// Generations are drawn from one process-wide counter, so a principal's
/// grants never return to an earlier generation (a cached verdict of an
/// older set can never be mistaken for the current one).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The next generation to be given: it moves whenever any principal's
/// grants change.
pub fn latest_generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

fn identity(issuer: &str, subject: &str) -> Arc<str> {
    format!("{issuer}\0{subject}").into()
}

impl Grants {
    /// The index of `grants`, keeping the generation of every principal
    /// whose set did not change since `previous`.
    pub fn rebuild(previous: &Grants, grants: Vec<Grant>) -> Grants {
        let mut sets: HashMap<Arc<str>, Vec<Arc<Grant>>> = HashMap::new();
        for grant in grants {
            sets.entry(identity(&grant.issuer, &grant.subject))
                .or_default()
                .push(Arc::new(grant));
        }
        let by_principal = sets
            .into_iter()
            .map(|(who, mut grants)| {
                grants.sort_by(|a, b| a.id.cmp(&b.id));
                let generation = match previous.by_principal.get(&who) {
                    Some(old) if old.grants == grants => old.generation,
                    _ => GENERATION.fetch_add(1, Ordering::Relaxed),
                };
                (who, Arc::new(PrincipalGrants { generation, grants }))
            })
            .collect();
        Grants { by_principal }
    }

    /// The caller's grants, if any.
    pub fn of(&self, principal: &Principal) -> Option<&Arc<PrincipalGrants>> {
        self.by_principal.get(principal.identity())
    }

    /// Every grant (who-can / what-can, reports).
    pub fn all(&self) -> impl Iterator<Item = &Arc<Grant>> {
        self.by_principal.values().flat_map(|p| p.grants.iter())
    }

    /// The generation of `principal`'s grants, `0` with none: a principal
    /// whose grants all went away gets a key no earlier verdict used
    /// unless it never had any.
    pub fn generation(&self, principal: &Principal) -> u64 {
        self.of(principal).map_or(0, |g| g.generation)
    }

    pub fn len(&self) -> usize {
        self.by_principal.values().map(|p| p.grants.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_principal.is_empty()
    }
}
