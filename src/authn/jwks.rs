//! One issuer's signing keys: fetched at start, refreshed on a schedule that
//! honours `Cache-Control` within bounds, and on demand for an unknown `kid`
//! — single-flight and rate-limited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use aws_lc_rs::signature::ParsedPublicKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::KeySource;
use super::metrics::AuthnMetrics;

/// Largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A public key from the issuer's JWKS.
pub struct Key {
    /// The `alg` the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
    /// The key as aws-lc parsed it, once, for each algorithm of its family
    /// it can verify: a first sight then pays the signature check alone,
    /// not building the RSA key (or decoding the EC point) again each time,
    /// as verifying with `key` does. Empty for a shared secret.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl Key {
    pub fn new(alg: Option<Algorithm>, key: DecodingKey) -> Key {
        let parsed = parse_for_each_algorithm(alg, &key);
        Key { alg, key, parsed }
    }

    /// The key parsed for `alg`, when aws-lc could parse it so; `None`
    /// leaves the check to jsonwebtoken with [`Key::key`], which then
    /// refuses it as it always did.
    pub fn parsed(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, p)| p)
    }
}

/// The same aws-lc algorithm jsonwebtoken's aws-lc verifier uses for each
/// JWS `alg` (its `crypto::aws_lc`), so that nothing is accepted that it
/// would refuse; only the pinned `alg` when the JWK names one.
fn parse_for_each_algorithm(
    pinned: Option<Algorithm>,
    key: &DecodingKey,
) -> Vec<(Algorithm, ParsedPublicKey)> {
    use aws_lc_rs::signature as sig;
    use jsonwebtoken::{AlgorithmFamily, DecodingKeyKind};
    let rsa: [(Algorithm, &'static sig::RsaParameters); 6] = [
        (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
        (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
        (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
        (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
        (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
        (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
    ];
    let others: [(Algorithm, &'static dyn sig::VerificationAlgorithm); 3] = [
        (Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED),
        (Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED),
        (Algorithm::EdDSA, &sig::ED25519),
    ];
    let wanted = |alg: Algorithm| pinned.is_none_or(|p| p == alg) && alg.family() == key.family();
    let mut out = Vec::new();
    match (key.family(), key.kind()) {
        (AlgorithmFamily::Hmac, _) => {}
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            let components = sig::RsaPublicKeyComponents { n, e };
            for (alg, params) in rsa.into_iter().filter(|(a, _)| wanted(*a)) {
                if let Ok(parsed) = components.to_parsed_public_key(params) {
                    out.push((alg, parsed));
                }
            }
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            for (alg, params) in rsa.into_iter().filter(|(a, _)| wanted(*a)) {
                if let Ok(parsed) = ParsedPublicKey::new(params, der) {
                    out.push((alg, parsed));
                }
            }
        }
        (_, DecodingKeyKind::SecretOrDer(bytes)) => {
            for (alg, params) in others.into_iter().filter(|(a, _)| wanted(*a)) {
                if let Ok(parsed) = ParsedPublicKey::new(params, bytes) {
                    out.push((alg, parsed));
                }
            }
        }
        (_, DecodingKeyKind::RsaModulusExponent { .. }) => {}
    }
    out
}

/// The keys held now.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`; used only for tokens without one.
    anonymous: Vec<Arc<Key>>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            // Without a kid there is nothing to choose by: only an issuer
            // with a single key is unambiguous.
            None if self.len() == 1 => self
                .by_kid
                .values()
                .chain(self.anonymous.iter())
                .next()
                .cloned(),
            None => None,
        }
    }

    /// Parse a JWKS document, skipping keys that cannot verify signatures
    /// (encryption keys, unsupported types, and symmetric `oct` keys: a
    /// published secret is no secret). An empty `keys` list is a valid,
    /// empty set — a fresh Backstage publishes one until its first sign-in
    /// and again once its keys age out — but a list with no usable key is
    /// an issuer misconfigured, not one that has nothing to say.
    pub fn parse(body: &[u8]) -> Result<KeySet, FetchError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(body).map_err(|_| FetchError::NotAJwks)?;
        let published = doc.keys.len();
        let mut set = KeySet::default();
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
                || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
            {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let key = Arc::new(Key::new(alg, key));
            match jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid, key);
                }
                None => set.anonymous.push(key),
            }
        }
        if published > 0 && set.is_empty() {
            return Err(FetchError::NoUsableKey);
        }
        Ok(set)
    }
}

/// Why a fetch failed (for logs; never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Answer(#[from] super::fetch::AnswerError),
    #[error("not a JWKS document")]
    NotAJwks,
    #[error("discovery document is not valid OpenID provider metadata (no `jwks_uri`?)")]
    NoJwksUri,
    #[error("discovery document names issuer `{0}`, not the configured one")]
    DiscoveryIssuerMismatch(String),
    #[error("JWKS holds no usable signing key")]
    NoUsableKey,
}

