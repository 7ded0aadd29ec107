//! Each gRPC method against its REST twin: the same `Operation` from the
//! same request written both ways, and the name traps refused alike.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Uri};

use super::*;
use crate::firestore::{classify_request, route};
use crate::grpc::proto::{
    batch_get_documents_request, precondition, run_query_request,
    structured_query::CollectionSelector,
};

const ROOT: &str = "projects/p/databases/(default)/documents";

fn rest(method: &str, uri: &str, body: &str) -> Operation {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let method = HttpMethod::from_bytes(method.as_bytes()).expect("method");
    let uri: Uri = uri.parse().expect("uri");
    let route = route(&method, &uri, &headers).expect("route");
    let body = Bytes::from(body.to_owned());
    classify_request(&route, route.needs_body().then_some(&body))
        .expect("REST twin classifies")
        .operation
}

fn grpc(request: GrpcRequest) -> Operation {
    classify(&request).expect("gRPC classifies").operation
}

fn refused(request: GrpcRequest) -> &'static str {
    match classify(&request) {
        Ok(c) => panic!("accepted as {:?}", c.operation),
        Err(e) => e.reason(),
    }
}

fn doc_name(path: &str) -> String {
    format!("{ROOT}/{path}")
}

fn query(collection: &str, all_descendants: bool) -> proto::StructuredQuery {
    proto::StructuredQuery {
        from: vec![CollectionSelector {
            collection_id: collection.into(),
            all_descendants,
        }],
        ..Default::default()
    }
}

