//! The real `oidc-provider` (tests/oidc/provider.mjs) as a child process on a
//! free port; killed when dropped, also when a test panics.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Audience the provider puts in its JWT access tokens.
pub const AUDIENCE: &str = "https://firegate.test";
/// Resource for which it issues opaque tokens (introspection only).
pub const OPAQUE_AUDIENCE: &str = "https://opaque.firegate.test";
/// The client allowed to introspect: `firegate` / this secret.
pub const INTROSPECTION_SECRET: &str = "firegate-secret";

pub struct OidcProvider {
    /// `http://127.0.0.1:PORT`, also the `iss` of its tokens.
    pub issuer: String,
    _child: Child,
}

impl OidcProvider {
    /// Start `node provider.mjs` and wait for its `ready` line.
    pub async fn start() -> OidcProvider {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `npm ci` in {} first (CI does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", "0")
            .env("AUDIENCE", AUDIENCE)
            .env("OPAQUE_AUDIENCE", OPAQUE_AUDIENCE)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("ready ") {
                    return url.trim().to_string();
                }
            }
            panic!("oidc-provider exited before it was ready");
        })
        .await
        .expect("oidc-provider ready within 30s");
        // Keep draining stdout: with the pipe closed, node dies of EPIPE at
        // its next write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OidcProvider {
            issuer,
            _child: child,
        }
    }

    /// A `client_credentials` access token (a JWT) for a client of
    /// provider.mjs (`svc-reader`/`reader-secret`, `svc-writer`/`writer-secret`).
    pub async fn client_credentials(&self, client_id: &str, secret: &str, scope: &str) -> String {
        self.client_credentials_for(client_id, secret, scope, AUDIENCE)
            .await
    }

    /// Same, for `resource` (`OPAQUE_AUDIENCE` gives an opaque token).
    pub async fn client_credentials_for(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
        resource: &str,
    ) -> String {
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token response");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {response}"))
            .to_string()
    }
}
