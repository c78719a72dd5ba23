//! Calendar quotas end to end through the proxy, with time driven by the manual clock: headers,
//! Retry-After to the period's end, all-or-nothing with sliding windows, overrides, billing days,
//! and periods in zones with a month boundary and a DST change.

mod support;

use support::*;

/// Unix milliseconds of an instant written as RFC 3339.
fn at(rfc3339: &str) -> u64 {
    let ts: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(ts.as_millisecond()).unwrap()
}

fn api(limits: &str, extra: &str) -> String {
    format!(
        r#"
[[rules]]
name = "quota"
key = "header:x-api-key"
limits = {limits}
{extra}

[[routes]]
name = "api"
rules = ["quota"]
[routes.direct]
body = "ok"
"#
    )
}

async fn call(t: &TestTollgate, key: &str) -> Got {
    get(&t.url("/x"), &[("x-api-key", key)]).await
}

#[tokio::test]
async fn a_daily_quota_denies_until_midnight_then_resets() {
    let t = TestTollgate::start(&api(r#"["2/d"]"#, "")).await;
    t.clock.set(at("2026-03-10T10:00:00Z"));
    for left in [1, 0] {
        let r = call(&t, "alice").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some(r#""quota";q=2;w=86400"#));
        assert_eq!(
            r.header("ratelimit").unwrap(),
            format!(r#""quota";r={left};t=50400"#)
        );
    }
    let denied = call(&t, "alice").await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("retry-after"), Some("50400"));
    assert_eq!(call(&t, "bob").await.status, 200, "other keys unaffected");

    t.clock.set(at("2026-03-10T23:59:59.999Z"));
    assert_eq!(call(&t, "alice").await.status, 429);
    t.clock.set(at("2026-03-11T00:00:00Z"));
    let r = call(&t, "alice").await;
    assert_eq!(r.status, 200, "a new day, a new quota");
    assert_eq!(r.header("ratelimit").unwrap(), r#""quota";r=1;t=86400"#);
    t.stop().await;
}

#[tokio::test]
async fn a_quota_and_a_window_are_all_or_nothing() {
    let t = TestTollgate::start(&api(r#"["2/s", "3/d"]"#, "")).await;
    t.clock.set(at("2026-03-10T12:00:00Z"));
    let r = call(&t, "k").await;
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""quota-1s";q=2;w=1, "quota-day";q=3;w=86400"#)
    );
    assert_eq!(call(&t, "k").await.status, 200);
    // The window denies: the quota must not be charged for it.
    let denied = call(&t, "k").await;
    assert_eq!(denied.status, 429);
    // A full 2/s window: the estimate falls to 1 halfway through the next second.
    assert_eq!(denied.header("retry-after"), Some("2"));
    t.clock.set(at("2026-03-10T12:00:05Z"));
    assert_eq!(call(&t, "k").await.status, 200, "third of the day's three");
    t.clock.set(at("2026-03-10T12:00:10Z"));
    let denied = call(&t, "k").await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("retry-after"), Some("43190"), "to midnight");
    assert!(denied
        .header("ratelimit")
        .unwrap()
        .contains(r#""quota-day";r=0;t=43190"#));
    t.stop().await;
}

#[tokio::test]
async fn overrides_and_tiers_apply_to_quotas() {
    let extra = r#"
[tiers.gold]
quota = ["5/d"]

[[overrides]]
key = "vip"
tier = "gold"
"#;
    let t = TestTollgate::start(&api(r#"["1/d"]"#, extra)).await;
    t.clock.set(at("2026-03-10T12:00:00Z"));
    assert_eq!(call(&t, "plain").await.status, 200);
    assert_eq!(call(&t, "plain").await.status, 429);
    for _ in 0..5 {
        assert_eq!(call(&t, "vip").await.status, 200);
    }
    let denied = call(&t, "vip").await;
    assert_eq!(denied.status, 429);
    assert_eq!(
        denied.header("ratelimit-policy"),
        Some(r#""quota";q=5;w=86400"#)
    );
    t.stop().await;
}

#[tokio::test]
async fn a_monthly_quota_resets_at_local_midnight_on_the_first() {
    let t = TestTollgate::start(&api(r#"["2/mo"]"#, r#"timezone = "America/New_York""#)).await;
    // 23:30 on 31 January in New York is already 1 February in UTC.
    t.clock.set(at("2026-02-01T04:30:00Z"));
    let r = call(&t, "k").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""quota";q=2;w=2678400"#)
    );
    assert_eq!(call(&t, "k").await.status, 200);
    let denied = call(&t, "k").await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("retry-after"), Some("1800"));
    t.clock.set(at("2026-02-01T05:00:00Z"));
    let r = call(&t, "k").await;
    assert_eq!(r.status, 200, "February began in New York");
    // February 2026 has 28 days.
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""quota";q=2;w=2419200"#)
    );
    t.stop().await;
}

#[tokio::test]
async fn a_day_with_a_dst_change_is_23_hours_long() {
    let t = TestTollgate::start(&api(r#"["1/d"]"#, r#"timezone = "Europe/Berlin""#)).await;
    // 29 March 2026: Berlin springs forward at 02:00 CET. Local midnight was 23:00Z the day before.
    t.clock.set(at("2026-03-29T10:00:00Z"));
    let r = call(&t, "k").await;
    assert_eq!(r.header("ratelimit-policy"), Some(r#""quota";q=1;w=82800"#));
    let denied = call(&t, "k").await;
    // The next local midnight is 22:00Z (CEST): 12 hours away.
    assert_eq!(denied.header("retry-after"), Some("43200"));
    t.clock.set(at("2026-03-29T21:59:59Z"));
    assert_eq!(call(&t, "k").await.status, 429);
    t.clock.set(at("2026-03-29T22:00:00Z"));
    let r = call(&t, "k").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some(r#""quota";q=1;w=86400"#));
    t.stop().await;
}

#[tokio::test]
async fn a_billing_day_moves_the_monthly_reset() {
    let t = TestTollgate::start(&api(r#"["1/mo"]"#, "billing_day = 15")).await;
    t.clock.set(at("2026-03-10T00:00:00Z"));
    assert_eq!(call(&t, "k").await.status, 200);
    let denied = call(&t, "k").await;
    assert_eq!(denied.status, 429);
    assert_eq!(
        denied.header("retry-after"),
        Some(&*(5 * 86400).to_string())
    );
    t.clock.set(at("2026-03-15T00:00:00Z"));
    assert_eq!(call(&t, "k").await.status, 200);
    t.stop().await;
}

#[tokio::test]
async fn bad_calendar_settings_are_config_errors() {
    let metrics = tollgate::telemetry::Metrics::new();
    let text = format!(
        "{LISTEN_ANY}{}",
        api(
            r#"["1/mo", "2/month"]"#,
            "timezone = \"Mars/Olympus\"\nbilling_day = 31"
        )
    );
    let Err(err) = tollgate::config::load(&text, "test", &metrics) else {
        panic!("a bad zone and billing day must not load");
    };
    let err = err.to_string();
    assert!(err.contains("rules[0].timezone"), "{err}");
    assert!(err.contains("rules[0].billing_day"), "{err}");
    assert!(err.contains("calendar period"), "{err}");
}
