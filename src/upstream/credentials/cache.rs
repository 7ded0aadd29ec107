//! One cached token per upstream account: refreshed ahead of expiry in the
//! background, single-flight, and kept while still valid when a refresh fails.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use rand::Rng;
use tokio::time::Instant;

use super::CredentialsError;

/// Refresh at least this long before expiry (plus jitter), so that a token
/// handed out is never about to lapse on its way to Firestore.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Spread refreshes of tokens minted together over this window.
const REFRESH_JITTER: Duration = Duration::from_secs(60);
/// After a failed background refresh, wait this long before the next try,
/// so an outage at the token endpoint is not hammered by every request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// A token as it came from the minting endpoint.
pub struct Minted {
    pub authorization: HeaderValue,
    pub expires_at: Instant,
}

/// A minted token with its refresh deadline.
pub struct Cached {
    pub authorization: HeaderValue,
    pub expires_at: Instant,
    refresh_at: Instant,
}

impl Cached {
    fn new(minted: Minted, now: Instant) -> Self {
        let lifetime = minted.expires_at.saturating_duration_since(now);
        let jitter = rand::rng().random_range(Duration::ZERO..=REFRESH_JITTER);
        // Short-lived tokens (tests, tight org policies) would otherwise be
        // "due" from birth and refresh on every request: cap at half-life.
        let ahead = (REFRESH_AHEAD + jitter).min(lifetime / 2);
        Cached {
            authorization: minted.authorization,
            expires_at: minted.expires_at,
            refresh_at: minted.expires_at - ahead,
        }
    }

    fn valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// The last failed attempt, kept for `not_ready` and for the callers that
/// waited on that attempt.
struct Failure {
    error: CredentialsError,
    retry_at: Instant,
}

/// The cache entry for one account.
pub struct Slot {
    current: ArcSwapOption<Cached>,
    /// Held while a fetch is in flight: the single flight.
    in_flight: Arc<tokio::sync::Mutex<()>>,
    /// Bumped after every fetch, so waiters can tell one happened meanwhile.
    attempts: AtomicU64,
    failure: Mutex<Option<Failure>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            current: ArcSwapOption::empty(),
            in_flight: Arc::new(tokio::sync::Mutex::new(())),
            attempts: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }
}

/// What happened when a token was asked of a slot, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Served from the cache; no fetch started.
    Cached,
    /// Served from the cache; a background refresh was started.
    RefreshStarted,
    /// The caller waited for a fetch.
    Waited,
}

impl Slot {
    /// A valid token, fetching one with `fetch` if there is none. `fetch` runs
    /// at most once at a time per slot, in the background while the current
    /// token is still valid.
    pub async fn get<F, Fut>(
        self: &Arc<Self>,
        fetch: F,
    ) -> Result<(Arc<Cached>, Fetched), CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Minted, CredentialsError>> + Send + 'static,
    {
        let now = Instant::now();
        if let Some(cached) = self.current.load_full() {
            if now < cached.refresh_at {
                return Ok((cached, Fetched::Cached));
            }
            if cached.valid_at(now) {
                let started = self.refresh_in_background(now, fetch);
                let how = if started {
                    Fetched::RefreshStarted
                } else {
                    Fetched::Cached
                };
                return Ok((cached, how));
            }
        }
        self.fetch_now(fetch).await.map(|c| (c, Fetched::Waited))
    }

