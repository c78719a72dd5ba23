use std::sync::Arc;

use super::*;
use crate::limiter::calendar::{Calendar, PeriodKind};
use crate::limiter::{Check, Key, KeyPart, Limiter};
use crate::limiter::{ManualClock, Quota, Window};

const DAY_MS: u64 = 86_400_000;

fn quota_rule() -> Rule {
    let q = Arc::new(Quota::new(
        Calendar::new(PeriodKind::Day, "UTC", None).unwrap(),
        "UTC",
    ));
    let limits = Limits {
        windows: vec![
            Window::sliding(HOUR_MS, 100, "q-1h"),
            Window::calendar(q, 3, "q-day"),
        ]
        .into(),
    };
    Rule::new("q", Arc::new(limits), false)
}

fn limiter(now_ms: u64) -> (Arc<ManualClock>, Limiter, Arc<UsageLog>) {
    let clock = Arc::new(ManualClock::new(now_ms));
    let log = Arc::new(UsageLog::new());
    let limiter = Limiter::new(clock.clone(), 100).with_usage_log(log.clone());
    (clock, limiter, log)
}

fn check<'r>(rule: &'r Rule, key: &'static str) -> Check<'r, 'static> {
    Check {
        rule,
        key: Key::single(KeyPart::Str(key)),
        cost: 1,
    }
}

#[test]
fn allowed_requests_land_in_hour_and_quota_rows_and_denials_nowhere() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS + 5 * HOUR_MS + 7;
    let (_, limiter, log) = limiter(now);
    for _ in 0..5 {
        limiter.check(&[check(&rule, "alice")]);
    }
    let mut drained = limiter.drain_usage(true);
    drained.usage.sort_by_key(|d| d.period);
    let rows: Vec<_> = drained
        .usage
        .iter()
        .map(|d| (&*d.key, d.period, d.period_start, d.count))
        .collect();
    let day = i64::try_from(20_000 * DAY_MS / 1000).unwrap();
    assert_eq!(
        rows,
        [
            ("alice", "day", day, 3),
            ("alice", "hour", day + 5 * 3600, 3)
        ]
    );
    assert_eq!(log.pending_rows(), 0, "drained");
}

#[test]
fn a_drain_without_hours_leaves_the_hour_rows_for_a_later_one() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS + 5 * HOUR_MS;
    let (clock, limiter, log) = limiter(now);
    limiter.check(&[check(&rule, "a")]);
    limiter.check(&[check(&rule, "b")]);
    let quota_only: Vec<_> = limiter
        .drain_usage(false)
        .usage
        .iter()
        .map(|d| d.period)
        .collect();
    assert_eq!(quota_only, ["day", "day"]);
    assert_eq!(log.pending_rows(), 2, "both hour rows wait");
    clock.advance(std::time::Duration::from_secs(1));
    limiter.check(&[check(&rule, "a")]);
    let mut all: Vec<_> = limiter
        .drain_usage(true)
        .usage
        .iter()
        .map(|d| (d.period, d.count))
        .collect();
    all.sort_unstable();
    // a's hour row kept counting while it waited; b's came along; a's new day row too.
    assert_eq!(all, [("day", 1), ("hour", 1), ("hour", 2)]);
    assert_eq!(log.pending_rows(), 0);
}

#[test]
fn a_chunked_drain_hands_on_every_row_once_in_chunks_of_at_most_the_size() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS + 5 * HOUR_MS;
    let (_, limiter, log) = limiter(now);
    let keys: Vec<&'static str> = (0..25)
        .map(|i| &*Box::leak(format!("key-{i}").into_boxed_str()))
        .collect();
    for key in &keys {
        limiter.check(&[check(&rule, key)]);
    }
    for _ in 0..4 {
        limiter.check(&[check(&rule, keys[0])]); // the 4th is over the day quota of 3
    }
    let mut chunks = Vec::new();
    limiter.drain_usage_in(true, 7, |chunk| chunks.push(chunk));
    let sizes: Vec<_> = chunks
        .iter()
        .map(|c| (c.usage.len(), c.violations.len()))
        .collect();
    // 25 day rows from the log, then 25 hour rows from the entries' tallies.
    assert_eq!(sizes, [[(7, 0); 7].as_slice(), &[(1, 0)]].concat());
    let mut rows: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.usage)
        .map(|d| (d.period, d.key.to_string(), d.count))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), 50, "each key's day and hour row, once");
    let counted: u64 = rows.iter().map(|r| r.2).sum();
    assert_eq!(counted, 2 * (25 + 2), "key-0 was allowed three times");
    assert_eq!(log.pending_rows(), 0);
    let mut again = 0;
    limiter.drain_usage_in(true, 7, |_| again += 1);
    assert_eq!(
        again, 0,
        "nothing left, and an empty drain hands on no chunk"
    );
}

