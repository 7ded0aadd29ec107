//! The catalog's readiness: required and never loaded → `/readyz` is not
//! ready and says why; loaded, then Backstage down → ready, serving the
//! last index, its age reported.

use crate::support;

use std::time::Duration;

use firegate::app::{App, Config};
use serde_json::json;

use support::catalog::{CATALOG_TOKEN, FakeCatalog, entities};
use support::config;

async fn app(catalog_url: &str, required: bool, dir: &std::path::Path) -> App {
    std::fs::write(dir.join("token"), CATALOG_TOKEN).expect("token");
    std::fs::write(
        dir.join("rules.yaml"),
        "rules:\n  - id: owners\n    match: /services/{service}/{rest=**}\n    allow: [read]\n    who: {catalog: {owner_of: \"component:{service}\"}}\n",
    )
    .expect("policy");
    let yaml = config::plain("http://127.0.0.1:1")
        .merge(json!({
            "upstream": {"credentials": {"source": "emulator"}},
            "policy": {"dir": dir, "watch": false},
            "catalog": {
                "url": catalog_url,
                "token_file": dir.join("token"),
                "interval": "200ms",
                "required": required,
            },
        }))
        .yaml();
    let config = Config::from_yaml(&yaml, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    App::start(&config).await.expect("firegate starts")
}

#[tokio::test]
async fn a_required_catalog_never_loaded_keeps_firegate_unready() {
    let dir = tempfile::tempdir().expect("dir");
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let app = app(&nowhere, true, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = app.readiness();
    let blocking = ready.blocking().unwrap_or_default();
    assert!(
        blocking.contains("catalog: no catalog index yet: catalog answer"),
        "{blocking}"
    );
    let answer = reqwest::get(format!("http://{}/readyz", app.admin_addr()))
        .await
        .expect("readyz");
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["checks"]["catalog"]["ready"], false, "{body}");
    assert_eq!(body["checks"]["catalog"]["required"], true, "{body}");
}

#[tokio::test]
async fn a_catalog_gone_down_keeps_its_last_index_and_reports_its_age() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = FakeCatalog::start(entities(&[("checkout", "payments")])).await;
    let app = app(&catalog.url(), true, dir.path()).await;
    app.wait_ready(Duration::from_secs(10))
        .await
        .expect("ready once the catalog is read");
    catalog.down();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ready = app.readiness();
    assert_eq!(ready.blocking(), None, "the last index keeps serving");
    let check = ready.check("catalog").expect("catalog check");
    let detail = check.detail.clone().unwrap_or_default();
    let age: u64 = detail
        .strip_prefix("serving the last index (age ")
        .and_then(|rest| rest.split_once("s); latest sync failed"))
        .and_then(|(age, _)| age.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(age >= 1, "{detail}");
}