    /// No valid token: wait for the fetch in flight, or make one.
    async fn fetch_now<F, Fut>(&self, fetch: F) -> Result<Arc<Cached>, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Minted, CredentialsError>> + Send + 'static,
    {
        let seen = self.attempts.load(Ordering::Acquire);
        let _flight = self.in_flight.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            // Someone fetched while we queued: share their outcome rather
            // than repeat it (a burst at expiry makes one request upstream).
            if let Some(cached) = self.valid() {
                return Ok(cached);
            }
            if let Some(error) = self.last_error() {
                return Err(error);
            }
        }
        if self.backing_off(Instant::now())
            && let Some(error) = self.last_error()
        {
            // The endpoint just failed: answer at once instead of queueing
            // every request behind another doomed attempt.
            return Err(error);
        }
        let outcome = fetch().await;
        self.settle(outcome)
    }

    /// Start a refresh unless one is in flight or the last one failed too
    /// recently. Returns whether one was started.
    fn refresh_in_background<F, Fut>(self: &Arc<Self>, now: Instant, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Minted, CredentialsError>> + Send + 'static,
    {
        if self.backing_off(now) {
            return false;
        }
        let Ok(flight) = Arc::clone(&self.in_flight).try_lock_owned() else {
            return false;
        };
        let slot = Arc::clone(self);
        let pending = fetch();
        tokio::spawn(async move {
            let outcome = pending.await;
            // A failure is recorded (metrics, `not_ready`) and the valid
            // token stays in use until it expires.
            let _ = slot.settle(outcome);
            drop(flight);
        });
        true
    }

    fn settle(
        &self,
        outcome: Result<Minted, CredentialsError>,
    ) -> Result<Arc<Cached>, CredentialsError> {
        let now = Instant::now();
        let result = match outcome {
            Ok(minted) if minted.expires_at > now => {
                let cached = Arc::new(Cached::new(minted, now));
                self.current.store(Some(Arc::clone(&cached)));
                *self.failure_lock() = None;
                Ok(cached)
            }
            Ok(_) => Err(CredentialsError::ExpiredTokenIssued),
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            *self.failure_lock() = Some(Failure {
                error: error.clone(),
                retry_at: now + RETRY_AFTER_FAILURE,
            });
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// The cached token if it has not expired.
    pub fn valid(&self) -> Option<Arc<Cached>> {
        self.current
            .load_full()
            .filter(|cached| cached.valid_at(Instant::now()))
    }

    /// The error of the last attempt, if it failed.
    pub fn last_error(&self) -> Option<CredentialsError> {
        self.failure_lock().as_ref().map(|f| f.error.clone())
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.failure_lock()
            .as_ref()
            .is_some_and(|f| now < f.retry_at)
    }

    fn failure_lock(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        // A panic while holding this lock cannot leave the Option torn.
        self.failure.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn minted(name: &str, ttl: Duration) -> Minted {
        Minted {
            authorization: HeaderValue::from_str(&format!("Bearer {name}")).expect("ascii"),
            expires_at: Instant::now() + ttl,
        }
    }

    fn counting(
        calls: &Arc<AtomicUsize>,
        ttl: Duration,
    ) -> impl FnOnce() -> std::future::Ready<Result<Minted, CredentialsError>> {
        let calls = Arc::clone(calls);
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(minted(&format!("t{n}"), ttl)))
        }
    }

    fn failing() -> std::future::Ready<Result<Minted, CredentialsError>> {
        std::future::ready(Err(CredentialsError::ImpersonationUnavailable))
    }

    #[test]
    fn hour_tokens_are_due_five_to_six_minutes_ahead_with_jitter() {
        let now = Instant::now();
        let expires_at = now + Duration::from_secs(3600);
        let deadlines: Vec<Instant> = (0..20)
            .map(|_| {
                let cached = Cached::new(
                    Minted {
                        authorization: HeaderValue::from_static("Bearer x"),
                        expires_at,
                    },
                    now,
                );
                assert!(cached.refresh_at <= expires_at - REFRESH_AHEAD);
                assert!(cached.refresh_at >= expires_at - REFRESH_AHEAD - REFRESH_JITTER);
                cached.refresh_at
            })
            .collect();
        assert!(deadlines.iter().any(|d| *d != deadlines[0]), "jittered");
    }

    #[test]
    fn short_tokens_are_due_at_half_life() {
        let now = Instant::now();
        let cached = Cached::new(minted("x", Duration::from_secs(10)), now);
        let expires_at = cached.expires_at;
        assert_eq!(cached.refresh_at, expires_at - (expires_at - now) / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_token_is_served_while_one_refresh_runs_in_the_background() {
        let slot = Arc::new(Slot::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(4);
        let (first, how) = slot.get(counting(&calls, ttl)).await.expect("token");
        assert_eq!(how, Fetched::Waited);
        assert_eq!(first.authorization, "Bearer t0");
        let (_, how) = slot.get(counting(&calls, ttl)).await.expect("token");
        assert_eq!(how, Fetched::Cached);

        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (token, how) = slot.get(counting(&calls, ttl)).await.expect("token");
        assert_eq!(how, Fetched::RefreshStarted);
        assert_eq!(token.authorization, "Bearer t0");
        tokio::task::yield_now().await;
        let (token, how) = slot.get(counting(&calls, ttl)).await.expect("token");
        assert_eq!(how, Fetched::Cached);
        assert_eq!(token.authorization, "Bearer t1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_valid_token_then_fails_closed() {
        let slot = Arc::new(Slot::default());
        let calls = Arc::new(AtomicUsize::new(0));
        slot.get(counting(&calls, Duration::from_secs(4)))
            .await
            .expect("token");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (token, how) = slot.get(failing).await.expect("still valid");
        assert_eq!(how, Fetched::RefreshStarted);
        assert_eq!(token.authorization, "Bearer t0");
        tokio::task::yield_now().await;
        assert!(matches!(
            slot.last_error(),
            Some(CredentialsError::ImpersonationUnavailable)
        ));
        // Backing off: the next request does not retry at once.
        let (token, how) = slot.get(failing).await.expect("still valid");
        assert_eq!(how, Fetched::Cached);
        assert_eq!(token.authorization, "Bearer t0");

        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(slot.valid().is_none());
        let err = slot.get(failing).await.err().expect("expired");
        assert!(matches!(err, CredentialsError::ImpersonationUnavailable));
    }

    #[tokio::test]
    async fn an_already_expired_token_is_refused() {
        let slot = Arc::new(Slot::default());
        let expired = || std::future::ready(Ok(minted("old", Duration::ZERO)));
        let err = slot.get(expired).await.err().expect("refused");
        assert!(matches!(err, CredentialsError::ExpiredTokenIssued));
    }
}
