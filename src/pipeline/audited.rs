//! The audit record's observer on the response body: it writes the
//! request's record exactly once, when the body ends or when it is dropped
//! because the client went away (pingora's "logging always runs").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::fairness::Slot;
use crate::audit::{AuditRecord, Auditor, Outcome};
use crate::body::{BodyEnd, BoxError, Observer};
use crate::transaction::SealError;

/// What the response's streaming counts into its record.
pub(super) struct Counts {
    pub(super) bytes_in: Arc<AtomicU64>,
    pub(super) masked_fields: Arc<AtomicU64>,
}

/// Counts the bytes out and writes the record when the body ends.
pub(super) struct Audited {
    started: Instant,
    counts: Counts,
    bytes_out: u64,
    admitted: bool,
    pending: Option<(AuditRecord, Arc<Auditor>)>,
    /// The principal's in-flight slot: the request counts until its
    /// response body is done.
    _slot: Option<Slot>,
}

impl Audited {
    pub(super) fn new(
        started: Instant,
        counts: Counts,
        admitted: bool,
        record: AuditRecord,
        auditor: Arc<Auditor>,
        slot: Option<Slot>,
    ) -> Self {
        Audited {
            started,
            counts,
            bytes_out: 0,
            admitted,
            pending: Some((record, auditor)),
            _slot: slot,
        }
    }
}

impl Observer for Audited {
    fn data(&mut self, len: usize) {
        self.bytes_out += len as u64;
    }

    fn trailers(&mut self, trailers: &http::HeaderMap) {
        if let Some((record, _)) = &mut self.pending
            && let Some(code) = crate::grpc::status_code(trailers)
        {
            record.upstream_grpc_status = Some(code);
        }
    }

    fn end(&mut self, end: BodyEnd<'_>) {
        let Some((mut record, auditor)) = self.pending.take() else {
            return;
        };
        record.bytes_in = self.counts.bytes_in.load(Ordering::Relaxed);
        record.masked_fields = self.counts.masked_fields.load(Ordering::Relaxed);
        record.bytes_out = self.bytes_out;
        record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match end {
            BodyEnd::Complete => {}
            BodyEnd::Failed(err) => stream_failed(&mut record, err),
            BodyEnd::Dropped { mid_stream } => record.client_disconnected = mid_stream,
        }
        if self.admitted {
            auditor.record(record);
        } else {
            auditor.record_refused(record);
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
    } else if let Some(mask) = err.downcast_ref::<crate::firestore::mask::MaskError>() {
        record.decision = Outcome::Error;
        record.reason = Some(mask.reason().into());
    } else if record.reason.is_none() {
        record.reason = Some("upstream_stream_error".into());
    }
}
