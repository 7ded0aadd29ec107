//! Rules that see the data, over gRPC: the example `policies/notes.yaml`
//! through `firegate dev` (its emulator's gRPC API) with a tonic client, as
//! `data_rules` does over REST; and, with a recording fake
//! upstream, the forwarded `Commit` pinned to the version the rule saw.

use crate::support;

use firegate::dev::{DevOptions, Stack};
use http::Method;
use serde_json::json;
use tonic::Code;

use support::dev::{self, DATABASE, ROOT, engineer};
use support::fake::{self, Reply};
use support::grpc::{self, Client, framed, proto, unframed, with_auth};

struct Caller {
    client: Client,
    auth: String,
}

impl Caller {
    async fn new(stack: &Stack, subject: &str) -> Caller {
        Caller {
            client: grpc::client(stack.proxy).await,
            auth: format!("Bearer {}", stack.token(&engineer(subject)).expect("token")),
        }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        with_auth(message, &self.auth)
    }

    async fn create(&self, id: &str, owner: &str) -> Result<(), Code> {
        let request = self.req(proto::CreateDocumentRequest {
            parent: ROOT.into(),
            collection_id: "notes".into(),
            document_id: id.into(),
            document: Some(note(owner, "t")),
            ..Default::default()
        });
        let mut client = self.client.clone();
        client
            .create_document(request)
            .await
            .map(drop)
            .map_err(|s| s.code())
    }

    async fn get(&self, id: &str) -> Result<proto::Document, Code> {
        let request = self.req(proto::GetDocumentRequest {
            name: format!("{ROOT}/notes/{id}"),
            ..Default::default()
        });
        let mut client = self.client.clone();
        client
            .get_document(request)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.code())
    }

    /// The documents the query returns.
    async fn query(&self, owner: Option<&str>) -> Result<usize, Code> {
        let request = self.req(proto::RunQueryRequest {
            parent: ROOT.into(),
            query_type: Some(proto::run_query_request::QueryType::StructuredQuery(
                notes_of(owner),
            )),
            ..Default::default()
        });
        let mut client = self.client.clone();
        let mut stream = client
            .run_query(request)
            .await
            .map_err(|s| s.code())?
            .into_inner();
        let mut documents = 0;
        while let Some(m) = stream.message().await.map_err(|s| s.code())? {
            documents += usize::from(m.document.is_some());
        }
        Ok(documents)
    }

    async fn commit(&self, writes: Vec<proto::Write>) -> Result<(), Code> {
        let request = self.req(proto::CommitRequest {
            database: DATABASE.into(),
            writes,
            ..Default::default()
        });
        let mut client = self.client.clone();
        client.commit(request).await.map(drop).map_err(|s| s.code())
    }

    async fn delete(&self, id: &str) -> Result<(), Code> {
        let request = self.req(proto::DeleteDocumentRequest {
            name: format!("{ROOT}/notes/{id}"),
            ..Default::default()
        });
        let mut client = self.client.clone();
        client
            .delete_document(request)
            .await
            .map(drop)
            .map_err(|s| s.code())
    }
}

fn string(text: &str) -> proto::Value {
    proto::Value {
        value_type: Some(proto::value::ValueType::StringValue(text.into())),
    }
}

fn note(owner: &str, title: &str) -> proto::Document {
    proto::Document {
        fields: [
            ("owner".to_string(), string(owner)),
            ("title".to_string(), string(title)),
        ]
        .into(),
        ..Default::default()
    }
}

fn notes_of(owner: Option<&str>) -> proto::StructuredQuery {
    use proto::structured_query::{self as sq, filter::FilterType};
    proto::StructuredQuery {
        from: vec![sq::CollectionSelector {
            collection_id: "notes".into(),
            all_descendants: false,
        }],
        r#where: owner.map(|owner| sq::Filter {
            filter_type: Some(FilterType::FieldFilter(sq::FieldFilter {
                field: Some(sq::FieldReference {
                    field_path: "owner".into(),
                }),
                op: sq::field_filter::Operator::Equal as i32,
                value: Some(string(owner)),
            })),
        }),
        ..Default::default()
    }
}

