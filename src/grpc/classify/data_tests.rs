//! What rules see of the data, gRPC against REST: the same fields, masks,
//! transforms, preconditions and filters (and the `__name__` narrowing)
//! from the same request written both ways.

use super::*;
use crate::grpc::proto::{
    DocumentMask, document_transform::FieldTransform, structured_query as sq,
};
use crate::model::data::{Change, FieldCapture, FieldValue, Filter, Precondition};
use crate::model::{Scope, Segments};

fn v(value_type: value::ValueType) -> Value {
    Value {
        value_type: Some(value_type),
    }
}

fn s(text: &str) -> Value {
    v(value::ValueType::StringValue(text.into()))
}

/// One of each kind, and its proto3 JSON twin.
fn every_kind() -> (std::collections::HashMap<String, Value>, &'static str) {
    use value::ValueType as V;
    let fields = [
        ("n", v(V::NullValue(0))),
        ("b", v(V::BooleanValue(true))),
        ("i", v(V::IntegerValue(7))),
        ("d", v(V::DoubleValue(1.5))),
        (
            "t",
            v(V::TimestampValue(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            })),
        ),
        ("s", s("alice")),
        ("y", v(V::BytesValue(vec![1, 2]))),
        ("r", v(V::ReferenceValue(doc_name("u/alice")))),
        (
            "g",
            v(V::GeoPointValue(
                googleapis_tonic_google_firestore_v1::google::r#type::LatLng {
                    latitude: 1.0,
                    longitude: 2.0,
                },
            )),
        ),
        (
            "a",
            v(V::ArrayValue(proto::ArrayValue {
                values: vec![s("x")],
            })),
        ),
        (
            "m",
            v(V::MapValue(proto::MapValue {
                fields: [("k".to_string(), s("v"))].into(),
            })),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let json = r#"{"n":{"nullValue":null},"b":{"booleanValue":true},"i":{"integerValue":"7"},
        "d":{"doubleValue":1.5},"t":{"timestampValue":"2026-01-01T00:00:00Z"},
        "s":{"stringValue":"alice"},"y":{"bytesValue":"AQI="},
        "r":{"referenceValue":"projects/p/databases/(default)/documents/u/alice"},
        "g":{"geoPointValue":{"latitude":1.0,"longitude":2.0}},
        "a":{"arrayValue":{"values":[{"stringValue":"x"}]}},
        "m":{"mapValue":{"fields":{"k":{"stringValue":"v"}}}}}"#;
    (fields, json)
}

fn same(rest: Operation, request: GrpcRequest) {
    let grpc = grpc(request.clone());
    assert_eq!(grpc.writes, rest.writes, "{request:?}");
    assert_eq!(grpc.filter, rest.filter, "{request:?}");
    assert_eq!(grpc, rest, "{request:?}");
}

