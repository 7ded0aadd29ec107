//! Credential metrics: token fetches, refused requests, and whether each
//! account holds a valid token. Labels name accounts, never tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::CredentialsError;
use crate::metrics::{CacheLookups, registered};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Fetch {
    account: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    account: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Account {
    account: String,
}

pub struct Metrics {
    fetches: Family<Fetch, Counter>,
    refused: Family<Refusal, Counter>,
    valid: Family<Account, Gauge>,
    /// Token cache: `hit` (a held token served), `miss` (the caller waited for a fetch).
    lookups: CacheLookups,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let lookups = CacheLookups::register(
            registry,
            "upstream_token_cache_lookups",
            "Impersonated-token cache lookups by result (hit, miss: the request waited for a fetch)",
        );
        Metrics {
            fetches: registered(
                registry,
                "upstream_token_fetches",
                "Impersonated-token fetches from IAM Credentials, by account and result",
            ),
            refused: registered(
                registry,
                "upstream_token_refused",
                "Requests answered 503 for lack of an upstream token, by account and reason",
            ),
            valid: registered(
                registry,
                "upstream_token_valid",
                "1 while firegate holds a valid token for the account (base: its own identity)",
            ),
            lookups,
        }
    }

    pub fn refreshed(&self, account: &str, error: Option<&CredentialsError>) {
        let result = error.map_or("ok", CredentialsError::reason);
        self.fetches
            .get_or_create(&Fetch {
                account: account.to_owned(),
                result,
            })
            .inc();
    }

    pub fn cache_lookup(&self, hit: bool) {
        self.lookups.count(hit);
    }

    pub fn refused(&self, account: &str, error: &CredentialsError) {
        self.refused
            .get_or_create(&Refusal {
                account: account.to_owned(),
                reason: error.reason(),
            })
            .inc();
    }

    /// The validity gauge of `account`, to keep and set without a lookup
    /// (the base account's is set on every request).
    pub fn valid_gauge(&self, account: &str) -> Gauge {
        self.valid
            .get_or_create(&Account {
                account: account.to_owned(),
            })
            .clone()
    }

    pub fn account_valid(&self, account: &str, valid: bool) {
        self.valid_gauge(account).set(i64::from(valid));
    }
}
