//! The REST JSON the emulator's methods answer, as protobuf responses.
//!
//! The JSON is the emulator's own, so a shape it cannot read is the
//! emulator's bug: `INTERNAL`, never a guess.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use googleapis_tonic_google_firestore_v1::google::r#type::LatLng;
use proto::value::ValueType;
use serde_json::Value as Json;
use tonic::Status;

use super::super::clock::Timestamp;
use super::super::store::{Doc, document_name};
use super::super::values::{Fields, Value, fields_from_json};
use super::super::vector;

fn malformed(what: &str) -> Status {
    tracing::error!(what, "emulator answer has an unexpected shape");
    Status::internal("The emulator produced a malformed answer.")
}

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        // Below 10^9 by construction.
        nanos: i32::try_from(t.nanos).unwrap_or(i32::MAX),
    }
}

/// An optional RFC 3339 string member.
pub fn time_at(json: &Json, key: &str) -> Result<Option<prost_types::Timestamp>, Status> {
    match json.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(t) => t
            .as_str()
            .and_then(Timestamp::parse)
            .map(|t| Some(timestamp(t)))
            .ok_or_else(|| malformed(key)),
    }
}

/// A base64 transaction id member (empty when absent), as the raw bytes.
pub fn transaction_at(json: &Json, key: &str) -> Result<Vec<u8>, Status> {
    match json.get(key).and_then(Json::as_str) {
        None => Ok(Vec::new()),
        Some(id) => BASE64.decode(id).map_err(|_| malformed(key)),
    }
}

pub fn value(value: &Value) -> proto::Value {
    let kind = match value {
        Value::Null => ValueType::NullValue(0),
        Value::Boolean(b) => ValueType::BooleanValue(*b),
        Value::Integer(i) => ValueType::IntegerValue(*i),
        Value::Double(d) => ValueType::DoubleValue(*d),
        Value::Timestamp(t) => ValueType::TimestampValue(timestamp(*t)),
        Value::String(s) => ValueType::StringValue(s.clone()),
        Value::Bytes(b) => ValueType::BytesValue(b.clone()),
        Value::Reference(r) => ValueType::ReferenceValue(r.clone()),
        Value::GeoPoint(latitude, longitude) => ValueType::GeoPointValue(LatLng {
            latitude: *latitude,
            longitude: *longitude,
        }),
        Value::Array(items) => ValueType::ArrayValue(proto::ArrayValue {
            values: items.iter().map(self::value).collect(),
        }),
        Value::Vector(values) => ValueType::MapValue(proto::MapValue {
            fields: fields(&vector::to_fields(values)),
        }),
        Value::Map(map) => ValueType::MapValue(proto::MapValue {
            fields: fields(map),
        }),
    };
    proto::Value {
        value_type: Some(kind),
    }
}

pub fn fields(fields: &Fields) -> std::collections::HashMap<String, proto::Value> {
    fields
        .iter()
        .map(|(name, v)| (name.clone(), value(v)))
        .collect()
}

/// A `fields`-shaped JSON map (document fields, aggregate results).
pub fn json_fields(
    json: Option<&Json>,
) -> Result<std::collections::HashMap<String, proto::Value>, Status> {
    fields_from_json(json)
        .map(|f| fields(&f))
        .map_err(|_| malformed("fields"))
}

/// A JSON `Value` (partition cursors, transform results).
pub fn json_value(json: &Json) -> Result<proto::Value, Status> {
    Value::from_json(json)
        .map(|v| value(&v))
        .map_err(|_| malformed("value"))
}

pub fn document(json: &Json) -> Result<proto::Document, Status> {
    Ok(proto::Document {
        name: json
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| malformed("name"))?
            .to_owned(),
        fields: json_fields(json.get("fields"))?,
        create_time: time_at(json, "createTime")?,
        update_time: time_at(json, "updateTime")?,
    })
}

/// A stored document, straight from the store (Listen).
pub fn stored(database: &str, path: &[String], doc: &Doc) -> proto::Document {
    proto::Document {
        name: document_name(database, path),
        fields: fields(&doc.fields),
        create_time: Some(timestamp(doc.create_time)),
        update_time: Some(timestamp(doc.update_time)),
    }
}

pub fn documents(json: Option<&Json>) -> Result<Vec<proto::Document>, Status> {
    array(json).iter().map(document).collect()
}

pub fn array(json: Option<&Json>) -> &[Json] {
    json.and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn string_at(json: &Json, key: &str) -> String {
    json.get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub fn write_result(json: &Json) -> Result<proto::WriteResult, Status> {
    Ok(proto::WriteResult {
        update_time: time_at(json, "updateTime")?,
        transform_results: array(json.get("transformResults"))
            .iter()
            .map(json_value)
            .collect::<Result<_, _>>()?,
    })
}

pub fn write_results(json: Option<&Json>) -> Result<Vec<proto::WriteResult>, Status> {
    array(json).iter().map(write_result).collect()
}

/// `explainMetrics` as far as the protobuf form has room for it: the plan's
/// index list and the execution counts.
pub fn explain_metrics(json: Option<&Json>) -> Option<proto::ExplainMetrics> {
    let json = json?;
    let count = |key: &str| {
        json.get("executionStats")
            .and_then(|s| s.get(key))
            .and_then(|n| n.as_str().and_then(|s| s.parse().ok()).or(n.as_i64()))
            .unwrap_or(0)
    };
    let indexes = array(json.get("planSummary").and_then(|p| p.get("indexesUsed")))
        .iter()
        .filter_map(Json::as_object)
        .map(|index| prost_types::Struct {
            fields: index
                .iter()
                .filter_map(|(k, v)| {
                    let text = v.as_str()?.to_owned();
                    Some((
                        k.clone(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue(text)),
                        },
                    ))
                })
                .collect(),
        })
        .collect();
    Some(proto::ExplainMetrics {
        plan_summary: Some(proto::PlanSummary {
            indexes_used: indexes,
        }),
        execution_stats: json.get("executionStats").map(|_| proto::ExecutionStats {
            results_returned: count("resultsReturned"),
            read_operations: count("readOperations"),
            execution_duration: None,
            debug_stats: None,
        }),
    })
}
