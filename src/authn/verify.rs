//! JWT verification: an unverified peek to find the issuer, then the full
//! check (algorithm, key, signature, `iss`, `aud`, `exp`, `nbf`, scopes) with
//! that issuer's keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use std::sync::Arc;
use std::time::SystemTime;

use super::cache::{epoch, token_hash};
use super::config::{IssuerKind, IssuerSettings, is_hmac};
use super::issuer::Issuer;
use super::jwks::{Jwks, Key, Lookup};
use super::{AuthnError, Principal};

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

/// A token's header, `iss` and `sub`, read without trusting them.
pub struct Peeked {
    pub header: PeekedHeader,
    pub iss: Option<String>,
    /// The calling plugin's id, for Backstage plugin tokens.
    pub sub: Option<String>,
}

const BACKSTAGE_PLUGIN: &str = "vnd.backstage.plugin";
const BACKSTAGE_LIMITED_USER: &str = "vnd.backstage.limited-user";
const BACKSTAGE_USER: &str = "vnd.backstage.user";

impl Peeked {
    /// Backstage plugin tokens name no issuer; their `typ` routes them.
    pub fn is_backstage_plugin(&self) -> bool {
        self.header.typ.as_deref() == Some(BACKSTAGE_PLUGIN)
    }
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
    struct Routing {
        iss: Option<String>,
        sub: Option<String>,
    }
    let claims: Routing = decode_part(payload)?;
    Ok(Peeked {
        header,
        iss: claims.iss,
        sub: claims.sub,
    })
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
        signing_key(&issuer.jwks, header.kid.as_deref()).await?
    };
    check_key(&key, alg)?;

    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&settings.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = decode(token, &key, alg, validation)?;
    check_scopes(&settings.required_scopes, &claims)?;
    Ok(claims)
}

/// The key for `kid`, refreshing once if it is unknown.
async fn signing_key(jwks: &Jwks, kid: Option<&str>) -> Result<Arc<Key>, AuthnError> {
    let lookup = match jwks.lookup(kid) {
        Lookup::Found(key) => {
            jwks.count_lookup(true);
            return Ok(key);
        }
        Lookup::Missing | Lookup::NotLoaded | Lookup::Unreachable => {
            jwks.count_lookup(false);
            jwks.refresh_for(kid).await
        }
    };
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::Missing => Err(AuthnError::UnknownKeyId),
        Lookup::NotLoaded => Err(AuthnError::KeysNotLoaded),
        Lookup::Unreachable => Err(AuthnError::IssuerUnreachable),
    }
}

/// A key verifies only the algorithm family it belongs to (and the one
/// `alg` its JWK pins, if any).
fn check_key(key: &Key, alg: Algorithm) -> Result<(), AuthnError> {
    if key.alg.is_some_and(|pinned| pinned != alg) || key.key.family() != alg.family() {
        Err(AuthnError::AlgorithmNotAllowed)
    } else {
        Ok(())
    }
}

