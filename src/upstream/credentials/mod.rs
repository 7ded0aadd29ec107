//! Google credentials for the `access_token` step: ADC, key files, the
//! metadata server, workload identity federation, per-rule impersonation.
//!
//! The base identity is minted by Google's `google-cloud-auth` crate, which
//! caches it and refreshes it in the background (single flight, 4 minutes
//! ahead of expiry) but hides the expiry time and gives up for good on a
//! permanent error; [`base`] records its failures and rebuilds it. Tokens
//! of impersonated accounts are minted here through IAM Credentials, whose
//! answer carries the expiry, and cached per account in [`cache`]: refreshed
//! in the background 5–6 minutes ahead (jittered), one fetch at a time, the
//! old token kept while still valid when a refresh fails.

mod base;
mod cache;
mod config;
mod impersonate;
mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use http::HeaderValue;

use base::GoogleBase;
use cache::{Fetched, Slot};
use impersonate::Impersonator;
use metrics::Metrics;

pub use config::{
    BaseCredentials, CredentialsConfig, CredentialsSettings, ImpersonationConfig,
    ImpersonationSettings, Source, is_loopback_http, is_service_account,
};

/// The account name audit lines show for the emulator's owner token.
pub const EMULATOR_ACCOUNT: &str = "emulator";

/// How often readiness is re-checked without traffic, so that a proxy taken
/// out of rotation for lack of a token notices when it can mint one again.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// A short-lived Google access token, ready to be sent upstream.
#[derive(Clone)]
pub struct AccessToken {
    /// The full `Authorization` header value, marked sensitive.
    pub authorization: HeaderValue,
    /// The service account (or `"emulator"`) the token belongs to, for the audit line.
    pub account: String,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Why no upstream token could be had. Clients always see the same 503
/// (`pipeline::respond`); the reason goes to the audit line. No variant
/// carries a token or key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    #[error("the base Google credentials have no valid token")]
    BaseUnavailable,
    #[error("`{account}` is not a service-account email")]
    InvalidAccount { account: String },
    #[error("IAM Credentials refused to impersonate (HTTP {status})")]
    ImpersonationDenied { status: u16 },
    #[error("IAM Credentials unreachable or failing")]
    ImpersonationUnavailable,
    #[error("the token endpoint answered something that is not a token")]
    MalformedTokenResponse,
    #[error("the token endpoint issued an already expired token")]
    ExpiredTokenIssued,
}

impl CredentialsError {
    /// A short, stable reason for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::BaseUnavailable => "credentials_base_unavailable",
            CredentialsError::InvalidAccount { .. } => "credentials_invalid_account",
            CredentialsError::ImpersonationDenied { .. } => "credentials_impersonation_denied",
            CredentialsError::ImpersonationUnavailable => "credentials_impersonation_unavailable",
            CredentialsError::MalformedTokenResponse => "credentials_malformed_token_response",
            CredentialsError::ExpiredTokenIssued => "credentials_expired_token_issued",
        }
    }
}

/// Mints (and caches) the Google tokens firegate forwards with.
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    source: Minter,
    /// The account of `access_token(None)`, for audit lines and metrics.
    base_account: String,
    base_valid: prometheus_client::metrics::gauge::Gauge,
    metrics: Metrics,
}

enum Minter {
    /// `Authorization: Bearer owner`, whatever the account.
    Emulator(AccessToken),
    Google(Box<Google>),
}

/// Real Google tokens: the base identity and the accounts it impersonates.
struct Google {
    base: GoogleBase,
    impersonator: Impersonator,
    /// One slot per impersonated account. Scopes are fixed per process, so
    /// the account alone is the (account, scopes) key.
    accounts: RwLock<HashMap<String, Arc<Slot>>>,
}

impl Credentials {
    /// Build from the validated `upstream.credentials`. Starts fetching the
    /// base token at once; `not_ready` says so until one arrives.
    pub async fn new(
        settings: &CredentialsSettings,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::register(registry);
        let source = match &settings.base {
            BaseCredentials::Emulator => {
                let mut authorization = HeaderValue::from_static("Bearer owner");
                authorization.set_sensitive(true);
                Minter::Emulator(AccessToken {
                    authorization,
                    account: EMULATOR_ACCOUNT.into(),
                })
            }
            BaseCredentials::Adc
            | BaseCredentials::ServiceAccountKey(_)
            | BaseCredentials::Metadata(_) => Minter::Google(Box::new(Google {
                base: GoogleBase::new(settings)?,
                impersonator: Impersonator::new(settings)?,
                accounts: RwLock::new(HashMap::new()),
            })),
        };
        let base_account = match &source {
            Minter::Emulator(token) => token.account.clone(),
            Minter::Google(google) => google.base.account.clone(),
        };
        let base_valid = metrics.valid_gauge(&base_account);
        if matches!(source, Minter::Emulator(_)) {
            base_valid.set(1);
        }
        let inner = Arc::new(Inner {
            source,
            base_account,
            base_valid,
            metrics,
        });
        if matches!(inner.source, Minter::Google(_)) {
            tokio::spawn(probe(Arc::downgrade(&inner)));
        }
        Ok(Credentials { inner })
    }

