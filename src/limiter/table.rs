//! The sharded table of counters and the [`Limiter`] the proxy calls.
//!
//! Owns the map from `(rule, key)` to [`Entry`], its bound, its upkeep (`sweep`, `reset_key`) and
//! its counters. Must not touch slot arithmetic (`window.rs`), the order of a multi-check decision
//! (`check.rs`), config, or I/O: nothing here blocks beyond one shard lock held for a few slot
//! updates.
//!
//! # Layout
//! A `DashMap<u64, Entry>` keyed by a seeded foldhash of `(rule_id, key parts)` (see `key.rs`).
//! The key is already a good hash, so the map's own hasher passes it through and DashMap shards on
//! it. An existing key costs one hash and one `get_mut`, with no allocation and no display; a new
//! key inserts through `entry().or_insert_with`, the only place its display is formatted and stored.
//! Two `(rule, key)` pairs colliding in 64 bits would share counters (stricter, never looser);
//! with a random seed per process that is about a 1 in 10^7 event at a million keys.
//!
//! # Memory
//! A bucket is the `u64` hash and a 64-byte [`Entry`] (see `entry.rs`) plus one control byte;
//! an IPv4 key with one window allocates nothing else. hashbrown doubles its bucket array once
//! 7/8 full, so the cost per key swings between ~83 and ~166 bytes with the table's load:
//! measured (VmRSS growth, `cargo bench --bench limiter`) ~87 bytes at 900k keys and ~154 at
//! exactly 1M (just past a doubling).
//!
//! # Speed
//! An existing key costs one foldhash of its raw parts, one shard write lock, and one probe.
//! Past a few thousand keys the probe's cache miss on the bucket is most of the wall time (the
//! `floor_std_hashmap*` benches show what a bare `HashMap` pays for the same lookups); the
//! instructions around it are ~340 per decision (callgrind; ~960 before keys were hashed from
//! their parts and one-check requests got their own path). The map has [`SHARDS`] shards, not
//! DashMap's default (4 × cores): a sweep or an hour drain holds one shard's lock while it walks
//! it, and a smaller shard is a shorter wait for the requests whose keys fall in it.
//!
//! # Bound
//! At most `max_keys` client entries are tracked. Once full, a request for a new key is counted
//! in its rule's shared overflow bucket (display `*overflow*`, hashed apart from any client key)
//! under the rule's normal limits, and `overflowed` is bumped: memory stays bounded and limits
//! still apply, to the shared bucket. Overflow buckets, one per rule, are the only entries
//! allowed past `max_keys`. `tracked_keys` is exact: slots are reserved with a compare-and-swap
//! before inserting and given back if another thread inserted the key first.
//!
//! # Eviction
//! `sweep` removes entries idle for at least twice their longest window: only then has every slot
//! rolled past both of its counted windows, so its estimate is 0 and an evicted key can never get
//! a fresh window while its old one would still deny.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::mapref::one::RefMut;
use dashmap::DashMap;
use foldhash::fast::SeedableRandomState;

use super::clock::Clock;
use super::decision::{Check, Decision};
use super::entry::Entry;
use super::key::{overflow_hash, DisplayBuf, Key, OVERFLOW};
use super::rule::Rule;
use super::tap::ViolationTap;
use super::usage::UsageLog;
use super::window::Slot;

/// Passes a precomputed `u64` hash through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a non-u64 key is ever hashed; fold it rather than drop it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = DashMap<u64, Entry, BuildHasherDefault<IdentityHasher>>;

/// Shards of the limiter's maps that background threads walk (the table, by the sweeper and
/// the hour drain; the usage log, by the flusher's drain). A walk goes shard by shard, holding each shard's write lock while it walks it; a
/// request whose key falls in that shard waits, and on a current-thread runtime every request
/// waits with it. dashmap's default (4 × cores: 8 here) made each hold an eighth of the keys,
/// milliseconds at 100k keys; 128 shards cut it to under a thousand keys per 100k, for 16 KB.
pub(super) const SHARDS: usize = 128;

/// An empty map of [`SHARDS`] shards, for keys that are already hashes.
pub(super) fn sharded<V>() -> DashMap<u64, V, BuildHasherDefault<IdentityHasher>> {
    DashMap::with_hasher_and_shard_amount(BuildHasherDefault::default(), SHARDS)
}

/// A copy of one entry for the admin plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub key: Box<str>,
    pub rule_id: u64,
    pub last_seen_ms: u64,
    pub slots: Vec<Slot>,
}

/// The rate limiter: counters for every `(rule, key)` and the decisions over them.
pub struct Limiter {
    pub(super) map: Map,
    /// Seeded once per process so clients cannot aim keys at one shard.
    hasher: SeedableRandomState,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    /// Entries in `map`, overflow buckets included.
    tracked: AtomicUsize,
    evictions: AtomicU64,
    overflowed: AtomicU64,
    /// Where allowed usage is recorded for the store; `None` keeps nothing beyond the counters.
    pub(super) usage: Option<Arc<UsageLog>>,
    /// Where denials are tapped for the admin feed; `None` taps nothing.
    tap: Option<Arc<ViolationTap>>,
}

impl Limiter {
    /// An empty limiter tracking at most `max_keys` client keys.
    pub fn new(clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        Self {
            map: sharded(),
            hasher: SeedableRandomState::random(),
            clock,
            max_keys,
            tracked: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            usage: None,
            tap: None,
        }
    }

