//! `when:` conditions: CEL compiled once at load, checked against the
//! variables a rule may read, and evaluated per decision.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program, Value};

use super::seen::Seen;
use crate::authn::Principal;
use crate::model::{Access, Method};

/// The fields of `principal` a condition may read.
const PRINCIPAL_FIELDS: &[&str] = &["subject", "email", "groups", "issuer", "claims"];
/// The fields of `request` a condition may read.
const REQUEST_FIELDS: &[&str] = &["method", "rpc", "time", "resource", "changed_fields"];
/// The fields of `resource` (the stored document) a condition may read.
const RESOURCE_FIELDS: &[&str] = &["data", "name"];

/// What of the documents a condition reads, known at load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataUse {
    /// `request.resource` (the document after the write).
    pub written: bool,
    /// `request.changed_fields`.
    pub changed: bool,
    /// `resource` (the stored document).
    pub stored: bool,
}

impl DataUse {
    pub const ALL: DataUse = DataUse {
        written: true,
        changed: true,
        stored: true,
    };

    pub fn any(self) -> bool {
        self.written || self.changed || self.stored
    }

    pub fn union(self, other: DataUse) -> DataUse {
        DataUse {
            written: self.written || other.written,
            changed: self.changed || other.changed,
            stored: self.stored || other.stored,
        }
    }
}

/// A compiled `when:` expression.
pub struct Condition {
    program: Program,
    /// Reads `request.time`: its decisions are not cached.
    pub reads_time: bool,
    /// Reads documents: its decisions are not cached either, and `stored`
    /// makes firegate read the stored documents first.
    pub data: DataUse,
    /// The top-level fields read as `resource.data.<field>`, when that is
    /// the only way the condition reads `resource`: then a query's
    /// equality filters can prove it. `None` otherwise.
    pub provable: Option<Vec<String>>,
    /// The expression as written (for analysis output).
    pub source: String,
    /// Every free variable read, with the field selected on it, if any.
    pub references: Vec<(String, Option<String>)>,
}

impl Condition {
    /// Compile `source`, refusing references to anything but `principal`,
    /// `request` and the wildcards the rule's pattern binds (`path.<name>`).
    /// Returns every problem found.
    pub fn compile(env: &Env, source: &str, bindings: &[&str]) -> Result<Condition, Vec<String>> {
        let program = env
            .compile(source)
            .map_err(|e| vec![format!("`when` is not valid CEL: {e}")])?;
        let mut refs = Vec::new();
        collect_references(program.expression(), &mut Vec::new(), &mut refs);
        let mut errors = Vec::new();
        let mut reads_time = false;
        let mut data = DataUse::default();
        for (var, field) in refs.iter().cloned() {
            let allowed: &[&str] = match var.as_str() {
                "principal" => PRINCIPAL_FIELDS,
                "request" => {
                    // Reading `request` whole (e.g. `request['time']`) may read anything.
                    let whole = field.is_none();
                    reads_time |= whole || field.as_deref() == Some("time");
                    data.written |= whole || field.as_deref() == Some("resource");
                    data.changed |= whole || field.as_deref() == Some("changed_fields");
                    REQUEST_FIELDS
                }
                "resource" => {
                    data.stored = true;
                    RESOURCE_FIELDS
                }
                "path" => bindings,
                other => {
                    errors.push(format!(
                        "`when` references unknown variable `{other}` \
                         (known: principal, path, request, resource)"
                    ));
                    continue;
                }
            };
            if let Some(field) = field
                && !allowed.contains(&field.as_str())
            {
                errors.push(if var == "path" {
                    format!("`when` reads `path.{field}`, which `match` does not bind")
                } else {
                    format!(
                        "`when` reads unknown field `{var}.{field}` (known: {})",
                        allowed.join(", ")
                    )
                });
            }
        }
        if errors.is_empty() {
            let provable = data
                .stored
                .then(|| super::seen::stored_selects(program.expression()))
                .flatten();
            Ok(Condition {
                program,
                reads_time,
                data,
                provable,
                source: source.to_string(),
                references: refs,
            })
        } else {
            Err(errors)
        }
    }

    /// True only when the expression yields `true`; an error or a non-bool
    /// result is reported as `Err` so the caller can fail closed.
    pub fn eval(&self, env: &Arc<Env>, vars: Variables) -> Result<bool, String> {
        self.eval_parts(env, vars, &[]).0
    }

    /// The whole expression and each of `parts` (sub-expressions of it, for
    /// coverage), evaluated in one context.
    pub fn eval_parts(
        &self,
        env: &Arc<Env>,
        vars: Variables,
        parts: &[&IdedExpr],
    ) -> (Result<bool, String>, Vec<Result<bool, String>>) {
        let context = self.context(env, vars);
        let whole = as_bool(self.program.execute(&context));
        let parts = parts
            .iter()
            .map(|e| as_bool(Value::resolve(e, &context)))
            .collect();
        (whole, parts)
    }

