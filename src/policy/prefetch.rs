//! Which stored documents a request's rules need before its decision: the
//! documents of targets with a candidate rule whose condition reads
//! `resource`, or the document after a write that depends on it.

use super::compile::Rule;
use super::condition::DataUse;
use super::table::{Table, tokens};
use crate::authn::Principal;
use crate::model::data::{Change, Written};
use crate::model::{Access, Operation, Scope, Segments, Target};

impl Table {
    /// The document paths to read before deciding `op` for `principal`,
    /// without repeats; empty (and cheap) for a table with no rule that
    /// reads documents.
    pub fn stored_needed(&self, principal: &Principal, op: &Operation) -> Vec<Segments> {
        let mut paths: Vec<Segments> = Vec::new();
        if !self.reads_documents {
            return paths;
        }
        for target in &op.targets {
            let Scope::Document { path } = &target.scope else {
                continue;
            };
            if target.access == Access::List || paths.iter().any(|p| p == path) {
                continue;
            }
            let writes: Vec<&Written> = op
                .writes
                .iter()
                .filter(|w| w.scope == target.scope)
                .collect();
            let write = match writes.as_slice() {
                [] => None,
                [w] if w.creates() => continue,
                [w] => Some(*w),
                // Written twice: data conditions fail closed without a read.
                _ => continue,
            };
            if self.candidates(principal, op, target).any(|rule| {
                rule.when
                    .as_ref()
                    .is_some_and(|c| needs_stored(c.data, target, write))
            }) {
                paths.push(path.clone());
            }
        }
        paths
    }

    /// The rules that may be evaluated for `target`: overlapping denies and
    /// covering allows that apply to the access, database and caller.
    fn candidates<'t>(
        &'t self,
        principal: &'t Principal,
        op: &'t Operation,
        target: &'t Target,
    ) -> impl Iterator<Item = &'t Rule> {
        let tokens = tokens(&target.scope);
        let mut indices: Vec<usize> = self.deny_overlaps(&tokens);
        indices.extend(self.lookup(&tokens).iter().map(|m| m.rule));
        indices
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(move |rule| {
                rule.actions.contains(target.access)
                    && rule.applies_to(&op.database)
                    // A catalog-bound `who` is not judged here: reading a
                    // document a rule then does not need is only wasted.
                    && rule.who.matches_except_catalog(principal)
            })
    }
}

/// Whether a condition reading `data` needs the stored document of
/// `target` (written by `write`, if a write).
fn needs_stored(data: DataUse, target: &Target, write: Option<&Written>) -> bool {
    if data.stored {
        return true;
    }
    let Some(write) = write else {
        return false;
    };
    if target.access == Access::Get {
        return false;
    }
    match &write.change {
        Change::Delete => data.changed,
        Change::Update { mask: Some(_), .. } => data.written,
        Change::Update { mask: None, .. } => data.changed,
    }
}