    /// Taps every denial (and shadow denial) into `tap`, for the admin feed.
    pub fn with_tap(mut self, tap: Arc<ViolationTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The violation tap, if any.
    pub fn tap(&self) -> Option<&Arc<ViolationTap>> {
        self.tap.as_ref()
    }

    /// Records every allowed request's usage in `log`, for the write-behind store.
    pub fn with_usage_log(mut self, log: Arc<UsageLog>) -> Self {
        self.usage = Some(log);
        self
    }

    /// The usage log, if the limiter records usage.
    pub fn usage_log(&self) -> Option<&Arc<UsageLog>> {
        self.usage.as_ref()
    }

    /// The limiter clock's reading.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Decides `checks` now; see [`Limiter::check_at`].
    pub fn check(&self, checks: &[Check<'_, '_>]) -> Decision {
        self.check_at(self.now_ms(), checks)
    }

    /// Decides `checks` as of `at`, a moment just read (the request's start), which saves the
    /// clock a read of its own; see [`Clock::ms_at`].
    pub fn check_from(&self, at: Instant, checks: &[Check<'_, '_>]) -> Decision {
        self.check_at(self.clock.ms_at(at), checks)
    }

    /// Entries currently in the table.
    pub fn tracked_keys(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Entries removed by `sweep` so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Requests for new keys counted in an overflow bucket because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Removes entries idle for at least twice their longest window; returns how many. An
    /// evicted entry's pending hour usage stays in the usage log.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        self.map.retain(|&hash, e| {
            let keep = !e.is_idle(now_ms);
            if !keep {
                removed += 1;
                self.release(hash, e);
            }
            keep
        });
        self.tracked.fetch_sub(removed, Ordering::Relaxed);
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Forgets the counters of one key (by display; `*overflow*` for the overflow bucket).
    ///
    /// The display is parsed back into its usual parts ([`Key::parse_display`]) to find the entry
    /// by hash; only if that entry is not there (a key whose parts look otherwise, such as a string
    /// part holding an IP or a `|`) are the rule's entries scanned, and every one showing that
    /// display is removed. The scan takes each shard's lock in turn: an admin-plane cost.
    pub fn reset_key(&self, rule_id: u64, key_display: &str) -> bool {
        let hash = if key_display == OVERFLOW {
            overflow_hash(&self.hasher, rule_id)
        } else {
            Key::parse_display(key_display).table_hash(&self.hasher, rule_id)
        };
        let Some(index) = super::rule::index_of(rule_id) else {
            return false; // no rule with this id was ever compiled, so no entry has it
        };
        let matches = |e: &Entry| e.rule == index && e.key.as_str() == key_display;
        let mut removed = 0;
        if let Some((hash, e)) = self.map.remove_if(&hash, |_, e| matches(e)) {
            removed = 1;
            self.release(hash, &e);
        } else {
            self.map.retain(|&hash, e| {
                let keep = !matches(e);
                if !keep {
                    removed += 1;
                    self.release(hash, e);
                }
                keep
            });
        }
        self.tracked.fetch_sub(removed, Ordering::Relaxed);
        removed > 0
    }

    /// Copies of up to `limit` entries, in no particular order.
    pub fn snapshot(&self, limit: usize) -> Vec<EntryView> {
        let rules = super::rule::registered();
        self.map
            .iter()
            .take(limit)
            .map(|e| EntryView {
                key: e.key.as_str().into(),
                rule_id: rules.get(e.rule as usize).map_or(0, |(id, _)| *id),
                last_seen_ms: e.last_seen_ms(),
                slots: e.slots.to_vec(),
            })
            .collect()
    }

    /// Keeps what an entry leaving the table has not written yet (its hour usage).
    fn release(&self, hash: u64, entry: &Entry) {
        if let Some(log) = &self.usage {
            log.release(hash, entry);
        }
    }

    /// The per-process hash seed.
    pub(super) fn hasher(&self) -> &SeedableRandomState {
        &self.hasher
    }

    /// The table hash of a client key.
    pub(super) fn hash_key(&self, rule_id: u64, key: &Key<'_>) -> u64 {
        key.table_hash(&self.hasher, rule_id)
    }

    /// Locks the entry for `(rule, key)`, inserting it if new, or, when the table is full,
    /// the rule's overflow bucket. Returns the guard, its hash, and whether it is the overflow.
    pub(super) fn lock(
        &self,
        rule: &Rule,
        key: &Key<'_>,
        now_ms: u64,
    ) -> (RefMut<'_, u64, Entry>, u64, bool) {
        let hash = self.hash_key(rule.id, key);
        if let Some(entry) = self.map.get_mut(&hash) {
            return (entry, hash, false);
        }
        self.insert(rule, key, hash, now_ms)
    }

    /// The slow half of [`Limiter::lock`]: a new key, or the overflow bucket.
    #[cold]
    fn insert(
        &self,
        rule: &Rule,
        key: &Key<'_>,
        hash: u64,
        now_ms: u64,
    ) -> (RefMut<'_, u64, Entry>, u64, bool) {
        if self.reserve_slot() {
            let mut inserted = false;
            let entry = self.map.entry(hash).or_insert_with(|| {
                inserted = true;
                let mut display = DisplayBuf::default();
                display.fill(key);
                Entry::new(display.as_str().into(), rule.index, now_ms)
            });
            if !inserted {
                self.tracked.fetch_sub(1, Ordering::Relaxed);
            }
            return (entry, hash, false);
        }
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        let hash = overflow_hash(&self.hasher, rule.id);
        let entry = self.map.entry(hash).or_insert_with(|| {
            self.tracked.fetch_add(1, Ordering::Relaxed);
            Entry::new(OVERFLOW.into(), rule.index, now_ms)
        });
        (entry, hash, true)
    }

    /// Takes one place under `max_keys`, if any is left.
    fn reserve_slot(&self) -> bool {
        self.tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.max_keys).then_some(t + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
