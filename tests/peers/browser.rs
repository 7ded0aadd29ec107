//! `firebase/firestore/lite` in a real browser (headless Chromium, driven by
//! `tests/browser/run.mjs`) against `firegate dev`: its `text/plain` POSTs
//! and their preflights pass CORS for a local origin, one read is allowed
//! and one refused by policy, and a page from an origin not allowed reads
//! nothing at all.

use crate::support;

use std::path::Path;

use firegate::dev::SAMPLE_PROJECT;
use serde_json::Value;

use support::within;

#[tokio::test]
async fn firebase_lite_in_chromium_reads_through_firegate_dev_with_cors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules").is_dir(),
        "run `npm ci` in tests/browser first (scripts/test does)"
    );
    let chromium =
        std::env::var("FIREGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} missing: apt-get install chromium (scripts/test does)"
    );
    // The dev stack as `firegate dev` builds it: its CORS origins included.
    let stack = support::dev_stack().await;
    let token = stack
        .token(&support::dev::sample("ALICE_TOKEN"))
        .expect("token");
    // 127.0.0.2 is loopback too, but not one of the dev origins.
    let out = within(
        "the browser run",
        tokio::process::Command::new("node")
            .arg(dir.join("run.mjs"))
            .args(["--proxy", &stack.url(), "--project", SAMPLE_PROJECT])
            .args(["--token", &token])
            .args([
                "--allowed",
                "catalog/payments-api",
                "--refused",
                "secrets/stripe",
            ])
            .args(["--origins", "127.0.0.1,127.0.0.2", "--chromium", &chromium])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.mjs failed:\n{stdout}\n{stderr}");
    let pages: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(pages.len(), 2, "{stdout}\n{stderr}");

    let local = &pages[0];
    assert_eq!(local["allowed"]["ok"], true, "{local}");
    assert_eq!(local["allowed"]["exists"], true, "{local}");
    assert_eq!(
        local["allowed"]["data"]["owner"], "group:default/payments",
        "{local}"
    );
    assert_eq!(local["refused"]["ok"], false, "{local}");
    assert_eq!(local["refused"]["code"], "permission-denied", "{local}");

    let foreign = &pages[1];
    assert!(
        foreign["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("http://127.0.0.2:")),
        "{foreign}"
    );
    assert_eq!(
        foreign["allowed"]["ok"], false,
        "CORS must refuse: {foreign}"
    );
    assert_ne!(
        foreign["allowed"]["code"], "permission-denied",
        "the browser, not the policy, refuses a foreign origin: {foreign}"
    );
    stack.shutdown().await;
}
