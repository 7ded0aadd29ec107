//! The shapes of the proto messages that carry Firestore `Value`s — `Value`
//! itself, a document's fields, query filters and cursors, field transforms
//! (google/firestore/v1 document.proto, query.proto, write.proto) — so that
//! the expression kinds of `executePipeline` never reach a document or a
//! query through them.

use super::shape::{Member, Message, Role, Shape};
use crate::model::ClassifyError;

const fn is(camel: &'static str, snake: &'static str, shape: &'static Shape) -> Member {
    Member {
        camel,
        snake,
        shape: Role::Is(shape),
    }
}

/// A `Value` kind that only `executePipeline` understands: refused here,
/// since that RPC stays refused and in a document or query it would be
/// read as something else than what was authorized.
const fn pipeline_only(camel: &'static str, snake: &'static str) -> Member {
    Member {
        camel,
        snake,
        shape: Role::Refused(ClassifyError::PipelineValue(camel)),
    }
}

const ANY: &Shape = &Shape::Any;

const VALUE_KINDS: &[&str] = &[
    "nullValue",
    "booleanValue",
    "integerValue",
    "doubleValue",
    "timestampValue",
    "stringValue",
    "bytesValue",
    "referenceValue",
    "geoPointValue",
    "arrayValue",
    "mapValue",
];

/// `google.firestore.v1.Value`.
pub static VALUE: Shape = Shape::Message(Message {
    name: "value",
    members: &[
        is("nullValue", "null_value", ANY),
        is("booleanValue", "boolean_value", ANY),
        is("integerValue", "integer_value", ANY),
        is("doubleValue", "double_value", ANY),
        is("timestampValue", "timestamp_value", ANY),
        is("stringValue", "string_value", ANY),
        is("bytesValue", "bytes_value", ANY),
        is("referenceValue", "reference_value", ANY),
        is("geoPointValue", "geo_point_value", ANY),
        is("arrayValue", "array_value", &ARRAY_VALUE),
        is("mapValue", "map_value", &MAP_VALUE),
        pipeline_only("fieldReferenceValue", "field_reference_value"),
        pipeline_only("functionValue", "function_value"),
        pipeline_only("pipelineValue", "pipeline_value"),
        pipeline_only("variableReferenceValue", "variable_reference_value"),
    ],
    oneof: VALUE_KINDS,
});

/// `ArrayValue`.
pub static ARRAY_VALUE: Shape = Shape::Message(Message {
    name: "arrayValue",
    members: &[is("values", "values", &VALUES)],
    oneof: &[],
});

static VALUES: Shape = Shape::List(&VALUE);

static MAP_VALUE: Shape = Shape::Message(Message {
    name: "mapValue",
    members: &[is("fields", "fields", &FIELDS)],
    oneof: &[],
});

/// `map<string, Value>`: a document's (or a map value's) fields.
pub static FIELDS: Shape = Shape::Map(&VALUE);

/// `StructuredQuery.Filter`.
pub static FILTER: Shape = Shape::Message(Message {
    name: "filter",
    members: &[
        is("compositeFilter", "composite_filter", &COMPOSITE_FILTER),
        is("fieldFilter", "field_filter", &FIELD_FILTER),
        is("unaryFilter", "unary_filter", &UNARY_FILTER),
    ],
    oneof: &["compositeFilter", "fieldFilter", "unaryFilter"],
});

static FILTERS: Shape = Shape::List(&FILTER);

static COMPOSITE_FILTER: Shape = Shape::Message(Message {
    name: "compositeFilter",
    members: &[is("op", "op", ANY), is("filters", "filters", &FILTERS)],
    oneof: &[],
});

static FIELD_FILTER: Shape = Shape::Message(Message {
    name: "fieldFilter",
    members: &[
        is("field", "field", &FIELD_REFERENCE),
        is("op", "op", ANY),
        is("value", "value", &VALUE),
    ],
    oneof: &[],
});

static UNARY_FILTER: Shape = Shape::Message(Message {
    name: "unaryFilter",
    members: &[is("op", "op", ANY), is("field", "field", &FIELD_REFERENCE)],
    oneof: &[],
});

/// `StructuredQuery.FieldReference`.
pub static FIELD_REFERENCE: Shape = Shape::Message(Message {
    name: "fieldReference",
    members: &[is("fieldPath", "field_path", ANY)],
    oneof: &[],
});

/// `Cursor` (`startAt`, `endAt`).
pub static CURSOR: Shape = Shape::Message(Message {
    name: "cursor",
    members: &[is("values", "values", &VALUES), is("before", "before", ANY)],
    oneof: &[],
});

/// The `updateTransforms` of a write and the `fieldTransforms` of a
/// transform: lists of `DocumentTransform.FieldTransform`.
pub static FIELD_TRANSFORMS: Shape = Shape::List(&FIELD_TRANSFORM);

