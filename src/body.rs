//! The one body type every response and forwarded request uses (boxed,
//! streaming), and the one bounded reader for every body firegate buffers.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Errors a body stream may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming HTTP body.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with nothing in it.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Box any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Why [`read_limited`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("body over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body could not be read: {0}")]
    Failed(BoxError),
}

/// Buffer `body`, refusing it as soon as it is known to exceed `limit`
/// bytes (from its declared size, or while reading). Written as a plain
/// frame loop: `Limited::collect` makes the future non-`Send` for the
/// server's spawned tasks (a rustc higher-ranked lifetime limitation).
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut buffered = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ReadError::Failed(err.into()))?;
        if let Ok(data) = frame.into_data() {
            if buffered.len() + data.len() > limit {
                return Err(ReadError::TooLarge { limit });
            }
            buffered.extend_from_slice(&data);
        }
    }
    Ok(buffered.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let read = read_limited(full("hello"), 5).await.expect("read");
        assert_eq!(read, "hello");
    }

    #[tokio::test]
    async fn a_declared_size_over_the_limit_is_refused_before_reading() {
        let err = read_limited(full("hello!"), 5).await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 5 }), "{err}");
    }

    #[tokio::test]
    async fn an_undeclared_size_is_cut_off_while_reading() {
        let chunks = futures_util::stream::iter(
            ["abc", "def"].map(|c| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(c)))),
        );
        let err = read_limited(http_body_util::StreamBody::new(chunks), 5)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 5 }), "{err}");
    }
}
