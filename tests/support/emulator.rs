//! A seeded emulator on a free port and a small JSON client for it.

use reqwest::Method;
use serde_json::{Value, json};

use firegate::emulator::{Emulator, Running};

pub const DB: &str = "projects/p/databases/(default)";

/// An emulator on `127.0.0.1:0` and the base URL of its database.
pub struct Fixture {
    pub running: Running,
    pub client: reqwest::Client,
    pub base: String,
}

impl Fixture {
    pub async fn start() -> Fixture {
        let running = Emulator::new()
            .spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}/v1/{DB}/documents", running.local_addr());
        Fixture {
            running,
            client: reqwest::Client::new(),
            base,
        }
    }

    pub fn put(&self, path: &str, fields: Value) {
        self.running.emulator().put(DB, path, fields).unwrap();
    }

    /// Send `method` to `base` + `suffix` with an optional JSON body.
    pub async fn call(&self, method: Method, suffix: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{suffix}", self.base))
            .header("authorization", "Bearer owner");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, value)
    }

    pub async fn post(&self, suffix: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, suffix, Some(body)).await
    }

    /// `runQuery` below `parent` (`""` for the root): the returned document ids.
    pub async fn query_ids(&self, parent: &str, query: Value) -> Vec<String> {
        let (status, body) = self
            .post(
                &format!("{parent}:runQuery"),
                json!({ "structuredQuery": query }),
            )
            .await;
        assert_eq!(status, 200, "{query} → {body}");
        ids(&body)
    }
}

/// The ids of the documents in a streamed `runQuery` answer.
pub fn ids(elements: &Value) -> Vec<String> {
    elements
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["document"]["name"].as_str())
        .map(|name| name.rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// `{"integerValue": "n"}`.
pub fn int(n: i64) -> Value {
    json!({ "integerValue": n.to_string() })
}

/// `{"stringValue": s}`.
pub fn string(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// The error status name of a Firestore error body.
pub fn status_name(body: &Value) -> &str {
    body["error"]["status"].as_str().unwrap_or("")
}
