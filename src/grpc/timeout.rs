//! `grpc-timeout`: the caller's deadline, carried upstream minus the time
//! firegate spent on the call, so both sides give up together.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::GrpcError;

/// The caller's deadline, measured from when its request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcTimeout(pub Duration);

impl GrpcTimeout {
    /// `grpc-timeout: 1-8 digits + unit (H M S m u n)`; absent is no deadline.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<GrpcTimeout>, GrpcError> {
        let mut values = headers.get_all("grpc-timeout").iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(GrpcError::MalformedTimeout);
        }
        let value = value.as_bytes();
        let (digits, unit) = value.split_at(value.len().saturating_sub(1));
        if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(GrpcError::MalformedTimeout);
        }
        let n: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or(GrpcError::MalformedTimeout)?;
        let duration = match unit {
            b"H" => Duration::from_secs(n.saturating_mul(3600)),
            b"M" => Duration::from_secs(n.saturating_mul(60)),
            b"S" => Duration::from_secs(n),
            b"m" => Duration::from_millis(n),
            b"u" => Duration::from_micros(n),
            b"n" => Duration::from_nanos(n),
            _ => return Err(GrpcError::MalformedTimeout),
        };
        Ok(Some(GrpcTimeout(duration)))
    }

    /// What is left after `spent`, as a `grpc-timeout` value; an expired
    /// deadline is refused rather than forwarded as zero.
    pub fn remaining(self, spent: Duration) -> Result<HeaderValue, GrpcError> {
        let left = self.0.saturating_sub(spent);
        if left.is_zero() {
            return Err(GrpcError::DeadlineExceeded);
        }
        let millis = left.as_millis();
        let text = if millis < 100_000_000 {
            format!("{}m", millis.max(1))
        } else {
            format!("{}S", left.as_secs().min(99_999_999))
        };
        HeaderValue::from_str(&text).map_err(|_| GrpcError::MalformedTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &'static str) -> Result<Option<GrpcTimeout>, GrpcError> {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", HeaderValue::from_static(v));
        GrpcTimeout::from_headers(&h)
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse("5S"), Ok(Some(GrpcTimeout(Duration::from_secs(5)))));
        assert_eq!(
            parse("250m"),
            Ok(Some(GrpcTimeout(Duration::from_millis(250))))
        );
        assert_eq!(
            parse("1H"),
            Ok(Some(GrpcTimeout(Duration::from_secs(3600))))
        );
        for bad in ["", "S", "5", "5s", "123456789m", "-1S", "1.5S"] {
            assert_eq!(parse(bad), Err(GrpcError::MalformedTimeout), "{bad}");
        }
    }

    #[test]
    fn the_time_spent_is_taken_off() {
        let t = GrpcTimeout(Duration::from_secs(2));
        assert_eq!(t.remaining(Duration::from_millis(500)).unwrap(), "1500m");
        assert_eq!(
            t.remaining(Duration::from_secs(3)),
            Err(GrpcError::DeadlineExceeded)
        );
    }
}