#[test]
fn written_values_of_every_kind_are_read_alike() {
    let v1 = "/v1/projects/p/databases/(default)/documents";
    let (fields, json) = every_kind();
    same(
        rest(
            "POST",
            &format!("{v1}/notes?documentId=n1"),
            &format!(r#"{{"fields":{json}}}"#),
        ),
        GrpcRequest::CreateDocument(proto::CreateDocumentRequest {
            parent: ROOT.into(),
            collection_id: "notes".into(),
            document_id: "n1".into(),
            document: Some(proto::Document {
                fields: fields.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let op = grpc(GrpcRequest::CreateDocument(proto::CreateDocumentRequest {
        parent: ROOT.into(),
        collection_id: "notes".into(),
        document: Some(proto::Document {
            fields,
            ..Default::default()
        }),
        ..Default::default()
    }));
    let Change::Update {
        fields: Some(fields),
        ..
    } = &op.writes[0].change
    else {
        panic!("a create is an update");
    };
    assert_eq!(fields.get("s"), Some(&FieldValue::String("alice".into())));
    assert_eq!(
        fields.get("t"),
        Some(&FieldValue::Timestamp("2026-01-01T00:00:00Z".into()))
    );
}

#[test]
fn masks_transforms_and_preconditions_are_read_alike() {
    let v1 = "/v1/projects/p/databases/(default)/documents";
    let owner = [("owner".to_string(), s("alice"))].into();
    same(
        rest(
            "PATCH",
            &format!(
                "{v1}/notes/n1?updateMask.fieldPaths=owner&updateMask.fieldPaths=a.b&currentDocument.exists=true"
            ),
            r#"{"fields":{"owner":{"stringValue":"alice"}}}"#,
        ),
        GrpcRequest::UpdateDocument(proto::UpdateDocumentRequest {
            document: Some(proto::Document {
                name: doc_name("notes/n1"),
                fields: owner,
                ..Default::default()
            }),
            update_mask: Some(DocumentMask {
                field_paths: vec!["owner".into(), "a.b".into()],
            }),
            current_document: Some(proto::Precondition {
                condition_type: Some(precondition::ConditionType::Exists(true)),
            }),
            ..Default::default()
        }),
    );
    let stamp = FieldTransform {
        field_path: "edited".into(),
        transform_type: Some(field_transform::TransformType::SetToServerValue(1)),
    };
    let count = FieldTransform {
        field_path: "n".into(),
        transform_type: Some(field_transform::TransformType::Increment(v(
            value::ValueType::IntegerValue(1),
        ))),
    };
    let mut masked = update("notes/n1");
    masked.update_mask = Some(DocumentMask {
        field_paths: vec!["title".into()],
    });
    masked.update_transforms = vec![stamp.clone()];
    masked.current_document = Some(proto::Precondition {
        condition_type: Some(precondition::ConditionType::UpdateTime(
            prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 1_000,
            },
        )),
    });
    same(
        rest(
            "POST",
            &format!("{v1}:commit"),
            &format!(
                r#"{{"writes":[
                {{"update":{{"name":"{ROOT}/notes/n1"}},"updateMask":{{"fieldPaths":["title"]}},
                  "updateTransforms":[{{"fieldPath":"edited","setToServerValue":"REQUEST_TIME"}}],
                  "currentDocument":{{"updateTime":"2026-01-01T00:00:00.000001Z"}}}},
                {{"transform":{{"document":"{ROOT}/notes/n2","fieldTransforms":[{{"fieldPath":"n","increment":{{"integerValue":"1"}}}}]}}}},
                {{"delete":"{ROOT}/notes/n3","currentDocument":{{"exists":true}}}}]}}"#
            ),
        ),
        GrpcRequest::Commit(proto::CommitRequest {
            database: "projects/p/databases/(default)".into(),
            writes: vec![
                masked,
                proto::Write {
                    operation: Some(write::Operation::Transform(proto::DocumentTransform {
                        document: doc_name("notes/n2"),
                        field_transforms: vec![count],
                    })),
                    ..Default::default()
                },
                proto::Write {
                    operation: Some(write::Operation::Delete(doc_name("notes/n3"))),
                    current_document: Some(proto::Precondition {
                        condition_type: Some(precondition::ConditionType::Exists(true)),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
    );
}

fn field_filter(path: &str, op: sq::field_filter::Operator, value: Value) -> sq::Filter {
    sq::Filter {
        filter_type: Some(filter::FilterType::FieldFilter(sq::FieldFilter {
            field: Some(sq::FieldReference {
                field_path: path.into(),
            }),
            op: op as i32,
            value: Some(value),
        })),
    }
}

fn and(filters: Vec<sq::Filter>) -> sq::Filter {
    sq::Filter {
        filter_type: Some(filter::FilterType::CompositeFilter(sq::CompositeFilter {
            op: sq::composite_filter::Operator::And as i32,
            filters,
        })),
    }
}

fn run_query(parent: &str, from: proto::StructuredQuery) -> GrpcRequest {
    GrpcRequest::RunQuery(proto::RunQueryRequest {
        parent: parent.into(),
        query_type: Some(run_query_request::QueryType::StructuredQuery(from)),
        ..Default::default()
    })
}

#[test]
fn query_filters_are_read_alike() {
    use sq::field_filter::Operator as Op;
    let v1 = "/v1/projects/p/databases/(default)/documents";
    let mut q = query("notes", false);
    q.r#where = Some(and(vec![
        field_filter("owner", Op::Equal, s("alice")),
        field_filter("n", Op::GreaterThan, v(value::ValueType::IntegerValue(1))),
    ]));
    same(
        rest(
            "POST",
            &format!("{v1}:runQuery"),
            r#"{"structuredQuery":{"from":[{"collectionId":"notes"}],"where":{"compositeFilter":{"op":"AND","filters":[
                {"fieldFilter":{"field":{"fieldPath":"owner"},"op":"EQUAL","value":{"stringValue":"alice"}}},
                {"fieldFilter":{"field":{"fieldPath":"n"},"op":"GREATER_THAN","value":{"integerValue":"1"}}}]}}}}"#,
        ),
        run_query(ROOT, q.clone()),
    );
    let op = grpc(run_query(ROOT, q));
    assert_eq!(
        op.filter.as_ref().map(|f| f.equalities().len()),
        Some(1),
        "owner == alice is a fact of every result"
    );
    // An OR proves nothing.
    let mut or = query("notes", false);
    or.r#where = Some(sq::Filter {
        filter_type: Some(filter::FilterType::CompositeFilter(sq::CompositeFilter {
            op: sq::composite_filter::Operator::Or as i32,
            filters: vec![field_filter("owner", Op::Equal, s("alice"))],
        })),
    });
    assert_eq!(grpc(run_query(ROOT, or)).filter, Some(Filter::Other));
}

