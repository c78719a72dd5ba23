//! Bringing the store up: migrations, rehydration of current quota usage, then the flusher.
//!
//! Owns the order of a start: migrate (unless disabled), load the current period of every
//! quota (and the current and previous hour, for one-hour windows) into the limiter, report
//! readiness, then flush until shutdown. A database that is down at start is retried with
//! backoff: the proxy already serves (on in-memory counts), and readiness waits.

use std::collections::BTreeSet;
use std::iter;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{connect, AnyStore, Flusher, Store, StoreError};
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
    pub limiter: Arc<Limiter>,
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    pub metrics: Metrics,
    /// Stops the flusher; the app fires it once requests have drained.
    pub stop: Shutdown,
    /// How long the last flush may take after `stop`.
    pub final_deadline: Duration,
}

impl StoreTask {
    /// Opens the store (a SQLite file that cannot be opened fails here), then in the
    /// background: prepare with retries, call `ready`, and flush until stopped.
    pub async fn spawn(
        self,
        ready: impl FnOnce(usize) + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let Some(target) = self.settings.target.clone() else {
            ready(0);
            return Ok(tokio::spawn(async {}));
        };
        let store = Arc::new(connect(&target).await?);
        tracing::info!(store = %target, "usage store opened");
        Ok(tokio::spawn(self.run(store, ready)))
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
            let config = self.config.load_full();
            let migrate = self.settings.migrate_on_start;
            match prepare(&*store, migrate, &self.limiter, &config).await {
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
