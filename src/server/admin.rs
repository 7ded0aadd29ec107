//! The admin listener's routes: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use http::{HeaderValue, Method, Response, StatusCode, header};
use prometheus_client::registry::Registry;

use super::{Handler, handler as make_handler};
use crate::body::{self, Body};
use crate::metrics;

/// `None` when ready to serve; otherwise why not (shown by `/readyz`).
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

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
        "/readyz" => match readiness() {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reasons}\n")),
        },
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
