//! Active grants in `who-can` and `what-can`: the grants of a state export
//! (`firegate access export`) that allow an action where the question
//! asks, each with the deny rules that may still refuse part of it (deny
//! rules win over grants, as over every allow).

use serde::Serialize;

use super::PathSet;
use super::region::{Scope, regions};
use crate::authn::Principal;
use crate::model::Access;
use crate::policy::compile::Effect;
use crate::policy::{Grant, Table};

/// One active grant's part of an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Granted {
    /// The request id.
    pub grant: String,
    /// The `requestable` entry it was granted under.
    pub entry: String,
    pub issuer: String,
    pub subject: String,
    pub action: Access,
    pub path: String,
    pub database: String,
    /// RFC 3339.
    pub until: String,
    /// Deny rules whose paths overlap the grant's (for some principals).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

impl Granted {
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<6} {}  user {} ({})  by grant {} of {}  in database {}  until {}",
            self.action.as_str(),
            self.path,
            self.subject,
            self.issuer,
            self.grant,
            self.entry,
            self.database,
            self.until,
        );
        if !self.except.is_empty() {
            line += &format!("  except where {} applies", self.except.join(", "));
        }
        line
    }
}

/// The grants among `grants` that allow one of `accesses` somewhere in
/// `paths` (in `database`, when given), for `principal` when given. A
/// grant whose entry the table no longer has allows nothing (the engine
/// checks it at every decision) and is left out.
pub fn granted(
    table: &Table,
    grants: &[Grant],
    accesses: &[Access],
    paths: &PathSet,
    database: Option<&str>,
    principal: Option<&Principal>,
) -> Vec<Granted> {
    let mut out = Vec::new();
    for &access in accesses {
        for grant in grants {
            let full = grant.database.to_string();
            let in_database = database.is_none_or(|d| {
                d == full
                    || full
                        .strip_suffix(d)
                        .is_some_and(|p| p.ends_with("/databases/"))
            });
            let granted_paths = PathSet::of(&grant.pattern);
            if !grant.actions.contains(access)
                || !in_database
                || principal.is_some_and(|p| !grant.is_for(p))
                || table.requestable(&grant.entry).is_none()
                || granted_paths.surely_disjoint(paths)
            {
                continue;
            }
            let scope = Scope {
                access,
                paths: &granted_paths,
                database: Some(&full),
                principal,
            };
            let mut except: Vec<String> = Vec::new();
            for deny in regions(table, Effect::Deny, &scope) {
                if !except.iter().any(|e| **e == *deny.rule.id) {
                    except.push(deny.rule.id.to_string());
                }
            }
            out.push(Granted {
                grant: grant.id.clone(),
                entry: grant.entry.clone(),
                issuer: grant.issuer.clone(),
                subject: grant.subject.clone(),
                action: access,
                path: grant.pattern.to_string(),
                database: full,
                until: rfc3339(grant.expires_at),
                except,
            });
        }
    }
    out
}

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The `granted:` section of a text answer (nothing without grants).
pub fn text(granted: &[Granted]) -> String {
    let mut out = String::new();
    if !granted.is_empty() {
        out += "granted (active grants of the state export):\n";
        for g in granted {
            out += &format!("  {}\n", g.line());
        }
    }
    out
}
