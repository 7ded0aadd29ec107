//! The webhook sink: each lifecycle event POSTed as JSON, signed with
//! HMAC-SHA256 (`X-Firegate-Signature: sha256=<hex>` over the body),
//! retried with exponential backoff, from a bounded queue that drops (and
//! counts) when full, so a slow receiver never holds up a request.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::ConfigErrors;

/// Raw `access.notify.webhook:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// A file holding the HMAC key.
    pub secret_file: PathBuf,
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_queue() -> usize {
    1000
}
fn default_attempts() -> u32 {
    5
}

/// The validated webhook settings.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: String,
    pub key: Vec<u8>,
    pub queue_capacity: usize,
    pub max_attempts: u32,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("key", &"(redacted)")
            .field("queue_capacity", &self.queue_capacity)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl RawWebhook {
    pub fn validate(self, errors: &mut ConfigErrors) -> WebhookSettings {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            errors.push("access.notify.webhook.url", "must be an http(s) URL");
        }
        let key = std::fs::read(&self.secret_file).unwrap_or_else(|e| {
            errors.push(
                "access.notify.webhook.secret_file",
                format!("cannot read {}: {e}", self.secret_file.display()),
            );
            Vec::new()
        });
        let key = key.trim_ascii().to_vec();
        if key.len() < 16 && errors.is_empty() {
            errors.push(
                "access.notify.webhook.secret_file",
                "the key must have at least 16 bytes",
            );
        }
        if self.queue_capacity == 0 || self.max_attempts == 0 {
            errors.push(
                "access.notify.webhook",
                "queue_capacity and max_attempts must be at least 1",
            );
        }
        WebhookSettings {
            url: self.url,
            key,
            queue_capacity: self.queue_capacity.max(1),
            max_attempts: self.max_attempts.max(1),
        }
    }
}

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new_from_slice(&[0]).expect("any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sending half; the worker task delivers in order.
pub struct Webhook {
    tx: mpsc::Sender<serde_json::Value>,
}

impl Webhook {
    /// Start the delivery task (on the current runtime).
    pub fn start(settings: WebhookSettings) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<serde_json::Value>(settings.queue_capacity);
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            {
                Ok(c) => c,
                Err(err) => {
                    tracing::error!(error = %err, "webhook client could not be built");
                    return;
                }
            };
            while let Some(event) = rx.recv().await {
                deliver(&client, &settings, &event).await;
            }
        });
        Webhook { tx }
    }

    /// Queue `event`; never waits. A full queue drops it, with a warning.
    pub fn send(&self, event: serde_json::Value) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("access webhook queue full; an event was dropped");
        }
    }
}

async fn deliver(client: &reqwest::Client, settings: &WebhookSettings, event: &serde_json::Value) {
    let body = event.to_string();
    let signed = signature(&settings.key, body.as_bytes());
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=settings.max_attempts {
        let sent = client
            .post(&settings.url)
            .header("content-type", "application/json")
            .header("x-firegate-signature", &signed)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "access webhook refused an event"
                );
                return;
            }
            _ if attempt == settings.max_attempts => {
                tracing::warn!(
                    attempts = attempt,
                    "access webhook unreachable; event dropped"
                );
                return;
            }
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
