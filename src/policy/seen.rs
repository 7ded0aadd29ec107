//! What a condition sees of the documents for one target: the document
//! after the write (`request.resource`), the changed fields, the stored
//! document (`resource`), or for a query the facts its filter proves.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};

use super::condition::DataUse;
use crate::model::data::{Change, FieldValue, Fields, Filter, NotCaptured, Stored, Written};
use crate::model::{Access, Operation, Scope, Target};

/// The document variables of one evaluation; `None` is "not known", which
/// makes a condition reading it fail (closed).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// `request.resource`: `{data: …}`, or `null` for a delete.
    pub written: Option<Value>,
    /// `request.changed_fields`: a list of top-level names.
    pub changed: Option<Value>,
    /// `resource`: `{data: …, name: …}`, or `null` for an absent document.
    pub stored: Option<Value>,
    /// For a query: `resource` as far as its filter proves it, shown only
    /// to conditions that read `resource.data.<field>` alone.
    pub proven: Option<Value>,
}

impl Seen {
    /// What `target` of `op` shows, with the stored documents read.
    pub fn for_target(op: &Operation, target: &Target, stored: Option<&Stored>) -> Seen {
        Seen::for_uses(op, target, stored, DataUse::ALL)
    }

    /// [`Seen::for_target`], building only the variables `uses` reads (a
    /// variable left out fails a condition that reads it, so `uses` must
    /// cover every condition the result is shown to).
    pub fn for_uses(
        op: &Operation,
        target: &Target,
        stored: Option<&Stored>,
        uses: DataUse,
    ) -> Seen {
        let doc = match &target.scope {
            Scope::Document { path } => stored.and_then(|s| s.get(path)),
            _ => None,
        };
        let mut seen = Seen::default();
        if target.access == Access::List {
            seen.proven = op.filter.as_ref().filter(|_| uses.stored).map(proven);
            return seen;
        }
        let writes: Vec<&Written> = if matches!(
            target.access,
            Access::Create | Access::Update | Access::Delete
        ) {
            op.writes
                .iter()
                .filter(|w| w.scope == target.scope)
                .collect()
        } else {
            Vec::new()
        };
        // A document written twice in one request has no single "after":
        // data conditions on it fail closed.
        if writes.len() > 1 {
            return seen;
        }
        let write = writes.first();
        let known_absent = write.is_some_and(|w| w.creates());
        let stored_fields: Option<Option<&Fields>> = if known_absent {
            Some(None)
        } else {
            doc.map(|d| d.as_ref().map(|d| &d.fields))
        };
        if let Some(stored_fields) = stored_fields.filter(|_| uses.stored) {
            seen.stored = Some(match stored_fields {
                Some(fields) => document(fields, &target.scope),
                None => Value::Null,
            });
        }
        if let Some(w) = write {
            let is_delete = matches!(w.change, Change::Delete);
            let masked = matches!(w.change, Change::Update { mask: Some(_), .. });
            let after_known = is_delete || !masked || stored_fields.is_some();
            // Fields not captured leave what depends on them unknown.
            if after_known && uses.written {
                seen.written = match &w.change {
                    // Most writes: the fields as written, without a copy.
                    Change::Update {
                        fields: Some(fields),
                        mask: None,
                        transforms,
                    } if transforms.is_empty() => Some(document(fields, &target.scope)),
                    _ => match w.after(stored_fields.flatten()) {
                        Ok(Some(after)) => Some(document(&after, &target.scope)),
                        Ok(None) => Some(Value::Null),
                        Err(NotCaptured) => None,
                    },
                };
            }
            if (masked || stored_fields.is_some()) && uses.changed {
                seen.changed = w
                    .changed_fields(stored_fields.flatten())
                    .ok()
                    .map(Value::from);
            }
        }
        seen
    }
}

/// `{data: fields, name: path}` for a condition.
fn document(fields: &Fields, scope: &Scope) -> Value {
    let name = match scope {
        Scope::Document { path } => path.spelled().get(1..).unwrap_or_default(),
        _ => "",
    };
    Value::from(HashMap::from([
        ("data", map(fields)),
        ("name", Value::from(name)),
    ]))
}

