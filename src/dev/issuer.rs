//! A development-only OIDC issuer: an ES256 key generated at start, the
//! discovery document and JWKS served on loopback, and tokens minted for
//! sample identities. Never use it outside `firegate dev` and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};

/// The audience dev tokens carry and the dev config accepts.
pub const AUDIENCE: &str = "firegate-dev";

/// A sample caller.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub subject: String,
    pub email: String,
    pub groups: Vec<String>,
}

/// Signing key and the documents an OIDC client fetches.
pub struct DevIssuer {
    issuer: String,
    key_id: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl DevIssuer {
    /// A fresh key pair for an issuer reachable at `issuer` (its base URL).
    pub fn generate(issuer: &str) -> anyhow::Result<DevIssuer> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
        // SEC1 uncompressed point: 0x04 ‖ x ‖ y.
        let point = key.public_key_raw();
        anyhow::ensure!(
            point.len() == 65 && point[0] == 4,
            "unexpected P-256 public key encoding"
        );
        let key_id = hex::encode(&sha2_digest(point)[..8]);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": key_id,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(DevIssuer {
            issuer: issuer.trim_end_matches('/').to_owned(),
            key_id,
            encoding,
            jwk,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery_document(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri(),
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "authorization_endpoint": format!("{}/authorize", self.issuer),
        })
    }

    /// `/jwks`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A JWT access token for `who`, valid for `ttl`.
    pub fn mint(&self, who: &Identity, ttl: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "iss": self.issuer,
            "sub": who.subject,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "email": who.email,
            "groups": who.groups,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn minted_tokens_verify_against_the_published_jwk() {
        let issuer = DevIssuer::generate("http://127.0.0.1:1").unwrap();
        let who = Identity {
            subject: "user:default/alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["group:default/team-a".into()],
        };
        let token = issuer.mint(&who, Duration::from_secs(60)).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.jwk.clone()).unwrap();
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&["http://127.0.0.1:1"]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "user:default/alice");
        assert_eq!(data.claims["groups"][0], "group:default/team-a");

        let other = DevIssuer::generate("http://127.0.0.1:1").unwrap();
        let other_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(other.jwk.clone()).unwrap();
        let wrong = DecodingKey::from_jwk(&other_jwk).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &wrong, &validation).is_err());
    }
}
