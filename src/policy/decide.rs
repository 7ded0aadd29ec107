//! Judging targets against a [`Table`]: an applicable deny beats any allow,
//! default deny, and every target of a request must be allowed.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use std::borrow::Cow;

use cel::Value;

use super::compile::{Effect, Rule};
use super::condition::{Input, Variables};
use super::grants::{Grant, PrincipalGrants};
use super::mask::{Masked, Merge};
use super::pattern::Segment;
use super::requestable::{asked_binding, covers};
use super::seen::Seen;
use super::table::{Match, Table, Token, tokens};
use super::{Decided, Decision, Shadow, TargetDecision, Why};
use crate::authn::Principal;
use crate::model::data::Stored;
use crate::model::{Database, Method, Operation, Scope, Target};

/// The verdict on one target, with what the cache and the upstream need.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: TargetDecision,
    /// The allowing rule's `as:`.
    pub upstream_account: Option<String>,
    /// False when a condition that reads `request.time` or documents was
    /// evaluated: the verdict holds for this request only.
    pub cacheable: bool,
    /// The fields every allowing rule hides (`None`: none, or no rule
    /// has a mask).
    pub mask: Option<Arc<Masked>>,
}

/// Allowed, the deciding rule, why, the allowing rule's `as:`, and the
/// mask every allowing rule agrees on.
type Judged<'t> = (
    bool,
    Option<&'t Arc<str>>,
    Why,
    Option<&'t String>,
    Option<Masked>,
);

/// The per-request context shared by all targets, built lazily: only
/// conditions need it.
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub database: &'a Database,
    pub method: Method,
    op: &'a Operation,
    /// The stored documents read for this request, if any were.
    stored: Option<&'a Stored>,
    /// The catalog index catalog-bound rules judge against (`None`: none
    /// loaded; they fail closed).
    pub(crate) catalog: Option<&'a crate::catalog::View>,
    /// The caller's active grants, if any.
    pub grants: Option<&'a PrincipalGrants>,
    input: OnceCell<Input>,
    /// The caller as the catalog knows it, resolved at the first
    /// catalog-bound rule and kept for every other rule and target.
    catalog_caller: OnceCell<crate::catalog::Caller>,
    /// The rules' verdicts already judged for this request's targets, by
    /// what they depend on ([`Table::memo_key`]).
    memo: RefCell<HashMap<Vec<u8>, Arc<Verdict>, foldhash::fast::RandomState>>,
    /// The rules the last target's scope matched, for the next target of
    /// the same scope (an upsert is judged as create and as update).
    matched: RefCell<Option<(u64, Scope, Arc<Matched>)>>,
}

/// The rules whose patterns cover a scope, and the deny rules whose
/// patterns overlap it: what the table's tries give for its tokens alone.
pub(super) struct Matched {
    covering: Vec<Match>,
    denies: Vec<usize>,
}

/// What a target's verdict is judged from: its path's tokens, the rules
/// whose patterns cover it, the deny rules whose patterns overlap it, and
/// its memo key, when it has one ([`Table::memo_key`]).
pub(super) struct Prepared<'t> {
    tokens: Vec<Token<'t>>,
    matched: Arc<Matched>,
    key: Option<Vec<u8>>,
}

impl<'a> Request<'a> {
    pub fn new(principal: &'a Principal, op: &'a Operation) -> Request<'a> {
        Request {
            principal,
            database: &op.database,
            method: op.method,
            op,
            stored: None,
            catalog: None,
            grants: None,
            input: OnceCell::new(),
            catalog_caller: OnceCell::new(),
            memo: RefCell::default(),
            matched: RefCell::default(),
        }
    }

    /// The same request, judged against this catalog view.
    pub fn with_catalog(self, catalog: Option<&'a crate::catalog::View>) -> Self {
        Request { catalog, ..self }
    }

    /// This request, judged with the caller's `grants` too.
    pub fn granted(self, grants: Option<&'a PrincipalGrants>) -> Self {
        Request { grants, ..self }
    }

    /// Whether the operation names more than one target (its verdicts may
    /// then be memoized for one another).
    pub(super) fn many_targets(&self) -> bool {
        self.op.targets.len() > 1
    }

    /// The generation of the caller's grants (`0` with none).
    pub fn grants_generation(&self) -> u64 {
        self.grants.map_or(0, |g| g.generation)
    }

    /// A request whose rules see these stored documents.
    pub fn with_stored(principal: &'a Principal, op: &'a Operation, stored: &'a Stored) -> Self {
        Request {
            stored: Some(stored),
            ..Request::new(principal, op)
        }
    }

    /// The same caller, catalog, grants and stored documents, judged for
    /// `op` instead (the read a write's answer is judged as).
    pub(super) fn reading<'b>(&'b self, op: &'b Operation) -> Request<'b> {
        Request {
            principal: self.principal,
            database: &op.database,
            method: op.method,
            op,
            stored: self.stored,
            catalog: self.catalog,
            grants: self.grants,
            input: OnceCell::new(),
            catalog_caller: self.catalog_caller.clone(),
            memo: RefCell::default(),
            matched: RefCell::default(),
        }
    }

    /// The caller resolved against `view` (this request's catalog view).
    fn catalog_caller(&self, view: &crate::catalog::View) -> crate::catalog::Caller {
        *self
            .catalog_caller
            .get_or_init(|| view.caller(self.principal))
    }

    fn input(&self) -> &Input {
        self.input
            .get_or_init(|| Input::new(self.principal, self.method))
    }
}

