//! `StructuredQuery.findNearest`: exact nearest-neighbour search over the
//! documents a query's filters let through.

use std::cmp::Ordering;

use serde_json::Value as Json;

use super::EmulatorError;
use super::ids::compare_paths;
use super::store::{Doc, DocPath};
use super::values::{FieldPath, Value, lookup};
use super::vector::Measure;
use super::wire::{count, enum_name, field_reference};

const MEASURES: &[&str] = &[
    "DISTANCE_MEASURE_UNSPECIFIED",
    "EUCLIDEAN",
    "COSINE",
    "DOT_PRODUCT",
];
/// Firestore's bounds on `findNearest.limit`.
const MAX_LIMIT: usize = 1000;
/// The largest embedding Firestore's vector indexes take.
const MAX_DIMENSION: usize = 2048;

/// A parsed `findNearest`.
#[derive(Debug, Clone)]
pub struct Nearest {
    field: FieldPath,
    query: Vec<f64>,
    measure: Measure,
    limit: usize,
    threshold: Option<f64>,
    /// Where each result carries its distance, if asked.
    pub distance_field: Option<FieldPath>,
}

impl Nearest {
    /// The vector field searched and the dimension of its index (the query
    /// vector's).
    pub fn indexed(&self) -> (&FieldPath, usize) {
        (&self.field, self.query.len())
    }

    pub fn parse(json: &Json) -> Result<Nearest, EmulatorError> {
        let field = field_reference(json.get("vectorField"))?;
        let query = match json.get("queryVector").map(Value::from_json).transpose()? {
            Some(Value::Vector(values)) if !values.is_empty() => values,
            _ => {
                return Err(invalid(
                    "findNearest.queryVector must be a non-empty vector",
                ));
            }
        };
        if query.len() > MAX_DIMENSION {
            return Err(invalid(format!(
                "findNearest.queryVector has more than {MAX_DIMENSION} dimensions"
            )));
        }
        let measure = match enum_name(json.get("distanceMeasure").unwrap_or(&Json::Null), MEASURES)
        {
            Ok("EUCLIDEAN") => Measure::Euclidean,
            Ok("COSINE") => Measure::Cosine,
            Ok("DOT_PRODUCT") => Measure::DotProduct,
            _ => {
                return Err(invalid(
                    "findNearest.distanceMeasure must be EUCLIDEAN, COSINE or DOT_PRODUCT",
                ));
            }
        };
        let limit = json
            .get("limit")
            .filter(|l| !l.is_null())
            .map(|l| count(l, "findNearest.limit"))
            .transpose()?
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                invalid(format!(
                    "findNearest.limit must be between 1 and {MAX_LIMIT}"
                ))
            })?;
        let threshold = match json.get("distanceThreshold") {
            None | Some(Json::Null) => None,
            Some(t) => Some(
                double(t.get("value").unwrap_or(t))
                    .ok_or_else(|| invalid("findNearest.distanceThreshold must be a number"))?,
            ),
        };
        let distance_field = match json.get("distanceResultField") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) if s.is_empty() => None,
            Some(Json::String(s)) => Some(FieldPath::parse(s)?),
            Some(_) => return Err(invalid("findNearest.distanceResultField must be a string")),
        };
        Ok(Nearest {
            field,
            query,
            measure,
            limit,
            threshold,
            distance_field,
        })
    }

    /// The nearest `limit` of `rows`, nearest first, each with its distance.
    /// Documents without a vector of the query's dimension at the field (or
    /// whose distance is undefined) are not candidates.
    pub fn select<'a>(
        &self,
        rows: impl Iterator<Item = (&'a DocPath, &'a Doc)>,
    ) -> Vec<(f64, &'a DocPath, &'a Doc)> {
        let mut hits: Vec<(f64, &DocPath, &Doc)> = rows
            .filter_map(|(path, doc)| {
                let Some(Value::Vector(values)) = lookup(&doc.fields, &self.field) else {
                    return None;
                };
                if values.len() != self.query.len() {
                    return None;
                }
                let distance = self.measure.distance(values, &self.query)?;
                let kept = self
                    .threshold
                    .is_none_or(|t| self.measure.within(distance, t));
                kept.then_some((distance, path, doc))
            })
            .collect();
        hits.sort_by(|(da, pa, _), (db, pb, _)| {
            let by_distance = da.partial_cmp(db).unwrap_or(Ordering::Equal);
            let by_distance = if self.measure.larger_is_nearer() {
                by_distance.reverse()
            } else {
                by_distance
            };
            by_distance.then_with(|| {
                compare_paths(pa.iter().map(String::as_str), pb.iter().map(String::as_str))
            })
        });
        hits.truncate(self.limit);
        hits
    }
}

fn double(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn invalid(message: impl Into<String>) -> EmulatorError {
    EmulatorError::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::clock::Timestamp;
    use crate::emulator::values::Fields;
    use serde_json::json;

    fn vector(values: &[f64]) -> Json {
        json!({"mapValue": {"fields": {
            "__type__": {"stringValue": "__vector__"},
            "value": {"arrayValue": {"values": values.iter().map(|d| json!({"doubleValue": d})).collect::<Vec<_>>()}}
        }}})
    }

    fn doc(value: Option<Value>) -> Doc {
        let t = Timestamp {
            seconds: 0,
            nanos: 0,
        };
        let mut fields = Fields::new();
        if let Some(value) = value {
            fields.insert("v".into(), value);
        }
        Doc {
            fields,
            create_time: t,
            update_time: t,
        }
    }

    #[test]
    fn limits_and_measures_are_checked() {
        let base = |limit: Json, measure: Json| {
            json!({"vectorField": {"fieldPath": "v"}, "queryVector": vector(&[1.0]),
                   "distanceMeasure": measure, "limit": limit})
        };
        assert!(Nearest::parse(&base(json!({"value": 1000}), json!(1))).is_ok());
        assert!(Nearest::parse(&base(json!({"value": 1001}), json!(1))).is_err());
        assert!(Nearest::parse(&base(json!({"value": 0}), json!("COSINE"))).is_err());
        assert!(Nearest::parse(&base(json!(5), json!(0))).is_err());
        let mut no_vector = base(json!(5), json!(3));
        no_vector["queryVector"] = json!({"arrayValue": {"values": [{"doubleValue": 1.0}]}});
        assert!(Nearest::parse(&no_vector).is_err());
    }

    #[test]
    fn dot_product_keeps_the_largest_at_or_above_the_threshold() {
        let nearest = Nearest::parse(&json!({
            "vectorField": {"fieldPath": "v"}, "queryVector": vector(&[1.0, 0.0]),
            "distanceMeasure": "DOT_PRODUCT", "limit": 10, "distanceThreshold": {"value": 2.0}
        }))
        .unwrap();
        let paths: Vec<DocPath> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| vec!["c".into(), id.to_string()])
            .collect();
        let docs = [
            doc(Some(Value::Vector(vec![2.0, 9.0]))),
            doc(Some(Value::Vector(vec![5.0, 0.0]))),
            doc(Some(Value::Vector(vec![1.0, 0.0]))),
            doc(Some(Value::Vector(vec![9.0]))),
            doc(None),
        ];
        let hits = nearest.select(paths.iter().zip(docs.iter()));
        let got: Vec<(f64, &str)> = hits.iter().map(|(d, p, _)| (*d, p[1].as_str())).collect();
        assert_eq!(got, [(5.0, "b"), (2.0, "a")]);
    }
}
