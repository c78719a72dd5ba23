//! The sliding window counter against an exact sliding log, on random request sequences.
//!
//! The model keeps a log of the requests the limiter admitted (a denied request consumes
//! nothing in either) and derives, at every step, the exact sliding count `L` of `(t − dur, t]`
//! and the fixed-window counts `prev` and `curr`. It asserts:
//! 1. the limiter decides exactly as `prev·(1 − e/dur) + curr + cost ≤ max` on the log's counts;
//! 2. when the limiter admits what the log would deny, the excess is within the documented
//!    under-count bound `prev·e/dur`;
//! 3. when it denies what the log would admit, the shortfall is within the over-count bound
//!    `prev·(dur − e)/dur`;
//! 4. a denial's retry-after is exact: still denied 1 ms before, allowed at it.

use std::sync::Arc;

use proptest::prelude::*;
use tollgate::limiter::{Check, Key, KeyPart, Limiter, Limits, ManualClock, Rule};

/// Admitted requests, as `(ms, cost)`.
#[derive(Default)]
struct SlidingLog {
    admitted: Vec<(u64, u32)>,
}

impl SlidingLog {
    /// Sum of costs admitted in `[from, to]`.
    fn sum(&self, from: u64, to: u64) -> u64 {
        self.admitted
            .iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|&(_, c)| u64::from(c))
            .sum()
    }

    /// `(prev, curr, e)` of the fixed windows around `t`, as the counter should see them.
    fn fixed(&self, t: u64, dur: u64) -> (u64, u64, u64) {
        let start = t / dur * dur;
        let prev = match start.checked_sub(dur) {
            Some(p) => self.sum(p, start - 1),
            None => 0,
        };
        (prev, self.sum(start, t), t - start)
    }

    /// Exact count of the sliding window `(t − dur, t]`.
    fn sliding(&self, t: u64, dur: u64) -> u64 {
        self.sum((t + 1).saturating_sub(dur), t)
    }

    /// The counter's allow test, computed from the log.
    fn formula_allows(&self, t: u64, dur: u64, max: u32, cost: u32) -> bool {
        let (prev, curr, e) = self.fixed(t, dur);
        prev * (dur - e) + (curr + u64::from(cost)) * dur <= u64::from(max) * dur
    }
}

/// A gap in ms: often none (bursts), sometimes 1–2 ms, otherwise up to 2.5 windows.
fn gap(raw: u32, dur: u64) -> u64 {
    let raw = u64::from(raw);
    match raw % 10 {
        0..=2 => 0,
        3..=4 => raw / 10 % 3,
        _ => (raw / 10 % 2_500) * dur / 1_000,
    }
}

fn run(dur: u64, max: u32, start: u64, steps: &[(u32, u32)]) -> Result<(), TestCaseError> {
    let rule = Rule::new("model", Limits::new([(dur, max, "p")]), false);
    let limiter = Limiter::new(Arc::new(ManualClock::new(0)), 16);
    let mut log = SlidingLog::default();
    let mut t = start;
    for &(raw_gap, cost) in steps {
        t += gap(raw_gap, dur);
        let checks = [Check {
            rule: &rule,
            key: Key::single(KeyPart::Str("k")),
            cost,
        }];
        let decision = limiter.check_at(t, &checks);
        let allowed = decision.is_allowed();
        let (prev, _, e) = log.fixed(t, dur);
        let exact = log.sliding(t, dur) + u64::from(cost);
        let max = u64::from(max);
        prop_assert_eq!(
            allowed,
            log.formula_allows(t, dur, max as u32, cost),
            "t={}",
            t
        );
        if allowed && exact > max {
            prop_assert!(
                (exact - max) * dur <= prev * e,
                "under-count too large at t={}",
                t
            );
        }
        if !allowed && exact <= max {
            prop_assert!(
                (max - exact) * dur < prev * (dur - e),
                "over-count too large at t={}",
                t
            );
        }
        if let Some(retry) = decision.retry_after_ms() {
            if u64::from(cost) <= max {
                prop_assert!(retry > 0);
                prop_assert!(!log.formula_allows(t + retry - 1, dur, max as u32, cost));
                prop_assert!(log.formula_allows(t + retry, dur, max as u32, cost));
            }
        }
        if allowed {
            log.admitted.push((t, cost));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn counter_stays_within_the_documented_bound(
        dur in 1u64..=10_000,
        max in 1u32..=50,
        start in 0u64..100_000,
        steps in prop::collection::vec((any::<u32>(), 1u32..=3), 1..300),
    ) {
        run(dur, max, start, &steps)?;
    }
}
