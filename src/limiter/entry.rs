//! One table entry: the slots of one key under one rule, and how a check reads and writes them.
//!
//! Owns [`Entry`] and the per-entry steps of a decision: evaluate every window, commit all of them,
//! or roll a commit back; or, for a request of one check, all of it at once (`decide`). Must not
//! touch the map, its locks or other entries: the caller holds the entry's lock and decides
//! across entries (see `check.rs`).
//!
//! # Size
//! An entry is 64 bytes (72 with its `u64` map key), with no allocation for a key display of up
//! to 15 bytes (every IPv4 address) and one window: the display sits inline in a [`KeyText`], the
//! first slot inline in the `SmallVec`, and the longest duration is recomputed by `sweep` instead
//! of stored. A longer display costs one allocation, a second window duration another. Eight of
//! the bytes are the key's usage not yet written to the store's hour rows ([`HourTally`]), which
//! would otherwise take a row of its own in the usage log (`usage.rs`). The rule is a 4-byte
//! index ([`Rule::index`](super::Rule::index)) and the last check a 4-byte second: at a million
//! keys the table's buckets are about 150 MB, so each 8 bytes is 17 MB.

use smallvec::SmallVec;

use super::decision::{Statuses, WindowStatus};
use super::quota;
use super::rule::{Limits, Window};
use super::window::Slot;

/// The counters of one `(rule, key)`.
///
/// `repr(C)` keeps what a decision touches first, right after the bucket's `u64` key: the slots
/// and `last_seen_s` (bytes 0..44 of the 72-byte bucket), then the cold `rule`, `key` and `hour`. A
/// lookup then reads one cache line more often than two; in declaration order the slots sat at
/// bytes 40..72, always on a second line.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Entry {
    /// One per window duration ever applied to this key; matched to windows by `dur_ms`, so a
    /// reload that changes only `max` keeps the counts, and a changed duration starts fresh.
    /// One inline: most rules have one window (more spill to the heap).
    pub slots: SmallVec<[Slot; 1]>,
    /// Latest Unix second in which the key was checked; `sweep` evicts on it.
    pub last_seen_s: u32,
    /// The rule's [`Rule::index`](super::Rule::index).
    pub rule: u32,
    /// The key's display, for the admin plane and for telling entries apart in `reset_key`.
    pub key: KeyText,
    /// Allowed cost not yet handed to the store, for the key's `hour` usage row.
    pub hour: HourTally,
}

/// The allowed cost of one key in one Unix hour that the store has not been given yet: what the
/// usage log's `hour` row of the key would hold, kept in the entry so that counting it takes no
/// second lock and no second map (see `usage.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourTally {
    pub count: u32,
    /// Unix seconds of the first request counted, at least 1; 0: nothing pending.
    pub since_s: u32,
}

impl HourTally {
    /// Whether anything is waiting to be written.
    pub fn is_pending(self) -> bool {
        self.since_s != 0
    }

    /// Unix ms of the first request counted.
    pub fn first_ms(self) -> u64 {
        u64::from(self.since_s) * 1000
    }

    /// Unix ms of the start of the hour the tally counts.
    pub fn hour_start_ms(self) -> u64 {
        self.first_ms() / super::usage::HOUR_MS * super::usage::HOUR_MS
    }
}

/// A key's display as an entry stores it: inline up to 15 bytes, else behind one thin pointer,
/// so that it takes 16 bytes of the entry either way (a `Box<str>` takes 16 and allocates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyText {
    /// The bytes, padded with `0xFF` (a byte no UTF-8 text contains).
    Inline([u8; 15]),
    Heap(Box<Box<str>>),
}

impl KeyText {
    /// The display.
    pub fn as_str(&self) -> &str {
        match self {
            KeyText::Inline(bytes) => {
                let len = bytes.iter().position(|&b| b == 0xFF).unwrap_or(15);
                // Only a `&str`'s bytes are ever stored, so this does not fail.
                std::str::from_utf8(&bytes[..len]).unwrap_or_default()
            }
            KeyText::Heap(text) => text,
        }
    }
}

impl From<&str> for KeyText {
    fn from(text: &str) -> Self {
        let mut bytes = [0xFF; 15];
        match bytes.get_mut(..text.len()) {
            Some(head) => {
                head.copy_from_slice(text.as_bytes());
                KeyText::Inline(bytes)
            }
            None => KeyText::Heap(Box::new(text.into())),
        }
    }
}

/// The window of one entry that denies, and when it would allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub window: u8,
    pub retry_after_ms: u64,
}

/// Where a commit landed, so it can be undone: `(dur_ms, idx)` per window.
pub type Marks = SmallVec<[(u64, u64); 2]>;

impl Entry {
    /// An entry with no slots yet, seen at `now_ms`.
    pub fn new(key: KeyText, rule: u32, now_ms: u64) -> Self {
        Self {
            slots: SmallVec::new(),
            last_seen_s: second_of(now_ms),
            rule,
            key,
            hour: HourTally::default(),
        }
    }

