//! Unit tests of the limiter table, driven by a `ManualClock` (no sleeping).

use std::sync::Arc;
use std::time::Duration;

use super::super::{Check, Decision, Key, KeyPart, Limiter, Limits, ManualClock, Rule};

fn limiter(max_keys: usize) -> (Arc<ManualClock>, Limiter) {
    let clock = Arc::new(ManualClock::new(0));
    (clock.clone(), Limiter::new(clock, max_keys))
}

fn rule(name: &str, windows: &[(u64, u32)], shadow: bool) -> Rule {
    Rule::new(
        name,
        Limits::new(windows.iter().map(|&(d, m)| (d, m, "p"))),
        shadow,
    )
}

fn check<'r>(rule: &'r Rule, key: &'static str, cost: u32) -> Check<'r, 'static> {
    Check {
        rule,
        key: Key::single(KeyPart::Str(key)),
        cost,
    }
}

fn allowed(l: &Limiter, checks: &[Check<'_, '_>]) -> bool {
    l.check(checks).is_allowed()
}

fn remaining(d: &Decision) -> Vec<u32> {
    d.statuses().iter().map(|s| s.remaining).collect()
}

#[test]
fn allows_up_to_max_then_denies() {
    let (_, l) = limiter(100);
    let r = rule("r", &[(1_000, 3)], false);
    for left in [2, 1, 0] {
        let d = l.check(&[check(&r, "a", 1)]);
        assert!(d.is_allowed());
        assert_eq!(remaining(&d), vec![left]);
    }
    let d = l.check(&[check(&r, "a", 1)]);
    assert!(!d.is_allowed());
    assert_eq!(remaining(&d), vec![0]);
    assert!(
        allowed(&l, &[check(&r, "b", 1)]),
        "other keys are independent"
    );
}

#[test]
fn retry_after_is_exact_and_never_early() {
    let (clock, l) = limiter(100);
    let r = rule("r", &[(1_000, 4)], false);
    clock.set(200);
    for _ in 0..4 {
        assert!(allowed(&l, &[check(&r, "a", 1)]));
    }
    clock.set(900);
    let retry = l.check(&[check(&r, "a", 1)]).retry_after_ms().unwrap();
    // Next window: 4·(1 − e/1000) ≤ 3 ⇔ e ≥ 250, so 1 250 − 900.
    assert_eq!(retry, 350);
    clock.advance(Duration::from_millis(retry - 1));
    assert!(!allowed(&l, &[check(&r, "a", 1)]));
    clock.advance(Duration::from_millis(1));
    assert!(allowed(&l, &[check(&r, "a", 1)]));
}

#[test]
fn rollover_decays_the_previous_window() {
    let (clock, l) = limiter(100);
    let r = rule("r", &[(1_000, 10)], false);
    for _ in 0..10 {
        assert!(allowed(&l, &[check(&r, "a", 1)]));
    }
    clock.set(1_500); // half of prev (5) still counts
    let d = l.check(&[check(&r, "a", 1)]);
    assert_eq!(remaining(&d), vec![4]);
    for _ in 0..4 {
        assert!(allowed(&l, &[check(&r, "a", 1)]));
    }
    assert!(!allowed(&l, &[check(&r, "a", 1)]));
    clock.set(3_000); // two windows later everything is gone
    assert_eq!(remaining(&l.check(&[check(&r, "a", 1)])), vec![9]);
}

#[test]
fn multiple_windows_are_all_or_nothing() {
    let (clock, l) = limiter(100);
    let r = rule("r", &[(1_000, 10), (60_000, 20)], false);
    for _ in 0..10 {
        assert!(allowed(&l, &[check(&r, "a", 1)]));
    }
    let d = l.check(&[check(&r, "a", 1)]);
    assert!(matches!(d, Decision::Deny { window: 0, .. }));
    clock.set(2_000);
    for _ in 0..10 {
        assert!(allowed(&l, &[check(&r, "a", 1)]));
    }
    clock.set(4_000);
    let d = l.check(&[check(&r, "a", 1)]);
    assert!(matches!(d, Decision::Deny { window: 1, .. }), "{d:?}");
    // The per-second window must not have counted the denied request.
    assert_eq!(d.statuses()[0].remaining, 10);
    assert_eq!(d.statuses()[1].reset_ms, d.retry_after_ms().unwrap());
}

