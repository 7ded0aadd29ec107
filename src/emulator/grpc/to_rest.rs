//! Protobuf requests in the REST JSON the emulator's methods take: the same
//! proto3 JSON mapping Firestore's REST front end uses, enums as numbers.
//!
//! Conversion never fails: anything out of range becomes JSON the methods
//! refuse with their usual `INVALID_ARGUMENT`, so validation stays in one place.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
use proto::document_transform::field_transform::TransformType;
use proto::structured_aggregation_query::aggregation::Operator as Aggregate;
use proto::structured_query::filter::FilterType;
use proto::structured_query::unary_filter::OperandType;
use proto::value::ValueType;
use serde_json::{Map, Value as Json, json};

use super::super::clock::Timestamp;
use super::super::values::double_to_json;

pub fn timestamp(t: &prost_types::Timestamp) -> Json {
    match u32::try_from(t.nanos) {
        Ok(nanos) if nanos < 1_000_000_000 => Json::from(
            Timestamp {
                seconds: t.seconds,
                nanos,
            }
            .to_rfc3339(),
        ),
        // Not a timestamp any method accepts.
        _ => Json::from(""),
    }
}

/// A transaction id: the emulator's ids are the base64 of the bytes.
pub fn transaction(bytes: &[u8]) -> Json {
    Json::from(BASE64.encode(bytes))
}

pub fn value(value: &proto::Value) -> Json {
    let Some(kind) = &value.value_type else {
        return json!({});
    };
    match kind {
        ValueType::NullValue(_) => json!({ "nullValue": null }),
        ValueType::BooleanValue(b) => json!({ "booleanValue": b }),
        ValueType::IntegerValue(i) => json!({ "integerValue": i.to_string() }),
        ValueType::DoubleValue(d) => json!({ "doubleValue": double_to_json(*d) }),
        ValueType::TimestampValue(t) => json!({ "timestampValue": timestamp(t) }),
        ValueType::StringValue(s) => json!({ "stringValue": s }),
        ValueType::BytesValue(b) => json!({ "bytesValue": BASE64.encode(b) }),
        ValueType::ReferenceValue(r) => json!({ "referenceValue": r }),
        ValueType::GeoPointValue(p) => json!({
            "geoPointValue": {
                "latitude": double_to_json(p.latitude),
                "longitude": double_to_json(p.longitude),
            }
        }),
        ValueType::ArrayValue(a) => json!({ "arrayValue": { "values": values(&a.values) } }),
        ValueType::MapValue(m) => json!({ "mapValue": { "fields": fields(&m.fields) } }),
        // Pipeline expressions: named so the value parser refuses them clearly.
        ValueType::FieldReferenceValue(_) => json!({ "fieldReferenceValue": null }),
        ValueType::VariableReferenceValue(_) => json!({ "variableReferenceValue": null }),
        ValueType::FunctionValue(_) => json!({ "functionValue": null }),
        ValueType::PipelineValue(_) => json!({ "pipelineValue": null }),
    }
}

fn values(items: &[proto::Value]) -> Vec<Json> {
    items.iter().map(value).collect()
}

pub fn fields<'a>(fields: impl IntoIterator<Item = (&'a String, &'a proto::Value)>) -> Json {
    Json::Object(
        fields
            .into_iter()
            .map(|(name, v)| (name.clone(), value(v)))
            .collect::<Map<_, _>>(),
    )
}

pub fn document(doc: &proto::Document) -> Json {
    json!({ "name": doc.name, "fields": fields(&doc.fields) })
}

pub fn mask(mask: &proto::DocumentMask) -> Json {
    json!({ "fieldPaths": mask.field_paths })
}

pub fn precondition(precondition: &proto::Precondition) -> Json {
    use proto::precondition::ConditionType;
    match &precondition.condition_type {
        Some(ConditionType::Exists(exists)) => json!({ "exists": exists }),
        Some(ConditionType::UpdateTime(t)) => json!({ "updateTime": timestamp(t) }),
        None => json!({}),
    }
}

