//! Unit tests of the sliding window counter, driven by explicit times (no clock).

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
    for dur in [1, 7, 1_000, u64::from(u32::MAX) * 3 + 1] {
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