/// A Backstage plugin token (`typ: vnd.backstage.plugin`): `sub` is the
/// calling plugin, whose own keys sign it; `aud` must be the configured
/// target. With `obo`, the principal is the user the plugin acts for (that
/// limited user token is verified with the Backstage user keys); without,
/// it is `plugin:<id>`. Returns the principal and when it stops being valid.
pub async fn verify_plugin(
    issuer: &Issuer,
    token: &str,
    peeked: &Peeked,
) -> Result<(Principal, SystemTime), AuthnError> {
    let settings = &issuer.settings;
    let Some(target) = &settings.plugin_tokens else {
        return Err(AuthnError::UntrustedIssuer);
    };
    let plugin = peeked.sub.as_deref().ok_or(AuthnError::MissingSubject)?;
    let keys = issuer
        .plugins
        .get(plugin)
        .ok_or(AuthnError::UntrustedIssuer)?;
    let alg = allowed_alg(settings, &peeked.header)?;
    let key = signing_key(keys, peeked.header.kid.as_deref()).await?;
    check_key(&key, alg)?;
    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_audience(&[&target.audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let mut claims = decode(token, &key, alg, validation)?;
    let mut exp = expiry(&claims)?;
    // The user token is a credential: it must not reach policies or audit.
    let obo = claims.remove("obo");
    claims.insert("backstage_plugin".into(), Value::String(plugin.to_string()));
    let (subject, groups) = match obo {
        Some(Value::String(user_token)) => {
            let user = verify_limited_user(issuer, &user_token).await?;
            let user_exp = expiry(&user)?;
            exp = exp.min(user_exp);
            let subject = user
                .get("sub")
                .and_then(Value::as_str)
                .ok_or(AuthnError::MissingSubject)?
                .to_string();
            let until = epoch(user_exp.saturating_add(settings.leeway.as_secs()));
            let groups = user_groups(issuer, &user_token, &user, &subject, until).await?;
            (subject, groups)
        }
        Some(_) => return Err(AuthnError::MalformedToken),
        None => (format!("plugin:{plugin}"), Vec::new()),
    };
    let principal = Principal::new(settings.issuer.clone(), subject, None, groups, claims);
    Ok((
        principal,
        epoch(exp.saturating_add(settings.leeway.as_secs())),
    ))
}

/// The ownership refs of the user a plugin acts for: its token's `ent`, or
/// — a limited token never carries one — Backstage userinfo asked with that
/// user token (it accepts limited tokens), cached for the user token's life
/// so every plugin token carrying it shares one lookup.
async fn user_groups(
    issuer: &Issuer,
    user_token: &str,
    user: &Map<String, Value>,
    subject: &str,
    until: SystemTime,
) -> Result<Vec<String>, AuthnError> {
    match (user.get("ent"), &issuer.userinfo) {
        (Some(ent), _) => Ok(super::issuer::string_list(Some(ent))),
        (None, Some(userinfo)) => Ok(userinfo
            .ownership(user_token, token_hash(user_token), subject, until)
            .await?
            .to_vec()),
        // Plugin tokens are configured on Backstage issuers only, which
        // always have userinfo. Were one missing, passing the user with no
        // groups would slip past every deny rule naming a group: refuse.
        (None, None) => Err(AuthnError::UserinfoUnreachable),
    }
}

/// The `obo` user token of a plugin token: a Backstage limited user token
/// (`sub`, `iat`, `exp`, signed with the user keys), or a full user token.
async fn verify_limited_user(
    issuer: &Issuer,
    token: &str,
) -> Result<Map<String, Value>, AuthnError> {
    let peeked = peek(token)?;
    match peeked.header.typ.as_deref() {
        Some(BACKSTAGE_LIMITED_USER | BACKSTAGE_USER) => {}
        _ => return Err(AuthnError::WrongTokenType),
    }
    let alg = allowed_alg(&issuer.settings, &peeked.header)?;
    let key = signing_key(&issuer.jwks, peeked.header.kid.as_deref()).await?;
    check_key(&key, alg)?;
    let mut validation = Validation::new(alg);
    validation.leeway = issuer.settings.leeway.as_secs();
    validation.validate_nbf = true;
    // A limited token keeps only `sub`, `iat` and `exp`; its signature is
    // the full token's proof over exactly those.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    decode(token, &key, alg, validation)
}

/// The signature checked, then the claims read and validated by
/// `validation`. With a key aws-lc parsed when its JWKS loaded, the
/// signature is checked here against it — the same aws-lc algorithm
/// jsonwebtoken would pick for `alg` (`jwks::Key::parsed`), over the same
/// bytes (`header.payload`) — and only then does jsonwebtoken validate the
/// claims, told that the signature is done; every claim check stays
/// jsonwebtoken's. A key aws-lc could not parse so is left to jsonwebtoken
/// whole, as before. `alg` is the header's, already allowed for the issuer
/// and checked against the key's family (`check_key`).
fn decode(
    token: &str,
    key: &Key,
    alg: Algorithm,
    mut validation: Validation,
) -> Result<Map<String, Value>, AuthnError> {
    if let Some(parsed) = key.parsed(alg) {
        let (message, signature) = token.rsplit_once('.').ok_or(AuthnError::MalformedToken)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthnError::MalformedToken)?;
        parsed
            .verify_sig(message.as_bytes(), &signature)
            .map_err(|_| AuthnError::BadSignature)?;
        // Deprecated in favour of `insecure_decode`, which would skip the
        // claim checks too; here only the signature, done just above, is.
        #[allow(deprecated)]
        validation.insecure_disable_signature_validation();
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map_err(|e| rejection(e.kind()))?;
    // The header jsonwebtoken read is the one the signature covered; its
    // `alg` is the one checked (the same bytes, read twice).
    if data.header.alg != alg {
        return Err(AuthnError::AlgorithmNotAllowed);
    }
    Ok(data.claims)
}

fn allowed_alg(settings: &IssuerSettings, header: &PeekedHeader) -> Result<Algorithm, AuthnError> {
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| AuthnError::AlgorithmNotAllowed)?;
    if !settings.algorithms.contains(&alg) || is_hmac(alg) {
        return Err(AuthnError::AlgorithmNotAllowed);
    }
    if header.crit.is_some() {
        return Err(AuthnError::MalformedToken);
    }
    Ok(alg)
}

/// `exp` of verified claims (present and numeric; RFC 7519 allows a
/// fraction).
pub fn expiry(claims: &Map<String, Value>) -> Result<u64, AuthnError> {
    claims
        .get("exp")
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .ok_or(AuthnError::TokenExpired)
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
        (IssuerKind::Backstage, Some(t)) => t == BACKSTAGE_USER,
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
        assert_eq!(p.iss.as_deref(), Some("https://id"));
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
        assert!(peek(&no_iss).is_ok_and(|p| p.iss.is_none()));
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
