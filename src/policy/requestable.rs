//! `requestable:` entries: access nobody holds until they ask for it and
//! others approve. An entry bounds every grant made under it (scope,
//! actions, database, duration); a request is checked against it here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cel::{Context, Env, Program, Value};
use serde::Deserialize;

use super::compile::{Actions, Who, compile_who};
use super::condition::references;
use super::format::{RawWho, Source};
use super::pattern::{Pattern, Segment};
use super::table::Token;
use crate::authn::Principal;
use crate::model::Database;

/// One `requestable:` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestable {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub pattern: String,
    pub actions: Vec<String>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub who: Option<RawWho>,
    #[serde(default)]
    pub approvers: Option<RawApprovers>,
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default)]
    pub reason: Option<RawReason>,
    #[serde(default)]
    pub break_glass: Option<RawWho>,
}

/// `approvers:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovers {
    #[serde(default)]
    pub who: Option<RawWho>,
    #[serde(default = "one")]
    pub min: u32,
    #[serde(default)]
    pub when: Option<String>,
}

fn one() -> u32 {
    1
}

/// `reason: required` (or `optional`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawReason {
    Required,
    Optional,
}

/// Longest `max_duration` an entry may declare: a grant is temporary.
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// A checked `requestable:` entry.
pub struct Requestable {
    pub id: String,
    pub pattern: Pattern,
    pub actions: Actions,
    /// As for rules: `None` any database, a full name, or a database id.
    pub database: Option<String>,
    /// Who may ask.
    pub who: Who,
    pub approvers: Approvers,
    pub max_duration: Duration,
    pub reason_required: bool,
    /// Who may approve their own request (audited, notified).
    pub break_glass: Option<Who>,
}

/// Who may approve, how many, and on what condition.
pub struct Approvers {
    pub who: Who,
    pub min: u32,
    pub when: Option<ApprovalCondition>,
}

/// How a reviewer may act on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewer {
    /// One of `approvers` (and `approvers.when` holds): counts toward `min`.
    Approver,
    /// The requester, in `break_glass`: approves their own request at
    /// once (audited, notified).
    BreakGlass,
}

impl Requestable {
    /// Whether `reviewer` may approve or deny `request`: never the
    /// requester, unless break-glass.
    pub fn reviewer(&self, reviewer: &Principal, request: &ApprovalInput) -> Option<Reviewer> {
        let own = reviewer.issuer == request.requester.issuer
            && reviewer.subject == request.requester.subject;
        // The entry's `{wildcards}`, bound from the requested path: a
        // catalog-bound `who` names the entity they make.
        let asked = requested_pattern(request.path).ok();
        let binding = |name: &str| {
            asked
                .as_ref()
                .and_then(|a| asked_binding(&self.pattern, a, name))
        };
        if own {
            return self
                .break_glass
                .as_ref()
                .filter(|w| w.matches(reviewer, request.catalog, binding))
                .map(|_| Reviewer::BreakGlass);
        }
        let approver = self
            .approvers
            .who
            .matches(reviewer, request.catalog, binding)
            && self
                .approvers
                .when
                .as_ref()
                .is_none_or(|c| c.holds(request, reviewer));
        approver.then_some(Reviewer::Approver)
    }

    pub fn applies_to(&self, database: &Database) -> bool {
        database_applies(self.database.as_deref(), database)
    }
}

pub(super) fn database_applies(want: Option<&str>, database: &Database) -> bool {
    want.is_none_or(|want| {
        if want.contains('/') {
            want == database.to_string()
        } else {
            want == database.database
        }
    })
}

/// `approvers.when`: CEL over `request` (what was asked) and `approver`
/// (who is reviewing), compiled at load.
pub struct ApprovalCondition {
    program: Program,
    env: Arc<Env>,
    pub source: String,
}

/// The fields of `request` an approval condition may read.
const REQUEST_FIELDS: &[&str] = &[
    "path",
    "actions",
    "database",
    "duration_seconds",
    "reason",
    "requester",
];
const PRINCIPAL_FIELDS: &[&str] = &["subject", "email", "groups", "issuer", "claims"];

