//! Rules that see the data, through `firegate dev` (the emulator upstream)
//! with the example `policies/notes.yaml`: real HTTP requests as a client
//! sends them; and, with a fake upstream, the pin on the forwarded write
//! and the refusal when the stored document cannot be read.

use crate::support;

mod grpc;

use firegate::dev::{DevOptions, Stack};
use http::Method;
use serde_json::{Value, json};

use support::dev::{self, Caller, DOCS, engineer};
use support::fake::{self, Reply};

/// A caller of the dev stack as an engineer, its paths under the documents.
fn caller(stack: &Stack, subject: &str) -> Caller {
    Caller::new(stack, &engineer(subject)).under(DOCS)
}

fn note(owner: &str, title: &str) -> Value {
    json!({"fields": {"owner": {"stringValue": owner}, "title": {"stringValue": title}}})
}

fn owned_by(owner: &str) -> Value {
    json!({"structuredQuery": {
        "from": [{"collectionId": "notes"}],
        "where": {"fieldFilter": {"field": {"fieldPath": "owner"}, "op": "EQUAL",
                                  "value": {"stringValue": owner}}}}})
}

#[tokio::test]
async fn owners_create_read_query_update_and_delete_only_their_own_notes() {
    let stack = support::dev_stack().await;
    let (alice, bob) = (caller(&stack, "alice"), caller(&stack, "bob"));

    assert_eq!(
        alice
            .post("/notes?documentId=a1", note("alice", "mine"))
            .await
            .0,
        200
    );
    assert_eq!(
        alice
            .post("/notes?documentId=a2", note("bob", "forged"))
            .await
            .0,
        403
    );
    assert_eq!(
        bob.post("/notes?documentId=b1", note("bob", "secret plan"))
            .await
            .0,
        200
    );

    let (status, doc) = alice.send(Method::GET, "/notes/a1", None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["fields"]["title"]["stringValue"], "mine");
    let (status, refused) = alice.send(Method::GET, "/notes/b1", None).await;
    assert_eq!(status, 403);
    assert!(!refused.to_string().contains("secret plan"), "{refused}");
    let batch = json!({"documents": [
        "projects/demo/databases/(default)/documents/notes/a1",
        "projects/demo/databases/(default)/documents/notes/b1"]});
    let (status, refused) = alice.post(":batchGet", batch).await;
    assert_eq!(
        status, 403,
        "a batchGet with someone else's note is refused whole"
    );
    assert!(!refused.to_string().contains("secret plan"));

    let (status, rows) = alice.post(":runQuery", owned_by("alice")).await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(alice.post(":runQuery", owned_by("bob")).await.0, 403);
    let everything = json!({"structuredQuery": {"from": [{"collectionId": "notes"}]}});
    assert_eq!(alice.post(":runQuery", everything).await.0, 403);

    let retitle = json!({"fields": {"title": {"stringValue": "renamed"}}});
    let mask = "?updateMask.fieldPaths=title";
    let (status, updated) = alice
        .patch(format!("/notes/a1{mask}"), retitle.clone())
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["fields"]["owner"]["stringValue"], "alice");
    assert_eq!(
        alice.patch(format!("/notes/b1{mask}"), retitle).await.0,
        403
    );
    let give_away = json!({"fields": {"owner": {"stringValue": "bob"}}});
    let path = "/notes/a1?updateMask.fieldPaths=owner".to_string();
    assert_eq!(alice.patch(path, give_away).await.0, 403);

    // A commit `set()` of a new note is the create it is; the stored read
    // found it absent and the write went up pinned to `exists: false`.
    let set = json!({"writes": [{"update": {
        "name": "projects/demo/databases/(default)/documents/notes/a3",
        "fields": {"owner": {"stringValue": "alice"}}}}]});
    let (status, answer) = alice.post(":commit", set).await;
    assert_eq!(status, 200, "{answer}");

    assert_eq!(bob.send(Method::DELETE, "/notes/a1", None).await.0, 403);
    assert_eq!(alice.send(Method::DELETE, "/notes/a1", None).await.0, 200);

    let metrics = reqwest::get(format!("http://{}/metrics", stack.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let reads = metrics
        .lines()
        .find(|l| l.starts_with("firegate_stored_reads_total{result=\"ok\"}"))
        .unwrap_or_else(|| panic!("no stored_reads metric:\n{metrics}"));
    assert_ne!(reads.split(' ').nth(1), Some("0"), "{reads}");
    stack.shutdown().await;
}

/// `firegate dev` in front of a fake Firestore that answers the stored
/// read as `batch_get` says and records everything.
async fn with_fake_upstream(
    batch_get: impl Fn() -> Reply + Send + Sync + 'static,
) -> (
    Stack,
    fake::FakeServer,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    let upstream = fake::server()
        .route(
            Method::POST,
            "/v1/projects/demo/databases/(default)/documents:batchGet",
            move |_| batch_get(),
        )
        .fallback(move |req| {
            record.lock().expect("lock").push(req.uri.to_string());
            Reply::json(http::StatusCode::OK, &json!({"name": "x"}))
        })
        .start()
        .await;
    let stack = dev::start(DevOptions {
        upstream_override: Some(upstream.url()),
        ..dev::options()
    })
    .await;
    (stack, upstream, seen)
}

#[tokio::test]
async fn the_forwarded_write_is_pinned_to_the_version_the_rule_saw() {
    let (stack, upstream, seen) = with_fake_upstream(|| {
        Reply::json(
            http::StatusCode::OK,
            &json!([{"found": {
                "name": "projects/demo/databases/(default)/documents/notes/a1",
                "fields": {"owner": {"stringValue": "alice"}},
                "createTime": "2026-01-01T00:00:00Z",
                "updateTime": "2026-01-01T00:00:00.123456Z"},
                "readTime": "2026-01-02T00:00:00Z"}]),
        )
    })
    .await;
    let alice = caller(&stack, "alice");
    let body = json!({"fields": {"title": {"stringValue": "t"}}});
    let (status, answer) = alice
        .send(
            Method::PATCH,
            "/notes/a1?updateMask.fieldPaths=title",
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = alice.send(Method::GET, "/notes/a1", None).await;
    assert_eq!(status, 200);
    let forwarded = seen.lock().expect("lock").clone();
    assert_eq!(forwarded.len(), 2, "{forwarded:?}");
    assert!(
        forwarded[0].contains("currentDocument.updateTime=2026-01-01T00%3A00%3A00.123456Z"),
        "{forwarded:?}"
    );
    assert!(
        forwarded[1].contains("readTime=2026-01-02T00%3A00%3A00Z"),
        "the checked get reads what was checked: {forwarded:?}"
    );
    stack.shutdown().await;
    upstream.join().await;
}

#[tokio::test]
async fn a_stored_read_that_fails_refuses_with_503_and_forwards_nothing() {
    let (stack, upstream, seen) =
        with_fake_upstream(|| Reply::json(http::StatusCode::INTERNAL_SERVER_ERROR, &json!({})))
            .await;
    let alice = caller(&stack, "alice");
    let response = reqwest::Client::new()
        .get(format!("{}{DOCS}/notes/a1", stack.url()))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert!(seen.lock().expect("lock").is_empty(), "nothing forwarded");
    stack.shutdown().await;
    upstream.join().await;
}
