//! `policy what-can`: every path pattern and action one principal gets,
//! with the rules, its conditions settled where the principal decides them.

use std::fmt::Write as _;

use serde::Serialize;

use super::region::{Piece, Scope, regions};
use super::{ALL_ACCESSES, Grant, PathSet};
use crate::authn::Principal;
use crate::policy::Table;
use crate::policy::compile::Effect;

/// The answer: the principal may act where an `allowed` entry holds and no
/// `denied` entry does.
#[derive(Debug, Clone, Serialize)]
pub struct WhatCan {
    pub allowed: Vec<Grant>,
    pub denied: Vec<Grant>,
    /// Active grants of a state export (`--grants`), if one was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<super::granted::Granted>,
}

pub fn what_can(table: &Table, principal: &Principal, database: Option<&str>) -> WhatCan {
    let everything = PathSet::everything();
    let mut answer = WhatCan {
        allowed: Vec::new(),
        denied: Vec::new(),
        granted: Vec::new(),
    };
    for access in ALL_ACCESSES {
        let scope = Scope {
            access,
            paths: &everything,
            database,
            principal: Some(principal),
        };
        let denies = regions(table, Effect::Deny, &scope);
        let deny_refs: Vec<_> = denies.iter().collect();
        let me = [principal.clone()];
        for allow in regions(table, Effect::Allow, &scope) {
            if let Some(piece) = Piece::of(&allow).carve_for(&deny_refs, &me) {
                answer.allowed.push(Grant::allowed(piece, access, &allow));
            }
        }
        answer
            .denied
            .extend(denies.iter().map(|d| Grant::of(Piece::of(d), access)));
    }
    answer
}

impl WhatCan {
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.allowed.is_empty() && self.granted.is_empty() {
            out += "allowed: nothing\n";
        } else if self.allowed.is_empty() {
            out += "allowed by rules: nothing\n";
        } else {
            out += "allowed:\n";
            for g in &self.allowed {
                let _ = writeln!(out, "  {}", g.line(false));
            }
        }
        out += &super::granted::text(&self.granted);
        if !self.denied.is_empty() {
            out += "denied:\n";
            for g in &self.denied {
                let _ = writeln!(out, "  {}", g.line(false));
            }
        }
        out
    }
}
