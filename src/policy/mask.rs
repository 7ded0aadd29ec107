//! Masks in decisions: the fields every allowing rule hides (merged while
//! judging), and what a mask forbids besides the fields themselves — a
//! query that filters, orders or aggregates on them (an oracle), and a
//! write that would blindly replace or remove them.

use std::sync::Arc;

use serde::Serialize;

use super::compile::Rule;
use super::decide::Request;
use super::table::Table;
use super::{Decided, Decision};
use crate::model::data::Change;
use crate::model::mask::FieldMask;
use crate::model::{Access, Method, Operation, Scope, Target};

/// The mask one target's access is under: the fields hidden, and the
/// allowing rules whose masks were intersected to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Masked {
    #[serde(serialize_with = "as_text")]
    pub fields: Arc<FieldMask>,
    pub rules: Vec<String>,
}

fn as_text<S: serde::Serializer>(mask: &Arc<FieldMask>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        mask.paths()
            .iter()
            .map(|p| crate::model::mask::format_field_path(p)),
    )
}

impl std::fmt::Display for Masked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (mask of {})", self.fields, self.rules.join(" ∩ "))
    }
}

/// The masks of the allowing rules, merged as they are found: the fields
/// hidden are those every allowing rule hides, so one rule without a mask
/// shows the whole document.
pub(super) struct Merge(Option<Masked>);

impl Merge {
    pub(super) fn first(rule: &Rule) -> Merge {
        Merge(rule.mask.as_ref().map(|mask| Masked {
            fields: Arc::clone(mask),
            rules: vec![rule.id.to_string()],
        }))
    }

    /// Another rule allows too.
    pub(super) fn also(&mut self, rule: &Rule) {
        let Some(merged) = &mut self.0 else { return };
        let Some(mask) = &rule.mask else {
            self.0 = None;
            return;
        };
        if **mask != *merged.fields {
            merged.fields = Arc::new(merged.fields.intersect(mask));
        }
        merged.rules.push(rule.id.to_string());
        if merged.fields.is_empty() {
            self.0 = None;
        }
    }

    /// Nothing another rule says can change the result: no mask is left.
    pub(super) fn settled(&self) -> bool {
        self.0.is_none()
    }

    pub(super) fn finish(self) -> Option<Masked> {
        self.0
    }
}

/// Refuse what the masks of an allowed decision forbid: a query reading a
/// masked field, a write replacing, removing or setting a field its author
/// cannot read. Costs nothing when no target is masked.
pub(super) fn guard(table: &Table, req: &Request, op: &Operation, decision: &mut Decision) {
    if !decision.allowed || decision.targets.iter().all(|t| t.mask().is_none()) {
        return;
    }
    let refusal = decision.targets.iter().find_map(|t| {
        let masked = t.mask()?;
        match t.target.access {
            Access::List => queried(op, masked)
                .then(|| format!("masked_field_queried:{}", masked.rules.join("+"))),
            Access::Create | Access::Update => {
                let protected = protected(table, req, t, masked)?;
                overwrites(op, &t.target, &protected)
                    .then(|| format!("masked_field_written:{}", masked.rules.join("+")))
            }
            Access::Get | Access::Delete => None,
        }
    });
    if let Some(reason) = refusal {
        decision.allowed = false;
        decision.upstream_account = None;
        decision.reason = Some(reason);
    }
}

/// The query reads a field the mask hides (or one above it).
fn queried(op: &Operation, masked: &Masked) -> bool {
    op.queried.iter().any(|path| masked.fields.touches(path))
}

/// The fields a write may not touch: those its rules' masks hide that the
/// writer also cannot read there. `None` when the writer's reads of the
/// document are not masked (or not allowed at all: nothing is hidden from
/// a reader it does not have).
fn protected(table: &Table, req: &Request, t: &Decided, masked: &Masked) -> Option<FieldMask> {
    let access = match t.target.scope {
        Scope::Document { .. } => Access::Get,
        _ => Access::List,
    };
    let read = Target {
        scope: t.target.scope.clone(),
        access,
    };
    let verdict = table.decide_target(req, &read);
    if !verdict.decision.allowed {
        return None;
    }
    let read_mask = verdict.mask.clone()?;
    let protected = masked.fields.intersect(&read_mask.fields);
    (!protected.is_empty()).then_some(protected)
}

/// A write of `target` replaces the document (no update mask), or names a
/// protected field in its mask or transforms.
fn overwrites(op: &Operation, target: &Target, protected: &FieldMask) -> bool {
    op.writes
        .iter()
        .filter(|w| w.scope == target.scope)
        .any(|w| match &w.change {
            // Replacing a document that exists removes what it hid; a
            // create has nothing to remove.
            Change::Update { mask: None, .. } => target.access == Access::Update,
            Change::Update {
                mask: Some(paths),
                transforms,
                ..
            } => paths
                .iter()
                .chain(transforms.iter().map(|(p, _)| p))
                .any(|p| protected.touches(p)),
            Change::Delete => false,
        })
}

/// What the answer to a write may show of one document it writes: what
/// the caller's own read of it shows (a `get` of a named document, a
/// `list` of the collection a `createDocument` names no id in). `fields`
/// is that read's mask; a caller who may not read the document at all
/// gets [`FieldMask::everything`]: the answer keeps the document's name
/// and times, none of its fields (fail closed: a write does not become a
/// read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub scope: Scope,
    pub fields: Option<Arc<FieldMask>>,
}

/// Judge the answer of an allowed write whose answer is the document
/// written (`patch`, `createDocument`): each written target read as the
/// caller (`decide` judges one target of the read operation). The write
/// rule's own mask plays no part: it was never the caller's view of the
/// document. Costs nothing for any other request.
pub(super) fn answer(
    op: &Operation,
    decision: &mut Decision,
    mut decide: impl FnMut(&Operation, &Target) -> Arc<super::decide::Verdict>,
) {
    if !decision.allowed || !matches!(op.method, Method::Patch | Method::CreateDocument) {
        return;
    }
    let reads: Vec<Target> = op
        .targets
        .iter()
        .filter(|t| matches!(t.access, Access::Create | Access::Update))
        .map(|t| Target {
            scope: t.scope.clone(),
            access: match t.scope {
                Scope::Document { .. } => Access::Get,
                _ => Access::List,
            },
        })
        .collect();
    if reads.is_empty() {
        return;
    }
    let method = match reads[0].access {
        Access::Get => Method::Get,
        _ => Method::List,
    };
    let read = Operation::new(op.database.clone(), method, reads.clone());
    let mut answers: Vec<Answer> = Vec::with_capacity(reads.len());
    for target in &read.targets {
        if answers.iter().any(|a| a.scope == target.scope) {
            continue;
        }
        let verdict = decide(&read, target);
        let fields = if verdict.decision.allowed {
            verdict.mask.as_ref().map(|m| Arc::clone(&m.fields))
        } else {
            Some(Arc::new(FieldMask::everything()))
        };
        answers.push(Answer {
            scope: target.scope.clone(),
            fields,
        });
    }
    decision.answer = answers;
}
