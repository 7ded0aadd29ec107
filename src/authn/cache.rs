//! Bounded caches whose entries live exactly as long as the token they came
//! from: verified principals and Backstage ownership lookups, keyed by the
//! SHA-256 of the token (never the token itself); and each connection's
//! memo of the last token it presented.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use sha2::{Digest, Sha256};

use super::Principal;

/// SHA-256 of a bearer token: the only form in which a token is kept.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A cached value and the moment it stops being valid.
#[derive(Clone)]
pub struct Expiring<T> {
    pub value: T,
    pub until: SystemTime,
}

impl<T> Expiring<T> {
    /// Still valid now. Checked on every read: the cache's own eviction is
    /// lazy, and a wall-clock jump must not extend a token's life.
    pub fn is_live(&self) -> bool {
        SystemTime::now() < self.until
    }
}

struct UntilExpiry;

impl<K, T> Expiry<K, Expiring<T>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Expiring<T>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(
            value
                .until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// A bounded map from token hash to a value that expires with the token.
pub struct TokenCache<T: Clone + Send + Sync + 'static> {
    inner: moka::sync::Cache<TokenHash, Expiring<T>>,
}

impl<T: Clone + Send + Sync + 'static> TokenCache<T> {
    pub fn new(max_entries: u64) -> Self {
        TokenCache {
            inner: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    pub fn get(&self, hash: &TokenHash) -> Option<T> {
        self.get_entry(hash).map(|entry| entry.value)
    }

    /// The live entry with its expiry.
    pub fn get_entry(&self, hash: &TokenHash) -> Option<Expiring<T>> {
        let entry = self.inner.get(hash)?;
        if entry.is_live() {
            Some(entry)
        } else {
            self.inner.invalidate(hash);
            None
        }
    }

    pub fn insert(&self, hash: TokenHash, value: T, until: SystemTime) {
        if SystemTime::now() < until {
            self.inner.insert(hash, Expiring { value, until });
        }
    }
}

/// Verified tokens → their principal.
pub type VerifiedTokens = TokenCache<Arc<Principal>>;

/// The last token one connection presented and the principal it verified
/// as. A client sends the same token on request after request of one
/// connection, and comparing it with the last one costs less than hashing
/// it for the shared cache. Unlike the shared caches this holds the token
/// itself, as the connection's own buffers do, and only for as long as the
/// connection lives; an entry is used only until the token's own expiry,
/// exactly as the shared cache's would be. A connection that carries many
/// callers' tokens (a backend's pool) only replaces it more often.
#[derive(Default)]
pub struct LastToken(Mutex<Option<Remembered>>);

struct Remembered {
    token: Vec<u8>,
    principal: Expiring<Arc<Principal>>,
}

impl LastToken {
    /// The principal `token` verified as, when it is this connection's last
    /// token and still live.
    pub(super) fn get(&self, token: &str) -> Option<Arc<Principal>> {
        // A poisoned memo is only a missed shortcut.
        let last = self.0.lock().ok()?;
        let last = last.as_ref()?;
        (same_bytes(&last.token, token.as_bytes()) && last.principal.is_live())
            .then(|| Arc::clone(&last.principal.value))
    }

    pub(super) fn remember(&self, token: &str, principal: Expiring<Arc<Principal>>) {
        let Ok(mut last) = self.0.lock() else {
            return;
        };
        match last.as_mut() {
            // Another token in place of the last: its buffer is reused (a
            // pool's connection carries many callers' tokens in turn).
            Some(last) => {
                last.token.clear();
                last.token.extend_from_slice(token.as_bytes());
                last.principal = principal;
            }
            None => {
                *last = Some(Remembered {
                    token: token.as_bytes().to_vec(),
                    principal,
                })
            }
        }
    }
}

impl std::fmt::Debug for LastToken {
    /// Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LastToken { .. }")
    }
}

/// Equal bytes, compared in time that depends only on the lengths (another
/// caller's token may be the one remembered).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Seconds since the epoch → `SystemTime`, saturating.
pub fn epoch(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_rechecked_on_read() {
        let cache: TokenCache<u32> = TokenCache::new(10);
        let h = token_hash("t");
        cache.insert(h, 1, SystemTime::now() + Duration::from_secs(60));
        assert_eq!(cache.get(&h), Some(1));
        cache.insert(h, 2, SystemTime::now() - Duration::from_secs(1));
        assert_eq!(cache.get(&h), Some(1), "an expired value is never stored");
        let live = Expiring {
            value: 3,
            until: SystemTime::now() - Duration::from_secs(1),
        };
        assert!(!live.is_live());
    }

    fn principal(subject: &str) -> Arc<Principal> {
        Arc::new(Principal::new(
            "https://issuer.example".into(),
            subject.into(),
            None,
            Vec::new(),
            serde_json::Map::new(),
        ))
    }

    #[test]
    fn last_token_answers_only_for_the_same_live_token() {
        let last = LastToken::default();
        assert!(last.get("aaa.bbb.ccc").is_none(), "nothing remembered yet");
        let later = SystemTime::now() + Duration::from_secs(60);
        last.remember(
            "aaa.bbb.ccc",
            Expiring {
                value: principal("alice"),
                until: later,
            },
        );
        let hit = last.get("aaa.bbb.ccc").expect("the same token");
        assert_eq!(hit.subject, "alice");
        for other in [
            "aaa.bbb.ccd",
            "aaa.bbb.cc",
            "aaa.bbb.ccc.",
            "baa.bbb.ccc",
            "",
        ] {
            assert!(last.get(other).is_none(), "{other:?} is another token");
        }
        // Another caller's token on the same connection replaces it.
        last.remember(
            "ddd.eee.fff",
            Expiring {
                value: principal("bob"),
                until: later,
            },
        );
        assert!(last.get("aaa.bbb.ccc").is_none());
        assert_eq!(last.get("ddd.eee.fff").expect("bob").subject, "bob");
        // An expired token is never answered for, however recently seen.
        last.remember(
            "ddd.eee.fff",
            Expiring {
                value: principal("bob"),
                until: SystemTime::now() - Duration::from_secs(1),
            },
        );
        assert!(last.get("ddd.eee.fff").is_none());
        assert_eq!(format!("{last:?}"), "LastToken { .. }");
    }

    #[test]
    fn hash_differs_per_token() {
        assert_ne!(token_hash("a"), token_hash("b"));
    }
}
