//! Calendar quotas: a fixed allowance per day, ISO week or (anchored) month in a time zone.
//!
//! Owns [`Quota`] (a calendar plus a cache of its current period) and the arithmetic of a quota
//! counter kept in a [`Slot`]. Must not touch the table, locks or the store: like `window.rs`,
//! every function takes `now_ms` (Unix milliseconds, see `clock.rs`) and a slot.
//!
//! # A quota in a slot
//! A quota is counted in the same 24-byte [`Slot`] as a sliding window, read differently:
//!
//! ```text
//! dur_ms  the quota's tag: QUOTA_TAG | hash(kind, zone, anchor), never a real window length
//! idx     the end of the counted period, Unix ms (the slot rolls when now reaches it)
//! prev    the period's length in seconds (for RateLimit-Policy's w=)
//! curr    the cost counted in the period so far
//! ```
//!
//! Matching slots by tag keeps a quota's count across a reload that changes only its maximum,
//! and starts a fresh count when the zone or anchor changes, as a changed window length does.
//! Unlike a sliding window a quota is a fixed window: its count drops to 0 at the period's end,
//! and a denial's retry-after is the time to that end.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use super::calendar::{Calendar, PeriodKind};
use super::window::Slot;

/// Set in a quota's tag; real window lengths (at most 366 days) never reach it.
pub const QUOTA_TAG: u64 = 1 << 62;

/// A calendar quota's period rule, with its current period cached.
#[derive(Debug)]
pub struct Quota {
    pub calendar: Calendar,
    /// Stable for the same kind, zone and anchor: the slot tag.
    pub tag: u64,
    /// The current period, `start_secs << 32 | len_secs`, so one atomic load answers most
    /// requests without jiff (start as u32 seconds holds until 2106).
    cached: AtomicU64,
}

impl PartialEq for Quota {
    fn eq(&self, other: &Self) -> bool {
        self.tag == other.tag
    }
}

impl Eq for Quota {}

/// One period in Unix milliseconds, half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodMs {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Quota {
    /// A quota over `calendar`'s periods; `zone` is the name the calendar was built from.
    pub fn new(calendar: Calendar, zone: &str) -> Self {
        let tag = QUOTA_TAG | (quota_hash(calendar.kind(), zone, calendar.anchor_day()) >> 2);
        Self {
            calendar,
            tag,
            cached: AtomicU64::new(0),
        }
    }

    /// The kind of period.
    pub fn kind(&self) -> PeriodKind {
        self.calendar.kind()
    }

    /// The period containing `now_ms`, from the cache when it holds it.
    pub fn period(&self, now_ms: u64) -> PeriodMs {
        let packed = self.cached.load(Ordering::Relaxed);
        let start_ms = (packed >> 32) * 1000;
        let end_ms = start_ms + (packed & 0xFFFF_FFFF) * 1000;
        if packed != 0 && (start_ms..end_ms).contains(&now_ms) {
            return PeriodMs { start_ms, end_ms };
        }
        self.compute(now_ms)
    }

    #[cold]
    fn compute(&self, now_ms: u64) -> PeriodMs {
        let now = Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::MAX);
        let p = self.calendar.period_at(now);
        let start = u64::try_from(p.start.as_second()).unwrap_or(0);
        let len = p.secs();
        if let (Ok(s), Ok(l)) = (u32::try_from(start), u32::try_from(len)) {
            self.cached
                .store(u64::from(s) << 32 | u64::from(l), Ordering::Relaxed);
        }
        PeriodMs {
            start_ms: start * 1000,
            end_ms: (start + len) * 1000,
        }
    }

    /// A fresh slot for this quota, current at `now_ms`.
    pub fn new_slot(&self, now_ms: u64) -> Slot {
        let p = self.period(now_ms);
        Slot {
            dur_ms: self.tag,
            idx: p.end_ms,
            prev: len_secs(p),
            curr: 0,
        }
    }

    /// Moves `slot` to the period containing `now_ms`, zeroing its count if the period changed.
    pub fn roll(&self, slot: &mut Slot, now_ms: u64) {
        if now_ms < slot.idx {
            return;
        }
        let p = self.period(now_ms);
        if p.end_ms != slot.idx {
            slot.idx = p.end_ms;
            slot.prev = len_secs(p);
            slot.curr = 0;
        }
    }
}