/// What a lookup found.
pub enum Lookup {
    Found(Arc<Key>),
    /// Keys are loaded but none matches.
    Missing,
    /// Keys have never loaded.
    NotLoaded,
    /// Keys are loaded but none matches, and the refresh that might have
    /// found it failed: the issuer, not the token, is the problem.
    Unreachable,
}

/// Refresh state, behind the single-flight lock.
struct RefreshState {
    jwks_uri: Option<String>,
    /// Last fetch caused by an unknown `kid`, for the rate limit.
    last_on_demand: Option<Instant>,
    /// The last fetch failed: an unknown `kid` may be a key not fetched.
    failing: bool,
}

/// One issuer's key cache.
pub struct Jwks {
    name: String,
    issuer: String,
    source: KeySource,
    client: reqwest::Client,
    keys: ArcSwapOption<KeySet>,
    loaded: AtomicBool,
    refresh: Mutex<RefreshState>,
    min_refresh: Duration,
    max_refresh: Duration,
    metrics: AuthnMetrics,
}

impl Jwks {
    pub fn new(
        name: String,
        issuer: String,
        source: KeySource,
        client: reqwest::Client,
        min_refresh: Duration,
        max_refresh: Duration,
        metrics: AuthnMetrics,
    ) -> Arc<Jwks> {
        Arc::new(Jwks {
            name,
            issuer,
            source,
            client,
            keys: ArcSwapOption::empty(),
            loaded: AtomicBool::new(false),
            refresh: Mutex::new(RefreshState {
                jwks_uri: None,
                last_on_demand: None,
                failing: false,
            }),
            min_refresh,
            max_refresh,
            metrics,
        })
    }

    /// Count a signing-key lookup in the held keys (hit or miss).
    pub fn count_lookup(&self, hit: bool) {
        self.metrics.key_lookup(hit);
    }

    pub fn metrics(&self) -> AuthnMetrics {
        self.metrics.clone()
    }

    /// Whether keys have loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The key for `kid` from the keys held now; never waits.
    pub fn lookup(&self, kid: Option<&str>) -> Lookup {
        match &*self.keys.load() {
            None => Lookup::NotLoaded,
            Some(set) => set.find(kid).map_or(Lookup::Missing, Lookup::Found),
        }
    }

    /// The key for an unknown `kid`, after at most one refresh. Concurrent
    /// callers share one fetch (they wait on the lock, then find the new
    /// keys); beyond one fetch per `min_interval` the answer is `Missing`
    /// without contacting the issuer, so a flood of random `kid`s cannot
    /// hammer it. While the issuer's last fetch failed, a `kid` not held is
    /// `Unreachable`: it may be a key that could not be fetched.
    pub async fn refresh_for(&self, kid: Option<&str>) -> Lookup {
        let mut state = self.refresh.lock().await;
        match self.lookup(kid) {
            Lookup::Found(key) => return Lookup::Found(key),
            Lookup::Missing | Lookup::NotLoaded | Lookup::Unreachable => {}
        }
        let now = Instant::now();
        if state
            .last_on_demand
            .is_some_and(|last| now.duration_since(last) < self.min_refresh)
        {
            self.metrics.jwks_refresh_limited(&self.name);
        } else {
            state.last_on_demand = Some(now);
            // Failure is already logged and counted; the held keys stay.
            let _ = self.fetch(&mut state).await;
        }
        match self.lookup(kid) {
            Lookup::Missing if state.failing => Lookup::Unreachable,
            lookup => lookup,
        }
    }

