//! The admin listener's routes: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use http::{HeaderValue, Method, Response, StatusCode, header};
use prometheus_client::registry::Registry;

use super::{Handler, handler as make_handler};
use crate::body::{self, Body};
use crate::metrics;

/// What `/readyz` reports: whether to take traffic, and notes an operator
/// should see that do not stop it (a refused policy reload: every replica
/// still serves the last good table, so none should leave the pool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// `Some(why)` when not ready.
    pub blocking: Option<String>,
    /// Shown in the `/readyz` body either way.
    pub notes: Option<String>,
}

impl From<Option<String>> for Ready {
    fn from(blocking: Option<String>) -> Self {
        Ready {
            blocking,
            notes: None,
        }
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
            let notes = ready.notes.map(|n| format!("{n}\n")).unwrap_or_default();
            match ready.blocking {
                None => text(StatusCode::OK, format!("ready\n{notes}")),
                Some(reasons) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{reasons}\n{notes}"),
                ),
            }
        }
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics::render(registry));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
