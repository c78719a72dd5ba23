//! Tests of calendar periods: UTC boundaries, time zones, DST days, gaps and folds, anchors.
use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse().expect("test timestamps are valid")
}

fn cal(kind: PeriodKind, tz: &str) -> Calendar {
    Calendar::new(kind, tz, None).expect("test calendars are valid")
}

/// The period at `now` as RFC 3339 UTC strings, for readable assertions.
fn bounds(calendar: &Calendar, now: &str) -> (String, String) {
    let p = calendar.period_at(ts(now));
    (p.start.to_string(), p.end.to_string())
}

fn pair(start: &str, end: &str) -> (String, String) {
    (start.to_owned(), end.to_owned())
}

#[test]
fn parses_period_kinds() {
    for (text, kind) in [
        ("d", PeriodKind::Day),
        ("day", PeriodKind::Day),
        ("w", PeriodKind::Week),
        ("week", PeriodKind::Week),
        ("mo", PeriodKind::Month),
        ("month", PeriodKind::Month),
    ] {
        assert_eq!(PeriodKind::parse(text), Ok(kind), "{text}");
    }
    for bad in ["m", "", "Day", "year"] {
        assert!(PeriodKind::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn utc_day_is_midnight_to_midnight() {
    let day = cal(PeriodKind::Day, "UTC");
    let expected = pair("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z");
    assert_eq!(bounds(&day, "2026-11-23T00:00:00Z"), expected);
    assert_eq!(bounds(&day, "2026-11-23T12:34:56Z"), expected);
    assert_eq!(bounds(&day, "2026-11-23T23:59:59.999Z"), expected);
    assert_eq!(day.period_at(ts("2026-11-23T09:00:00Z")).secs(), 86_400);
}

#[test]
fn utc_month_lengths_from_january_31_into_february() {
    let month = cal(PeriodKind::Month, "UTC");
    let jan = month.period_at(ts("2026-01-31T23:59:59Z"));
    assert_eq!(jan.end, ts("2026-02-01T00:00:00Z"));
    assert_eq!(jan.secs(), 31 * 86_400);
    let feb = month.period_at(ts("2026-02-01T00:00:00Z"));
    assert_eq!(
        (feb.start, feb.end),
        (ts("2026-02-01T00:00:00Z"), ts("2026-03-01T00:00:00Z"))
    );
    assert_eq!(feb.secs(), 28 * 86_400);
    assert_eq!(
        month.period_at(ts("2026-04-30T12:00:00Z")).secs(),
        30 * 86_400
    );
}

#[test]
fn utc_leap_day_2028() {
    let month = cal(PeriodKind::Month, "UTC");
    let feb = month.period_at(ts("2028-02-29T12:00:00Z"));
    assert_eq!(
        (feb.start, feb.end),
        (ts("2028-02-01T00:00:00Z"), ts("2028-03-01T00:00:00Z"))
    );
    assert_eq!(feb.secs(), 29 * 86_400);
    let day = cal(PeriodKind::Day, "UTC");
    assert_eq!(
        bounds(&day, "2028-02-29T23:59:59Z"),
        pair("2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z")
    );
}

#[test]
fn utc_year_rollover() {
    let last = "2026-12-31T23:59:59Z";
    let first = "2027-01-01T00:00:00Z";
    let day = cal(PeriodKind::Day, "UTC");
    assert_eq!(bounds(&day, last), pair("2026-12-31T00:00:00Z", first));
    let month = cal(PeriodKind::Month, "UTC");
    assert_eq!(bounds(&month, last), pair("2026-12-01T00:00:00Z", first));
    assert_eq!(bounds(&month, first), pair(first, "2027-02-01T00:00:00Z"));
    // 2026-12-31 is a Thursday: its ISO week runs Monday 2026-12-28 into 2027.
    let week = cal(PeriodKind::Week, "UTC");
    let expected = pair("2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z");
    assert_eq!(bounds(&week, last), expected);
    assert_eq!(bounds(&week, first), expected);
}

#[test]
fn utc_iso_week_starts_on_monday() {
    let week = cal(PeriodKind::Week, "UTC");
    // 2026-11-23 is a Monday; the Sunday before it ends the previous week.
    assert_eq!(
        bounds(&week, "2026-11-22T23:59:59Z"),
        pair("2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z")
    );
    let next = pair("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z");
    assert_eq!(bounds(&week, "2026-11-23T00:00:00Z"), next);
    assert_eq!(bounds(&week, "2026-11-26T08:00:00Z"), next);
    assert_eq!(bounds(&week, "2026-11-29T23:59:59Z"), next);
    assert_eq!(
        week.period_at(ts("2026-11-26T08:00:00Z")).secs(),
        7 * 86_400
    );
}

#[test]
fn tokyo_month_starts_at_local_midnight() {
    let month = cal(PeriodKind::Month, "Asia/Tokyo");
    // 2026-11-30T15:00Z is 2026-12-01T00:00 in Tokyo (+09).
    assert_eq!(
        bounds(&month, "2026-11-30T15:00:00Z"),
        pair("2026-11-30T15:00:00Z", "2026-12-31T15:00:00Z")
    );
    assert_eq!(
        bounds(&month, "2026-11-30T14:59:59Z"),
        pair("2026-10-31T15:00:00Z", "2026-11-30T15:00:00Z")
    );
}

#[test]
fn berlin_spring_forward_day_is_23_hours() {
    let day = cal(PeriodKind::Day, "Europe/Berlin");
    // Midnight on 2026-03-29 is still CET (+01); 2026-03-30 starts in CEST (+02).
    let sunday = day.period_at(ts("2026-03-29T12:00:00Z"));
    assert_eq!(
        (sunday.start, sunday.end),
        (ts("2026-03-28T23:00:00Z"), ts("2026-03-29T22:00:00Z"))
    );
    assert_eq!(sunday.secs(), 82_800);
    // Either side of the local midnight that opens the day.
    assert_eq!(day.period_at(ts("2026-03-28T22:59:59Z")).end, sunday.start);
    assert_eq!(day.period_at(ts("2026-03-28T23:00:00Z")), sunday);
    // At local 01:00, before the 02:00 jump, the wall clock shows 23 hours to go but 22 pass;
    // at local 03:00, after it, 21 and 21.
    assert_eq!(
        sunday.secs_until_end(ts("2026-03-29T00:00:00Z")),
        22 * 3_600
    );
    assert_eq!(
        sunday.secs_until_end(ts("2026-03-29T01:00:00Z")),
        21 * 3_600
    );
}

#[test]
fn berlin_fall_back_day_is_25_hours() {
    let day = cal(PeriodKind::Day, "Europe/Berlin");
    // Midnight on 2026-10-25 is CEST (+02); 2026-10-26 starts in CET (+01).
    let sunday = day.period_at(ts("2026-10-25T12:00:00Z"));
    assert_eq!(
        (sunday.start, sunday.end),
        (ts("2026-10-24T22:00:00Z"), ts("2026-10-25T23:00:00Z"))
    );
    assert_eq!(sunday.secs(), 90_000);
    assert_eq!(day.period_at(ts("2026-10-24T21:59:59Z")).end, sunday.start);
    assert_eq!(day.period_at(ts("2026-10-25T22:59:59Z")), sunday);
    assert_eq!(day.period_at(ts("2026-10-25T23:00:00Z")).start, sunday.end);
    // Local 00:30, before the 02:00-03:00 hour repeats: 24.5 real hours left, not 23.5.
    assert_eq!(sunday.secs_until_end(ts("2026-10-24T22:30:00Z")), 88_200);
}

#[test]
fn new_york_spring_forward_day_is_23_hours() {
    let day = cal(PeriodKind::Day, "America/New_York");
    // 2026-03-08 starts in EST (-05) and ends in EDT (-04).
    let sunday = day.period_at(ts("2026-03-08T15:00:00Z"));
    assert_eq!(
        (sunday.start, sunday.end),
        (ts("2026-03-08T05:00:00Z"), ts("2026-03-09T04:00:00Z"))
    );
    assert_eq!(sunday.secs(), 82_800);
    let week = cal(PeriodKind::Week, "America/New_York");
    assert_eq!(
        week.period_at(ts("2026-03-08T15:00:00Z")).secs(),
        7 * 86_400 - 3_600
    );
}

#[test]
fn midnight_in_a_gap_starts_the_day_after_the_gap() {
    // Sao Paulo sprang forward at 2018-11-04 00:00 (-03) to 01:00 (-02): no local midnight.
    let day = cal(PeriodKind::Day, "America/Sao_Paulo");
    let sunday = day.period_at(ts("2018-11-04T12:00:00Z"));
    assert_eq!(
        (sunday.start, sunday.end),
        (ts("2018-11-04T03:00:00Z"), ts("2018-11-05T02:00:00Z"))
    );
    assert_eq!(sunday.secs(), 82_800);
    assert_eq!(day.period_at(ts("2018-11-04T02:59:59Z")).end, sunday.start);
}

/// A made-up zone whose changes straddle midnight: 23:30 -> 00:30 on the last Sunday of March
/// and 00:30 -> 23:30 on the last Sunday of October.
fn straddling() -> Calendar {
    let tz = TimeZone::posix("XST0XDT,M3.5.0/23:30,M10.5.0/0:30").expect("valid POSIX TZ");
    Calendar::with_time_zone(PeriodKind::Day, tz, None).expect("valid calendar")
}

#[test]
fn gap_across_midnight_keeps_now_inside_its_period() {
    // At 2026-03-29T23:40Z the local time is 2026-03-30 00:40, but compatible disambiguation
    // puts that date's midnight at 00:00Z; the instant still belongs to the day before.
    let day = straddling();
    let now = ts("2026-03-29T23:40:00Z");
    let p = day.period_at(now);
    assert!(p.start <= now && now < p.end, "{p:?}");
    assert_eq!(
        (p.start, p.end),
        (ts("2026-03-29T00:00:00Z"), ts("2026-03-30T00:00:00Z"))
    );
}

#[test]
fn fold_across_midnight_keeps_now_inside_its_period() {
    // At 2026-10-24T23:40Z the clock reads 2026-10-24 23:40 again, after 2026-10-25 began
    // at 23:00Z; the instant belongs to 2026-10-25.
    let day = straddling();
    let now = ts("2026-10-24T23:40:00Z");
    let p = day.period_at(now);
    assert!(p.start <= now && now < p.end, "{p:?}");
    assert_eq!(
        (p.start, p.end),
        (ts("2026-10-24T23:00:00Z"), ts("2026-10-26T00:00:00Z"))
    );
}

#[test]
fn secs_until_end_rounds_up() {
    let day = cal(PeriodKind::Day, "UTC");
    let p = day.period_at(ts("2026-11-23T12:00:00Z"));
    assert_eq!(p.secs_until_end(ts("2026-11-23T00:00:00Z")), 86_400);
    assert_eq!(p.secs_until_end(ts("2026-11-23T23:59:58.5Z")), 2);
    assert_eq!(p.secs_until_end(ts("2026-11-23T23:59:59.999999999Z")), 1);
    assert_eq!(p.secs_until_end(ts("2026-11-24T00:00:00Z")), 0);
    assert_eq!(p.secs_until_end(ts("2026-11-25T00:00:00Z")), 0);
}

#[test]
fn anchor_day_15_resets_on_the_15th() {
    let billing = Calendar::new(PeriodKind::Month, "Europe/Berlin", Some(15)).unwrap();
    assert_eq!(billing.anchor_day(), 15);
    // Local midnights: CET (+01) in November and December, CEST (+02) on 2026-10-15.
    assert_eq!(
        bounds(&billing, "2026-11-20T12:00:00Z"),
        pair("2026-11-14T23:00:00Z", "2026-12-14T23:00:00Z")
    );
    assert_eq!(
        bounds(&billing, "2026-11-10T12:00:00Z"),
        pair("2026-10-14T22:00:00Z", "2026-11-14T23:00:00Z")
    );
    // Across the year: an instant on 2027-01-03 belongs to the period from 2026-12-15.
    let utc = Calendar::new(PeriodKind::Month, "UTC", Some(15)).unwrap();
    assert_eq!(
        bounds(&utc, "2027-01-03T00:00:00Z"),
        pair("2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z")
    );
    assert_eq!(
        bounds(&utc, "2026-11-15T00:00:00Z"),
        pair("2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z")
    );
    assert_eq!(
        bounds(&utc, "2026-11-14T23:59:59Z"),
        pair("2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z")
    );
}

#[test]
fn rejects_bad_anchors_and_unknown_zones() {
    for bad in [0, 29, 31] {
        let err = Calendar::new(PeriodKind::Month, "UTC", Some(bad)).unwrap_err();
        assert!(err.contains("1..=28"), "{err}");
    }
    for kind in [PeriodKind::Day, PeriodKind::Week] {
        let err = Calendar::new(kind, "UTC", Some(1)).unwrap_err();
        assert!(err.contains("only valid for month"), "{err}");
    }
    assert!(Calendar::new(PeriodKind::Month, "UTC", Some(28)).is_ok());
    let err = Calendar::new(PeriodKind::Day, "Mars/Olympus_Mons", None).unwrap_err();
    assert!(
        err.contains("unknown time zone \"Mars/Olympus_Mons\""),
        "{err}"
    );
}

#[test]
fn period_id_is_stable_within_a_period_and_changes_across_it() {
    let day = cal(PeriodKind::Day, "Europe/Berlin");
    let morning = day.period_id(ts("2026-03-29T05:00:00Z"));
    assert_eq!(morning, day.period_id(ts("2026-03-29T21:59:59Z")));
    assert_eq!(morning, ts("2026-03-28T23:00:00Z").as_second());
    assert_ne!(morning, day.period_id(ts("2026-03-29T22:00:00Z")));
    assert_ne!(morning, day.period_id(ts("2026-03-28T22:59:59Z")));
}
