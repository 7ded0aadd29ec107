//! Firestore's gRPC API through the gate, end to end: a tonic client (of the
//! same generated crate) and raw HTTP/2 calls against a whole firegate, in
//! front of a recording fake gRPC upstream. The bypass suite mirrors the
//! REST one: names inside messages, other databases, transactions of
//! another principal, smuggled fields, malformed protobuf, unknown methods,
//! bad tokens and an issuer outage.

use crate::support;

use prost::Message as _;
use serde_json::{Value, json};
use tonic::Code;

use support::grpc::{self, GrpcUpstream, framed, proto, raw_call, unframed, with_auth};
use support::proxy::UPSTREAM_TOKEN;
use support::{TestPki, TestProxy, config, within};

const DB: &str = "projects/p/databases/(default)";
const ROOT: &str = "projects/p/databases/(default)/documents";

/// `rooms/**` is open to any authenticated caller, `secret/**` to no one,
/// everything else is refused by default.
const POLICY: &str = "rules:
  - id: rooms
    match: /rooms/{rest=**}
    allow: [read, write]
    who: {authenticated: true}
  - id: no-secrets
    match: /secret/{rest=**}
    deny: [read, write]
    who: {authenticated: true}
";

struct Stack {
    up: GrpcUpstream,
    proxy: TestProxy,
    _policies: tempfile::TempDir,
}

async fn stack_with(extra: Value) -> Stack {
    let up = GrpcUpstream::start().await;
    let policies = tempfile::tempdir().expect("policy dir");
    std::fs::write(policies.path().join("rules.yaml"), POLICY).expect("policy");
    let yaml = config::plain(&up.url())
        .merge(json!({"policy": {"dir": policies.path(), "watch": false}}))
        .merge(extra)
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    Stack {
        up,
        proxy,
        _policies: policies,
    }
}

async fn stack() -> Stack {
    stack_with(json!({})).await
}

fn name(path: &str) -> String {
    format!("{ROOT}/{path}")
}

fn get(path: &str) -> proto::GetDocumentRequest {
    proto::GetDocumentRequest {
        name: name(path),
        ..Default::default()
    }
}

fn delete_write(path: &str) -> proto::Write {
    proto::Write {
        operation: Some(proto::write::Operation::Delete(name(path))),
        ..Default::default()
    }
}

fn commit(writes: Vec<proto::Write>, transaction: Vec<u8>) -> proto::CommitRequest {
    proto::CommitRequest {
        database: DB.into(),
        writes,
        transaction,
    }
}

