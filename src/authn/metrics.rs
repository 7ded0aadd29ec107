//! Authentication metrics. Labels are issuer names from the config and
//! fixed reasons: never anything taken from a token.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::{CacheLookups, registered};

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

/// Handles to the registered metrics (cheap to clone).
#[derive(Clone, Default)]
pub struct AuthnMetrics {
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_refresh_limited: Family<IssuerLabels, Counter>,
    requests: Family<OutcomeLabels, Counter>,
    /// Signing-key cache: `hit` (the kid was held), `miss` (a refresh was asked).
    key_lookups: CacheLookups,
    /// `requests{outcome="cached"}`, counted on nearly every request.
    cached: Counter,
}

impl AuthnMetrics {
    pub fn register(registry: &mut Registry) -> AuthnMetrics {
        let sub = registry.sub_registry_with_prefix("authn");
        let jwks_fetches = registered(
            sub,
            "jwks_fetches",
            "JWKS and discovery fetches per issuer, by outcome (ok, error)",
        );
        let jwks_refresh_limited = registered(
            sub,
            "jwks_refresh_rate_limited",
            "Unknown-kid refreshes skipped by the per-issuer rate limit",
        );
        let requests: Family<OutcomeLabels, Counter> = registered(
            sub,
            "requests",
            "Authentication outcomes: `cached`, `verified`, or the refusal reason",
        );
        let key_lookups = CacheLookups::register(
            sub,
            "jwks_key_lookups",
            "Signing-key lookups in the held JWKS by result (hit, miss: a refresh was asked)",
        );
        // Pre-created: the hot path increments without a label lookup.
        let cached = requests
            .get_or_create(&OutcomeLabels { outcome: "cached" })
            .clone();
        AuthnMetrics {
            jwks_fetches,
            jwks_refresh_limited,
            requests,
            key_lookups,
            cached,
        }
    }

    /// A verified-token cache hit.
    pub fn cached(&self) {
        self.cached.inc();
    }

    pub fn key_lookup(&self, hit: bool) {
        self.key_lookups.count(hit);
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
