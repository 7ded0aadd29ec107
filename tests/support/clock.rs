//! Tokio's clock run ahead, for tests of expiry and back-off whose peers
//! answer over real sockets.
//!
//! `#[tokio::test(start_paused = true)]` does not suit them: a paused clock
//! also jumps to the next timer whenever the runtime waits on a socket, so a
//! client's timeout fires before its peer on loopback has answered. Here the
//! clock is paused only for the jump itself, and sockets keep real time.
//! The code under test must read `tokio::time::Instant`, as firegate's
//! token caches and back-offs do.

use std::time::Duration;

/// Let `span` pass on tokio's clock at once: every timer due within it fires.
/// Needs the current-thread runtime (`#[tokio::test]`'s default).
pub async fn skip(span: Duration) {
    tokio::time::pause();
    tokio::time::advance(span).await;
    tokio::time::resume();
}

/// A moment of real time after each jump, for the requests it set off to
/// reach a fake on loopback and be answered.
const SETTLE: Duration = Duration::from_millis(20);

/// Run tokio's clock ahead `step` at a time until `done`, giving the
/// sockets [`SETTLE`] of real time after each step; fail once `limit` of
/// tokio time has passed without it.
pub async fn skip_until(
    what: &str,
    step: Duration,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) {
    let mut skipped = Duration::ZERO;
    while !done() {
        assert!(
            skipped < limit,
            "{what}: not within {limit:?} of tokio time"
        );
        skip(step).await;
        skipped += step;
        tokio::time::sleep(SETTLE).await;
    }
}

/// Run tokio's clock ahead by `span` in `step`s, with real time after each
/// for whatever the timers set off: what a test waits through to show that
/// something does *not* happen.
pub async fn skip_through(span: Duration, step: Duration) {
    let mut skipped = Duration::ZERO;
    while skipped < span {
        skip(step).await;
        skipped += step;
        tokio::time::sleep(SETTLE).await;
    }
}
