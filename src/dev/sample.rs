//! The sample data, identities and requests `firegate dev` shows off. They
//! match the example policies in `policies/`.

use serde_json::{Value, json};

use super::Identity;
use crate::emulator::Emulator;

pub const SAMPLE_PROJECT: &str = "demo";
pub const SAMPLE_DATABASE: &str = "projects/demo/databases/(default)";

/// One request shown as a `curl` command.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub what: &'static str,
    pub method: &'static str,
    /// Below `/v1/{database}/documents`, starting with `/` or `:`.
    pub path: &'static str,
    pub body: Option<Value>,
}

impl SampleRequest {
    /// The URL path, from `/v1`.
    pub fn url_path(&self) -> String {
        format!("/v1/{SAMPLE_DATABASE}/documents{}", self.path)
    }

    /// A one-line `curl` command using the token in `$token_var`.
    pub fn curl(&self, base: &str, token_var: &str) -> String {
        let mut cmd = format!(
            "curl -sS -X {} -H \"Authorization: Bearer ${token_var}\" '{base}{}'",
            self.method,
            self.url_path()
        );
        if let Some(body) = &self.body {
            cmd.push_str(&format!(
                " -H 'Content-Type: application/json' -d '{}'",
                body
            ));
        }
        cmd
    }
}

/// A sample identity with one request policy allows and one it refuses.
#[derive(Debug, Clone)]
pub struct Sample {
    pub title: &'static str,
    pub token_var: &'static str,
    pub identity: Identity,
    pub allowed: SampleRequest,
    pub refused: SampleRequest,
}

fn identity(subject: &str, email: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: subject.into(),
        email: email.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// The three sample identities.
pub fn samples() -> Vec<Sample> {
    vec![
        Sample {
            title: "platform admin",
            token_var: "ADMIN_TOKEN",
            identity: identity(
                "user:default/pat",
                "pat@example.com",
                &["group:default/platform-admins", "group:default/engineers"],
            ),
            allowed: SampleRequest {
                what: "record a deployment for team B",
                method: "POST",
                path: "/teams/team-b/deployments?documentId=d-102",
                body: Some(
                    json!({"fields": {"service": {"stringValue": "search-api"}, "version": {"stringValue": "2.4.1"}}}),
                ),
            },
            refused: SampleRequest {
                what: "read a secret (denied to everyone)",
                method: "GET",
                path: "/secrets/stripe",
                body: None,
            },
        },
        Sample {
            title: "team A engineer",
            token_var: "ALICE_TOKEN",
            identity: identity(
                "user:default/alice",
                "alice@example.com",
                &["group:default/team-a", "group:default/engineers"],
            ),
            allowed: SampleRequest {
                what: "read the catalog",
                method: "GET",
                path: "/catalog/payments-api",
                body: None,
            },
            refused: SampleRequest {
                what: "write team B's deployment log",
                method: "POST",
                path: "/teams/team-b/deployments?documentId=d-666",
                body: Some(json!({"fields": {"service": {"stringValue": "search-api"}}})),
            },
        },
        Sample {
            title: "outsider (authenticated, in no engineering group)",
            token_var: "OUTSIDER_TOKEN",
            identity: identity("user:default/mallory", "mallory@contractor.example", &[]),
            allowed: SampleRequest {
                what: "read the catalog",
                method: "GET",
                path: "/catalog/payments-api",
                body: None,
            },
            refused: SampleRequest {
                what: "list team A's deployments",
                method: "GET",
                path: "/teams/team-a/deployments",
                body: None,
            },
        },
    ]
}

/// Seed a Backstage-like catalog, two teams' deployment logs and a secret.
pub fn seed(emulator: &Emulator) -> anyhow::Result<()> {
    let s = |v: &str| json!({"stringValue": v});
    let docs = [
        (
            "catalog/payments-api",
            json!({"kind": s("Component"), "owner": s("group:default/team-a"), "lifecycle": s("production")}),
        ),
        (
            "catalog/search-api",
            json!({"kind": s("Component"), "owner": s("group:default/team-b"), "lifecycle": s("experimental")}),
        ),
        (
            "teams/team-a/deployments/d-001",
            json!({"service": s("payments-api"), "version": s("1.0.0"), "status": s("succeeded")}),
        ),
        (
            "teams/team-a/deployments/d-002",
            json!({"service": s("payments-api"), "version": s("1.1.0"), "status": s("failed")}),
        ),
        (
            "teams/team-b/deployments/d-101",
            json!({"service": s("search-api"), "version": s("2.4.0"), "status": s("succeeded")}),
        ),
        (
            "secrets/stripe",
            json!({"apiKey": s("sk_test_development_only")}),
        ),
    ];
    for (path, fields) in docs {
        emulator.put(SAMPLE_DATABASE, path, fields)?;
    }
    Ok(())
}