    /// The values of `parts` (sub-expressions of this condition), for
    /// `policy check` to show what a condition saw.
    pub fn eval_values(
        &self,
        env: &Arc<Env>,
        vars: Variables,
        parts: &[&IdedExpr],
    ) -> Vec<Result<Value, String>> {
        let context = self.context(env, vars);
        parts
            .iter()
            .map(|e| Value::resolve(e, &context).map_err(|e| e.to_string()))
            .collect()
    }

    fn context(&self, env: &Arc<Env>, vars: Variables) -> Context<'static, 'static> {
        let (input, seen) = (vars.input, vars.seen);
        let mut request: HashMap<&str, Value> = HashMap::from([
            ("method", Value::from(vars.access.as_str())),
            ("rpc", input.rpc.clone()),
            ("time", input.time.clone()),
        ]);
        // What is not known is left out: a condition reading it fails, so
        // an allow does not hold and a deny applies.
        if let Some(written) = &seen.written {
            request.insert("resource", written.clone());
        }
        if let Some(changed) = &seen.changed {
            request.insert("changed_fields", changed.clone());
        }
        let mut context = Context::with_env(Arc::clone(env));
        context.add_variable_from_value("principal", input.principal.clone());
        context.add_variable_from_value("request", request);
        context.add_variable_from_value("path", vars.path);
        // A query's proven facts are sound only for a condition that reads
        // nothing but `resource.data.<field>`: a missing fact then fails it.
        let proven = seen.proven.as_ref().filter(|_| self.provable.is_some());
        if let Some(stored) = seen.stored.as_ref().or(proven) {
            context.add_variable_from_value("resource", stored.clone());
        }
        context
    }

    /// The compiled expression and where its nodes start in the source.
    pub fn program(&self) -> &Program {
        &self.program
    }
}

fn as_bool(result: cel::ResolveResult) -> Result<bool, String> {
    match result {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("condition yielded {other:?}, not a bool")),
        Err(e) => Err(e.to_string()),
    }
}

impl Condition {
    /// Evaluate with only some inputs known (analysis): `None` unless every
    /// variable the expression reads is among them, so a result is never a
    /// guess. `principal` of `None` means unknown; `path` holds the bound
    /// wildcards; `request.method` is the access; `rpc` and `time` unknown.
    pub fn eval_known(
        &self,
        env: &Arc<Env>,
        principal: Option<&Principal>,
        access: Access,
        path: &HashMap<String, String>,
    ) -> Option<Result<bool, String>> {
        let known = self
            .references
            .iter()
            .all(|(var, field)| match var.as_str() {
                "principal" => principal.is_some(),
                "path" => field.as_ref().is_some_and(|f| path.contains_key(f)),
                "request" => field.as_deref() == Some("method"),
                _ => false,
            });
        if !known {
            return None;
        }
        let placeholder;
        let principal = match principal {
            Some(p) => p,
            None => {
                placeholder = Principal::new(
                    String::new(),
                    String::new(),
                    None,
                    Vec::new(),
                    serde_json::Map::new(),
                );
                &placeholder
            }
        };
        let input = Input::new(principal, Method::Get);
        let bound: HashMap<String, Value> = path
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let vars = Variables {
            input: &input,
            access,
            path: bound.into(),
            seen: &Seen::default(),
        };
        Some(self.eval(env, vars))
    }
}

/// What one evaluation of a condition binds: the request's [`Input`], the
/// access asked (`request.method`), the rule's `path` bindings and the
/// documents seen.
pub struct Variables<'a> {
    pub input: &'a Input,
    pub access: Access,
    pub path: Value,
    pub seen: &'a Seen,
}

/// The per-request CEL variables, built once per decision.
pub struct Input {
    principal: Value,
    rpc: Value,
    time: Value,
}

impl Input {
    pub fn new(principal: &Principal, method: Method) -> Input {
        Input {
            principal: cel::to_value(principal).unwrap_or(Value::Null),
            rpc: Value::from(method.as_str()),
            time: Value::Timestamp(chrono::Utc::now().fixed_offset()),
        }
    }
}

/// Every free variable of `program` with the field selected on it, if any.
pub(super) fn references(program: &Program) -> Vec<(String, Option<String>)> {
    let mut refs = Vec::new();
    collect_references(program.expression(), &mut Vec::new(), &mut refs);
    refs
}

