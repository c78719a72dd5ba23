//! The live violation tap: denials coalesced per `(rule, key, shadow)` until the admin feed
//! drains them, once a second.
//!
//! Owns only the coalescing and its bound. A denial costs one hash and one shard lock, like a
//! limiter check; a flood of denials of one key is one entry with a count, and a flood of new keys
//! stops adding entries at `max_entries` (counted in `dropped`), so neither can grow memory or
//! the feed without bound. Must not know about WebSockets or alerts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::FixedState;
use std::hash::{BuildHasher, BuildHasherDefault};

use super::usage::Sample;
use super::IdentityHasher;

/// Denials of one `(rule, key, shadow)` since the last drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapEntry {
    pub rule: Arc<str>,
    pub key: Box<str>,
    pub shadow: bool,
    pub count: u64,
    /// The first of these denials.
    pub sample: Sample,
}

/// See the module docs.
#[derive(Debug)]
pub struct ViolationTap {
    map: DashMap<u64, TapEntry, BuildHasherDefault<IdentityHasher>>,
    len: AtomicUsize,
    max_entries: usize,
    /// Denials not tapped because `max_entries` distinct keys were already waiting.
    dropped: AtomicU64,
    /// Denials tapped in all (coalesced or not).
    total: AtomicU64,
}

impl ViolationTap {
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::default(),
            len: AtomicUsize::new(0),
            max_entries,
            dropped: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Counts one denial; the first of its entry keeps `sample`.
    pub fn record(
        &self,
        rule: &Arc<str>,
        key: &str,
        shadow: bool,
        sample: impl FnOnce() -> Sample,
    ) {
        let id = FixedState::with_seed(0x7a9).hash_one((&**rule, key, shadow));
        if let Some(mut e) = self.map.get_mut(&id) {
            e.count += 1;
            self.total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.max_entries {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut inserted = false;
        let mut e = self.map.entry(id).or_insert_with(|| {
            inserted = true;
            TapEntry {
                rule: rule.clone(),
                key: key.into(),
                shadow,
                count: 0,
                sample: sample(),
            }
        });
        e.count += 1;
        if inserted {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes everything tapped since the last drain.
    pub fn drain(&self) -> Vec<TapEntry> {
        let mut out = Vec::with_capacity(self.len.load(Ordering::Relaxed));
        self.map.retain(|_, e| {
            out.push(e.clone());
            false
        });
        self.len.fetch_sub(out.len(), Ordering::Relaxed);
        out
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_per_key_and_bounds_new_keys() {
        let tap = ViolationTap::new(2);
        let rule: Arc<str> = "api".into();
        for _ in 0..1000 {
            tap.record(&rule, "a", false, Sample::default);
        }
        tap.record(&rule, "a", true, Sample::default);
        tap.record(&rule, "b", false, Sample::default);
        let mut got = tap.drain();
        got.sort_by_key(|e| e.shadow);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].count, got[1].count), (1000, 1));
        assert_eq!(tap.dropped(), 1);
        assert_eq!(tap.total(), 1001);
        assert!(tap.drain().is_empty());
        tap.record(&rule, "b", false, Sample::default);
        assert_eq!(tap.drain().len(), 1);
    }
}
