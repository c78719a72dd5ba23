//! The write-behind loop: drains the limiter's [`UsageLog`] into the store every
//! `flush_interval`, retries with backoff while the store fails, bounds what waits, and syncs
//! quota totals back for several instances on one database.
//!
//! Owns the batch lifecycle and its metrics. Must not touch SQL (that is the [`Store`]'s) or the
//! request path: requests only ever touch the log, so a slow or dead database never adds latency.
//!
//! # A batch's life
//! Each tick drains the log once (`Limiter::drain_usage_in`; the hour usage the limiter's entries
//! hold only every `hour_flush_interval`: it is most of the rows under load, and only reports
//! and restarts read it) into [`Batch`]es of at most 20k rows, each with a fresh id
//! (`instance-sequence`); the first also carries each rule's decision counts since the last
//! drain, as traffic rows of the current minute. They are flushed in order. On failure the same
//! batch, same id, is retried on the next tick, with the interval doubled up to 30 s, while new
//! requests keep aggregating in memory (one row per key and period, so memory grows with
//! distinct keys, not with requests). A flush whose outcome is unknown (the
//! connection dropped during COMMIT, a timeout) is therefore replayed under the id it may have
//! committed with, and the store answers `AlreadyApplied` instead of counting it twice.
//!
//! Past `max_pending` rows in all, the stuck batches go first (oldest first), then the oldest rows
//! of the log;
//! both are counted in `tollgate_store_dropped_*`.
//!
//! # Sync
//! After a successful flush, at most every `sync_interval`, the quota rows this instance wrote
//! since the last sync are read back: their totals now include every instance's flushed usage,
//! and the limiter sets each entry's count to that total plus what it counted since (see
//! `limiter/seed.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge};

use super::{
    Batch, FlushOutcome, Store, StoreError, TrafficCounts, TrafficDelta, UsageDelta, UsageKey,
    ViolationDelta,
};
use crate::config::{DatabaseSettings, RuntimeConfig};
use crate::limiter::{usage, Limiter, UsageLog};
use crate::telemetry::{self as t, Metrics};

/// A flush that takes longer has an unknown outcome and is retried under its id.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between retries while the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Quota rows read back per query.
const SYNC_CHUNK: usize = 5_000;
/// Rows per batch: a 1M-key backlog becomes 50 statements of a few hundred ms each instead of
/// one that outlives the store's 10 s statement timeout (measured: 1M upserts take 8-15 s here).
const MAX_BATCH_ROWS: usize = 20_000;

/// The flusher's state between ticks.
pub struct Flusher<S> {
    store: Arc<S>,
    log: Arc<UsageLog>,
    limiter: Arc<Limiter>,
    config: Arc<ArcSwap<RuntimeConfig>>,
    settings: DatabaseSettings,
    /// Random per process, so two instances never share a batch id.
    instance: String,
    seq: u64,
    /// Drained but not known to be committed, oldest first; the front one is flushed next.
    stuck: VecDeque<Pending>,
    /// Quota rows written since the last sync.
    active: HashSet<UsageKey>,
    last_sync: Option<Instant>,
    /// When the `hour` rows were last drained (or the flusher started).
    last_hours: Instant,
    backoff: Duration,
    metrics: FlushMetrics,
    /// Decision counters, read each flush into per-minute traffic rows.
    registry: Metrics,
    /// Each rule's decision counts at the last flush.
    traffic_seen: HashMap<String, TrafficCounts>,
}

struct Pending {
    batch: Batch,
    cost: u64,
    first_ms: u64,
}

struct FlushMetrics {
    ok: Counter,
    replayed: Counter,
    error: Counter,
    duration: t::Histogram,
    usage_rows: Counter,
    violation_rows: Counter,
    pending: Gauge,
    oldest: Gauge,
    dropped_rows: Counter,
    dropped_cost: Counter,
    sync_ok: Counter,
    sync_error: Counter,
    up: Gauge,
}