#[test]
fn name_bounds_narrow_a_grpc_query_as_they_narrow_rest() {
    use sq::field_filter::Operator as Op;
    let v1 = "/v1/projects/p/databases/(default)/documents";
    let min = "__id-9223372036854775808__";
    let reference = |path: String| v(value::ValueType::ReferenceValue(path));
    let mut q = query("", true);
    q.r#where = Some(and(vec![
        field_filter(
            "__name__",
            Op::GreaterThanOrEqual,
            reference(doc_name(&format!("notes/{min}"))),
        ),
        field_filter(
            "__name__",
            Op::LessThan,
            reference(doc_name(&format!("notes\0/{min}"))),
        ),
    ]));
    let json = format!(
        r#"{{"structuredQuery":{{"from":[{{"allDescendants":true}}],"where":{{"compositeFilter":{{"op":"AND","filters":[
            {{"fieldFilter":{{"field":{{"fieldPath":"__name__"}},"op":"GREATER_THAN_OR_EQUAL","value":{{"referenceValue":"{ROOT}/notes/{min}"}}}}}},
            {{"fieldFilter":{{"field":{{"fieldPath":"__name__"}},"op":"LESS_THAN","value":{{"referenceValue":"{ROOT}/notes\u0000/{min}"}}}}}}]}}}}}}}}"#
    );
    // The Node client's REST spelling: the same operators as numbers.
    let numbers = json
        .replace(r#""AND""#, "1")
        .replace(r#""GREATER_THAN_OR_EQUAL""#, "4")
        .replace(r#""LESS_THAN""#, "1");
    let numbers = rest("POST", &format!("{v1}:runQuery"), &numbers);
    let rest = rest("POST", &format!("{v1}:runQuery"), &json);
    assert_eq!(numbers, rest);
    let op = grpc(run_query(ROOT, q));
    assert_eq!(
        op.targets,
        [Target {
            scope: Scope::Subtree {
                parent: Segments::default(),
                collection: "notes".into()
            },
            access: Access::List,
        }]
    );
    assert_eq!(op, rest);
}

/// An enum number the protos do not define (or one Firestore refuses as
/// unspecified) is refused, as REST refuses an unknown name.
#[test]
fn unknown_enum_numbers_are_refused() {
    let with_filter = |op: i32| {
        let mut q = query("notes", false);
        q.r#where = Some(sq::Filter {
            filter_type: Some(filter::FilterType::FieldFilter(sq::FieldFilter {
                field: Some(sq::FieldReference {
                    field_path: "owner".into(),
                }),
                op,
                value: Some(s("alice")),
            })),
        });
        run_query(ROOT, q)
    };
    assert!(grpc(with_filter(5)).filter.is_some());
    assert_eq!(refused(with_filter(99)), "invalid_query");
    assert_eq!(refused(with_filter(0)), "invalid_query");
    let mut composite = query("notes", false);
    composite.r#where = Some(sq::Filter {
        filter_type: Some(filter::FilterType::CompositeFilter(sq::CompositeFilter {
            op: 3,
            filters: vec![],
        })),
    });
    assert_eq!(refused(run_query(ROOT, composite)), "invalid_query");
    let unary = |op: i32| {
        let mut q = query("notes", false);
        q.r#where = Some(sq::Filter {
            filter_type: Some(filter::FilterType::UnaryFilter(sq::UnaryFilter {
                op,
                operand_type: Some(sq::unary_filter::OperandType::Field(sq::FieldReference {
                    field_path: "a".into(),
                })),
            })),
        });
        run_query(ROOT, q)
    };
    assert_eq!(grpc(unary(3)).filter, Some(Filter::Other));
    assert_eq!(refused(unary(1)), "invalid_query");
    let ordered = |direction: i32| {
        let mut q = query("notes", false);
        q.order_by = vec![sq::Order {
            field: Some(sq::FieldReference {
                field_path: "a".into(),
            }),
            direction,
        }];
        run_query(ROOT, q)
    };
    assert!(classify(&ordered(0)).is_ok(), "unset: ascending");
    assert!(classify(&ordered(2)).is_ok());
    assert_eq!(refused(ordered(3)), "invalid_query");
    let stamp = |server_value: i32| {
        let mut w = update("notes/n1");
        w.update_transforms = vec![FieldTransform {
            field_path: "at".into(),
            transform_type: Some(field_transform::TransformType::SetToServerValue(
                server_value,
            )),
        }];
        GrpcRequest::Commit(proto::CommitRequest {
            database: "projects/p/databases/(default)".into(),
            writes: vec![w],
            ..Default::default()
        })
    };
    assert!(classify(&stamp(1)).is_ok());
    assert_eq!(refused(stamp(0)), "invalid_write");
    assert_eq!(refused(stamp(2)), "invalid_write");
}

