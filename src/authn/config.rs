//! The `authn:` config section: raw serde structs and their validation into
//! per-issuer [`IssuerSettings`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::config::errors::ConfigErrors;
use crate::config::value::duration;

/// Raw `authn:` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// Longer `Authorization` values are refused before any parsing.
    #[serde(default = "defaults::max_token_bytes")]
    pub max_token_bytes: usize,
    /// Timeout for every call to an issuer (discovery, JWKS, userinfo,
    /// introspection).
    #[serde(default = "defaults::http_timeout")]
    pub http_timeout: String,
    #[serde(default)]
    pub token_cache: TokenCacheConfig,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

impl Default for AuthnConfig {
    fn default() -> Self {
        AuthnConfig {
            max_token_bytes: defaults::max_token_bytes(),
            http_timeout: defaults::http_timeout(),
            token_cache: TokenCacheConfig::default(),
            issuers: Vec::new(),
        }
    }
}

/// `authn.token_cache:` — verified tokens, keyed by SHA-256 of the token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheConfig {
    #[serde(default = "defaults::max_entries")]
    pub max_entries: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig {
            max_entries: defaults::max_entries(),
        }
    }
}

/// What kind of issuer an entry is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    #[default]
    Oidc,
    Backstage,
}

/// One entry of `authn.issuers:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name for logs and metrics.
    pub name: String,
    #[serde(default)]
    pub kind: IssuerKind,
    /// The exact `iss` value. Derived from `backstage.base_url` for Backstage.
    pub issuer: Option<String>,
    /// Fetch `<issuer>/.well-known/openid-configuration` to find `jwks_uri`.
    #[serde(default = "defaults::yes")]
    pub discovery: bool,
    /// Overrides discovery.
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values; at least one. Backstage defaults to `backstage`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values. Default RS256, ES256, PS256, EdDSA (ES256 for
    /// Backstage). HS* only with `shared_secret_file`; `none` never.
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default = "defaults::leeway")]
    pub leeway: String,
    /// Every one of these must appear in `scope` / `scp`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default)]
    pub claims: ClaimsConfig,
    pub introspection: Option<IntrospectionConfig>,
    /// HMAC secret for HS256/384/512 tokens of this issuer.
    pub shared_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub jwks_refresh: JwksRefreshConfig,
    pub backstage: Option<BackstageConfig>,
}

/// `claims:` — where the principal's fields come from (dotted paths).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    #[serde(default = "defaults::subject")]
    pub subject: String,
    #[serde(default = "defaults::email")]
    pub email: String,
    #[serde(default = "defaults::groups")]
    pub groups: String,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            subject: defaults::subject(),
            email: defaults::email(),
            groups: defaults::groups(),
        }
    }
}

/// `introspection:` — RFC 7662 for opaque tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub endpoint: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
}

/// `jwks_refresh:` — bounds on the refresh schedule and the unknown-`kid`
/// refresh rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksRefreshConfig {
    #[serde(default = "defaults::min_interval")]
    pub min_interval: String,
    #[serde(default = "defaults::max_interval")]
    pub max_interval: String,
}

impl Default for JwksRefreshConfig {
    fn default() -> Self {
        JwksRefreshConfig {
            min_interval: defaults::min_interval(),
            max_interval: defaults::max_interval(),
        }
    }
}

/// `backstage:` — the Backstage backend whose user tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackstageConfig {
    pub base_url: String,
    /// Also accept plugin (service-to-service) tokens.
    pub plugin_tokens: Option<PluginTokensConfig>,
}

/// `backstage.plugin_tokens:` — which Backstage plugins may call, and the
/// `aud` (target plugin id) their tokens must name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginTokensConfig {
    pub audience: String,
    pub plugins: Vec<String>,
}