/// What an approval condition sees of the request.
pub struct ApprovalInput<'a> {
    pub path: &'a str,
    pub actions: &'a [String],
    pub database: &'a str,
    pub duration: Duration,
    pub reason: &'a str,
    pub requester: &'a Principal,
    /// The catalog a catalog-bound `approvers.who` or `break_glass` is
    /// judged against (`None`: it matches nobody).
    pub catalog: Option<&'a crate::catalog::View>,
}

impl ApprovalCondition {
    fn compile(env: &Arc<Env>, source: &str) -> Result<ApprovalCondition, Vec<String>> {
        let program = env
            .compile(source)
            .map_err(|e| vec![format!("`approvers.when` is not valid CEL: {e}")])?;
        let mut errors = Vec::new();
        for (var, field) in references(&program) {
            let allowed = match var.as_str() {
                "request" => REQUEST_FIELDS,
                "approver" => PRINCIPAL_FIELDS,
                other => {
                    errors.push(format!(
                        "`approvers.when` references unknown variable `{other}` (known: request, approver)"
                    ));
                    continue;
                }
            };
            if let Some(field) = field
                && !allowed.contains(&field.as_str())
            {
                errors.push(format!(
                    "`approvers.when` reads unknown field `{var}.{field}` (known: {})",
                    allowed.join(", ")
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ApprovalCondition {
            program,
            env: Arc::clone(env),
            source: source.to_string(),
        })
    }

    /// True only when the expression yields `true` (an error refuses).
    pub fn holds(&self, request: &ApprovalInput, approver: &Principal) -> bool {
        let requester = cel::to_value(request.requester).unwrap_or(Value::Null);
        let fields: HashMap<&str, Value> = HashMap::from([
            ("path", Value::from(request.path)),
            (
                "actions",
                Value::from(
                    request
                        .actions
                        .iter()
                        .map(|a| Value::from(a.as_str()))
                        .collect::<Vec<_>>(),
                ),
            ),
            ("database", Value::from(request.database)),
            (
                "duration_seconds",
                Value::Int(i64::try_from(request.duration.as_secs()).unwrap_or(i64::MAX)),
            ),
            ("reason", Value::from(request.reason)),
            ("requester", requester),
        ]);
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("request", fields);
        context.add_variable_from_value("approver", cel::to_value(approver).unwrap_or(Value::Null));
        matches!(self.program.execute(&context), Ok(Value::Bool(true)))
    }
}

/// Check every `requestable:` entry of every source; `rule_ids` may not
/// be reused (a grant's decisions name its entry as their rule).
pub fn compile_requestable(
    env: &Arc<Env>,
    sources: &[Source],
    rule_ids: &[&str],
    errors: &mut Vec<super::format::PolicyError>,
) -> Vec<Requestable> {
    let mut out: Vec<Requestable> = Vec::new();
    for source in sources {
        for raw in &source.file.requestable {
            let mut problems = Vec::new();
            if rule_ids.contains(&raw.id.as_str()) || out.iter().any(|r| r.id == raw.id) {
                problems.push(format!("duplicate id `{}`", raw.id));
            }
            let entry = compile_entry(env, raw, &mut problems);
            for message in problems {
                errors.push(super::format::PolicyError {
                    file: source.name.clone(),
                    line: requestable_line(&source.text, &raw.id),
                    message: format!("requestable `{}`: {message}", raw.id),
                });
            }
            out.extend(entry);
        }
    }
    out
}

fn compile_entry(
    env: &Arc<Env>,
    raw: &RawRequestable,
    problems: &mut Vec<String>,
) -> Option<Requestable> {
    let before = problems.len();
    if raw.id.is_empty() || raw.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push("`id` must be non-empty, without spaces".into());
    }
    let pattern = Pattern::parse(&raw.pattern)
        .map_err(|e| problems.push(format!("`match: {}` {e}", raw.pattern)))
        .ok();
    let actions = Actions::parse_all(&raw.actions)
        .map_err(|e| problems.push(format!("`actions`: {e}")))
        .ok();
    let mut who_problems = Vec::new();
    // A catalog-bound `who` names its entity with the single-segment
    // wildcards of `match`, bound from the requested path.
    let single: Vec<&str> = pattern.iter().flat_map(|p| p.single_bindings()).collect();
    let who = match &raw.who {
        Some(who) => compile_who(Some(who), &single, &mut who_problems),
        None => {
            problems.push("`who` (who may ask) is required".into());
            None
        }
    };
    let approvers = match &raw.approvers {
        None => {
            problems.push("`approvers` is required (`approvers: {who: …, min: 1}`)".into());
            None
        }
        Some(a) => {
            let who = match &a.who {
                Some(who) => compile_who(Some(who), &single, &mut who_problems),
                None => {
                    problems.push("`approvers.who` is required".into());
                    None
                }
            };
            if a.min == 0 {
                problems.push("`approvers.min` must be at least 1".into());
            }
            let when = a.when.as_deref().and_then(|source| {
                ApprovalCondition::compile(env, source)
                    .map_err(|e| problems.extend(e))
                    .ok()
            });
            who.map(|who| Approvers {
                who,
                min: a.min,
                when,
            })
        }
    };
    let break_glass = raw
        .break_glass
        .as_ref()
        .map(|w| compile_who(Some(w), &single, &mut who_problems));
    problems.extend(who_problems.into_iter().map(|(_, m)| m));
    let max_duration = match raw.max_duration.as_deref() {
        None => {
            problems.push("`max_duration` is required (e.g. `4h`)".into());
            None
        }
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                problems.push("`max_duration` must be positive".into());
                None
            }
            Ok(d) if d > LONGEST => {
                problems.push("`max_duration` may be at most 7 days".into());
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!(
                    "`max_duration: {text}` is not a duration ({e}); write e.g. `4h`"
                ));
                None
            }
        },
    };
    if raw.database.as_deref().is_some_and(str::is_empty) {
        problems.push("`database` must not be empty".into());
    }
    if problems.len() > before {
        return None;
    }
    Some(Requestable {
        id: raw.id.clone(),
        pattern: pattern?,
        actions: actions?,
        database: raw.database.clone(),
        who: who?,
        approvers: approvers?,
        max_duration: max_duration?,
        reason_required: raw.reason == Some(RawReason::Required),
        break_glass: match break_glass {
            Some(who) => Some(who?),
            None => None,
        },
    })
}

