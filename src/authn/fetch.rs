//! Reading an issuer's answer: a success status and a bounded size, read
//! chunk by chunk so an oversized answer is never held whole.

use bytes::{Bytes, BytesMut};

/// Why an issuer's answer was not usable (for logs; never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("request failed: {}", super::error_chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer over {0} bytes")]
    TooLarge(usize),
}

/// Send `request` and read the answer's body, at most `limit` bytes.
pub async fn answer(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<(reqwest::header::HeaderMap, Bytes), AnswerError> {
    let mut response = request.send().await?;
    if !response.status().is_success() {
        return Err(AnswerError::Status(response.status().as_u16()));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(AnswerError::TooLarge(limit));
    }
    let headers = std::mem::take(response.headers_mut());
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(AnswerError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((headers, body.freeze()))
}