impl FlushMetrics {
    fn new(m: &Metrics) -> Self {
        Self {
            ok: m.counter(t::STORE_FLUSHES, &[("result", "ok")]),
            replayed: m.counter(t::STORE_FLUSHES, &[("result", "replayed")]),
            error: m.counter(t::STORE_FLUSHES, &[("result", "error")]),
            duration: m.histogram(t::STORE_FLUSH_DURATION, &[]),
            usage_rows: m.counter(t::STORE_ROWS, &[("table", "usage")]),
            violation_rows: m.counter(t::STORE_ROWS, &[("table", "violations")]),
            pending: m.gauge(t::STORE_PENDING, &[]),
            oldest: m.gauge(t::STORE_OLDEST, &[]),
            dropped_rows: m.counter(t::STORE_DROPPED_ROWS, &[]),
            dropped_cost: m.counter(t::STORE_DROPPED_COST, &[]),
            sync_ok: m.counter(t::STORE_SYNCS, &[("result", "ok")]),
            sync_error: m.counter(t::STORE_SYNCS, &[("result", "error")]),
            up: m.gauge(t::STORE_UP, &[]),
        }
    }
}

impl<S: Store + 'static> Flusher<S> {
    pub fn new(
        store: Arc<S>,
        limiter: Arc<Limiter>,
        config: Arc<ArcSwap<RuntimeConfig>>,
        settings: DatabaseSettings,
        metrics: &Metrics,
    ) -> Option<Self> {
        let log = limiter.usage_log()?.clone();
        Some(Self {
            store,
            log,
            limiter,
            config,
            settings,
            instance: format!("{:016x}", rand_id()),
            seq: 0,
            stuck: VecDeque::new(),
            active: HashSet::new(),
            last_sync: None,
            last_hours: Instant::now(),
            backoff: Duration::ZERO,
            metrics: FlushMetrics::new(metrics),
            registry: metrics.clone(),
            traffic_seen: HashMap::new(),
        })
    }

    /// Flushes every `flush_interval` (longer while failing) until `stop` fires, then flushes
    /// what is left for at most `final_deadline`.
    pub async fn run(mut self, stop: crate::shutdown::Shutdown, final_deadline: Duration) {
        loop {
            let wait = self.settings.flush_interval.max(self.backoff);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait() => break,
            }
            self.tick().await;
        }
        self.finish(final_deadline).await;
    }

    /// One round: flush what is stuck or pending, enforce the cap, maybe sync, update gauges.
    pub async fn tick(&mut self) {
        let hours = self.hours_due();
        let (mut flushed, mut drained) = (false, false);
        // A recovered store takes the stuck batches and then the log's backlog in the same
        // tick. The log is drained once per tick: under load it is never empty, and draining it
        // again right after a flush would write nearly every key's rows on every flush.
        loop {
            if self.stuck.is_empty() {
                if drained || !self.next_batch(hours) {
                    break;
                }
                drained = true;
            }
            if !self.flush_stuck().await {
                break;
            }
            flushed = true;
        }
        self.enforce_cap();
        if flushed && self.stuck.is_empty() && self.sync_due() {
            self.sync().await;
        }
        self.update_gauges();
    }

    /// Makes sure a batch is ready to flush, draining the log if none is stuck; false if there
    /// is nothing to write. The drain runs here, on the store's own thread below the proxy's
    /// priority (see `background.rs`), not on a runtime worker; it comes in chunks of at most
    /// `MAX_BATCH_ROWS` rows, each made a batch with its own id before the next is drained.
    fn next_batch(&mut self, hours: bool) -> bool {
        if !self.stuck.is_empty() {
            return true;
        }
        if hours {
            self.last_hours = Instant::now();
        }
        let traffic = self.traffic();
        let (prefix, first) = (&self.instance, self.seq + 1);
        let mut batches = Vec::new();
        // A panic in the drain (a bug) loses what it had drained, as when the drain ran on a
        // blocking task, but not the flusher: later ticks go on.
        let drained = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.limiter.drain_usage_in(hours, MAX_BATCH_ROWS, |chunk| {
                let id = format!("{prefix}-{}", first + batches.len() as u64);
                batches.push(to_batch(id, chunk));
            });
        }));
        if drained.is_err() {
            tracing::error!("draining usage for the store panicked; that usage is lost");
            return false;
        }
        if batches.is_empty() && traffic.is_empty() {
            return false;
        }
        match batches.first_mut() {
            Some(p) => p.batch.traffic = traffic,
            None => batches.push(Pending {
                batch: Batch {
                    id: format!("{}-{first}", self.instance),
                    traffic,
                    ..Batch::default()
                },
                cost: 0,
                first_ms: self.limiter.now_ms(),
            }),
        }
        self.seq += batches.len() as u64;
        self.stuck.extend(batches);
        true
    }

    /// Each rule's decisions since the last call, as rows of the current minute.
    fn traffic(&mut self) -> Vec<TrafficDelta> {
        let minute = i64::try_from(self.limiter.now_ms() / 60_000 * 60).unwrap_or(0);
        let mut now: HashMap<String, TrafficCounts> = HashMap::new();
        for (labels, value) in self.registry.counter_values(t::DECISIONS) {
            let label = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let (Some(rule), Some(outcome)) = (label("rule"), label("outcome")) else {
                continue;
            };
            let counts = now.entry(rule.clone()).or_default();
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            match outcome.as_str() {
                "allow" => counts.allowed = value,
                "deny" => counts.denied = value,
                "shadow_deny" => counts.shadow_denied = value,
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (rule, counts) in &now {
            let seen = self.traffic_seen.get(rule).copied().unwrap_or_default();
            let delta = TrafficCounts {
                allowed: counts.allowed - seen.allowed,
                denied: counts.denied - seen.denied,
                shadow_denied: counts.shadow_denied - seen.shadow_denied,
            };
            if delta != TrafficCounts::default() {
                out.push(TrafficDelta {
                    rule: rule.clone(),
                    minute,
                    counts: delta,
                });
            }
        }
        self.traffic_seen = now;
        out
    }

    /// Flushes the stuck batch once; true if the store has it now.
    async fn flush_stuck(&mut self) -> bool {
        let Some(pending) = self.stuck.front() else {
            return true;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(FLUSH_TIMEOUT, self.store.flush(&pending.batch)).await;
        self.metrics.duration.record(started.elapsed());
        match result {
            Ok(Ok(outcome)) => {
                let batch = self.stuck.pop_front().map(|p| p.batch).unwrap_or_default();
                self.flushed(&batch, outcome);
                true
            }
            Ok(Err(e)) => self.failed(Some(e)),
            Err(_) => self.failed(None),
        }
    }

    fn flushed(&mut self, batch: &Batch, outcome: FlushOutcome) {
        match outcome {
            FlushOutcome::Applied => self.metrics.ok.increment(1),
            FlushOutcome::AlreadyApplied => self.metrics.replayed.increment(1),
        }
        self.metrics.usage_rows.increment(batch.usage.len() as u64);
        self.metrics
            .violation_rows
            .increment(batch.violations.len() as u64);
        self.metrics.up.set(1.0);
        if self.backoff > Duration::ZERO {
            tracing::info!("usage store reachable again; pending usage written");
        }
        self.backoff = Duration::ZERO;
        self.active.extend(
            batch
                .usage
                .iter()
                .filter(|u| u.period != "hour")
                .map(|u| UsageKey {
                    rule: u.rule.to_string(),
                    key: u.key.to_string(),
                    period: u.period.to_owned(),
                    period_start: u.period_start,
                }),
        );
    }

    /// Records a failed flush (`None`: timed out, outcome unknown); returns false. A permanent
    /// error drops the batch, since replaying it can only fail again.
    fn failed(&mut self, error: Option<StoreError>) -> bool {
        self.metrics.error.increment(1);
        self.metrics.up.set(0.0);
        let transient = error.as_ref().is_none_or(StoreError::is_transient);
        let first = self.backoff == Duration::ZERO;
        self.backoff = (self.backoff * 2)
            .max(self.settings.flush_interval)
            .min(MAX_BACKOFF);
        let reason = error.map_or_else(|| "timed out".to_owned(), |e| e.to_string());
        if !transient {
            tracing::error!(%reason, "usage store rejected a batch; dropping it");
            self.drop_stuck();
        } else if first {
            tracing::warn!(%reason, "usage store flush failed; retrying with backoff, usage kept in memory");
        }
        false
    }

    /// Drops the front batch (the oldest), counting what it carried.
    fn drop_stuck(&mut self) {
        if let Some(p) = self.stuck.pop_front() {
            let rows = p.batch.usage.len() + p.batch.violations.len();
            self.metrics.dropped_rows.increment(rows as u64);
            self.metrics.dropped_cost.increment(p.cost);
        }
    }

    /// Past `max_pending` rows, drops the stuck batch and then the log's oldest rows.
    pub fn enforce_cap(&mut self) {
        let cap = self.settings.max_pending;
        if self.held_rows() <= cap {
            return;
        }
        tracing::warn!(
            cap,
            "pending usage over database.max_pending; dropping the oldest"
        );
        while !self.stuck.is_empty() && self.held_rows() > cap {
            self.drop_stuck();
        }
        let (rows, cost) = self.log.drop_oldest(cap);
        self.metrics.dropped_rows.increment(rows as u64);
        self.metrics.dropped_cost.increment(cost);
    }

    /// Rows not yet written, the hour tallies in the limiter's entries included.
    fn pending_rows(&self) -> usize {
        self.stuck_rows() + self.log.pending_rows()
    }

    /// The rows `max_pending` bounds: those held only in memory the flusher and the log keep
    /// (an entry's hour tally costs nothing beyond its entry).
    fn held_rows(&self) -> usize {
        self.stuck_rows() + self.log.logged_rows()
    }

    fn stuck_rows(&self) -> usize {
        self.stuck
            .iter()
            .map(|p| p.batch.usage.len() + p.batch.violations.len())
            .sum()
    }

    fn update_gauges(&self) {
        self.metrics.pending.set(self.pending_rows() as f64);
        let oldest = self
            .stuck
            .iter()
            .map(|p| p.first_ms)
            .chain(self.log.oldest_ms())
            .min();
        let age = oldest.map_or(0, |ms| self.limiter.now_ms().saturating_sub(ms));
        self.metrics.oldest.set(age as f64 / 1000.0);
    }

    /// Whether this tick also drains the `hour` rows (every `hour_flush_interval`).
    fn hours_due(&self) -> bool {
        self.last_hours.elapsed() >= self.settings.hour_flush_interval
    }

    fn sync_due(&self) -> bool {
        !self.active.is_empty()
            && self
                .last_sync
                .is_none_or(|at| at.elapsed() >= self.settings.sync_interval)
    }

    /// Reads back the totals of the quota rows written since the last sync.
    async fn sync(&mut self) {
        self.last_sync = Some(Instant::now());
        let keys: Vec<UsageKey> = self.active.drain().collect();
        for chunk in keys.chunks(SYNC_CHUNK) {
            match self.store.usage_totals(chunk).await {
                Ok(rows) => {
                    let config = self.config.load();
                    for row in rows {
                        let Some(bound) = config.rules.iter().find(|b| *b.rule.name == row.rule)
                        else {
                            continue;
                        };
                        let total = u64::try_from(row.count).unwrap_or(0);
                        self.limiter.sync_quota(
                            &bound.rule,
                            &row.key,
                            &row.period,
                            row.period_start,
                            total,
                        );
                    }
                    self.metrics.sync_ok.increment(1);
                }
                Err(e) => {
                    self.metrics.sync_error.increment(1);
                    tracing::debug!(error = %e, "quota sync failed");
                    return;
                }
            }
        }
    }

    /// After shutdown: flush until nothing is left or the deadline passes.
    async fn finish(mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.next_batch(true) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.flush_stuck()).await {
                Ok(true) => continue,
                Ok(false) if Instant::now() < end => {
                    let pause = Duration::from_millis(200).min(end - Instant::now());
                    tokio::time::sleep(pause).await;
                }
                _ => break,
            }
        }
        let rows = self.pending_rows();
        if rows > 0 {
            tracing::error!(
                rows,
                "shutdown: usage not written to the store before the deadline"
            );
        } else {
            tracing::info!("shutdown: all usage written to the store");
        }
    }
}

