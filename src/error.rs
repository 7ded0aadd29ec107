//! One way to write an error with all of its causes on one line, for logs.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each `source()`, joined by `: `.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`.
pub fn chain(err: &dyn Error) -> String {
    Chain(err).to_string()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_written_in_order() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(super::chain(&err), "outer: inner");
    }
}
