//! `Principal`: the only thing the rest of the pipeline knows of a caller.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// SHA-256 over everything a policy may read of a principal.
pub type Fingerprint = [u8; 32];

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The token's claims, for policy conditions (time-varying claims such
    /// as `exp`, `iat`, `nbf`, `jti` are removed so that the fingerprint is
    /// stable across a caller's token refreshes).
    pub claims: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    fingerprint: Fingerprint,
}

impl Principal {
    pub fn new(
        issuer: String,
        subject: String,
        email: Option<String>,
        groups: Vec<String>,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        for volatile in ["exp", "iat", "nbf", "jti", "auth_time"] {
            claims.remove(volatile);
        }
        let mut principal = Principal {
            issuer,
            subject,
            email,
            groups,
            claims,
            fingerprint: [0; 32],
        };
        principal.fingerprint = principal.compute_fingerprint();
        principal
    }

    /// Identifies everything a policy decision may depend on; decision and
    /// transaction bindings key on it.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn compute_fingerprint(&self) -> Fingerprint {
        // serde_json::Map is ordered (BTreeMap without `preserve_order`), so
        // the serialization is canonical.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(canonical).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(groups: &[&str], exp: u64) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("exp".into(), exp.into());
        claims.insert("team".into(), "a".into());
        Principal::new(
            "https://issuer".into(),
            "alice".into(),
            Some("alice@example.com".into()),
            groups.iter().map(|g| g.to_string()).collect(),
            claims,
        )
    }

    #[test]
    fn fingerprint_ignores_token_lifetime() {
        assert_eq!(
            principal(&["a"], 1).fingerprint(),
            principal(&["a"], 2).fingerprint()
        );
    }

    #[test]
    fn fingerprint_changes_with_groups() {
        assert_ne!(
            principal(&["a"], 1).fingerprint(),
            principal(&["b"], 1).fingerprint()
        );
    }
}
