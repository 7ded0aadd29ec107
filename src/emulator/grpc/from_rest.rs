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

/// `explainMetrics` in its protobuf form: the plan's indexes, and with
/// analysis the counts, the duration and the debug statistics, as REST
/// carries them.
pub fn explain_metrics(json: Option<&Json>) -> Option<proto::ExplainMetrics> {
    let json = json?;
    let stats = json.get("executionStats");
    let count = |key: &str| {
        stats
            .and_then(|s| s.get(key))
            .and_then(|n| n.as_str().and_then(|s| s.parse().ok()).or(n.as_i64()))
            .unwrap_or(0)
    };
    let indexes = array(json.get("planSummary").and_then(|p| p.get("indexesUsed")))
        .iter()
        .filter_map(Json::as_object)
        .map(proto_struct)
        .collect();
    Some(proto::ExplainMetrics {
        plan_summary: Some(proto::PlanSummary {
            indexes_used: indexes,
        }),
        execution_stats: stats.map(|stats| proto::ExecutionStats {
            results_returned: count("resultsReturned"),
            read_operations: count("readOperations"),
            execution_duration: stats
                .get("executionDuration")
                .and_then(Json::as_str)
                .and_then(duration),
            debug_stats: stats
                .get("debugStats")
                .and_then(Json::as_object)
                .map(proto_struct),
        }),
    })
}

/// A proto3 JSON `Duration` (`"0.001500000s"`).
fn duration(text: &str) -> Option<prost_types::Duration> {
    let number = text.strip_suffix('s')?;
    let (seconds, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(prost_types::Duration {
        seconds: seconds.parse().ok()?,
        // The fraction's digits padded to nine are its nanoseconds.
        nanos: format!("{fraction:0<9}").parse().ok()?,
    })
}

/// A JSON object as a protobuf `Struct`.
fn proto_struct(object: &serde_json::Map<String, Json>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(k, v)| (k.clone(), proto_value(v)))
            .collect(),
    }
}

fn proto_value(json: &Json) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        Json::Object(object) => Kind::StructValue(proto_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::value::Kind;
    use serde_json::json;

    /// What python-firestore's system tests read over gRPC after an analyzed
    /// query: a positive `execution_duration` and `debug_stats` holding
    /// `billing_details`, `documents_scanned` and `index_entries_scanned`.
    #[test]
    fn explain_carries_duration_and_debug_stats_as_rest_does() {
        let metrics = explain_metrics(Some(&json!({
            "planSummary": {"indexesUsed": [{"query_scope": "Collection", "properties": "(n ASC, __name__ ASC)"}]},
            "executionStats": {
                "resultsReturned": "2",
                "readOperations": "2",
                "executionDuration": "0.001500000s",
                "debugStats": {
                    "documents_scanned": "3",
                    "index_entries_scanned": "3",
                    "billing_details": {"documents_billable": "2", "min_query_cost": "0"}
                }
            }
        })))
        .unwrap();
        let stats = metrics.execution_stats.unwrap();
        assert_eq!((stats.results_returned, stats.read_operations), (2, 2));
        assert_eq!(
            stats.execution_duration,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_500_000
            })
        );
        let debug = stats.debug_stats.unwrap().fields;
        assert_eq!(
            debug["documents_scanned"].kind,
            Some(Kind::StringValue("3".into()))
        );
        let Some(Kind::StructValue(billing)) = &debug["billing_details"].kind else {
            panic!("billing_details is a struct: {debug:?}");
        };
        assert_eq!(
            billing.fields["documents_billable"].kind,
            Some(Kind::StringValue("2".into()))
        );
        let index = &metrics.plan_summary.unwrap().indexes_used[0].fields;
        assert_eq!(
            index["properties"].kind,
            Some(Kind::StringValue("(n ASC, __name__ ASC)".into()))
        );
        assert_eq!(
            duration("12s"),
            Some(prost_types::Duration {
                seconds: 12,
                nanos: 0
            })
        );
        assert_eq!(duration("1.5"), None);
    }
}
