//! Typed values read out of config strings, each recording its error under
//! the key it came from. A leaf: it knows nothing of firegate.

use std::time::Duration;

use super::errors::ConfigErrors;

/// A humantime duration (`30s`, `2m`), or `None` with an error under `key`.
pub fn duration(key: &str, value: &str, errors: &mut ConfigErrors) -> Option<Duration> {
    humantime::parse_duration(value)
        .map_err(|e| errors.push(key, format!("not a duration ({e}); write e.g. `30s`")))
        .ok()
}

/// A duration for a raw struct's serde default, written as the operator
/// would write it, so the typed default is the only one.
pub fn default_duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip() {
        for secs in [1, 10, 60, 600, 3600, 86_400] {
            let d = Duration::from_secs(secs);
            let mut errors = ConfigErrors::default();
            assert_eq!(duration("k", &default_duration(d), &mut errors), Some(d));
            assert!(errors.is_empty());
        }
    }

    #[test]
    fn a_bad_duration_is_recorded_under_its_key() {
        let mut errors = ConfigErrors::default();
        assert_eq!(duration("a.b", "forever", &mut errors), None);
        assert_eq!(errors.errors[0].key, "a.b");
    }
}
