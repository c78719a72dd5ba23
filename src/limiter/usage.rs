//! The write-behind buffer: usage and violations aggregated in memory until the store drains them.
//!
//! Owns [`UsageLog`]: one sharded map of usage deltas per `(rule, key, period)` and one of
//! violation deltas per `(rule, key, minute, shadow)`. The limiter records into it under the
//! entry's lock, so an entry's count and its pending delta move together (the store's sync
//! relies on that). Must not touch the store, sqlx or the network: `store::flusher` drains it
//! with [`UsageLog::drain`] and writes the rows.
//!
//! # Bounded by keys, not requests
//! A delta is one row per key and period (or key and minute, for violations) no matter how many
//! requests it counts: a flood of denials from one key is one row a minute. `pending_rows` tells
//! the flusher how many there are, and [`UsageLog::drop_oldest`] enforces its cap.
//!
//! # Rows
//! Every allowed request adds its cost to an `hour` row (the Unix hour it fell in), which gives
//! exact usage per rule and key for every rule, and to one row per calendar quota of the limits
//! it passed (`day`, `week` or `month`, at the period's start).
//!
//! The `hour` row of a key is not in the maps here while it counts: the key's table entry holds
//! it as a `HourTally` (8 bytes), because nearly every allowed request has one and a map row
//! per key would cost a second lock and probe per request and about 64 bytes per key. The
//! entry's tally becomes a row here only when it cannot stay: its hour is over while it still
//! waits, or the entry is evicted or reset. [`Limiter::drain_usage_in`] takes the tallies of every
//! entry when the flusher asks for hour rows. Entries keep their rule's 4-byte index, not its
//! name; the drain finds the name in the registry of compiled rules (`rule::rule_at`).
//!
//! # Cost on the hot path
//! A quota row is one more shard lock and probe on an allowed request, so a row is kept small
//! and cheap to find: its map key mixes the entry's hash with the period by one multiply (no
//! string hashing), an existing row is bumped through `get_mut` (no entry API), and a pending row
//! is 56 bytes (a 64-byte bucket) holding the key display inline as the entry does, so a new row
//! of a key up to 15 bytes allocates nothing. [`UsageDelta`]s, with their owned strings, are
//! built only when drained. The hour tally is a few instructions under the entry's lock that the
//! decision already holds.

use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::FixedState;

use super::calendar::PeriodKind;
use super::entry::{second_of, Entry, HourTally, KeyText};
use super::rule::{Limits, Rule};
use super::table::{IdentityHasher, Limiter};

/// One hour in ms: usage rows for every rule are kept per Unix hour.
pub const HOUR_MS: u64 = 3_600_000;

/// Usage of one `(rule, key)` in one period, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub rule: Arc<str>,
    pub key: Box<str>,
    /// "hour", "day", "week" or "month".
    pub period: &'static str,
    /// Unix seconds of the period's start.
    pub period_start: i64,
    pub count: u64,
    /// When the first of these requests came (Unix ms): the age of the oldest unflushed delta.
    pub first_ms: u64,
}

/// What a denied request looked like: one kept per violation row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    pub method: String,
    pub path: String,
    pub client_ip: String,
    /// The limit that fired, as written ("100/m", "10000/day").
    pub limit: String,
}

/// Denials of one `(rule, key)` in one minute, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationDelta {
    pub rule: Arc<str>,
    pub key: Box<str>,
    /// Unix seconds of the minute's start.
    pub minute: i64,
    /// A shadow rule's would-be denial.
    pub shadow: bool,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub sample: Sample,
}

/// Everything drained at once.
#[derive(Debug, Default)]
pub struct Drained {
    pub usage: Vec<UsageDelta>,
    pub violations: Vec<ViolationDelta>,
}

type Map<V> = DashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// The periods a usage row can count, by index; see [`period_index`].
const PERIODS: [&str; 4] = ["hour", "day", "week", "month"];
/// The index of `"hour"` in [`PERIODS`].
const HOUR: u8 = 0;

/// A [`UsageDelta`] while it waits in the log: the same facts in 56 bytes.
#[derive(Debug, Clone)]
struct PendingUsage {
    rule: Arc<str>,
    key: KeyText,
    count: u64,
    first_ms: u64,
    /// Unix seconds of the period's start (a `u32` holds them until 2106; later ones saturate).
    period_start: u32,
    /// Index into [`PERIODS`].
    period: u8,
}

