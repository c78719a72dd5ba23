//! The sliding window counter, as pure functions of `(Slot, now)`.
//!
//! Owns the arithmetic only: rolling a [`Slot`] forward, the estimate, the allow test, and the
//! numbers the proxy turns into headers (`remaining`, `reset`, `retry-after`). Must not touch the
//! table, locks, clocks or keys: every function takes `now_ms` and a slot, so it is tested without
//! time passing.
//!
//! # The algorithm
//! Time is cut into fixed windows of `dur` ms; window `idx` covers `[idx·dur, (idx+1)·dur)`. A slot
//! keeps the count of the current window (`curr`) and of the one before (`prev`). At `t`, with
//! `e = t − idx·dur` ms elapsed in the current window, the count of the sliding window `(t − dur, t]`
//! is estimated as
//!
//! ```text
//! E(t) = prev · (dur − e) / dur + curr
//! ```
//!
//! and a request of `cost` is allowed iff `E(t) + cost ≤ max`. The test is done in exact integer
//! arithmetic (`prev·(dur−e) + (curr+cost)·dur ≤ max·dur`, in `u128`), so there is no float
//! rounding at the limit.
//!
//! # Worst-case error against an exact sliding log
//! The estimate assumes the previous window's requests were spread evenly over it. Let `L(t)` be the
//! exact count of admitted requests in the sliding window `(t − dur, t]`, and `P_late` the part of
//! `prev` that is still inside it (`0 ≤ P_late ≤ prev`). Then `L = curr + P_late` and
//!
//! ```text
//! −prev · e/dur  ≤  E(t) − L(t)  ≤  prev · (dur − e)/dur
//! ```
//!
//! so the estimate is never off by more than `prev` (the previous window's count, itself `≤ max`
//! unless a reload lowered `max`). It **over-counts** (denies early) when the previous window's
//! requests came early in it and have already slid out, and **under-counts** (admits up to
//! `prev·e/dur` more than a log would) when they came late in it. The error is zero at the start of a
//! window when `prev` was evenly spread, and `curr` is always exact. `tests/window_model.rs` checks
//! this bound against a sliding-log model.
//!
//! # Denied requests consume nothing
//! Only allowed requests are counted. If denials were counted, a client that keeps retrying while
//! blocked would keep its own estimate above `max` and never recover; the product rule is "a denied
//! request consumes nothing", and [`Slot::retry_after_ms`] is exact only because of it.

/// The counters of one key for one window duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The window duration this slot counts for; slots are matched to a rule's windows by it.
    pub dur_ms: u64,
    /// Index of the current fixed window: `now_ms / dur_ms` when last rolled.
    pub idx: u64,
    /// Allowed cost in window `idx − 1`.
    pub prev: u32,
    /// Allowed cost in window `idx`, so far.
    pub curr: u32,
}

impl Slot {
    /// An empty slot for a window of `dur_ms` (treated as at least 1 ms), current at `now_ms`.
    pub fn new(dur_ms: u64, now_ms: u64) -> Self {
        let dur_ms = dur_ms.max(1);
        Self {
            dur_ms,
            idx: now_ms / dur_ms,
            prev: 0,
            curr: 0,
        }
    }

    /// Moves the slot to the fixed window containing `now_ms`. A `now_ms` older than the current
    /// window (a racing thread that read the clock earlier) leaves the slot as it is.
    pub fn roll(&mut self, now_ms: u64) {
        if now_ms < (self.idx + 1).saturating_mul(self.dur_ms) {
            // Still (or, racing, before) the current window: no division on the common path.
            return;
        }
        let idx = now_ms / self.dur_ms;
        if idx == self.idx + 1 {
            self.prev = self.curr;
            self.curr = 0;
        } else if idx > self.idx + 1 {
            self.prev = 0;
            self.curr = 0;
        } else {
            return;
        }
        self.idx = idx;
    }

    /// Milliseconds elapsed in the current window; 0 for a `now_ms` before it (weighs `prev` fully,
    /// the conservative choice).
    fn elapsed(&self, now_ms: u64) -> u64 {
        now_ms
            .saturating_sub(self.idx * self.dur_ms)
            .min(self.dur_ms)
    }

    /// `E(t) · dur`, exact: the weighted count scaled by the window length.
    fn scaled_estimate(&self, now_ms: u64) -> u128 {
        let dur = u128::from(self.dur_ms);
        let weight = dur - u128::from(self.elapsed(now_ms));
        u128::from(self.prev) * weight + u128::from(self.curr) * dur
    }