#[test]
fn pending_follows_the_entry_until_drained() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS;
    let (_, limiter, log) = limiter(now);
    limiter.check(&[check(&rule, "k")]);
    limiter.check(&[check(&rule, "k")]);
    let hash = limiter.hash_key(rule.id, &Key::single(KeyPart::Str("k")));
    assert_eq!(log.pending(hash, "day", now), 2);
    limiter.drain_usage(true);
    assert_eq!(log.pending(hash, "day", now), 0);
}

#[test]
fn seeding_and_syncing_set_the_quota_count() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS + 10;
    let (_, limiter, log) = limiter(now);
    let day = i64::try_from(20_000 * DAY_MS / 1000).unwrap();
    assert!(limiter.seed(&rule, "k", "day", day, 2));
    assert!(
        !limiter.seed(&rule, "k", "day", day - 86_400, 1),
        "a past period is history"
    );
    assert!(limiter.check(&[check(&rule, "k")]).is_allowed());
    assert!(
        !limiter.check(&[check(&rule, "k")]).is_allowed(),
        "2 seeded + 1 = 3"
    );
    // Another instance used more: the store says 3 in all, and 1 is still pending here.
    assert!(limiter.sync_quota(&rule, "k", "day", day, 1));
    assert!(
        limiter.check(&[check(&rule, "k")]).is_allowed(),
        "1 + 1 pending = 2 < 3"
    );
    assert_eq!(log.pending_rows(), 2);
}

#[test]
fn hour_rows_seed_a_one_hour_window() {
    let rule = quota_rule();
    let now = 20_000 * DAY_MS + 5 * HOUR_MS + 30 * 60_000;
    let (_, limiter, _) = limiter(now);
    let this_hour = i64::try_from((now / HOUR_MS) * 3600).unwrap();
    assert!(limiter.seed(&rule, "k", "hour", this_hour, 60));
    assert!(limiter.seed(&rule, "k", "hour", this_hour - 3600, 80));
    let view = &limiter.snapshot(10)[0];
    let slot = view.slots.iter().find(|s| s.dur_ms == HOUR_MS).unwrap();
    assert_eq!((slot.prev, slot.curr), (80, 60));
}

#[test]
fn violations_coalesce_per_key_and_minute() {
    let log = UsageLog::new();
    let rule: Arc<str> = "r".into();
    let sample = || Sample {
        method: "GET".into(),
        path: "/a".into(),
        client_ip: "10.0.0.1".into(),
        limit: "1/s".into(),
    };
    for t in [60_000, 60_500, 119_999] {
        log.violation(&rule, "k", t, false, sample);
    }
    log.violation(&rule, "k", 120_000, false, sample);
    log.violation(&rule, "k", 60_001, true, sample);
    let mut v = log.drain().violations;
    v.sort_by_key(|d| (d.minute, d.shadow));
    let rows: Vec<_> = v
        .iter()
        .map(|d| (d.minute, d.shadow, d.count, d.first_ms, d.last_ms))
        .collect();
    assert_eq!(
        rows,
        [
            (60, false, 3, 60_000, 119_999),
            (60, true, 1, 60_001, 60_001),
            (120, false, 1, 120_000, 120_000)
        ]
    );
}

#[test]
fn the_cap_drops_the_oldest_rows() {
    let rule = quota_rule();
    let (clock, limiter, log) = limiter(20_000 * DAY_MS);
    for key in ["a", "b", "c"] {
        limiter.check(&[check(&rule, key)]);
        clock.advance(std::time::Duration::from_millis(10));
    }
    // A day row each in the log, an hour tally each in the entries.
    assert_eq!((log.pending_rows(), log.logged_rows()), (6, 3));
    let (rows, cost) = log.drop_oldest(2);
    assert_eq!((rows, cost), (1, 1));
    let mut left: Vec<_> = log.drain().usage.into_iter().map(|d| d.key).collect();
    left.sort_unstable();
    assert_eq!(left, ["b".into(), "c".into()]);
    let hours = limiter.drain_usage(true).usage;
    assert_eq!(
        hours.len(),
        3,
        "the cap bounds the log, not the entries' tallies"
    );
}

#[test]
fn a_pending_row_fills_a_64_byte_bucket() {
    assert_eq!(std::mem::size_of::<PendingUsage>(), 56);
}

