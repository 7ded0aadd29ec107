//! Prometheus metrics, served on the admin listener at `/metrics`.

use prometheus_client::registry::Registry;

/// The process-wide registry; each component registers its own metrics
/// into it when it is built.
pub fn registry() -> Registry {
    Registry::with_prefix("firegate")
}
