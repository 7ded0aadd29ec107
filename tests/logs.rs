//! firegate's own log lines: JSON, and every line of a request inside its
//! `request` span with the request id. Its own test binary: the subscriber
//! is process-wide.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

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
            "{}/v1/projects/demo/databases/(default)/documents/catalog/payments-api",
            stack.url()
        ))
        .header("x-request-id", "trace-me-1")
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("response")
        .status();
    assert_eq!(status, 401);
    stack.shutdown().await;

    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request answered")
        .collect();
    assert_eq!(answered.len(), 1, "{text}");
    assert_eq!(answered[0]["span"]["name"], "request", "{text}");
    assert_eq!(answered[0]["span"]["request_id"], "trace-me-1", "{text}");
    assert_eq!(answered[0]["fields"]["status"], 401, "{text}");
    assert!(!text.contains("not-a-token"), "a token reached the logs");
}