    /// The estimated count of the sliding window ending at `now_ms` (slot already rolled).
    pub fn estimate(&self, now_ms: u64) -> f64 {
        self.scaled_estimate(now_ms) as f64 / self.dur_ms as f64
    }

    /// Whether a request of `cost` fits under `max` at `now_ms` (slot already rolled).
    pub fn allows(&self, max: u32, cost: u32, now_ms: u64) -> bool {
        let dur = u128::from(self.dur_ms);
        self.scaled_estimate(now_ms) + u128::from(cost) * dur <= u128::from(max) * dur
    }

    /// Counts an allowed request.
    pub fn commit(&mut self, cost: u32) {
        self.curr = self.curr.saturating_add(cost);
    }

    /// `floor(max − E(t))`, clamped at 0: how much cost would still pass right now.
    pub fn remaining(&self, max: u32, now_ms: u64) -> u32 {
        if self.prev == 0 {
            // E(t) = curr exactly: no division.
            return max.saturating_sub(self.curr);
        }
        let scaled = self.scaled_estimate(now_ms);
        // A 64-bit division where it fits (always, for windows under ~49 days): a 128-bit one
        // is a libcall several times slower.
        let used = match u64::try_from(scaled) {
            Ok(scaled) => u128::from(scaled.div_ceil(self.dur_ms)),
            Err(_) => scaled.div_ceil(u128::from(self.dur_ms)),
        };
        u32::try_from(u128::from(max).saturating_sub(used)).unwrap_or(u32::MAX)
    }

    /// Milliseconds until the current fixed window ends.
    pub fn reset_ms(&self, now_ms: u64) -> u64 {
        ((self.idx + 1) * self.dur_ms).saturating_sub(now_ms)
    }

    /// Milliseconds from `now_ms` until the same request would be allowed, if no other request is
    /// admitted meanwhile: 0 if it is allowed now, `None` if `cost > max` (it never will be).
    ///
    /// Exact to the millisecond: the request is still denied at `now + retry − 1` and allowed at
    /// `now + retry`, because `E(t)` never increases while nothing is admitted.
    pub fn retry_after_ms(&self, max: u32, cost: u32, now_ms: u64) -> Option<u64> {
        if cost > max {
            return None;
        }
        let start = self.idx * self.dur_ms;
        let now_e = self.elapsed(now_ms);
        // In the current window: prev decays, curr stays.
        if let Some(budget) = max.checked_sub(self.curr).and_then(|b| b.checked_sub(cost)) {
            let e = first_allowed_elapsed(self.prev, budget, self.dur_ms);
            if e < self.dur_ms {
                return Some((start + e.max(now_e)).saturating_sub(now_ms));
            }
        }
        // In the next window, where prev' = curr and curr' = 0. If even its end is too early
        // (e == dur), the window after that starts empty and allows since cost <= max.
        let e = first_allowed_elapsed(self.curr, max - cost, self.dur_ms);
        Some((start + self.dur_ms + e).saturating_sub(now_ms))
    }
}

