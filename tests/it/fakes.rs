//! The test support itself: the fake server routes, serves TLS, stops when
//! dropped and re-raises its handlers' panics; config values merge.

use crate::support;

use http::{Method, StatusCode};
use serde_json::json;

use support::config;
use support::fake;
use support::{TestPki, upstream};

#[tokio::test]
async fn routes_pick_by_method_and_path_and_the_rest_falls_back() {
    let fake = fake::server()
        .route(Method::GET, "/hello", |_| "hello")
        .any("/any", |req| {
            (StatusCode::CREATED, json!({"m": req.method.as_str()}))
        })
        .fallback(|req| (StatusCode::IM_A_TEAPOT, json!({"path": req.path})))
        .start()
        .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let hello = client.get(fake.url() + "/hello").send().await.unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().await.unwrap(), "hello");
    let posted = client.post(fake.url() + "/hello").send().await.unwrap();
    assert_eq!(posted.status(), 418, "GET route must not take a POST");
    let any = client.put(fake.url() + "/any").send().await.unwrap();
    assert_eq!(any.status(), 201);
    assert_eq!(any.json::<serde_json::Value>().await.unwrap()["m"], "PUT");
    fake.join().await;
}

#[tokio::test]
async fn without_a_fallback_an_unknown_path_is_404() {
    let fake = fake::server().start().await;
    let status = reqwest::get(fake.url() + "/nothing")
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tls_fake_answers_a_client_trusting_the_test_ca() {
    let pki = TestPki::new();
    let fake = fake::server()
        .route(Method::GET, "/", |_| "secure")
        .tls(&pki)
        .start()
        .await;
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    let client = pki.client().build().unwrap();
    let text = client.get(fake.url() + "/").send().await.unwrap();
    assert_eq!(text.text().await.unwrap(), "secure");
}

#[tokio::test]
#[should_panic(expected = "handler exploded on /boom")]
async fn join_re_raises_a_handler_panic() {
    let fake = fake::server()
        .fallback(|req| -> (StatusCode, serde_json::Value) {
            panic!("handler exploded on {}", req.path)
        })
        .start()
        .await;
    let status = reqwest::get(fake.url() + "/boom").await.unwrap().status();
    assert_eq!(status, 500, "the client sees a 500 meanwhile");
    fake.join().await;
}

#[tokio::test]
#[should_panic(expected = "header name")]
async fn recording_upstream_join_re_raises_its_panic_instead_of_a_bare_500() {
    // A header the script cannot send panics inside the handler.
    let up = upstream().header("bad\nname", "x").start().await;
    let status = reqwest::get(up.url.clone() + "/").await.unwrap().status();
    assert_eq!(status, 500);
    up.join().await;
}

#[tokio::test]
async fn a_dropped_fake_stops_accepting() {
    let fake = fake::server()
        .route(Method::GET, "/", |_| "up")
        .start()
        .await;
    let url = fake.url() + "/";
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    drop(fake);
    tokio::task::yield_now().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(client.get(&url).send().await.is_err(), "still answering");
}

#[test]
fn config_values_merge_deeply_and_null_removes() {
    let yaml = config::plain("http://127.0.0.1:9")
        .merge(json!({
            "server": {"limits": {"max_connections": 1}, "admin_listen": null},
            "upstream": {"credentials": {"source": "emulator"}},
        }))
        .yaml();
    let back: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        back,
        json!({
            "server": {"listen": "127.0.0.1:0", "plain_http": true, "limits": {"max_connections": 1}},
            "upstream": {"url": "http://127.0.0.1:9", "credentials": {"source": "emulator"},
                         "databases": ["projects/p/databases/(default)"]},
        })
    );
    firegate::app::Config::from_yaml(&yaml, Vec::new()).expect("firegate reads it");
}

#[test]
fn the_dev_stack_paths_name_its_sample_database() {
    use support::dev::{DATABASE, DOCS, ROOT};
    assert_eq!(ROOT, format!("{DATABASE}/documents"));
    assert_eq!(DOCS, format!("/v1/{ROOT}"));
}