mod defaults {
    pub fn max_token_bytes() -> usize {
        8 * 1024
    }
    pub fn http_timeout() -> String {
        "5s".into()
    }
    pub fn max_entries() -> u64 {
        10_000
    }
    pub fn yes() -> bool {
        true
    }
    pub fn leeway() -> String {
        "30s".into()
    }
    pub fn subject() -> String {
        "sub".into()
    }
    pub fn email() -> String {
        "email".into()
    }
    pub fn groups() -> String {
        "groups".into()
    }
    pub fn min_interval() -> String {
        "10s".into()
    }
    pub fn max_interval() -> String {
        "1h".into()
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(String),
    Discovery(String),
}

/// One issuer, validated.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub name: String,
    pub kind: IssuerKind,
    pub issuer: String,
    pub keys: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub required_scopes: Vec<String>,
    pub claims: ClaimsConfig,
    pub introspection: Option<IntrospectionConfig>,
    pub shared_secret_file: Option<PathBuf>,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Backstage base URL without a trailing slash.
    pub backstage: Option<String>,
    pub plugin_tokens: Option<PluginTokensConfig>,
}

const DEFAULT_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// The validated `authn:` section.
#[derive(Debug, Clone)]
pub struct AuthnSettings {
    pub max_token_bytes: usize,
    pub http_timeout: Duration,
    /// Verified tokens kept (and Backstage ownership answers).
    pub token_cache_entries: u64,
    /// Only the issuers that validated, in config order.
    pub issuers: Vec<IssuerSettings>,
}

impl AuthnConfig {
    /// The typed `authn:` section, recording every problem under its key.
    pub fn validate(self, errors: &mut ConfigErrors) -> AuthnSettings {
        let http_timeout = duration("authn.http_timeout", &self.http_timeout, errors);
        if http_timeout.is_some_and(|t| t.is_zero()) {
            errors.push("authn.http_timeout", "must be more than zero");
        }
        if self.max_token_bytes < 256 {
            errors.push("authn.max_token_bytes", "must be at least 256");
        }
        if self.token_cache.max_entries == 0 {
            errors.push(
                "authn.token_cache.max_entries",
                "must be at least 1 (every request would verify a signature)",
            );
        }
        let mut names = HashSet::new();
        let mut issuers = HashSet::new();
        let mut out = Vec::with_capacity(self.issuers.len());
        for (i, raw) in self.issuers.iter().enumerate() {
            let key = format!("authn.issuers[{i}]");
            let settings = raw.settings(&key, errors);
            if !names.insert(raw.name.clone()) {
                errors.push(
                    format!("{key}.name"),
                    format!("`{}` is used twice", raw.name),
                );
            }
            if let Some(s) = settings {
                // Plugin tokens carry no `iss`: only one Backstage can own them.
                if s.plugin_tokens.is_some()
                    && out
                        .iter()
                        .any(|o: &IssuerSettings| o.plugin_tokens.is_some())
                {
                    errors.push(
                        format!("{key}.backstage.plugin_tokens"),
                        "only one issuer may accept plugin tokens (they name no issuer)",
                    );
                }
                if !issuers.insert(s.issuer.clone()) {
                    errors.push(
                        format!("{key}.issuer"),
                        format!("`{}` is configured twice", s.issuer),
                    );
                }
                out.push(s);
            }
        }
        AuthnSettings {
            max_token_bytes: self.max_token_bytes,
            http_timeout: http_timeout.unwrap_or_default(),
            token_cache_entries: self.token_cache.max_entries,
            issuers: out,
        }
    }
}

