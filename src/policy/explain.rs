//! For `policy check`: which data a deciding rule's condition read, and the
//! value it saw there (`resource.data.owner` → `"bob"`).

use cel::Value;
use cel::common::ast::{Expr, IdedExpr};
use serde::Serialize;

use super::condition::{Input, Variables};
use super::seen::Seen;
use super::table::{Table, tokens};
use super::{Decision, Why};
use crate::authn::Principal;
use crate::model::Operation;
use crate::model::data::Stored;

/// One target decided by a condition that reads documents.
#[derive(Debug, Serialize)]
pub struct DataSeen {
    pub resource: String,
    pub access: String,
    pub rule: String,
    pub why: Why,
    pub condition: String,
    /// Each document field (or `request.changed_fields`) it read, with the
    /// value it saw: a JSON value, or `{"unknown": why}`.
    pub read: Vec<FieldSeen>,
}

/// One catalog-bound rule that covered a target: the entity its template
/// named there, that entity's owners, and the caller as a catalog user.
#[derive(Debug, Serialize)]
pub struct CatalogSeen {
    pub resource: String,
    pub rule: String,
    /// `owner_of component:default/{service}`.
    pub selector: String,
    /// Whether this rule decided the target.
    pub decided: bool,
    /// The entity named (canonical), or `None` when the path named none.
    pub entity: Option<String>,
    /// Its owners (`owner_of`), or whether it is a group of the catalog.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// The caller's catalog user ref, if it has one.
    pub user: Option<String>,
    pub matched: bool,
}

#[derive(Debug, Serialize)]
pub struct FieldSeen {
    pub expression: String,
    pub value: serde_json::Value,
}

impl Table {
    /// What the deciding rules of `decision` read of the documents.
    pub fn explain_data(
        &self,
        principal: &Principal,
        op: &Operation,
        stored: &Stored,
        decision: &Decision,
    ) -> Vec<DataSeen> {
        let input = Input::new(principal, op.method);
        let mut out = Vec::new();
        for t in &decision.targets {
            let Some(id) = &t.rule else { continue };
            let Some(index) = self.rules.iter().position(|r| *r.id == **id) else {
                continue;
            };
            let Some(condition) = &self.rules[index].when else {
                continue;
            };
            if !condition.data.any() {
                continue;
            }
            let toks = tokens(&t.target.scope);
            let path = self
                .lookup(&toks)
                .iter()
                .find(|m| m.rule == index)
                .map(|m| self.bindings(m, &toks))
                .unwrap_or_else(|| Value::from(std::collections::HashMap::<String, Value>::new()));
            let mut reads = Vec::new();
            data_reads(condition.program().expression(), &mut reads);
            let parts: Vec<&IdedExpr> = reads.iter().map(|(e, _)| *e).collect();
            let seen = Seen::for_target(op, &t.target, Some(stored));
            let vars = Variables {
                input: &input,
                access: t.target.access,
                path,
                seen: &seen,
            };
            let values = condition.eval_values(&self.env, vars, &parts);
            out.push(DataSeen {
                resource: t.target.scope.spelled(),
                access: t.target.access.to_string(),
                rule: id.to_string(),
                why: t.why.clone(),
                condition: condition.source.clone(),
                read: reads
                    .iter()
                    .zip(values)
                    .map(|((_, text), value)| FieldSeen {
                        expression: text.clone(),
                        value: match value {
                            Ok(v) => json(&v),
                            Err(e) => serde_json::json!({ "unknown": e }),
                        },
                    })
                    .collect(),
            });
        }
        out
    }
}

impl Table {
    /// For each target, the catalog-bound rules that covered it (allow and
    /// deny), judged against `view`.
    pub fn explain_catalog(
        &self,
        principal: &Principal,
        decision: &Decision,
        view: &crate::catalog::View,
    ) -> Vec<CatalogSeen> {
        let mut out = Vec::new();
        for t in &decision.targets {
            let toks = tokens(&t.target.scope);
            for m in self.lookup(&toks) {
                let rule = &self.rules[m.rule];
                let Some(catalog) = &rule.who.catalog else {
                    continue;
                };
                if !rule.actions.contains(t.target.access) {
                    continue;
                }
                let entity = catalog
                    .template()
                    .expand(|name| self.binding(&m, &toks, name));
                let owners = match (catalog, &entity) {
                    (super::compile::CatalogWho::OwnerOf(_), Some(e)) => view
                        .index
                        .owners(e)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    _ => Vec::new(),
                };
                let matched = catalog
                    .matches(principal, Some(view), |name| self.binding(&m, &toks, name))
                    .unwrap_or(false);
                out.push(CatalogSeen {
                    resource: t.target.scope.spelled(),
                    rule: rule.id.to_string(),
                    selector: catalog.describe(),
                    decided: t.rule.as_deref() == Some(&*rule.id),
                    entity: entity.filter(|e| view.index.contains(e)),
                    owners,
                    user: view.identities.user_ref(principal),
                    matched,
                });
            }
        }
        out
    }
}

/// The outermost `request.resource…`, `resource…` and
/// `request.changed_fields` selections, with their text.
fn data_reads<'e>(expr: &'e IdedExpr, out: &mut Vec<(&'e IdedExpr, String)>) {
    if let Some(text) = chain(expr).filter(|t| {
        t.starts_with("request.resource")
            || t.starts_with("resource")
            || t.starts_with("request.changed_fields")
    }) {
        if !out.iter().any(|(_, seen)| *seen == text) {
            out.push((expr, text));
        }
        return;
    }
    match &expr.expr {
        Expr::Select(s) => data_reads(&s.operand, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                data_reads(t, out);
            }
            c.args.iter().for_each(|a| data_reads(a, out));
        }
        Expr::List(l) => l.elements.iter().for_each(|e| data_reads(e, out)),
        Expr::Comprehension(c) => {
            data_reads(&c.iter_range, out);
            data_reads(&c.loop_step, out);
            data_reads(&c.result, out);
        }
        _ => {}
    }
}

/// `a.b.c` for a plain selection chain rooted at an identifier.
fn chain(expr: &IdedExpr) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) if name == "resource" => Some(name.clone()),
        Expr::Select(s) if !s.test => {
            let base = match &s.operand.expr {
                Expr::Ident(name) if name == "request" => name.clone(),
                _ => chain(&s.operand)?,
            };
            Some(format!("{base}.{}", s.field))
        }
        _ => None,
    }
}

/// A CEL value as JSON, for the explanation.
fn json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => J::from(*f),
        Value::String(s) => J::String(s.to_string()),
        Value::List(items) => J::Array(items.iter().map(json).collect()),
        Value::Map(m) => J::Object(
            m.map
                .iter()
                .map(|(k, v)| (k.to_string(), json(v)))
                .collect(),
        ),
        Value::Timestamp(t) => J::String(t.to_rfc3339()),
        other => J::String(format!("{other:?}")),
    }
}