/// What every document a query can return is known to hold: its top-level
/// `field == value` filters, as `resource.data`.
fn proven(filter: &Filter) -> Value {
    let facts: HashMap<String, Value> = filter
        .equalities()
        .into_iter()
        .filter(|(path, value)| path.len() == 1 && provable_value(value))
        .map(|(path, value)| (path[0].clone(), to_cel(value)))
        .collect();
    Value::from(HashMap::from([("data", Value::from(facts))]))
}

/// Values whose Firestore equality is CEL equality (numbers are not:
/// Firestore's `1 == 1.0` holds for documents a CEL check would tell apart).
fn provable_value(value: &FieldValue) -> bool {
    matches!(
        value,
        FieldValue::String(_) | FieldValue::Boolean(_) | FieldValue::Reference(_)
    )
}

fn map(fields: &Fields) -> Value {
    // Built as CEL's own map: one allocation per key, not two.
    let entries: HashMap<Key, Value> = fields
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
        .collect();
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

/// A Firestore value as CEL sees it.
pub fn to_cel(value: &FieldValue) -> Value {
    match value {
        FieldValue::Null => Value::Null,
        FieldValue::Boolean(b) => Value::Bool(*b),
        FieldValue::Integer(i) => Value::Int(*i),
        FieldValue::Double(d) => Value::Float(*d),
        FieldValue::Timestamp(t) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Value::Timestamp(t),
            Err(_) => Value::String(Arc::new(t.clone())),
        },
        FieldValue::String(s) | FieldValue::Bytes(s) | FieldValue::Reference(s) => {
            Value::String(Arc::new(s.clone()))
        }
        FieldValue::GeoPoint {
            latitude,
            longitude,
        } => Value::from(HashMap::from([
            ("latitude", Value::Float(*latitude)),
            ("longitude", Value::Float(*longitude)),
        ])),
        FieldValue::Array(values) => Value::List(Arc::new(values.iter().map(to_cel).collect())),
        FieldValue::Map(fields) => map(fields),
        FieldValue::Transform(kind) => {
            Value::from(HashMap::from([("transform", Value::from(*kind))]))
        }
    }
}

/// The fields read as `resource.data.<field>`, when every use of
/// `resource` in `expr` has that form (no `has()`, no indexing, no use of
/// the map whole); otherwise `None`. Only then may a missing field stand
/// for "not proven".
pub fn stored_selects(expr: &IdedExpr) -> Option<Vec<String>> {
    let mut out = Vec::new();
    walk(expr, &mut out).then_some(out)
}

fn walk(expr: &IdedExpr, out: &mut Vec<String>) -> bool {
    match &expr.expr {
        Expr::Ident(name) => name != "resource",
        Expr::Select(select) => {
            if let Expr::Select(inner) = &select.operand.expr
                && let Expr::Ident(name) = &inner.operand.expr
                && name == "resource"
            {
                if inner.field == "data" && !select.test && !inner.test {
                    out.push(select.field.clone());
                    return true;
                }
                return false;
            }
            walk(&select.operand, out)
        }
        Expr::Call(call) => {
            call.target.as_deref().is_none_or(|t| walk(t, out))
                && call.args.iter().all(|a| walk(a, out))
        }
        Expr::List(list) => list.elements.iter().all(|e| walk(e, out)),
        Expr::Map(m) => m.entries.iter().all(|e| walk_entry(&e.expr, out)),
        Expr::Struct(s) => s.entries.iter().all(|e| walk_entry(&e.expr, out)),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .iter()
        .all(|e| walk(e, out)),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

fn walk_entry(entry: &EntryExpr, out: &mut Vec<String>) -> bool {
    match entry {
        EntryExpr::StructField(f) => walk(&f.value, out),
        EntryExpr::MapEntry(m) => walk(&m.key, out) && walk(&m.value, out),
    }
}
