//! The leaves every config section uses: the error collector that gathers
//! every problem before failing, and the shared value parsers (durations).
//! Sections validate themselves; `app` assembles them. Nothing here imports
//! the rest of the crate.

pub mod errors;
pub mod value;

pub use errors::{ConfigError, ConfigErrors};
pub use value::{default_duration, duration};