impl IssuerConfig {
    fn settings(&self, key: &str, errors: &mut ConfigErrors) -> Option<IssuerSettings> {
        let before = errors.errors.len();
        if self.name.trim().is_empty() {
            errors.push(format!("{key}.name"), "must not be empty");
        }
        let backstage = self.backstage_base(key, errors);
        let issuer = match (&backstage, &self.issuer) {
            (Some(base), None) => format!("{base}/api/auth"),
            (Some(base), Some(given)) if *given == format!("{base}/api/auth") => given.clone(),
            (Some(base), Some(_)) => {
                errors.push(
                    format!("{key}.issuer"),
                    format!("a Backstage issuer is `{base}/api/auth`; leave `issuer` out"),
                );
                String::new()
            }
            (None, Some(given)) => {
                check_url(&format!("{key}.issuer"), given, errors);
                given.clone()
            }
            // Already reported as a missing `backstage.base_url`.
            (None, None) if self.kind == IssuerKind::Backstage => String::new(),
            (None, None) => {
                errors.push(format!("{key}.issuer"), "required");
                String::new()
            }
        };
        let keys = match (&self.jwks_uri, &backstage) {
            (Some(uri), _) => {
                check_url(&format!("{key}.jwks_uri"), uri, errors);
                KeySource::Jwks(uri.clone())
            }
            (None, Some(base)) => KeySource::Jwks(format!("{base}/api/auth/.well-known/jwks.json")),
            (None, None) if self.discovery => KeySource::Discovery(format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            )),
            (None, None) => {
                errors.push(
                    format!("{key}.jwks_uri"),
                    "required when `discovery: false`",
                );
                KeySource::Jwks(String::new())
            }
        };
        let audiences = if self.audiences.is_empty() && backstage.is_some() {
            vec!["backstage".to_string()]
        } else {
            self.audiences.clone()
        };
        if audiences.is_empty() {
            errors.push(
                format!("{key}.audiences"),
                "give at least one accepted `aud`: a token minted for another service must not pass",
            );
        }
        let algorithms = self.algorithms(key, backstage.is_some(), errors);
        let leeway = duration(&format!("{key}.leeway"), &self.leeway, errors);
        if leeway.is_some_and(|l| l > Duration::from_secs(300)) {
            errors.push(format!("{key}.leeway"), "at most 5m");
        }
        let min_refresh = duration(
            &format!("{key}.jwks_refresh.min_interval"),
            &self.jwks_refresh.min_interval,
            errors,
        );
        let max_refresh = duration(
            &format!("{key}.jwks_refresh.max_interval"),
            &self.jwks_refresh.max_interval,
            errors,
        );
        if let (Some(min), Some(max)) = (min_refresh, max_refresh)
            && min > max
        {
            errors.push(
                format!("{key}.jwks_refresh.min_interval"),
                "must not exceed `max_interval`",
            );
        }
        if max_refresh.is_some_and(|max| max.is_zero()) {
            errors.push(
                format!("{key}.jwks_refresh.max_interval"),
                "must be above zero",
            );
        }
        for (field, path) in [
            ("subject", &self.claims.subject),
            ("email", &self.claims.email),
            ("groups", &self.claims.groups),
        ] {
            if crate::authn::issuer::claim_path(path)
                .iter()
                .any(String::is_empty)
            {
                errors.push(
                    format!("{key}.claims.{field}"),
                    format!("`{path}` is not a claim path like `realm_access.roles`"),
                );
            }
        }
        if let Some(i) = &self.introspection {
            check_url(
                &format!("{key}.introspection.endpoint"),
                &i.endpoint,
                errors,
            );
            check_file(
                &format!("{key}.introspection.client_secret_file"),
                &i.client_secret_file,
                errors,
            );
        }
        if let Some(path) = &self.shared_secret_file {
            check_file(&format!("{key}.shared_secret_file"), path, errors);
        }
        if errors.errors.len() != before {
            return None;
        }
        Some(IssuerSettings {
            name: self.name.clone(),
            kind: self.kind,
            issuer,
            keys,
            audiences,
            algorithms,
            leeway: leeway?,
            required_scopes: self.required_scopes.clone(),
            claims: self.claims.clone(),
            introspection: self.introspection.clone(),
            shared_secret_file: self.shared_secret_file.clone(),
            min_refresh: min_refresh?,
            max_refresh: max_refresh?,
            backstage,
            plugin_tokens: self
                .backstage
                .as_ref()
                .and_then(|b| b.plugin_tokens.clone()),
        })
    }

    fn backstage_base(&self, key: &str, errors: &mut ConfigErrors) -> Option<String> {
        match (self.kind, &self.backstage) {
            (IssuerKind::Backstage, Some(b)) => {
                check_url(&format!("{key}.backstage.base_url"), &b.base_url, errors);
                if let Some(p) = &b.plugin_tokens {
                    check_plugin_tokens(&format!("{key}.backstage.plugin_tokens"), p, errors);
                }
                Some(b.base_url.trim_end_matches('/').to_string())
            }
            (IssuerKind::Backstage, None) => {
                errors.push(
                    format!("{key}.backstage.base_url"),
                    "required for `kind: backstage`",
                );
                None
            }
            (IssuerKind::Oidc, Some(_)) => {
                errors.push(format!("{key}.backstage"), "only for `kind: backstage`");
                None
            }
            (IssuerKind::Oidc, None) => None,
        }
    }

    fn algorithms(&self, key: &str, backstage: bool, errors: &mut ConfigErrors) -> Vec<Algorithm> {
        if self.algorithms.is_empty() {
            return if backstage {
                vec![Algorithm::ES256]
            } else {
                DEFAULT_ALGORITHMS.to_vec()
            };
        }
        let mut out = Vec::new();
        for (i, name) in self.algorithms.iter().enumerate() {
            let k = format!("{key}.algorithms[{i}]");
            match name.parse::<Algorithm>() {
                Ok(alg) if is_hmac(alg) && self.shared_secret_file.is_none() => errors.push(
                    k,
                    format!("`{name}` needs `shared_secret_file` for this issuer"),
                ),
                Ok(alg) => out.push(alg),
                Err(_) => errors.push(
                    k,
                    format!(
                        "`{name}` is not an accepted algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512; never `none`)"
                    ),
                ),
            }
        }
        out
    }
}