fn len_secs(p: PeriodMs) -> u32 {
    u32::try_from((p.end_ms - p.start_ms) / 1000).unwrap_or(u32::MAX)
}

/// Whether `cost` more fits under `max` in the slot's period.
pub fn allows(slot: &Slot, max: u32, cost: u32) -> bool {
    slot.curr
        .checked_add(cost)
        .is_some_and(|total| total <= max)
}

/// Cost that would still pass in the slot's period.
pub fn remaining(slot: &Slot, max: u32) -> u32 {
    max.saturating_sub(slot.curr)
}

/// Milliseconds until the slot's period ends: the reset, and a denial's retry-after.
pub fn reset_ms(slot: &Slot, now_ms: u64) -> u64 {
    slot.idx.saturating_sub(now_ms)
}

/// The start of the slot's period, Unix ms.
pub fn start_ms(slot: &Slot) -> u64 {
    slot.idx
        .saturating_sub(u64::from(slot.prev).saturating_mul(1000))
}

/// Whether a slot counts a quota rather than a sliding window.
pub fn is_quota(slot: &Slot) -> bool {
    slot.dur_ms & QUOTA_TAG != 0
}

/// FNV-1a over the quota's identity: stable across processes, like rule ids.
fn quota_hash(kind: PeriodKind, zone: &str, anchor: u8) -> u64 {
    let kind = match kind {
        PeriodKind::Day => b'd',
        PeriodKind::Week => b'w',
        PeriodKind::Month => b'm',
    };
    [kind, anchor]
        .iter()
        .chain(zone.as_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// The name a period kind has in headers, the store and the config: "day", "week", "month".
pub fn kind_name(kind: PeriodKind) -> &'static str {
    match kind {
        PeriodKind::Day => "day",
        PeriodKind::Week => "week",
        PeriodKind::Month => "month",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn day_quota(zone: &str) -> Quota {
        Quota::new(Calendar::new(PeriodKind::Day, zone, None).unwrap(), zone)
    }

    #[test]
    fn a_slot_counts_until_the_period_ends() {
        let q = day_quota("UTC");
        let now = 20_000 * DAY_MS + 5_000;
        let mut slot = q.new_slot(now);
        assert!(is_quota(&slot));
        assert_eq!(slot.idx, 20_001 * DAY_MS);
        assert_eq!(start_ms(&slot), 20_000 * DAY_MS);
        slot.curr = 3;
        assert!(allows(&slot, 4, 1));
        assert!(!allows(&slot, 4, 2));
        assert_eq!(reset_ms(&slot, now), DAY_MS - 5_000);
        q.roll(&mut slot, 20_001 * DAY_MS - 1);
        assert_eq!(slot.curr, 3);
        q.roll(&mut slot, 20_001 * DAY_MS);
        assert_eq!((slot.curr, slot.idx), (0, 20_002 * DAY_MS));
    }

    #[test]
    fn tags_differ_by_zone_and_kind_and_never_look_like_windows() {
        let utc = day_quota("UTC");
        let berlin = day_quota("Europe/Berlin");
        assert_ne!(utc.tag, berlin.tag);
        assert_eq!(utc.tag, day_quota("UTC").tag);
        assert!(QUOTA_TAG > 366 * DAY_MS && utc.tag >= QUOTA_TAG);
    }

    #[test]
    fn the_cache_follows_the_clock_across_periods() {
        let q = day_quota("America/New_York");
        let a = q.period(20_000 * DAY_MS);
        let b = q.period(20_000 * DAY_MS + 1);
        assert_eq!(a, b);
        let c = q.period(a.end_ms);
        assert_eq!(c.start_ms, a.end_ms);
        assert_eq!(q.period(a.start_ms), a);
    }
}