/// Every free variable with the field selected on it directly, if any.
fn collect_references(
    expr: &IdedExpr,
    bound: &mut Vec<String>,
    out: &mut Vec<(String, Option<String>)>,
) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !bound.contains(name) && !name.starts_with('@') {
                out.push((name.clone(), None));
            }
        }
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(name) if !bound.contains(name) => {
                out.push((name.clone(), Some(select.field.clone())));
            }
            _ => collect_references(&select.operand, bound, out),
        },
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                collect_references(target, bound, out);
            }
            for arg in &call.args {
                collect_references(arg, bound, out);
            }
        }
        Expr::List(list) => {
            for e in &list.elements {
                collect_references(e, bound, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                collect_entry(&entry.expr, bound, out);
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                collect_entry(&entry.expr, bound, out);
            }
        }
        Expr::Comprehension(comp) => {
            collect_references(&comp.iter_range, bound, out);
            collect_references(&comp.accu_init, bound, out);
            let depth = bound.len();
            bound.push(comp.iter_var.clone());
            bound.extend(comp.iter_var2.clone());
            bound.push(comp.accu_var.clone());
            collect_references(&comp.loop_cond, bound, out);
            collect_references(&comp.loop_step, bound, out);
            collect_references(&comp.result, bound, out);
            bound.truncate(depth);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn collect_entry(
    entry: &EntryExpr,
    bound: &mut Vec<String>,
    out: &mut Vec<(String, Option<String>)>,
) {
    match entry {
        EntryExpr::StructField(f) => collect_references(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            collect_references(&m.key, bound, out);
            collect_references(&m.value, bound, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> Result<Condition, Vec<String>> {
        Condition::compile(&Env::stdlib(), source, &["team", "rest"])
    }

    fn principal() -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("team".into(), "payments".into());
        claims.insert("level".into(), 3.into());
        Principal::new(
            "https://issuer".into(),
            "alice".into(),
            Some("alice@example.com".into()),
            vec!["group:default/payments".into()],
            claims,
        )
    }

    fn eval(source: &str, path: &[(&str, &str)]) -> Result<bool, String> {
        let env = Arc::new(Env::stdlib());
        let condition = Condition::compile(&env, source, &["team", "rest"]).unwrap();
        let input = Input::new(&principal(), Method::Get);
        let path: HashMap<String, Value> = path
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let vars = Variables {
            input: &input,
            access: Access::Get,
            path: path.into(),
            seen: &Seen::default(),
        };
        condition.eval(&env, vars)
    }

    #[test]
    fn path_and_group_bindings() {
        let src = "'group:default/' + path.team in principal.groups";
        assert_eq!(eval(src, &[("team", "payments")]), Ok(true));
        assert_eq!(eval(src, &[("team", "search")]), Ok(false));
    }

    #[test]
    fn claim_bindings() {
        assert_eq!(
            eval(
                "principal.claims.team == path.team",
                &[("team", "payments")]
            ),
            Ok(true)
        );
        assert_eq!(eval("principal.claims.level >= 3", &[]), Ok(true));
        assert_eq!(eval("principal.claims.level > 3", &[]), Ok(false));
    }

    #[test]
    fn request_fields() {
        assert_eq!(
            eval("request.method == 'get' && request.rpc == 'get'", &[]),
            Ok(true)
        );
        assert_eq!(
            eval("request.time > timestamp('2000-01-01T00:00:00Z')", &[]),
            Ok(true)
        );
    }

    #[test]
    fn unbound_path_variable_is_an_error_not_a_match() {
        assert!(eval("path.team == 'payments'", &[]).is_err());
    }

    #[test]
    fn non_bool_result_is_an_error() {
        assert!(eval("principal.subject", &[]).is_err());
    }

    #[test]
    fn unknown_variables_are_load_errors() {
        let errors = compile("user.name == 'x'").err().unwrap();
        assert!(errors[0].contains("unknown variable `user`"), "{errors:?}");
        let errors = compile("path.org == 'x'").err().unwrap();
        assert!(errors[0].contains("path.org"), "{errors:?}");
        let errors = compile("principal.role == 'x' || request.ip == 'y'")
            .err()
            .unwrap();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn comprehension_variables_are_not_unknown() {
        let c = compile("principal.groups.exists(g, g.startsWith('group:default/' + path.team))");
        assert!(c.is_ok());
    }

    #[test]
    fn syntax_errors_are_load_errors() {
        assert!(compile("principal.subject ==").is_err());
    }

    #[test]
    fn time_reads_are_detected() {
        assert!(!compile("principal.subject == 'a'").ok().unwrap().reads_time);
        assert!(
            compile("request.time < timestamp('2030-01-01T00:00:00Z')")
                .ok()
                .unwrap()
                .reads_time
        );
        assert!(compile("request['time'] != null").ok().unwrap().reads_time);
        assert!(!compile("request.method == 'get'").ok().unwrap().reads_time);
    }
}
