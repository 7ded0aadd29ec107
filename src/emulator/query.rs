//! `StructuredQuery`: parse it, then select, filter, order, cut at cursors,
//! skip and limit, the way Firestore does.

use std::cmp::Ordering;

use serde_json::Value as Json;

use super::EmulatorError;
use super::nearest::Nearest;
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
    /// Vector search over what the filters let through.
    pub nearest: Option<Nearest>,
    /// The fields an aggregation over this query reads (`sum`, `avg`).
    aggregated: Vec<FieldPath>,
}

/// A query's answer: the documents in order, how many `offset` skipped,
/// how many documents the scan looked at, and, for vector search, each
/// result's distance.
pub struct Results<'a> {
    pub documents: Vec<(&'a DocPath, &'a Doc)>,
    pub skipped: usize,
    pub scanned: usize,
    pub distances: Option<Vec<f64>>,
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
            nearest: json
                .get("findNearest")
                .filter(|n| !n.is_null())
                .map(Nearest::parse)
                .transpose()?,
            aggregated: Vec::new(),
        };
        if query.nearest.is_some()
            && (!query.order_by.is_empty()
                || query.start_at.is_some()
                || query.end_at.is_some()
                || query.offset > 0
                || query.limit.is_some())
        {
            return Err(invalid(
                "findNearest cannot be combined with orderBy, startAt, endAt, offset or limit",
            ));
        }
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
        let mut scanned = 0;
        let selected = documents
            .iter()
            .filter(|(path, _)| self.selects(parent, path))
            .inspect(|_| scanned += 1);
        if let Some(nearest) = &self.nearest {
            let filtered = selected.filter(|(path, doc)| {
                self.filter
                    .as_ref()
                    .is_none_or(|f| matches(f, database, path, doc))
            });
            let (distances, documents) = nearest
                .select(filtered)
                .into_iter()
                .map(|(distance, path, doc)| (distance, (path, doc)))
                .unzip();
            return Results {
                documents,
                skipped: 0,
                scanned,
                distances: Some(distances),
            };
        }
        let mut rows: Vec<(Vec<Value>, &'a DocPath, &'a Doc)> = selected
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
        Results {
            documents,
            skipped,
            scanned,
            distances: None,
        }
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

    /// This query as the source of an aggregation reading `fields`.
    /// Firestore answers an aggregation from an index holding those fields,
    /// so a query without an order of its own scans in their order: a
    /// `limit` or `offset` cuts that scan, not the name order.
    pub fn aggregating(mut self, fields: Vec<FieldPath>) -> Query {
        self.aggregated = fields;
        self
    }

    /// The fields an aggregation over this query reads.
    pub fn aggregated(&self) -> &[FieldPath] {
        &self.aggregated
    }

    /// Explicit orders, then inequality fields not yet ordered (by path),
    /// then `__name__`; the implicit ones all take the direction of the last
    /// explicit order (ascending without one). A `__name__` inequality does
    /// not join the fields: the name always comes last. A query with none of
    /// these orders nor cursors (which are positions in the name order),
    /// aggregating, scans its aggregated fields in ascending order first.
    pub fn effective_order(&self) -> Vec<(FieldPath, bool)> {
        let mut order = self.order_by.clone();
        let descending = order.last().is_some_and(|(_, d)| *d);
        let mut inequality = Vec::new();
        if let Some(filter) = &self.filter {
            inequality_fields(filter, &mut inequality);
        }
        inequality.sort();
        inequality.dedup();
        inequality.retain(|path| !path.is_document_name());
        let own_order = !order.is_empty() || !inequality.is_empty();
        let cursors = self.start_at.is_some() || self.end_at.is_some();
        if !own_order && !cursors {
            order.extend(self.aggregated.iter().map(|path| (path.clone(), false)));
        }
        for path in inequality {
            if !order.iter().any(|(p, _)| *p == path) {
                order.push((path, descending));
            }
        }
        if !order.iter().any(|(p, _)| p.is_document_name()) {
            order.push((FieldPath(vec!["__name__".into()]), descending));
        }
        order
    }

    /// Fields with equality-style filters (`==`, `in`, `array-contains…`,
    /// `is null/NaN`), in path order: the leading fields of the index
    /// Firestore would choose.
    pub fn equality_fields(&self) -> Vec<FieldPath> {
        let mut fields = Vec::new();
        if let Some(filter) = &self.filter {
            equality_fields(filter, &mut fields);
        }
        fields.sort();
        fields.dedup();
        fields
    }

    /// Whether this is a collection-group query (`allDescendants`).
    pub fn is_collection_group(&self) -> bool {
        self.all_descendants
    }

    /// The shape `partitionQuery` takes: one collection group, no filter, no
    /// cursors, offset, limit, projection or vector search, and at most an
    /// ascending order by `__name__`.
    pub fn check_partitionable(&self) -> Result<(), EmulatorError> {
        let by_name = match self.order_by.as_slice() {
            [] => true,
            [(path, descending)] => path.is_document_name() && !descending,
            _ => false,
        };
        let plain = self.filter.is_none()
            && self.start_at.is_none()
            && self.end_at.is_none()
            && self.offset == 0
            && self.limit.is_none()
            && self.select.is_none()
            && self.nearest.is_none();
        if self.collection_id.is_none() || !self.all_descendants || !by_name || !plain {
            return Err(invalid(
                "partitionQuery needs a collection group query ordered by __name__ ascending, \
                 without filters, cursors, offset, limit or projection",
            ));
        }
        Ok(())
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

fn equality_fields(filter: &Filter, out: &mut Vec<FieldPath>) {
    match filter {
        Filter::Field { path, op, .. } => {
            if matches!(
                *op,
                "EQUAL" | "IN" | "ARRAY_CONTAINS" | "ARRAY_CONTAINS_ANY"
            ) {
                out.push(path.clone());
            }
        }
        Filter::Unary { path, op } => {
            if matches!(*op, "IS_NAN" | "IS_NULL") {
                out.push(path.clone());
            }
        }
        Filter::And(filters) | Filter::Or(filters) => {
            for f in filters {
                equality_fields(f, out);
            }
        }
    }
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