impl PendingUsage {
    /// The `hour` row an entry's tally stands for.
    fn of_tally(rule: Arc<str>, key: &KeyText, tally: HourTally) -> Self {
        Self {
            rule,
            key: key.clone(),
            count: u64::from(tally.count),
            first_ms: tally.first_ms(),
            period_start: second_of(tally.hour_start_ms()),
            period: HOUR,
        }
    }

    fn delta(&self) -> UsageDelta {
        UsageDelta {
            rule: self.rule.clone(),
            key: self.key.as_str().into(),
            period: PERIODS[usize::from(self.period)],
            period_start: i64::from(self.period_start),
            count: self.count,
            first_ms: self.first_ms,
        }
    }
}

/// The pending deltas.
#[derive(Debug)]
pub struct UsageLog {
    usage: Map<PendingUsage>,
    violations: Map<ViolationDelta>,
    /// Entries whose hour tally is pending.
    held: AtomicUsize,
    /// When the first tally pending since the last harvest began (Unix ms; 0: none).
    held_since_ms: AtomicU64,
}

impl Default for UsageLog {
    fn default() -> Self {
        Self {
            usage: super::table::sharded(),
            violations: super::table::sharded(),
            held: AtomicUsize::new(0),
            held_since_ms: AtomicU64::new(0),
        }
    }
}