impl Table {
    /// Judge a whole operation, uncached (`policy check`, `policy test`).
    pub fn decide(&self, principal: &Principal, op: &Operation) -> Decision {
        self.decide_request(&Request::new(principal, op))
    }

    /// [`Table::decide`] with the stored documents the rules may read.
    pub fn decide_stored(
        &self,
        principal: &Principal,
        op: &Operation,
        stored: &Stored,
    ) -> Decision {
        self.decide_request(&Request::with_stored(principal, op, stored))
    }

    /// [`Table::decide`] with catalog-bound rules judged against `catalog`.
    pub fn decide_catalog(
        &self,
        principal: &Principal,
        op: &Operation,
        catalog: Option<&crate::catalog::View>,
    ) -> Decision {
        self.decide_request(&Request::new(principal, op).with_catalog(catalog))
    }

    /// Judge a whole operation as `req` describes it (stored documents,
    /// catalog, grants), uncached (`policy check`, `policy test`).
    pub fn decide_with(&self, req: &Request) -> Decision {
        self.decide_request(req)
    }

    pub(super) fn decide_request(&self, req: &Request) -> Decision {
        let op = req.op;
        let verdicts: Vec<Arc<Verdict>> = op
            .targets
            .iter()
            .map(|t| self.decide_target(req, t))
            .collect();
        let mut decision = combine(&op.targets, verdicts);
        super::mask::guard(self, req, op, &mut decision);
        super::mask::answer(op, &mut decision, |read, target| {
            self.decide_target(&req.reading(read), target)
        });
        decision
    }

    /// Judge one target. A deny rule applies when its pattern touches any
    /// path of the scope; an allow rule only when it covers all of them.
    /// Shadow rules are judged apart and never change the verdict.
    pub fn decide_target(&self, req: &Request, target: &Target) -> Arc<Verdict> {
        let prepared = self.prepare(req, target);
        self.decide_prepared(req, target, &prepared)
    }

