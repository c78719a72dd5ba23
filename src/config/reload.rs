//! Live reload: SIGHUP, a change in the config file's directory (notify; Kubernetes swaps
//! ConfigMaps by symlink, so the directory is watched, not the file), or a call to `reload()`.
//!
//! A reload parses the file and hands it to [`LiveConfig`], which lays the admin API's entries
//! over it, validates the whole and swaps, off the hot path. An invalid file is logged and counted,
//! and the old config stays in force. Limiter counters live in the limiter, keyed by rule name, so
//! rules that survive a reload keep their counts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use notify::{RecursiveMode, Watcher};

use super::live::LiveConfig;
use super::quick::Overrides;
use super::{read_raw, ConfigErrors, RawConfig};
use crate::telemetry::{Metrics, RELOADS};

/// Reloads one file into the live config.
pub struct Reloader {
    path: PathBuf,
    overrides: Overrides,
    live: Arc<LiveConfig>,
    ok: Counter,
    failed: Counter,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        overrides: Overrides,
        live: Arc<LiveConfig>,
        metrics: &Metrics,
    ) -> Self {
        let ok = metrics.counter(RELOADS, &[("result", "success")]);
        let failed = metrics.counter(RELOADS, &[("result", "failure")]);
        Self {
            path,
            overrides,
            live,
            ok,
            failed,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reload now. `Ok(false)` means the file had not changed.
    pub fn reload(&self) -> Result<bool, ConfigErrors> {
        let result = self.try_reload();
        match &result {
            Ok(true) => {
                self.ok.increment(1);
                tracing::info!(path = %self.path.display(), "config reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                self.failed.increment(1);
                tracing::error!("config reload rejected, keeping the old config: {e}");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<bool, ConfigErrors> {
        let origin = self.path.display().to_string();
        let raw = read_raw(&self.path, &self.overrides)?;
        let new = raw.clone();
        match self.live.set_file(raw, &origin)? {
            None => Ok(false),
            Some(old) => {
                warn_startup_only(&old, &new);
                Ok(true)
            }
        }
    }

    /// Watch the file's directory and reload on change until the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| concerns(&e, &name)) {
                    let _ = tx.send(());
                }
            })?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        let me = self.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Editors and ConfigMap swaps come as bursts of events: settle, then reload once.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
        Ok(watcher)
    }
}

/// Whether an event in the watched directory may have changed the config: the file itself, or a
/// `..data`-style symlink swap as Kubernetes does for ConfigMaps. Other files (a log written
/// beside the config, say) are ignored, so they can't trigger reload storms.
fn concerns(event: &notify::Event, name: &std::ffi::OsStr) -> bool {
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n == name || n.to_string_lossy().starts_with(".."))
    })
}

fn warn_startup_only(old: &RawConfig, new: &RawConfig) {
    let changed = [
        ("server", old.server != new.server),
        ("admin", old.admin != new.admin),
        ("upstream", old.upstream != new.upstream),
        (
            "limits.max_keys",
            old.limits.max_keys != new.limits.max_keys,
        ),
        (
            "limits.sweep_interval",
            old.limits.sweep_interval != new.limits.sweep_interval,
        ),
        (
            "log",
            old.log.format != new.log.format
                || old.log.level != new.log.level
                || old.log.buffer_lines != new.log.buffer_lines,
        ),
    ];
    for (section, differs) in changed {
        if differs {
            tracing::warn!(
                section,
                "this setting changed but only takes effect after a restart"
            );
        }
    }
}
