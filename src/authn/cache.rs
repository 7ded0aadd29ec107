//! Bounded caches whose entries live exactly as long as the token they came
//! from: verified principals and Backstage ownership lookups, keyed by the
//! SHA-256 of the token (never the token itself).

use std::sync::Arc;
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
        let entry = self.inner.get(hash)?;
        if entry.is_live() {
            Some(entry.value)
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

    #[test]
    fn hash_differs_per_token() {
        assert_ne!(token_hash("a"), token_hash("b"));
    }
}
