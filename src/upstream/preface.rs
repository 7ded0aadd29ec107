//! The server's HTTP/2 preface, read as it passes: its first frame must be
//! a SETTINGS frame, and its `SETTINGS_MAX_CONCURRENT_STREAMS` is the
//! connection's stream cap. hyper reads that frame on its own connection
//! task and shows the value only through the `Connection` future the pool
//! hands to that task, so the pool learns it here instead, before it puts
//! a second call on a new connection. After the first frame the wrapper
//! only delegates.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

const HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// A SETTINGS frame longer than this is not read for its limit.
const LONGEST: usize = 16_384;

/// What the preface told, shared with the pool.
pub(super) struct Preface {
    /// The connection's cap: min(advertised, ours), at least 1.
    pub cap: Arc<AtomicUsize>,
    /// Notified (with a stored permit) once the first frame was read.
    pub read: tokio::sync::Notify,
    ours: usize,
}

impl Preface {
    pub(super) fn new(cap: Arc<AtomicUsize>) -> Arc<Preface> {
        let ours = cap.load(Ordering::Relaxed);
        Arc::new(Preface {
            cap,
            read: tokio::sync::Notify::new(),
            ours,
        })
    }
}

/// An upstream connection whose first received frame is inspected.
pub(super) struct Sniffed<T> {
    io: T,
    /// Bytes of the first frame so far; `None` once it was read.
    first: Option<(Vec<u8>, Arc<Preface>)>,
}

impl<T> Sniffed<T> {
    pub(super) fn new(io: T, preface: Arc<Preface>) -> Sniffed<T> {
        Sniffed {
            io,
            first: Some((Vec::with_capacity(64), preface)),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let Some((buf, preface)) = &mut self.first else {
            return;
        };
        buf.extend_from_slice(bytes);
        if buf.len() < HEADER {
            return;
        }
        let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
        let (kind, flags) = (buf[3], buf[4]);
        let settings = kind == SETTINGS && flags & ACK == 0 && len <= LONGEST;
        if settings && buf.len() < HEADER + len {
            return;
        }
        if settings && let Some(limit) = max_concurrent_streams(&buf[HEADER..HEADER + len]) {
            let cap = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .min(preface.ours)
                .max(1);
            preface.cap.store(cap, Ordering::Relaxed);
        }
        preface.read.notify_one();
        self.first = None;
    }
}

/// The last `SETTINGS_MAX_CONCURRENT_STREAMS` in a SETTINGS payload.
fn max_concurrent_streams(payload: &[u8]) -> Option<u32> {
    payload
        .chunks_exact(6)
        .filter(|entry| u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS)
        .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        .next_back()
}

impl<T: Read + Unpin> Read for Sniffed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_none() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        // Until the first frame is through: read into a small buffer, look,
        // then hand the bytes on.
        let mut scratch = [0u8; 512];
        let room = buf.remaining().min(scratch.len());
        let mut read = ReadBuf::new(&mut scratch[..room]);
        ready!(Pin::new(&mut this.io).poll_read(cx, read.unfilled()))?;
        let got = read.filled();
        if got.is_empty() {
            // The connection ended before its preface: nothing to wait for.
            if let Some((_, preface)) = this.first.take() {
                preface.read.notify_one();
            }
        } else {
            buf.put_slice(got);
            this.feed(got);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for Sniffed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Sniffed<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)], flags: u8) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut frame = vec![
            0,
            0,
            u8::try_from(len).unwrap(),
            SETTINGS,
            flags,
            0,
            0,
            0,
            0,
        ];
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    fn sniff(chunks: &[&[u8]]) -> (usize, bool) {
        let preface = Preface::new(Arc::new(AtomicUsize::new(100)));
        let mut s = Sniffed::new((), Arc::clone(&preface));
        for chunk in chunks {
            s.feed(chunk);
        }
        (preface.cap.load(Ordering::Relaxed), s.first.is_none())
    }

    #[test]
    fn the_advertised_limit_lowers_the_cap_even_split_across_reads() {
        let frame = settings(&[(0x4, 65_535), (MAX_CONCURRENT_STREAMS, 2)], 0);
        assert_eq!(sniff(&[&frame]), (2, true));
        let (a, b) = frame.split_at(5);
        let (b, c) = b.split_at(7);
        assert_eq!(sniff(&[a, b, c]), (2, true));
        assert_eq!(sniff(&[a]), (100, false), "waits for the whole frame");
    }

    #[test]
    fn ours_wins_when_lower_and_no_limit_or_another_frame_changes_nothing() {
        let frame = settings(&[(MAX_CONCURRENT_STREAMS, 1_000)], 0);
        assert_eq!(sniff(&[&frame]), (100, true));
        assert_eq!(sniff(&[&settings(&[(0x4, 1)], 0)]), (100, true));
        let zero = settings(&[(MAX_CONCURRENT_STREAMS, 0)], 0);
        assert_eq!(sniff(&[&zero]), (1, true), "never below one");
        let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0];
        assert_eq!(sniff(&[&ping]), (100, true));
    }
}
