//! Where lifecycle events go. The webhook sink: each event POSTed as
//! JSON, signed with HMAC-SHA256 (`X-Firegate-Signature: sha256=<hex>`
//! over the body). Backstage notifications: [`super::backstage`]. Both
//! deliver through a [`Sink`]: a bounded queue that drops (and counts)
//! when full, so a slow receiver never holds up a request, and retries
//! with exponential backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
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

pub(super) fn default_queue() -> usize {
    1000
}
pub(super) fn default_attempts() -> u32 {
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

/// A sink's deliveries by result.
#[derive(Clone, Default)]
pub struct Counters {
    /// Accepted by the receiver (2xx).
    pub sent: Counter,
    /// Refused (a 4xx other than 429), or unreachable after every attempt.
    pub failed: Counter,
    /// Not queued: the queue was full.
    pub dropped: Counter,
    /// Not sent: nobody firegate can name to send it to (Backstage only).
    pub unaddressed: Counter,
}

impl Counters {
    /// `firegate_access_<name>_total{result=…}`.
    pub fn register(registry: &mut Registry, name: &str, help: &str) -> Counters {
        let [sent, failed, dropped, unaddressed] = crate::metrics::counters_by_result(
            registry,
            name,
            help,
            ["sent", "failed", "dropped", "unaddressed"],
        );
        Counters {
            sent,
            failed,
            dropped,
            unaddressed,
        }
    }
}

/// Where a sink posts and how hard it tries.
pub struct SinkSettings {
    pub url: String,
    pub queue_capacity: usize,
    pub max_attempts: u32,
}

/// The sending half of one delivery task; it delivers in order.
pub struct Sink {
    name: &'static str,
    tx: mpsc::Sender<Vec<u8>>,
    counters: Counters,
}

type Decorate = dyn Fn(reqwest::RequestBuilder, &[u8]) -> reqwest::RequestBuilder + Send + Sync;

impl Sink {
    /// Start the delivery task (on the current runtime); `decorate` adds
    /// each POST's headers (signature, token) for its body.
    pub fn start(
        name: &'static str,
        settings: SinkSettings,
        counters: Counters,
        decorate: impl Fn(reqwest::RequestBuilder, &[u8]) -> reqwest::RequestBuilder
        + Send
        + Sync
        + 'static,
    ) -> Sink {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(settings.queue_capacity);
        let decorate: Arc<Decorate> = Arc::new(decorate);
        let worker = counters.clone();
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent(concat!("firegate/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(c) => c,
                Err(err) => {
                    tracing::error!(error = %err, sink = name, "notification client could not be built");
                    return;
                }
            };
            while let Some(body) = rx.recv().await {
                let sent = deliver(&client, name, &settings, &*decorate, body).await;
                if sent { &worker.sent } else { &worker.failed }.inc();
            }
        });
        Sink { name, tx, counters }
    }

    /// Queue `body`; never waits. A full queue drops it, with a warning.
    pub fn send(&self, body: Vec<u8>) {
        if self.tx.try_send(body).is_err() {
            self.counters.dropped.inc();
            tracing::warn!(
                sink = self.name,
                "access notification queue full; an event was dropped"
            );
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// POST `body` until it is accepted, refused, or `max_attempts` failed.
async fn deliver(
    client: &reqwest::Client,
    name: &'static str,
    settings: &SinkSettings,
    decorate: &Decorate,
    body: Vec<u8>,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=settings.max_attempts {
        let request = client
            .post(&settings.url)
            .header("content-type", "application/json");
        let sent = decorate(request, &body).body(body.clone()).send().await;
        match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(
                    sink = name,
                    status = r.status().as_u16(),
                    "access notification refused"
                );
                return false;
            }
            _ if attempt == settings.max_attempts => {
                tracing::warn!(
                    sink = name,
                    attempts = attempt,
                    "access notification receiver unreachable; event dropped"
                );
                return false;
            }
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    false
}

/// The webhook: every event, signed.
pub struct Webhook(Sink);

impl Webhook {
    pub fn start(settings: WebhookSettings, counters: Counters) -> Webhook {
        let key = settings.key;
        Webhook(Sink::start(
            "webhook",
            SinkSettings {
                url: settings.url,
                queue_capacity: settings.queue_capacity,
                max_attempts: settings.max_attempts,
            },
            counters,
            move |request, body| request.header("x-firegate-signature", signature(&key, body)),
        ))
    }

    /// Queue `event`; never waits.
    pub fn send(&self, event: &serde_json::Value) {
        self.0.send(event.to_string().into_bytes());
    }
}

/// Every configured sink of this replica.
#[derive(Default)]
pub struct Notifier {
    webhook: Option<Webhook>,
    backstage: Option<super::backstage::Backstage>,
}

impl Notifier {
    /// Start the configured sinks and register their metrics.
    pub fn start(settings: &super::AccessSettings, registry: &mut Registry) -> Notifier {
        let webhook = Counters::register(
            registry,
            "access_webhook_deliveries",
            "Access-request events to the webhook, by result",
        );
        let backstage = Counters::register(
            registry,
            "access_backstage_notifications",
            "Access-request notifications to Backstage, by result",
        );
        Notifier {
            webhook: settings.webhook.clone().map(|w| Webhook::start(w, webhook)),
            backstage: settings
                .backstage
                .clone()
                .map(|b| super::backstage::Backstage::start(b, backstage)),
        }
    }

    /// Whether the Backstage sink is on (the audience is worth finding).
    pub fn wants_audience(&self) -> bool {
        self.backstage.is_some()
    }

    /// Queue event `name` by `by` on `request` for every sink; never
    /// waits. The webhook gets `record` (the audit record's `access`
    /// object); Backstage notifies the part of `audience` it concerns.
    pub fn send(
        &self,
        name: &str,
        by: &super::Actor,
        request: &super::AccessRequest,
        record: &serde_json::Value,
        audience: &super::backstage::Audience,
    ) {
        use super::backstage::{To, addressed};
        if let Some(webhook) = &self.webhook {
            webhook.send(record);
        }
        let Some(backstage) = &self.backstage else {
            return;
        };
        let named = match addressed(name, request) {
            None => return,
            Some(To::Approvers) => !audience.approvers.is_empty(),
            Some(To::Requester) => audience.requester.is_some(),
        };
        if named {
            backstage.send(name, request, by, audience);
        } else {
            backstage.unaddressed();
        }
    }
}
