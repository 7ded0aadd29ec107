//! firegate's own log lines: JSON, and every line of a request inside its
//! `request` span with the request id. Its own test binary: the subscriber
//! is process-wide.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

const DATABASE: &str = "projects/demo/databases/(default)";
const OTHER: &str = "projects/other/databases/(default)";

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_requests_log_lines_carry_its_request_id_in_the_request_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("firegate=debug")
        .with_writer(move || writer.clone())
        .json()
        .init();
    let stack = support::dev_stack().await;
    let status = reqwest::Client::new()
        .get(format!(
            "{}{}/catalog/payments-api",
            stack.url(),
            support::dev::DOCS
        ))
        .header("x-request-id", "trace-me-1")
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("response")
        .status();
    assert_eq!(status, 401);

    // A Listen stream's lines come from its own task, after the opening
    // call has returned: they carry the stream's request id all the same.
    let identity = firegate::dev::Identity {
        subject: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["group:default/engineering".into()],
    };
    let auth = format!("Bearer {}", stack.token(&identity).expect("token"));
    let mut client = support::grpc::client(stack.proxy).await;
    let first =
        support::grpc::add_documents(DATABASE, 1, &[format!("{DATABASE}/documents/notes/n1")]);
    let mut call = support::grpc::listen(&mut client, &auth, "trace-listen-1", first)
        .await
        .expect("Listen opens");
    // A message naming another database ends the stream with an error,
    // which the stream's task logs.
    let foreign = support::grpc::add_documents(OTHER, 2, &[format!("{OTHER}/documents/a/b")]);
    call.requests.send(foreign).await.expect("send");
    let ended = support::grpc::end_of(&mut call.responses).await;
    assert_eq!(ended, Some(tonic::Code::InvalidArgument));
    drop(call);
    stack.shutdown().await;

    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request answered")
        .filter(|l| l["span"]["request_id"] == "trace-me-1")
        .collect();
    assert_eq!(answered.len(), 1, "{text}");
    assert_eq!(answered[0]["span"]["name"], "request", "{text}");
    assert_eq!(answered[0]["span"]["request_id"], "trace-me-1", "{text}");
    assert_eq!(answered[0]["fields"]["status"], 401, "{text}");
    assert!(!text.contains("not-a-token"), "a token reached the logs");
    let listen_ended: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "Listen stream ended")
        .collect();
    assert_eq!(listen_ended.len(), 1, "{text}");
    assert_eq!(listen_ended[0]["span"]["name"], "request", "{text}");
    assert_eq!(
        listen_ended[0]["span"]["request_id"], "trace-listen-1",
        "{text}"
    );
    assert!(!text.contains(&auth[7..]), "a token reached the logs");
}
