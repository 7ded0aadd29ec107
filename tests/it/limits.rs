//! The gate's hardening, end to end: body deadlines, per-principal fairness,
//! target limits, bodiless methods over HTTP/2, gRPC callers, Kubernetes
//! service links and pinned databases — each against a whole firegate.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::StatusCode;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use firegate::body::{Body, BoxError};
use support::{Gate, Step, TestProxy, config, upstream, within};

/// Kubernetes service links for a Service named `firegate`: not config.
const SERVICE_LINKS: &[(&str, &str)] = &[
    ("FIREGATE_SERVICE_HOST", "10.96.0.12"),
    ("FIREGATE_SERVICE_PORT", "8443"),
    ("FIREGATE_SERVICE_PORT_HTTPS", "8443"),
    ("FIREGATE_PORT", "tcp://10.96.0.12:8443"),
    ("FIREGATE_PORT_8443_TCP", "tcp://10.96.0.12:8443"),
    ("FIREGATE_PORT_8443_TCP_PROTO", "tcp"),
    ("FIREGATE_PORT_8443_TCP_PORT", "8443"),
    ("FIREGATE_PORT_8443_TCP_ADDR", "10.96.0.12"),
];

#[test]
fn the_binary_ignores_kubernetes_service_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("firegate.yaml");
    std::fs::write(&path, config::plain("http://127.0.0.1:9").yaml()).unwrap();
    let check = |extra: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["config", "check"])
            .arg(&path)
            .envs(SERVICE_LINKS.iter().copied())
            .envs(extra.iter().copied())
            .output()
            .unwrap()
    };
    let out = check(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A real section override is still read (and still checked).
    let out = check(&[("FIREGATE_SERVER__LIMITS__IDLE_TIMEOUT", "forever")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.limits.idle_timeout"), "{stderr}");
}

// ---- helpers ------------------------------------------------------------

/// An HTTP/2 (h2c, prior knowledge) connection to `addr`; the handle ends
/// when the connection does.
async fn h2(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Body>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

/// `first` as one DATA frame, then nothing, ever; no declared length.
fn stalled_body(first: &'static str) -> Body {
    let chunks = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(
        first.as_bytes(),
    )))])
    .chain(stream::pending());
    BodyExt::boxed(StreamBody::new(chunks))
}

/// A whole body sent as DATA frames without a declared length.
fn undeclared_body(text: &'static str) -> Body {
    let chunks = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(
        text.as_bytes(),
    )))]);
    BodyExt::boxed(StreamBody::new(chunks))
}

async fn json_of(
    response: http::Response<hyper::body::Incoming>,
) -> (http::response::Parts, Value) {
    let (parts, body) = response.into_parts();
    let bytes = within("body", body.collect()).await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts, json)
}

/// The audit record of the request with this id.
async fn record(proxy: &TestProxy, request_id: &str) -> Value {
    for _ in 0..100 {
        if let Some(r) = proxy
            .audit()
            .await
            .into_iter()
            .find(|r| r["request_id"] == request_id)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no audit record for {request_id}");
}

const DOCS: &str = "/v1/projects/p/databases/(default)/documents";

// ---- 1. body deadlines, fairness ---------------------------------------

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed_over_http1() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(
                json!({"server": {"limits": {"body_read_timeout": "300ms", "min_body_rate": 0}}}),
            )
            .yaml(),
    )
    .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST {DOCS}:commit HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nX-Request-Id: stall-h1\r\n\r\n{{",
        proxy.bearer()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server answers and then closes: read to the end.
    let mut answer = Vec::new();
    within("408 and close", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.contains("\"status\":\"DEADLINE_EXCEEDED\""),
        "{answer}"
    );
    let r = record(&proxy, "stall-h1").await;
    assert_eq!(r["reason"], "body_read_timeout");
    assert_eq!(r["status"], 408);
    assert_eq!(r["decision"], "error");
    assert!(up.requests().is_empty(), "forwarded: {:?}", up.requests());
}

#[tokio::test]
async fn a_trickling_body_is_answered_408_and_goaway_over_http2() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(json!({"server": {"limits": {
                "min_body_rate": 1000, "body_rate_window": "200ms", "body_read_timeout": "1m"}}}))
            .yaml(),
    )
    .await;
    let (mut sender, conn) = h2(proxy.addr).await;
    let request = http::Request::post(format!("http://x{DOCS}:commit"))
        .header("authorization", proxy.bearer())
        .header("content-type", "application/json")
        .header("x-request-id", "stall-h2")
        .body(stalled_body("{"))
        .unwrap();
    let response = within("408", sender.send_request(request)).await.unwrap();
    let (parts, json) = json_of(response).await;
    assert_eq!(parts.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(json["error"]["code"], 408);
    assert_eq!(json["error"]["status"], "DEADLINE_EXCEEDED");
    // GOAWAY: the connection ends although the client keeps it open.
    within("connection closed", conn).await.unwrap();
    let r = record(&proxy, "stall-h2").await;
    assert_eq!(r["reason"], "body_too_slow");
    assert_eq!(r["http_version"], "HTTP/2");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn one_principal_cannot_hold_more_than_its_in_flight_cap() {
    let gate = Gate::new();
    let up = upstream()
        .steps(vec![
            Step::chunk("{"),
            Step::Wait(gate.clone()),
            Step::chunk("}"),
        ])
        .start()
        .await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(json!({"server": {"limits": {"max_in_flight_per_principal": 2}}}))
            .yaml(),
    )
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |bearer: String, id: &str| {
        client
            .get(proxy.http(&format!("{DOCS}/a/b")))
            .header("authorization", bearer)
            .header("x-request-id", id)
            .send()
    };
    // Two responses held open upstream: both of alice's slots taken.
    let first = within("first", get(proxy.bearer(), "held-1"))
        .await
        .unwrap();
    let second = within("second", get(proxy.bearer(), "held-2"))
        .await
        .unwrap();
    let third = within("third", get(proxy.bearer(), "busy")).await.unwrap();
    // 503 UNAVAILABLE, the status the official clients retry.
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
    // Someone else is not affected.
    let other = within("other", get(proxy.bearer_for("bob"), "bob"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    gate.open();
    for response in [first, second, other] {
        within("held body", response.bytes()).await.unwrap();
    }
    let again = within("again", get(proxy.bearer(), "again")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        record(&proxy, "busy").await["reason"],
        "principal_in_flight_limit"
    );
}

// ---- 2. targets ----------------------------------------------------------

fn batch_get(n: usize) -> Value {
    let documents: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}/logs/d{i}",
                support::proxy::DATABASE.to_owned() + "/documents"
            )
        })
        .collect();
    json!({ "documents": documents })
}