pub fn transaction_options(options: &proto::TransactionOptions) -> Json {
    use proto::transaction_options::Mode;
    use proto::transaction_options::read_only::ConsistencySelector;
    match &options.mode {
        Some(Mode::ReadOnly(read_only)) => match &read_only.consistency_selector {
            Some(ConsistencySelector::ReadTime(t)) => {
                json!({ "readOnly": { "readTime": timestamp(t) } })
            }
            None => json!({ "readOnly": {} }),
        },
        Some(Mode::ReadWrite(read_write)) if !read_write.retry_transaction.is_empty() => {
            json!({ "readWrite": { "retryTransaction": transaction(&read_write.retry_transaction) } })
        }
        Some(Mode::ReadWrite(_)) => json!({ "readWrite": {} }),
        None => json!({}),
    }
}

pub fn write(write: &proto::Write) -> Json {
    use proto::write::Operation;
    let mut out = Map::new();
    match &write.operation {
        Some(Operation::Update(doc)) => {
            out.insert("update".into(), document(doc));
        }
        Some(Operation::Delete(name)) => {
            out.insert("delete".into(), Json::from(name.as_str()));
        }
        Some(Operation::Transform(transform)) => {
            out.insert(
                "transform".into(),
                json!({
                    "document": transform.document,
                    "fieldTransforms": field_transforms(&transform.field_transforms),
                }),
            );
        }
        None => {}
    }
    if let Some(update_mask) = &write.update_mask {
        out.insert("updateMask".into(), mask(update_mask));
    }
    if !write.update_transforms.is_empty() {
        out.insert(
            "updateTransforms".into(),
            field_transforms(&write.update_transforms),
        );
    }
    if let Some(current) = &write.current_document {
        out.insert("currentDocument".into(), precondition(current));
    }
    Json::Object(out)
}

fn field_transforms(transforms: &[proto::document_transform::FieldTransform]) -> Json {
    Json::Array(
        transforms
            .iter()
            .map(|t| {
                let mut out = json!({ "fieldPath": t.field_path });
                let (key, operand) = match &t.transform_type {
                    Some(TransformType::SetToServerValue(n)) => ("setToServerValue", json!(n)),
                    Some(TransformType::Increment(v)) => ("increment", value(v)),
                    Some(TransformType::Maximum(v)) => ("maximum", value(v)),
                    Some(TransformType::Minimum(v)) => ("minimum", value(v)),
                    Some(TransformType::AppendMissingElements(a)) => (
                        "appendMissingElements",
                        json!({ "values": values(&a.values) }),
                    ),
                    Some(TransformType::RemoveAllFromArray(a)) => {
                        ("removeAllFromArray", json!({ "values": values(&a.values) }))
                    }
                    None => return out,
                };
                out[key] = operand;
                out
            })
            .collect(),
    )
}

pub fn writes(writes: &[proto::Write]) -> Json {
    Json::Array(writes.iter().map(write).collect())
}

pub fn structured_query(query: &proto::StructuredQuery) -> Json {
    let mut out = Map::new();
    if let Some(select) = &query.select {
        let fields: Vec<Json> = select.fields.iter().map(field_reference).collect();
        out.insert("select".into(), json!({ "fields": fields }));
    }
    let from: Vec<Json> = query
        .from
        .iter()
        .map(|c| json!({ "collectionId": c.collection_id, "allDescendants": c.all_descendants }))
        .collect();
    out.insert("from".into(), Json::Array(from));
    if let Some(filter) = &query.r#where {
        out.insert("where".into(), self::filter(filter));
    }
    if !query.order_by.is_empty() {
        let orders: Vec<Json> = query
            .order_by
            .iter()
            .map(|o| {
                json!({
                    "field": o.field.as_ref().map_or(Json::Null, field_reference),
                    "direction": o.direction,
                })
            })
            .collect();
        out.insert("orderBy".into(), Json::Array(orders));
    }
    if let Some(cursor) = &query.start_at {
        out.insert("startAt".into(), self::cursor(cursor));
    }
    if let Some(cursor) = &query.end_at {
        out.insert("endAt".into(), self::cursor(cursor));
    }
    if query.offset != 0 {
        out.insert("offset".into(), json!(query.offset));
    }
    if let Some(limit) = query.limit {
        out.insert("limit".into(), json!(limit));
    }
    if let Some(nearest) = &query.find_nearest {
        let mut n = json!({
            "vectorField": nearest.vector_field.as_ref().map_or(Json::Null, field_reference),
            "queryVector": nearest.query_vector.as_ref().map_or(Json::Null, value),
            "distanceMeasure": nearest.distance_measure,
            "limit": nearest.limit,
        });
        if !nearest.distance_result_field.is_empty() {
            n["distanceResultField"] = json!(nearest.distance_result_field);
        }
        if let Some(threshold) = nearest.distance_threshold {
            n["distanceThreshold"] = double_to_json(threshold);
        }
        out.insert("findNearest".into(), n);
    }
    Json::Object(out)
}

