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

/// A response carrying `body` as `application/json; charset=UTF-8`.
pub fn json(status: http::StatusCode, body: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
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

/// How an [`observed`] body ended.
#[derive(Debug)]
pub enum BodyEnd<'a> {
    /// The last frame was read.
    Complete,
    /// The stream yielded an error.
    Failed(&'a BoxError),
    /// Dropped before its end was read; `mid_stream` when data was still to
    /// come (the peer went away).
    Dropped { mid_stream: bool },
}

/// Told by an [`observed`] body about each data frame and, exactly once, how
/// it ended.
pub trait Observer: Send + Sync + Unpin + 'static {
    fn data(&mut self, _len: usize) {}
    fn end(&mut self, _end: BodyEnd<'_>) {}
}

/// `inner`, streamed unchanged, with `observer` watching.
pub fn observed(inner: Body, observer: impl Observer) -> Body {
    Observed {
        inner,
        observer,
        ended: false,
    }
    .boxed()
}

struct Observed<O: Observer> {
    inner: Body,
    observer: O,
    ended: bool,
}

impl<O: Observer> Observed<O> {
    fn end(&mut self, end: BodyEnd<'_>) {
        if !self.ended {
            self.ended = true;
            self.observer.end(end);
        }
    }
}

impl<O: Observer> http_body::Body for Observed<O> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.observer.data(data.len());
                }
                // hyper stops polling once `is_end_stream` is true, so the end
                // must be noticed here, not only on `None`.
                if this.inner.is_end_stream() {
                    this.end(BodyEnd::Complete);
                }
            }
            Poll::Ready(Some(Err(err))) => this.end(BodyEnd::Failed(err)),
            Poll::Ready(None) => this.end(BodyEnd::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<O: Observer> Drop for Observed<O> {
    fn drop(&mut self) {
        let mid_stream = !http_body::Body::is_end_stream(&self.inner);
        self.end(BodyEnd::Dropped { mid_stream });
    }
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
