//! `StructuredQuery`: parse it, then select, filter, order, cut at cursors,
//! skip and limit, the way Firestore does.

use std::cmp::Ordering;

use serde_json::Value as Json;

use super::EmulatorError;
use super::store::{Doc, DocPath, Documents, document_name};
use super::values::{FieldPath, Value, compare, lookup};
use super::wire::{count, enum_name, field_reference};

const FIELD_OPS: &[&str] = &[
    "OPERATOR_UNSPECIFIED",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "EQUAL",
    "NOT_EQUAL",
    "ARRAY_CONTAINS",
    "IN",
    "ARRAY_CONTAINS_ANY",
    "NOT_IN",
];
const UNARY_OPS: &[&str] = &[
    "OPERATOR_UNSPECIFIED",
    "",
    "IS_NAN",
    "IS_NULL",
    "IS_NOT_NAN",
    "IS_NOT_NULL",
];
const COMPOSITE_OPS: &[&str] = &["OPERATOR_UNSPECIFIED", "AND", "OR"];
const DIRECTIONS: &[&str] = &["DIRECTION_UNSPECIFIED", "ASCENDING", "DESCENDING"];

#[derive(Debug, Clone)]
enum Filter {
    Field {
        path: FieldPath,
        op: &'static str,
        value: Value,
    },
    Unary {
        path: FieldPath,
        op: &'static str,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Debug, Clone)]
struct Cursor {
    values: Vec<Value>,
    before: bool,
}

/// A parsed structured query.
#[derive(Debug, Clone)]
pub struct Query {
    collection_id: Option<String>,
    all_descendants: bool,
    filter: Option<Filter>,
    order_by: Vec<(FieldPath, bool)>,
    start_at: Option<Cursor>,
    end_at: Option<Cursor>,
    offset: usize,
    limit: Option<usize>,
    /// The projection; `None` returns whole documents.
    pub select: Option<Vec<FieldPath>>,
}

/// A query's answer: the documents in order, and how many `offset` skipped.
pub struct Results<'a> {
    pub documents: Vec<(&'a DocPath, &'a Doc)>,
    pub skipped: usize,
}

impl Query {
    pub fn parse(json: &Json) -> Result<Query, EmulatorError> {
        let from = json
            .get("from")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let [selector] = from else {
            return Err(invalid(
                "a query needs exactly one collection selector in from",
            ));
        };
        let collection_id = selector
            .get("collectionId")
            .and_then(Json::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        let all_descendants = selector
            .get("allDescendants")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let filter = json.get("where").map(parse_filter).transpose()?;
        let mut order_by = Vec::new();
        for order in json
            .get("orderBy")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let path = field_reference(order.get("field"))?;
            let descending = match order.get("direction") {
                None | Some(Json::Null) => false,
                Some(d) => enum_name(d, DIRECTIONS)? == "DESCENDING",
            };
            order_by.push((path, descending));
        }
        let select = match json.get("select") {
            None | Some(Json::Null) => None,
            Some(select) => {
                let fields = select
                    .get("fields")
                    .and_then(Json::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if fields.is_empty() {
                    None
                } else {
                    let paths = fields
                        .iter()
                        .map(|f| field_reference(Some(f)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Some(
                        paths
                            .into_iter()
                            .filter(|p| !p.is_document_name())
                            .collect(),
                    )
                }
            }
        };
        let query = Query {
            collection_id,
            all_descendants,
            filter,
            order_by,
            start_at: json.get("startAt").map(parse_cursor).transpose()?,
            end_at: json.get("endAt").map(parse_cursor).transpose()?,
            offset: json.get("offset").map_or(Ok(0), |o| count(o, "offset"))?,
            limit: json
                .get("limit")
                .filter(|l| !l.is_null())
                .map(|l| count(l, "limit"))
                .transpose()?,
            select,
        };
        let order_len = query.effective_order().len();
        for cursor in [&query.start_at, &query.end_at].into_iter().flatten() {
            if cursor.values.len() > order_len {
                return Err(invalid(
                    "a cursor has more values than the query has orders",
                ));
            }
        }
        Ok(query)
    }

    /// Run against `documents` of `database`, below `parent`.
    pub fn run<'a>(
        &self,
        database: &str,
        parent: &[String],
        documents: &'a Documents,
    ) -> Results<'a> {
        let order = self.effective_order();
        let mut rows: Vec<(Vec<Value>, &'a DocPath, &'a Doc)> = documents
            .iter()
            .filter(|(path, _)| self.selects(parent, path))
            .filter_map(|(path, doc)| {
                let values = order
                    .iter()
                    .map(|(field, _)| field_value(database, path, doc, field))
                    .collect::<Option<Vec<Value>>>()?;
                let matches = self
                    .filter
                    .as_ref()
                    .is_none_or(|f| matches(f, database, path, doc));
                matches.then_some((values, path, doc))
            })
            .collect();
        rows.sort_by(|a, b| compare_rows(&a.0, &b.0, &order));
        rows.retain(|(values, _, _)| {
            let after_start = self.start_at.as_ref().is_none_or(|c| {
                let ord = compare_cursor(values, c, &order);
                ord == Ordering::Greater || (ord == Ordering::Equal && c.before)
            });
            let before_end = self.end_at.as_ref().is_none_or(|c| {
                let ord = compare_cursor(values, c, &order);
                ord == Ordering::Less || (ord == Ordering::Equal && !c.before)
            });
            after_start && before_end
        });
        let skipped = self.offset.min(rows.len());
        let documents = rows
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|(_, path, doc)| (path, doc))
            .collect();
        Results { documents, skipped }
    }

