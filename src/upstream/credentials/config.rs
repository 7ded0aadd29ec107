//! The `upstream.credentials:` config section and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::errors::ConfigErrors;

/// The OAuth scope Firestore needs.
pub const DATASTORE_SCOPE: &str = "https://www.googleapis.com/auth/datastore";

/// Google's IAM Credentials API, which mints impersonated tokens.
pub const IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

/// IAM Credentials refuses lifetimes above 12 hours (and above 1 hour unless an
/// organization policy allows more).
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Where firegate's own Google identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Application Default Credentials, resolved exactly as Google's libraries
    /// do: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's well-known file, then
    /// the metadata server.
    Adc,
    /// A service-account key file named by `service_account_key`.
    ServiceAccountKey,
    /// The metadata server only (GCE, GKE Workload Identity, Cloud Run).
    Metadata,
    /// No Google token: `Authorization: Bearer owner`, the Firestore
    /// emulator's admin convention. Loopback `http://` upstreams only.
    Emulator,
}

/// Raw `upstream.credentials:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Defaults to `service_account_key` when a key path is given, else `adc`.
    #[serde(default)]
    pub source: Option<Source>,
    /// Path of a service-account JSON key (`source: service_account_key`).
    #[serde(default)]
    pub service_account_key: Option<PathBuf>,
    /// Metadata server base URL (`source: metadata`); default
    /// `http://$GCE_METADATA_HOST` or `http://metadata.google.internal`.
    #[serde(default)]
    pub metadata_endpoint: Option<String>,
    /// OAuth scopes of every token firegate mints.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// How per-rule (`as:`) service accounts are impersonated.
    #[serde(default)]
    pub impersonation: ImpersonationConfig,
}

/// Raw `upstream.credentials.impersonation:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpersonationConfig {
    /// Lifetime asked of IAM Credentials for each impersonated token.
    #[serde(default = "default_lifetime")]
    pub lifetime: String,
    /// Delegation chain (service-account emails), each granted
    /// `roles/iam.serviceAccountTokenCreator` on the next.
    #[serde(default)]
    pub delegates: Vec<String>,
    /// Base URL of IAM Credentials (override for tests and private endpoints).
    #[serde(default = "default_iam_endpoint")]
    pub iam_endpoint: String,
}

fn default_scopes() -> Vec<String> {
    vec![DATASTORE_SCOPE.into()]
}

/// Default `impersonation.lifetime`.
const LIFETIME: Duration = Duration::from_secs(3600);

fn default_lifetime() -> String {
    crate::config::value::default_duration(LIFETIME)
}

fn default_iam_endpoint() -> String {
    IAM_ENDPOINT.into()
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            source: None,
            service_account_key: None,
            metadata_endpoint: None,
            scopes: default_scopes(),
            impersonation: ImpersonationConfig::default(),
        }
    }
}

impl Default for ImpersonationConfig {
    fn default() -> Self {
        ImpersonationConfig {
            lifetime: default_lifetime(),
            delegates: Vec::new(),
            iam_endpoint: default_iam_endpoint(),
        }
    }
}

impl CredentialsConfig {
    /// The `emulator` source, for `firegate dev` and tests.
    pub fn emulator() -> Self {
        CredentialsConfig {
            source: Some(Source::Emulator),
            ..CredentialsConfig::default()
        }
    }

    /// The source in effect once defaults are applied.
    pub fn source(&self) -> Source {
        match (self.source, &self.service_account_key) {
            (Some(source), _) => source,
            (None, Some(_)) => Source::ServiceAccountKey,
            (None, None) => Source::Adc,
        }
    }

    /// The typed `upstream.credentials`, recording every problem.
    /// `emulator_allowed` says whether the upstream may receive the
    /// emulator's owner token.
    pub fn validate(
        self,
        emulator_allowed: bool,
        errors: &mut ConfigErrors,
    ) -> CredentialsSettings {
        const KEY: &str = "upstream.credentials";
        let source = self.source();
        match (source, &self.service_account_key) {
            (Source::ServiceAccountKey, None) => errors.push(
                format!("{KEY}.service_account_key"),
                "required with `source: service_account_key`",
            ),
            (Source::ServiceAccountKey, Some(path)) => {
                if let Err(reason) = check_key_file(path) {
                    errors.push(format!("{KEY}.service_account_key"), reason);
                }
            }
            (_, Some(_)) => errors.push(
                format!("{KEY}.service_account_key"),
                "only used with `source: service_account_key`",
            ),
            (_, None) => {}
        }
        if let Some(endpoint) = &self.metadata_endpoint {
            if source != Source::Metadata {
                errors.push(
                    format!("{KEY}.metadata_endpoint"),
                    "only used with `source: metadata`",
                );
            } else if !is_http_url(endpoint) {
                errors.push(
                    format!("{KEY}.metadata_endpoint"),
                    format!("`{endpoint}` is not an http(s) URL"),
                );
            }
        }
        if source == Source::Emulator && !emulator_allowed {
            errors.push(
                format!("{KEY}.source"),
                "`emulator` sends a fixed owner token: only for an `http://` loopback \
                 `upstream.url`, or set `upstream.emulator: true`",
            );
        }
        if self.scopes.is_empty() {
            errors.push(format!("{KEY}.scopes"), "must name at least one scope");
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if scope.is_empty() || scope.chars().any(char::is_whitespace) {
                errors.push(
                    format!("{KEY}.scopes[{i}]"),
                    "a scope is one non-empty word",
                );
            }
        }
        let base = match source {
            Source::Adc => BaseCredentials::Adc,
            Source::ServiceAccountKey => {
                BaseCredentials::ServiceAccountKey(self.service_account_key.unwrap_or_default())
            }
            Source::Metadata => BaseCredentials::Metadata(self.metadata_endpoint),
            Source::Emulator => BaseCredentials::Emulator,
        };
        CredentialsSettings {
            base,
            scopes: self.scopes,
            impersonation: self.impersonation.validate(errors),
        }
    }
}

