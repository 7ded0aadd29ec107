//! `policy diff`: every (principal class, path pattern, action) whose
//! decision changes between two tables, gained or lost, with the rules
//! responsible.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::region::{Override, Piece, Region, Scope, regions, when_text};
use super::{ALL_ACCESSES, Class, PathSet};
use crate::model::Access;
use crate::policy::Table;
use crate::policy::compile::Effect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Gained,
    Lost,
    /// The same readers read the same documents, with fields hidden that
    /// were shown (`rules` names the rule whose mask changed).
    Masked,
    /// Fields hidden before are shown now.
    Unmasked,
}

/// One changed region: its members (minus `except`) at its paths gain or
/// lose the action, under `when` if given.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub who: Class,
    pub path: String,
    pub action: Access,
    pub change: Change,
    /// The allow rule, and the deny rule whose change makes the difference
    /// when one does.
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Override>,
    /// For a mask change: the mask before → after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    #[serde(skip)]
    pub piece: Piece,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub changes: Vec<Changed>,
}

/// What `--fail-on` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    Gained,
    Lost,
    Any,
}

impl FailOn {
    pub fn parse(text: &str) -> Option<FailOn> {
        match text {
            "gained" => Some(FailOn::Gained),
            "lost" => Some(FailOn::Lost),
            "any" => Some(FailOn::Any),
            _ => None,
        }
    }
}

impl Diff {
    /// Whether a CI gate set to `fail_on` fails on this diff.
    pub fn fails(&self, fail_on: FailOn) -> bool {
        self.changes.iter().any(|c| match fail_on {
            FailOn::Any => true,
            FailOn::Gained => matches!(c.change, Change::Gained | Change::Unmasked),
            FailOn::Lost => matches!(c.change, Change::Lost | Change::Masked),
        })
    }

    pub fn text(&self) -> String {
        if self.changes.is_empty() {
            return "no access changes\n".into();
        }
        let mut out = String::new();
        for c in &self.changes {
            let sign = match c.change {
                Change::Gained => "+ gained",
                Change::Lost => "- lost  ",
                Change::Masked => "~ masked",
                Change::Unmasked => "~ unmask",
            };
            let _ = write!(
                out,
                "{sign} {:<6} {}  {}  (rules: {})",
                c.action.as_str(),
                c.path,
                c.who,
                c.rules.join(", ")
            );
            if let Some(mask) = &c.mask {
                let _ = write!(out, "  mask: {mask}");
            }
            if let Some(db) = &c.database {
                let _ = write!(out, "  in database {db}");
            }
            if let Some(when) = &c.when {
                let _ = write!(out, "  when {when}");
            }
            for e in &c.except {
                let _ = write!(out, "\n      except {} at {} ({})", e.who, e.path, e.rule);
                if let Some(when) = &e.when {
                    let _ = write!(out, " when {when}");
                }
            }
            out.push('\n');
        }
        let gained = self
            .changes
            .iter()
            .filter(|c| c.change == Change::Gained)
            .count();
        let lost = self
            .changes
            .iter()
            .filter(|c| c.change == Change::Lost)
            .count();
        let masks = self.changes.len() - gained - lost;
        let _ = write!(out, "{gained} gained, {lost} lost");
        if masks > 0 {
            let _ = write!(out, ", {masks} mask changes");
        }
        out.push('\n');
        out
    }
}