#[test]
fn a_later_denial_rolls_back_earlier_rules() {
    let (_, l) = limiter(100);
    let a = rule("a", &[(1_000, 5)], false);
    let b = rule("b", &[(1_000, 1)], false);
    assert!(allowed(&l, &[check(&a, "k", 1), check(&b, "k", 1)]));
    let d = l.check(&[check(&a, "k", 1), check(&b, "k", 1)]);
    assert!(matches!(d, Decision::Deny { check: 1, .. }));
    assert_eq!(
        remaining(&d),
        vec![4, 0],
        "a shows its state after rollback"
    );
    let d = l.check(&[check(&a, "k", 1)]);
    assert_eq!(
        remaining(&d),
        vec![3],
        "only the allowed request counted in a"
    );
}

#[test]
fn shadow_rules_never_deny_but_are_reported() {
    let (_, l) = limiter(100);
    let enforce = rule("e", &[(1_000, 10)], false);
    let shadow = rule("s", &[(1_000, 2)], true);
    let both = |l: &Limiter| l.check(&[check(&shadow, "k", 1), check(&enforce, "k", 1)]);
    for _ in 0..2 {
        assert!(matches!(
            both(&l),
            Decision::Allow {
                shadow_denied: None,
                ..
            }
        ));
    }
    let d = both(&l);
    assert!(matches!(
        d,
        Decision::Allow {
            shadow_denied: Some((0, 0)),
            ..
        }
    ));
    assert_eq!(
        d.statuses().len(),
        1,
        "statuses cover enforcing checks only"
    );
    assert_eq!(d.statuses()[0].check, 1);
    // The shadow bucket only counted what it would have allowed.
    let snap = l.snapshot(10);
    let s = snap.iter().find(|e| e.rule_id == shadow.id).unwrap();
    assert_eq!(s.slots[0].curr, 2);
}

#[test]
fn costs_above_one_and_above_max() {
    let (_, l) = limiter(100);
    let r = rule("r", &[(1_000, 5)], false);
    assert!(allowed(&l, &[check(&r, "a", 3)]));
    assert!(!allowed(&l, &[check(&r, "a", 3)]));
    assert!(allowed(&l, &[check(&r, "a", 2)]));
    let d = l.check(&[check(&r, "b", 6)]);
    assert_eq!(
        d.retry_after_ms(),
        Some(1_000),
        "never passes: retry after one window"
    );
    assert!(
        allowed(&l, &[check(&r, "b", 5)]),
        "the oversized request consumed nothing"
    );
}

#[test]
fn overrides_apply_to_one_key_only() {
    let (_, l) = limiter(100);
    let r = rule("r", &[(1_000, 1)], false).with_override("vip", Limits::new([(1_000, 3, "p")]));
    for _ in 0..3 {
        assert!(allowed(&l, &[check(&r, "vip", 1)]));
    }
    assert!(!allowed(&l, &[check(&r, "vip", 1)]));
    assert!(allowed(&l, &[check(&r, "pleb", 1)]));
    assert!(!allowed(&l, &[check(&r, "pleb", 1)]));
}

#[test]
fn reload_keeps_counts_and_applies_new_max_at_once() {
    let (_, l) = limiter(100);
    let old = rule("api", &[(1_000, 2)], false);
    assert!(allowed(&l, &[check(&old, "a", 1)]));
    assert!(allowed(&l, &[check(&old, "a", 1)]));
    assert!(!allowed(&l, &[check(&old, "a", 1)]));
    let raised = rule("api", &[(1_000, 3)], false);
    assert!(
        allowed(&l, &[check(&raised, "a", 1)]),
        "count kept, new max applies"
    );
    assert!(!allowed(&l, &[check(&raised, "a", 1)]));
    let longer = rule("api", &[(2_000, 3)], false);
    assert!(
        allowed(&l, &[check(&longer, "a", 1)]),
        "a new duration starts fresh"
    );
    assert_eq!(l.tracked_keys(), 1);
}

