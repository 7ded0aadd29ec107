//! `policy who-can`: which principal classes may take an action on a path
//! (or a subtree written as a pattern), by which rule, and which deny rules
//! refuse whom.

use std::fmt::Write as _;

use serde::Serialize;

use super::region::{Piece, Scope, regions};
use super::{Grant, PathSet};
use crate::model::Access;
use crate::policy::Table;
use crate::policy::compile::Effect;

/// The answer: a caller may act where an `allowed` entry holds for it and
/// no `denied` entry does.
#[derive(Debug, Clone, Serialize)]
pub struct WhoCan {
    pub allowed: Vec<Grant>,
    pub denied: Vec<Grant>,
    /// Active grants of a state export (`--grants`), if one was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<super::granted::Granted>,
}

/// Who may take each of `accesses` on the documents of `paths`.
/// Allow entries that deny rules override everywhere are left out.
pub fn who_can(
    table: &Table,
    accesses: &[Access],
    paths: &PathSet,
    database: Option<&str>,
) -> WhoCan {
    let mut answer = WhoCan {
        allowed: Vec::new(),
        denied: Vec::new(),
        granted: Vec::new(),
    };
    for &access in accesses {
        let scope = Scope {
            access,
            paths,
            database,
            principal: None,
        };
        let denies = regions(table, Effect::Deny, &scope);
        let deny_refs: Vec<_> = denies.iter().collect();
        for allow in regions(table, Effect::Allow, &scope) {
            if let Some(piece) = Piece::of(&allow).carve(&deny_refs) {
                answer.allowed.push(Grant::allowed(piece, access, &allow));
            }
        }
        answer
            .denied
            .extend(denies.iter().map(|d| Grant::of(Piece::of(d), access)));
    }
    answer
}

impl WhoCan {
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.allowed.is_empty() && self.granted.is_empty() {
            out += "allowed: nobody\n";
        } else if self.allowed.is_empty() {
            out += "allowed by rules: nobody\n";
        } else {
            out += "allowed:\n";
            for g in &self.allowed {
                let _ = writeln!(out, "  {}", g.line(true));
            }
        }
        out += &super::granted::text(&self.granted);
        if !self.denied.is_empty() {
            out += "denied:\n";
            for g in &self.denied {
                let _ = writeln!(out, "  {}", g.line(true));
            }
        }
        out
    }
}