    /// The rules that bear on `target`, and what their verdict depends on
    /// (a memo key only when the request has other targets to share it).
    pub(super) fn prepare<'t>(&self, req: &Request, target: &'t Target) -> Prepared<'t> {
        let tokens = tokens(&target.scope);
        let matched = self.matched(req, &target.scope, &tokens);
        let key = req
            .many_targets()
            .then(|| self.memo_key(target, &tokens, &matched.covering, &matched.denies))
            .flatten();
        Prepared {
            tokens,
            matched,
            key,
        }
    }

    /// The rules `scope` matches, walked once for consecutive targets of
    /// one scope in a request of many.
    fn matched(&self, req: &Request, scope: &Scope, tokens: &[Token]) -> Arc<Matched> {
        if let Some((epoch, last, matched)) = &*req.matched.borrow()
            && *epoch == self.epoch
            && last == scope
        {
            return Arc::clone(matched);
        }
        let matched = Arc::new(Matched {
            covering: self.lookup(tokens),
            denies: self.deny_overlaps(tokens),
        });
        if req.many_targets() {
            *req.matched.borrow_mut() = Some((self.epoch, scope.clone(), Arc::clone(&matched)));
        }
        matched
    }

    /// The verdict on `target` when this request already judged a target
    /// whose verdict depends on the same things: that verdict itself,
    /// shared (a verdict names no target), unless a grant of the caller
    /// allows this target (grants are judged afresh).
    pub(super) fn memoized(
        &self,
        req: &Request,
        target: &Target,
        prepared: &Prepared,
    ) -> Option<Arc<Verdict>> {
        let key = prepared.key.as_ref()?;
        let judged = Arc::clone(req.memo.borrow().get(key)?);
        Some(self.with_grants(req, target, prepared, judged))
    }

    /// Keep a verdict the shared cache held for `prepared`'s target as the
    /// rules' verdict on every other target of its memo key. A cached
    /// verdict is never a grant's (those are judged afresh, uncached), so
    /// it is the rules' verdict itself; grants are still judged per target.
    pub(super) fn remember(&self, req: &Request, prepared: &Prepared, cached: &Arc<Verdict>) {
        let Some(key) = &prepared.key else {
            return;
        };
        debug_assert!(cached.cacheable && cached.decision.grant.is_none());
        req.memo
            .borrow_mut()
            .entry(key.clone())
            .or_insert_with(|| Arc::clone(cached));
    }

    /// Judge `target` (or take the rules' verdict from the memo).
    pub(super) fn decide_prepared(
        &self,
        req: &Request,
        target: &Target,
        prepared: &Prepared,
    ) -> Arc<Verdict> {
        if let Some(verdict) = self.memoized(req, target, prepared) {
            return verdict;
        }
        let judged = Arc::new(self.judge_rules(req, target, prepared));
        // Only what the key names was read: the same key, the same verdict
        // (shared), and one that holds beyond this target.
        if let Some(key) = &prepared.key {
            let shared = if judged.cacheable {
                Arc::clone(&judged)
            } else {
                Arc::new(Verdict {
                    cacheable: true,
                    ..Verdict::clone(&judged)
                })
            };
            req.memo.borrow_mut().insert(key.clone(), shared);
        }
        self.with_grants(req, target, prepared, judged)
    }

    /// The rules' verdict on `target`, or the caller's grant's where the
    /// rules refuse it and no deny rule matched.
    fn with_grants(
        &self,
        req: &Request,
        target: &Target,
        prepared: &Prepared,
        judged: Arc<Verdict>,
    ) -> Arc<Verdict> {
        let d = &judged.decision;
        // Grants only add allows: a deny rule still wins.
        if d.allowed || d.why == Why::DenyMatched {
            return judged;
        }
        let Some(g) = self.grant_allowing(req, target, &prepared.tokens) else {
            return judged;
        };
        // Exact expiry: a grant's allow is judged afresh every time, and is
        // never cached. It shows the whole document: it names no mask of
        // its own.
        Arc::new(Verdict {
            decision: TargetDecision {
                allowed: true,
                rule: Some(Arc::from(g.entry.as_str())),
                why: Why::Granted,
                grant: Some(g.id.clone()),
                shadow: d.shadow.clone(),
            },
            upstream_account: judged.upstream_account.clone(),
            cacheable: false,
            mask: judged.mask.clone(),
        })
    }

    /// The enforced rules' verdict on a target, and the shadow rules'
    /// (before grants).
    fn judge_rules(&self, req: &Request, target: &Target, prepared: &Prepared) -> Verdict {
        let mut cacheable = true;
        let enforced = self.judge(req, target, prepared, false, &mut cacheable);
        let shadow = self
            .has_shadow()
            .then(|| self.judge(req, target, prepared, true, &mut cacheable));
        let shadow = shadow.and_then(|(allowed, rule, _, _, _)| {
            let rule = rule.filter(|id| self.is_shadow(id))?;
            Some(Shadow {
                allowed,
                rule: rule.to_string(),
            })
        });
        let (allowed, rule, why, account, mask) = enforced;
        Verdict {
            decision: TargetDecision {
                allowed,
                rule: rule.cloned(),
                why,
                grant: None,
                shadow,
            },
            upstream_account: account.cloned(),
            cacheable,
            mask: mask.map(Arc::new),
        }
    }

    /// What the rules' verdict on `target` depends on within one request,
    /// when that is less than the target itself: its access, the rules
    /// whose patterns cover or overlap it, and the values of the path
    /// variables their conditions read. `None` (judge it apart) when a rule
    /// there reads the clock or documents, the whole `path`, or the catalog
    /// (whose entity refs are made of the bindings).
    fn memo_key(
        &self,
        target: &Target,
        tokens: &[Token],
        covering: &[Match],
        denies: &[usize],
    ) -> Option<Vec<u8>> {
        fn push_usize(key: &mut Vec<u8>, n: usize) {
            key.extend_from_slice(&(n as u64).to_le_bytes());
        }
        let mut key = Vec::with_capacity(64);
        key.push(target.access as u8);
        let rule = |key: &mut Vec<u8>, index: usize, m: Option<&Match>| -> Option<()> {
            let rule = &self.rules[index];
            if rule.who.catalog.is_some() {
                return None;
            }
            push_usize(key, index);
            let Some(condition) = &rule.when else {
                return Some(());
            };
            if condition.reads_time || condition.data.any() {
                return None;
            }
            for (var, field) in &condition.references {
                if var != "path" {
                    continue;
                }
                // The whole `path` (`path[name]`, `path.size()`).
                let name = field.as_deref()?;
                match m.and_then(|m| self.binding_value(m, tokens, name)) {
                    Some(value) => {
                        key.push(1);
                        push_usize(key, value.len());
                        key.extend_from_slice(value.as_bytes());
                    }
                    None => key.push(0),
                }
            }
            Some(())
        };
        key.push(b'd');
        push_usize(&mut key, denies.len());
        for &index in denies {
            rule(&mut key, index, covering.iter().find(|m| m.rule == index))?;
        }
        key.push(b'c');
        push_usize(&mut key, covering.len());
        for m in covering {
            rule(&mut key, m.rule, Some(m))?;
        }
        Some(key)
    }

    /// What `path.<name>` is for match `m`, as [`Table::bindings`] binds
    /// it (the last wildcard of that name; a recursive one's ids joined by
    /// `/`; unbound where it stands for many ids).
    fn binding_value<'t>(
        &self,
        m: &Match,
        tokens: &[Token<'t>],
        name: &str,
    ) -> Option<Cow<'t, str>> {
        let (rec_start, rec_end) = m.span.unwrap_or((tokens.len(), tokens.len()));
        let mut pos = 0;
        let mut value = None;
        for segment in &self.rules[m.rule].pattern.segments {
            match segment {
                Segment::Literal(_) => pos += 1,
                Segment::Wildcard(n) => {
                    if n == name
                        && let Some(Token::Id(id)) = tokens.get(pos)
                    {
                        value = Some(Cow::Borrowed(*id));
                    }
                    pos += 1;
                }
                Segment::Recursive(n) => {
                    if n == name {
                        let absorbed = tokens.get(rec_start..rec_end).unwrap_or_default();
                        if let Some(ids) = super::table::ids_of(absorbed) {
                            value = Some(Cow::Owned(ids.join("/")));
                        }
                    }
                    pos = rec_end;
                }
            }
        }
        value
    }

    /// The caller's first active grant that covers the target: for its
    /// principal and database, its actions and scope, and still within its
    /// `requestable` entry as the table now has it (an entry removed or
    /// narrowed by a reload bounds the grants made under it).
    fn grant_allowing<'g>(
        &self,
        req: &Request<'g>,
        target: &Target,
        tokens: &[Token],
    ) -> Option<&'g Grant> {
        let grants = req.grants?;
        let now = SystemTime::now();
        grants.grants.iter().map(AsRef::as_ref).find(|g| {
            now < g.expires_at
                && g.is_for(req.principal)
                && g.database == *req.database
                && g.actions.contains(target.access)
                && covers(&g.pattern.segments, tokens)
                && self.requestable(&g.entry).is_some_and(|entry| {
                    entry.actions.contains(target.access)
                        && entry.applies_to(req.database)
                        && covers(&entry.pattern.segments, tokens)
                        && entry.who.matches(req.principal, req.catalog, |name| {
                            asked_binding(&entry.pattern, &g.pattern, name)
                        })
                })
        })
    }

    /// The verdict of the enforced rules, or of every rule with `shadow`.
    fn judge<'t>(
        &'t self,
        req: &Request,
        target: &Target,
        prepared: &Prepared,
        shadow: bool,
        cacheable: &mut bool,
    ) -> Judged<'t> {
        let (tokens, covering) = (&prepared.tokens[..], &prepared.matched.covering[..]);
        let applies = |rule: &Rule, m: Option<&Match>| {
            (shadow || !rule.shadow)
                && rule.actions.contains(target.access)
                && rule.applies_to(req.database)
                && rule.who.matches_except_catalog(req.principal)
                && rule.who.catalog.as_ref().is_none_or(|c| {
                    let told = req.catalog.map(|view| {
                        c.matches_caller(req.catalog_caller(view), view, |name| {
                            m.and_then(|m| self.binding(m, tokens, name))
                        })
                    });
                    // Untellable: a deny applies, an allow does not.
                    told.unwrap_or(rule.effect == Effect::Deny)
                })
        };
        let seen = OnceCell::new();
        let mut holds = |rule: &Rule, m: Option<&Match>| -> Result<bool, String> {
            let Some(condition) = &rule.when else {
                return Ok(true);
            };
            *cacheable &= !condition.reads_time && !condition.data.any();
            // Classified for a table whose rules read no written fields
            // (a reload came between): what they would read is unknown, so
            // the allow does not hold and the deny applies, whatever CEL
            // would make of a missing `request.resource` (`has()` is false).
            if (condition.data.written || condition.data.changed) && !req.op.fields_captured() {
                return Err("the writes' fields were not captured".into());
            }
            // A deny that only overlaps the scope has no concrete bindings:
            // a condition reading `path` then fails, and the deny applies.
            let path = match m {
                Some(m) => self.bindings(m, tokens),
                None => Value::from(HashMap::<String, Value>::new()),
            };
            let empty = Seen::default();
            let seen = if condition.data.any() {
                seen.get_or_init(|| Seen::for_uses(req.op, target, req.stored, self.data_uses))
            } else {
                &empty
            };
            let vars = Variables {
                input: req.input(),
                access: target.access,
                path,
                seen,
            };
            condition.eval(&self.env, vars)
        };
        for &index in &prepared.matched.denies {
            let rule = &self.rules[index];
            let m = covering.iter().find(|m| m.rule == index);
            if !applies(rule, m) {
                continue;
            }
            // A deny whose condition cannot be evaluated still applies: fail closed.
            if holds(rule, m).unwrap_or(true) {
                return (false, Some(&rule.id), Why::DenyMatched, None, None);
            }
        }
        let mut condition_false: Option<&Arc<str>> = None;
        let mut allowing: Option<(&Rule, Merge)> = None;
        for m in covering {
            let rule = &self.rules[m.rule];
            if rule.effect != Effect::Allow || !applies(rule, Some(m)) {
                continue;
            }
            // Once a rule allows, the others only matter for the mask: the
            // fields hidden are those every allowing rule hides.
            if let Some((_, merge)) = &allowing
                && merge.settled()
            {
                break;
            }
            if holds(rule, Some(m)).unwrap_or(false) {
                match &mut allowing {
                    None => allowing = Some((rule, Merge::first(rule))),
                    Some((_, merge)) => merge.also(rule),
                }
            } else if allowing.is_none() {
                condition_false.get_or_insert(&rule.id);
            }
        }
        if let Some((rule, merge)) = allowing {
            return (
                true,
                Some(&rule.id),
                Why::Allowed,
                rule.upstream_account.as_ref(),
                merge.finish(),
            );
        }
        match condition_false {
            Some(id) => (false, Some(id), Why::ConditionFalse, None, None),
            None => (false, None, Why::NoRuleMatched, None, None),
        }
    }
}