    /// Start the background refresher; it stops when the `Jwks` is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(refresh_loop(weak));
    }

    /// Fetch now, under the lock: returns the `max-age` the issuer asked
    /// for, if any.
    async fn scheduled_refresh(&self) -> Result<Option<Duration>, FetchError> {
        let mut state = self.refresh.lock().await;
        self.fetch(&mut state).await
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<Option<Duration>, FetchError> {
        let result = self.fetch_inner(state).await;
        state.failing = result.is_err();
        match &result {
            Ok(_) => self.metrics.jwks_fetch(&self.name, "ok"),
            Err(e) => {
                self.metrics.jwks_fetch(&self.name, "error");
                tracing::warn!(issuer = %self.name, error = %e, "JWKS refresh failed; keeping the keys held");
            }
        }
        result
    }

    async fn fetch_inner(&self, state: &mut RefreshState) -> Result<Option<Duration>, FetchError> {
        let uri = match (&self.source, &state.jwks_uri) {
            (KeySource::Jwks(uri), _) => uri.clone(),
            (KeySource::Discovery(_), Some(uri)) => uri.clone(),
            (KeySource::Discovery(doc), None) => {
                let uri = self.discover(doc).await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let (body, max_age) = get(&self.client, &uri).await?;
        let set = KeySet::parse(&body)?;
        tracing::debug!(issuer = %self.name, keys = set.len(), "JWKS loaded");
        self.keys.store(Some(Arc::new(set)));
        self.loaded.store(true, Ordering::Release);
        Ok(max_age)
    }

    /// Read `jwks_uri` from the discovery document, checking that it is
    /// this issuer's (OpenID Connect Discovery 1.0 §4.3). The document is
    /// fetched with firegate's own client (size limit, timeout) and read as
    /// `openidconnect`'s typed provider metadata, so a document missing a
    /// field the specification requires is refused.
    async fn discover(&self, doc_uri: &str) -> Result<String, FetchError> {
        let (body, _) = get(&self.client, doc_uri).await?;
        let doc: openidconnect::core::CoreProviderMetadata =
            serde_json::from_slice(&body).map_err(|_| FetchError::NoJwksUri)?;
        if doc.issuer().as_str() != self.issuer {
            return Err(FetchError::DiscoveryIssuerMismatch(
                doc.issuer().to_string(),
            ));
        }
        Ok(doc.jwks_uri().to_string())
    }

    /// Delay before the next scheduled fetch.
    fn next_delay(
        &self,
        outcome: &Result<Option<Duration>, FetchError>,
        backoff: &mut Duration,
    ) -> Duration {
        match outcome {
            Ok(max_age) => {
                *backoff = INITIAL_BACKOFF;
                max_age
                    .unwrap_or(self.max_refresh)
                    .clamp(self.min_refresh, self.max_refresh)
            }
            Err(_) => {
                // Until keys load, retry quickly (readiness waits on it);
                // after that, held keys keep working and `min_interval` paces
                // the retries.
                let ceiling = if self.is_loaded() {
                    self.min_refresh.max(INITIAL_BACKOFF)
                } else {
                    MAX_STARTUP_BACKOFF.min(self.max_refresh.max(INITIAL_BACKOFF))
                };
                let delay = (*backoff).min(ceiling);
                *backoff = (*backoff * 2).min(ceiling);
                delay
            }
        }
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_STARTUP_BACKOFF: Duration = Duration::from_secs(30);

async fn refresh_loop(weak: Weak<Jwks>) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let Some(jwks) = weak.upgrade() else { return };
        let outcome = jwks.scheduled_refresh().await;
        let delay = jwks.next_delay(&outcome, &mut backoff);
        drop(jwks);
        tokio::time::sleep(delay).await;
    }
}

/// GET a document, bounded in size; returns the body and `Cache-Control:
/// max-age`.
async fn get(
    client: &reqwest::Client,
    uri: &str,
) -> Result<(bytes::Bytes, Option<Duration>), FetchError> {
    let (headers, body) = super::fetch::answer(client.get(uri), MAX_DOCUMENT_BYTES).await?;
    let max_age = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age);
    Ok((body, max_age))
}

/// `max-age=N` from one `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_among_directives() {
        assert_eq!(
            max_age("public, max-age=300, must-revalidate"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"s","k":"c2VjcmV0"},
            {"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","kid":"sig","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let set = KeySet::parse(doc).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.find(Some("sig")).is_some());
        assert!(set.find(Some("s")).is_none());
        // A single key serves a token without a kid.
        assert!(set.find(None).is_some());
    }

    #[test]
    fn keys_are_parsed_once_for_the_algorithms_of_their_family() {
        // RFC 7517 A.1's RSA key, with and without a pinned `alg`, and a
        // P-256 key.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let doc = format!(
            r#"{{"keys":[
            {{"kty":"RSA","kid":"rsa","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","kid":"rs384","alg":"RS384","n":"{n}","e":"AQAB"}},
            {{"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}
        ]}}"#
        );
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        let rsa = set.find(Some("rsa")).unwrap();
        for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
            assert!(rsa.parsed(alg).is_some(), "{alg:?}");
        }
        assert!(rsa.parsed(Algorithm::ES256).is_none());
        let pinned = set.find(Some("rs384")).unwrap();
        assert!(pinned.parsed(Algorithm::RS384).is_some());
        assert!(pinned.parsed(Algorithm::RS256).is_none());
        let ec = set.find(Some("ec")).unwrap();
        assert!(ec.parsed(Algorithm::ES256).is_some());
        // A P-256 point is no P-384 key: left to jsonwebtoken, which refuses it.
        assert!(ec.parsed(Algorithm::ES384).is_none());
        assert!(ec.parsed(Algorithm::RS256).is_none());
        let secret = Key::new(None, DecodingKey::from_secret(b"secret"));
        assert!(secret.parsed(Algorithm::HS256).is_none());
    }

    #[test]
    fn an_empty_key_list_is_a_set_but_only_unusable_keys_are_not() {
        let empty = KeySet::parse(br#"{"keys":[]}"#).expect("an empty JWKS is valid");
        assert!(empty.is_empty());
        assert!(empty.find(None).is_none());
        assert!(matches!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#),
            Err(FetchError::NoUsableKey)
        ));
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(matches!(KeySet::parse(b"{}"), Err(FetchError::NotAJwks)));
        assert!(matches!(
            KeySet::parse(b"<html>"),
            Err(FetchError::NotAJwks)
        ));
    }
}
