//! The config in force: the file's raw form, the admin API's [`Overlay`] over it, and the
//! validated [`RuntimeConfig`] the hot path reads through `ArcSwap`.
//!
//! Owns the one way a new config goes live: merge file and overlay, validate the whole, swap.
//! A reload (`Reloader`) replaces the file part; the admin API replaces the overlay. Counters live
//! in the limiter, keyed by rule name, so a rule whose limits change keeps its counts and a raised
//! limit admits the next request at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;

use super::overlay::{rename_fields, Entry, Overlay};
use super::{validate, ConfigErrors, RawConfig, RuntimeConfig};
use crate::telemetry::Metrics;

/// The live config and what it was built from.
pub struct LiveConfig {
    runtime: Arc<ArcSwap<RuntimeConfig>>,
    metrics: Metrics,
    parts: Mutex<Parts>,
    /// Bumped on every swap; the admin API reports it.
    version: AtomicU64,
}

struct Parts {
    file: RawConfig,
    overlay: Overlay,
}

impl LiveConfig {
    /// `runtime` must be `file` validated (with an empty overlay).
    pub fn new(runtime: Arc<ArcSwap<RuntimeConfig>>, metrics: Metrics, file: RawConfig) -> Self {
        Self {
            runtime,
            metrics,
            parts: Mutex::new(Parts {
                file,
                overlay: Overlay::default(),
            }),
            version: AtomicU64::new(1),
        }
    }

    /// What the hot path reads.
    pub fn runtime(&self) -> Arc<RuntimeConfig> {
        self.runtime.load_full()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The file's raw form (after environment overrides).
    pub fn file(&self) -> RawConfig {
        self.lock().file.clone()
    }

    pub fn overlay(&self) -> Overlay {
        self.lock().overlay.clone()
    }

    /// Replaces the file part. `Ok(None)` when it did not change; otherwise the old file, so the
    /// caller can warn about startup-only settings.
    pub fn set_file(
        &self,
        file: RawConfig,
        origin: &str,
    ) -> Result<Option<RawConfig>, ConfigErrors> {
        let mut parts = self.lock();
        if parts.file == file {
            return Ok(None);
        }
        let merged = parts.overlay.merged(&file)?;
        let config = validate(merged, origin, &self.metrics)?;
        self.swap(config.runtime);
        Ok(Some(std::mem::replace(&mut parts.file, file)))
    }

    /// Validates `overlay` over the file without changing anything. Errors about `changed`
    /// name the fields of its posted body.
    pub fn check(&self, overlay: &Overlay, changed: Option<&Entry>) -> Result<(), ConfigErrors> {
        let parts = self.lock();
        self.build(&parts.file, overlay, changed).map(|_| ())
    }

    /// Validates and swaps in `overlay`; returns the new version.
    pub fn set_overlay(
        &self,
        overlay: Overlay,
        changed: Option<&Entry>,
    ) -> Result<u64, ConfigErrors> {
        let mut parts = self.lock();
        let runtime = self.build(&parts.file, &overlay, changed)?;
        parts.overlay = overlay;
        Ok(self.swap(runtime))
    }

    /// Lays stored entries over the file one by one, skipping (and returning) those that no
    /// longer validate, e.g. an override of a rule since removed from the file.
    pub fn restore(&self, entries: Vec<Entry>) -> Vec<(String, ConfigErrors)> {
        let mut skipped = Vec::new();
        let mut overlay = self.overlay();
        for entry in entries {
            let next = overlay.with(entry.clone());
            match self.check(&next, Some(&entry)) {
                Ok(()) => overlay = next,
                Err(e) => skipped.push((entry.id(), e)),
            }
        }
        if let Err(e) = self.set_overlay(overlay, None) {
            skipped.push(("(all)".to_owned(), e));
        }
        skipped
    }

    fn build(
        &self,
        file: &RawConfig,
        overlay: &Overlay,
        changed: Option<&Entry>,
    ) -> Result<RuntimeConfig, ConfigErrors> {
        let merged = overlay.merged(file)?;
        let prefix = changed.map(|e| Overlay::field_of(e, file));
        let origin = "admin API";
        validate(merged, origin, &self.metrics)
            .map(|c| c.runtime)
            .map_err(|mut e| {
                if let (Some(entry), Some(prefix)) = (changed, prefix) {
                    rename_fields(&mut e, &prefix, entry.kind());
                }
                e
            })
    }

    fn swap(&self, runtime: RuntimeConfig) -> u64 {
        self.runtime.store(Arc::new(runtime));
        self.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
