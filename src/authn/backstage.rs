//! Backstage user tokens without an `ent` claim: the ownership entity refs
//! come from `<base>/api/auth/v1/userinfo`, asked with the same token and
//! cached for the token's lifetime.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::AuthnError;
use super::cache::{TokenCache, TokenHash};
use super::issuer::string_list;
use crate::fetch::AnswerError;

/// Largest userinfo answer read.
const MAX_USERINFO_BYTES: usize = 256 * 1024;

pub struct Userinfo {
    url: String,
    client: reqwest::Client,
    cache: TokenCache<Arc<Vec<String>>>,
}

impl Userinfo {
    pub fn new(base_url: &str, client: reqwest::Client, max_entries: u64) -> Userinfo {
        Userinfo {
            url: format!("{base_url}/api/auth/v1/userinfo"),
            client,
            cache: TokenCache::new(max_entries),
        }
    }

    /// The ownership refs of the (already verified) token's user. The
    /// answer must name the same `sub` as the token.
    pub async fn ownership(
        &self,
        token: &str,
        hash: TokenHash,
        subject: &str,
        until: SystemTime,
    ) -> Result<Arc<Vec<String>>, AuthnError> {
        if let Some(refs) = self.cache.get(&hash) {
            return Ok(refs);
        }
        let refs = Arc::new(self.fetch(token, subject).await?);
        self.cache.insert(hash, Arc::clone(&refs), until);
        Ok(refs)
    }

    async fn fetch(&self, token: &str, subject: &str) -> Result<Vec<String>, AuthnError> {
        #[derive(Deserialize)]
        struct Answer {
            claims: Claims,
        }
        #[derive(Deserialize)]
        struct Claims {
            sub: String,
            #[serde(default)]
            ent: Option<serde_json::Value>,
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "Backstage userinfo lookup failed");
            AuthnError::UserinfoUnreachable
        };
        let request = self.client.get(&self.url).bearer_auth(token);
        let (_, body) = super::fetch::answer(request, MAX_USERINFO_BYTES)
            .await
            .map_err(|e| match e {
                // Backstage verified the token itself and said no: the
                // token is bad, not the service.
                AnswerError::Status(status) if refuses_token(status) => AuthnError::UserinfoRefused,
                e => unavailable(&e),
            })?;
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|_| unavailable(&"not a userinfo answer"))?;
        if answer.claims.sub != subject {
            return Err(unavailable(&"userinfo names another subject"));
        }
        Ok(string_list(answer.claims.ent.as_ref()))
    }
}

/// A 4xx other than a timeout or rate limit: Backstage refused this token.
fn refuses_token(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}