fn query(parent: &str, collection: &str) -> proto::RunQueryRequest {
    proto::RunQueryRequest {
        parent: parent.into(),
        query_type: Some(proto::run_query_request::QueryType::StructuredQuery(
            proto::StructuredQuery {
                from: vec![proto::structured_query::CollectionSelector {
                    collection_id: collection.into(),
                    all_descendants: false,
                }],
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

async fn record(proxy: &TestProxy, request_id: &str) -> Value {
    for _ in 0..50 {
        if let Some(r) = proxy
            .audit()
            .await
            .into_iter()
            .find(|r| r["request_id"] == request_id)
        {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no audit record for {request_id}");
}

fn tagged<T>(message: T, authorization: &str, request_id: &str) -> tonic::Request<T> {
    let mut request = with_auth(message, authorization);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("id"));
    request
}

// ---- forwarding ----------------------------------------------------------

#[tokio::test]
async fn a_unary_call_is_judged_and_forwarded_with_firegates_credentials() {
    let s = stack().await;
    let mut client = grpc::client(s.proxy.addr).await;
    let mut request = tagged(get("rooms/r1"), &s.proxy.bearer(), "grpc-get");
    let m = request.metadata_mut();
    m.insert(
        "x-goog-request-params",
        "name=projects%2Fother".parse().unwrap(),
    );
    m.insert("cookie", "session=1".parse().unwrap());
    m.insert("x-goog-api-key", "k".parse().unwrap());
    m.insert("x-goog-user-project", "billed-elsewhere".parse().unwrap());
    let response = within("GetDocument", client.get_document(request)).await;
    assert!(response.is_ok(), "{response:?}");

    let call = s.up.only_call();
    assert_eq!(call.path, "/google.firestore.v1.Firestore/GetDocument");
    assert_eq!(call.header("authorization"), Some(UPSTREAM_TOKEN));
    assert_eq!(
        call.header("x-goog-request-params"),
        Some("database=projects%2Fp%2Fdatabases%2F%28default%29")
    );
    assert_eq!(call.header("content-type"), Some("application/grpc"));
    assert_eq!(call.header("te"), Some("trailers"));
    for leaked in ["cookie", "x-goog-api-key", "x-goog-user-project"] {
        assert_eq!(call.header(leaked), None, "{leaked} forwarded");
    }
    let sent = proto::GetDocumentRequest::decode(unframed(&call.body)).expect("protobuf");
    assert_eq!(sent, get("rooms/r1"));

    let r = record(&s.proxy, "grpc-get").await;
    assert_eq!(r["rpc"], "get");
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["database"], DB);
    assert_eq!(r["targets"][0]["resource"], "/rooms/r1");
    assert_eq!(r["upstream_grpc_status"], 0, "{r}");
}

#[tokio::test]
async fn rest_keeps_working_on_the_same_listener() {
    let s = stack().await;
    let response = s
        .proxy
        .client()
        .get(
            s.proxy
                .http("/v1/projects/p/databases/(default)/documents/secret/x"),
        )
        .send()
        .await
        .expect("REST answer");
    assert_eq!(response.status(), 403);
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn server_streaming_responses_stream_back_message_by_message() {
    let s = stack().await;
    let docs: Vec<_> = (0..3)
        .map(|i| {
            framed(&proto::RunQueryResponse {
                document: Some(proto::Document {
                    name: name(&format!("rooms/r{i}")),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect();
    s.up.reply("RunQuery", docs);
    let mut client = grpc::client(s.proxy.addr).await;
    let mut stream = within(
        "RunQuery",
        client.run_query(with_auth(query(ROOT, "rooms"), &s.proxy.bearer())),
    )
    .await
    .expect("RunQuery allowed")
    .into_inner();
    let mut names = Vec::new();
    while let Some(message) = within("next", stream.message()).await.expect("message") {
        names.push(message.document.expect("document").name);
    }
    assert_eq!(
        names,
        [name("rooms/r0"), name("rooms/r1"), name("rooms/r2")]
    );
}

#[tokio::test]
async fn upstream_failures_reach_the_client_with_their_status_details() {
    let s = stack().await;
    // A `google.rpc.Status` (code 10, "contention") as Firestore attaches it
    // to an ABORTED commit; clients read the details to decide on a retry.
    let details = b"\x08\x0a\x12\x0acontention".to_vec();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("10"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("contention"));
    trailers.insert(
        "grpc-status-details-bin",
        http::HeaderValue::from_static("CAoSCmNvbnRlbnRpb24"),
    );
    s.up.reply_with("GetDocument", Vec::new(), trailers);
    let mut client = grpc::client(s.proxy.addr).await;
    let status = within(
        "GetDocument",
        client.get_document(tagged(get("rooms/r1"), &s.proxy.bearer(), "grpc-aborted")),
    )
    .await
    .expect_err("upstream's failure passes through");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "contention");
    assert_eq!(status.details(), details.as_slice());
    let r = record(&s.proxy, "grpc-aborted").await;
    assert_eq!(r["upstream_grpc_status"], 10, "{r}");
    assert_eq!(r["decision"], "allow");
}

/// Wakes its `Notify` when dropped: the fake upstream's answer future
/// holds one, and hyper drops that future when the call is reset.
struct NotifyOnDrop(std::sync::Arc<tokio::sync::Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn a_caller_that_gives_up_cancels_the_upstream_call() {
    let cancelled = std::sync::Arc::new(tokio::sync::Notify::new());
    let seen = std::sync::Arc::clone(&cancelled);
    let up = support::fake::server()
        .fallback_stream(move |_call| {
            let guard = NotifyOnDrop(std::sync::Arc::clone(&seen));
            async move {
                let _guard = guard;
                std::future::pending::<http::Response<http_body_util::Full<bytes::Bytes>>>().await
            }
        })
        .start()
        .await;
    let proxy = TestProxy::start(&config::plain(&up.url()).yaml()).await;
    let mut client = grpc::client(proxy.addr).await;
    let call = client.get_document(with_auth(get("rooms/r1"), &proxy.bearer()));
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(500), call).await;
    assert!(gave_up.is_err(), "the upstream never answers: {gave_up:?}");
    within("upstream call cancelled", cancelled.notified()).await;
}

#[tokio::test]
async fn the_deadline_goes_upstream_minus_the_time_spent() {
    let s = stack().await;
    let mut client = grpc::client(s.proxy.addr).await;
    let mut request = with_auth(get("rooms/r1"), &s.proxy.bearer());
    request.set_timeout(std::time::Duration::from_secs(5));
    within("GetDocument", client.get_document(request))
        .await
        .expect("allowed");
    let call = s.up.only_call();
    let timeout = call.header("grpc-timeout").expect("grpc-timeout forwarded");
    let millis: u64 = timeout.strip_suffix('m').expect("millis").parse().unwrap();
    assert!((1..=5000).contains(&millis), "{timeout}");
}

// ---- names inside messages -------------------------------------------------

#[tokio::test]
async fn every_name_inside_a_message_is_judged() {
    let s = stack().await;
    let mut client = grpc::client(s.proxy.addr).await;
    let bearer = s.proxy.bearer();
    let commit = client
        .commit(with_auth(
            commit(
                vec![delete_write("rooms/a"), delete_write("secret/b")],
                vec![],
            ),
            &bearer,
        ))
        .await
        .expect_err("a write to secret/ inside the commit");
    assert_eq!(commit.code(), Code::PermissionDenied, "{commit:?}");
    let batch_get = client
        .batch_get_documents(with_auth(
            proto::BatchGetDocumentsRequest {
                database: DB.into(),
                documents: vec![name("rooms/a"), name("other/b")],
                ..Default::default()
            },
            &bearer,
        ))
        .await
        .expect_err("a document outside rooms/");
    assert_eq!(batch_get.code(), Code::PermissionDenied);
    let run_query = client
        .run_query(with_auth(query(&name("secret/s"), "rooms"), &bearer))
        .await
        .expect_err("a query below secret/");
    assert_eq!(run_query.code(), Code::PermissionDenied);
    assert!(s.up.calls().is_empty(), "nothing refused reached upstream");
}

#[tokio::test]
async fn other_databases_are_refused() {
    let s = stack().await;
    let mut client = grpc::client(s.proxy.addr).await;
    let bearer = s.proxy.bearer();
    let other = proto::GetDocumentRequest {
        name: "projects/p/databases/other/documents/rooms/r1".into(),
        ..Default::default()
    };
    let err = client
        .get_document(with_auth(other, &bearer))
        .await
        .expect_err("database not served");
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut mixed = commit(vec![delete_write("rooms/a")], vec![]);
    mixed.writes.push(proto::Write {
        operation: Some(proto::write::Operation::Delete(
            "projects/p/databases/other/documents/rooms/a".into(),
        )),
        ..Default::default()
    });
    let err = client
        .commit(with_auth(mixed, &bearer))
        .await
        .expect_err("a name in another database");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn too_many_targets_are_refused() {
    let s = stack_with(json!({"server": {"limits": {"max_targets": 2}}})).await;
    let mut client = grpc::client(s.proxy.addr).await;
    let writes = (0..3)
        .map(|i| delete_write(&format!("rooms/{i}")))
        .collect();
    let err = client
        .commit(with_auth(commit(writes, vec![]), &s.proxy.bearer()))
        .await
        .expect_err("over max_targets");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(s.up.calls().is_empty());
}

// ---- transactions -----------------------------------------------------------

#[tokio::test]
async fn transactions_are_sealed_to_the_principal_that_began_them() {
    let s = stack().await;
    s.up.reply(
        "BeginTransaction",
        vec![framed(&proto::BeginTransactionResponse {
            transaction: b"upstream-tx".to_vec(),
        })],
    );
    let mut client = grpc::client(s.proxy.addr).await;
    let alice = s.proxy.bearer_for("alice");
    let bob = s.proxy.bearer_for("bob");
    let begun = client
        .begin_transaction(with_auth(
            proto::BeginTransactionRequest {
                database: DB.into(),
                options: None,
            },
            &alice,
        ))
        .await
        .expect("begin")
        .into_inner();
    assert_ne!(
        begun.transaction, b"upstream-tx",
        "the upstream id left unsealed"
    );
    assert!(!begun.transaction.is_empty());

    let err = client
        .commit(with_auth(
            commit(vec![delete_write("rooms/a")], begun.transaction.clone()),
            &bob,
        ))
        .await
        .expect_err("someone else's transaction");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .commit(with_auth(
            commit(vec![delete_write("rooms/a")], b"forged".to_vec()),
            &alice,
        ))
        .await
        .expect_err("a forged transaction");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(s.up.calls().len(), 1, "only BeginTransaction went upstream");

    client
        .commit(with_auth(
            commit(vec![delete_write("rooms/a")], begun.transaction),
            &alice,
        ))
        .await
        .expect("the owner commits");
    let sent = proto::CommitRequest::decode(unframed(&s.up.calls()[1].body)).unwrap();
    assert_eq!(sent.transaction, b"upstream-tx", "upstream gets its own id");
}

#[tokio::test]
async fn a_transaction_begun_by_a_query_is_sealed_in_the_stream() {
    let s = stack().await;
    s.up.reply(
        "RunQuery",
        vec![
            framed(&proto::RunQueryResponse {
                transaction: b"upstream-tx".to_vec(),
                ..Default::default()
            }),
            framed(&proto::RunQueryResponse {
                document: Some(proto::Document {
                    name: name("rooms/r1"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ],
    );
    let mut client = grpc::client(s.proxy.addr).await;
    let mut request = query(ROOT, "rooms");
    request.consistency_selector = Some(
        proto::run_query_request::ConsistencySelector::NewTransaction(
            proto::TransactionOptions::default(),
        ),
    );
    let mut stream = client
        .run_query(with_auth(request, &s.proxy.bearer()))
        .await
        .expect("allowed")
        .into_inner();
    let first = stream.message().await.expect("first").expect("a message");
    assert!(!first.transaction.is_empty());
    assert_ne!(first.transaction, b"upstream-tx");
    let second = stream.message().await.expect("second").expect("a message");
    assert_eq!(second.document.expect("document").name, name("rooms/r1"));
    assert!(stream.message().await.expect("end").is_none());
}

// ---- the wire ----------------------------------------------------------------

#[tokio::test]
async fn request_tags_reach_the_audit_line_as_over_rest() {
    let s = stack().await;
    // `request_options` (field 10 of GetDocumentRequest) with two tags, as
    // a client built on Firestore's current protos sends it.
    let mut options = Vec::new();
    for tag in ["checkout", "p1"] {
        prost::encoding::string::encode(1, &tag.to_owned(), &mut options);
    }
    let mut bytes = get("rooms/r1").encode_to_vec();
    prost::encoding::bytes::encode(10, &options, &mut bytes);
    let bearer = s.proxy.bearer();
    let answer = raw_call(
        s.proxy.addr,
        "/google.firestore.v1.Firestore/GetDocument",
        &[("authorization", &bearer), ("x-request-id", "grpc-tags")],
        grpc::framed_bytes(&bytes),
    )
    .await;
    assert_eq!(answer.status(), "0", "{answer:?}");
    let r = record(&s.proxy, "grpc-tags").await;
    assert_eq!(r["request_tags"], json!(["checkout", "p1"]), "{r}");
}

#[tokio::test]
async fn unknown_fields_never_reach_upstream() {
    let s = stack().await;
    // A CommitRequest with a field the generated crate does not know
    // (number 99) naming a document the caller may not touch.
    let mut bytes = commit(vec![delete_write("rooms/a")], vec![]).encode_to_vec();
    let smuggled = name("secret/x");
    bytes.push((99 << 3 | 2) as u8 | 0x80);
    bytes.push(((99 << 3 | 2) >> 7) as u8);
    bytes.push(smuggled.len() as u8);
    bytes.extend_from_slice(smuggled.as_bytes());
    let bearer = s.proxy.bearer();
    let answer = raw_call(
        s.proxy.addr,
        "/google.firestore.v1.Firestore/Commit",
        &[("authorization", &bearer)],
        grpc::framed_bytes(&bytes),
    )
    .await;
    assert_eq!(answer.status(), "0", "{answer:?}");
    let call = s.up.only_call();
    let forwarded = unframed(&call.body);
    assert!(
        !forwarded
            .windows(smuggled.len())
            .any(|w| w == smuggled.as_bytes()),
        "the unknown field was forwarded"
    );
    assert_eq!(
        forwarded,
        commit(vec![delete_write("rooms/a")], vec![]).encode_to_vec(),
        "upstream gets the re-encoded message"
    );
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let s = stack().await;
    let bearer = s.proxy.bearer();
    for body in [
        grpc::framed_bytes(&[0x0a, 0x05, b'a']),
        bytes::Bytes::from_static(&[0, 0, 0, 0, 9, 1]),
        bytes::Bytes::new(),
    ] {
        let answer = raw_call(
            s.proxy.addr,
            "/google.firestore.v1.Firestore/GetDocument",
            &[("authorization", &bearer), ("x-request-id", "grpc-bad")],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status(), "3", "{body:?}: {answer:?}");
    }
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_decoding() {
    let s = stack_with(json!({"server": {"limits": {"max_grpc_message_bytes": 1024}}})).await;
    let mut big = get("rooms/r1");
    big.name = name(&format!("rooms/{}", "x".repeat(1400)));
    let answer = raw_call(
        s.proxy.addr,
        "/google.firestore.v1.Firestore/GetDocument",
        &[
            ("authorization", &s.proxy.bearer()),
            ("x-request-id", "grpc-big"),
        ],
        framed(&big),
    )
    .await;
    assert_eq!(answer.status(), "3", "{answer:?}");
    assert_eq!(
        record(&s.proxy, "grpc-big").await["reason"],
        "grpc_message_too_large"
    );
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn unknown_and_unserved_methods_are_unimplemented() {
    let s = stack().await;
    let bearer = s.proxy.bearer();
    for (method, reason) in [
        (
            "/google.firestore.v1.Firestore/Frobnicate",
            "grpc_unknown_method",
        ),
        (
            "/google.firestore.v1.Firestore/Write",
            "grpc_method_not_served",
        ),
        (
            "/google.firestore.admin.v1.FirestoreAdmin/ListIndexes",
            "grpc_unknown_method",
        ),
    ] {
        let answer = raw_call(
            s.proxy.addr,
            method,
            &[("authorization", &bearer), ("x-request-id", "grpc-method")],
            framed(&get("rooms/r1")),
        )
        .await;
        assert_eq!(answer.status(), "12", "{method}");
        let audit = s.proxy.audit().await;
        assert!(
            audit.iter().any(|r| r["reason"] == reason),
            "{method}: {audit:?}"
        );
    }
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn missing_and_invalid_tokens_are_unauthenticated() {
    let s = stack().await;
    let mut client = grpc::client(s.proxy.addr).await;
    let err = client
        .get_document(tonic::Request::new(get("rooms/r1")))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_document(with_auth(get("rooms/r1"), "Bearer not-a-jwt"))
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let expired = s.proxy.issuer().token().expires_in(-600).sign();
    let err = client
        .get_document(with_auth(get("rooms/r1"), &format!("Bearer {expired}")))
        .await
        .expect_err("expired token");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(s.up.calls().is_empty());
}

#[tokio::test]
async fn an_issuer_outage_is_unavailable_not_unauthenticated() {
    let s = stack().await;
    s.proxy.issuer().set_available(false);
    // A key the cached JWKS does not hold forces a fetch, which fails.
    let token = s.proxy.issuer().token().kid("rotated-in").sign();
    let mut client = grpc::client(s.proxy.addr).await;
    let err = client
        .get_document(with_auth(get("rooms/r1"), &format!("Bearer {token}")))
        .await
        .expect_err("issuer down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(s.up.calls().is_empty());
}

// ---- TLS -------------------------------------------------------------------------

#[tokio::test]
async fn grpc_over_tls_negotiates_h2_by_alpn() {
    let up = GrpcUpstream::start().await;
    let pki = TestPki::new();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("rules.yaml"), POLICY).unwrap();
    let yaml = config::tls(&pki, &up.url())
        .merge(json!({"policy": {"dir": policies.path(), "watch": false}}))
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    let mut client = grpc::tls_client(proxy.addr, &pki).await;
    within(
        "GetDocument over TLS",
        client.get_document(with_auth(get("rooms/r1"), &proxy.bearer())),
    )
    .await
    .expect("allowed over TLS");
    let err = client
        .get_document(with_auth(get("secret/s"), &proxy.bearer()))
        .await
        .expect_err("refused over TLS");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(up.calls().len(), 1);
}

// ---- Listen ---------------------------------------------------------------------

mod listen {
    use std::time::Duration;

    use super::*;
    use grpc::{ListenUpstream, add_documents, change_of, listen};
    use proto::target_change::TargetChangeType as T;

    struct ListenStack {
        up: ListenUpstream,
        proxy: TestProxy,
        policies: tempfile::TempDir,
    }

    async fn listen_stack() -> ListenStack {
        let up = ListenUpstream::start().await;
        let policies = tempfile::tempdir().expect("policy dir");
        std::fs::write(policies.path().join("rules.yaml"), POLICY).expect("policy");
        let yaml = config::plain(&up.url())
            .merge(json!({"policy": {"dir": policies.path(), "watch": false}}))
            .yaml();
        let proxy = TestProxy::start(&yaml).await;
        ListenStack {
            up,
            proxy,
            policies,
        }
    }

    /// firegate in front of a Listen fake that allows `max_streams` streams
    /// per connection, with `extra` config merged.
    async fn capped_stack(max_streams: u32, extra: Value) -> ListenStack {
        let up = ListenUpstream::capped(max_streams).await;
        let policies = tempfile::tempdir().expect("policy dir");
        std::fs::write(policies.path().join("rules.yaml"), POLICY).expect("policy");
        let yaml = config::plain(&up.url())
            .merge(json!({"policy": {"dir": policies.path(), "watch": false}}))
            .merge(extra)
            .yaml();
        let proxy = TestProxy::start(&yaml).await;
        ListenStack {
            up,
            proxy,
            policies,
        }
    }

    /// A Listen on its own client channel, its target acknowledged.
    async fn open_listen(s: &ListenStack, id: i32) -> grpc::ListenCall {
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, id, &[name("rooms/a")]);
        let mut call = within(
            "Listen opens",
            listen(
                &mut client,
                &s.proxy.bearer(),
                &format!("listen-{id}"),
                first,
            ),
        )
        .await
        .expect("Listen opens");
        assert_eq!(
            next_change(&mut call).await,
            (T::Add as i32, vec![id], None)
        );
        call
    }

    #[tokio::test]
    async fn listens_past_the_upstream_stream_cap_open_another_connection_and_unary_calls_pass() {
        let s = capped_stack(2, json!({"upstream": {"pool": {"idle_timeout": "300ms"}}})).await;
        let mut calls = Vec::new();
        for id in 1..=3 {
            calls.push(open_listen(&s, id).await);
        }
        let mut client = grpc::client(s.proxy.addr).await;
        within(
            "GetDocument beside three Listens",
            client.get_document(with_auth(get("rooms/r1"), &s.proxy.bearer())),
        )
        .await
        .expect("GetDocument answered");
        assert_eq!(s.up.connections(), 2, "two Listens per connection");
        let grpc = |name: &str| format!("firegate_upstream_{name}{{client=\"grpc\"}}");
        assert_eq!(s.proxy.metric(&grpc("connections")).await, Some(2.0));
        assert_eq!(
            s.proxy.metric(&grpc("connections_opened_total")).await,
            Some(2.0)
        );
        assert_eq!(s.proxy.metric(&grpc("streams")).await, Some(3.0));
        // A stream counts until its response ends, not at its head.
        drop(calls.pop());
        wait_for_metric(&s, &grpc("streams"), 2.0).await;
        // Idle connections close, all but one.
        drop(calls);
        wait_for_metric(&s, &grpc("streams"), 0.0).await;
        wait_for_metric(&s, &grpc("connections"), 1.0).await;
    }

    #[tokio::test]
    async fn listens_never_take_the_last_connections_streams_from_unary_calls() {
        // Two connections of two streams: Listens may hold one connection's worth.
        let s = capped_stack(2, json!({"upstream": {"pool": {"max_connections": 2}}})).await;
        let first = open_listen(&s, 1).await;
        let _second = open_listen(&s, 2).await;
        let third = tokio::spawn({
            let (addr, bearer) = (s.proxy.addr, s.proxy.bearer());
            async move {
                let mut client = grpc::client(addr).await;
                let mut call = listen(
                    &mut client,
                    &bearer,
                    "listen-3",
                    add_documents(DB, 3, &[name("rooms/a")]),
                )
                .await
                .expect("Listen opens");
                next_change(&mut call).await
            }
        });
        let mut client = grpc::client(s.proxy.addr).await;
        for _ in 0..3 {
            within(
                "GetDocument while Listens hold all they may",
                client.get_document(with_auth(get("rooms/r1"), &s.proxy.bearer())),
            )
            .await
            .expect("GetDocument answered");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if third.is_finished() {
            panic!("the third Listen waits for a stream: {:?}", third.await);
        }
        assert_eq!(
            s.up.target_changes(),
            [1, 2],
            "the third Listen was not sent upstream"
        );
        drop(first);
        let change = within("the third Listen", third).await.expect("task");
        assert_eq!(change, (T::Add as i32, vec![3], None));
    }

    #[tokio::test]
    async fn a_principal_over_its_in_flight_cap_is_told_unavailable_which_clients_retry() {
        let s = capped_stack(
            100,
            json!({"server": {"limits": {"max_in_flight_per_principal": 2}}}),
        )
        .await;
        let _first = open_listen(&s, 1).await;
        let _second = open_listen(&s, 2).await;
        let mut client = grpc::client(s.proxy.addr).await;
        let err = within(
            "GetDocument over the cap",
            client.get_document(with_auth(get("rooms/r1"), &s.proxy.bearer())),
        )
        .await
        .expect_err("over the cap");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        within(
            "another caller's GetDocument",
            client.get_document(with_auth(get("rooms/r1"), &s.proxy.bearer_for("bob"))),
        )
        .await
        .expect("someone else is not affected");
    }

    async fn wait_for_metric(s: &ListenStack, series: &str, value: f64) {
        within(series, async {
            while s.proxy.metric(series).await != Some(value) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    async fn next_change(call: &mut grpc::ListenCall) -> (i32, Vec<i32>, Option<i32>) {
        let message = within("a Listen response", call.responses.message())
            .await
            .expect("stream open")
            .expect("a message");
        change_of(&message).expect("a target change")
    }

    async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        within(what, async {
            while !ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_refused_target_is_removed_with_permission_denied_and_never_forwarded() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let mut first = add_documents(DB, 1, &[name("rooms/a")]);
        // A resume token passes with its target.
        if let Some(proto::listen_request::TargetChange::AddTarget(t)) = &mut first.target_change {
            t.resume_type = Some(proto::target::ResumeType::ResumeToken(
                b"resume-here".to_vec(),
            ));
        }
        let mut call = listen(&mut client, &s.proxy.bearer(), "listen-refused", first)
            .await
            .expect("Listen opens");
        assert_eq!(next_change(&mut call).await, (T::Add as i32, vec![1], None));
        assert_eq!(
            next_change(&mut call).await,
            (T::Current as i32, vec![1], None)
        );

        call.requests
            .send(add_documents(DB, 2, &[name("rooms/b"), name("secret/x")]))
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut call).await,
            (
                T::Remove as i32,
                vec![2],
                Some(Code::PermissionDenied as i32)
            )
        );
        // A query target is judged as the list it is.
        call.requests
            .send(proto::ListenRequest {
                database: DB.into(),
                labels: Default::default(),
                target_change: Some(proto::listen_request::TargetChange::AddTarget(
                    proto::Target {
                        target_id: 3,
                        target_type: Some(proto::target::TargetType::Query(
                            proto::target::QueryTarget {
                                parent: name("secret/s"),
                                query_type: Some(
                                    proto::target::query_target::QueryType::StructuredQuery(
                                        proto::StructuredQuery {
                                            from: vec![
                                                proto::structured_query::CollectionSelector {
                                                    collection_id: "c".into(),
                                                    all_descendants: false,
                                                },
                                            ],
                                            ..Default::default()
                                        },
                                    ),
                                ),
                            },
                        )),
                        ..Default::default()
                    },
                )),
            })
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut call).await,
            (
                T::Remove as i32,
                vec![3],
                Some(Code::PermissionDenied as i32)
            )
        );
        assert_eq!(
            s.up.target_changes(),
            [1],
            "only the allowed target went upstream"
        );
        let metadata = s.up.metadata();
        assert_eq!(metadata[0]["authorization"], UPSTREAM_TOKEN);
        let Some(proto::listen_request::TargetChange::AddTarget(forwarded)) =
            &s.up.requests()[0].target_change
        else {
            panic!("the first request upstream adds the target");
        };
        assert_eq!(
            forwarded.resume_type,
            Some(proto::target::ResumeType::ResumeToken(
                b"resume-here".to_vec()
            ))
        );
        assert!(metadata[0].get("cookie").is_none());

        // The caller going away ends the upstream stream too.
        drop(call);
        wait_for("the upstream stream to end", || s.up.ended() == 1).await;
        let records: Vec<Value> = s
            .proxy
            .audit()
            .await
            .into_iter()
            .filter(|r| r["request_id"] == "listen-refused")
            .collect();
        let decisions: Vec<&Value> = records.iter().map(|r| &r["decision"]).collect();
        assert!(records.len() >= 4, "open + three targets: {records:?}");
        assert_eq!(records[0]["rpc"], "listen");
        assert_eq!(records[0]["decision"], "allow", "the stream was let in");
        assert_eq!(
            decisions[1..4],
            [&json!("allow"), &json!("deny"), &json!("deny")]
        );
    }

    #[tokio::test]
    async fn a_policy_change_revokes_an_open_target() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, 7, &[name("rooms/a")]);
        let mut call = listen(&mut client, &s.proxy.bearer(), "listen-revoked", first)
            .await
            .expect("Listen opens");
        assert_eq!(next_change(&mut call).await, (T::Add as i32, vec![7], None));
        assert_eq!(
            next_change(&mut call).await,
            (T::Current as i32, vec![7], None)
        );

        std::fs::write(
            s.policies.path().join("rules.yaml"),
            "rules:\n  - id: nothing-left\n    match: /other/{rest=**}\n    allow: [read]\n    who: {authenticated: true}\n",
        )
        .unwrap();
        let reloaded = std::time::Instant::now();
        s.proxy.reload();
        assert_eq!(
            next_change(&mut call).await,
            (
                T::Remove as i32,
                vec![7],
                Some(Code::PermissionDenied as i32)
            )
        );
        // Every open stream hears of a reload at once, not on its own clock.
        let took = reloaded.elapsed();
        assert!(took < Duration::from_secs(2), "re-judged after {took:?}");
        wait_for("remove_target upstream", || {
            s.up.target_changes() == [7, -7]
        })
        .await;
        let audit = s.proxy.audit().await;
        assert!(
            audit
                .iter()
                .any(|r| r["request_id"] == "listen-revoked"
                    && r["reason"] == "listen_target_revoked"),
            "{audit:?}"
        );
    }

    /// A Listen target allowed by the catalog (its owner listens) is
    /// removed once a sync moves the ownership elsewhere: the decision
    /// cache is keyed by the index's generation, and open streams re-judge.
    #[tokio::test]
    async fn a_catalog_change_revokes_an_open_target() {
        use support::catalog::{CATALOG_TOKEN, FakeCatalog, entities};
        let up = ListenUpstream::start().await;
        let catalog = FakeCatalog::start(entities(&[("checkout", "payments")])).await;
        let issuer = support::issuer::TestIssuer::builder().start().await;
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("rules.yaml"),
            "rules:\n  - id: owners\n    match: /services/{service}/{rest=**}\n    allow: [read]\n    who: {catalog: {owner_of: \"component:{service}\"}}\n",
        )
        .expect("policy");
        std::fs::write(dir.path().join("token"), CATALOG_TOKEN).expect("token");
        let yaml = config::plain(&up.url())
            .merge(json!({
                "policy": {"dir": dir.path(), "watch": false},
                "catalog": {
                    "url": catalog.url(),
                    "token_file": dir.path().join("token"),
                    "interval": "200ms",
                    "page_size": 2,
                    "users": [{"issuer": issuer.issuer, "user_ref": "user:default/{sub}"}],
                },
            }))
            .yaml();
        let proxy = TestProxy::start_with(issuer, &yaml).await;
        wait_for("the first catalog sync", || {
            proxy
                .readiness()
                .and_then(|r| r.check("catalog").map(|c| c.ready))
                == Some(true)
        })
        .await;
        let mut client = grpc::client(proxy.addr).await;
        let first = add_documents(DB, 5, &[name("services/checkout/d/1")]);
        let mut call = listen(
            &mut client,
            &proxy.bearer_for("alice"),
            "listen-catalog",
            first,
        )
        .await
        .expect("Listen opens");
        assert_eq!(next_change(&mut call).await, (T::Add as i32, vec![5], None));
        assert_eq!(
            next_change(&mut call).await,
            (T::Current as i32, vec![5], None)
        );
        catalog.set(entities(&[("checkout", "search")]));
        assert_eq!(
            next_change(&mut call).await,
            (
                T::Remove as i32,
                vec![5],
                Some(Code::PermissionDenied as i32)
            )
        );
        wait_for("remove_target upstream", || up.target_changes() == [5, -5]).await;
    }

    /// `listen_stack` with `limits` merged into `server.limits`.
    async fn listen_stack_with(limits: Value) -> ListenStack {
        let up = ListenUpstream::start().await;
        let policies = tempfile::tempdir().expect("policy dir");
        std::fs::write(policies.path().join("rules.yaml"), POLICY).expect("policy");
        let yaml = config::plain(&up.url())
            .merge(json!({
                "policy": {"dir": policies.path(), "watch": false},
                "server": {"limits": limits},
            }))
            .yaml();
        let proxy = TestProxy::start(&yaml).await;
        ListenStack {
            up,
            proxy,
            policies,
        }
    }

    fn revoke_rooms(s: &ListenStack) {
        std::fs::write(
            s.policies.path().join("rules.yaml"),
            "rules:\n  - id: nothing-left\n    match: /other/{rest=**}\n    allow: [read]\n    who: {authenticated: true}\n",
        )
        .unwrap();
        s.proxy.reload();
    }

    #[tokio::test]
    async fn unnumbered_targets_are_tracked_by_the_ids_firestore_assigns() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, 0, &[name("rooms/a")]);
        let mut call = listen(&mut client, &s.proxy.bearer(), "listen-unnumbered", first)
            .await
            .expect("Listen opens");
        // The second is held until the first's ADD names its id: the order
        // of ids assigned to several id-0 targets is undefined.
        let second = add_documents(DB, 0, &[name("rooms/b")]);
        call.requests.send(second).await.expect("send");
        let mut added = Vec::new();
        while added.len() < 2 {
            let (kind, ids, _) = next_change(&mut call).await;
            if kind == T::Add as i32 {
                added.extend(ids);
            }
        }
        assert_eq!(added, [1001, 1002]);
        wait_for("both forwarded", || s.up.target_changes() == [0, 0]).await;

        revoke_rooms(&s);
        let mut removed = Vec::new();
        while removed.len() < 2 {
            let (kind, ids, cause) = next_change(&mut call).await;
            if kind == T::Remove as i32 {
                assert_eq!(cause, Some(Code::PermissionDenied as i32));
                removed.extend(ids);
            }
        }
        removed.sort_unstable();
        assert_eq!(removed, [1001, 1002], "both re-judged, each by its own id");
        // Removed upstream by the ids Firestore knows, never `remove_target: 0`.
        wait_for("remove_target upstream", || {
            let mut changes = s.up.target_changes();
            changes.sort_unstable();
            changes == [-1002, -1001, 0, 0]
        })
        .await;
    }

    #[tokio::test]
    async fn an_active_target_id_added_again_ends_the_stream_and_is_never_forwarded() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, 3, &[name("rooms/a")]);
        let mut call = listen(&mut client, &s.proxy.bearer(), "listen-duplicate", first)
            .await
            .expect("Listen opens");
        assert_eq!(next_change(&mut call).await, (T::Add as i32, vec![3], None));
        let again = add_documents(DB, 3, &[name("rooms/b")]);
        call.requests.send(again).await.expect("send");
        let ended = grpc::end_of(&mut call.responses).await;
        assert_eq!(ended, Some(Code::InvalidArgument));
        assert_eq!(
            s.up.target_changes(),
            [3],
            "the second add never went upstream"
        );
        let audit = s.proxy.audit().await;
        assert!(
            audit.iter().any(|r| r["request_id"] == "listen-duplicate"
                && r["reason"] == "listen_target_id_in_use"),
            "{audit:?}"
        );
    }

    #[tokio::test]
    async fn a_stream_holds_at_most_max_listen_targets() {
        let s = listen_stack_with(json!({"max_listen_targets": 2})).await;
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, 1, &[name("rooms/a")]);
        let mut call = listen(&mut client, &s.proxy.bearer(), "listen-capped", first)
            .await
            .expect("Listen opens");
        for (id, doc) in [(2, "rooms/b"), (3, "rooms/c")] {
            call.requests
                .send(add_documents(DB, id, &[name(doc)]))
                .await
                .expect("send");
        }
        let refused = within("the third target's refusal", async {
            loop {
                let (kind, ids, cause) = next_change(&mut call).await;
                if kind == T::Remove as i32 {
                    return (ids, cause);
                }
            }
        })
        .await;
        assert_eq!(refused, (vec![3], Some(Code::ResourceExhausted as i32)));
        wait_for("two forwarded", || s.up.target_changes() == [1, 2]).await;
    }

    #[tokio::test]
    async fn a_stream_whose_first_message_never_comes_ends_at_the_body_deadline() {
        let s = listen_stack_with(json!({"body_read_timeout": "1s"})).await;
        let mut client = grpc::client(s.proxy.addr).await;
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::ListenRequest>(1);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let mut request = grpc::with_auth(stream, &s.proxy.bearer());
        request
            .metadata_mut()
            .insert("x-request-id", "listen-silent".parse().expect("id"));
        let answer = within("the deadline", client.listen(request)).await;
        assert_eq!(answer.err().map(|e| e.code()), Some(Code::DeadlineExceeded));
        drop(tx);
        let r = record(&s.proxy, "listen-silent").await;
        assert_eq!(r["reason"], "listen_no_first_message");
        assert!(s.up.requests().is_empty());
    }

    #[tokio::test]
    async fn the_callers_grpc_timeout_bounds_the_stream() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::ListenRequest>(4);
        tx.send(add_documents(DB, 1, &[name("rooms/a")]))
            .await
            .expect("queue");
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let mut request = grpc::with_auth(stream, &s.proxy.bearer());
        request.set_timeout(Duration::from_millis(1500));
        let mut responses = client.listen(request).await.expect("opens").into_inner();
        let ended = grpc::end_of(&mut responses).await;
        assert_eq!(ended, Some(Code::DeadlineExceeded));
        drop(tx);
    }

    #[tokio::test]
    async fn the_stream_ends_unauthenticated_when_the_token_expires() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        // Accepted within the issuer's 30 s leeway, for about two more seconds.
        let signed = std::time::Instant::now();
        let token = s.proxy.issuer().token().expires_in(-28).sign();
        let first = add_documents(DB, 1, &[name("rooms/a")]);
        let mut call = listen(
            &mut client,
            &format!("Bearer {token}"),
            "listen-expiry",
            first,
        )
        .await
        .expect("Listen opens");
        assert_eq!(next_change(&mut call).await, (T::Add as i32, vec![1], None));
        assert_eq!(
            next_change(&mut call).await,
            (T::Current as i32, vec![1], None)
        );
        let end = within("the stream's end", call.responses.message())
            .await
            .expect_err("ended with a status");
        assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
        // Within a second of the token's end (exp + leeway, 2 s from signing;
        // `exp` is whole seconds, so up to 1 s earlier).
        let took = signed.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "ended {took:?} after signing"
        );
    }

    #[tokio::test]
    async fn a_listen_without_a_valid_token_is_refused_at_once() {
        let s = listen_stack().await;
        let mut client = grpc::client(s.proxy.addr).await;
        let first = add_documents(DB, 1, &[name("rooms/a")]);
        let err = listen(&mut client, "Bearer nope", "listen-no-token", first)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
        let other = add_documents("projects/p/databases/other", 1, &[name("rooms/a")]);
        let err = listen(&mut client, &s.proxy.bearer(), "listen-other-db", other)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(s.up.requests().is_empty());
    }
}
