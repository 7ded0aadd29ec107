//! Operating firegate: `/metrics` after real requests, `/readyz` of a
//! running stack, CORS preflights and headers, and `traceparent` — through
//! the whole dev stack (issuer, pipeline, example policies, emulator).

use crate::support;

use firegate::dev::{DevOptions, Stack, samples};

use support::dev::{self, DOCS};
use support::{upstream, within};

async fn start(extra_config: Option<serde_json::Value>) -> Stack {
    start_with(extra_config, None).await
}

async fn start_with(extra_config: Option<serde_json::Value>, upstream: Option<String>) -> Stack {
    dev::start(DevOptions {
        upstream_override: upstream,
        extra_config,
        ..dev::options()
    })
    .await
}

/// Every sample's allowed and refused request, plus one without a token.
/// On a repeat the allowed create finds its document already there (409).
async fn traffic(stack: &Stack, repeat: bool) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for sample in samples() {
        let token = stack.token(&sample.identity).expect("token");
        for (request, expected) in [(&sample.allowed, 200), (&sample.refused, 403)] {
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
            let mut req = http
                .request(method, format!("{}{}", stack.url(), request.url_path()))
                .bearer_auth(&token);
            if let Some(body) = &request.body {
                req = req.json(body);
            }
            let status = within("the proxy", req.send())
                .await
                .expect("response")
                .status();
            let status = match status.as_u16() {
                409 if repeat => 200,
                other => other,
            };
            assert_eq!(status, expected, "{}", request.what);
        }
        tokens.push(token);
    }
    let anonymous = http
        .get(format!("{}{DOCS}/teams/x", stack.url()))
        .send()
        .await
        .expect("response");
    assert_eq!(anonymous.status(), 401);
    tokens
}

