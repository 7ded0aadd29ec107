//! Judging targets against a [`Table`]: an applicable deny beats any allow,
//! default deny, and every target of a request must be allowed.

use std::cell::OnceCell;

use cel::Value;

use super::compile::Effect;
use super::condition::Input;
use super::table::{Table, tokens};
use super::{Decision, TargetDecision, Why};
use crate::authn::Principal;
use crate::firestore::{Database, Method, Operation, Target};

/// The verdict on one target, with what the cache and the upstream need.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: TargetDecision,
    /// The allowing rule's `as:`.
    pub upstream_account: Option<String>,
    /// False when a condition that reads `request.time` was evaluated.
    pub cacheable: bool,
}

/// The per-request context shared by all targets, built lazily: only
/// conditions need it.
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub database: &'a Database,
    pub method: Method,
    input: OnceCell<Input>,
}

impl<'a> Request<'a> {
    pub fn new(principal: &'a Principal, op: &'a Operation) -> Request<'a> {
        Request {
            principal,
            database: &op.database,
            method: op.method,
            input: OnceCell::new(),
        }
    }

    fn input(&self) -> &Input {
        self.input.get_or_init(|| Input::new(self.principal, self.method))
    }
}

impl Table {
    /// Judge a whole operation, uncached (`policy check`, `policy test`).
    pub fn decide(&self, principal: &Principal, op: &Operation) -> Decision {
        let req = Request::new(principal, op);
        let verdicts: Vec<Verdict> = op.targets.iter().map(|t| self.decide_target(&req, t)).collect();
        combine(&verdicts)
    }

    /// Judge one target: deny rules first, then the first allow rule whose
    /// condition holds.
    pub fn decide_target(&self, req: &Request, target: &Target) -> Verdict {
        let tokens = tokens(&target.scope);
        let mut cacheable = true;
        let mut condition_false: Option<&str> = None;
        let applicable: Vec<_> = self
            .lookup(&tokens)
            .into_iter()
            .filter(|m| {
                let rule = &self.rules[m.rule];
                rule.actions.contains(target.access)
                    && rule.applies_to(req.database)
                    && rule.who.matches(req.principal)
            })
            .collect();
        let mut holds = |m: &super::table::Match| -> Result<bool, String> {
            let rule = &self.rules[m.rule];
            let Some(condition) = &rule.when else {
                return Ok(true);
            };
            cacheable &= !condition.reads_time;
            let path: Value = self.bindings(m, &tokens);
            condition.eval(&self.env, req.input(), target.access, path)
        };
        let verdict = |allowed, rule: Option<&str>, why, account: Option<&String>| {
            (allowed, rule.map(String::from), why, account.cloned())
        };
        let mut outcome = None;
        for effect in [Effect::Deny, Effect::Allow] {
            for m in applicable.iter().filter(|m| self.rules[m.rule].effect == effect) {
                let rule = &self.rules[m.rule];
                let result = holds(m);
                match (effect, result) {
                    // A deny whose condition cannot be evaluated still
                    // applies: fail closed.
                    (Effect::Deny, Ok(true) | Err(_)) => {
                        outcome = Some(verdict(false, Some(&rule.id), Why::DenyMatched, None));
                    }
                    (Effect::Allow, Ok(true)) => {
                        let account = rule.upstream_account.as_ref();
                        outcome = Some(verdict(true, Some(&rule.id), Why::Allowed, account));
                    }
                    (Effect::Deny, Ok(false)) => {}
                    (Effect::Allow, Ok(false) | Err(_)) => {
                        condition_false.get_or_insert(&rule.id);
                    }
                }
                if outcome.is_some() {
                    break;
                }
            }
            if outcome.is_some() {
                break;
            }
        }
        let (allowed, rule, why, upstream_account) = outcome.unwrap_or_else(|| match condition_false {
            Some(id) => verdict(false, Some(id), Why::ConditionFalse, None),
            None => verdict(false, None, Why::NoRuleMatched, None),
        });
        Verdict {
            decision: TargetDecision {
                target: target.clone(),
                allowed,
                rule,
                why,
            },
            upstream_account,
            cacheable,
        }
    }
}

/// Combine per-target verdicts: allowed only if every target is and all
/// allowing rules agree on the upstream account.
pub fn combine<V: AsRef<Verdict>>(verdicts: &[V]) -> Decision {
    let verdicts: Vec<&Verdict> = verdicts.iter().map(AsRef::as_ref).collect();
    let refusal = verdicts.iter().find(|v| !v.decision.allowed).map(|v| {
        let d = &v.decision;
        let id = d.rule.as_deref().unwrap_or_default();
        match d.why {
            Why::DenyMatched => format!("rule:{id}"),
            Why::ConditionFalse => format!("condition_false:{id}"),
            Why::NoRuleMatched | Why::Allowed => "no_rule_matched".to_string(),
        }
    });
    let mut accounts = verdicts.iter().map(|v| &v.upstream_account);
    let first = accounts.next().cloned().flatten();
    let mixed = accounts.any(|a| *a != first);
    let reason = refusal.or_else(|| mixed.then(|| "mixed_upstream_accounts".to_string()));
    Decision {
        allowed: reason.is_none(),
        targets: verdicts.iter().map(|v| v.decision.clone()).collect(),
        upstream_account: if reason.is_none() { first } else { None },
        reason,
    }
}

impl AsRef<Verdict> for Verdict {
    fn as_ref(&self) -> &Verdict {
        self
    }
}
