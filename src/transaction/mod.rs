//! Transaction ids bound to the principal that began them, statelessly:
//! the proxy hands out the upstream id sealed with an HMAC and unseals it on
//! the way back, so any replica behind a load balancer can check it.
//!
//! A sealed id is `version ‖ expiry ‖ upstream id ‖ issuer tag ‖ owner tag`,
//! written as proto3-JSON `bytes` (standard base64), because clients decode
//! the id and re-encode it when they send it back. The issuer tag proves
//! firegate made the seal (for this database, id and expiry); the owner tag
//! binds it to the principal's fingerprint. Two tags let the audit line say
//! `transaction_forged` or `transaction_not_owned`.

mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use http::{Response, header};
use serde::Deserialize;
use sha2::Sha256;

use crate::authn::Fingerprint;
use crate::body::Body;
use crate::config::errors::ConfigErrors;
use crate::model::Database;

pub use stream::{SealError, SealStream};

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const MIN_KEY_LEN: usize = 32;
const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Shortest and longest accepted `ttl`: Firestore ends a transaction after
/// 270 s anyway; a day bounds how long a leaked seal is worth anything.
const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(86_400));

/// Raw `transactions:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionConfig {
    /// File holding the HMAC key shared by every replica (at least 32 bytes,
    /// used as written, trailing whitespace removed).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How long a sealed id stays valid (humantime, default `10m`).
    #[serde(default = "default_ttl")]
    pub ttl: String,
}

fn default_ttl() -> String {
    crate::config::value::default_duration(DEFAULT_TTL)
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            key_file: None,
            ttl: default_ttl(),
        }
    }
}

/// The validated `transactions:` section.
#[derive(Debug, Clone)]
pub struct TransactionSettings {
    /// Read when the sealer is built; `None`: a random key per process.
    pub key_file: Option<PathBuf>,
    /// Within [`TTL_RANGE`], used as is.
    pub ttl: Duration,
}

impl TransactionConfig {
    /// The typed `transactions:` section, recording every problem.
    pub fn validate(self, errors: &mut ConfigErrors) -> TransactionSettings {
        let ttl = crate::config::value::duration("transactions.ttl", &self.ttl, errors);
        if ttl.is_some_and(|ttl| !(TTL_RANGE.0..=TTL_RANGE.1).contains(&ttl)) {
            errors.push("transactions.ttl", "must be between 10s and 24h");
        }
        if let Some(path) = &self.key_file
            && let Err(reason) = read_key(path)
        {
            errors.push("transactions.key_file", reason);
        }
        TransactionSettings {
            key_file: self.key_file,
            ttl: ttl.unwrap_or_default(),
        }
    }
}

fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut key = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if key.len() < MIN_KEY_LEN {
        return Err(format!("key must be at least {MIN_KEY_LEN} bytes"));
    }
    Ok(key)
}

/// Why a presented transaction id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// Not a seal firegate made (or made for another database).
    #[error("transaction id not issued by firegate")]
    Forged,
    /// A genuine seal, issued to another principal.
    #[error("transaction id issued to another principal")]
    NotOwned,
    #[error("transaction id expired")]
    Expired,
}

impl TransactionError {
    pub fn reason(&self) -> &'static str {
        match self {
            TransactionError::Forged => "transaction_forged",
            TransactionError::NotOwned => "transaction_not_owned",
            TransactionError::Expired => "transaction_expired",
        }
    }
}

/// Seals upstream transaction ids to the principal that obtained them.
pub struct TransactionSealer {
    keys: Arc<Keys>,
    ttl: Duration,
}

