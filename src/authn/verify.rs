//! JWT verification: an unverified peek to find the issuer, then the full
//! check (algorithm, key, signature, `iss`, `aud`, `exp`, `nbf`, scopes) with
//! that issuer's keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthnError;
use super::config::{IssuerKind, is_hmac};
use super::issuer::Issuer;
use super::jwks::Lookup;

/// The JOSE header fields read before verification.
#[derive(Debug, Deserialize)]
pub struct PeekedHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// No extension is understood, so any `crit` header refuses the token
    /// (RFC 7515 §4.1.11).
    pub crit: Option<Value>,
}

/// A token's header and `iss`, read without trusting them.
pub struct Peeked {
    pub header: PeekedHeader,
    pub iss: String,
}

/// Whether `token` has the JWS compact shape (three dot-separated parts).
pub fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Decode header and payload to find the issuer. Nothing here is trusted
/// until [`verify`] has checked the signature.
pub fn peek(token: &str) -> Result<Peeked, AuthnError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthnError::MalformedToken);
    };
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(AuthnError::MalformedToken);
    }
    let header: PeekedHeader = decode_part(header)?;
    #[derive(Deserialize)]
    struct IssOnly {
        iss: Option<String>,
    }
    let claims: IssOnly = decode_part(payload)?;
    let iss = claims.iss.ok_or(AuthnError::UntrustedIssuer)?;
    Ok(Peeked { header, iss })
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AuthnError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthnError::MalformedToken)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthnError::MalformedToken)
}

/// Verify `token` against `issuer`; returns its claims.
pub async fn verify(
    issuer: &Issuer,
    token: &str,
    peeked: &Peeked,
) -> Result<Map<String, Value>, AuthnError> {
    let settings = &issuer.settings;
    let header = &peeked.header;
    // `none` and unknown names fail to parse: never accepted.
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| AuthnError::AlgorithmNotAllowed)?;
    if !settings.algorithms.contains(&alg) {
        return Err(AuthnError::AlgorithmNotAllowed);
    }
    if header.crit.is_some() {
        return Err(AuthnError::MalformedToken);
    }
    check_type(settings.kind, header.typ.as_deref())?;

    let key = if is_hmac(alg) {
        issuer
            .shared_secret
            .clone()
            .ok_or(AuthnError::AlgorithmNotAllowed)?
    } else {
        signing_key(issuer, header.kid.as_deref()).await?
    };
    if key.alg.is_some_and(|pinned| pinned != alg) || key.key.family() != alg.family() {
        return Err(AuthnError::AlgorithmNotAllowed);
    }

    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&settings.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map_err(|e| rejection(e.kind()))?;
    check_scopes(&settings.required_scopes, &data.claims)?;
    Ok(data.claims)
}

/// The issuer's key for `kid`, refreshing once if it is unknown.
async fn signing_key(
    issuer: &Issuer,
    kid: Option<&str>,
) -> Result<std::sync::Arc<super::jwks::Key>, AuthnError> {
    let lookup = match issuer.jwks.lookup(kid) {
        Lookup::Found(key) => return Ok(key),
        Lookup::Missing | Lookup::NotLoaded => issuer.jwks.refresh_for(kid).await,
    };
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::Missing => Err(AuthnError::UnknownKeyId),
        Lookup::NotLoaded => Err(AuthnError::IssuerUnavailable),
    }
}

/// JWT access tokens (RFC 9068 `at+jwt`) and ID tokens (`JWT` or no `typ`)
/// for OIDC issuers; exactly `vnd.backstage.user` for Backstage, so that a
/// Backstage plugin token cannot pass as a user.
fn check_type(kind: IssuerKind, typ: Option<&str>) -> Result<(), AuthnError> {
    let ok = match (kind, typ) {
        (IssuerKind::Oidc, None) => true,
        (IssuerKind::Oidc, Some(t)) => ["JWT", "at+jwt", "application/at+jwt"]
            .iter()
            .any(|accepted| t.eq_ignore_ascii_case(accepted)),
        (IssuerKind::Backstage, Some(t)) => t.eq_ignore_ascii_case("vnd.backstage.user"),
        (IssuerKind::Backstage, None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthnError::WrongTokenType)
    }
}

fn rejection(kind: &ErrorKind) -> AuthnError {
    match kind {
        ErrorKind::ExpiredSignature => AuthnError::TokenExpired,
        ErrorKind::ImmatureSignature => AuthnError::TokenNotYetValid,
        ErrorKind::InvalidAudience => AuthnError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthnError::UntrustedIssuer,
        ErrorKind::InvalidSignature => AuthnError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthnError::AlgorithmNotAllowed
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthnError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => AuthnError::TokenExpired,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthnError::UntrustedIssuer,
        // Key material that cannot verify is the signature's problem, not
        // the token's shape.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthnError::BadSignature
        }
        _ => AuthnError::MalformedToken,
    }
}

/// The token's scopes: `scope` (space-separated, RFC 8693/9068) or `scp`
/// (string or array, as some issuers write it).
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

pub fn check_scopes(required: &[String], claims: &Map<String, Value>) -> Result<(), AuthnError> {
    if required.is_empty() {
        return Ok(());
    }
    let held = scopes(claims);
    if required.iter().all(|r| held.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(AuthnError::MissingScope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn peek_reads_issuer_and_header() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#),
            b64(r#"{"iss":"https://id","sub":"a"}"#),
            b64("sig")
        );
        let p = peek(&token).unwrap();
        assert_eq!(p.iss, "https://id");
        assert_eq!(p.header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn peek_refuses_bad_shapes() {
        let header = b64(r#"{"alg":"RS256"}"#);
        let payload = b64(r#"{"iss":"x"}"#);
        for token in [
            "abc".to_string(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.sig.extra"),
            format!("{header}.!!!.sig"),
            format!("{header}.{}.sig", b64("not json")),
            format!("{header}.{payload}.si*g"),
        ] {
            assert!(
                matches!(peek(&token), Err(AuthnError::MalformedToken)),
                "accepted {token}"
            );
        }
        let no_iss = format!("{header}.{}.sig", b64("{}"));
        assert!(matches!(peek(&no_iss), Err(AuthnError::UntrustedIssuer)));
    }

    #[test]
    fn token_types_per_issuer_kind() {
        assert!(check_type(IssuerKind::Oidc, Some("at+jwt")).is_ok());
        assert!(check_type(IssuerKind::Oidc, None).is_ok());
        assert!(check_type(IssuerKind::Oidc, Some("vnd.backstage.user")).is_err());
        assert!(check_type(IssuerKind::Backstage, Some("vnd.backstage.user")).is_ok());
        assert!(check_type(IssuerKind::Backstage, Some("vnd.backstage.plugin")).is_err());
        assert!(check_type(IssuerKind::Backstage, None).is_err());
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"scope":"read write","scp":["admin"]}"#).unwrap();
        assert!(check_scopes(&["write".into(), "admin".into()], &claims).is_ok());
        assert!(matches!(
            check_scopes(&["delete".into()], &claims),
            Err(AuthnError::MissingScope)
        ));
    }
}