impl UsageLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `cost` allowed for `entry` (table hash `hash`) under `limits` at `now_ms`: in the
    /// entry's hour tally and in a row per calendar quota.
    pub fn record(
        &self,
        hash: u64,
        rule: &Rule,
        entry: &mut Entry,
        limits: &Limits,
        now_ms: u64,
        cost: u32,
    ) {
        self.tally_hour(hash, rule, entry, now_ms, cost);
        for w in limits.windows.iter() {
            if let Some(q) = &w.quota {
                let row = Row {
                    hash,
                    period: quota_period(q.kind()),
                    start_ms: q.period(now_ms).start_ms,
                };
                self.add(row, &rule.name, &entry.key, now_ms, u64::from(cost));
            }
        }
    }

    /// Adds `cost` to the entry's hour tally; a tally of an earlier hour becomes a row first.
    fn tally_hour(&self, hash: u64, rule: &Rule, entry: &mut Entry, now_ms: u64, cost: u32) {
        let now_s = second_of(now_ms).max(1);
        let tally = entry.hour;
        if !tally.is_pending() {
            self.hold(now_ms);
            entry.hour.since_s = now_s;
        } else if tally.since_s / 3600 != now_s / 3600 {
            self.spill(hash, &rule.name, &entry.key, tally);
            entry.hour = HourTally {
                count: 0,
                since_s: now_s,
            };
        }
        entry.hour.count = entry.hour.count.saturating_add(cost);
    }

    /// An entry starts a tally: count it, and note when.
    fn hold(&self, now_ms: u64) {
        self.held.fetch_add(1, Ordering::Relaxed);
        if self.held_since_ms.load(Ordering::Relaxed) == 0 {
            let since = now_ms.max(1);
            let _ =
                self.held_since_ms
                    .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Turns a tally the entry can no longer hold into an `hour` row of the log.
    fn spill(&self, hash: u64, rule: &Arc<str>, key: &KeyText, tally: HourTally) {
        let row = Row {
            hash,
            period: HOUR,
            start_ms: tally.hour_start_ms(),
        };
        self.add(row, rule, key, tally.first_ms(), u64::from(tally.count));
    }

    /// Keeps the pending hour tally of an entry about to leave the table (evicted or reset).
    pub(super) fn release(&self, hash: u64, entry: &Entry) {
        if !entry.hour.is_pending() {
            return;
        }
        self.held.fetch_sub(1, Ordering::Relaxed);
        if let Some((_, name)) = super::rule::rule_at(entry.rule) {
            self.spill(hash, &name, &entry.key, entry.hour);
        }
    }

    /// Adds `cost` to `row`, created if new with `first_ms` as its first request.
    fn add(&self, row: Row, rule: &Arc<str>, key: &KeyText, first_ms: u64, cost: u64) {
        let id = row.id();
        if let Some(mut pending) = self.usage.get_mut(&id) {
            pending.count += cost;
            pending.first_ms = pending.first_ms.min(first_ms);
            return;
        }
        self.insert(id, row, rule, key, first_ms, cost);
    }

    /// The slow half of [`UsageLog::add`]: the first request of a row since the last drain.
    #[cold]
    fn insert(&self, id: u64, row: Row, rule: &Arc<str>, key: &KeyText, first_ms: u64, cost: u64) {
        let mut pending = self.usage.entry(id).or_insert_with(|| PendingUsage {
            rule: rule.clone(),
            key: key.clone(),
            count: 0,
            first_ms,
            period_start: second_of(row.start_ms),
            period: row.period,
        });
        pending.count += cost;
        pending.first_ms = pending.first_ms.min(first_ms);
    }

    /// The pending usage of entry `hash` in one period: what the store does not have yet.
    pub fn pending(&self, hash: u64, period: &str, start_ms: u64) -> u64 {
        let row = Row {
            hash,
            period: period_index(period),
            start_ms,
        };
        self.usage.get(&row.id()).map_or(0, |d| d.count)
    }

    /// Counts one denial of `(rule, key)` at `now_ms`; the first of its minute keeps `sample`.
    pub fn violation(
        &self,
        rule: &Arc<str>,
        key: &str,
        now_ms: u64,
        shadow: bool,
        sample: impl FnOnce() -> Sample,
    ) {
        let minute = now_ms / 60_000 * 60;
        let id = FixedState::with_seed(minute).hash_one((&**rule, key, shadow));
        let mut delta = self.violations.entry(id).or_insert_with(|| ViolationDelta {
            rule: rule.clone(),
            key: key.into(),
            minute: i64::try_from(minute).unwrap_or(i64::MAX),
            shadow,
            count: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            sample: sample(),
        });
        delta.count += 1;
        delta.last_ms = delta.last_ms.max(now_ms);
    }

    /// Rows waiting to be written: the log's, and the hour tallies entries hold.
    pub fn pending_rows(&self) -> usize {
        self.logged_rows() + self.held.load(Ordering::Relaxed)
    }

    /// Rows in the log's own maps: the memory `database.max_pending` bounds. An entry's hour
    /// tally is not one of them; it takes no memory beyond its entry.
    pub fn logged_rows(&self) -> usize {
        self.usage.len() + self.violations.len()
    }

    /// The first request of the oldest pending delta or tally (Unix ms), if any.
    pub fn oldest_ms(&self) -> Option<u64> {
        let usage = self.usage.iter().map(|d| d.first_ms);
        let violations = self.violations.iter().map(|d| d.first_ms);
        let held = Some(self.held_since_ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0);
        usage.chain(violations).chain(held).min()
    }

    /// Takes every pending row of the log. Each shard is emptied under its lock, so a request
    /// counted concurrently lands either in this drain or in the next, never in neither. The
    /// hour tallies entries hold are [`Limiter::drain_usage_in`]'s, every `hour_flush_interval`; an
    /// `hour` row here is a tally that could not stay in its entry, and goes with the next drain.
    pub fn drain(&self) -> Drained {
        let mut out = Drained::default();
        self.usage.retain(|_, d| {
            out.usage.push(d.delta());
            false
        });
        self.violations.retain(|_, d| {
            out.violations.push(d.clone());
            false
        });
        // A burst (the tallies spilled at an hour's turn, or evicted by a sweep) grew the map;
        // once a drain fills under a quarter of it, give the memory back. Never under steady
        // load: a map shrunk every drain would regrow, and each regrowth rehashes a shard under
        // its lock, on the request that happens to insert.
        if out.usage.len() * 4 < self.usage.capacity() {
            self.usage.shrink_to_fit();
        }
        out
    }

    /// Drops the pending deltas older than the newest `keep` (by first request); returns the
    /// rows and the cost they counted.
    pub fn drop_oldest(&self, keep: usize) -> (usize, u64) {
        let rows = self.logged_rows();
        if rows <= keep {
            return (0, 0);
        }
        let mut ages: Vec<u64> = self.usage.iter().map(|d| d.first_ms).collect();
        ages.extend(self.violations.iter().map(|d| d.first_ms));
        ages.sort_unstable();
        let cutoff = ages[rows - keep - 1];
        let (mut dropped, mut cost) = (0, 0);
        self.usage.retain(|_, d| {
            let keep = d.first_ms > cutoff;
            if !keep {
                dropped += 1;
                cost += d.count;
            }
            keep
        });
        self.violations.retain(|_, d| {
            let keep = d.first_ms > cutoff;
            dropped += usize::from(!keep);
            keep
        });
        (dropped, cost)
    }
}

impl Limiter {
    /// Takes everything pending for the store, at once: [`Limiter::drain_usage_in`] in one
    /// chunk, for tests.
    #[cfg(test)]
    pub(crate) fn drain_usage(&self, hours: bool) -> Drained {
        let mut all = Drained::default();
        self.drain_usage_in(hours, usize::MAX, |chunk| {
            all.usage.extend(chunk.usage);
            all.violations.extend(chunk.violations);
        });
        all
    }

    /// Takes everything pending for the store: the usage log's rows ([`UsageLog::drain`]) and,
    /// with `hours` (every `hour_flush_interval`), every entry's hour tally, zeroed as it is
    /// taken. The table is walked one shard at a time, each under its lock, as the log's own
    /// drain walks the log.
    ///
    /// `sink` gets the rows in chunks of at most `rows` usage rows and `rows` violations, so
    /// the caller can turn each into a batch before the next is built: a million held tallies
    /// never exist as deltas all at once, which is what sets the memory peak of an hour drain.
    pub fn drain_usage_in(&self, hours: bool, rows: usize, sink: impl FnMut(Drained)) {
        let Some(log) = &self.usage else {
            return;
        };
        let mut chunks = Chunks::new(rows, sink);
        let logged = log.drain();
        logged.usage.into_iter().for_each(|d| chunks.usage(d));
        logged
            .violations
            .into_iter()
            .for_each(|d| chunks.violation(d));
        if hours {
            log.held_since_ms.store(0, Ordering::Relaxed);
            let rules = super::rule::registered();
            let mut taken = 0;
            for mut entry in self.map.iter_mut() {
                let tally = std::mem::take(&mut entry.hour);
                if !tally.is_pending() {
                    continue;
                }
                taken += 1;
                // A rule compiled during this walk registered after the copy was taken.
                let index = entry.rule;
                let rule = rules.get(index as usize).map(|(_, name)| name.clone());
                let Some(rule) = rule.or_else(|| super::rule::rule_at(index).map(|(_, n)| n))
                else {
                    continue;
                };
                chunks.usage(PendingUsage::of_tally(rule, &entry.key, tally).delta());
            }
            log.held.fetch_sub(taken, Ordering::Relaxed);
        }
        chunks.flush();
    }
}

/// Rows gathered into [`Drained`] chunks of a bounded size, each handed on once full.
struct Chunks<F> {
    rows: usize,
    current: Drained,
    sink: F,
}

impl<F: FnMut(Drained)> Chunks<F> {
    fn new(rows: usize, sink: F) -> Self {
        Self {
            rows: rows.max(1),
            current: Drained::default(),
            sink,
        }
    }

    fn usage(&mut self, delta: UsageDelta) {
        self.current.usage.push(delta);
        if self.current.usage.len() >= self.rows {
            self.flush();
        }
    }

    fn violation(&mut self, delta: ViolationDelta) {
        self.current.violations.push(delta);
        if self.current.violations.len() >= self.rows {
            self.flush();
        }
    }

    /// Hands on what was gathered, if anything.
    fn flush(&mut self) {
        if !self.current.usage.is_empty() || !self.current.violations.is_empty() {
            (self.sink)(std::mem::take(&mut self.current));
        }
    }
}

/// Where a usage row belongs: entry, period kind and period start.
#[derive(Debug, Clone, Copy)]
struct Row {
    hash: u64,
    /// Index into [`PERIODS`].
    period: u8,
    start_ms: u64,
}

impl Row {
    /// The row's map key: the entry's hash (already seeded per process) mixed with the period
    /// by one 64×64→128-bit multiply folded back to 64 bits, so the low bits (the bucket) and
    /// the high bits (the shard) both depend on all three.
    fn id(self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let a = self.hash ^ u64::from(self.period).wrapping_mul(K);
        let b = self.start_ms ^ K.rotate_left(17);
        let product = u128::from(a) * u128::from(b | 1);
        (product as u64) ^ ((product >> 64) as u64) ^ self.hash.rotate_left(29)
    }
}

/// The index in [`PERIODS`] of a calendar quota's period, without a string search per request.
fn quota_period(kind: PeriodKind) -> u8 {
    match kind {
        PeriodKind::Day => 1,
        PeriodKind::Week => 2,
        PeriodKind::Month => 3,
    }
}

/// The index of a period's name in [`PERIODS`]; an unknown name (never recorded) gets one of
/// its own that matches no row.
fn period_index(period: &str) -> u8 {
    PERIODS
        .iter()
        .position(|&p| p == period)
        .map_or(u8::MAX, |i| i as u8)
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
