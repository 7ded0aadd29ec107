//! Field masks through `firegate dev` (the emulator upstream) with the
//! example `policies/people.yaml`: an engineer's every read returns the
//! people directory without its private fields, on both wires and in a
//! Listen stream; the queries that would reveal them and the writes that
//! would replace them are refused; a platform admin sees everything.

use crate::support;

use firegate::dev::Stack;
use http::Method;
use serde_json::{Value, json};
use tonic::Code;

use support::dev::{self, Caller, DATABASE, DOCS, ROOT, engineer};
use support::grpc::{self, proto, with_auth};

const PRIVATE: [&str; 3] = ["salary", "ssn", "tax.id"];

/// The person's fields: the private ones absent, the others intact.
fn assert_masked(doc: &Value) {
    let fields = &doc["fields"];
    for name in PRIVATE {
        assert!(fields.get(name).is_none(), "{name} shown: {doc}");
    }
    let address = &fields["address"]["mapValue"]["fields"];
    assert!(address.get("street").is_none(), "{doc}");
    assert!(address["city"]["stringValue"].is_string(), "{doc}");
    assert!(fields["name"]["stringValue"].is_string(), "{doc}");
}

fn alice(stack: &Stack) -> Caller {
    Caller::new(stack, &engineer("alice")).under(DOCS)
}

fn query(clause: Value) -> Value {
    let mut q = json!({"from": [{"collectionId": "people"}]});
    q.as_object_mut()
        .expect("object")
        .extend(clause.as_object().expect("object").clone());
    json!({"structuredQuery": q})
}

