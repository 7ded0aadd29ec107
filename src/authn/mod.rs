//! Authentication: a bearer token in, a [`Principal`] out, against the
//! trusted issuers of the config.

mod backstage;
mod cache;
mod config;
mod introspection;
mod issuer;
mod jwks;
mod metrics;
mod principal;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Uri, header};

// Issuer answers are read through the shared bounded reader.
use crate::fetch;

pub use config::{
    AuthnConfig, AuthnSettings, BackstageConfig, ClaimsConfig, IntrospectionConfig, IssuerConfig,
    IssuerKind, IssuerSettings, JwksRefreshConfig, KeySource, PluginTokensConfig, TokenCacheConfig,
};
pub use principal::{Fingerprint, Memo, Principal};

pub use cache::LastToken;
use cache::{Expiring, VerifiedTokens, epoch, token_hash};
use introspection::Introspected;
use issuer::Issuer;
use metrics::AuthnMetrics;

/// Why a request was not authenticated. The variant is the audit reason.
/// A bad, expired or untrusted token is the caller's fault (401); an issuer
/// that cannot be asked is not (`pipeline::respond` answers 503 with
/// `Retry-After`). No variant carries any part of a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("no bearer token")]
    MissingToken,
    #[error("Authorization is not a Bearer credential")]
    NotBearerScheme,
    #[error("more than one Authorization header")]
    MultipleAuthorizationHeaders,
    #[error("token in the query string")]
    TokenInQueryString,
    #[error("token over the size limit")]
    TokenTooLarge,
    #[error("token is not a well-formed JWT")]
    MalformedToken,
    #[error("token type not accepted for its issuer")]
    WrongTokenType,
    #[error("issuer not trusted")]
    UntrustedIssuer,
    #[error("signing algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token names a key the issuer does not publish")]
    UnknownKeyId,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    TokenExpired,
    #[error("token not valid yet")]
    TokenNotYetValid,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token lacks a required scope")]
    MissingScope,
    #[error("token has no subject")]
    MissingSubject,
    #[error("introspection says the token is not active")]
    IntrospectionInactive,
    #[error("Backstage userinfo refused the token")]
    UserinfoRefused,
    #[error("the issuer's signing keys have not loaded yet")]
    KeysNotLoaded,
    #[error("the token names an unknown key and the issuer could not be asked for new ones")]
    IssuerUnreachable,
    #[error("Backstage userinfo unreachable or answering something unusable")]
    UserinfoUnreachable,
    #[error("the introspection endpoint is unreachable or answering something unusable")]
    IntrospectionUnreachable,
}

impl AuthnError {
    /// A short, stable reason for the audit line (`token_expired`, `unknown_kid`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::MissingToken => "missing_token",
            AuthnError::NotBearerScheme => "not_bearer",
            AuthnError::MultipleAuthorizationHeaders => "multiple_authorization_headers",
            AuthnError::TokenInQueryString => "token_in_query_string",
            AuthnError::TokenTooLarge => "token_too_large",
            AuthnError::MalformedToken => "malformed_token",
            AuthnError::WrongTokenType => "wrong_token_type",
            AuthnError::UntrustedIssuer => "untrusted_issuer",
            AuthnError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthnError::UnknownKeyId => "unknown_kid",
            AuthnError::BadSignature => "bad_signature",
            AuthnError::TokenExpired => "token_expired",
            AuthnError::TokenNotYetValid => "token_not_yet_valid",
            AuthnError::WrongAudience => "wrong_audience",
            AuthnError::MissingScope => "missing_scope",
            AuthnError::MissingSubject => "missing_subject",
            AuthnError::IntrospectionInactive => "introspection_inactive",
            AuthnError::UserinfoRefused => "userinfo_refused",
            AuthnError::KeysNotLoaded => "issuer_unavailable",
            AuthnError::IssuerUnreachable => "issuer_unreachable",
            AuthnError::UserinfoUnreachable => "userinfo_unavailable",
            AuthnError::IntrospectionUnreachable => "introspection_unavailable",
        }
    }
}

/// Verifies bearer tokens against the configured issuers.
pub struct Authenticator {
    /// By exact `iss`: finding the issuer costs one hash lookup whatever
    /// their number.
    by_iss: HashMap<String, Arc<Issuer>>,
    /// Issuers that introspect opaque tokens, in config order.
    introspecting: Vec<Arc<Issuer>>,
    /// The Backstage whose plugin tokens (which carry no `iss`) are accepted.
    plugin_issuer: Option<Arc<Issuer>>,
    verified: VerifiedTokens,
    max_token_bytes: usize,
    metrics: AuthnMetrics,
}

