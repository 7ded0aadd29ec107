//! Per-rule upstream identity: IAM Credentials `generateAccessToken` for a
//! named service account, authorized by the base credentials.

use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::CredentialsError;
use super::base::bearer;
use super::cache::Minted;
use super::config::CredentialsSettings;
use crate::fetch::{self, AnswerError};

/// A slow IAM endpoint must not hold requests for long: they fail closed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An access token answer is a few kilobytes; anything far larger is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Serialize)]
struct GenerateAccessTokenRequest<'a> {
    delegates: &'a [String],
    scope: &'a [String],
    lifetime: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: String,
    expire_time: String,
}

/// Calls IAM Credentials.
pub struct Impersonator {
    client: reqwest::Client,
    endpoint: String,
    scopes: Vec<String>,
    delegates: Vec<String>,
    lifetime: Duration,
}

impl Impersonator {
    pub fn new(settings: &CredentialsSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect would carry the base token somewhere unplanned.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Impersonator {
            client,
            endpoint: settings.impersonation.iam_endpoint.clone(),
            scopes: settings.scopes.clone(),
            delegates: settings
                .impersonation
                .delegates
                .iter()
                .map(|d| format!("projects/-/serviceAccounts/{d}"))
                .collect(),
            lifetime: settings.impersonation.lifetime,
        })
    }

    /// Mint a token for `account` (a validated service-account email).
    pub async fn generate(
        &self,
        base: HeaderValue,
        account: &str,
    ) -> Result<Minted, CredentialsError> {
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
            self.endpoint
        );
        let body = GenerateAccessTokenRequest {
            delegates: &self.delegates,
            scope: &self.scopes,
            lifetime: format!("{}s", self.lifetime.as_secs()),
        };
        let request = self
            .client
            .post(url)
            .header(http::header::AUTHORIZATION, base)
            .json(&body);
        let (_, answer) = fetch::answer(request, MAX_ANSWER_BYTES)
            .await
            .map_err(|err| match err {
                AnswerError::Status(status)
                    if (400..500).contains(&status) && status != 429 =>
                {
                    // The body explains (missing Token Creator role, unknown
                    // account); it names no secret, but only the status is kept.
                    tracing::warn!(%account, status, "IAM Credentials refused to impersonate");
                    CredentialsError::ImpersonationDenied { status }
                }
                AnswerError::TooLarge(_) => {
                    tracing::warn!(%account, "IAM Credentials answered an oversized token response");
                    CredentialsError::MalformedTokenResponse
                }
                AnswerError::Http(e) => {
                    tracing::warn!(%account, error = %e.without_url(), "IAM Credentials unreachable");
                    CredentialsError::ImpersonationUnavailable
                }
                other => {
                    tracing::warn!(%account, error = %other, "IAM Credentials failed");
                    CredentialsError::ImpersonationUnavailable
                }
            })?;
        let minted: GenerateAccessTokenResponse =
            serde_json::from_slice(&answer).map_err(|_| {
                tracing::warn!(%account, "IAM Credentials answered an unreadable token");
                CredentialsError::MalformedTokenResponse
            })?;
        Ok(Minted {
            authorization: bearer(&minted.access_token)?,
            expires_at: expires_at(&minted.expire_time)?,
        })
    }
}

/// IAM's RFC 3339 `expireTime` as a monotonic instant.
fn expires_at(expire_time: &str) -> Result<Instant, CredentialsError> {
    let at = OffsetDateTime::parse(expire_time, &Rfc3339)
        .map_err(|_| CredentialsError::MalformedTokenResponse)?;
    let left = at - OffsetDateTime::now_utc();
    let left = Duration::try_from(left).map_err(|_| CredentialsError::ExpiredTokenIssued)?;
    Ok(Instant::now() + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_rfc3339() {
        let in_an_hour = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let text = in_an_hour.format(&Rfc3339).expect("formats");
        let at = expires_at(&text).expect("parses");
        let left = at - Instant::now();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn past_or_garbled_expiry_is_refused() {
        assert!(matches!(
            expires_at("2001-01-01T00:00:00Z"),
            Err(CredentialsError::ExpiredTokenIssued)
        ));
        assert!(matches!(
            expires_at("tomorrow"),
            Err(CredentialsError::MalformedTokenResponse)
        ));
    }
}
