//! Timestamps in Firestore's JSON form and a clock that never repeats itself,
//! so every commit gets an update time of its own (preconditions rely on it).

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A point in time with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

impl Timestamp {
    /// Parse RFC 3339 (`2024-01-02T03:04:05.123456Z`, any offset).
    pub fn parse(text: &str) -> Option<Timestamp> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        Some(Timestamp {
            seconds: parsed.unix_timestamp(),
            nanos: parsed.nanosecond(),
        })
    }

    fn from_micros(micros: i64) -> Timestamp {
        Timestamp {
            seconds: micros.div_euclid(1_000_000),
            nanos: (micros.rem_euclid(1_000_000) * 1_000) as u32,
        }
    }

    /// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as proto3 JSON does.
    pub fn to_rfc3339(self) -> String {
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let date = OffsetDateTime::from_unix_timestamp(self.seconds)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| String::from("1970-01-01T00:00:00"));
        let fraction = match self.nanos {
            0 => String::new(),
            n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
            n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
            n => format!(".{n:09}"),
        };
        format!("{date}{fraction}Z")
    }
}

/// Hands out strictly increasing microsecond timestamps.
#[derive(Debug, Default)]
pub struct Clock {
    last_micros: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        let wall = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64;
        let mut last = self.last_micros.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self.last_micros.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Timestamp::from_micros(next),
                Err(seen) => last = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_proto3_json() {
        let t = Timestamp::parse("2024-05-06T07:08:09.120Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-06T07:08:09.120Z");
        let t = Timestamp::parse("2024-05-06T09:08:09+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-06T07:08:09Z");
        let t = Timestamp::parse("2024-05-06T07:08:09.000000001Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-06T07:08:09.000000001Z");
    }

    #[test]
    fn clock_never_repeats() {
        let clock = Clock::default();
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
    }
}