static FIELD_TRANSFORM: Shape = Shape::Message(Message {
    name: "fieldTransform",
    members: &[
        is("fieldPath", "field_path", ANY),
        is("setToServerValue", "set_to_server_value", ANY),
        is("increment", "increment", &VALUE),
        is("maximum", "maximum", &VALUE),
        is("minimum", "minimum", &VALUE),
        is(
            "appendMissingElements",
            "append_missing_elements",
            &ARRAY_VALUE,
        ),
        is("removeAllFromArray", "remove_all_from_array", &ARRAY_VALUE),
    ],
    oneof: &[
        "setToServerValue",
        "increment",
        "maximum",
        "minimum",
        "appendMissingElements",
        "removeAllFromArray",
    ],
});

/// `ExplainOptions`: whether to run the query as well as plan it. Neither
/// changes what the query reads, so it is authorized as its query.
pub static EXPLAIN_OPTIONS: Shape = Shape::Message(Message {
    name: "explainOptions",
    members: &[is("analyze", "analyze", ANY)],
    oneof: &[],
});

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::firestore::shape::check;

    fn reason(shape: &'static Shape, text: &str) -> &'static str {
        let raw: Box<RawValue> = serde_json::from_str(text).expect("JSON");
        match check(&raw, shape) {
            Ok(()) => "ok",
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn document_values_of_every_stored_kind_pass() {
        let fields = r#"{
            "n": {"integerValue": "1"}, "d": {"doubleValue": 1.5}, "s": {"stringValue": "x"},
            "b": {"booleanValue": true}, "z": {"nullValue": null}, "t": {"timestampValue": "2026-01-01T00:00:00Z"},
            "y": {"bytesValue": "AA=="}, "r": {"referenceValue": "projects/p/databases/(default)/documents/a/b"},
            "g": {"geoPointValue": {"latitude": 1, "longitude": 2}},
            "a": {"arrayValue": {"values": [{"stringValue": "x"}, {"mapValue": {"fields": {"k": {"integer_value": 2}}}}]}},
            "v": {"mapValue": {"fields": {"__type__": {"stringValue": "__vector__"},
                  "value": {"arrayValue": {"values": [{"doubleValue": 1.0}]}}}}},
            "functionValue": {"stringValue": "a field may be named like a kind"}
        }"#;
        assert_eq!(reason(&FIELDS, fields), "ok");
    }

    #[test]
    fn pipeline_kinds_are_refused_at_any_depth() {
        for kind in [
            "fieldReferenceValue",
            "functionValue",
            "pipelineValue",
            "variableReferenceValue",
            "field_reference_value",
            "function_value",
        ] {
            let top = format!(r#"{{"x": {{"{kind}": {{}}}}}}"#);
            assert_eq!(reason(&FIELDS, &top), "pipeline_value_refused", "{kind}");
            let deep = format!(
                r#"{{"x": {{"mapValue": {{"fields": {{"y": {{"arrayValue": {{"values": [{{"{kind}": "f"}}]}}}}}}}}}}}}"#
            );
            assert_eq!(reason(&FIELDS, &deep), "pipeline_value_refused", "{kind}");
        }
        let filter = r#"{"fieldFilter": {"field": {"fieldPath": "a"}, "op": "EQUAL",
            "value": {"functionValue": {"name": "add"}}}}"#;
        assert_eq!(reason(&FILTER, filter), "pipeline_value_refused");
        let cursor = r#"{"values": [{"variableReferenceValue": "v"}]}"#;
        assert_eq!(reason(&CURSOR, cursor), "pipeline_value_refused");
        let transform = r#"[{"fieldPath": "n", "increment": {"fieldReferenceValue": "m"}}]"#;
        assert_eq!(
            reason(&FIELD_TRANSFORMS, transform),
            "pipeline_value_refused"
        );
    }

    #[test]
    fn values_are_read_as_proto_reads_them() {
        // One kind at most; `null` does not take the oneof.
        assert_eq!(
            reason(&VALUE, r#"{"stringValue": "a", "integerValue": "1"}"#),
            "malformed_body"
        );
        assert_eq!(
            reason(&VALUE, r#"{"stringValue": null, "integerValue": "1"}"#),
            "ok"
        );
        assert_eq!(
            reason(&VALUE, r#"{"stringValue": "a", "string_value": "b"}"#),
            "mixed_field_spelling"
        );
        assert_eq!(reason(&VALUE, r#"{"madeUpValue": 1}"#), "unknown_field");
        assert_eq!(
            reason(
                &FIELDS,
                r#"{"a": {"stringValue": "1"}, "a": {"stringValue": "2"}}"#
            ),
            "duplicate_key"
        );
        assert_eq!(reason(&FIELDS, r#"["not", "a", "map"]"#), "malformed_body");
        assert_eq!(
            reason(&VALUE, r#"{"mapValue": {"fields": [1]}}"#),
            "malformed_body"
        );
        assert_eq!(
            reason(
                &FILTER,
                r#"{"fieldFilter": {"field": {"fieldPath": "a"}}, "unaryFilter": {"op": 3}}"#
            ),
            "malformed_body"
        );
    }
}
