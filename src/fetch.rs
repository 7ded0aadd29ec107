//! Reading an answer from a service firegate calls (issuers, Google's IAM
//! Credentials): a success status and a bounded size, read chunk by chunk
//! through the one bounded body reader, so an oversized answer is never held
//! whole.

use bytes::Bytes;

use crate::body::{self, ReadError};

/// Why an answer was not usable (for logs; never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("request failed: {}", crate::error::Chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer over {0} bytes")]
    TooLarge(usize),
    #[error("answer could not be read: {0}")]
    Unreadable(String),
}

/// Send `request` and read the answer's body, at most `limit` bytes.
pub async fn answer(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<(reqwest::header::HeaderMap, Bytes), AnswerError> {
    let response = request.send().await?;
    if !response.status().is_success() {
        return Err(AnswerError::Status(response.status().as_u16()));
    }
    let (parts, incoming) = http::Response::from(response).into_parts();
    let body = body::read_limited(incoming, limit)
        .await
        .map_err(|err| match err {
            ReadError::TooLarge { limit } => AnswerError::TooLarge(limit),
            ReadError::Failed(err) => AnswerError::Unreadable(crate::error::chain(&*err)),
            // Not paced: the HTTP client's own timeout bounds these reads.
            err @ (ReadError::TimedOut(_) | ReadError::TooSlow(_)) => {
                AnswerError::Unreadable(err.to_string())
            }
        })?;
    Ok((parts.headers, body))
}
