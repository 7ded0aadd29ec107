//! Opaque tokens: RFC 7662 introspection with the issuer's client
//! credentials. Only an active token with a future `exp`, a matching `iss`
//! (when given) and an accepted `aud` passes.

use serde_json::{Map, Value};

use super::AuthnError;
use super::config::{IntrospectionConfig, IssuerSettings};
use super::issuer::string_list;

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

pub struct Introspector {
    endpoint: String,
    client_id: String,
    client_secret: String,
    client: reqwest::Client,
}

/// What an introspection call concluded.
pub enum Introspected {
    Active {
        claims: Map<String, Value>,
        exp: u64,
    },
    Inactive,
}

impl Introspector {
    pub fn new(
        config: &IntrospectionConfig,
        secret: Vec<u8>,
        client: reqwest::Client,
    ) -> anyhow::Result<Introspector> {
        let client_secret = String::from_utf8(secret)
            .map_err(|_| anyhow::anyhow!("introspection client secret is not UTF-8"))?;
        Ok(Introspector {
            endpoint: config.endpoint.clone(),
            client_id: config.client_id.clone(),
            client_secret,
            client,
        })
    }

    pub async fn introspect(
        &self,
        token: &str,
        settings: &IssuerSettings,
    ) -> Result<Introspected, AuthnError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(issuer = %settings.name, error = %e, "token introspection failed");
            AuthnError::IntrospectionUnreachable
        };
        let request = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        let (_, body) = super::fetch::answer(request, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| unavailable(&e))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| unavailable(&"answer is not JSON"))?;
        judge(claims, settings, now())
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Decide on an introspection answer (RFC 7662 §2.2).
fn judge(
    mut claims: Map<String, Value>,
    settings: &IssuerSettings,
    now: u64,
) -> Result<Introspected, AuthnError> {
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Ok(Introspected::Inactive);
    }
    // Without `exp` the answer could not be cached safely; refuse.
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(AuthnError::IntrospectionInactive)?;
    if exp.saturating_add(settings.leeway.as_secs()) < now {
        return Err(AuthnError::TokenExpired);
    }
    if claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| nbf > now.saturating_add(settings.leeway.as_secs()))
    {
        return Err(AuthnError::TokenNotYetValid);
    }
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss != settings.issuer => return Err(AuthnError::UntrustedIssuer),
        _ => {}
    }
    let audiences = string_list(claims.get("aud"));
    if !audiences.iter().any(|a| settings.audiences.contains(a)) {
        return Err(AuthnError::WrongAudience);
    }
    super::verify::check_scopes(&settings.required_scopes, &claims)?;
    claims.remove("active");
    Ok(Introspected::Active { claims, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::AuthnConfig;
    use crate::config::errors::ConfigErrors;

    fn settings() -> IssuerSettings {
        let config: AuthnConfig = serde_yaml_ng::from_str(
            "issuers: [{name: a, issuer: 'https://id', audiences: [api], required_scopes: [read]}]",
        )
        .unwrap();
        ConfigErrors::collect(|errors| config.validate(errors))
            .unwrap()
            .issuers
            .remove(0)
    }

    fn answer(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn active_token_with_audience_and_scope_passes() {
        let r = judge(
            answer(
                r#"{"active":true,"exp":2000,"aud":"api","scope":"read","sub":"s","iss":"https://id"}"#,
            ),
            &settings(),
            1000,
        );
        assert!(matches!(r, Ok(Introspected::Active { exp: 2000, .. })));
    }

    #[test]
    fn refusals() {
        let s = settings();
        assert!(matches!(
            judge(answer(r#"{"active":false}"#), &s, 1000),
            Ok(Introspected::Inactive)
        ));
        assert!(matches!(
            judge(answer(r#"{"active":"true"}"#), &s, 1000),
            Ok(Introspected::Inactive)
        ));
        let refused = [
            (
                r#"{"active":true,"aud":"api","scope":"read"}"#,
                "introspection_inactive",
            ),
            (
                r#"{"active":true,"exp":10,"aud":"api","scope":"read"}"#,
                "token_expired",
            ),
            (
                r#"{"active":true,"exp":2000,"aud":"other","scope":"read"}"#,
                "wrong_audience",
            ),
            (
                r#"{"active":true,"exp":2000,"aud":"api","iss":"https://evil","scope":"read"}"#,
                "untrusted_issuer",
            ),
            (r#"{"active":true,"exp":2000,"aud":"api"}"#, "missing_scope"),
        ];
        for (json, reason) in refused {
            match judge(answer(json), &s, 1000) {
                Err(err) => assert_eq!(err.reason(), reason, "{json}"),
                Ok(_) => panic!("{json} was accepted"),
            }
        }
    }
}
