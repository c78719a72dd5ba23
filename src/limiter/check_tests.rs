//! The single-check fast path against the general path, on random request sequences: two
//! limiters fed the same requests, one through `check_at` (which takes the fast path for a lone
//! enforcing check) and one through `check_many` (which never does), must decide alike and end
//! with the same counters.

use std::sync::Arc;

use proptest::prelude::*;

use super::super::{Check, Key, KeyPart, Limiter, Limits, ManualClock, Rule};

/// Rules covering one and several windows, an override, and an unpassable cost.
fn rules() -> Vec<Rule> {
    vec![
        Rule::new("one", Limits::new([(1_000, 3, "3/s")]), false),
        Rule::new(
            "two",
            Limits::new([(100, 2, "2/100ms"), (1_000, 5, "5/s")]),
            false,
        )
        .with_override("k1", Limits::new([(1_000, 4, "4/s"), (7, 1, "1/7ms")])),
        Rule::new("big", Limits::new([(60_000, 9, "9/min")]), false),
    ]
}

const KEYS: [&str; 3] = ["k0", "k1", "k2"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fast_path_decides_as_the_general_path(
        steps in proptest::collection::vec((0..3usize, 0..3usize, 0..5u32, 0..400u64), 1..120),
        max_keys in 1..6usize,
    ) {
        let rules = rules();
        let fast = Limiter::new(Arc::new(ManualClock::new(0)), max_keys);
        let general = Limiter::new(Arc::new(ManualClock::new(0)), max_keys);
        let mut now = 0;
        for (rule, key, cost, gap) in steps {
            now += gap;
            let check = Check {
                rule: &rules[rule],
                key: Key::single(KeyPart::Str(KEYS[key])),
                cost,
            };
            let a = fast.check_at(now, std::slice::from_ref(&check));
            let b = general.check_many(now, std::slice::from_ref(&check));
            prop_assert_eq!(a, b, "at {} ms", now);
        }
        let mut a = fast.snapshot(100);
        let mut b = general.snapshot(100);
        a.sort_by(|x, y| (x.rule_id, &x.key).cmp(&(y.rule_id, &y.key)));
        b.sort_by(|x, y| (x.rule_id, &x.key).cmp(&(y.rule_id, &y.key)));
        prop_assert_eq!(a, b);
        prop_assert_eq!(fast.overflowed(), general.overflowed());
    }
}
