//! REST (proto3 JSON) → the wire-neutral [`data`](super::data) model:
//! values, document fields, masks, transforms and query filters.

use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::model::data::{FieldPath, FieldValue, Fields, Filter, parse_field_path};
use crate::model::enums::{CompositeOp, FieldOp, ProtoEnum, ServerValue, UnaryOp};
use crate::model::{ClassifyError, Database};

fn json(raw: &RawValue, within: &'static str) -> Result<Json, ClassifyError> {
    serde_json::from_str(raw.get()).map_err(|_| ClassifyError::MalformedBody(within))
}

/// A member by either spelling (the shape checks already refused both).
fn member<'j>(object: &'j Json, camel: &str, snake: &str) -> Option<&'j Json> {
    object
        .get(camel)
        .or_else(|| object.get(snake))
        .filter(|v| !v.is_null())
}

/// `Document.fields` (a map of `Value`s).
pub fn fields(raw: &RawValue) -> Result<Fields, ClassifyError> {
    fields_of(&json(raw, "fields")?)
}

pub(crate) fn fields_of(map: &Json) -> Result<Fields, ClassifyError> {
    let object = map
        .as_object()
        .ok_or(ClassifyError::MalformedBody("fields"))?;
    object
        .iter()
        .map(|(k, v)| Ok((k.clone(), value(v)?)))
        .collect()
}

/// One `Value`.
pub fn value(v: &Json) -> Result<FieldValue, ClassifyError> {
    let bad = ClassifyError::MalformedBody("value");
    let object = v.as_object().ok_or(bad.clone())?;
    let mut entries = object.iter();
    let (kind, inner) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => return Err(bad),
    };
    let text = || inner.as_str().map(str::to_owned).ok_or(bad.clone());
    Ok(match kind.as_str() {
        "nullValue" | "null_value" => FieldValue::Null,
        "booleanValue" | "boolean_value" => FieldValue::Boolean(inner.as_bool().ok_or(bad)?),
        "integerValue" | "integer_value" => FieldValue::Integer(match inner {
            Json::String(s) => s.parse().map_err(|_| bad)?,
            Json::Number(n) => n.as_i64().ok_or(bad)?,
            _ => return Err(bad),
        }),
        "doubleValue" | "double_value" => FieldValue::Double(double(inner).ok_or(bad)?),
        "timestampValue" | "timestamp_value" => FieldValue::Timestamp(text()?),
        "stringValue" | "string_value" => FieldValue::String(text()?),
        "bytesValue" | "bytes_value" => FieldValue::Bytes(text()?),
        "referenceValue" | "reference_value" => FieldValue::Reference(text()?),
        "geoPointValue" | "geo_point_value" => FieldValue::GeoPoint {
            latitude: inner.get("latitude").and_then(double).unwrap_or(0.0),
            longitude: inner.get("longitude").and_then(double).unwrap_or(0.0),
        },
        "arrayValue" | "array_value" => FieldValue::Array(match inner.get("values") {
            Some(Json::Array(values)) => values.iter().map(value).collect::<Result<_, _>>()?,
            None | Some(Json::Null) => Vec::new(),
            Some(_) => return Err(bad),
        }),
        "mapValue" | "map_value" => FieldValue::Map(match inner.get("fields") {
            Some(f) if !f.is_null() => fields_of(f)?,
            _ => Fields::new(),
        }),
        _ => return Err(bad),
    })
}

/// A proto3-JSON `double`: a number, or the strings `NaN`, `Infinity`,
/// `-Infinity` and decimal text.
pub fn double(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => double_text(s),
        _ => None,
    }
}

/// A proto3-JSON `double` written as a string.
pub(crate) fn double_text(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// A `DocumentMask` (`{"fieldPaths": [...]}`).
pub fn mask(raw: &RawValue) -> Result<Vec<FieldPath>, ClassifyError> {
    let mask = json(raw, "updateMask")?;
    let paths = match member(&mask, "fieldPaths", "field_paths") {
        Some(Json::Array(paths)) => paths,
        None => return Ok(Vec::new()),
        Some(_) => return Err(ClassifyError::InvalidWrite("updateMask.fieldPaths")),
    };
    paths
        .iter()
        .map(|p| p.as_str().and_then(parse_field_path))
        .collect::<Option<_>>()
        .ok_or(ClassifyError::InvalidWrite("updateMask.fieldPaths"))
}

/// The field paths of a mask given as query parameters.
pub fn mask_params<'a>(
    params: impl Iterator<Item = &'a str>,
) -> Result<Vec<FieldPath>, ClassifyError> {
    params
        .map(parse_field_path)
        .collect::<Option<_>>()
        .ok_or(ClassifyError::InvalidParameter("updateMask.fieldPaths"))
}

