//! The server and the upstream client, the spine of every request: TLS and
//! plain listeners, streaming through the upstream client, header hygiene,
//! limits, drain, admin routes, the `firegate` binary's signal handling, and
//! the configs under deploy/.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;
use serde::Deserialize as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use firegate::app::Config;
use firegate::app::{ReloadHub, Reloadable};
use firegate::server::{self, Handler, Server, Shutdown, admin};
use firegate::upstream::{AccessToken, Outbound, Upstream};

use serde_json::{Value, json};
use support::config;
use support::proxy::{DATABASE, UPSTREAM_TOKEN};
use support::*;

/// Answers `"<http version> <tls version|plain>"`.
fn echo_handler() -> Handler {
    server::handler(|req, conn| async move {
        let text = format!("{:?} {}", req.version(), conn.tls.unwrap_or("plain"));
        http::Response::new(firegate::body::full(text))
    })
}

async fn serve_echo(yaml: &str) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let config = Config::from_yaml(yaml, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut registry = firegate::metrics::registry();
    let server = Server::bind(&config.server, &mut registry)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    let done = server.serve(echo_handler(), shutdown.signal());
    (addr, shutdown, done)
}

fn error_status(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn tls_round_trip_over_http1_and_http2() {
    let pki = TestPki::new();
    let (addr, shutdown, done) = serve_echo(&config::tls(&pki, "http://127.0.0.1:9").yaml()).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());

    let h1 = pki.client().http1_only().build().unwrap();
    let response = within("h1 response", h1.get(&url).send()).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.text().await.unwrap(), "HTTP/1.1 TLSv1.3");

    let h2 = pki.client().build().unwrap();
    let response = within("h2 response", h2.get(&url).send()).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2, "ALPN must pick h2");
    assert_eq!(response.text().await.unwrap(), "HTTP/2.0 TLSv1.3");

    let tls12 = pki
        .client()
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let response = within("TLS 1.2 response", tls12.get(&url).send())
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "HTTP/2.0 TLSv1.2");

    // No plaintext fallback on the TLS port.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = plain
        .get(format!("http://127.0.0.1:{}/", addr.port()))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "plain HTTP must not be served on the TLS port"
    );

    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn plain_http_config_round_trip() {
    let (addr, shutdown, done) = serve_echo(&config::plain("http://127.0.0.1:9").yaml()).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = within(
        "plain response",
        client
            .get(format!("http://127.0.0.1:{}/", addr.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.text().await.unwrap(), "HTTP/1.1 plain");
    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn certificate_reload_swaps_the_served_certificate() {
    let old = TestPki::new();
    let new = TestPki::new();
    let files = firegate::server::config::RawTls {
        cert: old.dir.path().join("live-cert.pem"),
        key: old.dir.path().join("live-key.pem"),
    };
    std::fs::copy(&old.cert_path, &files.cert).unwrap();
    std::fs::copy(&old.key_path, &files.key).unwrap();
    let store = server::CertStore::load(&files).unwrap();
    let config =
        Config::from_yaml(&config::plain("http://127.0.0.1:9").yaml(), Vec::new()).unwrap();
    let server = Server::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        Some(store.acceptor().unwrap()),
        config.server.limits.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    let url = format!("https://127.0.0.1:{}/", server.local_addr().port());
    let shutdown = Shutdown::new();
    let done = server.serve(echo_handler(), shutdown.signal());

    let trusts_new = new.client().pool_max_idle_per_host(0).build().unwrap();
    assert!(
        trusts_new.get(&url).send().await.is_err(),
        "old cert still served"
    );
    std::fs::copy(&new.cert_path, &files.cert).unwrap();
    std::fs::copy(&new.key_path, &files.key).unwrap();
    store.reload().unwrap();
    let response = within("after reload", trusts_new.get(&url).send())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Changing the files is enough once the reload hub watches them.
    let _hub = ReloadHub::start(vec![Reloadable::certificate(Arc::clone(&store))]).unwrap();
    let third = TestPki::new();
    let trusts_third = third.client().pool_max_idle_per_host(0).build().unwrap();
    std::fs::copy(&third.key_path, &files.key).unwrap();
    std::fs::copy(&third.cert_path, &files.cert).unwrap();
    within("the watcher to reload", async {
        while trusts_third.get(&url).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // A broken file keeps the working certificate.
    std::fs::write(&files.key, "not a key").unwrap();
    assert!(store.reload().is_err());
    assert!(trusts_third.get(&url).send().await.is_ok());

    shutdown.trigger();
    within("drain", done).await.unwrap();
}

fn streaming_upstream_steps(first_sent: &Gate, release: &Gate) -> Vec<Step> {
    vec![
        Step::chunk("[{\"document\":1}"),
        Step::Signal(first_sent.clone()),
        Step::Wait(release.clone()),
        Step::chunk(",{\"document\":2}]"),
    ]
}

/// A proxy in front of an upstream that streams `[{"document":1}`, waits
/// for `release`, then sends the rest; a `:runQuery` through it has already
/// delivered its first chunk when this returns.
struct GatedStream {
    first_sent: Gate,
    release: Gate,
    _up: support::upstream::RecordingUpstream,
    proxy: TestProxy,
    response: reqwest::Response,
}

async fn gated_stream(server: Value) -> GatedStream {
    let first_sent = Gate::new();
    let release = Gate::new();
    let up = upstream()
        .steps(streaming_upstream_steps(&first_sent, &release))
        .start()
        .await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(json!({"server": server}))
            .yaml(),
    )
    .await;
    let mut response = within(
        "response head",
        proxy
            .client()
            .post(proxy.http("/v1/projects/p/databases/(default)/documents:runQuery"))
            .header("content-type", "application/json")
            .body(r#"{"structuredQuery":{"from":[{"collectionId":"a"}]}}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = within("first chunk", response.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "[{\"document\":1}");
    GatedStream {
        first_sent,
        release,
        _up: up,
        proxy,
        response,
    }
}

async fn rest_of(response: &mut reqwest::Response) -> Vec<u8> {
    let mut rest = Vec::new();
    while let Some(chunk) = within("rest", response.chunk()).await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    rest
}

/// A plain config with these `server.limits`.
fn limits_config(limits: Value) -> String {
    config::plain("http://127.0.0.1:9")
        .merge(json!({"server": {"limits": limits}}))
        .yaml()
}

fn upstream_config(url: &str) -> firegate::upstream::UpstreamSettings {
    Config::from_yaml(&config::plain(url).yaml(), Vec::new())
        .unwrap()
        .upstream
}

#[tokio::test]
async fn upstream_forward_streams_the_first_chunk_before_the_last_is_sent() {
    let first_sent = Gate::new();
    let release = Gate::new();
    let up = upstream()
        .steps(streaming_upstream_steps(&first_sent, &release))
        .start()
        .await;
    let mut registry = firegate::metrics::registry();
    let client = Upstream::new(&upstream_config(&up.url), &mut registry).unwrap();
    let token = AccessToken {
        authorization: http::HeaderValue::from_static(UPSTREAM_TOKEN),
        account: "sa".into(),
    };
    let headers = http::HeaderMap::new();
    let response = within(
        "response head",
        client.forward(Outbound {
            method: Method::POST,
            path_and_query: "/v1/projects/p/databases/(default)/documents:runQuery",
            client_headers: &headers,
            client_ip: "127.0.0.1".parse().unwrap(),
            trusted_proxies: &[],
            client_proto: "https",
            request_id: "r1",
            database: DATABASE,
            token: &token,
            body: firegate::body::full("{\"structuredQuery\":{}}"),
        }),
    )
    .await
    .unwrap();
    let mut body = response.into_body();
    let first = within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "[{\"document\":1}");
    assert!(
        !release.is_open(),
        "the rest must still be held by the upstream"
    );
    release.open();
    let rest = within("rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, ",{\"document\":2}]");
    assert_eq!(up.single().body, "{\"structuredQuery\":{}}");
}

#[tokio::test]
async fn proxy_streams_the_first_chunk_before_the_last_is_sent() {
    let mut stream = gated_stream(json!({})).await;
    assert!(stream.first_sent.is_open());
    assert!(!stream.release.is_open());
    stream.release.open();
    assert_eq!(rest_of(&mut stream.response).await, b",{\"document\":2}]");
}

#[tokio::test]
async fn upstream_over_tls_speaks_http2_and_names_itself_as_host() {
    let pki = TestPki::new();
    let up = upstream().body("{\"ok\":true}").tls(&pki).start().await;
    // Emulator credentials never travel over TLS: a metadata server's token does.
    let metadata = support::google::FakeMetadata::start().await;
    let yaml = config::plain(&up.url)
        .merge(json!({"upstream": {
            "ca_file": pki.ca_path,
            "credentials": {"source": "metadata", "metadata_endpoint": metadata.server.url()},
        }}))
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    let response = within(
        "response",
        proxy
            .client()
            .get(proxy.http("/v1/projects/p/databases/(default)/documents/a/b"))
            .header("host", "firegate.example")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
    let seen = up.single();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(
        seen.uri.authority().map(|a| a.as_str().to_owned()),
        Some(format!("127.0.0.1:{}", up.addr.port()))
    );
    assert!(
        seen.headers
            .get("host")
            .is_none_or(|h| h != "firegate.example")
    );
}

#[tokio::test]
async fn credentials_and_hop_by_hop_headers_never_reach_the_upstream() {
    let up = upstream()
        .header("x-hop", "upstream-private")
        .header("connection", "x-hop")
        .start()
        .await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let client_token = proxy.bearer();
    let response = within(
        "response",
        client
            .get(proxy.http("/v1/projects/p/databases/(default)/documents/a/b"))
            .header("authorization", &client_token)
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("cookie", "session=secret")
            .header("x-goog-api-key", "client-key")
            .header("x-goog-user-project", "someone-else")
            .header("x-goog-request-params", "database=projects%2Fevil")
            .header("connection", "x-named-hop")
            .header("x-named-hop", "1")
            .header("te", "trailers")
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-forwarded-proto", "https")
            .header("accept", "application/json")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("x-hop").is_none(),
        "response hop-by-hop leaked"
    );

    let seen = up.single();
    let h = &seen.headers;
    assert_eq!(
        h.get_all("authorization").iter().collect::<Vec<_>>(),
        [UPSTREAM_TOKEN],
        "the client's own token must be replaced"
    );
    for name in [
        "proxy-authorization",
        "cookie",
        "x-goog-api-key",
        "x-goog-user-project",
        "x-named-hop",
        "te",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream");
    }
    assert_eq!(h["host"], format!("127.0.0.1:{}", up.addr.port()));
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "untrusted peer's XFF must be replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["x-goog-request-params"],
        "database=projects%2Fp%2Fdatabases%2F%28default%29"
    );
    assert_eq!(h["accept"], "application/json");
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_is_extended() {
    let up = upstream().start().await;
    let proxy = TestProxy::start(
        &config::plain(&up.url)
            .merge(json!({"server": {"trusted_proxies": ["127.0.0.1/32"]}}))
            .yaml(),
    )
    .await;
    let client = proxy.client();
    let response = within(
        "response",
        client
            .get(proxy.http("/v1/projects/p/databases/(default)/documents/a/b"))
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-forwarded-proto", "https")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = up.single();
    assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

/// Keep connecting until the listener is gone (the accept loop saw the drain).
async fn wait_until_refused(addr: std::net::SocketAddr) {
    within("listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn drain_lets_a_slow_stream_finish_and_refuses_new_connections() {
    let mut stream = gated_stream(json!({})).await;
    let done = stream.proxy.shutdown();
    wait_until_refused(stream.proxy.addr).await;
    assert!(!done.is_finished(), "drain must wait for the open stream");

    stream.release.open();
    assert_eq!(rest_of(&mut stream.response).await, b",{\"document\":2}]");
    within("drain to finish", done).await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_timeout_closes_a_stuck_stream() {
    // `release` is never opened: the stream is stuck.
    let mut stream = gated_stream(json!({"limits": {"drain_timeout": "200ms"}})).await;
    let done = stream.proxy.shutdown();
    within("drain to give up", done).await.unwrap().unwrap();
    let cut = within("body end", stream.response.chunk()).await;
    assert!(
        cut.is_err(),
        "the stuck stream must end as an error, got {cut:?}"
    );
}

async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slowloris_is_cut_off_after_header_read_timeout() {
    let (addr, shutdown, done) = serve_echo(&limits_config(
        json!({"header_read_timeout": "300ms", "idle_timeout": "60s"}),
    ))
    .await;
    // Half a request head, then silence.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = within("slow header to be cut off", read_until_closed(&mut slow)).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "unexpected answer {:?}",
        String::from_utf8_lossy(&answer)
    );
    // A keep-alive connection whose second request head never finishes.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = within("first response", kept.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    within(
        "slow second head to be cut off",
        read_until_closed(&mut kept),
    )
    .await;

    // Not a byte: stuck before HTTP version detection.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    within(
        "silent connection to be closed",
        read_until_closed(&mut silent),
    )
    .await;

    // Others are still served.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ok = client
        .get(format!("http://127.0.0.1:{}/", addr.port()))
        .send()
        .await;
    assert_eq!(ok.unwrap().status(), StatusCode::OK);
    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_after_idle_timeout() {
    // The header timeout is long, so only the idle watchdog can close these.
    let (addr, shutdown, done) = serve_echo(&limits_config(
        json!({"header_read_timeout": "60s", "idle_timeout": "300ms"}),
    ))
    .await;
    let mut h1 = TcpStream::connect(addr).await.unwrap();
    h1.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = within("h1 idle close", read_until_closed(&mut h1)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));

    // HTTP/2 (prior knowledge): the connection future ends after GOAWAY.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get("http://127.0.0.1/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = within("h2 response", sender.send_request(request))
        .await
        .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "HTTP/2.0 plain");
    within("h2 idle close", conn).await.unwrap().unwrap();

    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn stalled_tls_handshake_is_cut_off() {
    let pki = TestPki::new();
    let (addr, shutdown, done) = serve_echo(
        &config::tls(&pki, "http://127.0.0.1:9")
            .merge(json!({"server": {"limits": {"header_read_timeout": "300ms"}}}))
            .yaml(),
    )
    .await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    within(
        "stalled handshake to be closed",
        read_until_closed(&mut stalled),
    )
    .await;
    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let (addr, shutdown, done) =
        serve_echo(&limits_config(json!({"max_header_bytes": 8192}))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(16 * 1024);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = within("oversized head answer", read_until_closed(&mut stream)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "got {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(64)])
    );
    shutdown.trigger();
    within("drain", done).await.unwrap();
}

#[tokio::test]
async fn connections_over_max_connections_are_refused() {
    let yaml = limits_config(json!({"max_connections": 1}));
    let config = Config::from_yaml(&yaml, Vec::new()).unwrap();
    let mut registry = firegate::metrics::registry();
    let server = Server::bind(&config.server, &mut registry).await.unwrap();
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    let done = server.serve(echo_handler(), shutdown.signal());

    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = within("first response", first.read(&mut buf))
        .await
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The kernel completes the TCP handshake; firegate closes at once.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let answer = within("second to be closed", read_until_closed(&mut second)).await;
    assert!(answer.is_empty(), "over the limit must get no answer");
    let text = firegate::metrics::render(&registry);
    assert!(
        text.contains("firegate_server_connections_refused_total 1"),
        "{text}"
    );

    drop(first);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    within("a slot to free up", async {
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{}/", addr.port()))
                .send()
                .await
            {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    shutdown.trigger();
    within("drain", done).await.unwrap();
}

async fn proxy_error(upstream_url: &str, upstream: Value) -> (StatusCode, String) {
    let yaml = config::plain(upstream_url)
        .merge(json!({"upstream": upstream}))
        .yaml();
    let proxy = TestProxy::start(&yaml).await;
    let response = within(
        "error response",
        proxy
            .client()
            .get(proxy.http("/v1/projects/p/databases/(default)/documents/a/b"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn refused_upstream_connection_is_503_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (status, body) = proxy_error(&format!("http://127.0.0.1:{port}"), json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_status(&body), "UNAVAILABLE");
}

#[tokio::test]
async fn upstream_connect_timeout_is_504_deadline_exceeded() {
    // A listener that never accepts, with its backlog filled: further SYNs
    // are dropped, so connecting hangs until the connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filler connect failed: {e}"),
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "backlog never filled");
    }
    let (status, body) = proxy_error(
        &format!("http://{addr}"),
        json!({"connect_timeout": "300ms"}),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_status(&body), "DEADLINE_EXCEEDED");
    drop(listener);
}

#[tokio::test]
async fn slow_upstream_head_is_504_deadline_exceeded() {
    let up = upstream().head_delay(Duration::from_secs(30)).start().await;
    let (status, body) = proxy_error(&up.url, json!({"response_header_timeout": "300ms"})).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_status(&body), "DEADLINE_EXCEEDED");
}

#[tokio::test]
async fn garbage_from_upstream_is_502_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"SMTP READY\r\n\r\n").await;
        }
    });
    let (status, body) = proxy_error(&format!("http://{addr}"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_status(&body), "UNAVAILABLE");
}

#[tokio::test]
async fn admin_routes_answer_health_readiness_and_metrics() {
    let config =
        Config::from_yaml(&config::plain("http://127.0.0.1:9").yaml(), Vec::new()).unwrap();
    let mut registry = firegate::metrics::registry();
    let main = Server::bind(&config.server, &mut registry).await.unwrap();
    let admin_server = Server::bind_admin(&config.server).await.unwrap();
    let base = format!("http://127.0.0.1:{}", admin_server.local_addr().port());
    let ready = Arc::new(AtomicBool::new(false));
    let readiness: admin::Readiness = {
        let ready = Arc::clone(&ready);
        Arc::new(move || admin::Ready {
            checks: vec![
                admin::Check::required("issuer_keys", None),
                admin::Check::required(
                    "policy_table",
                    (!ready.load(Ordering::Relaxed)).then(|| "not loaded".to_owned()),
                ),
            ],
        })
    };
    let shutdown = Shutdown::new();
    let main_done = main.serve(echo_handler(), shutdown.signal());
    let admin_done = admin_server.serve(
        admin::handler(Arc::new(registry), readiness),
        shutdown.signal(),
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = within(&url.clone(), client.get(url).send()).await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ready": false, "checks": {
            "issuer_keys": {"ready": true, "required": true},
            "policy_table": {"ready": false, "required": true, "detail": "not loaded"},
        }})
    );
    ready.store(true, Ordering::Relaxed);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["policy_table"]["ready"], true, "{body}");
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("firegate_server_connections_open"),
        "{metrics}"
    );
    assert_eq!(get("/nope").await.0, StatusCode::NOT_FOUND);
    shutdown.trigger();
    within("main drain", main_done).await.unwrap();
    within("admin drain", admin_done).await.unwrap();
}

/// The real binary with a complete config (test issuer, an allow-all
/// policy, emulator credentials in front of a slow upstream): SIGTERM in the
/// middle of a streamed response lets it finish, then the process exits 0.
#[tokio::test]
async fn binary_finishes_a_stream_in_flight_on_sigterm_then_exits_zero() {
    binary_streams_then_drains(None, "multi-threaded").await;
}

/// The same with one worker thread, which runs tokio's single-threaded
/// scheduler: every task (connections, upstream, the stream, the drain)
/// shares the thread that drives the I/O.
#[tokio::test]
async fn binary_on_one_worker_streams_and_drains_the_same() {
    binary_streams_then_drains(Some(1), "single-threaded").await;
}

async fn binary_streams_then_drains(worker_threads: Option<u64>, scheduler: &str) {
    use tokio::io::AsyncBufReadExt;
    let issuer = support::issuer::TestIssuer::builder().start().await;
    let first_sent = Gate::new();
    let release = Gate::new();
    let upstream = upstream()
        .steps(vec![
            Step::chunk("[{\"document\":{}}"),
            Step::Signal(first_sent.clone()),
            Step::Wait(release.clone()),
            Step::chunk(",{\"readTime\":\"2026-01-01T00:00:00Z\"}]"),
        ])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("all.yaml"),
        "rules:\n  - id: everything\n    match: /{rest=**}\n    allow: [read, write]\n    who: {authenticated: true}\n",
    )
    .unwrap();
    let config = dir.path().join("firegate.yaml");
    std::fs::write(
        &config,
        config::plain(&upstream.url)
            .merge(json!({
                "upstream": {"credentials": {"source": "emulator"}},
                "authn": {"issuers": [
                    config::oidc_issuer("test", &issuer.issuer, support::issuer::AUDIENCE).value(),
                ]},
                "policy": {"dir": policies},
                "server": {"worker_threads": worker_threads},
            }))
            .yaml(),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warned_plain = false;
    let mut log = Vec::new();
    let (listen, admin_addr) = within("the listening log line", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &v["fields"];
            warned_plain |= v["level"] == "WARN"
                && fields["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("plain_http"));
            if let (Some(l), Some(a)) = (fields["listen"].as_str(), fields["admin"].as_str()) {
                assert_eq!(fields["scheduler"], scheduler, "{line}");
                if let Some(workers) = worker_threads {
                    assert_eq!(fields["workers"], workers, "{line}");
                }
                return (l.to_owned(), a.to_owned());
            }
        }
        panic!("firegate exited before listening: {log:#?}");
    })
    .await;
    assert!(warned_plain, "plain_http must be logged as a warning");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    within("readyz", async {
        loop {
            let ready = client
                .get(format!("http://{admin_addr}/readyz"))
                .send()
                .await
                .unwrap();
            if ready.status() == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let unauthenticated = client
        .get(format!("http://{listen}/v1/{DATABASE}/documents/a/b"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_status(&unauthenticated.text().await.unwrap()),
        "UNAUTHENTICATED"
    );

    let mut streaming = client
        .post(format!("http://{listen}/v1/{DATABASE}/documents:runQuery"))
        .bearer_auth(issuer.token().sign())
        .json(&serde_json::json!({"structuredQuery": {"from": [{"collectionId": "a"}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(streaming.status(), StatusCode::OK);
    within("the upstream's first chunk", first_sent.wait()).await;
    let first = within("the first chunk", streaming.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"[{\"document\":{}}");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The process drains rather than exits while the stream is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().unwrap().is_none(), "exited mid-stream");
    release.open();
    let mut rest = Vec::new();
    while let Some(chunk) = within("the rest", streaming.chunk()).await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b",{\"readTime\":\"2026-01-01T00:00:00Z\"}]");
    let status = within("exit", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn config_check_reports_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        config::yaml(&json!({
            "server": {"listen": "nowhere", "plain_http": true, "limits": {"idle_timeout": "forever"}},
            "upstream": {"url": "ftp://x"},
        })),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firegate"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "server.limits.idle_timeout",
        "upstream.url",
    ] {
        assert!(stderr.contains(key), "{key} missing from {stderr}");
    }
}

/// The shipped samples load (with test certificates in place of the real ones).
#[test]
fn deploy_samples_are_valid_configs() {
    let pki = TestPki::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let env = || {
        vec![
            (
                "FIREGATE_SERVER__TLS__CERT".to_owned(),
                pki.cert_path.display().to_string(),
            ),
            (
                "FIREGATE_SERVER__TLS__KEY".to_owned(),
                pki.key_path.display().to_string(),
            ),
        ]
    };
    let sample = Config::load(&root.join("firegate.yaml"), env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sample.server.admin_listen.to_string(), "127.0.0.1:9090");

    let keys = tempfile::tempdir().expect("keys");
    let kubernetes = kubernetes_config(&pki, &secret_keys(keys.path(), |_| random_key()))
        .unwrap_or_else(|e| panic!("{e}"));
    // The probes reach the admin port from outside the pod.
    assert_eq!(kubernetes.server.admin_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(kubernetes.authn.issuers.len(), 2);

    // Cloud Run terminates TLS itself; the key comes from Secret Manager.
    let transaction_key = keys.path().join("cloud-run-transaction.key");
    std::fs::write(&transaction_key, random_key()).expect("write key");
    let key_override = vec![(
        "FIREGATE_TRANSACTIONS__KEY_FILE".to_owned(),
        transaction_key.display().to_string(),
    )];
    let cloud_run = Config::load(&root.join("cloudrun/firegate.yaml"), key_override)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cloud_run.server.tls.is_none());
    assert_eq!(cloud_run.server.listen.to_string(), "0.0.0.0:8080");
}

/// The policies shipped in the `firegate-policies` ConfigMap compile, as the
/// pod would load them from the mounted directory.
#[tokio::test]
async fn kubernetes_policies_compile() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let text = std::fs::read_to_string(root.join("configmap.yaml")).unwrap();
    let policies = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml_ng::Value::deserialize(doc).ok())
        .find(|doc| doc["metadata"]["name"] == "firegate-policies")
        .expect("ConfigMap firegate-policies");
    let dir = tempfile::tempdir().expect("policy dir");
    let files = policies["data"].as_mapping().expect("policy files");
    assert!(!files.is_empty());
    for (name, body) in files {
        let (name, body) = (name.as_str().unwrap(), body.as_str().unwrap());
        std::fs::write(dir.path().join(name), body).expect("write policy");
    }
    let mut registry = firegate::metrics::registry();
    firegate::policy::PolicyEngine::from_dir(dir.path(), &mut registry)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The Secret's placeholders are refused: a firegate deployed without real
/// keys does not start, rather than run with keys anyone can read.
#[test]
fn kubernetes_secret_placeholders_are_refused() {
    let keys = tempfile::tempdir().expect("keys");
    let placeholders = secret_keys(keys.path(), |placeholder| placeholder.to_owned());
    let errors =
        kubernetes_config(&TestPki::new(), &placeholders).expect_err("placeholder keys refused");
    assert!(errors.contains("transactions.key_file"), "{errors}");
    assert!(errors.contains("audit.hmac_key_file"), "{errors}");
}

/// The config inside deploy/kubernetes/configmap.yaml, with the TLS pair
/// and the key files (mounted from Secrets in a cluster) at `keys`.
fn kubernetes_config(pki: &TestPki, keys: &[(String, String)]) -> Result<Config, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let manifests = std::fs::read_to_string(root.join("configmap.yaml")).unwrap();
    let embedded = serde_yaml_ng::Deserializer::from_str(&manifests)
        .filter_map(|doc| serde_yaml_ng::Value::deserialize(doc).ok())
        .find_map(|doc| doc["data"]["firegate.yaml"].as_str().map(str::to_owned))
        .expect("ConfigMap with firegate.yaml");
    let mut env = vec![
        (
            "FIREGATE_SERVER__TLS__CERT".to_owned(),
            pki.cert_path.display().to_string(),
        ),
        (
            "FIREGATE_SERVER__TLS__KEY".to_owned(),
            pki.key_path.display().to_string(),
        ),
    ];
    env.extend_from_slice(keys);
    Config::from_yaml(&embedded, env).map_err(|e| e.to_string())
}

/// Key files written from deploy/kubernetes/secret.yaml's `firegate-keys`
/// (each value passed through `value`), as overrides of the config's paths.
fn secret_keys(dir: &std::path::Path, value: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let text = std::fs::read_to_string(root.join("secret.yaml")).unwrap();
    let secret = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml_ng::Value::deserialize(doc).ok())
        .find(|doc| doc["metadata"]["name"] == "firegate-keys")
        .expect("Secret firegate-keys");
    [
        ("transaction.key", "FIREGATE_TRANSACTIONS__KEY_FILE"),
        ("audit.key", "FIREGATE_AUDIT__HMAC_KEY_FILE"),
    ]
    .into_iter()
    .map(|(name, var)| {
        let placeholder = secret["stringData"][name].as_str().expect("placeholder");
        let path = dir.join(name);
        std::fs::write(&path, value(placeholder)).expect("write key");
        (var.to_owned(), path.display().to_string())
    })
    .collect()
}

fn random_key() -> String {
    use rand::RngCore as _;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Deployment's grace period covers its preStop pause plus the drain
/// the ConfigMap's config asks for, so Kubernetes never kills a drain.
#[test]
fn kubernetes_grace_period_covers_the_drain() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let read = |name: &str| -> serde_yaml_ng::Value {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let deployment = read("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let keys = tempfile::tempdir().expect("keys");
    let config = kubernetes_config(&TestPki::new(), &secret_keys(keys.path(), |_| random_key()))
        .unwrap_or_else(|e| panic!("{e}"));
    let drain = config.server.limits.drain_timeout.as_secs();
    // The audit writer may take its flush deadline after the drain.
    let flush = config.audit.flush_timeout.as_secs();
    assert!(
        grace >= pre_stop + drain + flush + 5,
        "terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain} + audit flush {flush} + 5"
    );
    assert_eq!(pod["enableServiceLinks"].as_bool(), Some(false));
    let security = &pod["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
}

/// Hundreds of MiB through server + upstream client; prints the RSS growth.
/// Run: `cargo test --release --test it -- --ignored --nocapture server::large_response`
#[tokio::test]
#[ignore = "moves 512 MiB; run on demand to measure memory"]
async fn large_response_streams_in_constant_memory() {
    const CHUNK: usize = 64 * 1024;
    const TIMES: u64 = 8 * 1024; // 512 MiB
    let up = upstream()
        .steps(vec![Step::Repeat {
            chunk: Bytes::from(vec![b'x'; CHUNK]),
            times: TIMES,
        }])
        .start()
        .await;
    let proxy = TestProxy::start(&config::plain(&up.url).yaml()).await;
    let client = proxy.client();
    let before = vm_rss_kib();
    let mut response = client
        .post(proxy.http("/v1/projects/p/databases/(default)/documents:runQuery"))
        .send()
        .await
        .unwrap();
    let (mut total, mut peak) = (0u64, before);
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
        if total % (16 * 1024 * 1024) < chunk.len() as u64 {
            peak = peak.max(vm_rss_kib());
        }
    }
    assert_eq!(total, CHUNK as u64 * TIMES);
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    println!(
        "streamed {} MiB; RSS before {} MiB, peak {} MiB, growth {growth_mib} MiB",
        total >> 20,
        before / 1024,
        peak / 1024
    );
    assert!(growth_mib < 64, "RSS grew by {growth_mib} MiB");
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_busy_connection_outlives_idle_timeout_and_closes_once_quiet() {
    let config = Config::from_yaml(
        &limits_config(json!({"header_read_timeout": "60s", "idle_timeout": "200ms"})),
        Vec::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut registry = firegate::metrics::registry();
    let server = Server::bind(&config.server, &mut registry)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let idle_closed = |n: u32| {
        firegate::metrics::render(&registry)
            .contains(&format!("firegate_server_idle_closed_total {n}"))
    };
    let release = Gate::new();
    let gate = release.clone();
    // A response whose second chunk waits for the gate.
    let handler = server::handler(move |_req, _conn| {
        let gate = gate.clone();
        async move {
            use futures_util::StreamExt as _;
            let chunks = futures_util::stream::iter([Bytes::from("first;")])
                .chain(futures_util::stream::once(async move {
                    gate.wait().await;
                    Bytes::from("last")
                }))
                .map(|b| Ok::<_, firegate::body::BoxError>(http_body::Frame::data(b)));
            http::Response::new(firegate::body::boxed(http_body_util::StreamBody::new(
                chunks,
            )))
        }
    });
    let shutdown = Shutdown::new();
    let done = server.serve(handler, shutdown.signal());
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = within("response head", conn.read(&mut buf)).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Several idle timeouts pass while the response is still streaming:
    // the watchdog leaves a busy connection alone.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(idle_closed(0), "{}", firegate::metrics::render(&registry));
    release.open();
    // The rest arrives, then — quiet now — the idle watchdog closes it.
    let rest = within("the rest, then the close", read_until_closed(&mut conn)).await;
    let all = [&buf[..n], &rest[..]].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("first;") && text.contains("last"), "{text}");
    assert!(idle_closed(1), "{}", firegate::metrics::render(&registry));
    shutdown.trigger();
    within("drain", done).await.unwrap();
}