/// The least elapsed `e` in `0..=dur` with `prev·(dur − e) ≤ budget·dur`.
fn first_allowed_elapsed(prev: u32, budget: u32, dur_ms: u64) -> u64 {
    if prev == 0 {
        return 0;
    }
    let dur = u128::from(dur_ms);
    let max_weight = u128::from(budget) * dur / u128::from(prev);
    u64::try_from(dur.saturating_sub(max_weight)).unwrap_or(dur_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rolled(mut slot: Slot, now: u64) -> Slot {
        slot.roll(now);
        slot
    }

    #[test]
    fn allows_up_to_max_then_denies() {
        let mut slot = Slot::new(1_000, 0);
        for _ in 0..5 {
            assert!(slot.allows(5, 1, 10));
            slot.commit(1);
        }
        assert!(!slot.allows(5, 1, 10));
        assert_eq!(slot.remaining(5, 10), 0);
    }

    #[test]
    fn roll_by_one_window_moves_curr_to_prev() {
        let mut slot = Slot::new(1_000, 0);
        slot.commit(4);
        let s = rolled(slot, 1_500);
        assert_eq!((s.idx, s.prev, s.curr), (1, 4, 0));
        // Half-way through the window half of prev still counts.
        assert!((s.estimate(1_500) - 2.0).abs() < 1e-9);
        assert_eq!(s.remaining(10, 1_500), 8);
    }

    #[test]
    fn roll_by_two_windows_clears_everything() {
        let mut slot = Slot::new(1_000, 0);
        slot.commit(4);
        let s = rolled(slot, 2_000);
        assert_eq!((s.idx, s.prev, s.curr), (2, 0, 0));
    }

    #[test]
    fn older_now_does_not_roll_back() {
        let mut slot = Slot::new(1_000, 2_500);
        slot.commit(1);
        slot.roll(1_999);
        assert_eq!((slot.idx, slot.curr), (2, 1));
    }

    #[test]
    fn estimate_decays_linearly() {
        let mut slot = Slot::new(100, 0);
        slot.commit(10);
        slot.roll(100);
        assert!((slot.estimate(100) - 10.0).abs() < 1e-9);
        assert!((slot.estimate(125) - 7.5).abs() < 1e-9);
        assert!((slot.estimate(199) - 0.1).abs() < 1e-9);
    }

    /// The retry is never early and never late, whatever the state.
    fn assert_retry_exact(slot: Slot, max: u32, cost: u32, now: u64) {
        let retry = slot.retry_after_ms(max, cost, now).expect("cost <= max");
        let at = |t: u64| rolled(slot, t).allows(max, cost, t);
        assert!(at(now + retry), "allowed at retry {retry} for {slot:?}");
        if retry > 0 {
            assert!(
                !at(now + retry - 1),
                "denied before retry {retry} for {slot:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_exact_in_current_window() {
        let mut slot = Slot::new(1_000, 0);
        slot.commit(10);
        slot.roll(1_000);
        slot.commit(2);
        // E = 10·(1 − e/1000) + 2 ≤ 9 ⇔ e ≥ 300.
        assert_eq!(slot.retry_after_ms(10, 1, 1_100), Some(200));
        assert_retry_exact(slot, 10, 1, 1_100);
    }

    #[test]
    fn retry_after_spills_into_next_window() {
        let mut slot = Slot::new(1_000, 0);
        slot.commit(10);
        // curr is full, so wait for the next window, where prev' = 10 must decay to 9.
        assert_eq!(slot.retry_after_ms(10, 1, 400), Some(700));
        assert_retry_exact(slot, 10, 1, 400);
    }

    #[test]
    fn retry_after_cost_equal_to_max_waits_two_windows() {
        let mut slot = Slot::new(1_000, 0);
        slot.commit(1);
        assert_eq!(slot.retry_after_ms(3, 3, 0), Some(2_000));
        assert_retry_exact(slot, 3, 3, 0);
    }

    #[test]
    fn retry_after_is_zero_when_allowed_and_none_when_impossible() {
        let slot = Slot::new(1_000, 0);
        assert_eq!(slot.retry_after_ms(5, 1, 0), Some(0));
        assert_eq!(slot.retry_after_ms(5, 6, 0), None);
    }

    #[test]
    fn retry_after_exact_over_many_states() {
        for dur in [1, 7, 1_000] {
            for prev in 0..6 {
                for curr in 0..6 {
                    for e in [0, dur / 3, dur - 1] {
                        let slot = Slot {
                            dur_ms: dur,
                            idx: 3,
                            prev,
                            curr,
                        };
                        for cost in 1..=5 {
                            assert_retry_exact(slot, 5, cost, 3 * dur + e);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn remaining_is_floor_of_max_minus_estimate_and_roll_skips_same_window() {
        for dur in [1, 7, 1_000, u64::from(u32::MAX) * 4] {
            for (prev, curr) in [(0, 0), (0, 3), (5, 0), (4, 2), (u32::MAX, u32::MAX)] {
                let slot = Slot {
                    dur_ms: dur,
                    idx: 3,
                    prev,
                    curr,
                };
                for now in [3 * dur, 3 * dur + dur / 3, 4 * dur - 1] {
                    let scaled = slot.scaled_estimate(now);
                    let used = scaled.div_ceil(u128::from(dur));
                    let want = u128::from(10u32).saturating_sub(used) as u32;
                    assert_eq!(slot.remaining(10, now), want, "{slot:?} at {now}");
                    assert_eq!(rolled(slot, now), slot, "same window: no roll");
                }
            }
        }
    }

    #[test]
    fn reset_ms_counts_to_window_end() {
        let slot = Slot::new(1_000, 2_250);
        assert_eq!(slot.reset_ms(2_250), 750);
    }
}