fn update(path: &str) -> proto::Write {
    proto::Write {
        operation: Some(write::Operation::Update(proto::Document {
            name: doc_name(path),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn each_method_yields_its_rest_twins_operation() {
    let v1 = "/v1/projects/p/databases/(default)/documents";
    let cases: Vec<(Operation, GrpcRequest)> = vec![
        (
            rest("GET", &format!("{v1}/rooms/r1"), ""),
            GrpcRequest::GetDocument(proto::GetDocumentRequest {
                name: doc_name("rooms/r1"),
                ..Default::default()
            }),
        ),
        (
            rest("GET", &format!("{v1}/rooms/r1/msgs"), ""),
            GrpcRequest::ListDocuments(proto::ListDocumentsRequest {
                parent: doc_name("rooms/r1"),
                collection_id: "msgs".into(),
                ..Default::default()
            }),
        ),
        (
            rest("POST", &format!("{v1}/rooms?documentId=r2"), "{}"),
            GrpcRequest::CreateDocument(proto::CreateDocumentRequest {
                parent: ROOT.into(),
                collection_id: "rooms".into(),
                document_id: "r2".into(),
                ..Default::default()
            }),
        ),
        (
            rest("POST", &format!("{v1}/rooms"), "{}"),
            GrpcRequest::CreateDocument(proto::CreateDocumentRequest {
                parent: ROOT.into(),
                collection_id: "rooms".into(),
                ..Default::default()
            }),
        ),
        (
            rest("PATCH", &format!("{v1}/rooms/r1"), "{}"),
            GrpcRequest::UpdateDocument(proto::UpdateDocumentRequest {
                document: Some(proto::Document {
                    name: doc_name("rooms/r1"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
        (
            rest(
                "PATCH",
                &format!("{v1}/rooms/r1?currentDocument.exists=true"),
                "{}",
            ),
            GrpcRequest::UpdateDocument(proto::UpdateDocumentRequest {
                document: Some(proto::Document {
                    name: doc_name("rooms/r1"),
                    ..Default::default()
                }),
                current_document: Some(proto::Precondition {
                    condition_type: Some(precondition::ConditionType::Exists(true)),
                }),
                ..Default::default()
            }),
        ),
        (
            rest("DELETE", &format!("{v1}/rooms/r1"), ""),
            GrpcRequest::DeleteDocument(proto::DeleteDocumentRequest {
                name: doc_name("rooms/r1"),
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}:batchGet"),
                &format!(r#"{{"documents":["{ROOT}/a/1","{ROOT}/b/2"]}}"#),
            ),
            GrpcRequest::BatchGetDocuments(proto::BatchGetDocumentsRequest {
                database: "projects/p/databases/(default)".into(),
                documents: vec![doc_name("a/1"), doc_name("b/2")],
                ..Default::default()
            }),
        ),
        (
            rest("POST", &format!("{v1}:beginTransaction"), "{}"),
            GrpcRequest::BeginTransaction(proto::BeginTransactionRequest {
                database: "projects/p/databases/(default)".into(),
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}:commit"),
                &format!(
                    r#"{{"writes":[{{"update":{{"name":"{ROOT}/a/1"}}}},{{"delete":"{ROOT}/a/2"}},
                    {{"transform":{{"document":"{ROOT}/a/3"}},"currentDocument":{{"exists":false}}}}]}}"#
                ),
            ),
            GrpcRequest::Commit(proto::CommitRequest {
                database: "projects/p/databases/(default)".into(),
                writes: vec![
                    update("a/1"),
                    proto::Write {
                        operation: Some(write::Operation::Delete(doc_name("a/2"))),
                        ..Default::default()
                    },
                    proto::Write {
                        operation: Some(write::Operation::Transform(proto::DocumentTransform {
                            document: doc_name("a/3"),
                            ..Default::default()
                        })),
                        current_document: Some(proto::Precondition {
                            condition_type: Some(precondition::ConditionType::Exists(false)),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}:batchWrite"),
                &format!(r#"{{"writes":[{{"update":{{"name":"{ROOT}/a/1"}}}}]}}"#),
            ),
            GrpcRequest::BatchWrite(proto::BatchWriteRequest {
                database: "projects/p/databases/(default)".into(),
                writes: vec![update("a/1")],
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}/rooms/r1:runQuery"),
                r#"{"structuredQuery":{"from":[{"collectionId":"msgs"},{"collectionId":"m","allDescendants":true}]}}"#,
            ),
            GrpcRequest::RunQuery(proto::RunQueryRequest {
                parent: doc_name("rooms/r1"),
                query_type: Some(run_query_request::QueryType::StructuredQuery(
                    proto::StructuredQuery {
                        from: vec![
                            CollectionSelector {
                                collection_id: "msgs".into(),
                                all_descendants: false,
                            },
                            CollectionSelector {
                                collection_id: "m".into(),
                                all_descendants: true,
                            },
                        ],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}:runAggregationQuery"),
                r#"{"structuredAggregationQuery":{"structuredQuery":{"from":[{"allDescendants":true}]}}}"#,
            ),
            GrpcRequest::RunAggregationQuery(proto::RunAggregationQueryRequest {
                parent: ROOT.into(),
                query_type: Some(
                    proto::run_aggregation_query_request::QueryType::StructuredAggregationQuery(
                        proto::StructuredAggregationQuery {
                            query_type: Some(
                                proto::structured_aggregation_query::QueryType::StructuredQuery(
                                    query("", true),
                                ),
                            ),
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
        ),
        (
            rest(
                "POST",
                &format!("{v1}:partitionQuery"),
                r#"{"structuredQuery":{"from":[{"collectionId":"c","allDescendants":true}]}}"#,
            ),
            GrpcRequest::PartitionQuery(proto::PartitionQueryRequest {
                parent: ROOT.into(),
                query_type: Some(proto::partition_query_request::QueryType::StructuredQuery(
                    query("c", true),
                )),
                ..Default::default()
            }),
        ),
        (
            rest("POST", &format!("{v1}/rooms/r1:listCollectionIds"), "{}"),
            GrpcRequest::ListCollectionIds(proto::ListCollectionIdsRequest {
                parent: doc_name("rooms/r1"),
                ..Default::default()
            }),
        ),
    ];
    for (rest, request) in cases {
        assert_eq!(grpc(request.clone()), rest, "{request:?}");
    }
}

#[test]
fn names_are_checked_as_rest_checks_them() {
    let get = |name: &str| {
        GrpcRequest::GetDocument(proto::GetDocumentRequest {
            name: name.into(),
            ..Default::default()
        })
    };
    let cases = [
        (
            get("projects/p/databases/(default)/documents/a"),
            "resource_parity_mismatch",
        ),
        (
            get("projects/p/databases/(default)/documents/a/.."),
            "invalid_resource_id",
        ),
        (
            get("projects/p/databases/(default)/documents/a//b"),
            "invalid_resource_id",
        ),
        (
            get("projects/p/databases/(default)/documents/__x__/b"),
            "invalid_resource_id",
        ),
        (
            get("projects/p/databases/(default)/documentz/a/b"),
            "invalid_resource_name",
        ),
        (
            get("databases/(default)/documents/a/b"),
            "invalid_resource_name",
        ),
        (get(""), "invalid_resource_name"),
    ];
    for (request, reason) in cases {
        assert_eq!(refused(request.clone()), reason, "{request:?}");
    }
}

#[test]
fn a_name_in_another_database_is_refused() {
    let commit = GrpcRequest::Commit(proto::CommitRequest {
        database: "projects/p/databases/(default)".into(),
        writes: vec![proto::Write {
            operation: Some(write::Operation::Delete(
                "projects/p/databases/other/documents/a/1".into(),
            )),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(refused(commit), "foreign_database");
    let batch_get = GrpcRequest::BatchGetDocuments(proto::BatchGetDocumentsRequest {
        database: "projects/p/databases/(default)".into(),
        documents: vec!["projects/q/databases/(default)/documents/a/1".into()],
        ..Default::default()
    });
    assert_eq!(refused(batch_get), "foreign_database");
    let database_with_path = GrpcRequest::BeginTransaction(proto::BeginTransactionRequest {
        database: "projects/p/databases/(default)/documents".into(),
        ..Default::default()
    });
    assert_eq!(refused(database_with_path), "invalid_resource_name");
}

#[test]
fn the_database_comes_from_the_message() {
    let op = grpc(GrpcRequest::GetDocument(proto::GetDocumentRequest {
        name: "projects/q/databases/other/documents/a/1".into(),
        ..Default::default()
    }));
    assert_eq!(op.database.to_string(), "projects/q/databases/other");
}

#[test]
fn malformed_requests_are_refused() {
    let cases = [
        (
            GrpcRequest::RunQuery(proto::RunQueryRequest {
                parent: ROOT.into(),
                ..Default::default()
            }),
            "invalid_query",
        ),
        (
            GrpcRequest::RunQuery(proto::RunQueryRequest {
                parent: ROOT.into(),
                query_type: Some(run_query_request::QueryType::StructuredQuery(query(
                    "", false,
                ))),
                ..Default::default()
            }),
            "invalid_query",
        ),
        (
            GrpcRequest::Commit(proto::CommitRequest {
                database: "projects/p/databases/(default)".into(),
                writes: vec![proto::Write::default()],
                ..Default::default()
            }),
            "invalid_write",
        ),
        (
            GrpcRequest::Rollback(proto::RollbackRequest {
                database: "projects/p/databases/(default)".into(),
                transaction: Vec::new(),
            }),
            "malformed_body",
        ),
        (
            GrpcRequest::ListDocuments(proto::ListDocumentsRequest {
                parent: ROOT.into(),
                ..Default::default()
            }),
            "invalid_resource_name",
        ),
        (
            GrpcRequest::CreateDocument(proto::CreateDocumentRequest {
                parent: ROOT.into(),
                collection_id: "rooms".into(),
                document: Some(proto::Document {
                    name: doc_name("other/x"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "path_field_respecified",
        ),
    ];
    for (request, reason) in cases {
        assert_eq!(refused(request.clone()), reason, "{request:?}");
    }
}

#[test]
fn expression_values_are_refused_outside_pipelines() {
    let mut w = update("a/1");
    if let Some(write::Operation::Update(doc)) = &mut w.operation {
        doc.fields.insert(
            "x".into(),
            Value {
                value_type: Some(value::ValueType::MapValue(proto::MapValue {
                    fields: [(
                        "y".into(),
                        Value {
                            value_type: Some(value::ValueType::FieldReferenceValue("z".into())),
                        },
                    )]
                    .into(),
                })),
            },
        );
    }
    let commit = GrpcRequest::Commit(proto::CommitRequest {
        database: "projects/p/databases/(default)".into(),
        writes: vec![w],
        ..Default::default()
    });
    assert_eq!(refused(commit), "pipeline_value_refused");
}

#[test]
fn transactions_are_found_where_they_sit() {
    let mut batch_get = GrpcRequest::BatchGetDocuments(proto::BatchGetDocumentsRequest {
        database: "projects/p/databases/(default)".into(),
        consistency_selector: Some(
            batch_get_documents_request::ConsistencySelector::Transaction(b"sealed".to_vec()),
        ),
        ..Default::default()
    });
    assert_eq!(
        batch_get.presented_transaction().map(|t| t.clone()),
        Some(b"sealed".to_vec())
    );
    assert!(!batch_get.begins_transaction());
    let mut run_query = GrpcRequest::RunQuery(proto::RunQueryRequest {
        parent: ROOT.into(),
        query_type: Some(run_query_request::QueryType::StructuredQuery(query(
            "c", false,
        ))),
        consistency_selector: Some(run_query_request::ConsistencySelector::NewTransaction(
            proto::TransactionOptions::default(),
        )),
        ..Default::default()
    });
    assert!(run_query.presented_transaction().is_none());
    assert!(classify(&run_query).expect("classifies").begins_transaction);
    let mut commit = GrpcRequest::Commit(proto::CommitRequest::default());
    assert!(
        commit.presented_transaction().is_none(),
        "empty bytes are absent"
    );
}

#[path = "data_tests.rs"]
mod data_tests;
