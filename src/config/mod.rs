//! Configuration: the file as written (`raw`), its validation into typed runtime values
//! (`validate`), and live reload (`reload`).
//!
//! Loading is pure: `load(text)` never touches sockets, so tests pass inline TOML. Everything the
//! hot path reads is in [`RuntimeConfig`], swapped atomically on reload; [`Settings`] are read once
//! at startup (listeners, pools, the limiter's size).

pub mod live;
pub mod overlay;
mod parse;
mod quick;
pub mod raw;
pub mod reload;
mod settings;
mod validate;

use std::fmt;
use std::path::Path;

pub use parse::duration as parse_duration;
pub use quick::{quick_config, Overrides};
pub use raw::RawConfig;
pub use settings::{
    AdminSettings, AlertSettings, DatabaseSettings, FeedSettings, LogSettings, RuntimeShape,
    Settings, TlsFiles, UpstreamSettings, WebhookSettings,
};
pub use validate::{validate, RuntimeConfig};

use crate::telemetry::Metrics;

/// A validated config: startup settings plus the swappable part.
pub struct Config {
    pub settings: Settings,
    pub runtime: RuntimeConfig,
    /// The raw form, kept so a reload can tell which startup-only settings changed.
    pub raw: RawConfig,
}

/// One problem, naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every problem found in one config, collected rather than stopping at the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} error(s)", self.origin, self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Parse TOML text into the raw form, with the TOML error as one field error.
pub fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigErrors> {
    toml::from_str(text).map_err(|e| ConfigErrors {
        origin: origin.to_string(),
        errors: vec![ConfigError {
            field: "(toml)".into(),
            reason: e.to_string().trim().to_string(),
        }],
    })
}

/// Parse and validate TOML text.
pub fn load(text: &str, origin: &str, metrics: &Metrics) -> Result<Config, ConfigErrors> {
    let raw = parse(text, origin)?;
    validate(raw, origin, metrics)
}

/// Read and parse a file, then apply flag/environment overrides.
pub fn read_raw(path: &Path, overrides: &Overrides) -> Result<RawConfig, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        origin: origin.clone(),
        errors: vec![ConfigError {
            field: "(file)".into(),
            reason: format!("cannot read: {e}"),
        }],
    })?;
    let mut raw = parse(&text, &origin)?;
    overrides.apply(&mut raw);
    Ok(raw)
}

/// Read, parse, override and validate a file.
pub fn load_file(
    path: &Path,
    overrides: &Overrides,
    metrics: &Metrics,
) -> Result<Config, ConfigErrors> {
    let raw = read_raw(path, overrides)?;
    validate(raw, &path.display().to_string(), metrics)
}