    /// Step 4: a token for `account` (`None`: the base credentials).
    pub async fn access_token(
        &self,
        account: Option<&str>,
    ) -> Result<AccessToken, CredentialsError> {
        let result = self.inner.access_token(account).await;
        if let Err(e) = &result {
            let account = account.unwrap_or(&self.inner.base_account);
            self.inner.metrics.refused(account, e);
        }
        result
    }

    /// Why no request can be forwarded now, if so (for `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        let Minter::Google(google) = &self.inner.source else {
            return None;
        };
        let mut reasons: Vec<String> = google.base.not_ready().into_iter().collect();
        for (account, slot) in read(&google.accounts).iter() {
            if slot.valid().is_none()
                && let Some(e) = slot.last_error()
            {
                reasons.push(format!(
                    "upstream credentials: no token for {account} ({})",
                    e.reason()
                ));
            }
        }
        reasons.sort();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

impl Inner {
    async fn access_token(
        self: &Arc<Self>,
        account: Option<&str>,
    ) -> Result<AccessToken, CredentialsError> {
        let (base, accounts) = match &self.source {
            Minter::Emulator(token) => return Ok(token.clone()),
            Minter::Google(google) => (&google.base, &google.accounts),
        };
        let Some(account) = account else {
            let authorization = base.authorization().await;
            self.base_valid.set(i64::from(authorization.is_ok()));
            return Ok(AccessToken {
                authorization: authorization?,
                account: base.account.clone(),
            });
        };
        if !is_service_account(account) {
            return Err(CredentialsError::InvalidAccount {
                account: account.to_owned(),
            });
        }
        let slot = slot(accounts, account);
        let mint = || {
            let inner = Arc::clone(self);
            let account = account.to_owned();
            async move { inner.mint(&account).await }
        };
        let (cached, how) = match slot.get(mint).await {
            Ok(got) => got,
            Err(e) => {
                self.metrics.account_valid(account, false);
                return Err(e);
            }
        };
        if how == Fetched::Waited {
            self.metrics.account_valid(account, true);
        }
        Ok(AccessToken {
            authorization: cached.authorization.clone(),
            account: account.to_owned(),
        })
    }

    /// One IAM Credentials round trip for `account`, counted.
    async fn mint(&self, account: &str) -> Result<cache::Minted, CredentialsError> {
        let Minter::Google(google) = &self.source else {
            return Err(CredentialsError::BaseUnavailable);
        };
        let result = match google.base.authorization().await {
            Ok(authorization) => google.impersonator.generate(authorization, account).await,
            Err(e) => Err(e),
        };
        self.metrics.refreshed(account, result.as_ref().err());
        result
    }
}

/// The slot for `account`, created on first use.
fn slot(accounts: &RwLock<HashMap<String, Arc<Slot>>>, account: &str) -> Arc<Slot> {
    if let Some(slot) = read(accounts).get(account) {
        return Arc::clone(slot);
    }
    let mut map = accounts.write().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(account.to_owned()).or_default())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Every writer only inserts whole entries: a poisoned map is intact.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Keep readiness and the validity gauges current without traffic: ask for
/// the base token (a cache hit when healthy) and retry accounts that have
/// no valid token.
async fn probe(inner: Weak<Inner>) {
    let mut first = true;
    loop {
        // The first round runs at once, so readiness follows the first token.
        if !std::mem::take(&mut first) {
            tokio::time::sleep(PROBE_EVERY).await;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Minter::Google(google) = &inner.source else {
            return;
        };
        let accounts = &google.accounts;
        let _ = inner.access_token(None).await;
        let states: Vec<(String, bool, bool)> = read(accounts)
            .iter()
            .map(|(account, slot)| {
                let valid = slot.valid().is_some();
                (account.clone(), valid, slot.last_error().is_some())
            })
            .collect();
        for (account, valid, failing) in states {
            inner.metrics.account_valid(&account, valid);
            // An account merely idle past its expiry is fetched on demand;
            // one whose last fetch failed is what keeps us not ready.
            if !valid && failing {
                let _ = inner.access_token(Some(&account)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<CredentialsError> {
        vec![
            CredentialsError::BaseUnavailable,
            CredentialsError::InvalidAccount {
                account: "x".into(),
            },
            CredentialsError::ImpersonationDenied { status: 403 },
            CredentialsError::ImpersonationUnavailable,
            CredentialsError::MalformedTokenResponse,
            CredentialsError::ExpiredTokenIssued,
        ]
    }

    #[test]
    fn every_error_has_its_own_reason() {
        let errors = every_error();
        let mut reasons: Vec<&str> = errors.iter().map(CredentialsError::reason).collect();
        for error in &errors {
            assert!(error.reason().starts_with("credentials_"));
        }
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), errors.len(), "reasons are distinct");
    }

    #[test]
    fn an_access_token_never_prints_its_value() {
        let token = AccessToken {
            authorization: HeaderValue::from_static("Bearer secret-value"),
            account: "a@b.iam.gserviceaccount.com".into(),
        };
        let printed = format!("{token:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        assert!(printed.contains("a@b.iam.gserviceaccount.com"));
    }
}