/// Combine per-target verdicts: allowed only if every target is and all
/// allowing rules agree on the upstream account.
pub fn combine(targets: &[Target], shared: Vec<Arc<Verdict>>) -> Decision {
    let refusal = shared.iter().find(|v| !v.decision.allowed).map(|v| {
        let d = &v.decision;
        let id = d.rule.as_deref().unwrap_or_default();
        match d.why {
            Why::DenyMatched => format!("rule:{id}"),
            Why::ConditionFalse => format!("condition_false:{id}"),
            Why::NoRuleMatched | Why::Allowed | Why::Granted => "no_rule_matched".to_string(),
        }
    });
    let mut accounts = shared.iter().map(|v| &v.upstream_account);
    let first = accounts.next().cloned().flatten();
    let mixed = accounts.any(|a| *a != first);
    let reason = refusal.or_else(|| mixed.then(|| "mixed_upstream_accounts".to_string()));
    let shadow = shadow_decision(&shared);
    Decision {
        allowed: reason.is_none(),
        targets: targets
            .iter()
            .zip(shared)
            .map(|(target, verdict)| Decided::new(target.clone(), verdict))
            .collect(),
        upstream_account: if reason.is_none() { first } else { None },
        reason,
        shadow,
        answer: Vec::new(),
    }
}

/// What the request's decision would be with the shadow rules enforced,
/// when a shadow rule would decide some target; the rule named is one that
/// would refuse, if any does.
fn shadow_decision(verdicts: &[Arc<Verdict>]) -> Option<Shadow> {
    let shadows: Vec<&Shadow> = verdicts
        .iter()
        .filter_map(|v| v.decision.shadow.as_ref())
        .collect();
    let first = shadows.first()?;
    let allowed = verdicts.iter().all(|v| match &v.decision.shadow {
        Some(s) => s.allowed,
        None => v.decision.allowed,
    });
    let rule = match shadows.iter().find(|s| !s.allowed) {
        Some(refusing) if !allowed => refusing.rule.clone(),
        _ => first.rule.clone(),
    };
    Some(Shadow { allowed, rule })
}
