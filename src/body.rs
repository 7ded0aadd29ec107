//! The one body type every response and forwarded request uses (boxed,
//! streaming), and the one bounded reader for every body firegate buffers,
//! with an optional deadline and transfer-rate floor for client bodies.

use std::time::Duration;

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
    typed(status, full(body), "application/json; charset=UTF-8")
}

/// A response carrying `body` with this `Content-Type`.
pub fn typed(
    status: http::StatusCode,
    body: Body,
    content_type: &'static str,
) -> http::Response<Body> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
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

/// Why [`read_limited`] or [`read_paced`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("body over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body could not be read: {0}")]
    Failed(BoxError),
    #[error("body not complete within {0:?}")]
    TimedOut(Duration),
    #[error("body arrived slower than {} bytes per {:?}", .0.bytes, .0.window)]
    TooSlow(BodyRate),
}

/// A floor on how fast a body arrives: at least `bytes` in every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRate {
    pub bytes: u64,
    pub window: Duration,
}

/// How long a client may take over its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The whole body must have arrived by then.
    pub deadline: Duration,
    /// And it must keep arriving at least this fast.
    pub min_rate: Option<BodyRate>,
}

/// [`read_limited`] under a [`Pace`]: a client that sends part of a body
/// and stalls (a slowloris on the body, after a valid head) loses its slot
/// at the deadline, or sooner if it trickles below the rate floor.
pub async fn read_paced<B>(body: B, limit: usize, pace: Pace) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    // A request without a body (every GET) needs no clock and no timers.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let start = tokio::time::Instant::now();
    let deadline = tokio::time::sleep_until(start + pace.deadline);
    let read = read_limited(RateFloor::new(body, pace.min_rate), limit);
    tokio::pin!(deadline, read);
    tokio::select! {
        read = &mut read => read,
        _ = &mut deadline => Err(ReadError::TimedOut(pace.deadline)),
    }
}

/// Fails the body when fewer than `rate.bytes` arrived in a window.
struct RateFloor<B> {
    inner: B,
    rate: Option<BodyRate>,
    window_end: std::pin::Pin<Box<tokio::time::Sleep>>,
    in_window: u64,
}

impl<B> RateFloor<B> {
    fn new(inner: B, rate: Option<BodyRate>) -> Self {
        let window = rate.map_or(Duration::from_secs(3600), |r| r.window);
        RateFloor {
            inner,
            rate,
            window_end: Box::pin(tokio::time::sleep(window)),
            in_window: 0,
        }
    }
}

impl<B> http_body::Body for RateFloor<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.in_window += data.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let Some(rate) = this.rate else {
            return Poll::Pending;
        };
        // Checked whenever a window closes; the timer is re-armed here so the
        // task is woken at the next boundary even if no byte comes.
        while this.window_end.as_mut().poll(cx).is_ready() {
            if this.in_window < rate.bytes {
                return Poll::Ready(Some(Err(Box::new(Slow(rate)))));
            }
            this.in_window = 0;
            // From now, not from the missed boundary: a body that kept the
            // task busy with frames past several boundaries must not be
            // judged on the windows it was never checked in.
            this.window_end
                .as_mut()
                .reset(tokio::time::Instant::now() + rate.window);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The rate floor's failure, recognized by [`read_paced`].
#[derive(Debug, thiserror::Error)]
#[error("body below the rate floor")]
struct Slow(BodyRate);

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
        let frame = frame.map_err(|err| {
            let err: BoxError = err.into();
            match err.downcast_ref::<Slow>() {
                Some(Slow(rate)) => ReadError::TooSlow(*rate),
                None => ReadError::Failed(err),
            }
        })?;
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
    fn trailers(&mut self, _trailers: &http::HeaderMap) {}
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
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.observer.trailers(trailers);
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

/// A rewrite of a body as it streams, one wire's answer at a time (a
/// transaction id sealed; later, fields masked): each data chunk in, what
/// to send on; at the end, nothing may be left held back.
pub trait Rewrite: Send + Sync + Unpin + 'static {
    /// What to send for `data`; `None` while it is held back for more.
    fn data(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError>;
    /// The body ended (its trailers came, or its last frame): an error when
    /// something is still held back, so a cut answer fails, never passes.
    fn end(&mut self) -> Result<(), BoxError>;
}

/// `inner`, rewritten by `rewrite` as it streams; trailers pass unchanged.
/// A rewrite error ends the stream with that error (fail closed).
pub fn rewritten(inner: Body, rewrite: impl Rewrite) -> Body {
    let frames = futures_util::stream::unfold(Some((inner, rewrite)), |state| async move {
        let (mut inner, mut rewrite) = state?;
        loop {
            let frame = match inner.frame().await {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => return Some((Err(err), None)),
                None => return rewrite.end().err().map(|err| (Err(err), None)),
            };
            let rewritten = match frame.into_data() {
                Ok(data) => match rewrite.data(data) {
                    Ok(Some(out)) => Ok(http_body::Frame::data(out)),
                    Ok(None) => continue,
                    Err(err) => Err(err),
                },
                Err(trailers) => rewrite.end().map(|()| trailers),
            };
            let next = rewritten.is_ok().then_some((inner, rewrite));
            return Some((rewritten, next));
        }
    });
    http_body_util::StreamBody::new(frames).boxed()
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

    fn pace(deadline_ms: u64, rate: Option<(u64, u64)>) -> Pace {
        Pace {
            deadline: Duration::from_millis(deadline_ms),
            min_rate: rate.map(|(bytes, ms)| BodyRate {
                bytes,
                window: Duration::from_millis(ms),
            }),
        }
    }

    /// `first`, then nothing, forever: a client that stalls mid-body.
    fn stalled(first: &'static str) -> Body {
        use futures_util::StreamExt;
        let chunks = futures_util::stream::iter([Ok::<_, BoxError>(http_body::Frame::data(
            Bytes::from(first),
        ))])
        .chain(futures_util::stream::pending());
        BodyExt::boxed(http_body_util::StreamBody::new(chunks))
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_at_the_deadline() {
        let err = read_paced(stalled("a"), 100, pace(200, None))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TimedOut(_)), "{err}");
    }

    #[tokio::test]
    async fn a_trickling_body_falls_below_the_rate_floor() {
        let err = read_paced(stalled("abc"), 100, pace(20_000, Some((10, 50))))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooSlow(_)), "{err}");
    }

    #[tokio::test]
    async fn a_prompt_body_meets_both() {
        let read = read_paced(full("hello"), 100, pace(1000, Some((10, 100))))
            .await
            .expect("read");
        assert_eq!(read, "hello");
    }

    #[tokio::test]
    async fn a_steady_body_over_many_windows_meets_the_floor() {
        use futures_util::StreamExt;
        let chunks = futures_util::stream::iter(0..6).then(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(&[b'x'; 20])))
        });
        let body = BodyExt::boxed(http_body_util::StreamBody::new(chunks));
        let read = read_paced(body, 1000, pace(20_000, Some((10, 500))))
            .await
            .expect("read");
        assert_eq!(read.len(), 120);
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