    /// Whether `path` is in the collection(s) this query reads below `parent`.
    fn selects(&self, parent: &[String], path: &[String]) -> bool {
        if path.len() < parent.len() + 2 || !path.starts_with(parent) {
            return false;
        }
        let direct = path.len() == parent.len() + 2;
        let collection = &path[path.len() - 2];
        match (&self.collection_id, self.all_descendants) {
            (Some(id), false) => direct && collection == id,
            (Some(id), true) => collection == id,
            (None, true) => true,
            (None, false) => direct,
        }
    }

    /// Explicit orders, then inequality fields not yet ordered (by path),
    /// then `__name__` in the direction of the last order.
    fn effective_order(&self) -> Vec<(FieldPath, bool)> {
        let mut order = self.order_by.clone();
        let mut inequality = Vec::new();
        if let Some(filter) = &self.filter {
            inequality_fields(filter, &mut inequality);
        }
        inequality.sort();
        inequality.dedup();
        for path in inequality {
            if !order.iter().any(|(p, _)| *p == path) {
                order.push((path, false));
            }
        }
        if !order.iter().any(|(p, _)| p.is_document_name()) {
            let descending = order.last().is_some_and(|(_, d)| *d);
            order.push((FieldPath(vec!["__name__".into()]), descending));
        }
        order
    }
}

fn invalid(message: impl Into<String>) -> EmulatorError {
    EmulatorError::InvalidArgument(message.into())
}

fn parse_filter(json: &Json) -> Result<Filter, EmulatorError> {
    if let Some(field) = json.get("fieldFilter") {
        let op = enum_name(field.get("op").unwrap_or(&Json::Null), FIELD_OPS)?;
        let value = Value::from_json(field.get("value").unwrap_or(&Json::Null))?;
        if matches!(op, "IN" | "NOT_IN" | "ARRAY_CONTAINS_ANY") && !matches!(value, Value::Array(_))
        {
            return Err(invalid(format!("{op} needs an array value")));
        }
        if op == "OPERATOR_UNSPECIFIED" {
            return Err(invalid("a field filter needs an operator"));
        }
        return Ok(Filter::Field {
            path: field_reference(field.get("field"))?,
            op,
            value,
        });
    }
    if let Some(unary) = json.get("unaryFilter") {
        let op = enum_name(unary.get("op").unwrap_or(&Json::Null), UNARY_OPS)?;
        if op == "OPERATOR_UNSPECIFIED" {
            return Err(invalid("a unary filter needs an operator"));
        }
        return Ok(Filter::Unary {
            path: field_reference(unary.get("field"))?,
            op,
        });
    }
    if let Some(composite) = json.get("compositeFilter") {
        let op = enum_name(composite.get("op").unwrap_or(&Json::Null), COMPOSITE_OPS)?;
        let filters = composite
            .get("filters")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(parse_filter)
            .collect::<Result<Vec<_>, _>>()?;
        return match op {
            "AND" => Ok(Filter::And(filters)),
            "OR" => Ok(Filter::Or(filters)),
            _ => Err(invalid("a composite filter needs AND or OR")),
        };
    }
    Err(invalid(
        "a filter needs fieldFilter, unaryFilter or compositeFilter",
    ))
}

fn parse_cursor(json: &Json) -> Result<Cursor, EmulatorError> {
    let values = json
        .get("values")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(Value::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cursor {
        values,
        before: json.get("before").and_then(Json::as_bool).unwrap_or(false),
    })
}

fn inequality_fields(filter: &Filter, out: &mut Vec<FieldPath>) {
    match filter {
        Filter::Field { path, op, .. } => {
            if matches!(
                *op,
                "LESS_THAN"
                    | "LESS_THAN_OR_EQUAL"
                    | "GREATER_THAN"
                    | "GREATER_THAN_OR_EQUAL"
                    | "NOT_EQUAL"
                    | "NOT_IN"
            ) {
                out.push(path.clone());
            }
        }
        // `!= null` and `!= NaN` are inequalities too: they order by the field.
        Filter::Unary { path, op } => {
            if matches!(*op, "IS_NOT_NAN" | "IS_NOT_NULL") {
                out.push(path.clone());
            }
        }
        Filter::And(filters) | Filter::Or(filters) => {
            for f in filters {
                inequality_fields(f, out);
            }
        }
    }
}

/// The value a query sees at `field`; `__name__` is the document's reference.
fn field_value(database: &str, path: &[String], doc: &Doc, field: &FieldPath) -> Option<Value> {
    if field.is_document_name() {
        return Some(Value::Reference(document_name(database, path)));
    }
    lookup(&doc.fields, field).cloned()
}

fn matches(filter: &Filter, database: &str, path: &[String], doc: &Doc) -> bool {
    match filter {
        Filter::And(filters) => filters.iter().all(|f| matches(f, database, path, doc)),
        Filter::Or(filters) => filters.iter().any(|f| matches(f, database, path, doc)),
        Filter::Unary { path: field, op } => {
            let value = field_value(database, path, doc, field);
            match (*op, value) {
                ("IS_NAN", Some(v)) => v.is_nan(),
                ("IS_NULL", Some(v)) => matches!(v, Value::Null),
                ("IS_NOT_NAN", Some(v)) => !v.is_nan() && !matches!(v, Value::Null),
                ("IS_NOT_NULL", Some(v)) => !matches!(v, Value::Null),
                _ => false,
            }
        }
        Filter::Field {
            path: field,
            op,
            value,
        } => field_value(database, path, doc, field)
            .is_some_and(|found| field_matches(op, &found, value)),
    }
}

fn field_matches(op: &str, found: &Value, operand: &Value) -> bool {
    let contains = |values: &[Value], v: &Value| values.iter().any(|x| x.query_eq(v));
    let operand_items = match operand {
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    match op {
        "NOT_EQUAL" => !matches!(found, Value::Null) && !found.query_eq(operand),
        "NOT_IN" => {
            !contains(operand_items, &Value::Null)
                && !matches!(found, Value::Null)
                && !contains(operand_items, found)
        }
        "IN" => contains(operand_items, found),
        "ARRAY_CONTAINS" => matches!(found, Value::Array(items) if contains(items, operand)),
        "ARRAY_CONTAINS_ANY" => matches!(
            found,
            Value::Array(items) if operand_items.iter().any(|o| contains(items, o))
        ),
        _ => {
            // Range and equality filters only match values of the operand's
            // type; NaN is not comparable here (IS_NAN exists for it).
            if found.type_rank() != operand.type_rank() || found.is_nan() || operand.is_nan() {
                return false;
            }
            let ord = compare(found, operand);
            match op {
                "LESS_THAN" => ord == Ordering::Less,
                "LESS_THAN_OR_EQUAL" => ord != Ordering::Greater,
                "GREATER_THAN" => ord == Ordering::Greater,
                "GREATER_THAN_OR_EQUAL" => ord != Ordering::Less,
                "EQUAL" => ord == Ordering::Equal,
                _ => false,
            }
        }
    }
}

fn compare_rows(a: &[Value], b: &[Value], order: &[(FieldPath, bool)]) -> Ordering {
    for ((x, y), (_, descending)) in a.iter().zip(b).zip(order) {
        let ord = compare(x, y);
        let ord = if *descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Compare a row with a cursor over the cursor's length, in query order.
fn compare_cursor(values: &[Value], cursor: &Cursor, order: &[(FieldPath, bool)]) -> Ordering {
    compare_rows(
        &values[..cursor.values.len().min(values.len())],
        &cursor.values,
        order,
    )
}