#[tokio::test]
async fn too_many_targets_are_refused_and_long_audit_lists_are_summarized() {
    let up = upstream().body("[]").start().await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(json!({
                "server": {"limits": {"max_targets": 5}},
                "audit": {"max_listed_targets": 3},
            }))
            .yaml(),
    )
    .await;
    let client = proxy.client();
    let post = |n: usize, id: &str| {
        client
            .post(proxy.http(&format!("{DOCS}:batchGet")))
            .header("x-request-id", id)
            .json(&batch_get(n))
            .send()
    };
    let refused = within("refused", post(6, "six")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("more than 5"), "{message}");
    assert!(up.requests().is_empty(), "forwarded");

    let allowed = within("allowed", post(5, "five")).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    allowed.bytes().await.unwrap();

    let six = record(&proxy, "six").await;
    assert_eq!(six["reason"], "too_many_targets");
    assert_eq!(
        six["targets"],
        json!([]),
        "undecided targets are not listed"
    );
    assert_eq!(six["targets_summary"]["count"], 6);
    assert_eq!(six["targets_summary"]["by_access"]["get"]["refused"], 6);
    let five = record(&proxy, "five").await;
    assert_eq!(five["decision"], "allow");
    assert_eq!(five["targets"], json!([]));
    assert_eq!(
        five["targets_summary"]["by_access"]["get"],
        json!({"allowed": 5, "refused": 0})
    );
    assert_eq!(
        five["targets_summary"]["digest"].as_str().map(str::len),
        Some(64)
    );
}

// ---- 3. bodies on bodiless methods over HTTP/2 -------------------------

#[tokio::test]
async fn bodies_on_bodiless_methods_never_reach_upstream_over_http2() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let (mut sender, _conn) = h2(proxy.addr).await;
    for (method, path) in [
        ("DELETE", format!("{DOCS}/a/b")),
        ("GET", format!("{DOCS}/a/b")),
        ("GET", format!("{DOCS}/a")),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://x{path}"))
            .header("authorization", proxy.bearer())
            .body(undeclared_body("{\"smuggled\":true}"))
            .unwrap();
        let response = within("answer", sender.send_request(request))
            .await
            .unwrap();
        let (parts, json) = json_of(response).await;
        assert_eq!(
            parts.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {json}"
        );
        assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
    }
    assert!(up.requests().is_empty(), "forwarded: {:?}", up.requests());

    // Without a body (END_STREAM on the headers) the same requests pass, bodiless.
    let request = http::Request::delete(format!("http://x{DOCS}/a/b"))
        .header("authorization", proxy.bearer())
        .header("x-request-id", "clean-delete")
        .body(BodyExt::boxed(
            Empty::<Bytes>::new().map_err(|never| match never {}),
        ))
        .unwrap();
    let response = within("answer", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = up.single();
    assert_eq!(seen.method, http::Method::DELETE);
    assert!(seen.body.is_empty());
    let audit = proxy.audit().await;
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|r| r["reason"] == "body_not_allowed")
        .collect();
    assert_eq!(refused.len(), 3, "{audit:?}");
}

