//! The admin listener's routes: `/healthz` (trivial), `/readyz` (JSON, one
//! entry per dependency), `/metrics`.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use prometheus_client::registry::Registry;

use super::{Handler, handler as make_handler};
use crate::body::{self, Body};
use crate::metrics;

/// One dependency's state on `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// `issuer_keys`, `upstream_token`, `policy_table`, `audit_sink`, `draining`.
    #[serde(skip)]
    pub name: &'static str,
    pub ready: bool,
    /// A required check that is not ready makes `/readyz` answer 503.
    pub required: bool,
    /// Why not ready, or a note an operator should see that does not stop
    /// traffic (a refused policy reload: every replica still serves the
    /// last good table, so none should leave the pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    /// A required check: ready unless `problem` says why not.
    pub fn required(name: &'static str, problem: Option<String>) -> Check {
        Check {
            name,
            ready: problem.is_none(),
            required: true,
            detail: problem,
        }
    }
}

/// What `/readyz` reports: one [`Check`] per dependency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    pub checks: Vec<Check>,
}

impl Ready {
    /// `Some(why)` when a required check is not ready.
    pub fn blocking(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.required && !c.ready)
            .map(|c| match &c.detail {
                Some(detail) => format!("{}: {detail}", c.name),
                None => c.name.to_owned(),
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// `{"ready": bool, "checks": {name: {ready, required, detail?}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|c| (c.name.to_owned(), serde_json::json!(c)))
            .collect();
        serde_json::json!({ "ready": self.blocking().is_none(), "checks": checks })
    }
}

/// Asked on every `/readyz`.
pub type Readiness = Arc<dyn Fn() -> Ready + Send + Sync>;

/// The admin routes. The listener is bound before this runs, so "listeners
/// bound" is already true when `/readyz` can answer at all.
pub fn handler(registry: Arc<Registry>, readiness: Readiness) -> Handler {
    make_handler(move |req, _conn| {
        let response = route(req.method(), req.uri().path(), &registry, &readiness);
        async move { response }
    })
}

fn route(
    method: &Method,
    path: &str,
    registry: &Registry,
    readiness: &Readiness,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let ready = readiness();
            let status = match ready.blocking() {
                None => StatusCode::OK,
                Some(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            body::typed(
                status,
                body::full(format!("{}\n", ready.to_json())),
                "application/json",
            )
        }
        "/metrics" => body::typed(
            StatusCode::OK,
            body::full(metrics::render(registry)),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    body::typed(status, body::full(body), "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn get(path: &str, ready: Ready) -> (StatusCode, String) {
        let readiness: Readiness = Arc::new(move || ready.clone());
        let response = route(&Method::GET, path, &Registry::default(), &readiness);
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn optional(name: &'static str, ready: bool) -> Check {
        Check {
            name,
            ready,
            required: false,
            detail: None,
        }
    }

    #[tokio::test]
    async fn readyz_is_json_per_dependency_and_503_when_a_required_one_is_not_ready() {
        let ready = Ready {
            checks: vec![
                Check::required("issuer_keys", Some("keys not loaded for dev".into())),
                Check::required("draining", None),
            ],
        };
        assert_eq!(
            ready.blocking().as_deref(),
            Some("issuer_keys: keys not loaded for dev")
        );
        let (status, body) = get("/readyz", ready).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({"ready": false, "checks": {
                "issuer_keys": {"ready": false, "required": true, "detail": "keys not loaded for dev"},
                "draining": {"ready": true, "required": true},
            }})
        );
    }

    #[tokio::test]
    async fn an_optional_check_not_ready_does_not_take_traffic_away() {
        let ready = Ready {
            checks: vec![
                Check::required("audit_sink", None),
                optional("extra", false),
            ],
        };
        let (status, body) = get("/readyz", ready).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"ready\":true"), "{body}");
    }

    #[tokio::test]
    async fn healthz_stays_trivial_even_when_not_ready() {
        let ready = Ready {
            checks: vec![Check::required("draining", Some("shutting down".into()))],
        };
        assert_eq!(
            get("/healthz", ready).await,
            (StatusCode::OK, "ok\n".to_owned())
        );
    }
}