/// Where the validated base identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseCredentials {
    Adc,
    ServiceAccountKey(PathBuf),
    /// The metadata server, at this base URL if given.
    Metadata(Option<String>),
    Emulator,
}

/// The validated `upstream.credentials:`.
#[derive(Debug, Clone)]
pub struct CredentialsSettings {
    pub base: BaseCredentials,
    pub scopes: Vec<String>,
    pub impersonation: ImpersonationSettings,
}

/// The validated `upstream.credentials.impersonation:`.
#[derive(Debug, Clone)]
pub struct ImpersonationSettings {
    /// Whole seconds, 1s to 12h.
    pub lifetime: Duration,
    pub delegates: Vec<String>,
    /// Without a trailing slash.
    pub iam_endpoint: String,
}

impl ImpersonationConfig {
    fn validate(self, errors: &mut ConfigErrors) -> ImpersonationSettings {
        const KEY: &str = "upstream.credentials.impersonation";
        let lifetime =
            crate::config::value::duration(&format!("{KEY}.lifetime"), &self.lifetime, errors);
        if lifetime.is_some_and(|l| l.is_zero() || l > MAX_LIFETIME || l.subsec_nanos() != 0) {
            errors.push(
                format!("{KEY}.lifetime"),
                "must be whole seconds between 1s and 12h",
            );
        }
        for (i, delegate) in self.delegates.iter().enumerate() {
            if !is_service_account(delegate) {
                errors.push(
                    format!("{KEY}.delegates[{i}]"),
                    format!("`{delegate}` is not a service-account email"),
                );
            }
        }
        if !is_http_url(&self.iam_endpoint) {
            errors.push(
                format!("{KEY}.iam_endpoint"),
                format!("`{}` is not an http(s) URL", self.iam_endpoint),
            );
        } else if self.iam_endpoint.starts_with("http:") && !is_loopback_http(&self.iam_endpoint) {
            errors.push(
                format!("{KEY}.iam_endpoint"),
                "firegate's own token is sent there: `https://`, or `http://` on loopback only",
            );
        }
        ImpersonationSettings {
            lifetime: lifetime.unwrap_or_default(),
            iam_endpoint: self.iam_endpoint.trim_end_matches('/').to_owned(),
            delegates: self.delegates,
        }
    }
}

/// Whether `path` holds a service-account key, without ever quoting it.
fn check_key_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    // serde_json's message names a line and column, never the contents.
    let key: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
    let field = |name: &str| key.get(name).and_then(|v| v.as_str());
    if field("type") != Some("service_account") {
        return Err(format!(
            "`{}` is not a service-account key (`type` must be `service_account`)",
            path.display()
        ));
    }
    for name in ["client_email", "private_key", "private_key_id"] {
        if field(name).is_none_or(str::is_empty) {
            return Err(format!("`{}` has no `{name}`", path.display()));
        }
    }
    Ok(())
}

/// A service-account email as IAM names it: safe to put in a URL path as is.
pub fn is_service_account(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let word = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    word(local) && word(domain) && domain.contains('.') && s.len() <= 254
}

fn is_http_url(s: &str) -> bool {
    s.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some()
            && uri.query().is_none()
    })
}

