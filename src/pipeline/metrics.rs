//! Request metrics: requests by RPC, decision and status class, and latency
//! histograms for the whole request and each step. Every label value is a
//! fixed string (no paths, subjects or tokens), and every histogram is
//! created up front, so the hot path allocates nothing for labels.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::Outcome;
use crate::metrics::Resolved;
use crate::model::Method;

/// A timed step of [`super::Pipeline::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Authenticate,
    Classify,
    /// The stored-document read for rules that read `resource`.
    ReadStored,
    Decide,
    Token,
    /// Until the upstream's response head (the body streams after).
    UpstreamHead,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Authenticate,
        Step::Classify,
        Step::ReadStored,
        Step::Decide,
        Step::Token,
        Step::UpstreamHead,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Authenticate => "authenticate",
            Step::Classify => "classify",
            Step::ReadStored => "read_stored",
            Step::Decide => "decide",
            Step::Token => "token",
            Step::UpstreamHead => "upstream_head",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// A Firestore RPC name, or `none` when the request was refused before
    /// it was routed.
    rpc: &'static str,
    decision: &'static str,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

/// Counter slots: `none` and each RPC (an RPC past them is still counted,
/// through the family); allow, deny, error; 1xx to 5xx.
const RPC_SLOTS: usize = 16;
const DECISIONS: usize = 3;
const STATUS_CLASSES: usize = 5;

/// 0.25 ms to ~8 s, doubling.
fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 16)
}

/// Handles to the request metrics (cheap to clone).
#[derive(Clone)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    /// `requests` by rpc, decision and status class, counted without
    /// hashing their labels.
    by_labels: Resolved,
    duration: Histogram,
    steps: [Histogram; Step::ALL.len()],
}

impl RequestMetrics {
    pub fn register(registry: &mut Registry) -> RequestMetrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new(buckets());
        let steps_family =
            Family::<StepLabels, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
        let steps = Step::ALL.map(|step| {
            steps_family
                .get_or_create(&StepLabels { step: step.name() })
                .clone()
        });
        registry.register(
            "requests",
            "Proxied requests by RPC, decision (allow, deny, error) and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request's arrival to its response head",
            duration.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time spent in each pipeline step (authenticate, classify, decide, token, upstream_head)",
            steps_family,
        );
        RequestMetrics {
            requests,
            by_labels: Resolved::new(RPC_SLOTS * DECISIONS * STATUS_CLASSES),
            duration,
            steps,
        }
    }

    /// One answered request.
    pub fn request(&self, rpc: Option<Method>, decision: Outcome, status: u16, took: Duration) {
        let (class, status_class) = status_class(status);
        let slot = rpc.map_or(0, |m| m as usize + 1);
        let index = (slot < RPC_SLOTS)
            .then_some((slot * DECISIONS + decision as usize) * STATUS_CLASSES + class);
        self.by_labels.inc(index, || {
            let labels = RequestLabels {
                rpc: rpc.map_or("none", Method::as_str),
                decision: decision.as_str(),
                status_class,
            };
            self.requests.get_or_create(&labels).clone()
        });
        self.duration.observe(took.as_secs_f64());
    }

    /// `step` took from `started` until now.
    pub fn step(&self, step: Step, started: Instant) {
        self.observe(step, started.elapsed());
    }

    /// Steps timed one after another from now: see [`Laps`].
    pub fn laps(&self) -> Laps<'_> {
        Laps {
            metrics: self,
            mark: Instant::now(),
        }
    }

    fn observe(&self, step: Step, took: Duration) {
        // `ALL` lists the steps in declaration order, so the discriminant
        // is the index.
        if let Some(histogram) = self.steps.get(step as usize) {
            histogram.observe(took.as_secs_f64());
        }
    }
}

/// The steps of one request, timed with one clock read at each boundary:
/// a step runs from the end of the step before it (the little between two
/// steps, such as the principal's admission, counts to the later one).
pub struct Laps<'a> {
    metrics: &'a RequestMetrics,
    mark: Instant,
}

impl Laps<'_> {
    /// `step` ran from the last boundary until now.
    pub fn lap(&mut self, step: Step) {
        let now = Instant::now();
        self.metrics
            .observe(step, now.saturating_duration_since(self.mark));
        self.mark = now;
    }

    /// The next step starts now (after work timed on its own).
    pub fn restart(&mut self) {
        self.mark = Instant::now();
    }
}

/// The status class and its slot (one slot per label value, by construction).
fn status_class(status: u16) -> (usize, &'static str) {
    match status {
        100..=199 => (0, "1xx"),
        200..=299 => (1, "2xx"),
        300..=399 => (2, "3xx"),
        400..=499 => (3, "4xx"),
        _ => (4, "5xx"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fixed_strings_and_every_step_histogram_exists_before_use() {
        let mut registry = Registry::default();
        let metrics = RequestMetrics::register(&mut registry);
        metrics.request(
            Some(Method::Get),
            Outcome::Deny,
            403,
            Duration::from_millis(2),
        );
        metrics.request(None, Outcome::Error, 401, Duration::from_millis(1));
        metrics.request(None, Outcome::Error, 403, Duration::from_millis(1));
        metrics.request(
            Some(Method::Get),
            Outcome::Allow,
            404,
            Duration::from_millis(1),
        );
        metrics.request(
            Some(Method::Listen),
            Outcome::Allow,
            200,
            Duration::from_millis(1),
        );
        metrics.request(
            Some(Method::Get),
            Outcome::Deny,
            503,
            Duration::from_millis(1),
        );
        metrics.step(Step::Decide, Instant::now());
        let mut laps = metrics.laps();
        laps.lap(Step::Token);
        laps.lap(Step::Token);
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains(r#"requests_total{rpc="get",decision="deny",status_class="4xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"requests_total{rpc="none",decision="error",status_class="4xx"} 2"#),
            "{text}"
        );
        for line in [
            r#"requests_total{rpc="listen",decision="allow",status_class="2xx"} 1"#,
            r#"requests_total{rpc="get",decision="deny",status_class="5xx"} 1"#,
            r#"requests_total{rpc="get",decision="allow",status_class="4xx"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
        for step in Step::ALL {
            let count = format!(r#"step_duration_seconds_count{{step="{}"}}"#, step.name());
            assert!(text.contains(&count), "{count} missing: {text}");
        }
        assert!(
            text.contains(r#"step_duration_seconds_count{step="decide"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"step_duration_seconds_count{step="token"} 2"#),
            "{text}"
        );
        assert_eq!(status_class(503).1, "5xx");
        assert_eq!(status_class(204).1, "2xx");
        assert_eq!(status_class(99).1, "5xx");
    }
}
