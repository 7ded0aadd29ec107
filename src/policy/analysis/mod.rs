//! Access analysis over a compiled table: who can do what where
//! (`who_can`, `what_can`) and what a change to the table changes (`diff`),
//! exact for rules without conditions and sound with them.

mod class;
pub mod diff;
pub mod granted;
mod paths;
mod region;
#[cfg(test)]
mod tests;
pub mod what_can;
pub mod who_can;

use serde::Serialize;

pub use class::{ClaimNeed, Class};
pub use paths::PathSet;
pub use region::Override;

use crate::model::Access;
use region::{Piece, when_text};

/// The five accesses an action name stands for (`read`, `write`, or one).
pub fn accesses(action: &str) -> Option<Vec<Access>> {
    Some(match action {
        "get" => vec![Access::Get],
        "list" => vec![Access::List],
        "create" => vec![Access::Create],
        "update" => vec![Access::Update],
        "delete" => vec![Access::Delete],
        "read" => vec![Access::Get, Access::List],
        "write" => vec![Access::Create, Access::Update, Access::Delete],
        _ => return None,
    })
}

/// Every access, in a stable order.
pub const ALL_ACCESSES: [Access; 5] = [
    Access::Get,
    Access::List,
    Access::Create,
    Access::Update,
    Access::Delete,
];

/// One rule's part of an answer: whom it concerns, where, under what
/// residual condition, and which overlapping rules override it in part.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub rule: String,
    pub action: Access,
    pub who: Class,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Deny rules that refuse part of what this allow grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// The fields this rule hides from the reads it allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
    #[serde(skip)]
    pub piece: Piece,
}

impl Grant {
    fn of(piece: Piece, action: Access) -> Grant {
        Grant {
            rule: piece.rules.join(", "),
            action,
            who: piece.class.clone(),
            path: piece.paths.to_string(),
            database: piece.database.clone(),
            when: when_text(&piece.conditions),
            except: unique(piece.except.iter().map(|e| e.rule.clone())),
            masked: None,
            piece,
        }
    }

    /// An allow grant of `region`'s rule, with the rule's mask on a read.
    fn allowed(piece: Piece, action: Access, region: &region::Region) -> Grant {
        let mut grant = Grant::of(piece, action);
        if matches!(action, Access::Get | Access::List) {
            grant.masked = region.rule.mask.as_ref().map(|m| m.to_string());
        }
        grant
    }

    /// One text line: `get /teams/{t} group eng by team-read (when …) except …`.
    pub fn line(&self, with_who: bool) -> String {
        let action = match &self.masked {
            Some(mask) => format!("{}, masked: {mask}", self.action.as_str()),
            None => self.action.as_str().to_string(),
        };
        let mut line = format!("{action:<6} {}", self.path);
        if with_who {
            line += &format!("  {}", self.who);
        }
        line += &format!("  by {}", self.rule);
        if let Some(db) = &self.database {
            line += &format!("  in database {db}");
        }
        if let Some(when) = &self.when {
            line += &format!("  when {when}");
        }
        if !self.except.is_empty() {
            line += &format!("  except where {} applies", self.except.join(", "));
        }
        line
    }
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
