//! `StructuredAggregationQuery`: count (with `upTo`), sum and avg over a
//! query's documents, each under its alias.

use serde_json::{Map, Value as Json};

use super::EmulatorError;
use super::store::Doc;
use super::values::{FieldPath, Value, lookup};
use super::wire::{count, field_reference};

#[derive(Debug, Clone)]
enum Function {
    Count { up_to: Option<usize> },
    Sum(FieldPath),
    Avg(FieldPath),
}

/// The aggregations of one request, in order, with their aliases.
#[derive(Debug, Clone)]
pub struct Aggregations(Vec<(String, Function)>);

impl Aggregations {
    pub fn parse(json: &Json) -> Result<Aggregations, EmulatorError> {
        let items = json.as_array().ok_or_else(|| {
            EmulatorError::InvalidArgument("aggregations must be an array".into())
        })?;
        if items.is_empty() {
            return Err(EmulatorError::InvalidArgument(
                "Aggregations can not be empty.".into(),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let alias = item
                .get("alias")
                .and_then(Json::as_str)
                .filter(|a| !a.is_empty())
                .map_or_else(|| format!("field_{}", index + 1), str::to_owned);
            let function = if let Some(c) = item.get("count") {
                let up_to = c
                    .get("upTo")
                    .filter(|u| !u.is_null())
                    .map(|u| count(u, "upTo"))
                    .transpose()?;
                Function::Count { up_to }
            } else if let Some(s) = item.get("sum") {
                Function::Sum(field_reference(s.get("field"))?)
            } else if let Some(a) = item.get("avg") {
                Function::Avg(field_reference(a.get("field"))?)
            } else {
                return Err(EmulatorError::InvalidArgument(
                    "an aggregation needs count, sum or avg".into(),
                ));
            };
            if out.iter().any(|(a, _)| *a == alias) {
                return Err(EmulatorError::InvalidArgument(format!(
                    "Aggregation aliases contain duplicate alias: {alias}."
                )));
            }
            out.push((alias, function));
        }
        Ok(Aggregations(out))
    }

    /// The fields `sum` and `avg` read, in order, each once.
    pub fn fields(&self) -> Vec<FieldPath> {
        let mut fields: Vec<FieldPath> = Vec::new();
        for (_, function) in &self.0 {
            if let Function::Sum(path) | Function::Avg(path) = function
                && !fields.contains(path)
            {
                fields.push(path.clone());
            }
        }
        fields
    }

    /// `aggregateFields`: alias → value. Firestore answers an aggregation
    /// from an index holding every aggregated field, so a document that
    /// lacks any of them counts for none of the aggregations (count too).
    pub fn compute(&self, documents: &[&Doc]) -> Json {
        let aggregated: Vec<&FieldPath> = self
            .0
            .iter()
            .filter_map(|(_, function)| match function {
                Function::Sum(path) | Function::Avg(path) => Some(path),
                Function::Count { .. } => None,
            })
            .collect();
        let documents: Vec<&Doc> = documents
            .iter()
            .copied()
            .filter(|doc| aggregated.iter().all(|p| lookup(&doc.fields, p).is_some()))
            .collect();
        let documents = documents.as_slice();
        let mut fields = Map::new();
        for (alias, function) in &self.0 {
            let value = match function {
                Function::Count { up_to } => {
                    let n = up_to.map_or(documents.len(), |u| documents.len().min(u));
                    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
                }
                Function::Sum(path) => sum(numbers(documents, path)),
                Function::Avg(path) => average(numbers(documents, path)),
            };
            fields.insert(alias.clone(), value.to_json());
        }
        Json::Object(fields)
    }
}

fn numbers<'a>(documents: &'a [&Doc], path: &'a FieldPath) -> impl Iterator<Item = &'a Value> {
    documents
        .iter()
        .filter_map(move |doc| lookup(&doc.fields, path))
        .filter(|v| v.is_number())
}

/// Integers sum as integers until one overflows or a double appears.
fn sum<'a>(values: impl Iterator<Item = &'a Value>) -> Value {
    let mut int_sum: Option<i64> = Some(0);
    let mut float_sum = 0.0_f64;
    for value in values {
        match value {
            Value::Integer(i) => {
                int_sum = int_sum.and_then(|s| s.checked_add(*i));
                float_sum += *i as f64;
            }
            Value::Double(d) => {
                int_sum = None;
                float_sum += d;
            }
            _ => {}
        }
    }
    int_sum.map_or(Value::Double(float_sum), Value::Integer)
}

fn average<'a>(values: impl Iterator<Item = &'a Value>) -> Value {
    let mut total = 0.0_f64;
    let mut n = 0_u64;
    for value in values {
        match value {
            Value::Integer(i) => total += *i as f64,
            Value::Double(d) => total += d,
            _ => continue,
        }
        n += 1;
    }
    if n == 0 {
        Value::Null
    } else {
        Value::Double(total / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::Timestamp;
    use crate::emulator::values::Fields;
    use serde_json::json;

    fn doc(value: Value) -> Doc {
        let mut fields = Fields::new();
        fields.insert("n".into(), value);
        let t = Timestamp {
            seconds: 0,
            nanos: 0,
        };
        Doc {
            fields,
            create_time: t,
            update_time: t,
        }
    }

    #[test]
    fn count_sum_avg_with_aliases() {
        let docs = [
            doc(Value::Integer(1)),
            doc(Value::Integer(2)),
            doc(Value::String("x".into())),
        ];
        let refs: Vec<&Doc> = docs.iter().collect();
        let aggs = Aggregations::parse(&json!([
            {"alias": "c", "count": {"upTo": {"value": 2}}},
            {"alias": "s", "sum": {"field": {"fieldPath": "n"}}},
            {"avg": {"field": {"fieldPath": "n"}}}
        ]))
        .unwrap();
        assert_eq!(
            aggs.compute(&refs),
            json!({
                "c": {"integerValue": "2"},
                "s": {"integerValue": "3"},
                "field_3": {"doubleValue": 1.5}
            })
        );
    }

    #[test]
    fn documents_missing_an_aggregated_field_count_for_none() {
        let mut both = doc(Value::Integer(100));
        both.fields.insert("year".into(), Value::Integer(2000));
        let docs = [both, doc(Value::Integer(50))];
        let refs: Vec<&Doc> = docs.iter().collect();
        let aggs = Aggregations::parse(&json!([
            {"alias": "c", "count": {}},
            {"alias": "s", "sum": {"field": {"fieldPath": "n"}}},
            {"alias": "y", "avg": {"field": {"fieldPath": "year"}}}
        ]))
        .unwrap();
        assert_eq!(
            aggs.compute(&refs),
            json!({"c": {"integerValue": "1"}, "s": {"integerValue": "100"}, "y": {"doubleValue": 2000.0}})
        );
    }

    /// Firestore's wording, which python-firestore's system tests match.
    #[test]
    fn an_empty_aggregation_and_a_duplicate_alias_in_firestore_words() {
        let message = |json: Json| match Aggregations::parse(&json) {
            Err(EmulatorError::InvalidArgument(m)) => m,
            other => panic!("want INVALID_ARGUMENT, got {other:?}"),
        };
        assert_eq!(message(json!([])), "Aggregations can not be empty.");
        assert_eq!(
            message(json!([
                {"alias": "total", "count": {}},
                {"alias": "total", "sum": {"field": {"fieldPath": "n"}}}
            ])),
            "Aggregation aliases contain duplicate alias: total."
        );
    }

    #[test]
    fn sum_turns_double_on_overflow_and_avg_of_nothing_is_null() {
        let docs = [doc(Value::Integer(i64::MAX)), doc(Value::Integer(1))];
        let refs: Vec<&Doc> = docs.iter().collect();
        let sum =
            Aggregations::parse(&json!([{"alias": "s", "sum": {"field": {"fieldPath": "n"}}}]))
                .unwrap();
        assert!(sum.compute(&refs)["s"]["doubleValue"].is_number());
        let avg = Aggregations::parse(
            &json!([{"alias": "a", "avg": {"field": {"fieldPath": "missing"}}}]),
        )
        .unwrap();
        assert_eq!(avg.compute(&refs)["a"], json!({"nullValue": null}));
    }
}
