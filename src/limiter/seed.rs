//! Counts that come back from the store: rehydration at startup and the multi-instance sync.
//!
//! Owns how a stored usage row lands in an entry: a quota row sets its period's count, an hour
//! row sets the slots of a one-hour sliding window. Must not touch the store or the network:
//! `store::flusher` reads the rows and calls [`Limiter::seed`] and [`Limiter::sync_quota`].
//!
//! A row only lands if its period is the entry's current one (rows of a past period are history);
//! rows of keys whose display does not parse back into the same parts land on the parsed key
//! (see `key.rs`).

use super::entry::Entry;
use super::key::{overflow_hash, Key, OVERFLOW};
use super::quota::{self, kind_name};
use super::rule::{Rule, Window};
use super::table::Limiter;
use super::usage::HOUR_MS;
use super::window::Slot;

impl Limiter {
    /// Raises `(rule, key)`'s count in the period `period` starting at `period_start` (Unix
    /// seconds) to at least `count`, inserting the entry if needed. Returns whether it landed.
    pub fn seed(
        &self,
        rule: &Rule,
        key: &str,
        period: &str,
        period_start: i64,
        count: u64,
    ) -> bool {
        let now_ms = self.now_ms();
        let parsed = Key::parse_display(key);
        let (mut entry, _, overflow) = self.lock(rule, &parsed, now_ms);
        if overflow && key != OVERFLOW {
            return false;
        }
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        with_slot(
            &mut entry,
            rule,
            key,
            period,
            period_start,
            now_ms,
            |slot, current| match current {
                Current::This => slot.curr = slot.curr.max(count),
                Current::Next => slot.prev = slot.prev.max(count),
            },
        )
    }

    /// Sets the count of a quota of `(rule, key)` to `total` (the store's, all instances) plus
    /// what this instance has counted since its last flush. Only for entries already here.
    pub fn sync_quota(
        &self,
        rule: &Rule,
        key: &str,
        period: &str,
        period_start: i64,
        total: u64,
    ) -> bool {
        let now_ms = self.now_ms();
        let hash = if key == OVERFLOW {
            overflow_hash(self.hasher(), rule.id)
        } else {
            self.hash_key(rule.id, &Key::parse_display(key))
        };
        let Some(mut entry) = self.map.get_mut(&hash) else {
            return false;
        };
        let start_ms = u64::try_from(period_start).unwrap_or(0) * 1000;
        let pending = self
            .usage
            .as_ref()
            .map_or(0, |log| log.pending(hash, period, start_ms));
        let count = u32::try_from(total.saturating_add(pending)).unwrap_or(u32::MAX);
        with_slot(
            &mut entry,
            rule,
            key,
            period,
            period_start,
            now_ms,
            |slot, current| {
                if current == Current::This {
                    slot.curr = count;
                }
            },
        )
    }
}

/// Where a stored row falls against a slot: its current window or period, or the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    This,
    Next,
}

/// Finds the slot a row of `period` at `period_start` belongs to and applies `set` to it.
fn with_slot(
    entry: &mut Entry,
    rule: &Rule,
    key: &str,
    period: &str,
    period_start: i64,
    now_ms: u64,
    set: impl FnOnce(&mut Slot, Current),
) -> bool {
    let start_ms = u64::try_from(period_start).unwrap_or(0) * 1000;
    let limits = rule.limits_for(key);
    let Some(w) = limits.windows.iter().find(|w| matches(w, period)) else {
        return false;
    };
    let slot = entry.slot_of(w, now_ms);
    let current = if w.quota.is_some() {
        (quota::start_ms(slot) == start_ms).then_some(Current::This)
    } else if slot.idx == start_ms / HOUR_MS {
        Some(Current::This)
    } else if slot.idx == start_ms / HOUR_MS + 1 {
        Some(Current::Next)
    } else {
        None
    };
    match current {
        Some(c) => {
            set(slot, c);
            true
        }
        None => false,
    }
}

/// Whether window `w` is what rows of `period` count: the quota of that kind, or a one-hour
/// sliding window for "hour" rows.
fn matches(w: &Window, period: &str) -> bool {
    match &w.quota {
        Some(q) => kind_name(q.kind()) == period,
        None => period == "hour" && w.dur_ms == HOUR_MS,
    }
}
