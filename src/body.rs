//! The one body type every response and forwarded request uses (boxed,
//! streaming), and the one bounded reader for every body firegate buffers,
//! with an optional deadline and transfer-rate floor for client bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
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
    let read = read_limited(Watched::new(body, RateFloor::new(pace.min_rate)), limit);
    tokio::pin!(deadline, read);
    tokio::select! {
        read = &mut read => read,
        _ = &mut deadline => Err(ReadError::TimedOut(pace.deadline)),
    }
}

/// Fails the body when fewer than `rate.bytes` arrived in a window.
struct RateFloor {
    rate: Option<BodyRate>,
    window_end: Pin<Box<tokio::time::Sleep>>,
    in_window: u64,
}

impl RateFloor {
    fn new(rate: Option<BodyRate>) -> Self {
        let window = rate.map_or(Duration::from_secs(3600), |r| r.window);
        RateFloor {
            rate,
            window_end: Box::pin(tokio::time::sleep(window)),
            in_window: 0,
        }
    }
}

impl Watch for RateFloor {
    fn polled(&mut self, polled: Polled, _ended: bool, cx: &mut Context<'_>) -> Polled {
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.in_window += data.len() as u64;
        }
        let (Poll::Pending, Some(rate)) = (&polled, self.rate) else {
            return polled;
        };
        // Checked whenever a window closes; the timer is re-armed here so the
        // task is woken at the next boundary even if no byte comes.
        while self.window_end.as_mut().poll(cx).is_ready() {
            if self.in_window < rate.bytes {
                return Poll::Ready(Some(Err(Box::new(Slow(rate)))));
            }
            self.in_window = 0;
            // From now, not from the missed boundary: a body that kept the
            // task busy with frames past several boundaries must not be
            // judged on the windows it was never checked in.
            self.window_end
                .as_mut()
                .reset(tokio::time::Instant::now() + rate.window);
        }
        Poll::Pending
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
    Watched::new(
        inner,
        Observation {
            observer,
            ended: false,
        },
    )
    .boxed()
}

/// An [`Observer`] and whether it has been told the end yet.
struct Observation<O: Observer> {
    observer: O,
    ended: bool,
}

impl<O: Observer> Observation<O> {
    fn end(&mut self, end: BodyEnd<'_>) {
        if !self.ended {
            self.ended = true;
            self.observer.end(end);
        }
    }
}

impl<O: Observer> Watch for Observation<O> {
    fn polled(&mut self, polled: Polled, ended: bool, _cx: &mut Context<'_>) -> Polled {
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.observer.data(data.len());
                } else if let Some(trailers) = frame.trailers_ref() {
                    self.observer.trailers(trailers);
                }
                // hyper stops polling once `is_end_stream` is true, so the end
                // must be noticed here, not only on `None`.
                if ended {
                    self.end(BodyEnd::Complete);
                }
            }
            Poll::Ready(Some(Err(err))) => self.end(BodyEnd::Failed(err)),
            Poll::Ready(None) => self.end(BodyEnd::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn dropped(&mut self, mid_stream: bool) {
        self.end(BodyEnd::Dropped { mid_stream });
    }
}

/// What a body's poll gave.
type Polled = Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>>;

/// Shown each poll of a [`Watched`] body, and its drop.
trait Watch: Unpin {
    /// What the inner body gave (`ended`: whether it is now at its end),
    /// to note and pass on, or to replace.
    fn polled(&mut self, polled: Polled, ended: bool, cx: &mut Context<'_>) -> Polled;

    /// The body was dropped; `mid_stream` when data was still to come.
    fn dropped(&mut self, _mid_stream: bool) {}
}

/// `inner`, streamed through with `watch` shown every poll.
struct Watched<B: http_body::Body, W: Watch> {
    inner: B,
    watch: W,
}

impl<B: http_body::Body, W: Watch> Watched<B, W> {
    fn new(inner: B, watch: W) -> Self {
        Watched { inner, watch }
    }
}

impl<B, W> http_body::Body for Watched<B, W>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    W: Watch,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
        let ended = this.inner.is_end_stream();
        this.watch.polled(polled, ended, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B: http_body::Body, W: Watch> Drop for Watched<B, W> {
    fn drop(&mut self) {
        let mid_stream = !self.inner.is_end_stream();
        self.watch.dropped(mid_stream);
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