#[test]
fn quota_periods_index_their_own_names() {
    use crate::limiter::quota::kind_name;
    for kind in [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month] {
        assert_eq!(PERIODS[usize::from(quota_period(kind))], kind_name(kind));
        assert_eq!(period_index(kind_name(kind)), quota_period(kind));
    }
}

#[test]
fn the_map_gives_back_its_memory_only_once_a_drain_finds_it_mostly_empty() {
    let rule = quota_rule();
    let (_, limiter, log) = limiter(20_000 * DAY_MS);
    // 90 keys (the limiter tracks 100): a day row each (their hour usage waits in the entries).
    let keys: Vec<String> = (0..90).map(|i| format!("k{i}")).collect();
    let touch_all = || {
        for k in &keys {
            limiter.check(&[Check {
                rule: &rule,
                key: Key::single(KeyPart::Str(k)),
                cost: 1,
            }]);
        }
    };
    touch_all();
    assert!(log.usage.capacity() >= 90, "a day row each");
    // Capacities are compared with zero only: an erase may leave a tombstone, which lowers the
    // reported capacity of a map that was not shrunk.
    assert_eq!(log.drain().usage.len(), 90);
    assert!(
        log.usage.capacity() > 0,
        "a drain of a full map keeps it (steady load)"
    );
    touch_all();
    assert_eq!(log.drain().usage.len(), 90);
    assert!(log.usage.capacity() > 0, "still steady");
    log.drain();
    assert_eq!(log.usage.capacity(), 0, "an empty drain gives it back");
}

#[test]
fn an_hour_tally_becomes_a_row_when_its_hour_ends_and_counts_on() {
    let rule = quota_rule();
    let hour = 20_000 * DAY_MS + 5 * HOUR_MS;
    let (clock, limiter, log) = limiter(hour + HOUR_MS - 2_000);
    limiter.check(&[check(&rule, "k")]);
    limiter.check(&[check(&rule, "k")]);
    assert_eq!(
        log.oldest_ms(),
        Some(hour + HOUR_MS - 2_000),
        "the tally's start"
    );
    assert_eq!((log.pending_rows(), log.logged_rows()), (2, 1));
    clock.advance(std::time::Duration::from_secs(3));
    limiter.check(&[check(&rule, "k")]);
    assert_eq!(
        (log.pending_rows(), log.logged_rows()),
        (3, 2),
        "the old hour is a row of the log; the new one is held"
    );
    let hours = |drained: Drained| {
        let mut rows: Vec<_> = drained
            .usage
            .into_iter()
            .filter(|d| d.period == "hour")
            .map(|d| (d.period_start * 1000, d.count, d.first_ms))
            .collect();
        rows.sort_unstable();
        rows
    };
    let (h0, h1) = (hour as i64, (hour + HOUR_MS) as i64);
    // The spilled row goes with the next drain; the held tally waits for the hour drain.
    assert_eq!(
        hours(limiter.drain_usage(false)),
        [(h0, 2, hour + HOUR_MS - 2_000)]
    );
    assert_eq!(
        hours(limiter.drain_usage(true)),
        [(h1, 1, hour + HOUR_MS + 1_000)]
    );
    assert_eq!((log.pending_rows(), log.oldest_ms()), (0, None));
}

#[test]
fn an_evicted_or_reset_entry_leaves_its_tally_in_the_log() {
    let rule = Rule::new("s", Limits::new([(1_000, 10, "10/s")]), false);
    let now = 20_000 * DAY_MS;
    let (clock, limiter, log) = limiter(now);
    limiter.check(&[check(&rule, "gone")]);
    limiter.check(&[check(&rule, "gone")]);
    limiter.check(&[check(&rule, "reset")]);
    clock.advance(std::time::Duration::from_secs(1));
    limiter.check(&[check(&rule, "reset")]);
    // "gone" idles 2 s (twice its window) from the end of its second, "reset" only 1 s.
    assert_eq!(limiter.sweep(now + 2_999), 1);
    assert!(limiter.reset_key(rule.id, "reset"));
    assert_eq!(limiter.tracked_keys(), 0);
    assert_eq!((log.pending_rows(), log.logged_rows()), (2, 2));
    let mut rows: Vec<_> = limiter
        .drain_usage(true)
        .usage
        .into_iter()
        .map(|d| (d.rule.to_string(), d.key.to_string(), d.count, d.first_ms))
        .collect();
    rows.sort_unstable();
    let s = |t: &str| t.to_string();
    assert_eq!(
        rows,
        [(s("s"), s("gone"), 2, now), (s("s"), s("reset"), 2, now)]
    );
}
