//! `policy test --coverage`: which rules no test case exercises, and which
//! outcomes of their conditions (whole, and each operand of `&&`, `||`,
//! `!` and `?:`) no case produces.

use std::collections::HashMap;
use std::fmt::Write as _;

use cel::Value;
use cel::common::ast::{Expr, IdedExpr, operators};
use serde::Serialize;

use super::Decision;
use super::compile::{Effect, Rule};
use super::condition::{Input, Variables};
use super::seen::Seen as Documents;
use super::table::{Table, tokens};
use crate::authn::Principal;
use crate::model::Operation;
use crate::model::data::Stored;

/// The outcomes seen of one boolean expression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub true_: bool,
    pub false_: bool,
}

impl Seen {
    fn note(&mut self, outcome: &Result<bool, String>) {
        match outcome {
            Ok(true) => self.true_ = true,
            // An error counts as false: that is how an allow treats it.
            Ok(false) | Err(_) => self.false_ = true,
        }
    }

    fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.true_ {
            out.push("true");
        }
        if !self.false_ {
            out.push("false");
        }
        out
    }
}

/// Coverage of one rule across a test run.
struct RuleCoverage {
    /// Targets this rule decided.
    decided: usize,
    /// The whole condition, then each branch, with its source text.
    condition: Option<(Seen, Vec<(String, Seen)>)>,
}

/// What a test run exercised of a table.
pub struct Coverage<'t> {
    table: &'t Table,
    rules: Vec<RuleCoverage>,
}

/// One gap: a rule never deciding, or a condition outcome never produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub rule: String,
    /// `None` for the rule itself; else the condition (`when`) or a branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The outcomes no case produced (`decided` for a rule never deciding).
    pub missing: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    pub rules: usize,
    pub rules_exercised: usize,
    pub gaps: Vec<Gap>,
}

impl<'t> Coverage<'t> {
    pub fn new(table: &'t Table) -> Coverage<'t> {
        let rules = table
            .rules
            .iter()
            .map(|rule| RuleCoverage {
                decided: 0,
                condition: rule.when.as_ref().map(|c| {
                    let labels = branches(c.program().expression())
                        .into_iter()
                        .map(|e| (snippet(rule, e), Seen::default()))
                        .collect();
                    (Seen::default(), labels)
                }),
            })
            .collect();
        Coverage { table, rules }
    }

    /// Record one case: the rules that decided its targets, and the
    /// conditions of every rule that applied to them, as the engine
    /// evaluates them.
    pub fn record(&mut self, principal: &Principal, op: &Operation, decision: &Decision) {
        self.record_stored(principal, op, None, decision);
    }

    /// [`Coverage::record`] for a case that gave the stored documents.
    pub fn record_stored(
        &mut self,
        principal: &Principal,
        op: &Operation,
        stored: Option<&Stored>,
        decision: &Decision,
    ) {
        let index: HashMap<&str, usize> = self
            .table
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (&*r.id, i))
            .collect();
        for t in &decision.targets {
            for id in [
                t.rule.as_deref(),
                t.shadow.as_ref().map(|s| s.rule.as_str()),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(&i) = index.get(id) {
                    self.rules[i].decided += 1;
                }
            }
        }
        let input = Input::new(principal, op.method);
        for target in &op.targets {
            let tokens = tokens(&target.scope);
            let covering = self.table.lookup(&tokens);
            let mut candidates: Vec<(usize, Option<Value>)> = self
                .table
                .deny_overlaps(&tokens)
                .into_iter()
                .map(|i| {
                    let m = covering.iter().find(|m| m.rule == i);
                    (i, m.map(|m| self.table.bindings(m, &tokens)))
                })
                .collect();
            candidates.extend(
                covering
                    .iter()
                    .filter(|m| self.table.rules[m.rule].effect == Effect::Allow)
                    .map(|m| (m.rule, Some(self.table.bindings(m, &tokens)))),
            );
            for (i, path) in candidates {
                let rule = &self.table.rules[i];
                let Some(condition) = &rule.when else {
                    continue;
                };
                if !rule.actions.contains(target.access)
                    || !rule.applies_to(&op.database)
                    || !rule.who.matches_except_catalog(principal)
                {
                    continue;
                }
                let parts = branches(condition.program().expression());
                let path = path.unwrap_or_else(|| Value::from(HashMap::<String, Value>::new()));
                let documents = Documents::for_target(op, target, stored);
                let vars = Variables {
                    input: &input,
                    access: target.access,
                    path,
                    seen: &documents,
                };
                let (whole, outcomes) = condition.eval_parts(&self.table.env, vars, &parts);
                if let Some((seen, labels)) = &mut self.rules[i].condition {
                    seen.note(&whole);
                    for ((_, s), outcome) in labels.iter_mut().zip(&outcomes) {
                        s.note(outcome);
                    }
                }
            }
        }
    }

