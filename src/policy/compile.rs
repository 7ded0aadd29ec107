//! Raw rules → checked [`Rule`]s: actions, `who`, `when`, `as`, with every
//! problem reported by file and line.

use std::collections::HashMap;

use cel::Env;

use super::condition::Condition;
use super::format::{PolicyErrors, RawClaim, RawMode, RawRule, RawWho, Source};
use super::pattern::Pattern;
use crate::authn::Principal;
use crate::model::{Access, Database};

/// A set of accesses, as a bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    fn bit(access: Access) -> u8 {
        match access {
            Access::Get => 1,
            Access::List => 2,
            Access::Create => 4,
            Access::Update => 8,
            Access::Delete => 16,
        }
    }

    pub fn contains(self, access: Access) -> bool {
        self.0 & Self::bit(access) != 0
    }

    /// Every access of `other` is one of these.
    pub fn includes(self, other: Actions) -> bool {
        other.0 & !self.0 == 0
    }

    /// A non-empty list of action names, as rules write them.
    pub fn parse_all(names: &[String]) -> Result<Actions, String> {
        if names.is_empty() {
            return Err("lists no action".into());
        }
        let mut actions = Actions::default();
        for name in names {
            let a = Actions::parse(name).ok_or_else(|| {
                format!(
                    "unknown action `{name}` (known: get, list, create, update, delete, read, write)"
                )
            })?;
            actions.0 |= a.0;
        }
        Ok(actions)
    }

    /// `read` = get + list; `write` = create + update + delete.
    fn parse(name: &str) -> Option<Actions> {
        let accesses: &[Access] = match name {
            "get" => &[Access::Get],
            "list" => &[Access::List],
            "create" => &[Access::Create],
            "update" => &[Access::Update],
            "delete" => &[Access::Delete],
            "read" => &[Access::Get, Access::List],
            "write" => &[Access::Create, Access::Update, Access::Delete],
            _ => return None,
        };
        Some(Actions(accesses.iter().fold(0, |m, &a| m | Self::bit(a))))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A claim test of `who.claims`.
#[derive(Debug)]
pub(crate) enum ClaimTest {
    Equals(serde_json::Value),
    /// An array claim holding this element.
    Contains(serde_json::Value),
}

/// The `who:` selector. Every present key must match; within a key's list,
/// any entry.
#[derive(Debug, Default)]
pub struct Who {
    pub(crate) issuers: Option<Vec<String>>,
    pub(crate) subjects: Option<Vec<String>>,
    /// Lower-cased: email addresses compare case-insensitively.
    pub(crate) emails: Option<Vec<String>>,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) claims: Vec<(String, ClaimTest)>,
}

impl Who {
    pub fn matches(&self, p: &Principal) -> bool {
        let any_of = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|v| v == value))
        };
        any_of(&self.issuers, &p.issuer)
            && any_of(&self.subjects, &p.subject)
            && self.emails.as_ref().is_none_or(|l| {
                p.email
                    .as_deref()
                    .is_some_and(|e| l.iter().any(|v| v.eq_ignore_ascii_case(e)))
            })
            && self
                .groups
                .as_ref()
                .is_none_or(|l| p.groups.iter().any(|g| l.contains(g)))
            && self.claims.iter().all(|(name, test)| {
                let value = p.claims.get(name);
                match test {
                    ClaimTest::Equals(want) => value == Some(want),
                    ClaimTest::Contains(want) => value
                        .and_then(|v| v.as_array())
                        .is_some_and(|a| a.contains(want)),
                }
            })
    }
}

/// A checked rule.
pub struct Rule {
    pub id: String,
    pub effect: Effect,
    pub actions: Actions,
    pub pattern: Pattern,
    pub who: Who,
    pub when: Option<Condition>,
    /// `None`: any database. A value with `/` is a full name
    /// (`projects/p/databases/d`), otherwise a database id.
    pub database: Option<String>,
    pub upstream_account: Option<String>,
    /// `mode: shadow`: judged beside the enforced rules, for the audit
    /// record only.
    pub shadow: bool,
}

impl Rule {
    pub fn applies_to(&self, database: &Database) -> bool {
        self.database.as_deref().is_none_or(|want| {
            if want.contains('/') {
                want == database.to_string()
            } else {
                want == database.database
            }
        })
    }
}

