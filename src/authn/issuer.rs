//! One trusted issuer: its settings, key cache, optional shared secret,
//! Backstage userinfo and introspection clients, and the claim mapping to a
//! [`Principal`].

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use super::AuthnError;
use super::backstage::Userinfo;
use super::config::{IssuerKind, IssuerSettings, KeySource};
use super::introspection::Introspector;
use super::jwks::{Jwks, Key};
use super::metrics::AuthnMetrics;
use super::principal::Principal;

pub struct Issuer {
    pub settings: IssuerSettings,
    pub jwks: Arc<Jwks>,
    /// The HMAC key, only when `shared_secret_file` is configured.
    pub shared_secret: Option<Arc<Key>>,
    pub userinfo: Option<Userinfo>,
    pub introspection: Option<Introspector>,
    /// Backstage plugin id → that plugin's keys, for accepted plugins.
    pub plugins: HashMap<String, Arc<Jwks>>,
}

impl Issuer {
    /// Build the issuer and start its key refresher. Reads secret files;
    /// never contacts the issuer (startup must not depend on it).
    pub fn start(
        settings: IssuerSettings,
        client: &reqwest::Client,
        cache_entries: u64,
        metrics: AuthnMetrics,
    ) -> anyhow::Result<Issuer> {
        let shared_secret = match &settings.shared_secret_file {
            Some(path) => Some(Arc::new(Key::new(
                None,
                DecodingKey::from_secret(&read_secret(path)?),
            ))),
            None => None,
        };
        let introspection = match &settings.introspection {
            Some(c) => Some(Introspector::new(
                c,
                read_secret(&c.client_secret_file)?,
                client.clone(),
            )?),
            None => None,
        };
        let userinfo = settings
            .backstage
            .as_deref()
            .map(|base| Userinfo::new(base, client.clone(), cache_entries));
        let jwks = Jwks::new(
            settings.name.clone(),
            settings.issuer.clone(),
            settings.keys.clone(),
            client.clone(),
            settings.min_refresh,
            settings.max_refresh,
            metrics,
        );
        jwks.spawn_refresher();
        let mut plugins = HashMap::new();
        if let (Some(base), Some(p)) = (&settings.backstage, &settings.plugin_tokens) {
            for id in &p.plugins {
                let keys = Jwks::new(
                    format!("{}/{id}", settings.name),
                    String::new(),
                    KeySource::Jwks(format!("{base}/api/{id}/.backstage/auth/v1/jwks.json")),
                    client.clone(),
                    settings.min_refresh,
                    settings.max_refresh,
                    jwks.metrics(),
                );
                keys.spawn_refresher();
                plugins.insert(id.clone(), keys);
            }
        }
        Ok(Issuer {
            settings,
            jwks,
            shared_secret,
            userinfo,
            introspection,
            plugins,
        })
    }

    /// Map verified claims to the principal. `groups` overrides the groups
    /// claim (Backstage ownership refs fetched from userinfo).
    pub fn principal(
        &self,
        claims: Map<String, Value>,
        groups: Option<Vec<String>>,
    ) -> Result<Principal, AuthnError> {
        let mapping = &self.settings.claims;
        let subject = claim(&claims, &mapping.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthnError::MissingSubject)?
            .to_string();
        let email = claim(&claims, &mapping.email)
            .and_then(Value::as_str)
            .map(str::to_string);
        let groups = groups.unwrap_or_else(|| {
            let path = match self.settings.kind {
                IssuerKind::Backstage => "ent",
                IssuerKind::Oidc => mapping.groups.as_str(),
            };
            string_list(claim(&claims, path))
        });
        Ok(Principal::new(
            self.settings.issuer.clone(),
            subject,
            email,
            groups,
            claims,
        ))
    }
}

/// Follow a dotted path (`realm_access.roles`) through nested objects, and
/// only that: a top-level claim literally named `realm_access.roles` is
/// never read in its place, since some IdPs let users set claims of any
/// name. A claim whose own name holds dots (`https://example.com/groups`)
/// is written with each such dot escaped: `https://example\.com/groups`.
pub fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // The usual path (`sub`, `email`, `groups`) is one key: looked up as
    // it is, without splitting it into owned segments first.
    if !path.contains(['.', '\\']) {
        return claims.get(path);
    }
    let mut segments = claim_path(path).into_iter();
    let mut node = claims.get(&segments.next()?)?;
    for segment in segments {
        node = node.as_object()?.get(&segment)?;
    }
    Some(node)
}

/// The keys of a claim path: split at every `.` not escaped as `\.`.
pub fn claim_path(path: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        let literal = match c {
            '\\' if chars.peek() == Some(&'.') => chars.next().unwrap_or('.'),
            '.' => {
                segments.push(String::new());
                continue;
            }
            c => c,
        };
        if let Some(segment) = segments.last_mut() {
            segment.push(literal);
        }
    }
    segments
}

/// Strings from an array claim (other items ignored) or a single string.
pub fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A secret file's bytes without the trailing newline editors add.
fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read secret file `{}`: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        anyhow::bail!("secret file `{}` is empty", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_reach_nested_claims() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"realm_access":{"roles":["a","b",3]},"https://x.io/g":"solo","groups":"one"}"#,
        )
        .unwrap();
        assert_eq!(
            string_list(claim(&claims, "realm_access.roles")),
            ["a", "b"]
        );
        assert_eq!(string_list(claim(&claims, r"https://x\.io/g")), ["solo"]);
        assert_eq!(string_list(claim(&claims, "groups")), ["one"]);
        assert!(claim(&claims, "realm_access.missing").is_none());
        assert!(claim(&claims, "groups.deeper").is_none());
    }

    #[test]
    fn a_literal_dotted_claim_never_shadows_the_nested_path() {
        // A user-settable top-level claim named like the configured path.
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"realm_access.roles":["admins"],"realm_access":{"roles":["staff"]},
                "a.b":"forged"}"#,
        )
        .unwrap();
        assert_eq!(string_list(claim(&claims, "realm_access.roles")), ["staff"]);
        // Absent nested path: still nothing, not the literal key.
        assert!(claim(&claims, "a.b").is_none());
        assert_eq!(string_list(claim(&claims, r"a\.b")), ["forged"]);
        assert_eq!(claim_path(r"x\.y.z"), ["x.y", "z"]);
    }
}
