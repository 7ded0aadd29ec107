//! The `log:` config section: format and level of firegate's own logs
//! (stderr; stdout belongs to the audit stream when its sink is `stdout`).

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::config::ConfigErrors;

/// `log:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub format: LogFormat,
    /// An `EnvFilter` directive: `info`, `debug`, `firegate=debug,info`, …
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// One JSON object per line (for log shippers), or human-readable lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// The validated `log:` section. `RUST_LOG`, when set, wins over `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Json,
            level: default_level(),
        }
    }
}

impl RawLog {
    pub fn validate(self, errors: &mut ConfigErrors) -> LogSettings {
        if let Err(e) = EnvFilter::builder().parse(&self.level) {
            errors.push(
                "log.level",
                format!("`{}` is not a level or filter directive: {e}", self.level),
            );
        }
        LogSettings {
            format: self.format,
            level: self.level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Config;

    const BASE: &str =
        "server: {plain_http: true}\nupstream: {databases: ['projects/p/databases/(default)']}\n";

    #[test]
    fn the_section_is_read_and_a_bad_level_or_format_is_refused() {
        let c = Config::from_yaml(
            &format!("{BASE}log: {{format: pretty, level: 'firegate=debug,warn'}}"),
            Vec::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.log.level, "firegate=debug,warn");
        let defaults = Config::from_yaml(BASE, Vec::new()).expect("ok");
        assert_eq!(defaults.log, LogSettings::default());

        let err = Config::from_yaml(
            &format!("{BASE}log: {{level: 'firegate=loud'}}"),
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.errors[0].key, "log.level", "{err}");
        let err =
            Config::from_yaml(&format!("{BASE}log: {{format: xml}}"), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("xml"), "{err}");
    }
}