/// What a requester asks for.
#[derive(Clone)]
pub struct Asked<'a> {
    pub database: &'a Database,
    pub path: &'a str,
    pub actions: &'a [String],
    pub duration: Duration,
    pub reason: &'a str,
    /// The catalog a catalog-bound `who` is judged against (`None`: it
    /// matches nobody).
    pub catalog: Option<&'a crate::catalog::View>,
}

/// Why a request cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    #[error("{0}")]
    BadPath(String),
    #[error("actions {0}")]
    BadActions(String),
    #[error(
        "no requestable entry lets this caller ask for these actions on this path and database"
    )]
    OutsideEntries,
    #[error("duration over the entry's max_duration of {0}")]
    OverMaxDuration(String),
    #[error("duration must be positive")]
    ZeroDuration,
    #[error("a reason is required")]
    ReasonRequired,
}

/// A request checked against the table: the entry it falls under, the
/// granted scope and actions.
pub struct Fits<'t> {
    pub entry: &'t Requestable,
    pub pattern: Pattern,
    pub actions: Actions,
}

impl super::Table {
    /// The first entry (in table order) under which `principal` may ask
    /// for `asked`: who may ask, the database, a scope within its `match`,
    /// actions among its own; then its duration and reason rules.
    pub fn fit_request<'t>(
        &'t self,
        principal: &Principal,
        asked: &Asked,
    ) -> Result<Fits<'t>, RequestRefused> {
        let pattern = requested_pattern(asked.path).map_err(RequestRefused::BadPath)?;
        let actions = Actions::parse_all(asked.actions).map_err(RequestRefused::BadActions)?;
        let entry = self
            .requestable
            .iter()
            .find(|e| {
                e.applies_to(asked.database)
                    && e.actions.includes(actions)
                    && within(&pattern.segments, &e.pattern.segments)
                    && e.who.matches(principal, asked.catalog, |name| {
                        asked_binding(&e.pattern, &pattern, name)
                    })
            })
            .ok_or(RequestRefused::OutsideEntries)?;
        if asked.duration.is_zero() {
            return Err(RequestRefused::ZeroDuration);
        }
        if asked.duration > entry.max_duration {
            return Err(RequestRefused::OverMaxDuration(
                humantime::format_duration(entry.max_duration).to_string(),
            ));
        }
        if entry.reason_required && asked.reason.trim().is_empty() {
            return Err(RequestRefused::ReasonRequired);
        }
        Ok(Fits {
            entry,
            pattern,
            actions,
        })
    }
}

