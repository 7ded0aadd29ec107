//! firegate's own logs: `tracing` to stderr, JSON or pretty, the level from
//! `log.level` unless `RUST_LOG` is set. Never tokens or document contents.

use tracing_subscriber::EnvFilter;

mod settings;

pub use settings::{LogFormat, LogSettings, RawLog};

/// Install the global subscriber. A second call (tests) keeps the first.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: an error only means a subscriber is already installed.
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
}
