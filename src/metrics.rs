//! Prometheus metrics, served on the admin listener at `/metrics`.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

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

/// A new metric, registered as `name`: the handle returned and the one
/// registered count the same series.
pub fn registered<M: Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// A counter family registered as `name` and labelled by `result`, with the
/// series of each of `results` made now: shown at 0 from the start, and
/// counted on the hot path without a label lookup.
pub fn counters_by_result<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    results: [&'static str; N],
) -> [Counter; N] {
    let family: Family<[(&'static str, &'static str); 1], Counter> =
        registered(registry, name, help);
    // One series per call: `get_or_create` holds the family's lock until
    // the end of its statement, and a second one inside it would wait for
    // it forever.
    results.map(|result| family.get_or_create(&[("result", result)]).clone())
}

/// A cache's lookups, counted by result: `hit` or `miss`.
#[derive(Clone, Default)]
pub struct CacheLookups {
    hit: Counter,
    miss: Counter,
}

impl CacheLookups {
    pub fn register(registry: &mut Registry, name: &str, help: &str) -> CacheLookups {
        let [hit, miss] = counters_by_result(registry, name, help, ["hit", "miss"]);
        CacheLookups { hit, miss }
    }

    pub fn count(&self, hit: bool) {
        if hit {
            self.hit.inc();
        } else {
            self.miss.inc();
        }
    }
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

    #[test]
    fn counters_by_result_are_shown_at_zero_and_count_their_series() {
        let mut registry = Registry::default();
        let [hit, miss] =
            counters_by_result(&mut registry, "lookups", "by result", ["hit", "miss"]);
        hit.inc();
        let text = render(&registry);
        assert!(text.contains(r#"lookups_total{result="hit"} 1"#), "{text}");
        assert!(text.contains(r#"lookups_total{result="miss"} 0"#), "{text}");
        miss.inc();
        assert!(render(&registry).contains(r#"lookups_total{result="miss"} 1"#));
    }
}
