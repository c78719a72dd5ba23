//! Bringing the store up: migrations, rehydration of current quota usage, then the flusher.
//!
//! Owns the order of a start: migrate (unless disabled), lay the stored admin-API config entries
//! over the file's config, load the current period of every
//! quota (and the current and previous hour, for one-hour windows) into the limiter, report
//! readiness, then flush until shutdown. A database that is down at start is retried with
//! backoff: the proxy already serves (on in-memory counts), and readiness waits.

use std::collections::BTreeSet;
use std::iter;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{connect, AnyStore, Flusher, Store, StoreError};
use crate::config::live::LiveConfig;
use crate::config::overlay::Entry;
use crate::config::{DatabaseSettings, RuntimeConfig};
use crate::limiter::quota::kind_name;
use crate::limiter::usage::HOUR_MS;
use crate::limiter::Limiter;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// Applies migrations if asked, then rehydrates; returns the rows that landed.
pub async fn prepare<S: Store>(
    store: &S,
    migrate: bool,
    limiter: &Limiter,
    config: &RuntimeConfig,
) -> Result<usize, StoreError> {
    if migrate {
        store.migrate().await?;
    }
    rehydrate(store, limiter, config).await
}

/// Lays the config entries made through the admin API (and stored) over the file's config.
/// An entry that no longer validates (its rule left the file, say) is skipped and logged.
pub async fn restore_entries<S: Store>(store: &S, live: &LiveConfig) -> Result<usize, StoreError> {
    let rows = store.list_config_entries().await?;
    let mut entries = Vec::new();
    for row in &rows {
        let parsed = serde_json::from_str(&row.body)
            .map_err(|e| e.to_string())
            .and_then(|v| Entry::from_json(&v).map_err(|e| e.to_string()));
        match parsed {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                tracing::error!(id = row.id, error = %e, "stored config entry unreadable; skipped")
            }
        }
    }
    let count = entries.len();
    for (id, e) in live.restore(entries) {
        tracing::error!(id, error = %e, "stored config entry no longer valid; skipped");
    }
    Ok(count)
}

/// Loads every stored row of the periods current now into the limiter.
pub async fn rehydrate<S: Store>(
    store: &S,
    limiter: &Limiter,
    config: &RuntimeConfig,
) -> Result<usize, StoreError> {
    let now_ms = limiter.now_ms();
    let mut landed = 0;
    for (period, start) in current_periods(config, now_ms) {
        for row in store.usage_for_period(period, start).await? {
            let Some(bound) = config.rules.iter().find(|b| *b.rule.name == row.rule) else {
                continue;
            };
            let count = u64::try_from(row.count).unwrap_or(0);
            let rule = &bound.rule;
            landed +=
                usize::from(limiter.seed(rule, &row.key, &row.period, row.period_start, count));
        }
    }
    Ok(landed)
}

/// The `(period, start)` pairs worth loading: each quota's current period, and the current and
/// previous hour if any rule has a one-hour window.
fn current_periods(config: &RuntimeConfig, now_ms: u64) -> BTreeSet<(&'static str, i64)> {
    let secs = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let mut out = BTreeSet::new();
    for bound in &config.rules {
        let rule = &bound.rule;
        for limits in iter::once(&rule.limits).chain(rule.overrides.values()) {
            for w in limits.windows.iter() {
                match &w.quota {
                    Some(q) => {
                        out.insert((kind_name(q.kind()), secs(q.period(now_ms).start_ms)));
                    }
                    None if w.dur_ms == HOUR_MS => {
                        let hour = now_ms / HOUR_MS * HOUR_MS;
                        out.insert(("hour", secs(hour)));
                        out.insert(("hour", secs(hour.saturating_sub(HOUR_MS))));
                    }
                    None => {}
                }
            }
        }
    }
    out
}

/// What the store task needs from the app.
pub struct StoreTask {
    pub settings: DatabaseSettings,
    /// Where stored admin-API config entries are restored.
    pub live: Arc<LiveConfig>,
    pub limiter: Arc<Limiter>,
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    pub metrics: Metrics,
    /// Stops the flusher; the app fires it once requests have drained.
    pub stop: Shutdown,
    /// How long the last flush may take after `stop`.
    pub final_deadline: Duration,
}

impl StoreTask {
    /// Opens the configured store (a SQLite file that cannot be opened fails here); `None`
    /// when usage stays in memory.
    pub async fn open(settings: &DatabaseSettings) -> Result<Option<Arc<AnyStore>>, StoreError> {
        let Some(target) = &settings.target else {
            return Ok(None);
        };
        let store = Arc::new(connect(target).await?);
        tracing::info!(store = %target, "usage store opened");
        Ok(Some(store))
    }

    /// In the background, on the store's own thread below the proxy's priority (see
    /// `priority.rs`): prepare with retries, call `ready`, and flush until stopped.
    pub fn spawn(
        self,
        store: Option<Arc<AnyStore>>,
        ready: impl FnOnce(usize) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        match store {
            Some(store) => crate::background::spawn_below(
                super::priority::STORE_THREAD,
                self.run(store, ready),
            ),
            None => {
                ready(0);
                tokio::spawn(async {})
            }
        }
    }

    async fn run(self, store: Arc<AnyStore>, ready: impl FnOnce(usize)) {
        let Some(mut flusher) = Flusher::new(
            store.clone(),
            self.limiter.clone(),
            self.config.clone(),
            self.settings.clone(),
            &self.metrics,
        ) else {
            return;
        };
        let mut backoff = Duration::from_millis(250);
        loop {
            let migrate = self.settings.migrate_on_start;
            let restored = async {
                if migrate {
                    store.migrate().await?;
                }
                restore_entries(&*store, &self.live).await
            };
            let prepared = match restored.await {
                Ok(_) => prepare(&*store, false, &self.limiter, &self.config.load_full()).await,
                Err(e) => Err(e),
            };
            match prepared {
                Ok(rows) => {
                    tracing::info!(rows, "usage rehydrated from the store");
                    ready(rows);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "usage store not ready; retrying (serving on in-memory counts)");
                    flusher.enforce_cap();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        flusher.run(self.stop.clone(), self.final_deadline).await;
        store.close().await;
    }
}
