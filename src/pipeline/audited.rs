//! The audited response body: it streams the response and writes the
//! request's audit record exactly once, when the body ends or when it is
//! dropped because the client went away (pingora's "logging always runs").

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::fairness::Slot;
use crate::audit::{AuditRecord, Auditor, Outcome};
use crate::body::{Body, BoxError};
use crate::transaction::SealError;

/// The response body: streams `inner`, counts bytes, and writes the audit
/// record exactly once — at the end of the stream, or on drop, which means
/// the client went away mid-stream.
pub(super) struct Audited {
    inner: Body,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    bytes_out: u64,
    complete: bool,
    admitted: bool,
    pending: Option<(AuditRecord, Arc<Auditor>)>,
    /// The principal's in-flight slot: the request counts until its
    /// response body is done.
    _slot: Option<Slot>,
}

impl Audited {
    pub(super) fn new(
        inner: Body,
        started: Instant,
        bytes_in: Arc<AtomicU64>,
        admitted: bool,
        record: AuditRecord,
        auditor: Arc<Auditor>,
        slot: Option<Slot>,
    ) -> Self {
        Audited {
            inner,
            started,
            bytes_in,
            bytes_out: 0,
            complete: false,
            admitted,
            pending: Some((record, auditor)),
            _slot: slot,
        }
    }

    fn write(&mut self, disconnected: bool, failed: Option<&BoxError>) {
        if let Some((mut record, auditor)) = self.pending.take() {
            record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
            record.bytes_out = self.bytes_out;
            record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            record.client_disconnected = disconnected;
            if let Some(err) = failed {
                stream_failed(&mut record, err);
            }
            if self.admitted {
                auditor.record(record);
            } else {
                auditor.record_refused(record);
            }
        }
    }
}

/// Record why the response stream broke. A transaction id that could not
/// be sealed is firegate refusing the answer (an error with the seal's
/// reason); anything else is the upstream's stream failing.
fn stream_failed(record: &mut AuditRecord, err: &BoxError) {
    if let Some(seal) = err.downcast_ref::<SealError>() {
        record.decision = Outcome::Error;
        record.reason = Some(seal.reason().into());
    } else if record.reason.is_none() {
        record.reason = Some("upstream_stream_error".into());
    }
}

impl http_body::Body for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes_out += data.len() as u64;
                }
                // hyper stops polling once `is_end_stream` is true, so the end
                // must be noticed here, not only on `None`.
                if self.inner.is_end_stream() {
                    self.complete = true;
                    self.write(false, None);
                }
            }
            Poll::Ready(Some(Err(err))) => {
                self.complete = true;
                self.write(false, Some(err));
            }
            Poll::Ready(None) => {
                self.complete = true;
                self.write(false, None);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        let disconnected = !self.complete && !http_body::Body::is_end_stream(&self.inner);
        self.write(disconnected, None);
    }
}
