//! `firegate dev` as the tests start it — every listener on an ephemeral
//! port, the repository's example policies — and a REST caller holding one
//! development identity's token.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use firegate::dev::{DevOptions, Identity, Stack, samples};
use serde_json::Value;

use super::within;

/// The dev stack's database, its documents, and those as a REST path.
pub const DATABASE: &str = firegate::dev::SAMPLE_DATABASE;
pub const ROOT: &str = "projects/demo/databases/(default)/documents";
pub const DOCS: &str = "/v1/projects/demo/databases/(default)/documents";

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// The repository's example policies (`policies/`).
pub fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The options `firegate dev` starts with, on ephemeral ports; override
/// fields with `DevOptions { upstream_override: …, ..dev::options() }`.
pub fn options() -> DevOptions {
    DevOptions {
        listen: any_port(),
        issuer_listen: any_port(),
        emulator_listen: any_port(),
        admin_listen: any_port(),
        policies: Some(policies()),
        ..Default::default()
    }
}

pub async fn start(options: DevOptions) -> Stack {
    within("the dev stack", Stack::start(options))
        .await
        .expect("the dev stack starts")
}

/// A sample identity by its token variable (`ADMIN_TOKEN`, `ALICE_TOKEN`,
/// `OUTSIDER_TOKEN`).
pub fn sample(token_var: &str) -> Identity {
    samples()
        .into_iter()
        .find(|s| s.token_var == token_var)
        .map(|s| s.identity)
        .expect("sample identity")
}

/// An engineer: who may keep notes under the example `policies/notes.yaml`.
pub fn engineer(subject: &str) -> Identity {
    Identity {
        subject: subject.into(),
        email: format!("{subject}@example.com"),
        groups: vec!["group:default/engineering".into()],
    }
}

/// Sends REST requests to the stack as one identity.
pub struct Caller {
    http: reqwest::Client,
    base: String,
    /// The identity's development token, for requests made by hand.
    pub token: String,
}

impl Caller {
    pub fn new(stack: &Stack, identity: &Identity) -> Caller {
        Caller {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            base: stack.url(),
            token: stack.token(identity).expect("token"),
        }
    }

    /// The same caller, its paths relative to `prefix` (e.g. [`DOCS`]).
    pub fn under(mut self, prefix: &str) -> Caller {
        self.base.push_str(prefix);
        self
    }

    /// The status and the body (JSON, or the text as a JSON string).
    pub async fn send<M>(&self, method: M, path: &str, body: Option<Value>) -> (u16, Value)
    where
        M: TryInto<reqwest::Method>,
        M::Error: Debug,
    {
        let method = method.try_into().expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = within("firegate", req.send()).await.expect("response");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: impl AsRef<str>, body: Value) -> (u16, Value) {
        self.send("POST", path.as_ref(), Some(body)).await
    }

    pub async fn patch(&self, path: impl AsRef<str>, body: Value) -> (u16, Value) {
        self.send("PATCH", path.as_ref(), Some(body)).await
    }
}
