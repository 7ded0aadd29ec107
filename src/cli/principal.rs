//! A principal as written in `principal.json` or a policy test file.

use serde::Deserialize;

use crate::authn::Principal;

/// A principal as written in `principal.json` or a test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    #[serde(default = "default_issuer")]
    pub issuer: String,
    pub subject: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

fn default_issuer() -> String {
    "https://issuer.invalid".into()
}

impl PrincipalSpec {
    pub fn principal(&self) -> Principal {
        Principal::new(
            self.issuer.clone(),
            self.subject.clone(),
            self.email.clone(),
            self.groups.clone(),
            self.claims.clone(),
        )
    }
}