impl TransactionSealer {
    pub fn new(settings: &TransactionSettings) -> anyhow::Result<Self> {
        let key = match &settings.key_file {
            Some(path) => read_key(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => {
                tracing::warn!(
                    "transactions.key_file not set: using a random key; transactions will not \
                     survive a restart or work across replicas"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Ok(TransactionSealer::with_key(&key, settings.ttl)?)
    }

    /// A sealer with this key and lifetime.
    pub fn with_key(key: &[u8], ttl: Duration) -> Result<Self, hmac::digest::InvalidLength> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)?;
        Ok(TransactionSealer {
            keys: Arc::new(Keys { mac }),
            ttl,
        })
    }

    /// What the response side needs to seal the new transaction id a
    /// response will carry, for `fingerprint`.
    pub fn sealing(&self, fingerprint: &Fingerprint, database: &Database) -> Sealing {
        Sealing {
            keys: Arc::clone(&self.keys),
            fingerprint: *fingerprint,
            database: database.to_string(),
            expiry: now().saturating_add(self.ttl.as_secs()),
        }
    }

    /// A gRPC request's `bytes transaction`: the seal's raw bytes (what the
    /// base64 text of REST decodes to), checked as [`Self::unseal`] checks
    /// REST's text; the upstream id comes back.
    pub fn unseal_bytes(
        &self,
        sealed: &[u8],
        fingerprint: &Fingerprint,
        database: &Database,
    ) -> Result<Vec<u8>, TransactionError> {
        self.keys
            .unseal_raw(sealed, fingerprint, &database.to_string(), now())
    }

    /// Seal one upstream id for `fingerprint` (tests, benches).
    pub fn seal(&self, fingerprint: &Fingerprint, database: &Database, id: &[u8]) -> String {
        let expiry = now().saturating_add(self.ttl.as_secs());
        self.keys
            .seal(fingerprint, &database.to_string(), expiry, id)
    }

    /// A presented id (REST's base64 text) must be a seal owned by
    /// `fingerprint` and unexpired; the upstream id comes back.
    pub fn unseal(
        &self,
        sealed: &str,
        fingerprint: &Fingerprint,
        database: &Database,
    ) -> Result<Vec<u8>, TransactionError> {
        self.keys.unseal(sealed, fingerprint, database, now())
    }
}

/// The response-side half: seals the `transaction` of one response.
#[derive(Clone)]
pub struct Sealing {
    keys: Arc<Keys>,
    fingerprint: Fingerprint,
    database: String,
    expiry: u64,
}

impl Sealing {
    /// Rewrite a successful response so every transaction id in it is
    /// sealed; the body still streams. A compressed body cannot be
    /// rewritten, so it is refused (firegate asks upstream for identity):
    /// passing it on would hand out an unsealed id.
    pub fn seal_response(self, response: Response<Body>) -> Result<Response<Body>, SealError> {
        if !response.status().is_success() {
            return Ok(response);
        }
        let encoded = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity");
        if encoded {
            return Err(SealError::EncodedResponse);
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(
            parts,
            crate::body::rewritten(body, SealStream::new(self)),
        ))
    }

    /// Seal one upstream id given as raw bytes (a gRPC response's
    /// `bytes transaction`); the seal is raw bytes too.
    pub fn seal_bytes(&self, upstream: &[u8]) -> Vec<u8> {
        self.keys
            .seal_raw(&self.fingerprint, &self.database, self.expiry, upstream)
    }

    /// Seal one upstream id given as base64 text.
    fn seal_text(&self, upstream: &str) -> Option<String> {
        let id = decode_base64(upstream)?;
        Some(
            self.keys
                .seal(&self.fingerprint, &self.database, self.expiry, &id),
        )
    }
}

struct Keys {
    mac: Hmac<Sha256>,
}

impl Keys {
    fn issuer_tag(&self, expiry: u64, database: &str, id: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"firegate/transaction/issuer\0");
        mac.update(&[VERSION]);
        mac.update(&expiry.to_be_bytes());
        mac.update(&(database.len() as u64).to_be_bytes());
        mac.update(database.as_bytes());
        mac.update(id);
        mac
    }

    fn owner_tag(&self, issuer: &[u8], fingerprint: &Fingerprint) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"firegate/transaction/owner\0");
        mac.update(issuer);
        mac.update(fingerprint);
        mac
    }

    fn seal(&self, fingerprint: &Fingerprint, database: &str, expiry: u64, id: &[u8]) -> String {
        STANDARD.encode(self.seal_raw(fingerprint, database, expiry, id))
    }

    fn seal_raw(
        &self,
        fingerprint: &Fingerprint,
        database: &str,
        expiry: u64,
        id: &[u8],
    ) -> Vec<u8> {
        let issuer = self
            .issuer_tag(expiry, database, id)
            .finalize()
            .into_bytes();
        let issuer = &issuer[..TAG_LEN];
        let owner = self.owner_tag(issuer, fingerprint).finalize().into_bytes();
        let mut out = Vec::with_capacity(1 + 8 + id.len() + 2 * TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&expiry.to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(issuer);
        out.extend_from_slice(&owner[..TAG_LEN]);
        out
    }

    fn unseal(
        &self,
        sealed: &str,
        fingerprint: &Fingerprint,
        database: &Database,
        now: u64,
    ) -> Result<Vec<u8>, TransactionError> {
        let raw = decode_base64(sealed).ok_or(TransactionError::Forged)?;
        self.unseal_raw(&raw, fingerprint, &database.to_string(), now)
    }

    fn unseal_raw(
        &self,
        raw: &[u8],
        fingerprint: &Fingerprint,
        database: &str,
        now: u64,
    ) -> Result<Vec<u8>, TransactionError> {
        if raw.len() < 1 + 8 + 1 + 2 * TAG_LEN || raw[0] != VERSION {
            return Err(TransactionError::Forged);
        }
        let (head, tags) = raw.split_at(raw.len() - 2 * TAG_LEN);
        let (issuer, owner) = tags.split_at(TAG_LEN);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&head[1..9]);
        let expiry = u64::from_be_bytes(expiry);
        let id = &head[9..];
        self.issuer_tag(expiry, database, id)
            .verify_truncated_left(issuer)
            .map_err(|_| TransactionError::Forged)?;
        self.owner_tag(issuer, fingerprint)
            .verify_truncated_left(owner)
            .map_err(|_| TransactionError::NotOwned)?;
        if expiry < now {
            return Err(TransactionError::Expired);
        }
        Ok(id.to_vec())
    }
}

const STANDARD: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Proto3-JSON `bytes` accept either alphabet, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    STD.decode(text).or_else(|_| URL.decode(text)).ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