/// Whether `url` is `http://` to a loopback host, where the emulator's
/// owner token cannot leave the machine.
pub fn is_loopback_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> CredentialsSettings {
        let config: CredentialsConfig = serde_yaml_ng::from_str(yaml).expect("parses");
        ConfigErrors::collect(|errors| config.validate(true, errors)).expect("valid")
    }

    fn problems(yaml: &str, emulator_allowed: bool) -> Vec<String> {
        let config: CredentialsConfig = serde_yaml_ng::from_str(yaml).expect("parses");
        let mut errors = ConfigErrors::default();
        config.validate(emulator_allowed, &mut errors);
        errors.errors.into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn defaults_are_adc_with_the_datastore_scope() {
        let config = CredentialsConfig::default();
        assert_eq!(config.source(), Source::Adc);
        let s = settings("{}");
        assert_eq!(s.base, BaseCredentials::Adc);
        assert_eq!(s.scopes, vec![DATASTORE_SCOPE.to_string()]);
        assert_eq!(s.impersonation.lifetime, Duration::from_secs(3600));
        assert_eq!(s.impersonation.iam_endpoint, IAM_ENDPOINT);
        assert!(problems("{}", false).is_empty());
    }

    #[test]
    fn the_validated_values_are_the_ones_written() {
        let s = settings(
            "source: metadata\nmetadata_endpoint: 'http://169.254.169.254'\nscopes: [a, b]\n\
             impersonation: {lifetime: 15m, delegates: [d@p.iam.gserviceaccount.com], \
             iam_endpoint: 'https://iam.example.com/'}",
        );
        assert_eq!(
            s.base,
            BaseCredentials::Metadata(Some("http://169.254.169.254".into()))
        );
        assert_eq!(s.scopes, ["a", "b"]);
        assert_eq!(s.impersonation.lifetime, Duration::from_secs(900));
        assert_eq!(s.impersonation.delegates, ["d@p.iam.gserviceaccount.com"]);
        assert_eq!(s.impersonation.iam_endpoint, "https://iam.example.com");
        for lifetime in ["0s", "1500ms", "13h", "soon"] {
            assert_eq!(
                problems(&format!("impersonation: {{lifetime: {lifetime}}}"), false),
                ["upstream.credentials.impersonation.lifetime"],
                "{lifetime}"
            );
        }
    }

    #[test]
    fn a_key_path_implies_the_key_source() {
        let config: CredentialsConfig =
            serde_yaml_ng::from_str("service_account_key: /nonexistent/key.json").expect("parses");
        assert_eq!(config.source(), Source::ServiceAccountKey);
        assert_eq!(
            problems("service_account_key: /nonexistent/key.json", false),
            ["upstream.credentials.service_account_key"]
        );
    }

    #[test]
    fn mismatched_keys_are_reported_together() {
        let found = problems(
            "source: metadata\nservice_account_key: /etc/hostname\nscopes: []\n\
             impersonation: {lifetime: 13h, delegates: [nobody], iam_endpoint: 'ftp://x'}",
            false,
        );
        assert_eq!(
            found,
            [
                "upstream.credentials.service_account_key",
                "upstream.credentials.scopes",
                "upstream.credentials.impersonation.lifetime",
                "upstream.credentials.impersonation.delegates[0]",
                "upstream.credentials.impersonation.iam_endpoint",
            ]
        );
    }

    #[test]
    fn a_key_file_must_be_a_service_account_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let check = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            check_key_file(&path)
        };
        let secret = "-----BEGIN PRIVATE KEY-----\nsecret-material\n";
        let bad =
            check("garbled.json", &format!("{{\"private_key\": \"{secret}")).expect_err("not JSON");
        assert!(!bad.contains("secret-material"), "{bad}");
        assert!(check("user.json", r#"{"type": "authorized_user"}"#).is_err());
        assert!(
            check(
                "partial.json",
                r#"{"type": "service_account", "client_email": "a@b.c"}"#
            )
            .expect_err("no key")
            .contains("private_key")
        );
        let key = serde_json::json!({
            "type": "service_account",
            "client_email": "a@b.iam.gserviceaccount.com",
            "private_key": secret,
            "private_key_id": "kid",
        });
        assert_eq!(check("key.json", &key.to_string()), Ok(()));
    }

    #[test]
    fn emulator_needs_a_loopback_upstream_or_an_explicit_flag() {
        assert_eq!(
            problems("source: emulator", false),
            ["upstream.credentials.source"]
        );
        assert!(problems("source: emulator", true).is_empty());
    }

    #[test]
    fn the_base_token_never_travels_in_clear_text() {
        assert_eq!(
            problems(
                "impersonation: {iam_endpoint: 'http://iam.example.com'}",
                false
            ),
            ["upstream.credentials.impersonation.iam_endpoint"]
        );
        assert!(problems("impersonation: {iam_endpoint: 'http://127.0.0.1:9'}", false).is_empty());
        assert!(
            problems(
                "impersonation: {iam_endpoint: 'https://iam.example.com'}",
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_yaml_ng::from_str::<CredentialsConfig>("scope: [x]").is_err());
        assert!(serde_yaml_ng::from_str::<CredentialsConfig>("source: gcloud").is_err());
    }

    #[test]
    fn loopback_http_only() {
        assert!(is_loopback_http("http://127.0.0.1:8080"));
        assert!(is_loopback_http("http://[::1]:8080"));
        assert!(is_loopback_http("http://localhost:8080"));
        assert!(!is_loopback_http("https://127.0.0.1:8080"));
        assert!(!is_loopback_http("http://10.0.0.1:8080"));
        assert!(!is_loopback_http("http://firestore.googleapis.com"));
        assert!(!is_loopback_http("http://127.0.0.1.example.com"));
    }

    #[test]
    fn service_account_names_are_url_safe_emails() {
        assert!(is_service_account("reader@proj.iam.gserviceaccount.com"));
        assert!(!is_service_account("reader"));
        assert!(!is_service_account("a/b@proj.iam.gserviceaccount.com"));
        assert!(!is_service_account("a@b@c.com"));
        assert!(!is_service_account("@proj.iam.gserviceaccount.com"));
    }
}
