//! Prometheus metrics, served on the admin listener at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The process-wide registry; each component registers its own metrics
/// into it when it is built.
pub fn registry() -> Registry {
    Registry::with_prefix("firegate")
}

/// The registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a `String` cannot fail; an encoder error would be a bug in
    // a metric's label set, and an empty page is the safe answer to it.
    if encode(&mut text, registry).is_err() {
        text.clear();
    }
    text
}
