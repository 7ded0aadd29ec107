//! A real Backstage backend (tests/backstage/backend.js: auth with the guest
//! provider, proxy, a plugin calling firegate) as a child process, with the
//! config a test writes; killed when dropped, also when a test panics.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The guest's entity ref and the ownership refs the guest provider gives it.
pub const GUEST: &str = "user:default/guest";
pub const GUEST_TEAM: &str = "group:default/payments";
/// The plugin in backend.js and the target id it asks tokens for.
pub const CALLER_PLUGIN: &str = "firegate-caller";
pub const TARGET_PLUGIN: &str = "firegate";

pub struct Backstage {
    /// `http://127.0.0.1:PORT`, the backend's base URL.
    pub base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Backstage {
    /// Start backend.js on `port`, proxying `/api/proxy/firestore` to
    /// `firegate` (forwarding the caller's token), and wait until it serves.
    pub async fn start(port: u16, firegate: &str) -> Backstage {
        Backstage::start_with(port, firegate, None).await
    }

    /// [`Backstage::start`] with the catalog plugin too: `catalog` is the
    /// file location holding the entities, read again every second, and
    /// `token` an external-access static token that may read it.
    pub async fn start_catalog(
        port: u16,
        firegate: &str,
        catalog: &std::path::Path,
        token: &str,
    ) -> Backstage {
        Backstage::start_with(port, firegate, Some((catalog, token))).await
    }

    async fn start_with(
        port: u16,
        firegate: &str,
        catalog: Option<(&std::path::Path, &str)>,
    ) -> Backstage {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/backstage");
        assert!(
            root.join("node_modules/@backstage/backend-defaults")
                .exists(),
            "run `npm ci` in {} first (CI does)",
            root.display()
        );
        let base = format!("http://127.0.0.1:{port}");
        let mut config = json!({
            "app": {"baseUrl": "http://127.0.0.1:3000"},
            "backend": {
                "baseUrl": base,
                "listen": {"host": "127.0.0.1", "port": port},
                "database": {"client": "better-sqlite3", "connection": ":memory:"},
            },
            "auth": {
                "environment": "development",
                "providers": {"guest": {
                    "userEntityRef": GUEST,
                    "ownershipEntityRefs": [GUEST, GUEST_TEAM],
                    "dangerouslyAllowOutsideDevelopment": true,
                }},
            },
            "proxy": {"endpoints": {"/firestore": {
                "target": firegate,
                "credentials": "forward",
                "allowedHeaders": ["X-Request-Id"],
            }}},
            "firegate": {"baseUrl": firegate},
        });
        if let Some((file, token)) = catalog {
            config["backend"]["auth"] = json!({"externalAccess": [
                {"type": "static", "options": {"token": token, "subject": "firegate-catalog"}},
            ]});
            // backend.js's test-only sign-in provider (any catalog user).
            config["auth"]["providers"]["as"] = json!({});
            config["catalog"] = json!({
                "processingInterval": {"seconds": 1},
                "rules": [{"allow": ["Component", "Group", "User", "System", "Location"]}],
                "locations": [{"type": "file", "target": file}],
            });
        }
        let dir = tempfile::tempdir().expect("config dir");
        let path = dir.path().join("app-config.yaml");
        std::fs::write(&path, super::config::yaml(&config)).expect("write app-config");
        let mut child = Command::new("node")
            .arg("backend.js")
            .arg("--config")
            .arg(&path)
            .current_dir(&root)
            .env("NODE_ENV", "development")
            .env(
                "FIREGATE_TEST_CATALOG",
                if catalog.is_some() { "1" } else { "0" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let started = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = stdout.next_line().await.expect("read stdout") {
                if line.trim() == "ready" {
                    return true;
                }
            }
            false
        })
        .await;
        if started != Ok(true) {
            let mut errors = Vec::new();
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(200), stderr.next_line()).await
            {
                errors.push(line);
            }
            panic!("Backstage did not start:\n{}", errors.join("\n"));
        }
        // Keep draining both pipes: with one closed, node dies of EPIPE.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        Backstage {
            base,
            child,
            _dir: dir,
        }
    }

    /// A fresh guest user token (`backstageIdentity.token`), as the sign-in
    /// page gets one.
    pub async fn guest_token(&self) -> String {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/api/auth/guest/refresh", self.base))
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .expect("guest refresh")
            .error_for_status()
            .expect("guest refresh answered 2xx")
            .json()
            .await
            .expect("guest refresh JSON");
        answer["backstageIdentity"]["token"]
            .as_str()
            .expect("backstageIdentity.token")
            .to_owned()
    }

    /// A user token for catalog user `user:default/<name>` from backend.js's
    /// test-only sign-in provider (backends started with a catalog only).
    pub async fn user_token(&self, name: &str) -> String {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/auth/as/refresh?user={name}", self.base))
            .header("X-Requested-With", "XMLHttpRequest")
            .send()
            .await
            .expect("sign in")
            .error_for_status()
            .expect("sign in answered 2xx")
            .json()
            .await
            .expect("sign-in JSON");
        answer["backstageIdentity"]["token"]
            .as_str()
            .expect("backstageIdentity.token")
            .to_owned()
    }

    /// The notifications Backstage holds for the user of `token`
    /// (`GET /api/notifications/notifications`, as the web UI reads them).
    pub async fn notifications(&self, token: &str) -> Vec<Value> {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/notifications/notifications", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("notifications")
            .error_for_status()
            .expect("notifications answered 2xx")
            .json()
            .await
            .expect("notifications JSON");
        answer["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Kill the backend and wait until it is gone.
    pub async fn stop(&mut self) {
        self.child.kill().await.expect("kill Backstage");
    }
}