/// A `set()` of a note: an update without a precondition.
fn set(id: &str, owner: &str) -> proto::Write {
    let mut doc = note(owner, "set");
    doc.name = format!("{ROOT}/notes/{id}");
    proto::Write {
        operation: Some(proto::write::Operation::Update(doc)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grpc_owners_create_read_query_and_delete_only_their_own_notes() {
    let stack = support::dev_stack().await;
    let alice = Caller::new(&stack, "alice").await;
    let bob = Caller::new(&stack, "bob").await;

    assert_eq!(alice.create("ga1", "alice").await, Ok(()));
    assert_eq!(
        alice.create("ga2", "bob").await,
        Err(Code::PermissionDenied),
        "a note created in someone else's name"
    );
    assert_eq!(bob.create("gb1", "bob").await, Ok(()));

    let mine = alice.get("ga1").await.expect("her own note");
    assert_eq!(mine.fields.get("owner"), Some(&string("alice")));
    assert_eq!(
        alice.get("gb1").await.map(drop),
        Err(Code::PermissionDenied)
    );

    assert_eq!(alice.query(Some("alice")).await, Ok(1));
    assert_eq!(alice.query(Some("bob")).await, Err(Code::PermissionDenied));
    assert_eq!(alice.query(None).await, Err(Code::PermissionDenied));

    // A `set()` of a new note is the create it is: read absent, pinned.
    assert_eq!(alice.commit(vec![set("ga3", "alice")]).await, Ok(()));
    assert_eq!(
        alice.commit(vec![set("gb1", "alice")]).await,
        Err(Code::PermissionDenied),
        "overwriting someone else's note"
    );

    // In a transaction: the stored reads happen in it (its upstream id).
    let mut client = alice.client.clone();
    let begun = client
        .begin_transaction(alice.req(proto::BeginTransactionRequest {
            database: DATABASE.into(),
            ..Default::default()
        }))
        .await
        .expect("a transaction")
        .into_inner();
    let read = client
        .get_document(alice.req(proto::GetDocumentRequest {
            name: format!("{ROOT}/notes/ga1"),
            consistency_selector: Some(
                proto::get_document_request::ConsistencySelector::Transaction(
                    begun.transaction.clone(),
                ),
            ),
            ..Default::default()
        }))
        .await;
    assert!(read.is_ok(), "{read:?}");
    let committed = client
        .commit(alice.req(proto::CommitRequest {
            database: DATABASE.into(),
            writes: vec![set("ga4", "alice")],
            transaction: begun.transaction,
        }))
        .await;
    assert!(committed.is_ok(), "{committed:?}");

    assert_eq!(bob.delete("ga1").await, Err(Code::PermissionDenied));
    assert_eq!(alice.delete("ga1").await, Ok(()));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_grpc_commit_is_pinned_to_the_version_the_rule_saw() {
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&calls);
    let upstream = fake::server()
        .route(Method::POST, &format!("/v1/{ROOT}:batchGet"), |_| {
            Reply::json(
                http::StatusCode::OK,
                &json!([
                        {"found": {
                            "name": format!("{ROOT}/notes/a1"),
                            "fields": {"owner": {"stringValue": "alice"}},
                            "createTime": "2026-01-01T00:00:00Z",
                            "updateTime": "2026-01-01T00:00:00.123456Z"},
                         "readTime": "2026-01-02T00:00:00Z"},
                        {"missing": format!("{ROOT}/notes/a2"),
                         "readTime": "2026-01-02T00:00:00Z"}]),
            )
        })
        .fallback_stream(move |req: fake::Received| {
            record.lock().expect("calls").push(req);
            async move { grpc::grpc_response(vec![framed(&proto::CommitResponse::default())]) }
        })
        .start()
        .await;
    let stack = dev::start(DevOptions {
        upstream_override: Some(upstream.url()),
        ..dev::options()
    })
    .await;
    let alice = Caller::new(&stack, "alice").await;
    let mut retitle = set("a1", "alice");
    retitle.update_mask = Some(proto::DocumentMask {
        field_paths: vec!["title".into()],
    });
    assert_eq!(
        alice.commit(vec![retitle, set("a2", "alice")]).await,
        Ok(())
    );
    let forwarded = calls.lock().expect("calls").clone();
    assert_eq!(forwarded.len(), 1, "one Commit went up");
    assert_eq!(forwarded[0].path, "/google.firestore.v1.Firestore/Commit");
    let commit: proto::CommitRequest =
        prost::Message::decode(unframed(&forwarded[0].body)).expect("a CommitRequest");
    let condition = |i: usize| {
        commit.writes[i]
            .current_document
            .and_then(|p| p.condition_type)
    };
    use proto::precondition::ConditionType;
    assert_eq!(
        condition(0),
        Some(ConditionType::UpdateTime(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 123_456_000,
        })),
        "pinned to the version read"
    );
    assert_eq!(
        condition(1),
        Some(ConditionType::Exists(false)),
        "read absent: pinned to stay a create"
    );
    stack.shutdown().await;
    upstream.join().await;
}

fn add_query(id: i32, owner: Option<&str>) -> proto::ListenRequest {
    proto::ListenRequest {
        database: DATABASE.into(),
        labels: Default::default(),
        target_change: Some(proto::listen_request::TargetChange::AddTarget(
            proto::Target {
                target_id: id,
                target_type: Some(proto::target::TargetType::Query(
                    proto::target::QueryTarget {
                        parent: ROOT.into(),
                        query_type: Some(proto::target::query_target::QueryType::StructuredQuery(
                            notes_of(owner),
                        )),
                    },
                )),
                ..Default::default()
            },
        )),
    }
}

/// Read the stream until target `id` is added (`Ok`) or removed (`Err`
/// with the cause's code).
async fn outcome_of(call: &mut grpc::ListenCall, id: i32) -> Result<(), i32> {
    use proto::target_change::TargetChangeType as T;
    loop {
        let response = support::within("a Listen answer", call.responses.message())
            .await
            .expect("the stream answers")
            .expect("the stream stays open");
        match grpc::change_of(&response) {
            Some((kind, ids, _)) if kind == T::Add as i32 && ids.contains(&id) => return Ok(()),
            Some((kind, ids, cause)) if kind == T::Remove as i32 && ids.contains(&id) => {
                return Err(cause.unwrap_or_default());
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_query_target_proves_by_its_filter_and_a_document_target_fails_closed() {
    let stack = support::dev_stack().await;
    let alice = Caller::new(&stack, "alice").await;
    assert_eq!(alice.create("la1", "alice").await, Ok(()));
    let mut client = alice.client.clone();
    let mut call = grpc::listen(
        &mut client,
        &alice.auth,
        "listen-data",
        add_query(1, Some("alice")),
    )
    .await
    .expect("Listen opens");
    assert_eq!(outcome_of(&mut call, 1).await, Ok(()), "her own notes");
    call.requests.send(add_query(2, None)).await.expect("send");
    assert_eq!(outcome_of(&mut call, 2).await, Err(7), "every note");
    // A watched document would need its stored read on every change, not
    // once: refused rather than checked at the start only.
    let doc = grpc::add_documents(DATABASE, 3, &[format!("{ROOT}/notes/la1")]);
    call.requests.send(doc).await.expect("send");
    assert_eq!(outcome_of(&mut call, 3).await, Err(7), "a documents target");
    drop(call);
    stack.shutdown().await;
}