#[test]
fn a_listen_query_target_carries_its_filter_as_run_query_does() {
    use sq::field_filter::Operator as Op;
    let mut q = query("notes", false);
    q.r#where = Some(field_filter("owner", Op::Equal, s("alice")));
    let run = grpc(run_query(ROOT, q.clone()));
    let target = proto::Target {
        target_type: Some(proto::target::TargetType::Query(
            proto::target::QueryTarget {
                parent: ROOT.into(),
                query_type: Some(proto::target::query_target::QueryType::StructuredQuery(q)),
            },
        )),
        ..Default::default()
    };
    let listen = listen_target(&run.database, &target).expect("classifies");
    assert_eq!(listen.filter, run.filter);
    assert!(listen.filter.is_some());
    assert_eq!(listen.targets, run.targets);
}

/// A write as rules other than data conditions see it: everything but its
/// fields.
fn without_fields(op: &Operation) -> Vec<(Scope, usize, Precondition, Option<Change>)> {
    op.writes
        .iter()
        .map(|w| {
            let change = match &w.change {
                Change::Update {
                    mask, transforms, ..
                } => Some(Change::Update {
                    fields: None,
                    mask: mask.clone(),
                    transforms: transforms.clone(),
                }),
                Change::Delete => None,
            };
            (w.scope.clone(), w.index, w.precondition.clone(), change)
        })
        .collect()
}

#[test]
fn fields_no_rule_reads_are_checked_not_built() {
    let (fields, _) = every_kind();
    let mut set = update("notes/n1");
    if let Some(write::Operation::Update(doc)) = &mut set.operation {
        doc.fields = fields.clone();
    }
    set.update_mask = Some(DocumentMask {
        field_paths: vec!["s".into()],
    });
    let commit = |writes: Vec<proto::Write>| {
        GrpcRequest::Commit(proto::CommitRequest {
            database: "projects/p/databases/(default)".into(),
            writes,
            ..Default::default()
        })
    };
    let request = commit(vec![set.clone(), update("notes/n2")]);
    let built = classify(&request).expect("classifies").operation;
    let checked = classify_with(&request, FieldCapture::ValidateOnly)
        .expect("classifies")
        .operation;
    assert!(built.fields_captured());
    assert!(!checked.fields_captured(), "{:?}", checked.writes);
    assert_eq!(checked.targets, built.targets);
    assert_eq!(without_fields(&checked), without_fields(&built));
    // A value of no kind, however deep, is refused either way.
    let hollow = Value { value_type: None };
    let nested = [
        hollow.clone(),
        v(value::ValueType::ArrayValue(proto::ArrayValue {
            values: vec![s("x"), hollow.clone()],
        })),
        v(value::ValueType::MapValue(proto::MapValue {
            fields: [("k".to_string(), hollow)].into(),
        })),
    ];
    for bad in nested {
        let mut w = set.clone();
        if let Some(write::Operation::Update(doc)) = &mut w.operation {
            doc.fields.insert("bad".into(), bad.clone());
        }
        let request = commit(vec![w]);
        let built = classify(&request).map(|c| c.operation);
        let checked = classify_with(&request, FieldCapture::ValidateOnly).map(|c| c.operation);
        assert_eq!(
            checked.as_ref().map(|_| ()).unwrap_err(),
            built.as_ref().map(|_| ()).unwrap_err(),
            "{bad:?}"
        );
    }
}
