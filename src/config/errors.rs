//! The config error collector: every problem found, reported at once. A
//! leaf: it knows nothing of firegate.

use std::fmt;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key, e.g. `server.limits.idle_timeout`.
    pub key: String,
    pub reason: String,
}

/// Every problem found, with the file they came from.
#[derive(Debug, Default)]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Run one validation and keep its result only if it recorded nothing:
    /// `ConfigErrors::collect(|errors| raw.validate(errors))`.
    pub fn collect<T>(validate: impl FnOnce(&mut ConfigErrors) -> T) -> Result<T, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let value = validate(&mut errors);
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(errors)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<config>".into());
        for e in &self.errors {
            writeln!(f, "{file}: {}: {}", e.key, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