/// `FieldTransform`s: each field path and the transform's kind.
pub fn transforms(raw: &RawValue) -> Result<Vec<(FieldPath, &'static str)>, ClassifyError> {
    let bad = ClassifyError::InvalidWrite("field transform");
    let list = json(raw, "fieldTransforms")?;
    let list = list.as_array().ok_or(bad.clone())?;
    list.iter()
        .map(|t| {
            let path = member(t, "fieldPath", "field_path")
                .and_then(Json::as_str)
                .and_then(parse_field_path)
                .ok_or(bad.clone())?;
            if let Some(v) = member(t, "setToServerValue", "set_to_server_value") {
                proto_enum::<ServerValue>(Some(v)).ok_or(bad.clone())?;
            }
            let kinds: [(&str, &str, &'static str); 6] = [
                ("setToServerValue", "set_to_server_value", "serverTimestamp"),
                ("increment", "increment", "increment"),
                ("maximum", "maximum", "maximum"),
                ("minimum", "minimum", "minimum"),
                (
                    "appendMissingElements",
                    "append_missing_elements",
                    "arrayUnion",
                ),
                ("removeAllFromArray", "remove_all_from_array", "arrayRemove"),
            ];
            let kind = kinds
                .iter()
                .find(|(camel, snake, _)| member(t, camel, snake).is_some())
                .map(|(_, _, kind)| *kind)
                .ok_or(bad.clone())?;
            Ok((path, kind))
        })
        .collect()
}

/// `StructuredQuery.where`. Every operator in it must be one Firestore
/// knows, by name or number.
pub fn filter(database: &Database, raw: &RawValue) -> Result<Filter, ClassifyError> {
    filter_of(database, &json(raw, "where")?)
}

fn filter_of(database: &Database, f: &Json) -> Result<Filter, ClassifyError> {
    if let Some(c) = member(f, "compositeFilter", "composite_filter") {
        let op = operator::<CompositeOp>(c, "compositeFilter.op")?;
        let parts = match c.get("filters") {
            Some(Json::Array(parts)) => parts
                .iter()
                .map(|p| filter_of(database, p))
                .collect::<Result<_, _>>()?,
            _ => return Ok(Filter::Other),
        };
        return Ok(match op {
            CompositeOp::And => Filter::And(parts),
            CompositeOp::Or => Filter::Other,
        });
    }
    if let Some(u) = member(f, "unaryFilter", "unary_filter") {
        operator::<UnaryOp>(u, "unaryFilter.op")?;
        return Ok(Filter::Other);
    }
    let Some(ff) = member(f, "fieldFilter", "field_filter") else {
        return Ok(Filter::Other);
    };
    let op = operator::<FieldOp>(ff, "fieldFilter.op")?;
    let path = member(ff, "field", "field")
        .and_then(|r| member(r, "fieldPath", "field_path"))
        .and_then(Json::as_str)
        .and_then(parse_field_path);
    let value = ff.get("value").and_then(|v| value(v).ok());
    Ok(match (path, value) {
        (Some(path), Some(value)) => Filter::field(database, path, op, value),
        _ => Filter::Other,
    })
}

/// A filter's `op`; unknown, unset or unspecified is refused.
fn operator<E: ProtoEnum>(filter: &Json, within: &'static str) -> Result<E, ClassifyError> {
    proto_enum(filter.get("op")).ok_or(ClassifyError::InvalidQuery(within))
}

/// A proto3 JSON enum, given by name or by number (the Node client sends
/// numbers); unset (absent or `null`) is the proto's zero value.
pub(crate) fn proto_enum<E: ProtoEnum>(v: Option<&Json>) -> Option<E> {
    match v {
        None | Some(Json::Null) => E::from_proto_number(0),
        Some(Json::String(name)) => E::from_proto_name(name),
        Some(Json::Number(n)) => E::from_proto_number(i32::try_from(n.as_i64()?).ok()?),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::data::NameBound;

    fn db() -> Database {
        Database {
            project: "p".into(),
            database: "(default)".into(),
        }
    }

    fn read(filter: Json) -> Result<Filter, ClassifyError> {
        filter_of(&db(), &filter)
    }

    fn field(path: &str, op: Json, value: Json) -> Json {
        json!({"fieldFilter": {"field": {"fieldPath": path}, "op": op, "value": value}})
    }

    #[test]
    fn operators_read_alike_by_name_and_number() {
        let name = "projects/p/databases/(default)/documents/a/b";
        let bound = |op| field("__name__", op, json!({"referenceValue": name}));
        for (by_name, by_number) in [(json!("AND"), json!(1)), (json!("OR"), json!(2))] {
            let f = |op| json!({"compositeFilter": {"op": op, "filters": [bound(json!(4))]}});
            assert_eq!(read(f(by_name)).unwrap(), read(f(by_number)).unwrap());
        }
        let path = vec!["a".to_owned(), "b".to_owned()];
        for (by_name, by_number, expected) in [
            ("EQUAL", 5, Filter::Name(NameBound::Equal, path.clone())),
            (
                "GREATER_THAN",
                3,
                Filter::Name(NameBound::Above { inclusive: false }, path.clone()),
            ),
            (
                "GREATER_THAN_OR_EQUAL",
                4,
                Filter::Name(NameBound::Above { inclusive: true }, path.clone()),
            ),
            (
                "LESS_THAN",
                1,
                Filter::Name(NameBound::Below { inclusive: false }, path.clone()),
            ),
            (
                "LESS_THAN_OR_EQUAL",
                2,
                Filter::Name(NameBound::Below { inclusive: true }, path.clone()),
            ),
            ("NOT_EQUAL", 6, Filter::Other),
        ] {
            assert_eq!(read(bound(json!(by_name))).unwrap(), expected, "{by_name}");
            assert_eq!(
                read(bound(json!(by_number))).unwrap(),
                expected,
                "{by_number}"
            );
        }
        let owner = |op| field("owner", op, json!({"stringValue": "alice"}));
        let fact = Filter::Equal(vec!["owner".into()], FieldValue::String("alice".into()));
        assert_eq!(read(owner(json!("EQUAL"))).unwrap(), fact);
        assert_eq!(read(owner(json!(5))).unwrap(), fact);
        let unary = |op| json!({"unaryFilter": {"op": op, "field": {"fieldPath": "a"}}});
        assert_eq!(read(unary(json!("IS_NULL"))).unwrap(), Filter::Other);
        assert_eq!(read(unary(json!(3))).unwrap(), Filter::Other);
    }

    #[test]
    fn an_unknown_operator_is_refused_by_name_or_number() {
        let owner = |op| field("owner", op, json!({"stringValue": "alice"}));
        for op in [
            json!(0),
            json!(11),
            json!(-1),
            json!(5.5),
            json!("5"),
            json!("EQ"),
            json!(null),
            json!(true),
        ] {
            assert_eq!(
                read(owner(op.clone())).unwrap_err().reason(),
                "invalid_query",
                "{op}"
            );
        }
        let unary = |op| json!({"unaryFilter": {"op": op, "field": {"fieldPath": "a"}}});
        assert_eq!(read(unary(json!(1))).unwrap_err().reason(), "invalid_query");
        assert_eq!(
            read(unary(json!("IS_EMPTY"))).unwrap_err().reason(),
            "invalid_query"
        );
        // Inside an OR, which proves nothing, it is refused all the same.
        let or = json!({"compositeFilter": {"op": 2, "filters": [owner(json!(99))]}});
        assert_eq!(read(or).unwrap_err().reason(), "invalid_query");
        let unknown = json!({"compositeFilter": {"op": 3, "filters": [owner(json!(5))]}});
        assert_eq!(read(unknown).unwrap_err().reason(), "invalid_query");
    }

    #[test]
    fn server_values_read_alike_by_name_and_number() {
        let transform = |v: Json| {
            let list = json!([{"fieldPath": "at", "setToServerValue": v}]).to_string();
            let raw: Box<RawValue> = serde_json::from_str(&list).unwrap();
            transforms(&raw)
        };
        let at = vec![(vec!["at".to_owned()], "serverTimestamp")];
        assert_eq!(transform(json!("REQUEST_TIME")).unwrap(), at);
        assert_eq!(transform(json!(1)).unwrap(), at);
        for bad in [
            json!(0),
            json!(2),
            json!("SERVER_VALUE_UNSPECIFIED"),
            json!("NOW"),
        ] {
            assert_eq!(
                transform(bad.clone()).unwrap_err().reason(),
                "invalid_write",
                "{bad}"
            );
        }
    }
}
