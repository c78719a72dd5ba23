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
//! arithmetic, as `curr + cost ≤ max` and `prev·(dur−e) ≤ (max−curr−cost)·dur`: both products are
//! of a `u32` and a duration, so they fit a `u64` for any window under ~49 days (`u32::MAX` ms);
//! longer windows take the same test in `u128`. There is no float rounding at the limit.
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
        // E·dur + cost·dur ≤ max·dur  ⇔  prev·weight ≤ (max − curr − cost)·dur, budget ≥ 0.
        let Some(budget) = max.checked_sub(self.curr).and_then(|b| b.checked_sub(cost)) else {
            return false;
        };
        if self.prev == 0 {
            return true;
        }
        let weight = self.dur_ms - self.elapsed(now_ms);
        match u32::try_from(self.dur_ms) {
            // u32 × u32 products: no overflow, no u128.
            Ok(dur) => u64::from(self.prev) * weight <= u64::from(budget) * u64::from(dur),
            Err(_) => {
                u128::from(self.prev) * u128::from(weight)
                    <= u128::from(budget) * u128::from(self.dur_ms)
            }
        }
    }

    /// `prev · (dur − e)`, in `u64` for windows up to `u32::MAX` ms (where it cannot overflow),
    /// in `u128` only for longer ones.
    fn prev_weighted(&self, now_ms: u64) -> u128 {
        let weight = self.dur_ms - self.elapsed(now_ms);
        match u32::try_from(weight) {
            Ok(weight) => u128::from(u64::from(self.prev) * u64::from(weight)),
            Err(_) => u128::from(self.prev) * u128::from(weight),
        }
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
        // max − ceil(E) = max − curr − ceil(prev·weight / dur), in u64 wherever it fits (always,
        // for windows under ~49 days): a 128-bit division is a libcall several times slower.
        let weighted = self.prev_weighted(now_ms);
        let decayed = match u64::try_from(weighted) {
            Ok(w) => u128::from(w.div_ceil(self.dur_ms)),
            Err(_) => weighted.div_ceil(u128::from(self.dur_ms)),
        };
        let left = u128::from(max.saturating_sub(self.curr)).saturating_sub(decayed);
        u32::try_from(left).unwrap_or(u32::MAX)
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
    // budget·dur fits a u64 for windows up to u32::MAX ms; longer ones divide in u128.
    let max_weight = match u32::try_from(dur_ms) {
        Ok(dur) => u64::from(budget) * u64::from(dur) / u64::from(prev),
        Err(_) => {
            let w = u128::from(budget) * u128::from(dur_ms) / u128::from(prev);
            u64::try_from(w).unwrap_or(u64::MAX)
        }
    };
    dur_ms.saturating_sub(max_weight)
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
