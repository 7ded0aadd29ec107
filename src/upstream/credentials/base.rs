//! firegate's own Google identity, minted by Google's `google-cloud-auth`
//! crate (ADC, key file, metadata server), with failures made observable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::{ArcSwap, ArcSwapOption};
use google_cloud_auth::credentials::{self as gca, AccessTokenCredentials};
use http::HeaderValue;
use tokio::time::Instant;

use super::CredentialsError;
use super::config::{BaseCredentials, CredentialsSettings};

/// A permanent error stops `google-cloud-auth`'s refresh task for good (it
/// never retries), so the credentials are rebuilt — at most this often.
const REBUILD_AFTER: Duration = Duration::from_secs(10);

/// How to (re)build the `google-cloud-auth` credentials.
#[derive(Clone)]
enum Recipe {
    Adc,
    Key(serde_json::Value),
    Metadata(Option<String>),
}

/// The last header built, so a cache hit costs one comparison, not a parse.
struct Header {
    token: String,
    value: HeaderValue,
}

#[derive(Default)]
struct Health {
    ever_minted: bool,
    last_error: Option<CredentialsError>,
    rebuilt_at: Option<Instant>,
}

/// The base credentials: `google-cloud-auth` mints, caches and refreshes
/// them; this wrapper records every failure and recovers from permanent ones.
pub struct GoogleBase {
    credentials: ArcSwap<AccessTokenCredentials>,
    recipe: Recipe,
    scopes: Vec<String>,
    /// The account the tokens belong to, for the audit line.
    pub account: String,
    header: ArcSwapOption<Header>,
    /// Set while the last call succeeded: spares the hot path the lock.
    healthy: AtomicBool,
    health: Mutex<Health>,
}

impl GoogleBase {
    /// Build from config. Must run inside a Tokio runtime: the crate starts
    /// its refresh task (and the first fetch) at once.
    pub fn new(settings: &CredentialsSettings) -> anyhow::Result<Self> {
        let (recipe, account) = match &settings.base {
            BaseCredentials::ServiceAccountKey(path) => {
                let key = read_json(path)?;
                let account = key_account(&key)
                    .with_context(|| format!("{}: not a service-account key", path.display()))?;
                (Recipe::Key(key), account)
            }
            BaseCredentials::Metadata(endpoint) => (
                Recipe::Metadata(endpoint.clone()),
                METADATA_ACCOUNT.to_owned(),
            ),
            BaseCredentials::Adc | BaseCredentials::Emulator => (Recipe::Adc, adc_account()),
        };
        let scopes = settings.scopes.clone();
        let credentials = build(&recipe, &scopes)?;
        Ok(GoogleBase {
            credentials: ArcSwap::from_pointee(credentials),
            recipe,
            scopes,
            account,
            header: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            health: Mutex::new(Health::default()),
        })
    }

    /// The current base token as an `Authorization` value.
    pub async fn authorization(&self) -> Result<HeaderValue, CredentialsError> {
        let credentials = self.credentials.load_full();
        match credentials.access_token().await {
            Ok(token) => {
                let value = self.header_for(token.token)?;
                if self.healthy.load(Ordering::Acquire) {
                    return Ok(value);
                }
                let mut health = self.health_lock();
                self.healthy.store(true, Ordering::Release);
                if health.last_error.take().is_some() {
                    tracing::info!(account = %self.account, "base Google credentials recovered");
                }
                health.ever_minted = true;
                Ok(value)
            }
            Err(e) => {
                // `google-cloud-auth` only fails once its cached token (if
                // any) has expired: there is no valid base token now.
                let error = CredentialsError::BaseUnavailable;
                let (newly_failing, rebuild) = {
                    let mut health = self.health_lock();
                    self.healthy.store(false, Ordering::Release);
                    let newly_failing = health.last_error.is_none();
                    health.last_error = Some(error.clone());
                    let due = health
                        .rebuilt_at
                        .is_none_or(|at| at.elapsed() >= REBUILD_AFTER);
                    let rebuild = !e.is_transient() && due;
                    if rebuild {
                        health.rebuilt_at = Some(Instant::now());
                    }
                    (newly_failing, rebuild)
                };
                // Warn on the change, not on every request of an outage.
                if newly_failing {
                    tracing::warn!(account = %self.account, error = %e, "base Google credentials failed");
                } else {
                    tracing::debug!(account = %self.account, error = %e, "base Google credentials still failing");
                }
                if rebuild {
                    match build(&self.recipe, &self.scopes) {
                        Ok(fresh) => self.credentials.store(fresh.into()),
                        Err(e) => tracing::warn!(error = %e, "rebuilding base credentials failed"),
                    }
                }
                Err(error)
            }
        }
    }

