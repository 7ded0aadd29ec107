//! Protobuf → the wire-neutral [`data`](crate::model::data) model:
//! values, document fields, masks, transforms, preconditions and query
//! filters, read exactly as `firestore::data_json` reads their REST twins.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::proto::{
    self, Value, document_transform::field_transform, precondition, structured_query, value,
};
use crate::model::data::{FieldPath, FieldValue, Fields, Filter, Precondition, parse_field_path};
use crate::model::enums::{CompositeOp, FieldOp, ProtoEnum, ServerValue, UnaryOp};
use crate::model::{ClassifyError, Database};

/// `Document.fields`.
pub fn fields(map: &HashMap<String, Value>) -> Result<Fields, ClassifyError> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), field_value(v)?)))
        .collect()
}

/// One `Value`; a value of no kind is malformed, as `{}` is over REST.
pub fn field_value(v: &Value) -> Result<FieldValue, ClassifyError> {
    use value::ValueType as V;
    let bad = ClassifyError::MalformedBody("value");
    Ok(match v.value_type.as_ref().ok_or(bad.clone())? {
        V::NullValue(_) => FieldValue::Null,
        V::BooleanValue(b) => FieldValue::Boolean(*b),
        V::IntegerValue(i) => FieldValue::Integer(*i),
        V::DoubleValue(d) => FieldValue::Double(*d),
        V::TimestampValue(t) => FieldValue::Timestamp(t.to_string()),
        V::StringValue(s) => FieldValue::String(s.clone()),
        V::BytesValue(b) => FieldValue::Bytes(BASE64.encode(b)),
        V::ReferenceValue(r) => FieldValue::Reference(r.clone()),
        V::GeoPointValue(p) => FieldValue::GeoPoint {
            latitude: p.latitude,
            longitude: p.longitude,
        },
        V::ArrayValue(a) => {
            FieldValue::Array(a.values.iter().map(field_value).collect::<Result<_, _>>()?)
        }
        V::MapValue(m) => FieldValue::Map(fields(&m.fields)?),
        // Refused before (`plain_value`); never data.
        V::FieldReferenceValue(_)
        | V::VariableReferenceValue(_)
        | V::FunctionValue(_)
        | V::PipelineValue(_) => return Err(bad),
    })
}

/// `Document.fields` checked as [`fields`] reads them, without building
/// them: every value, at any depth, of some kind.
pub fn check_fields(map: &HashMap<String, Value>) -> Result<(), ClassifyError> {
    map.values().try_for_each(check_value)
}

fn check_value(v: &Value) -> Result<(), ClassifyError> {
    use value::ValueType as V;
    match v.value_type.as_ref() {
        Some(V::ArrayValue(a)) => a.values.iter().try_for_each(check_value),
        Some(V::MapValue(m)) => check_fields(&m.fields),
        Some(
            V::NullValue(_)
            | V::BooleanValue(_)
            | V::IntegerValue(_)
            | V::DoubleValue(_)
            | V::TimestampValue(_)
            | V::StringValue(_)
            | V::BytesValue(_)
            | V::ReferenceValue(_)
            | V::GeoPointValue(_),
        ) => Ok(()),
        None
        | Some(
            V::FieldReferenceValue(_)
            | V::VariableReferenceValue(_)
            | V::FunctionValue(_)
            | V::PipelineValue(_),
        ) => Err(ClassifyError::MalformedBody("value")),
    }
}

/// A `DocumentMask`.
pub fn mask(mask: &proto::DocumentMask) -> Result<Vec<FieldPath>, ClassifyError> {
    mask.field_paths
        .iter()
        .map(|p| parse_field_path(p))
        .collect::<Option<_>>()
        .ok_or(ClassifyError::InvalidWrite("updateMask.fieldPaths"))
}

/// `FieldTransform`s: each field path and the transform's kind (the names
/// `data_json::transforms` gives them).
pub fn transforms(
    list: &[proto::document_transform::FieldTransform],
) -> Result<Vec<(FieldPath, &'static str)>, ClassifyError> {
    use field_transform::TransformType as T;
    let bad = ClassifyError::InvalidWrite("field transform");
    list.iter()
        .map(|t| {
            let path = parse_field_path(&t.field_path).ok_or(bad.clone())?;
            let kind = match t.transform_type.as_ref().ok_or(bad.clone())? {
                T::SetToServerValue(v) => {
                    ServerValue::from_proto_number(*v).ok_or(bad.clone())?;
                    "serverTimestamp"
                }
                T::Increment(_) => "increment",
                T::Maximum(_) => "maximum",
                T::Minimum(_) => "minimum",
                T::AppendMissingElements(_) => "arrayUnion",
                T::RemoveAllFromArray(_) => "arrayRemove",
            };
            Ok((path, kind))
        })
        .collect()
}

/// `currentDocument`.
pub fn precondition(p: Option<&proto::Precondition>) -> Precondition {
    match p.and_then(|p| p.condition_type.as_ref()) {
        None => Precondition::None,
        Some(precondition::ConditionType::Exists(e)) => Precondition::Exists(*e),
        Some(precondition::ConditionType::UpdateTime(t)) => Precondition::UpdateTime(t.to_string()),
    }
}

/// `StructuredQuery.where`: what a rule can use of it; anything else is
/// [`Filter::Other`] (it narrows the results, proves nothing). Every
/// operator in it must be one Firestore knows.
pub fn filter(database: &Database, f: &structured_query::Filter) -> Result<Filter, ClassifyError> {
    use structured_query::filter::FilterType;
    Ok(match &f.filter_type {
        Some(FilterType::CompositeFilter(c)) => {
            let op = operator::<CompositeOp>(c.op, "compositeFilter.op")?;
            let parts = c
                .filters
                .iter()
                .map(|p| filter(database, p))
                .collect::<Result<_, _>>()?;
            match op {
                CompositeOp::And => Filter::And(parts),
                CompositeOp::Or => Filter::Other,
            }
        }
        Some(FilterType::UnaryFilter(u)) => {
            operator::<UnaryOp>(u.op, "unaryFilter.op")?;
            Filter::Other
        }
        Some(FilterType::FieldFilter(ff)) => {
            let op = operator::<FieldOp>(ff.op, "fieldFilter.op")?;
            let path = ff
                .field
                .as_ref()
                .and_then(|r| parse_field_path(&r.field_path));
            let value = ff.value.as_ref().and_then(|v| field_value(v).ok());
            match (path, value) {
                (Some(path), Some(value)) => Filter::field(database, path, op, value),
                _ => Filter::Other,
            }
        }
        None => Filter::Other,
    })
}

/// A filter's `op`; unknown or unspecified is refused, as over REST.
fn operator<E: ProtoEnum>(number: i32, within: &'static str) -> Result<E, ClassifyError> {
    E::from_proto_number(number).ok_or(ClassifyError::InvalidQuery(within))
}