/// The store's batch from the log's drained deltas, with the cost and age it carries.
fn to_batch(id: String, drained: usage::Drained) -> Pending {
    let cost = drained.usage.iter().map(|d| d.count).sum();
    let first_ms = drained
        .usage
        .iter()
        .map(|d| d.first_ms)
        .chain(drained.violations.iter().map(|d| d.first_ms))
        .min()
        .unwrap_or(0);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let ms = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let usage = drained
        .usage
        .into_iter()
        .map(|d| UsageDelta {
            rule: d.rule,
            key: d.key,
            period: d.period,
            period_start: d.period_start,
            count: count(d.count),
        })
        .collect();
    let violations = drained
        .violations
        .into_iter()
        .map(|d| ViolationDelta {
            rule: d.rule.to_string(),
            key: d.key.into(),
            minute: d.minute,
            shadow: d.shadow,
            count: count(d.count),
            first_seen_ms: ms(d.first_ms),
            last_seen_ms: ms(d.last_ms),
            method: d.sample.method,
            path: d.sample.path,
            client_ip: d.sample.client_ip,
            limit: d.sample.limit,
        })
        .collect();
    Pending {
        batch: Batch {
            id,
            usage,
            violations,
            traffic: Vec::new(),
        },
        cost,
        first_ms,
    }
}

/// A random 64-bit id: std's `RandomState` keys come from the OS's randomness once per process.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