    fn header_for(&self, token: String) -> Result<HeaderValue, CredentialsError> {
        if let Some(last) = self.header.load().as_ref()
            && last.token == token
        {
            return Ok(last.value.clone());
        }
        let value = bearer(&token)?;
        self.header.store(Some(
            Header {
                token,
                value: value.clone(),
            }
            .into(),
        ));
        Ok(value)
    }

    /// Why there is no base token, if there is none.
    pub fn not_ready(&self) -> Option<String> {
        let health = self.health_lock();
        match (&health.last_error, health.ever_minted) {
            (Some(e), _) => Some(format!(
                "upstream credentials: no token for {} ({})",
                self.account,
                e.reason()
            )),
            (None, false) => Some(format!(
                "upstream credentials: no token for {} yet",
                self.account
            )),
            (None, true) => None,
        }
    }

    fn health_lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `Bearer <token>`, marked sensitive so it is never printed by `http`.
pub fn bearer(token: &str) -> Result<HeaderValue, CredentialsError> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| CredentialsError::MalformedTokenResponse)?;
    value.set_sensitive(true);
    Ok(value)
}

fn build(recipe: &Recipe, scopes: &[String]) -> anyhow::Result<AccessTokenCredentials> {
    let built = match recipe {
        Recipe::Adc => gca::Builder::default()
            .with_scopes(scopes.iter().cloned())
            .build_access_token_credentials(),
        Recipe::Key(key) => gca::service_account::Builder::new(key.clone())
            .with_access_specifier(gca::service_account::AccessSpecifier::from_scopes(
                scopes.iter().cloned(),
            ))
            .build_access_token_credentials(),
        Recipe::Metadata(endpoint) => endpoint
            .iter()
            .fold(gca::mds::Builder::default(), |b, e| b.with_endpoint(e))
            .with_scopes(scopes.iter().cloned())
            .build_access_token_credentials(),
    };
    built.context("building Google credentials")
}

/// The metadata server's account, by the name it is known to it.
const METADATA_ACCOUNT: &str = "metadata:default";

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // The parse error names a line and column only, never the key's contents.
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

fn key_account(key: &serde_json::Value) -> Option<String> {
    (key.get("type")?.as_str()? == "service_account")
        .then(|| key.get("client_email")?.as_str().map(str::to_owned))
        .flatten()
}

/// Name the account ADC will use, for audit lines, by looking at the same
/// file `google-cloud-auth` will load (AIP-4110).
fn adc_account() -> String {
    let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| {
                PathBuf::from(home).join(".config/gcloud/application_default_credentials.json")
            })
        });
    let Some(json) = path.and_then(|p| read_json(&p).ok()) else {
        return METADATA_ACCOUNT.to_owned();
    };
    let impersonated = json
        .get("service_account_impersonation_url")
        .and_then(|u| u.as_str())
        .and_then(|u| u.rsplit('/').next())
        .and_then(|last| last.split(':').next())
        .map(str::to_owned);
    if let Some(account) = impersonated {
        return account;
    }
    match json.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => key_account(&json).unwrap_or_else(|| "service_account".into()),
        Some(other) => other.to_owned(),
        None => "adc".to_owned(),
    }
}