/// The label values of every sample line of `name` (`name{a="x",b="y"} 1`).
fn labels_of(text: &str, name: &str) -> Vec<Vec<(String, String)>> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once('}').map(|(labels, _)| labels))
        .map(|labels| {
            labels
                .split("\",")
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn metrics_after_real_requests_count_rpcs_steps_and_caches_with_bounded_labels() {
    let stack = start(None).await;
    let tokens = traffic(&stack, false).await;
    // A second round: verified tokens and decisions now come from the caches.
    traffic(&stack, true).await;
    stack.app.flush_audit().await;
    let text = reqwest::get(format!("http://{}/metrics", stack.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");

    let requests = labels_of(&text, "firegate_requests_total");
    let has = |rpc: &str, decision: &str, class: &str| {
        requests.iter().any(|l| {
            l.contains(&("rpc".into(), rpc.into()))
                && l.contains(&("decision".into(), decision.into()))
                && l.contains(&("status_class".into(), class.into()))
        })
    };
    assert!(has("get", "allow", "2xx"), "{requests:?}");
    assert!(has("get", "deny", "4xx"), "{requests:?}");
    assert!(
        has("none", "error", "4xx"),
        "the unauthenticated request: {requests:?}"
    );
    for step in [
        "authenticate",
        "classify",
        "decide",
        "token",
        "upstream_head",
    ] {
        let count = format!("firegate_step_duration_seconds_count{{step=\"{step}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&count));
        let n: f64 = line
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        assert!(n > 0.0, "{count} observed nothing: {line:?}");
    }
    for name in [
        "firegate_request_duration_seconds_bucket",
        "firegate_authn_jwks_key_lookups_total{result=\"hit\"}",
        "firegate_authn_requests_total{outcome=\"cached\"}",
        "firegate_authn_jwks_fetches_total",
        "firegate_policy_cache_lookups_total{result=\"hit\"}",
        "firegate_policy_reloads_total",
        "firegate_upstream_token_cache_lookups_total",
        "firegate_audit_records_written_total",
        "firegate_audit_records_dropped_total",
        "firegate_server_connections_accepted_total",
        "firegate_server_connections_open",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    // Bounded labels: no label value is a path, a subject, an email or a token.
    let mut secrets: Vec<String> = samples()
        .into_iter()
        .flat_map(|s| [s.identity.subject.clone(), s.identity.email.clone()])
        .filter(|s| !s.is_empty())
        .collect();
    secrets.extend(tokens);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = rest.split('}').next().unwrap_or_default();
        assert!(!labels.contains('/'), "a path-like label value: {line}");
        for secret in &secrets {
            assert!(
                !labels.contains(secret.as_str()),
                "{secret} in a label: {line}"
            );
        }
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn readyz_of_a_running_stack_lists_every_dependency_as_json() {
    let stack = start(None).await;
    let readyz = reqwest::get(format!("http://{}/readyz", stack.admin))
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200);
    let body: serde_json::Value = readyz.json().await.expect("JSON");
    assert_eq!(body["ready"], true, "{body}");
    for check in [
        "issuer_keys",
        "upstream_token",
        "policy_table",
        "audit_sink",
        "draining",
    ] {
        assert_eq!(body["checks"][check]["ready"], true, "{check}: {body}");
        assert_eq!(body["checks"][check]["required"], true, "{check}: {body}");
    }
    let healthz = reqwest::get(format!("http://{}/healthz", stack.admin))
        .await
        .expect("healthz");
    assert_eq!(healthz.text().await.expect("body"), "ok\n");
    stack.shutdown().await;
}

const RUN_QUERY: &str = "/v1/projects/demo/databases/(default)/documents:runQuery";

fn alice(stack: &Stack) -> String {
    stack.token(&dev::sample("ALICE_TOKEN")).expect("token")
}

/// What a browser sends before Firebase lite's `text/plain` POST, and the
/// POST itself, from an allowed and from a foreign origin.
#[tokio::test]
async fn cors_preflight_is_answered_before_authentication_for_allowed_origins_only() {
    let stack = start(None).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}{RUN_QUERY}", stack.url()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-goog-api-client",
        )
        .send()
    };
    // No token: a preflight never carries one.
    let allowed = preflight("http://localhost:5173").await.expect("preflight");
    assert_eq!(allowed.status(), 204);
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:5173");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allow_headers = h["access-control-allow-headers"].to_str().unwrap();
    for needed in ["authorization", "content-type", "x-goog-api-client"] {
        assert!(allow_headers.contains(needed), "{needed}: {allow_headers}");
    }
    assert!(h.contains_key("access-control-max-age"));

    let foreign = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(foreign.status(), 204);
    assert!(
        foreign
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        foreign.headers()
    );

    let query = r#"{"structuredQuery":{"from":[{"collectionId":"catalog"}]}}"#;
    let post = |origin: &'static str| {
        http.post(format!("{}{RUN_QUERY}", stack.url()))
            .bearer_auth(alice(&stack))
            .header("origin", origin)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(query)
            .send()
    };
    let answer = post("http://127.0.0.1:3000").await.expect("runQuery");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );
    assert_eq!(
        answer.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    let answer = post("https://evil.example").await.expect("runQuery");
    // The policy still answers; the browser just does not hand it to the page.
    assert_eq!(answer.status(), 200);
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
    stack.shutdown().await;
}

#[tokio::test]
async fn a_well_formed_traceparent_reaches_the_upstream_and_the_audit_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let recording = upstream().start().await;
    let stack = start_with(
        Some(serde_json::json!({"audit": {"sink": "file", "path": audit_path}})),
        Some(recording.url.clone()),
    )
    .await;
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let http = reqwest::Client::new();
    for traceparent in [good, "00-not-a-trace-01"] {
        let status = http
            .get(format!("{}{DOCS}/catalog/payments-api", stack.url()))
            .bearer_auth(alice(&stack))
            .header("traceparent", traceparent)
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(status, 200);
    }
    let forwarded = recording.requests();
    assert_eq!(forwarded.len(), 2);
    assert_eq!(
        forwarded[0]
            .headers
            .get("traceparent")
            .map(|v| v.to_str().unwrap()),
        Some(good)
    );
    assert!(
        forwarded[1].headers.get("traceparent").is_none(),
        "a malformed one is dropped"
    );
    stack.app.flush_audit().await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit_path)
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["traceparent"], good);
    assert_eq!(records[1]["traceparent"], serde_json::Value::Null);
    stack.shutdown().await;
}