    /// The start of the latest second in which the key was checked, in Unix ms.
    pub fn last_seen_ms(&self) -> u64 {
        u64::from(self.last_seen_s) * 1000
    }

    /// Whether the entry can go without losing anything at `now_ms`: every sliding slot idle for
    /// at least twice its duration (its estimate is 0), and every quota's period over. A quota
    /// key is therefore held until its period ends, bounded by `max_keys` like any other.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        // From the end of the second last seen: never longer than the key was really idle.
        let idle_for = now_ms.saturating_sub(self.last_seen_ms() + 999);
        self.slots.iter().all(|s| {
            if quota::is_quota(s) {
                now_ms >= s.idx
            } else {
                idle_for >= s.dur_ms.saturating_mul(2)
            }
        })
    }

    /// The slot for window `w`, created if missing, rolled to `now_ms`. `hint` is the window's
    /// index in its limits: slots are created in window order, so it is nearly always the slot's
    /// position too, and the search is skipped.
    fn slot_for(&mut self, hint: usize, w: &Window, now_ms: u64) -> &mut Slot {
        let pos = match self.slots.get(hint) {
            Some(s) if s.dur_ms == w.dur_ms => hint,
            _ => self.find_or_push(w, now_ms),
        };
        let slot = &mut self.slots[pos];
        match &w.quota {
            None => slot.roll(now_ms),
            Some(q) => q.roll(slot, now_ms),
        }
        slot
    }

    /// Position of the slot for `w`, pushed if missing.
    #[cold]
    fn find_or_push(&mut self, w: &Window, now_ms: u64) -> usize {
        match self.slots.iter().position(|s| s.dur_ms == w.dur_ms) {
            Some(pos) => pos,
            None => {
                self.slots.push(match &w.quota {
                    None => Slot::new(w.dur_ms, now_ms),
                    Some(q) => q.new_slot(now_ms),
                });
                self.slots.len() - 1
            }
        }
    }

    /// The slot of window `w`, created if missing, rolled to `now_ms`: for stored counts.
    pub fn slot_of(&mut self, w: &Window, now_ms: u64) -> &mut Slot {
        let hint = self.slots.len();
        self.slot_for(hint, w, now_ms)
    }

    /// Tests every window without counting. Pushes one status per window (tagged `check`) when
    /// `statuses` is given, and returns the denying window that allows last, if any.
    pub fn evaluate(
        &mut self,
        limits: &Limits,
        cost: u32,
        now_ms: u64,
        check: u16,
        mut statuses: Option<&mut Statuses>,
    ) -> Option<Denial> {
        see(&mut self.last_seen_s, now_ms);
        let mut worst: Option<Denial> = None;
        for (i, w) in limits.windows.iter().enumerate() {
            let window = u8::try_from(i).unwrap_or(u8::MAX);
            let slot = self.slot_for(i, w, now_ms);
            let status = WindowStatus {
                window,
                ..status_of(slot, w, now_ms, check)
            };
            if let Some(out) = statuses.as_deref_mut() {
                out.push(status);
            }
            let Some(retry_after_ms) = refusal(slot, w, cost, now_ms) else {
                continue;
            };
            if worst.is_none_or(|d| retry_after_ms > d.retry_after_ms) {
                worst = Some(Denial {
                    window,
                    retry_after_ms,
                });
            }
        }
        worst
    }

    /// Evaluates every window (statuses tagged check 0) and, only if all allow, counts `cost` in
    /// each and lowers each status's `remaining` by it: what the general path does for a request
    /// of one check, without the [`Marks`] a rollback would need. One window whose slot is
    /// already there (the common case) takes straight-line code.
    pub fn decide(
        &mut self,
        limits: &Limits,
        cost: u32,
        now_ms: u64,
        statuses: &mut Statuses,
    ) -> Option<Denial> {
        if let ([w], Some(slot)) = (&*limits.windows, self.slots.first_mut()) {
            if slot.dur_ms == w.dur_ms && w.quota.is_none() {
                see(&mut self.last_seen_s, now_ms);
                return decide_window(slot, w, cost, now_ms, statuses);
            }
        }
        let denial = self.evaluate(limits, cost, now_ms, 0, Some(statuses));
        if denial.is_none() {
            for (i, w) in limits.windows.iter().enumerate() {
                self.slot_for(i, w, now_ms).commit(cost);
            }
            for s in statuses.iter_mut() {
                s.remaining = s.remaining.saturating_sub(cost);
            }
        }
        denial
    }

    /// Counts `cost` in every window of `limits` (already evaluated at this time).
    pub fn commit(&mut self, limits: &Limits, cost: u32, now_ms: u64) -> Marks {
        let mut marks = Marks::new();
        for (i, w) in limits.windows.iter().enumerate() {
            let slot = self.slot_for(i, w, now_ms);
            slot.commit(cost);
            marks.push((slot.dur_ms, slot.idx));
        }
        marks
    }

    /// Undoes a [`commit`](Self::commit): from `curr` if its window is still current, from `prev`
    /// if it has rolled once since, not at all if it has rolled out.
    pub fn rollback(&mut self, marks: &Marks, cost: u32) {
        for &(dur_ms, idx) in marks {
            let Some(slot) = self.slots.iter_mut().find(|s| s.dur_ms == dur_ms) else {
                continue;
            };
            if slot.idx == idx {
                slot.curr = slot.curr.saturating_sub(cost);
            } else if slot.idx == idx + 1 {
                slot.prev = slot.prev.saturating_sub(cost);
            }
        }
    }
}

