//! REST (proto3 JSON) → the wire-neutral [`data`](super::data) model:
//! values, document fields, masks, transforms and query filters.

use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::model::data::{FieldPath, FieldValue, Fields, Filter, NameBound, parse_field_path};
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

fn double(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
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

/// `StructuredQuery.where`.
pub fn filter(database: &Database, raw: &RawValue) -> Result<Filter, ClassifyError> {
    Ok(filter_of(database, &json(raw, "where")?))
}

fn filter_of(database: &Database, f: &Json) -> Filter {
    if let Some(c) = member(f, "compositeFilter", "composite_filter") {
        return match (c.get("op").and_then(Json::as_str), c.get("filters")) {
            (Some("AND"), Some(Json::Array(parts))) => {
                Filter::And(parts.iter().map(|p| filter_of(database, p)).collect())
            }
            _ => Filter::Other,
        };
    }
    let Some(ff) = member(f, "fieldFilter", "field_filter") else {
        return Filter::Other;
    };
    let path = member(ff, "field", "field")
        .and_then(|r| member(r, "fieldPath", "field_path"))
        .and_then(Json::as_str)
        .and_then(parse_field_path);
    let op = ff.get("op").and_then(Json::as_str);
    let Some(value) = ff.get("value").and_then(|v| value(v).ok()) else {
        return Filter::Other;
    };
    match (path, op) {
        (Some(path), Some(op)) if path == ["__name__"] => {
            let bound = match op {
                "EQUAL" => NameBound::Equal,
                "GREATER_THAN" => NameBound::Above { inclusive: false },
                "GREATER_THAN_OR_EQUAL" => NameBound::Above { inclusive: true },
                "LESS_THAN" => NameBound::Below { inclusive: false },
                "LESS_THAN_OR_EQUAL" => NameBound::Below { inclusive: true },
                _ => return Filter::Other,
            };
            // A bound need not name a document (the Node client bounds a
            // collection with `coll\0/…`): its segments are only compared.
            let prefix = format!("{database}/documents/");
            match value {
                FieldValue::Reference(name) => match name.strip_prefix(&prefix) {
                    Some(rest) => Filter::Name(bound, rest.split('/').map(String::from).collect()),
                    None => Filter::Other,
                },
                _ => Filter::Other,
            }
        }
        (Some(path), Some("EQUAL")) => Filter::Equal(path, value),
        _ => Filter::Other,
    }
}