/// Check every rule of every source; the rules come back in table order.
pub fn compile_rules(env: &Env, sources: &[Source]) -> Result<Vec<Rule>, PolicyErrors> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    // Where each id was first defined; lines are only looked up for errors,
    // since finding one scans the file.
    let mut seen: HashMap<&str, (&Source, usize)> = HashMap::new();
    for source in sources {
        for (index, raw) in source.file.rules.iter().enumerate() {
            if let Some(&(first, first_index)) = seen.get(raw.id.as_str()) {
                let at = first.error(first_index, Some("id"), String::new());
                let at = match at.line {
                    Some(line) => format!("{}:{line}", at.file),
                    None => at.file,
                };
                let message = format!("duplicate rule id `{}` (first defined at {at})", raw.id);
                errors.push(source.error(index, Some("id"), message));
            } else {
                seen.insert(&raw.id, (source, index));
            }
            let mut problems = Vec::new();
            let rule = compile_rule(env, raw, &mut problems);
            for (key, message) in problems {
                let message = format!("rule `{}`: {message}", raw.id);
                errors.push(source.error(index, Some(key), message));
            }
            rules.extend(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(PolicyErrors(errors))
    }
}

pub(super) type Problems = Vec<(&'static str, String)>;

fn compile_rule(env: &Env, raw: &RawRule, problems: &mut Problems) -> Option<Rule> {
    let before = problems.len();
    if raw.id.is_empty() || raw.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(("id", "`id` must be non-empty, without spaces".into()));
    }
    let pattern = Pattern::parse(&raw.pattern)
        .map_err(|e| problems.push(("match", format!("`match: {}` {e}", raw.pattern))))
        .ok();
    let (effect, actions) = effect_and_actions(raw, problems);
    let who = compile_who(raw.who.as_ref(), problems);
    let bindings: Vec<&str> = pattern.iter().flat_map(|p| p.bindings()).collect();
    let when = raw.when.as_deref().and_then(|source| {
        Condition::compile(env, source, &bindings)
            .map_err(|errors| problems.extend(errors.into_iter().map(|e| ("when", e))))
            .ok()
    });
    if raw.database.as_deref().is_some_and(str::is_empty) {
        problems.push(("database", "`database` must not be empty".into()));
    }
    if let Some(account) = &raw.upstream_account {
        if effect == Some(Effect::Deny) {
            problems.push(("as", "`as` only makes sense on an allow rule".into()));
        }
        if !account.contains('@') || account.chars().any(char::is_whitespace) {
            problems.push((
                "as",
                format!("`as: {account}` is not a service-account email"),
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(Rule {
        id: raw.id.clone(),
        effect: effect?,
        actions,
        pattern: pattern?,
        who: who?,
        when,
        database: raw.database.clone(),
        upstream_account: raw.upstream_account.clone(),
        shadow: raw.mode == RawMode::Shadow,
    })
}

fn effect_and_actions(raw: &RawRule, problems: &mut Problems) -> (Option<Effect>, Actions) {
    let (effect, key, names) = match (&raw.allow, &raw.deny) {
        (Some(names), None) => (Effect::Allow, "allow", names),
        (None, Some(names)) => (Effect::Deny, "deny", names),
        (Some(_), Some(_)) => {
            problems.push(("deny", "a rule has `allow` or `deny`, not both".into()));
            return (None, Actions::default());
        }
        (None, None) => {
            problems.push(("id", "a rule needs `allow` or `deny`".into()));
            return (None, Actions::default());
        }
    };
    if names.is_empty() {
        problems.push((key, format!("`{key}` lists no action")));
    }
    let mut actions = Actions::default();
    for name in names {
        match Actions::parse(name) {
            Some(a) => actions.0 |= a.0,
            None => problems.push((
                key,
                format!(
                    "unknown action `{name}` (known: get, list, create, update, delete, read, write)"
                ),
            )),
        }
    }
    (Some(effect), actions)
}

pub(super) fn compile_who(raw: Option<&RawWho>, problems: &mut Problems) -> Option<Who> {
    let Some(raw) = raw else {
        problems.push((
            "id",
            "a rule needs `who` (write `who: { authenticated: true }` for every caller)".into(),
        ));
        return None;
    };
    let before = problems.len();
    for (name, flag) in [("authenticated", raw.authenticated), ("any", raw.any)] {
        if flag == Some(false) {
            problems.push((
                "who",
                format!("`who.{name}: false` matches nobody; remove the rule"),
            ));
        }
    }
    let everyone = raw.authenticated == Some(true) || raw.any == Some(true);
    let lists = [
        ("issuers", &raw.issuers),
        ("subjects", &raw.subjects),
        ("emails", &raw.emails),
        ("groups", &raw.groups),
    ];
    for (name, list) in lists {
        if list.as_ref().is_some_and(Vec::is_empty) {
            problems.push((
                "who",
                format!("`who.{name}` is empty and would match nobody"),
            ));
        }
    }
    let claims: Vec<(String, ClaimTest)> = raw
        .claims
        .iter()
        .flatten()
        .map(|(name, test)| {
            let test = match test {
                RawClaim::Equals(v) => ClaimTest::Equals(v.clone()),
                RawClaim::Contains { contains } => ClaimTest::Contains(contains.clone()),
            };
            (name.clone(), test)
        })
        .collect();
    let selects = lists.iter().any(|(_, l)| l.is_some()) || !claims.is_empty();
    if !everyone && !selects && problems.len() == before {
        problems.push((
            "who",
            "`who` selects nobody; use `authenticated: true` or name issuers, subjects, emails, groups or claims".into(),
        ));
    }
    Some(Who {
        issuers: raw.issuers.clone(),
        subjects: raw.subjects.clone(),
        emails: raw
            .emails
            .as_ref()
            .map(|l| l.iter().map(|e| e.to_ascii_lowercase()).collect()),
        groups: raw.groups.clone(),
        claims,
    })
}