fn field_reference(field: &proto::structured_query::FieldReference) -> Json {
    json!({ "fieldPath": field.field_path })
}

fn cursor(cursor: &proto::Cursor) -> Json {
    json!({ "values": values(&cursor.values), "before": cursor.before })
}

fn filter(filter: &proto::structured_query::Filter) -> Json {
    match &filter.filter_type {
        Some(FilterType::CompositeFilter(c)) => json!({
            "compositeFilter": {
                "op": c.op,
                "filters": c.filters.iter().map(self::filter).collect::<Vec<_>>(),
            }
        }),
        Some(FilterType::FieldFilter(f)) => json!({
            "fieldFilter": {
                "field": f.field.as_ref().map_or(Json::Null, field_reference),
                "op": f.op,
                "value": f.value.as_ref().map_or(json!({}), value),
            }
        }),
        Some(FilterType::UnaryFilter(u)) => {
            let field = match &u.operand_type {
                Some(OperandType::Field(f)) => field_reference(f),
                None => Json::Null,
            };
            json!({ "unaryFilter": { "op": u.op, "field": field } })
        }
        None => json!({}),
    }
}

pub fn aggregation_query(query: &proto::StructuredAggregationQuery) -> Json {
    use proto::structured_aggregation_query::QueryType;
    let structured = match &query.query_type {
        Some(QueryType::StructuredQuery(q)) => structured_query(q),
        None => Json::Null,
    };
    let aggregations: Vec<Json> = query
        .aggregations
        .iter()
        .map(|a| {
            let mut out = json!({ "alias": a.alias });
            match &a.operator {
                Some(Aggregate::Count(c)) => {
                    out["count"] = match c.up_to {
                        Some(up_to) => json!({ "upTo": up_to.to_string() }),
                        None => json!({}),
                    };
                }
                Some(Aggregate::Sum(s)) => {
                    out["sum"] =
                        json!({ "field": s.field.as_ref().map_or(Json::Null, field_reference) });
                }
                Some(Aggregate::Avg(s)) => {
                    out["avg"] =
                        json!({ "field": s.field.as_ref().map_or(Json::Null, field_reference) });
                }
                None => {}
            }
            out
        })
        .collect();
    json!({ "structuredQuery": structured, "aggregations": aggregations })
}

pub fn explain_options(options: &proto::ExplainOptions) -> Json {
    json!({ "analyze": options.analyze })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::structured_query::{CollectionSelector, FieldFilter, FieldReference, Filter};

    fn string(s: &str) -> proto::Value {
        proto::Value {
            value_type: Some(ValueType::StringValue(s.into())),
        }
    }

    #[test]
    fn values_take_their_json_form() {
        let map = proto::Value {
            value_type: Some(ValueType::MapValue(proto::MapValue {
                fields: [(
                    "n".to_owned(),
                    proto::Value {
                        value_type: Some(ValueType::IntegerValue(7)),
                    },
                )]
                .into_iter()
                .collect(),
            })),
        };
        assert_eq!(
            value(&map),
            json!({"mapValue": {"fields": {"n": {"integerValue": "7"}}}})
        );
        let nan = proto::Value {
            value_type: Some(ValueType::DoubleValue(f64::NAN)),
        };
        assert_eq!(value(&nan), json!({"doubleValue": "NaN"}));
        let bad_time = prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(timestamp(&bad_time), json!(""));
    }

    #[test]
    fn queries_keep_enums_as_numbers() {
        let query = proto::StructuredQuery {
            from: vec![CollectionSelector {
                collection_id: "c".into(),
                all_descendants: false,
            }],
            r#where: Some(Filter {
                filter_type: Some(FilterType::FieldFilter(FieldFilter {
                    field: Some(FieldReference {
                        field_path: "a".into(),
                    }),
                    op: 5,
                    value: Some(string("x")),
                })),
            }),
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(
            structured_query(&query),
            json!({
                "from": [{"collectionId": "c", "allDescendants": false}],
                "where": {"fieldFilter": {"field": {"fieldPath": "a"}, "op": 5, "value": {"stringValue": "x"}}},
                "limit": 2,
            })
        );
    }
}
