//! Regions: where one rule applies for one access (a principal class × a
//! path set × a database, maybe under a residual condition), and carving a
//! region by the regions that override it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::class::Class;
use super::paths::PathSet;
use crate::authn::Principal;
use crate::model::Access;
use crate::policy::Table;
use crate::policy::compile::{Effect, Rule};

/// A condition that could not be settled statically, with the wildcards
/// the question pinned written in as literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residual {
    /// Equal keys are the same condition at the same points (same source,
    /// same pattern, same pinned ids), across tables too.
    pub key: String,
    pub text: String,
}

/// Where one rule applies.
#[derive(Clone)]
pub struct Region<'t> {
    pub rule: &'t Rule,
    pub class: Class,
    pub paths: PathSet,
    /// `None`: every database.
    pub database: Option<String>,
    pub conditions: Vec<Residual>,
}

/// What narrows the regions of a table.
pub struct Scope<'a> {
    pub access: Access,
    pub paths: &'a PathSet,
    pub database: Option<&'a str>,
    /// Only rules about this principal, its conditions evaluated for it.
    pub principal: Option<&'a Principal>,
}

/// Every region of `table`'s enforced rules of `effect` inside `scope`.
/// A condition is settled when everything it reads is known: true drops
/// it, false drops the region, and an error drops an allow but keeps a deny
/// (the engine fails closed the same way).
pub fn regions<'t>(table: &'t Table, effect: Effect, scope: &Scope) -> Vec<Region<'t>> {
    let mut out = Vec::new();
    for rule in &table.rules {
        if rule.effect != effect || rule.shadow || !rule.actions.contains(scope.access) {
            continue;
        }
        let Some(database) = meet_database(rule.database.as_deref(), scope.database) else {
            continue;
        };
        let class = Class::of(&rule.who);
        if scope.principal.is_some_and(|p| !class.matches(p)) {
            continue;
        }
        let own = PathSet::of(&rule.pattern);
        for paths in own.intersect(scope.paths) {
            let mut conditions = Vec::new();
            if let Some(condition) = &rule.when {
                let bound = paths.bindings_of(&own);
                let known = condition.eval_known(&table.env, scope.principal, scope.access, &bound);
                match known {
                    Some(Ok(true)) => {}
                    Some(Ok(false)) => continue,
                    Some(Err(_)) if effect == Effect::Allow => continue,
                    Some(Err(_)) => {}
                    None => conditions.push(residual(rule, &condition.source, &bound)),
                }
            }
            out.push(Region {
                rule,
                class: class.clone(),
                paths,
                database: database.clone(),
                conditions,
            });
        }
    }
    out
}

fn residual(rule: &Rule, source: &str, bound: &HashMap<String, String>) -> Residual {
    let sorted: BTreeMap<_, _> = bound.iter().collect();
    Residual {
        key: format!("{}\u{0}{source}\u{0}{sorted:?}", rule.pattern),
        text: substitute(source, bound),
    }
}

/// `source` with each `path.<name>` that `bound` pins replaced by the id as
/// a CEL string literal; string literals in the source are left alone.
pub fn substitute(source: &str, bound: &HashMap<String, String>) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            // Copy the literal through its closing quote, honouring escapes.
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                i += 1;
                if chars[i - 1] == c {
                    break;
                }
            }
            continue;
        }
        let starts_word = i == 0 || !(ident(chars[i - 1]) || chars[i - 1] == '.');
        if starts_word && chars[i..].starts_with(&['p', 'a', 't', 'h', '.']) {
            let start = i + 5;
            let mut end = start;
            while end < chars.len() && ident(chars[end]) {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            if let Some(id) = bound.get(&name) {
                let escaped = id.replace('\\', "\\\\").replace('\'', "\\'");
                out.push_str(&format!("'{escaped}'"));
                i = end;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The databases both restrictions allow (`Some(None)`: all of them);
/// `None` when they exclude each other. An id (`(default)`) allows that
/// database in every project.
pub fn meet_database(a: Option<&str>, b: Option<&str>) -> Option<Option<String>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x.map(String::from)),
        (Some(a), Some(b)) if database_within(a, b) => Some(Some(a.to_string())),
        (Some(a), Some(b)) if database_within(b, a) => Some(Some(b.to_string())),
        _ => None,
    }
}

/// Is every database `inner` names also named by `outer`?
pub fn database_within(inner: &str, outer: &str) -> bool {
    inner == outer
        || (!outer.contains('/')
            && inner
                .rsplit_once("/databases/")
                .is_some_and(|(_, id)| id == outer))
}

fn covers_database(outer: Option<&str>, inner: Option<&str>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(i)) => database_within(i, o),
    }
}

