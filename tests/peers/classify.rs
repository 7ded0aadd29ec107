//! The official Firestore clients against the classifier: `capture.mjs`
//! drives `@google-cloud/firestore` (REST mode) and `firebase/firestore/lite`
//! against a recording server; every request they actually sent is routed
//! and classified here, and must yield exactly the expected targets.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use firegate::authn::Principal;
use firegate::firestore::{classify_request, route};
use firegate::model::{Database, Method};
use firegate::transaction::{TransactionError, TransactionSealer};
use http::{HeaderMap, HeaderValue, Uri};

fn capture(sealed_tx: &str) -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/classify-peers");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("capture.mjs")
        .env("FIREGATE_SEALED_TX", sealed_tx)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("capture.mjs did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("utf-8");
    assert!(status.success(), "capture.mjs failed: {out}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON capture per line"))
        .collect()
}

#[test]
fn real_client_requests_classify_to_their_targets() {
    let expected: &[(&str, Method, &[&str])] = &[
        ("node", Method::BatchGet, &["get /teams/t1"]),
        (
            "node",
            Method::Commit,
            &["create /teams/t1", "update /teams/t1"],
        ),
        ("node", Method::Commit, &["update /teams/t2"]),
        ("node", Method::Commit, &["create /teams/t3"]),
        ("node", Method::Commit, &["delete /teams/t4"]),
        ("node", Method::RunQuery, &["list /teams/t1/deployments"]),
        ("node", Method::RunQuery, &["list /**/deployments"]),
        ("node", Method::RunAggregationQuery, &["list /teams"]),
        (
            "node",
            Method::ListCollectionIds,
            &["list /teams/t1/:collectionIds"],
        ),
        ("node", Method::BatchGet, &["get /teams/t1"]),
        (
            "node",
            Method::Commit,
            &["create /teams/t1", "update /teams/t1"],
        ),
        (
            "node",
            Method::BatchWrite,
            &["create /teams/t5", "update /teams/t5"],
        ),
        ("lite", Method::BatchGet, &["get /catalog/a"]),
        (
            "lite",
            Method::Commit,
            &["create /catalog/a", "update /catalog/a"],
        ),
        ("lite", Method::RunQuery, &["list /catalog"]),
        ("lite", Method::RunAggregationQuery, &["list /catalog"]),
        ("lite", Method::BatchGet, &["get /catalog/a"]),
        ("lite", Method::Commit, &["create /catalog/a"]),
    ];
    let sealer = TransactionSealer::with_key(&[42; 32], Duration::from_secs(600)).expect("key");
    let alice = principal("alice");
    let db = Database::new("p", "(default)");
    let sealed = sealer.seal(alice.fingerprint(), &db, b"upstream-tx-1");
    let captures = capture(&sealed);
    assert_eq!(captures.len(), expected.len(), "{captures:#?}");
    let mut began = 0;
    let mut presented = 0;
    for (capture, (client, rpc, targets)) in captures.iter().zip(expected) {
        assert_eq!(capture["client"], *client);
        let url = capture["url"].as_str().expect("url");
        let method =
            http::Method::from_bytes(capture["method"].as_str().expect("method").as_bytes())
                .expect("method");
        let mut headers = HeaderMap::new();
        if let Some(ct) = capture["contentType"].as_str() {
            headers.insert("content-type", HeaderValue::from_str(ct).expect("header"));
        }
        let uri: Uri = url.parse().expect("uri");
        let route = route(&method, &uri, &headers).unwrap_or_else(|e| panic!("{url}: {e}"));
        let body = Bytes::from(capture["body"].as_str().unwrap_or_default().to_owned());
        let classified = classify_request(&route, route.needs_body().then_some(&body))
            .unwrap_or_else(|e| panic!("{url} {body:?}: {e}"));
        let got: Vec<String> = classified
            .operation
            .targets
            .iter()
            .map(|t| format!("{} {}", t.access, t.scope))
            .collect();
        assert_eq!(classified.operation.method, *rpc, "{url}");
        assert_eq!(got, *targets, "{url} {body:?}");

        // The client's API key never goes upstream; the enum encoding does.
        assert!(!route.upstream_path_and_query.contains("key="), "{url}");
        if *client == "node" {
            assert!(
                route
                    .upstream_path_and_query
                    .ends_with("?$alt=json%3Benum-encoding%3Dint")
            );
        }
        began += usize::from(classified.transaction.begins);
        if let Some(presented_id) = &classified.transaction.presented {
            presented += 1;
            // The client decoded the sealed id and re-encoded it: it must
            // still unseal for its owner, and only for its owner.
            let mut route = route;
            let presented = presented_id;
            let upstream = sealer
                .unseal(&presented.sealed, alice.fingerprint(), &route.database)
                .expect("the owner's seal unseals");
            let mut splices = firegate::firestore::splice::Splices::default();
            presented.replace(&mut route, &mut splices, &upstream);
            let unsealed = splices.apply(&body).expect("body");
            let forwarded: serde_json::Value = serde_json::from_slice(&unsealed).expect("json");
            assert_eq!(forwarded["transaction"], "dXBzdHJlYW0tdHgtMQ==");
            let bob = principal("bob");
            assert_eq!(
                sealer.unseal(&presented.sealed, bob.fingerprint(), &route.database),
                Err(TransactionError::NotOwned)
            );
        }
    }
    // The Node transaction: batchGet with newTransaction, then commit with it.
    assert_eq!((began, presented), (1, 1));
}

fn principal(subject: &str) -> Principal {
    Principal::new(
        "https://issuer.test".into(),
        subject.into(),
        None,
        vec![],
        serde_json::Map::new(),
    )
}
