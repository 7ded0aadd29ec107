//! The local copy of the access store: fed by a Listen stream, a silent
//! stream reopened by the watchdog, a change the stream missed repaired by
//! the periodic full read. The upstream is the emulator behind a front
//! that can make Listen calls silent (answered, then never a message).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use firegate::emulator::Emulator;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::config;
use crate::support::grpc::{self, add_documents};
use crate::support::proxy::TestProxy;
use crate::support::within;

const STORE_DB: &str = "projects/p/databases/firegate";
const API: &str = "/firegate/v1/access/requests";

/// The emulator behind a front whose first `silent` Listen calls get a
/// response head and then nothing, ever.
struct Front {
    emulator: Emulator,
    url: String,
    listens: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    async fn start(silent: usize) -> Front {
        let emulator = Emulator::with_listen_heartbeat(Duration::from_millis(200));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let listens: Arc<AtomicUsize> = Arc::default();
        let (e, l) = (emulator.clone(), Arc::clone(&listens));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (e, l) = (e.clone(), Arc::clone(&l));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (e, l) = (e.clone(), Arc::clone(&l));
                            async move {
                                let is_listen = req.uri().path().ends_with("/Listen");
                                if is_listen && l.fetch_add(1, Ordering::SeqCst) < silent {
                                    let mut r = http::Response::new(firegate::body::boxed(
                                        http_body_util::StreamBody::new(
                                            futures_util::stream::pending::<
                                                Result<http_body::Frame<bytes::Bytes>, Infallible>,
                                            >(),
                                        ),
                                    ));
                                    r.headers_mut().insert(
                                        "content-type",
                                        http::HeaderValue::from_static("application/grpc"),
                                    );
                                    return Ok::<_, Infallible>(r);
                                }
                                Ok(e.handle(req.map(firegate::body::boxed)).await)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Front {
            emulator,
            url,
            listens,
            task,
        }
    }

    /// A pending request of `requester`, written straight into the store
    /// (as another replica would).
    fn store(&self, id: &str, issuer: &str, requester: &str) {
        let request = json!({
            "id": id, "requestable": "ops",
            "requester": {"issuer": issuer, "subject": requester},
            "database": "projects/p/databases/(default)", "path": "/ops/**",
            "actions": ["write"], "duration_secs": 60, "reason": "x",
            "state": "pending", "created_at": 1, "pending_until": u64::MAX / 2,
            "min_approvals": 1, "history": [],
        });
        self.emulator
            .put(
                STORE_DB,
                &format!("access/{id}"),
                json!({"json": {"stringValue": request.to_string()}}),
            )
            .expect("stored");
    }
}

async fn replica(front: &Front, watchdog: &str, resync: &str) -> TestProxy {
    let yaml = config::plain(&front.url).merge(json!({
        "access": {
            "store": {"database": STORE_DB, "collection": "access"},
            "watchdog": watchdog,
            "resync_interval": resync,
        },
    }));
    let proxy = TestProxy::start(&yaml.yaml()).await;
    within("the first read of the store", async {
        while proxy.metric("firegate_access_store_age_seconds").await != Some(0.0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    proxy
}

/// The ids in `eve`'s `view=mine` on `proxy`: only what its copy holds.
async fn mine(proxy: &TestProxy) -> Vec<String> {
    let answer: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(proxy.http(&format!("{API}?view=mine")))
        .header("authorization", proxy.bearer_for("eve"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    answer["requests"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|r| Some(r["id"].as_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

async fn until_seen(proxy: &TestProxy, id: &str, limit: Duration) -> Result<(), ()> {
    tokio::time::timeout(limit, async {
        while !mine(proxy).await.iter().any(|i| i == id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|_| ())
}

#[tokio::test]
async fn a_change_arrives_on_the_stream_without_a_full_read() {
    let front = Front::start(0).await;
    let proxy = replica(&front, "1s", "1h").await;
    let issuer = proxy.issuer().issuer.clone();
    front.store("r1", &issuer, "eve");
    assert!(
        until_seen(&proxy, "r1", Duration::from_secs(2))
            .await
            .is_ok(),
        "the stream brings it (no full read for an hour)"
    );
    // Idle past the watchdog, the stream stays: the emulator's heartbeat
    // (every 200 ms) keeps it talking, and keeps the copy current.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(front.listens.load(Ordering::SeqCst), 1);
    assert_eq!(
        proxy
            .metric("firegate_access_store_silent_reopens_total")
            .await,
        Some(0.0)
    );
    assert_eq!(
        proxy.metric("firegate_access_store_age_seconds").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_silent_stream_is_reopened_by_the_watchdog() {
    // The first Listen is answered and then says nothing: no heartbeat,
    // no change. No full read for an hour: only a reopened stream can
    // bring the change.
    let front = Front::start(1).await;
    let proxy = replica(&front, "1s", "1h").await;
    let issuer = proxy.issuer().issuer.clone();
    front.store("r2", &issuer, "eve");
    assert!(
        until_seen(&proxy, "r2", Duration::from_secs(5))
            .await
            .is_ok(),
        "the watchdog reopens the silent stream, whose first snapshot has it"
    );
    assert!(front.listens.load(Ordering::SeqCst) >= 2);
    assert!(
        proxy
            .metric("firegate_access_store_silent_reopens_total")
            .await
            .is_some_and(|n| n >= 1.0)
    );
}

#[tokio::test]
async fn a_change_the_stream_missed_is_repaired_by_the_full_read() {
    // Every Listen is silent and the watchdog is far: the stream brings
    // nothing; the full read every second does.
    let front = Front::start(usize::MAX).await;
    let proxy = replica(&front, "1h", "1s").await;
    let issuer = proxy.issuer().issuer.clone();
    front.store("r3", &issuer, "eve");
    assert!(
        until_seen(&proxy, "r3", Duration::from_secs(5))
            .await
            .is_ok(),
        "the resync repairs it"
    );
}

#[tokio::test]
async fn the_emulator_says_no_change_on_an_idle_listen_as_firestores_heartbeat() {
    use googleapis_tonic_google_firestore_v1::google::firestore::v1 as proto;
    use proto::listen_response::ResponseType;
    use proto::target_change::TargetChangeType as T;
    for (every, beats) in [(Duration::from_millis(100), true), (Duration::ZERO, false)] {
        let running = Emulator::with_listen_heartbeat(every)
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .expect("emulator");
        let mut client = grpc::client(running.local_addr()).await;
        let db = "projects/p/databases/(default)";
        let first = add_documents(db, 1, &[format!("{db}/documents/c/a")]);
        let mut call = grpc::listen(&mut client, "Bearer owner", "idle", first)
            .await
            .expect("Listen opens");
        let mut read_times = Vec::new();
        let heard = tokio::time::timeout(Duration::from_millis(800), async {
            while let Ok(Some(message)) = call.responses.message().await {
                if let Some(ResponseType::TargetChange(c)) = message.response_type
                    && c.target_change_type == T::NoChange as i32
                    && c.target_ids.is_empty()
                {
                    read_times.push(c.read_time.expect("a read time"));
                }
            }
        })
        .await;
        assert!(heard.is_err(), "the stream stays open");
        if beats {
            assert!(read_times.len() >= 4, "{read_times:?}");
            assert!(
                read_times
                    .windows(2)
                    .all(|w| (w[0].seconds, w[0].nanos) < (w[1].seconds, w[1].nanos))
            );
        } else {
            assert_eq!(read_times.len(), 1, "only the initial snapshot");
        }
    }
}
