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
    let deployment = |service: &str, version: &str| json!({"fields": {"service": {"stringValue": service}, "version": {"stringValue": version}}});
    vec![
        Sample {
            title: "platform admin",
            token_var: "ADMIN_TOKEN",
            identity: identity(
                "user:default/pat",
                "pat@example.com",
                &["group:default/engineering", "group:default/platform-admins"],
            ),
            allowed: SampleRequest {
                what: "record a deployment for the search team",
                method: "POST",
                path: "/teams/search/deployments?documentId=d-102",
                body: Some(deployment("search-api", "2.4.1")),
            },
            refused: SampleRequest {
                what: "read a secret (denied to everyone)",
                method: "GET",
                path: "/secrets/stripe",
                body: None,
            },
        },
        Sample {
            title: "payments team engineer",
            token_var: "ALICE_TOKEN",
            identity: identity(
                "user:default/alice",
                "alice@example.com",
                &["group:default/engineering", "group:default/payments"],
            ),
            allowed: SampleRequest {
                what: "read the catalog",
                method: "GET",
                path: "/catalog/payments-api",
                body: None,
            },
            refused: SampleRequest {
                what: "write the search team's deployment log",
                method: "POST",
                path: "/teams/search/deployments?documentId=d-666",
                body: Some(deployment("search-api", "6.6.6")),
            },
        },
        Sample {
            title: "outsider (authenticated, in no group)",
            token_var: "OUTSIDER_TOKEN",
            identity: identity("user:default/mallory", "mallory@contractor.example", &[]),
            allowed: SampleRequest {
                what: "read the public status board",
                method: "GET",
                path: "/status/payments-api",
                body: None,
            },
            refused: SampleRequest {
                what: "read the catalog (engineers only)",
                method: "GET",
                path: "/catalog/payments-api",
                body: None,
            },
        },
    ]
}

/// Seed a Backstage-like catalog, team profiles and deployment logs, a
/// status board, and a secret.
pub fn seed(emulator: &Emulator) -> anyhow::Result<()> {
    let s = |v: &str| json!({"stringValue": v});
    let component = |owner: &str, lifecycle: &str| json!({"kind": s("Component"), "owner": s(owner), "lifecycle": s(lifecycle)});
    let deployment = |service: &str, version: &str, status: &str| json!({"service": s(service), "version": s(version), "status": s(status)});
    let person = |name: &str, salary: i64, street: &str, city: &str| {
        json!({
            "name": s(name),
            "salary": {"integerValue": salary.to_string()},
            "ssn": s("000-00-0000"),
            "tax.id": s("T-1"),
            "address": {"mapValue": {"fields": {"street": s(street), "city": s(city)}}}
        })
    };
    let docs = [
        (
            "catalog/payments-api",
            component("group:default/payments", "production"),
        ),
        (
            "catalog/search-api",
            component("group:default/search", "experimental"),
        ),
        (
            "teams/payments",
            json!({"name": s("Payments"), "slack": s("#payments")}),
        ),
        (
            "teams/search",
            json!({"name": s("Search"), "slack": s("#search")}),
        ),
        (
            "teams/payments/deployments/d-001",
            deployment("payments-api", "1.0.0", "succeeded"),
        ),
        (
            "teams/payments/deployments/d-002",
            deployment("payments-api", "1.1.0", "failed"),
        ),
        (
            "teams/search/deployments/d-101",
            deployment("search-api", "2.4.0", "succeeded"),
        ),
        ("status/payments-api", json!({"state": s("operational")})),
        // The people directory (`policies/people.yaml`): engineers read it
        // with the private fields masked.
        ("people/ann", person("Ann", 120_000, "1 Main St", "Oslo")),
        ("people/bob", person("Bob", 95_000, "2 Side St", "Bergen")),
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