    pub fn report(&self) -> CoverageReport {
        let mut gaps = Vec::new();
        for (rule, cov) in self.table.rules.iter().zip(&self.rules) {
            if cov.decided == 0 {
                gaps.push(Gap {
                    rule: rule.id.to_string(),
                    branch: None,
                    missing: vec!["decided"],
                });
            }
            if let Some((whole, labels)) = &cov.condition {
                let mut note = |branch: String, seen: &Seen| {
                    let missing = seen.missing();
                    if !missing.is_empty() {
                        gaps.push(Gap {
                            rule: rule.id.to_string(),
                            branch: Some(branch),
                            missing,
                        });
                    }
                };
                note("when".into(), whole);
                for (label, seen) in labels {
                    note(label.clone(), seen);
                }
            }
        }
        CoverageReport {
            rules: self.rules.len(),
            rules_exercised: self.rules.iter().filter(|r| r.decided > 0).count(),
            gaps,
        }
    }
}

impl CoverageReport {
    pub fn text(&self) -> String {
        let mut out = format!(
            "coverage: {} of {} rules decided some case\n",
            self.rules_exercised, self.rules
        );
        for gap in &self.gaps {
            let _ = match &gap.branch {
                None => writeln!(out, "  rule {}: no case reaches it", gap.rule),
                Some(branch) => writeln!(
                    out,
                    "  rule {}: {branch} never {}",
                    gap.rule,
                    gap.missing.join(" nor ")
                ),
            };
        }
        out
    }
}

/// The operands of every logical operator in `expr`, outermost first.
fn branches(expr: &IdedExpr) -> Vec<&IdedExpr> {
    let mut out = Vec::new();
    collect_branches(expr, &mut out);
    out
}

fn collect_branches<'e>(expr: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    let Expr::Call(call) = &expr.expr else {
        return;
    };
    let name = call.func_name.as_str();
    let boolean_args: &[IdedExpr] = match name {
        operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => &call.args,
        operators::CONDITIONAL => &call.args[..call.args.len().min(1)],
        _ => &[],
    };
    out.extend(boolean_args.iter());
    for arg in &call.args {
        collect_branches(arg, out);
    }
}

/// The source text of `expr`: the span of its whole subtree.
fn snippet(rule: &Rule, expr: &IdedExpr) -> String {
    let Some(condition) = &rule.when else {
        return String::new();
    };
    let info = condition.program().source_info();
    let mut span: Option<(u32, u32)> = None;
    visit(expr, &mut |e| {
        if let Some((start, stop)) = info.offset_for(e.id) {
            span = Some(match span {
                Some((a, b)) => (a.min(start), b.max(stop)),
                None => (start, stop),
            });
        }
    });
    // Offsets mark tokens: the span ends at the start of the last one, so
    // it is extended over that token's identifier (or quote) characters.
    let source = &condition.source;
    let text = span
        .and_then(|(a, b)| {
            let start = a as usize;
            let mut end = (b as usize + 1).min(source.len());
            while let Some(c) = source.get(end..).and_then(|r| r.chars().next()) {
                if !(c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    break;
                }
                end += c.len_utf8();
            }
            source.get(start..end)
        })
        .unwrap_or_default()
        .trim();
    format!("`{text}`")
}

fn visit<'e>(expr: &'e IdedExpr, f: &mut impl FnMut(&'e IdedExpr)) {
    f(expr);
    match &expr.expr {
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                visit(t, f);
            }
            for a in &call.args {
                visit(a, f);
            }
        }
        Expr::Select(s) => visit(&s.operand, f),
        Expr::List(l) => {
            for e in &l.elements {
                visit(e, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Method};
    use crate::policy::fixtures::{doc, member, op};

    const POLICY: &str = r#"
rules:
  - id: team
    match: /teams/{team}/{rest=**}
    allow: [read]
    who: { any: true }
    when: "principal.subject == 'alice' && path.team == 'a' || 'admins' in principal.groups"
  - id: never
    match: /nowhere/{x}
    allow: [read]
    who: { any: true }
"#;

    fn run(cases: &[(&str, &str)]) -> CoverageReport {
        let table = Table::from_yaml(POLICY, 1).unwrap();
        let mut coverage = Coverage::new(&table);
        for (subject, team) in cases {
            let p = member(subject, &[]);
            let op = op(
                Method::Get,
                vec![doc(&format!("teams/{team}/x/1"), Access::Get)],
            );
            let decision = table.decide(&p, &op);
            coverage.record(&p, &op, &decision);
        }
        coverage.report()
    }

    #[test]
    fn reports_unreached_rules_and_unproduced_outcomes() {
        let report = run(&[("alice", "a")]);
        assert_eq!((report.rules, report.rules_exercised), (2, 1));
        let text = report.text();
        assert!(text.contains("rule never: no case reaches it"), "{text}");
        assert!(text.contains("rule team: when never false"), "{text}");
        assert!(
            text.contains("`'admins' in principal.groups` never true"),
            "{text}"
        );
        assert!(text.contains("`path.team == 'a'` never false"), "{text}");
    }

    #[test]
    fn more_cases_close_the_gaps() {
        let report = run(&[("alice", "a"), ("bob", "a"), ("alice", "b")]);
        let team: Vec<&Gap> = report.gaps.iter().filter(|g| g.rule == "team").collect();
        // Only `'admins' in principal.groups` was never true.
        assert_eq!(team.len(), 1, "{:?}", report.gaps);
        assert_eq!(team[0].missing, ["true"]);
    }
}
