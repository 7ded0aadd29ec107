//! Prometheus metrics, served on the admin listener at `/metrics`.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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

/// A family's counters by a small dense index, each taken from the family
/// (`resolve`, a `get_or_create`) the first time its index is counted and
/// from then on counted without hashing its labels again: the counters a
/// request bumps, on the hot path. Only counted series appear, as with the
/// family alone. Cheap to clone (the slots are shared).
#[derive(Clone)]
pub struct Resolved {
    slots: Arc<[OnceLock<Counter>]>,
}

impl Resolved {
    pub fn new(len: usize) -> Resolved {
        Resolved {
            slots: (0..len).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Slots for every HTTP status, 100 to 599 (see [`Resolved::status`]).
    pub fn statuses() -> Resolved {
        Resolved::new(500)
    }

    /// The slot of an HTTP status, when it has one.
    pub fn status(status: u16) -> Option<usize> {
        status.checked_sub(100).map(usize::from)
    }

    /// Count once at `index`; an index without a slot is counted through
    /// `resolve` every time.
    pub fn inc(&self, index: Option<usize>, resolve: impl FnOnce() -> Counter) {
        match index.and_then(|i| self.slots.get(i)) {
            Some(slot) => slot.get_or_init(resolve).inc(),
            None => resolve().inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::family::Family;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Status {
        status: u16,
    }

    #[test]
    fn resolved_counts_into_the_family_and_only_what_was_counted() {
        let family = Family::<Status, Counter>::default();
        let mut registry = Registry::default();
        registry.register("responses", "by status", family.clone());
        let resolved = Resolved::statuses();
        for status in [200, 200, 404, 599, 600, 600, 99] {
            resolved.inc(Resolved::status(status), || {
                family.get_or_create(&Status { status }).clone()
            });
        }
        let text = render(&registry);
        for line in [
            r#"responses_total{status="200"} 2"#,
            r#"responses_total{status="404"} 1"#,
            r#"responses_total{status="599"} 1"#,
            r#"responses_total{status="600"} 2"#,
            r#"responses_total{status="99"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
        assert!(!text.contains(r#"status="500""#), "{text}");
    }
}