/// The Unix second of `now_ms` (saturating in 2106).
pub(super) fn second_of(now_ms: u64) -> u32 {
    u32::try_from(now_ms / 1000).unwrap_or(u32::MAX)
}

/// Moves a last-seen second forward to `now_ms`'s (never back: a racing check may read the
/// clock earlier).
fn see(last_seen_s: &mut u32, now_ms: u64) {
    *last_seen_s = (*last_seen_s).max(second_of(now_ms));
}

/// The status of window `w` from its rolled slot (as window 0: the caller sets the index).
fn status_of(slot: &Slot, w: &Window, now_ms: u64, check: u16) -> WindowStatus {
    let (dur_ms, calendar, remaining, reset_ms) = match &w.quota {
        None => (
            w.dur_ms,
            None,
            slot.remaining(w.max, now_ms),
            slot.reset_ms(now_ms),
        ),
        Some(q) => (
            u64::from(slot.prev) * 1000,
            Some(q.kind()),
            quota::remaining(slot, w.max),
            quota::reset_ms(slot, now_ms),
        ),
    };
    WindowStatus {
        check,
        window: 0,
        max: w.max,
        dur_ms,
        calendar,
        remaining,
        reset_ms,
    }
}

/// `None` if `cost` fits window `w` now, else the wait until it would.
fn refusal(slot: &Slot, w: &Window, cost: u32, now_ms: u64) -> Option<u64> {
    match &w.quota {
        None if slot.allows(w.max, cost, now_ms) => None,
        None => Some(slot.retry_after_ms(w.max, cost, now_ms).unwrap_or(w.dur_ms)),
        Some(_) if quota::allows(slot, w.max, cost) => None,
        Some(_) => Some(quota::reset_ms(slot, now_ms)),
    }
}

/// [`Entry::decide`] for the lone window `w` (index 0) and its slot.
fn decide_window(
    slot: &mut Slot,
    w: &Window,
    cost: u32,
    now_ms: u64,
    statuses: &mut Statuses,
) -> Option<Denial> {
    slot.roll(now_ms);
    let allows = slot.allows(w.max, cost, now_ms);
    let remaining = slot.remaining(w.max, now_ms);
    statuses.push(WindowStatus {
        check: 0,
        window: 0,
        max: w.max,
        dur_ms: w.dur_ms,
        calendar: None,
        remaining: if allows {
            remaining.saturating_sub(cost)
        } else {
            remaining
        },
        reset_ms: slot.reset_ms(now_ms),
    });
    if allows {
        slot.commit(cost);
        return None;
    }
    Some(Denial {
        window: 0,
        retry_after_ms: slot.retry_after_ms(w.max, cost, now_ms).unwrap_or(w.dur_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_inline_up_to_15_bytes() {
        for text in [
            "",
            "10.0.0.1",
            "255.255.255.255",
            "a-much-longer-api-key-value",
        ] {
            let key = KeyText::from(text);
            assert_eq!(key.as_str(), text);
            assert_eq!(matches!(key, KeyText::Inline(_)), text.len() <= 15);
        }
        assert_eq!(std::mem::size_of::<KeyText>(), 16);
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn rollback_follows_the_window_roll() {
        let limits = Limits::new([(1_000, 10, "10/s")]);
        let mut entry = Entry::new("k".into(), 1, 0);
        entry.commit(&limits, 1, 0);
        let marks = entry.commit(&limits, 2, 10);
        assert!(entry.evaluate(&limits, 1, 1_500, 0, None).is_none());
        entry.rollback(&marks, 2);
        assert_eq!((entry.slots[0].prev, entry.slots[0].curr), (1, 0));
    }

    #[test]
    fn evaluate_reports_the_window_that_allows_last() {
        let limits = Limits::new([(1_000, 1, "1/s"), (60_000, 1, "1/min")]);
        let mut entry = Entry::new("k".into(), 1, 0);
        entry.commit(&limits, 1, 0);
        let denial = entry.evaluate(&limits, 1, 0, 0, None).expect("full");
        assert_eq!(denial.window, 1);
        assert_eq!(denial.retry_after_ms, 120_000);
    }
}