/// The line of `- id: <id>` under `requestable:`.
fn requestable_line(text: &str, id: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == "requestable:")?;
    (start..lines.len())
        .find(|&n| {
            let t = lines[n].trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
            t.strip_prefix("id:")
                .is_some_and(|rest| rest.trim().trim_matches(['"', '\'']) == id)
        })
        .or(Some(start))
        .map(|n| n + 1)
}

/// A requested path as a pattern: `/teams/payments/deployments/**` (any
/// depth below), `*` (any one id), a concrete document path, or the
/// pattern syntax itself.
pub fn requested_pattern(path: &str) -> Result<Pattern, String> {
    let mut n = 0;
    let text: Vec<String> = path
        .split('/')
        .map(|s| match s {
            "**" => "{rest=**}".to_string(),
            "*" => {
                n += 1;
                format!("{{any{n}}}")
            }
            other => other.to_string(),
        })
        .collect();
    Pattern::parse(&text.join("/")).map_err(|e| format!("`{path}` {e}"))
}

/// What the requested scope `asked` (within `entry`) binds the entry's
/// single-segment wildcard `name` to: the id at its place, when the
/// request names one. A request that leaves it a wildcard or `**` binds
/// nothing (a catalog-bound `who` then matches nobody); so does a
/// wildcard after the entry's `**`, whose place a request does not fix.
pub fn asked_binding<'p>(entry: &Pattern, asked: &'p Pattern, name: &str) -> Option<&'p str> {
    for (e, a) in entry.segments.iter().zip(&asked.segments) {
        match (e, a) {
            (Segment::Recursive(_), _) | (_, Segment::Recursive(_)) => return None,
            (Segment::Wildcard(n), a) if n == name => {
                return match a {
                    Segment::Literal(id) => Some(id.as_str()),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    None
}

/// Every path `inner` matches is matched by `outer` (sound, and exact for
/// patterns with at most one recursive segment each).
pub fn within(inner: &[Segment], outer: &[Segment]) -> bool {
    match (inner.split_first(), outer.split_first()) {
        (None, None) => true,
        (_, Some((Segment::Recursive(_), rest))) => {
            (0..=inner.len()).any(|k| within(&inner[k..], rest))
        }
        (None, Some(_)) | (Some(_), None) => false,
        (Some((Segment::Recursive(_), _)), Some(_)) => false,
        (Some((i, irest)), Some((o, orest))) => {
            let fits = match (i, o) {
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Literal(_) | Segment::Wildcard(_), Segment::Wildcard(_)) => true,
                _ => false,
            };
            fits && within(irest, orest)
        }
    }
}

/// The pattern covers every path of the scope `tokens` stands for (what
/// the table's trie walk computes, for one pattern).
pub fn covers(segments: &[Segment], tokens: &[Token]) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return tokens.is_empty();
    };
    match first {
        Segment::Recursive(_) => (0..=tokens.len()).any(|end| covers(rest, &tokens[end..])),
        Segment::Literal(id) => {
            matches!(tokens.first(), Some(Token::Id(t)) if t == id) && covers(rest, &tokens[1..])
        }
        Segment::Wildcard(_) => {
            matches!(tokens.first(), Some(Token::Id(_) | Token::AnyId))
                && covers(rest, &tokens[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        requested_pattern(text).unwrap()
    }

    #[test]
    fn narrowing_stays_within() {
        let entry = p("/teams/{team}/deployments/{rest=**}");
        for inner in [
            "/teams/payments/deployments/**",
            "/teams/payments/deployments/d1",
            "/teams/*/deployments/**",
            "/teams/payments/deployments/d1/logs/*",
        ] {
            assert!(within(&p(inner).segments, &entry.segments), "{inner}");
        }
        for outside in [
            "/teams/payments/**",
            "/**",
            "/teams/payments/secrets/s1",
            "/other/payments/deployments/d1",
        ] {
            assert!(!within(&p(outside).segments, &entry.segments), "{outside}");
        }
    }

    #[test]
    fn shorthand_becomes_a_pattern() {
        assert_eq!(
            p("/teams/*/deployments/**").to_string(),
            "/teams/{any1}/deployments/{rest=**}"
        );
        assert!(requested_pattern("/teams").is_err());
    }
}