#[tokio::test]
async fn rest_reads_are_masked_and_oracles_and_blind_writes_refused() {
    let stack = support::dev_stack().await;
    let alice = alice(&stack);

    let (status, doc) = alice.send(Method::GET, "/people/ann", None).await;
    assert_eq!(status, 200, "{doc}");
    assert_masked(&doc);

    let (status, list) = alice.send(Method::GET, "/people", None).await;
    assert_eq!(status, 200, "{list}");
    let docs = list["documents"].as_array().expect("documents");
    assert_eq!(docs.len(), 2);
    docs.iter().for_each(assert_masked);

    let names = json!({"documents": [format!("{ROOT}/people/ann"), format!("{ROOT}/people/bob")]});
    let (status, found) = alice.post(":batchGet", names.clone()).await;
    assert_eq!(status, 200, "{found}");
    for row in found.as_array().expect("array") {
        assert_masked(&row["found"]);
    }

    let (status, rows) = alice.post(":runQuery", query(json!({}))).await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    rows.iter().for_each(|r| assert_masked(&r["document"]));

    // In a transaction: begun by a read, read again inside it.
    let mut begin = query(json!({}));
    begin["newTransaction"] = json!({"readOnly": {}});
    let (status, rows) = alice.post(":runQuery", begin).await;
    assert_eq!(status, 200, "{rows}");
    let transaction = rows[0]["transaction"]
        .as_str()
        .expect("sealed id")
        .to_owned();
    rows.as_array()
        .expect("array")
        .iter()
        .filter(|r| r.get("document").is_some())
        .for_each(|r| assert_masked(&r["document"]));
    let mut inside = names;
    inside["transaction"] = json!(transaction);
    let (status, found) = alice.post(":batchGet", inside).await;
    assert_eq!(status, 200, "{found}");
    assert_masked(&found[0]["found"]);

    for clause in [
        json!({"where": {"fieldFilter": {"field": {"fieldPath": "salary"}, "op": "GREATER_THAN", "value": {"integerValue": "0"}}}}),
        json!({"orderBy": [{"field": {"fieldPath": "salary"}}]}),
        json!({"orderBy": [{"field": {"fieldPath": "salary"}}], "startAt": {"values": [{"integerValue": "100000"}]}}),
        json!({"where": {"fieldFilter": {"field": {"fieldPath": "address.street"}, "op": "EQUAL", "value": {"stringValue": "1 Main St"}}}}),
    ] {
        let (status, body) = alice.post(":runQuery", query(clause.clone())).await;
        assert_eq!(status, 403, "{clause}: {body}");
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    }
    let sum = json!({"structuredAggregationQuery": {
        "structuredQuery": {"from": [{"collectionId": "people"}]},
        "aggregations": [{"alias": "total", "sum": {"field": {"fieldPath": "salary"}}}]}});
    assert_eq!(alice.post(":runAggregationQuery", sum).await.0, 403);

    // set() without merge replaces the masked fields: refused; an update
    // of a visible field is not.
    let set = json!({"fields": {"name": {"stringValue": "Ann B."}}});
    let (status, body) = alice.patch("/people/ann", set.clone()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = alice
        .patch(
            "/people/ann?updateMask.fieldPaths=name&currentDocument.exists=true",
            set,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The answer is the whole document written: masked too.
    assert_masked(&body);

    // A platform admin sees the whole entry, the update included.
    let admin = Caller::new(&stack, &dev::sample("ADMIN_TOKEN")).under(DOCS);
    let (status, doc) = admin.send(Method::GET, "/people/ann", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["fields"]["salary"]["integerValue"], "120000");
    assert_eq!(doc["fields"]["name"]["stringValue"], "Ann B.");
    assert_eq!(
        doc["fields"]["address"]["mapValue"]["fields"]["street"]["stringValue"],
        "1 Main St"
    );
}

/// The proto fields of a person: the private ones absent.
fn assert_masked_proto(doc: &proto::Document) {
    for name in PRIVATE {
        assert!(!doc.fields.contains_key(name), "{name} shown: {doc:?}");
    }
    let Some(proto::value::ValueType::MapValue(address)) = &doc.fields["address"].value_type else {
        panic!("address: {doc:?}");
    };
    assert!(!address.fields.contains_key("street"));
    assert!(address.fields.contains_key("city"));
    assert!(doc.fields.contains_key("name"));
}

#[tokio::test]
async fn grpc_reads_and_listen_are_masked_and_oracles_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_log = dir.path().join("audit.log");
    let stack = dev::start(firegate::dev::DevOptions {
        extra_config: Some(json!({"audit": {"sink": "file", "path": audit_log}})),
        ..dev::options()
    })
    .await;
    let auth = format!("Bearer {}", stack.token(&engineer("alice")).expect("token"));
    let mut client = grpc::client(stack.proxy).await;

    let doc = client
        .get_document(with_auth(
            proto::GetDocumentRequest {
                name: format!("{ROOT}/people/ann"),
                ..Default::default()
            },
            &auth,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_masked_proto(&doc);

    let listed = client
        .list_documents(with_auth(
            proto::ListDocumentsRequest {
                parent: ROOT.into(),
                collection_id: "people".into(),
                ..Default::default()
            },
            &auth,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.documents.len(), 2);
    listed.documents.iter().for_each(assert_masked_proto);

    let mut found = client
        .batch_get_documents(with_auth(
            proto::BatchGetDocumentsRequest {
                database: DATABASE.into(),
                documents: vec![format!("{ROOT}/people/ann"), format!("{ROOT}/people/bob")],
                ..Default::default()
            },
            &auth,
        ))
        .await
        .expect("batchGet")
        .into_inner();
    let mut count = 0;
    while let Some(m) = found.message().await.expect("message") {
        if let Some(proto::batch_get_documents_response::Result::Found(doc)) = &m.result {
            assert_masked_proto(doc);
            count += 1;
        }
    }
    assert_eq!(count, 2);

    let people = |clause: proto::StructuredQuery| proto::RunQueryRequest {
        parent: ROOT.into(),
        query_type: Some(proto::run_query_request::QueryType::StructuredQuery(
            proto::StructuredQuery {
                from: vec![proto::structured_query::CollectionSelector {
                    collection_id: "people".into(),
                    all_descendants: false,
                }],
                ..clause
            },
        )),
        ..Default::default()
    };
    let mut rows = client
        .run_query(with_auth(people(Default::default()), &auth))
        .await
        .expect("runQuery")
        .into_inner();
    let mut count = 0;
    while let Some(m) = rows.message().await.expect("message") {
        if let Some(doc) = &m.document {
            assert_masked_proto(doc);
            count += 1;
        }
    }
    assert_eq!(count, 2);

    let on_salary = proto::StructuredQuery {
        order_by: vec![proto::structured_query::Order {
            field: Some(proto::structured_query::FieldReference {
                field_path: "salary".into(),
            }),
            direction: 1,
        }],
        ..Default::default()
    };
    let refused = client
        .run_query(with_auth(people(on_salary.clone()), &auth))
        .await
        .map(drop);
    let code = match refused {
        Err(status) => status.code(),
        Ok(()) => Code::Ok,
    };
    assert_eq!(code, Code::PermissionDenied);

    // Listen: a query target on an unmasked field gets masked documents; one
    // ordering by a masked field is refused.
    let target = |id: i32, query: proto::StructuredQuery| proto::ListenRequest {
        database: DATABASE.into(),
        labels: Default::default(),
        target_change: Some(proto::listen_request::TargetChange::AddTarget(
            proto::Target {
                target_id: id,
                target_type: Some(proto::target::TargetType::Query(
                    proto::target::QueryTarget {
                        parent: ROOT.into(),
                        query_type: Some(proto::target::query_target::QueryType::StructuredQuery(
                            proto::StructuredQuery {
                                from: vec![proto::structured_query::CollectionSelector {
                                    collection_id: "people".into(),
                                    all_descendants: false,
                                }],
                                ..query
                            },
                        )),
                    },
                )),
                ..Default::default()
            },
        )),
    };
    let mut call = grpc::listen(
        &mut client,
        &auth,
        "masks-listen",
        target(1, Default::default()),
    )
    .await
    .expect("listen");
    let mut seen = 0;
    while seen < 2 {
        let m = support::within("a document change", call.responses.message())
            .await
            .expect("message")
            .expect("open");
        if let Some(proto::listen_response::ResponseType::DocumentChange(c)) = &m.response_type {
            assert_masked_proto(c.document.as_ref().expect("document"));
            seen += 1;
        }
    }
    call.requests
        .send(target(2, on_salary))
        .await
        .expect("send");
    loop {
        let m = support::within("the refusal", call.responses.message())
            .await
            .expect("message")
            .expect("open");
        if let Some((kind, ids, cause)) = grpc::change_of(&m)
            && ids == [2]
        {
            assert_eq!(kind, proto::target_change::TargetChangeType::Remove as i32);
            assert_eq!(cause, Some(Code::PermissionDenied as i32));
            break;
        }
    }

    // The stream's closing audit record sums the fields masked out of its
    // document changes (two people, four private fields each).
    drop(call);
    let masked = support::within("the stream's closing record", async {
        loop {
            stack.app.flush_audit().await;
            let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|r| r["request_id"] == "masks-listen")
                .find_map(|r| r["masked_fields"].as_u64());
            if let Some(n) = found {
                break n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(masked >= 8, "masked_fields {masked}");
}

/// Rules for a write's answer: engineers write the payroll whole (no
/// mask) but read it without `salary`; they write the ledger and may not
/// read it at all.
const WRITE_ANSWERS: &str = r#"rules:
  - id: payroll-writes
    match: /payroll/{id}
    allow: [create, update]
    who: {groups: [group:default/engineering]}
  - id: payroll-reads
    match: /payroll/{id}
    allow: [read]
    who: {groups: [group:default/engineering]}
    mask: [salary]
  - id: ledger-writes
    match: /ledger/{id}
    allow: [create, update]
    who: {groups: [group:default/engineering]}
"#;

/// A write's answer (the document written) shows what the writer's own
/// read of the document shows, whatever the write rule's mask: masked by
/// the read rule, and nothing of the fields to a writer who may not read
/// the document at all — on both wires.
#[tokio::test]
async fn a_write_answers_with_what_its_author_may_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(dev::policies()).expect("policies") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    std::fs::write(dir.path().join("answers.yaml"), WRITE_ANSWERS).expect("write");
    let stack = dev::start(firegate::dev::DevOptions {
        policies: Some(dir.path().to_path_buf()),
        ..dev::options()
    })
    .await;
    let alice = alice(&stack);
    let pay = json!({"fields": {
        "name": {"stringValue": "Ann"},
        "salary": {"integerValue": "120000"}}});

    // Written whole (the write rule has no mask), answered masked.
    let (status, body) = alice.patch("/payroll/ann", pay.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["fields"].get("salary").is_none(), "{body}");
    assert_eq!(body["fields"]["name"]["stringValue"], "Ann", "{body}");
    // An update naming only `name` answers with the whole document: the
    // stored salary stays hidden.
    let (status, body) = alice
        .patch(
            "/payroll/ann?updateMask.fieldPaths=name",
            json!({"fields": {"name": {"stringValue": "Ann B."}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["fields"].get("salary").is_none(), "{body}");
    assert_eq!(body["fields"]["name"]["stringValue"], "Ann B.", "{body}");
    let (status, body) = alice
        .send(Method::POST, "/payroll?documentId=bob", Some(pay.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["fields"].get("salary").is_none(), "{body}");

    // The ledger may be written, never read: the answer names the
    // document and keeps none of its fields.
    let (status, body) = alice
        .send(Method::POST, "/ledger?documentId=l1", Some(pay.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("/ledger/l1")),
        "{body}"
    );
    assert!(
        body["fields"].as_object().is_none_or(|f| f.is_empty()),
        "{body}"
    );
    let (status, body) = alice.send(Method::POST, "/ledger", Some(pay)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["fields"].as_object().is_none_or(|f| f.is_empty()),
        "{body}"
    );

    // gRPC: UpdateDocument answers masked too.
    let text = |s: &str| proto::Value {
        value_type: Some(proto::value::ValueType::StringValue(s.into())),
    };
    let auth = format!("Bearer {}", stack.token(&engineer("alice")).expect("token"));
    let mut client = grpc::client(stack.proxy).await;
    let doc = client
        .update_document(with_auth(
            proto::UpdateDocumentRequest {
                document: Some(proto::Document {
                    name: format!("{ROOT}/payroll/cy"),
                    fields: [
                        ("name".to_string(), text("Cy")),
                        ("salary".to_string(), text("1")),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &auth,
        ))
        .await
        .expect("update")
        .into_inner();
    assert!(!doc.fields.contains_key("salary"), "{doc:?}");
    assert!(doc.fields.contains_key("name"), "{doc:?}");
}
