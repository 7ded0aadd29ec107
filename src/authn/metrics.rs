//! Authentication metrics. Labels are issuer names from the config and
//! fixed reasons: never anything taken from a token.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    issuer: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Handles to the registered metrics (cheap to clone).
#[derive(Clone, Default)]
pub struct AuthnMetrics {
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_refresh_limited: Family<IssuerLabels, Counter>,
    requests: Family<OutcomeLabels, Counter>,
    /// Signing-key cache: `hit` (the kid was held), `miss` (a refresh was asked).
    key_hits: Counter,
    key_misses: Counter,
    /// `requests{outcome="cached"}`, counted on nearly every request.
    cached: Counter,
}

impl AuthnMetrics {
    pub fn register(registry: &mut Registry) -> AuthnMetrics {
        let mut metrics = AuthnMetrics::default();
        let sub = registry.sub_registry_with_prefix("authn");
        sub.register(
            "jwks_fetches",
            "JWKS and discovery fetches per issuer, by outcome (ok, error)",
            metrics.jwks_fetches.clone(),
        );
        sub.register(
            "jwks_refresh_rate_limited",
            "Unknown-kid refreshes skipped by the per-issuer rate limit",
            metrics.jwks_refresh_limited.clone(),
        );
        sub.register(
            "requests",
            "Authentication outcomes: `cached`, `verified`, or the refusal reason",
            metrics.requests.clone(),
        );
        let keys = Family::<ResultLabels, Counter>::default();
        sub.register(
            "jwks_key_lookups",
            "Signing-key lookups in the held JWKS by result (hit, miss: a refresh was asked)",
            keys.clone(),
        );
        // Pre-created: the hot path increments without a label lookup.
        metrics.key_hits = keys.get_or_create(&ResultLabels { result: "hit" }).clone();
        metrics.key_misses = keys.get_or_create(&ResultLabels { result: "miss" }).clone();
        metrics.cached = metrics
            .requests
            .get_or_create(&OutcomeLabels { outcome: "cached" })
            .clone();
        metrics
    }

    /// A verified-token cache hit.
    pub fn cached(&self) {
        self.cached.inc();
    }

    pub fn key_lookup(&self, hit: bool) {
        if hit {
            self.key_hits.inc();
        } else {
            self.key_misses.inc();
        }
    }

    pub fn jwks_fetch(&self, issuer: &str, outcome: &'static str) {
        self.jwks_fetches
            .get_or_create(&FetchLabels {
                issuer: issuer.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn jwks_refresh_limited(&self, issuer: &str) {
        self.jwks_refresh_limited
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_string(),
            })
            .inc();
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