/// The changes from `old` to `new`. With the allow (A) and deny (D) regions
/// of each, what is gained is, for each new allow, (1) the part no new deny
/// and no old allow covers, and (2) for each old deny, the part both cover
/// that no new deny does; what is lost is the same with the tables swapped.
pub fn diff(old: &Table, new: &Table, database: Option<&str>) -> Diff {
    let everything = PathSet::everything();
    let mut changes = Vec::new();
    for access in ALL_ACCESSES {
        let scope = Scope {
            access,
            paths: &everything,
            database,
            principal: None,
        };
        let (old_allow, old_deny) = (
            regions(old, Effect::Allow, &scope),
            regions(old, Effect::Deny, &scope),
        );
        let (new_allow, new_deny) = (
            regions(new, Effect::Allow, &scope),
            regions(new, Effect::Deny, &scope),
        );
        let gained = one_way(&new_allow, &new_deny, &old_allow, &old_deny);
        let lost = one_way(&old_allow, &old_deny, &new_allow, &new_deny);
        for (change, pieces) in [(Change::Gained, gained), (Change::Lost, lost)] {
            changes.extend(pieces.into_iter().map(|piece| Changed {
                who: piece.class.clone(),
                path: piece.paths.to_string(),
                action: access,
                change,
                rules: piece.rules.clone(),
                database: piece.database.clone(),
                when: when_text(&piece.conditions),
                except: piece.except.iter().map(|e| e.view()).collect(),
                mask: None,
                piece,
            }));
        }
        if matches!(access, Access::Get | Access::List) {
            changes.extend(mask_changes(&old_allow, &new_allow, access));
        }
    }
    Diff { changes }
}

/// Allow regions present in both tables (same readers, paths, conditions)
/// whose rule's mask was added, removed or changed.
fn mask_changes(old_allow: &[Region], new_allow: &[Region], access: Access) -> Vec<Changed> {
    let mask_of = |r: &Region| r.rule.mask.as_ref().map(|m| m.to_string());
    let mut out = Vec::new();
    for new in new_allow {
        let sig = signature(new);
        let Some(old) = old_allow
            .iter()
            .find(|o| o.rule.id == new.rule.id && signature(o) == sig)
        else {
            continue;
        };
        let (before, after) = (mask_of(old), mask_of(new));
        if before == after {
            continue;
        }
        let change = match (&before, &after) {
            (_, None) => Change::Unmasked,
            // Fewer fields hidden than before, none newly.
            (Some(_), Some(_))
                if old
                    .rule
                    .mask
                    .as_ref()
                    .zip(new.rule.mask.as_ref())
                    .is_some_and(|(o, n)| o.intersect(n) == **n) =>
            {
                Change::Unmasked
            }
            _ => Change::Masked,
        };
        let piece = Piece::of(new);
        out.push(Changed {
            who: piece.class.clone(),
            path: piece.paths.to_string(),
            action: access,
            change,
            rules: vec![new.rule.id.to_string()],
            database: piece.database.clone(),
            when: when_text(&piece.conditions),
            except: Vec::new(),
            mask: Some(format!(
                "{} → {}",
                before.as_deref().unwrap_or("none"),
                after.as_deref().unwrap_or("none")
            )),
            piece,
        });
    }
    out
}

/// Where `to` allows and `from` did not. A region present unchanged on
/// both sides contributes nothing (an allow already allowed, a deny still
/// denying), so only regions that changed are carved: a diff costs the
/// size of the change times the table, not the table squared.
fn one_way(
    to_allow: &[Region],
    to_deny: &[Region],
    from_allow: &[Region],
    from_deny: &[Region],
) -> Vec<Piece> {
    let still_allowed: HashSet<String> = from_allow.iter().map(signature).collect();
    let still_denied: HashSet<String> = to_deny.iter().map(signature).collect();
    let lifted: Vec<&Region> = from_deny
        .iter()
        .filter(|d| !still_denied.contains(&signature(d)))
        .collect();
    let to_deny_refs: Vec<&Region> = to_deny.iter().collect();
    let mut newly_blocked: Vec<&Region> = to_deny_refs.clone();
    newly_blocked.extend(from_allow.iter());
    let mut out = Vec::new();
    for allow in to_allow {
        if !still_allowed.contains(&signature(allow)) {
            out.extend(Piece::of(allow).carve(&newly_blocked));
        }
        for deny in &lifted {
            for piece in Piece::meet(allow, deny) {
                out.extend(piece.carve(&to_deny_refs));
            }
        }
    }
    out
}

/// Equal exactly when two regions hold the same points under the same
/// conditions.
fn signature(r: &Region) -> String {
    let keys: Vec<&str> = r.conditions.iter().map(|c| c.key.as_str()).collect();
    format!(
        "{}\u{0}{}\u{0}{:?}\u{0}{keys:?}",
        serde_json::to_string(&r.class).unwrap_or_default(),
        r.paths,
        r.database
    )
}