#[test]
fn sweep_evicts_only_fully_idle_entries() {
    let (clock, l) = limiter(100);
    let r = rule("r", &[(10_000, 2)], false);
    assert!(allowed(&l, &[check(&r, "a", 1)]));
    assert!(allowed(&l, &[check(&r, "a", 1)]));
    clock.set(10_000);
    assert!(allowed(&l, &[check(&r, "b", 1)]));
    // "a" is at its limit: nothing may forget it before 20 000.
    assert_eq!(l.sweep(19_999), 0);
    clock.set(11_100);
    assert!(
        !allowed(&l, &[check(&r, "a", 1)]),
        "still denied after sweep"
    );
    // An entry keeps the second it was last seen in, and idles from that second's end.
    assert_eq!(
        l.sweep(30_998),
        0,
        "b (seen in second 10) stays until 30 999"
    );
    assert_eq!(l.sweep(30_999), 1, "b goes, a (seen in second 11) stays");
    assert_eq!(l.sweep(31_998), 0);
    assert_eq!(l.sweep(31_999), 1);
    assert_eq!((l.tracked_keys(), l.evictions()), (0, 2));
}

#[test]
fn overflow_bucket_bounds_memory_and_still_limits() {
    let (_, l) = limiter(2);
    let r = rule("r", &[(1_000, 2)], false);
    assert!(allowed(&l, &[check(&r, "a", 1)]));
    assert!(allowed(&l, &[check(&r, "b", 1)]));
    assert_eq!(l.tracked_keys(), 2);
    assert!(allowed(&l, &[check(&r, "c", 1)]));
    assert!(allowed(&l, &[check(&r, "d", 1)]));
    assert!(
        !allowed(&l, &[check(&r, "e", 1)]),
        "c, d, e share the overflow bucket"
    );
    assert_eq!(l.overflowed(), 3);
    assert_eq!(l.tracked_keys(), 3, "two keys and one overflow bucket");
    assert!(
        allowed(&l, &[check(&r, "a", 1)]),
        "tracked keys keep their own bucket"
    );
    assert!(l.reset_key(r.id, "*overflow*"));
    assert!(l.reset_key(r.id, "a"));
    assert!(!l.reset_key(r.id, "a"));
    assert_eq!(l.tracked_keys(), 1);
    assert_eq!(l.snapshot(10).len(), 1);
}

#[test]
fn keys_with_the_same_display_are_distinct_and_reset_by_display() {
    let (_, l) = limiter(100);
    let r = rule("r", &[(1_000, 1)], false);
    let mut split = Key::single(KeyPart::Str("a"));
    split.push(KeyPart::Str("b"));
    let joined = Key::single(KeyPart::Str("a|b"));
    let ip = Key::single(KeyPart::Ip("10.0.0.1".parse().unwrap()));
    let ip_text = Key::single(KeyPart::Str("10.0.0.1"));
    let with = |key: &Key<'static>| {
        [Check {
            rule: &r,
            key: key.clone(),
            cost: 1,
        }]
    };
    for key in [&split, &joined, &ip, &ip_text] {
        assert!(allowed(&l, &with(key)), "{key:?} has its own counter");
        assert!(!allowed(&l, &with(key)));
    }
    assert_eq!(l.tracked_keys(), 4);
    // Found by hash (the usual parse of the display), then by scan: every key showing it goes.
    assert!(l.reset_key(r.id, "a|b"));
    assert!(l.reset_key(r.id, "10.0.0.1"));
    assert_eq!(l.tracked_keys(), 2);
    assert!(l.reset_key(r.id, "a|b"));
    assert!(l.reset_key(r.id, "10.0.0.1"));
    assert!(!l.reset_key(r.id, "a|b"));
    assert_eq!(l.tracked_keys(), 0);
}