/// Backstage's own rule for plugin ids; they become URL path segments.
pub fn is_plugin_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn check_plugin_tokens(key: &str, p: &PluginTokensConfig, errors: &mut ConfigErrors) {
    if !is_plugin_id(&p.audience) {
        errors.push(
            format!("{key}.audience"),
            "the plugin id callers target, like `firegate`",
        );
    }
    if p.plugins.is_empty() {
        errors.push(format!("{key}.plugins"), "name at least one calling plugin");
    }
    for (i, id) in p.plugins.iter().enumerate() {
        if !is_plugin_id(id) {
            errors.push(
                format!("{key}.plugins[{i}]"),
                format!("`{id}` is not a plugin id (letters, digits, `_`, `-`)"),
            );
        }
    }
}

/// HMAC algorithms use a shared secret, never a published key.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn check_url(key: &str, value: &str, errors: &mut ConfigErrors) {
    match value.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("https" | "http")) && uri.host().is_some() => {}
        _ => errors.push(key, format!("`{value}` is not an http(s) URL")),
    }
}

fn check_file(key: &str, path: &std::path::Path, errors: &mut ConfigErrors) {
    if let Err(e) = std::fs::metadata(path) {
        errors.push(key, format!("cannot read `{}`: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let config: AuthnConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let mut errors = ConfigErrors::default();
        config.validate(&mut errors);
        errors.errors.into_iter().map(|e| e.key).collect()
    }

    fn settings_of(yaml: &str) -> AuthnSettings {
        let config: AuthnConfig = serde_yaml_ng::from_str(yaml).unwrap();
        ConfigErrors::collect(|errors| config.validate(errors)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn minimal_oidc_issuer_discovers_its_keys() {
        let s =
            settings_of("issuers: [{name: a, issuer: 'https://id.example.com/', audiences: [x]}]")
                .issuers;
        assert_eq!(
            s[0].keys,
            KeySource::Discovery("https://id.example.com/.well-known/openid-configuration".into())
        );
        assert_eq!(s[0].algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(s[0].leeway, Duration::from_secs(30));
    }

    #[test]
    fn backstage_issuer_is_derived_from_base_url() {
        let s = settings_of(
            "issuers: [{name: bs, kind: backstage, backstage: {base_url: 'http://bs:7007/'}}]",
        )
        .issuers;
        assert_eq!(s[0].issuer, "http://bs:7007/api/auth");
        assert_eq!(
            s[0].keys,
            KeySource::Jwks("http://bs:7007/api/auth/.well-known/jwks.json".into())
        );
        assert_eq!(s[0].audiences, ["backstage"]);
        assert_eq!(s[0].algorithms, [Algorithm::ES256]);
    }

    #[test]
    fn every_problem_is_reported() {
        let keys = errors_of(
            "issuers:\n- {name: a, issuer: 'nope', audiences: [], algorithms: [none, HS256], leeway: forever, claims: {groups: 'a..b'}}\n- {name: a, kind: backstage}\n",
        );
        assert_eq!(
            keys,
            [
                "authn.issuers[0].issuer",
                "authn.issuers[0].audiences",
                "authn.issuers[0].algorithms[0]",
                "authn.issuers[0].algorithms[1]",
                "authn.issuers[0].leeway",
                "authn.issuers[0].claims.groups",
                "authn.issuers[1].backstage.base_url",
                "authn.issuers[1].audiences",
                "authn.issuers[1].name",
            ]
        );
    }

    #[test]
    fn plugin_tokens_are_validated() {
        let keys = errors_of(
            "issuers:\n- {name: a, kind: backstage, backstage: {base_url: 'http://a', plugin_tokens: {audience: 'fire gate', plugins: [catalog, '../x']}}}\n- {name: b, kind: backstage, backstage: {base_url: 'http://b', plugin_tokens: {audience: firegate, plugins: [catalog]}}}\n",
        );
        assert_eq!(
            keys,
            [
                "authn.issuers[0].backstage.plugin_tokens.audience",
                "authn.issuers[0].backstage.plugin_tokens.plugins[1]",
            ]
        );
        let keys = errors_of(
            "issuers:\n- {name: a, kind: backstage, backstage: {base_url: 'http://a', plugin_tokens: {audience: firegate, plugins: [catalog]}}}\n- {name: b, kind: backstage, backstage: {base_url: 'http://b', plugin_tokens: {audience: firegate, plugins: [catalog]}}}\n",
        );
        assert_eq!(keys, ["authn.issuers[1].backstage.plugin_tokens"]);
    }

    #[test]
    fn the_validated_values_are_the_ones_written() {
        let s = settings_of(
            "max_token_bytes: 4096\nhttp_timeout: 1500ms\ntoken_cache: {max_entries: 7}\n\
             issuers: [{name: a, issuer: 'https://x', audiences: [x], leeway: 45s, \
             jwks_refresh: {min_interval: 2s, max_interval: 3m}}]",
        );
        assert_eq!(s.max_token_bytes, 4096);
        assert_eq!(s.http_timeout, Duration::from_millis(1500));
        assert_eq!(s.token_cache_entries, 7);
        let issuer = &s.issuers[0];
        assert_eq!(issuer.leeway, Duration::from_secs(45));
        assert_eq!(
            (issuer.min_refresh, issuer.max_refresh),
            (Duration::from_secs(2), Duration::from_secs(180))
        );
        assert_eq!(errors_of("http_timeout: 0s"), ["authn.http_timeout"]);
        assert_eq!(
            errors_of(
                "issuers: [{name: a, issuer: 'https://x', audiences: [x], jwks_refresh: {min_interval: soon}}]"
            ),
            ["authn.issuers[0].jwks_refresh.min_interval"]
        );
    }

    #[test]
    fn unknown_keys_fail() {
        let r: Result<AuthnConfig, _> =
            serde_yaml_ng::from_str("issuers: [{name: a, issuer: 'https://x', audence: [x]}]");
        assert!(r.is_err());
    }

    #[test]
    fn same_issuer_twice_is_an_error() {
        let keys = errors_of(
            "issuers: [{name: a, issuer: 'https://x', audiences: [x]}, {name: b, issuer: 'https://x', audiences: [y]}]",
        );
        assert_eq!(keys, ["authn.issuers[1].issuer"]);
    }
}