impl Authenticator {
    /// Build from the validated section and start fetching every issuer's
    /// keys in the background: an unreachable issuer does not fail startup,
    /// it keeps [`Authenticator::not_ready`] reporting until its keys load.
    pub async fn new(
        settings: &AuthnSettings,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        let client = http_client(settings.http_timeout)?;
        let metrics = AuthnMetrics::register(registry);
        let mut by_iss = HashMap::with_capacity(settings.issuers.len());
        let mut introspecting = Vec::new();
        let mut plugin_issuer = None;
        for s in &settings.issuers {
            let issuer = Arc::new(Issuer::start(
                s.clone(),
                &client,
                settings.token_cache_entries,
                metrics.clone(),
            )?);
            if issuer.introspection.is_some() {
                introspecting.push(Arc::clone(&issuer));
            }
            if issuer.settings.plugin_tokens.is_some() {
                plugin_issuer = Some(Arc::clone(&issuer));
            }
            by_iss.insert(issuer.settings.issuer.clone(), issuer);
        }
        if by_iss.is_empty() {
            tracing::warn!(
                "no issuers configured under authn.issuers: every request will be refused"
            );
        }
        Ok(Authenticator {
            by_iss,
            introspecting,
            plugin_issuer,
            verified: VerifiedTokens::new(settings.token_cache_entries),
            max_token_bytes: settings.max_token_bytes,
            metrics,
        })
    }

    /// Step 1 of the pipeline: who is calling.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        last: Option<&LastToken>,
    ) -> Result<Arc<Principal>, AuthnError> {
        let result = self.authenticate_inner(headers, uri, last).await;
        if let Err(e) = &result {
            self.metrics.outcome(e.reason());
        }
        result
    }

    /// Until when the bearer token in `headers`/`uri` stays verified: the
    /// expiry of its cached verification (the token's `exp` plus leeway,
    /// or the end of an introspection answer's cache life), when it has
    /// one. A Listen stream re-checks its caller then, not on a clock.
    pub fn verified_until(&self, headers: &HeaderMap, uri: &Uri) -> Option<std::time::SystemTime> {
        let token = bearer_token(headers, uri, self.max_token_bytes).ok()?;
        self.verified
            .get_entry(&token_hash(token))
            .map(|entry| entry.until)
    }

    async fn authenticate_inner(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        last: Option<&LastToken>,
    ) -> Result<Arc<Principal>, AuthnError> {
        let token = bearer_token(headers, uri, self.max_token_bytes)?;
        if let Some(principal) = last.and_then(|last| last.get(token)) {
            self.metrics.cached();
            return Ok(principal);
        }
        let hash = token_hash(token);
        if let Some(entry) = self.verified.get_entry(&hash) {
            self.metrics.cached();
            let principal = Arc::clone(&entry.value);
            if let Some(last) = last {
                last.remember(token, entry);
            }
            return Ok(principal);
        }
        // Boxed: the first sight of a token (a signature check, perhaps a
        // key or userinfo fetch) would otherwise size every request's future.
        let (principal, until) = if verify::is_jwt(token) {
            Box::pin(self.verify_jwt(token, hash)).await?
        } else {
            Box::pin(self.introspect(token)).await?
        };
        let principal = Arc::new(principal);
        self.verified.insert(hash, Arc::clone(&principal), until);
        if let Some(last) = last {
            let value = Arc::clone(&principal);
            last.remember(token, Expiring { value, until });
        }
        self.metrics.outcome("verified");
        Ok(principal)
    }

    async fn verify_jwt(
        &self,
        token: &str,
        hash: cache::TokenHash,
    ) -> Result<(Principal, std::time::SystemTime), AuthnError> {
        let peeked = verify::peek(token)?;
        if peeked.is_backstage_plugin() {
            let issuer = self
                .plugin_issuer
                .as_ref()
                .ok_or(AuthnError::UntrustedIssuer)?;
            return verify::verify_plugin(issuer, token, &peeked).await;
        }
        let issuer = peeked
            .iss
            .as_ref()
            .and_then(|iss| self.by_iss.get(iss))
            .ok_or(AuthnError::UntrustedIssuer)?;
        let claims = verify::verify(issuer, token, &peeked).await?;
        let exp = verify::expiry(&claims)?;
        let until = epoch(exp.saturating_add(issuer.settings.leeway.as_secs()));
        let groups = match &issuer.userinfo {
            Some(userinfo) if !claims.contains_key("ent") => {
                let subject = claims
                    .get("sub")
                    .and_then(serde_json::Value::as_str)
                    .ok_or(AuthnError::MissingSubject)?;
                Some(
                    userinfo
                        .ownership(token, hash, subject, until)
                        .await?
                        .to_vec(),
                )
            }
            Some(_) | None => None,
        };
        Ok((issuer.principal(claims, groups)?, until))
    }

    /// An opaque token: ask each introspecting issuer in turn; the first
    /// that knows it as active decides.
    async fn introspect(
        &self,
        token: &str,
    ) -> Result<(Principal, std::time::SystemTime), AuthnError> {
        if self.introspecting.is_empty() {
            return Err(AuthnError::MalformedToken);
        }
        for issuer in &self.introspecting {
            let Some(introspector) = &issuer.introspection else {
                continue;
            };
            match introspector.introspect(token, &issuer.settings).await? {
                Introspected::Active { claims, exp } => {
                    let until = epoch(exp.saturating_add(issuer.settings.leeway.as_secs()));
                    return Ok((issuer.principal(claims, None)?, until));
                }
                Introspected::Inactive => continue,
            }
        }
        Err(AuthnError::IntrospectionInactive)
    }

    /// `None` when ready; otherwise what is missing (for `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        let mut waiting: Vec<&str> = self
            .by_iss
            .values()
            .filter(|i| !i.jwks.is_loaded())
            .map(|i| i.settings.name.as_str())
            .collect();
        if waiting.is_empty() {
            return None;
        }
        waiting.sort_unstable();
        Some(format!(
            "authn: signing keys not loaded yet for issuer(s) {}",
            waiting.join(", ")
        ))
    }
}