/// The region overridden, for display.
#[derive(Debug, Clone, Serialize)]
pub struct Override {
    pub rule: String,
    pub who: Class,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A region with what carves it: its points minus every exclusion's.
#[derive(Debug, Clone)]
pub struct Piece {
    pub class: Class,
    pub paths: PathSet,
    pub database: Option<String>,
    pub conditions: Vec<Residual>,
    pub rules: Vec<String>,
    /// The exclusions that overlap it (those that do not are left out).
    pub except: Vec<ExceptRegion>,
    /// A point of the piece no certain exclusion removes, when one was
    /// searched for and found.
    pub witness: Option<(Principal, Vec<String>)>,
}

/// An exclusion kept on a piece.
#[derive(Debug, Clone)]
pub struct ExceptRegion {
    pub rule: String,
    pub class: Class,
    pub paths: PathSet,
    pub database: Option<String>,
    pub conditions: Vec<Residual>,
}

impl ExceptRegion {
    pub fn view(&self) -> Override {
        Override {
            rule: self.rule.clone(),
            who: self.class.clone(),
            path: self.paths.to_string(),
            when: when_text(&self.conditions),
        }
    }
}

/// Residual conditions joined for display.
pub fn when_text(conditions: &[Residual]) -> Option<String> {
    match conditions {
        [] => None,
        [one] => Some(one.text.clone()),
        many => Some(
            many.iter()
                .map(|c| format!("({})", c.text))
                .collect::<Vec<_>>()
                .join(" && "),
        ),
    }
}

impl Piece {
    pub fn of(region: &Region) -> Piece {
        Piece {
            class: region.class.clone(),
            paths: region.paths.clone(),
            database: region.database.clone(),
            conditions: region.conditions.clone(),
            rules: vec![region.rule.id.to_string()],
            except: Vec::new(),
            witness: None,
        }
    }

    /// Where both regions apply: one piece per path set of the meet.
    pub fn meet(a: &Region, b: &Region) -> Vec<Piece> {
        if a.paths.surely_disjoint(&b.paths) {
            return Vec::new();
        }
        let (Some(class), Some(database)) = (
            a.class.meet(&b.class),
            meet_database(a.database.as_deref(), b.database.as_deref()),
        ) else {
            return Vec::new();
        };
        let mut conditions = a.conditions.clone();
        conditions.extend(b.conditions.iter().cloned());
        a.paths
            .intersect(&b.paths)
            .into_iter()
            .map(|paths| Piece {
                class: class.clone(),
                paths,
                database: database.clone(),
                conditions: conditions.clone(),
                rules: vec![a.rule.id.to_string(), b.rule.id.to_string()],
                except: Vec::new(),
                witness: None,
            })
            .collect()
    }

    /// Remove `exclusions` from the piece; `None` when nothing is left.
    /// Exclusions whose conditions the piece already assumes are certain
    /// and are proven to leave a point (a least-privileged member and a
    /// path outside them) or the piece is dropped; conditional ones are
    /// kept as `except` entries with their `when`.
    pub fn carve(self, exclusions: &[&Region]) -> Option<Piece> {
        let members = self.class.least_members();
        self.carve_for(exclusions, &members)
    }

    /// [`Piece::carve`] with the members to try given (one known principal).
    pub fn carve_for(mut self, exclusions: &[&Region], members: &[Principal]) -> Option<Piece> {
        let overlapping: Vec<&Region> = exclusions
            .iter()
            .copied()
            .filter(|e| {
                !self.paths.surely_disjoint(&e.paths)
                    && self.class.meet(&e.class).is_some()
                    && meet_database(self.database.as_deref(), e.database.as_deref()).is_some()
                    && !self.paths.intersect(&e.paths).is_empty()
            })
            .collect();
        let certain: Vec<&Region> = overlapping
            .iter()
            .copied()
            .filter(|e| {
                covers_database(e.database.as_deref(), self.database.as_deref())
                    && e.conditions
                        .iter()
                        .all(|c| self.conditions.iter().any(|own| own.key == c.key))
            })
            .collect();
        let mut witness = None;
        for member in members {
            let applying: Vec<&PathSet> = certain
                .iter()
                .filter(|e| e.class.matches(member))
                .map(|e| &e.paths)
                .collect();
            if let Some(path) = self.paths.witness(&applying) {
                witness = Some((member.clone(), path));
                break;
            }
        }
        if witness.is_none() && !members.is_empty() {
            return None;
        }
        self.witness = witness;
        self.except = overlapping
            .iter()
            .map(|e| ExceptRegion {
                rule: e.rule.id.to_string(),
                class: e.class.clone(),
                paths: e.paths.clone(),
                database: e.database.clone(),
                conditions: e.conditions.clone(),
            })
            .collect();
        Some(self)
    }

    /// Is the point in the piece (conditions taken as holding, every
    /// exclusion as applying)? For tests against brute force.
    pub fn holds(&self, p: &Principal, path: &[String]) -> bool {
        self.class.matches(p)
            && self.paths.matches(path)
            && !self
                .except
                .iter()
                .any(|e| e.class.matches(p) && e.paths.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_bound_path_variables_outside_literals() {
        let bound = HashMap::from([("team".to_string(), "pay'ments".to_string())]);
        assert_eq!(
            substitute("'group:default/' + path.team in principal.groups", &bound),
            "'group:default/' + 'pay\\'ments' in principal.groups"
        );
        assert_eq!(
            substitute("'path.team' == path.other", &bound),
            "'path.team' == path.other"
        );
        assert_eq!(substitute("xpath.team", &bound), "xpath.team");
    }

    #[test]
    fn databases_meet_by_id_or_full_name() {
        assert_eq!(meet_database(None, Some("a")), Some(Some("a".into())));
        assert_eq!(meet_database(Some("a"), Some("b")), None);
        let full = "projects/p/databases/a";
        assert_eq!(
            meet_database(Some(full), Some("a")),
            Some(Some(full.into()))
        );
        assert_eq!(
            meet_database(Some("a"), Some(full)),
            Some(Some(full.into()))
        );
        assert!(!covers_database(Some("a"), None));
    }
}