// ---- 5. gRPC callers -----------------------------------------------------

#[tokio::test]
async fn grpc_web_callers_get_a_final_trailers_only_unimplemented_at_once() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let (mut sender, _conn) = h2(proxy.addr).await;
    // gRPC-Web is not served (gRPC over HTTP/2 is, see the `grpc` module). No
    // token, and a body that never ends: neither is waited for.
    let request = http::Request::post("http://x/google.firestore.v1.Firestore/Listen")
        .header("content-type", "application/grpc-web+proto")
        .header("te", "trailers")
        .header("x-request-id", "grpc-listen")
        .body(stalled_body("\0\0\0\0\x05hello"))
        .unwrap();
    let response = within("gRPC answer", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "12");
    assert!(response.headers().contains_key("grpc-message"));
    let body = within("empty body", response.into_body().collect())
        .await
        .unwrap();
    assert!(body.trailers().is_none() && body.to_bytes().is_empty());
    let r = record(&proxy, "grpc-listen").await;
    assert_eq!(r["reason"], "grpc_not_served");
    assert_eq!(r["decision"], "error");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn an_unknown_grpc_method_is_unimplemented_at_once() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let (mut sender, _conn) = h2(proxy.addr).await;
    // No token, and a request stream the client never ends: the method is
    // judged first, so neither is waited for. `Write` is a real method
    // firegate does not serve: the same answer, audited apart.
    for (method, id, reason) in [
        ("Nope", "grpc-nope", "grpc_unknown_method"),
        ("Write", "grpc-write", "grpc_method_not_served"),
    ] {
        let request =
            http::Request::post(format!("http://x/google.firestore.v1.Firestore/{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("x-request-id", id)
                .body(stalled_body("\0\0\0\0\x05hello"))
                .unwrap();
        let response = within("gRPC answer", sender.send_request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "12", "{method}");
        let body = within("empty body", response.into_body().collect())
            .await
            .unwrap();
        assert!(body.trailers().is_none() && body.to_bytes().is_empty());
        let r = record(&proxy, id).await;
        assert_eq!(r["reason"], reason);
        assert_eq!(r["decision"], "error");
    }
    assert!(up.requests().is_empty());
}

// ---- 7. pinned databases -------------------------------------------------

#[tokio::test]
async fn a_database_not_served_is_refused_before_policy() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let client = proxy.client();
    for (path, id) in [
        (
            "/v1/projects/other/databases/(default)/documents/a/b",
            "other-project",
        ),
        (
            "/v1/projects/p/databases/logs/documents/a/b",
            "other-database",
        ),
    ] {
        let response = client
            .get(proxy.http(path))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
        let r = record(&proxy, id).await;
        assert_eq!(r["reason"], "database_not_served");
        assert_eq!(r["targets"], json!([]), "the policy was never asked");
    }
    assert!(up.requests().is_empty());
    let served = client
        .get(proxy.http(&format!("{DOCS}/a/b")))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

#[test]
fn config_check_explains_a_missing_or_invalid_database_pin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("firegate.yaml");
    for (databases, expected) in [
        (json!(null), "upstream.databases: required"),
        (json!(["projects/p"]), "upstream.databases[0]"),
    ] {
        let yaml = config::plain("http://127.0.0.1:9")
            .merge(json!({"upstream": {"databases": databases}}))
            .yaml();
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

// ---- pooled upstream connections ----------------------------------------

/// Established TCP connections to `port` on this machine (Linux).
fn connections_to(port: u16) -> usize {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[3] == "01"
                && fields[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

#[tokio::test]
async fn a_burst_leaves_at_most_max_idle_connections_open_upstream() {
    // A slow answer makes eight requests need eight upstream connections.
    let up = upstream()
        .head_delay(Duration::from_millis(300))
        .start()
        .await;
    let yaml = config::plain(&up.url)
        .merge(json!({"upstream": {"max_idle_connections": 2}}))
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    let client = reqwest::Client::new();
    let burst = (0..8).map(|i| {
        client
            .get(format!("http://{}{DOCS}/a/b{i}", proxy.addr))
            .header("authorization", proxy.bearer())
            .send()
    });
    let answers = within("the burst", futures_util::future::join_all(burst)).await;
    for answer in answers {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(up.requests().len(), 8);
    // Back in the pool, all but two are closed (hyper closes the extra
    // ones as they come back; give the closes a moment to land).
    let mut open = connections_to(up.addr.port());
    for _ in 0..50 {
        if open <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        open = connections_to(up.addr.port());
    }
    assert!(open <= 2, "{open} upstream connections left open");
}