/// The one HTTP client for every issuer call.
fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("firegate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The bearer token of a request (RFC 6750 §2.1), refusing every other
/// way of sending one.
fn bearer_token<'a>(
    headers: &'a HeaderMap,
    uri: &Uri,
    max_bytes: usize,
) -> Result<&'a str, AuthnError> {
    // A token in a URL ends up in access logs and browser history
    // (RFC 6750 §5.3): refuse it even when a header is present too.
    if query_has_token(uri) {
        return Err(AuthnError::TokenInQueryString);
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthnError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthnError::MultipleAuthorizationHeaders);
    }
    if value.len() > max_bytes {
        return Err(AuthnError::TokenTooLarge);
    }
    // Worked on as bytes: the token is scanned once (a `to_str` first
    // would scan all of it again).
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return Err(not_bearer(value));
    };
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(not_bearer(value));
    }
    let token = match (
        token.iter().position(|b| *b != b' '),
        token.iter().rposition(|b| *b != b' '),
    ) {
        (Some(first), Some(last)) => &token[first..=last],
        _ => return Err(AuthnError::MissingToken),
    };
    if !is_token68(token) {
        return Err(AuthnError::MalformedToken);
    }
    // A token68 is ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| AuthnError::MalformedToken)
}

/// Not a bearer token: a header that is not even visible ASCII is malformed.
fn not_bearer(value: &[u8]) -> AuthnError {
    if value
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | 0x21..=0x7e))
    {
        AuthnError::NotBearerScheme
    } else {
        AuthnError::MalformedToken
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Every byte is checked without an early exit, so the loop vectorizes.
fn is_token68(token: &[u8]) -> bool {
    let body = match token.iter().rposition(|b| *b != b'=') {
        Some(last) => &token[..=last],
        None => return false,
    };
    body.iter().fold(true, |ok, &b| {
        ok & (b.is_ascii_alphanumeric()
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/'))
    })
}

fn query_has_token(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .eq_ignore_ascii_case("access_token")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn reason(values: &[&str], uri: &str) -> &'static str {
        match bearer_token(&headers(values), &uri.parse().unwrap(), 64) {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn bearer_token_extraction() {
        assert_eq!(reason(&["Bearer abc.def.ghi"], "/"), "ok");
        assert_eq!(reason(&["bearer abc"], "/"), "ok");
        assert_eq!(reason(&[], "/"), "missing_token");
        assert_eq!(reason(&["Bearer "], "/"), "missing_token");
        assert_eq!(reason(&["Basic dXNlcjpwYXNz"], "/"), "not_bearer");
        assert_eq!(reason(&["Bearer a b"], "/"), "malformed_token");
        assert_eq!(
            reason(&["Bearer a", "Bearer b"], "/"),
            "multiple_authorization_headers"
        );
        assert_eq!(
            reason(&["Bearer a"], "/v1/x?access_token=a"),
            "token_in_query_string"
        );
        assert_eq!(
            reason(&[], "/v1/x?key=1&ACCESS%5Ftoken"),
            "token_in_query_string"
        );
        assert_eq!(reason(&["Bearer a"], "/v1/x?key=access_token"), "ok");
        assert_eq!(
            reason(&[&format!("Bearer {}", "a".repeat(64))], "/"),
            "token_too_large"
        );
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            AuthnError::MissingToken,
            AuthnError::NotBearerScheme,
            AuthnError::MultipleAuthorizationHeaders,
            AuthnError::TokenInQueryString,
            AuthnError::TokenTooLarge,
            AuthnError::MalformedToken,
            AuthnError::WrongTokenType,
            AuthnError::UntrustedIssuer,
            AuthnError::AlgorithmNotAllowed,
            AuthnError::UnknownKeyId,
            AuthnError::BadSignature,
            AuthnError::TokenExpired,
            AuthnError::TokenNotYetValid,
            AuthnError::WrongAudience,
            AuthnError::MissingScope,
            AuthnError::MissingSubject,
            AuthnError::IntrospectionInactive,
            AuthnError::UserinfoRefused,
            AuthnError::KeysNotLoaded,
            AuthnError::IssuerUnreachable,
            AuthnError::UserinfoUnreachable,
            AuthnError::IntrospectionUnreachable,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(AuthnError::reason).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
