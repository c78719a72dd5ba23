//! Limits end to end through the proxy: per key and window, headers' exact syntax, shadow mode,
//! tiers and overrides, all-or-nothing across rules, missing keys, cost, and max_keys.

mod support;

use std::time::Duration;

use support::*;

const API: &str = r#"
[[rules]]
name = "per-key"
key = "header:x-api-key"
limits = ["3/m"]

[[routes]]
name = "api"
rules = ["per-key"]
[routes.direct]
body = "ok"
"#;

#[tokio::test]
async fn each_key_gets_its_own_window_and_denials_carry_exact_headers() {
    let t = TestTollgate::start(API).await;
    for i in 0..3 {
        let r = get(&t.url("/x"), &[("x-api-key", "alice")]).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("ratelimit-policy"), Some(r#""per-key";q=3;w=60"#));
        assert_eq!(
            r.header("ratelimit").unwrap(),
            format!(r#""per-key";r={};t=60"#, 2 - i)
        );
    }
    let denied = get(&t.url("/x"), &[("x-api-key", "alice")]).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("content-type"), Some("application/json"));
    assert_eq!(denied.header("tollgate-rule"), Some("per-key"));
    // prev = 0, curr = 3 at the start of a window: allowed again when the estimate drops to
    // 2 in the next window, i.e. 60 s + 20 s from now.
    assert_eq!(denied.header("retry-after"), Some("80"));
    assert_eq!(
        denied.header("ratelimit-policy"),
        Some(r#""per-key";q=3;w=60"#)
    );
    assert_eq!(denied.header("ratelimit"), Some(r#""per-key";r=0;t=80"#));
    assert_eq!(
        denied.json(),
        serde_json::json!({"error": "rate_limited", "rule": "per-key", "retry_after": 80})
    );
    assert!(
        denied.header("x-ratelimit-limit").is_none(),
        "legacy headers are off by default"
    );
    // Another key is unaffected.
    assert_eq!(get(&t.url("/x"), &[("x-api-key", "bob")]).await.status, 200);
    // Retry-After is never early: one ms before it, still denied; at it, allowed.
    t.clock.advance(Duration::from_millis(79_999));
    assert_eq!(
        get(&t.url("/x"), &[("x-api-key", "alice")]).await.status,
        429
    );
    t.clock.advance(Duration::from_millis(1));
    assert_eq!(
        get(&t.url("/x"), &[("x-api-key", "alice")]).await.status,
        200
    );
    t.stop().await;
}

#[tokio::test]
async fn several_windows_are_all_or_nothing_and_denials_consume_nothing() {
    let t = TestTollgate::start(
        r#"
[[rules]]
name = "burst"
key = "ip"
limits = ["2/s", "3/m"]

[[rules]]
name = "per-key"
key = "header:x-api-key"
limits = ["100/m"]

[[routes]]
name = "api"
rules = ["per-key", "burst"]
[routes.direct]
body = "ok"
"#,
    )
    .await;
    let k = [("x-api-key", "k")];
    assert_eq!(get(&t.url("/"), &k).await.status, 200);
    let r = get(&t.url("/"), &k).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""per-key";q=100;w=60, "burst-1s";q=2;w=1, "burst-1m";q=3;w=60"#)
    );
    let denied = get(&t.url("/"), &k).await;
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("tollgate-rule"), Some("burst"));
    // The per-key rule allowed but must not have been charged for the denied request.
    let policy = denied.header("ratelimit").unwrap();
    assert!(policy.starts_with(r#""per-key";r=98;"#), "{policy}");
    t.clock.advance(Duration::from_secs(2));
    assert_eq!(
        get(&t.url("/"), &k).await.status,
        200,
        "third of the minute"
    );
    t.clock.advance(Duration::from_secs(2));
    let r = get(&t.url("/"), &k).await;
    assert_eq!(r.status, 429, "the minute window now denies");
    assert!(r
        .header("ratelimit")
        .unwrap()
        .starts_with(r#""per-key";r=97;"#));
    t.stop().await;
}

#[tokio::test]
async fn shadow_rules_count_but_never_block() {
    let t = TestTollgate::start(
        r#"
[[rules]]
name = "strict"
key = "ip"
limits = ["1/m"]
shadow = true

[[routes]]
name = "shadowed"
rules = ["strict"]
[routes.direct]
body = "ok"
"#,
    )
    .await;
    for _ in 0..5 {
        let r = get(&t.url("/"), &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            r.header("ratelimit").is_none(),
            "shadow rules stay invisible to clients"
        );
    }
    let m = metrics_text(&t).await;
    assert_eq!(
        metric_value(
            &m,
            r#"tollgate_limiter_decisions_total{rule="strict",outcome="shadow_deny"}"#
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"tollgate_limiter_decisions_total{rule="strict",outcome="allow"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            r#"tollgate_requests_total{route="shadowed",decision="shadow_deny",status_class="2xx"}"#
        ),
        Some(4.0)
    );
    t.stop().await;
}

#[tokio::test]
async fn global_shadow_mode_applies_to_every_rule() {
    let t = TestTollgate::start(&format!("[limits]\nshadow = true\n{API}")).await;
    for _ in 0..6 {
        assert_eq!(get(&t.url("/"), &[("x-api-key", "a")]).await.status, 200);
    }
    t.stop().await;
}

#[tokio::test]
async fn tiers_and_overrides_raise_limits_for_named_keys_only() {
    let t = TestTollgate::start(&format!(
        r#"{API}
[tiers.gold]
per-key = ["5/m"]

[[overrides]]
key = "vip"
tier = "gold"

[[overrides]]
key = "tiny"
rule = "per-key"
limits = ["1/m"]
"#
    ))
    .await;
    let count_ok = |key: &'static str| {
        let url = t.url("/");
        async move {
            let mut ok = 0;
            for _ in 0..8 {
                if get(&url, &[("x-api-key", key)]).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(count_ok("vip").await, 5);
    assert_eq!(count_ok("tiny").await, 1);
    assert_eq!(count_ok("plain").await, 3);
    let r = get(&t.url("/"), &[("x-api-key", "vip")]).await;
    assert_eq!(r.header("ratelimit-policy"), Some(r#""per-key";q=5;w=60"#));
    t.stop().await;
}

#[tokio::test]
async fn missing_key_policies_reject_share_or_skip() {
    let t = TestTollgate::start(
        r#"
[[rules]]
name = "need"
key = "header:x-api-key"
limits = ["10/m"]

[[rules]]
name = "anon"
key = "query:user"
limits = ["2/m"]
on_missing = "anonymous"

[[rules]]
name = "optional"
key = "header:x-tenant"
limits = ["1/m"]
on_missing = "skip"

[[routes]]
name = "need"
path_prefix = "/need"
rules = ["need"]
[routes.direct]
body = "ok"

[[routes]]
name = "anon"
path_prefix = "/anon"
rules = ["anon"]
[routes.direct]
body = "ok"

[[routes]]
name = "optional"
path_prefix = "/optional"
rules = ["optional"]
[routes.direct]
body = "ok"
"#,
    )
    .await;
    let r = get(&t.url("/need"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing_key");
    // Keyless callers share one anonymous bucket; keyed callers have their own.
    assert_eq!(get(&t.url("/anon"), &[]).await.status, 200);
    assert_eq!(get(&t.url("/anon?x=1"), &[]).await.status, 200);
    assert_eq!(get(&t.url("/anon"), &[]).await.status, 429);
    assert_eq!(get(&t.url("/anon?user=u1"), &[]).await.status, 200);
    // Skip: no key, no limit.
    for _ in 0..3 {
        assert_eq!(get(&t.url("/optional"), &[]).await.status, 200);
    }
    assert_eq!(
        get(&t.url("/optional"), &[("x-tenant", "t")]).await.status,
        200
    );
    assert_eq!(
        get(&t.url("/optional"), &[("x-tenant", "t")]).await.status,
        429
    );
    t.stop().await;
}

#[tokio::test]
async fn cost_comes_from_a_header_and_bad_costs_are_400() {
    let t = TestTollgate::start(
        r#"
[[rules]]
name = "weighted"
key = "ip"
limits = ["10/m"]
cost = 2
cost_header = "x-cost"

[[routes]]
name = "w"
rules = ["weighted"]
[routes.direct]
body = "ok"
"#,
    )
    .await;
    let r = get(&t.url("/"), &[]).await;
    assert_eq!(r.header("ratelimit"), Some(r#""weighted";r=8;t=60"#));
    let r = get(&t.url("/"), &[("x-cost", "7")]).await;
    assert_eq!(r.header("ratelimit"), Some(r#""weighted";r=1;t=60"#));
    assert_eq!(get(&t.url("/"), &[("x-cost", "2")]).await.status, 429);
    assert_eq!(get(&t.url("/"), &[("x-cost", "1")]).await.status, 200);
    assert_eq!(get(&t.url("/"), &[("x-cost", "many")]).await.status, 400);
    t.stop().await;
}

#[tokio::test]
async fn legacy_headers_behind_a_flag() {
    let t = TestTollgate::start(&format!("[limits]\nlegacy_headers = true\n{API}")).await;
    let r = get(&t.url("/"), &[("x-api-key", "a")]).await;
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("60"));
    t.stop().await;
}

#[tokio::test]
async fn max_keys_bounds_memory_and_new_keys_share_an_overflow_bucket() {
    let t = TestTollgate::start(&format!("[limits]\nmax_keys = 3\n{API}")).await;
    for k in ["a", "b", "c"] {
        assert_eq!(get(&t.url("/"), &[("x-api-key", k)]).await.status, 200);
    }
    // The table is full: every new key is counted in the rule's one shared overflow bucket.
    for k in ["d", "e", "f"] {
        assert_eq!(
            get(&t.url("/"), &[("x-api-key", k)]).await.status,
            200,
            "key {k}"
        );
    }
    assert_eq!(
        get(&t.url("/"), &[("x-api-key", "g")]).await.status,
        429,
        "overflow bucket is limited too"
    );
    assert_eq!(
        t.limiter.tracked_keys(),
        4,
        "3 keys + the rule's overflow bucket"
    );
    assert_eq!(
        get(&t.url("/"), &[("x-api-key", "a")]).await.status,
        200,
        "tracked keys keep their own window"
    );
    let m = metrics_text(&t).await;
    assert_eq!(
        metric_value(&m, "tollgate_limiter_tracked_keys"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "tollgate_limiter_overflow_total"),
        Some(4.0)
    );
    // After two idle windows the sweeper evicts, and new keys get their own window again.
    t.clock.advance(Duration::from_secs(121));
    assert_eq!(t.limiter.sweep(t.limiter.now_ms()), 4);
    assert_eq!(t.limiter.tracked_keys(), 0);
    for _ in 0..3 {
        assert_eq!(get(&t.url("/"), &[("x-api-key", "g")]).await.status, 200);
    }
    assert_eq!(get(&t.url("/"), &[("x-api-key", "g")]).await.status, 429);
    t.stop().await;
}

/// The app's own sweeper (on its background thread, not called by the test) evicts a key once
/// it has been idle for two windows, on its configured interval.
#[tokio::test]
async fn the_sweeper_evicts_idle_keys_on_its_interval() {
    let t = TestTollgate::start(&format!("[limits]\nsweep_interval = \"50ms\"\n{API}")).await;
    assert_eq!(get(&t.url("/"), &[("x-api-key", "a")]).await.status, 200);
    assert_eq!(t.limiter.tracked_keys(), 1);
    // Still within two windows: sweeps come and go, the key stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.limiter.tracked_keys(), 1, "swept before it was idle");
    t.clock.advance(Duration::from_secs(121));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.limiter.tracked_keys() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never evicted the idle key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = metrics_text(&t).await;
    assert_eq!(
        metric_value(&m, "tollgate_limiter_evictions_total"),
        Some(1.0),
        "{m}"
    );
    t.stop().await;
}

#[tokio::test]
async fn an_idle_key_at_its_limit_is_not_evicted_early() {
    let t = TestTollgate::start(API).await;
    for _ in 0..3 {
        get(&t.url("/"), &[("x-api-key", "a")]).await;
    }
    t.clock.advance(Duration::from_secs(70));
    t.limiter.sweep(t.limiter.now_ms());
    // Still inside the sliding estimate: a fresh window would wrongly allow.
    assert_eq!(get(&t.url("/"), &[("x-api-key", "a")]).await.status, 429);
    t.stop().await;
}

#[tokio::test]
async fn jwt_claim_keys_are_verified_and_composites_join_parts() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let t = TestTollgate::start(
        r#"
[jwt]
algorithm = "HS256"
secret = "test-secret"

[[rules]]
name = "per-user"
key = "jwt:sub,query:region"
limits = ["1/m"]

[[routes]]
name = "u"
rules = ["per-user"]
[routes.direct]
body = "ok"
"#,
    )
    .await;
    let token = |sub: &str, secret: &[u8]| {
        let claims = serde_json::json!({ "sub": sub });
        format!(
            "Bearer {}",
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret)
            )
            .unwrap()
        )
    };
    let alice = token("alice", b"test-secret");
    assert_eq!(
        get(&t.url("/?region=eu"), &[("authorization", &alice)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&t.url("/?region=eu"), &[("authorization", &alice)])
            .await
            .status,
        429
    );
    assert_eq!(
        get(&t.url("/?region=us"), &[("authorization", &alice)])
            .await
            .status,
        200,
        "composite part differs"
    );
    let bob = token("bob", b"test-secret");
    assert_eq!(
        get(&t.url("/?region=eu"), &[("authorization", &bob)])
            .await
            .status,
        200
    );
    let forged = token("carol", b"wrong-secret");
    let r = get(&t.url("/?region=eu"), &[("authorization", &forged)]).await;
    assert_eq!(r.status, 401, "a forged token counts as no key");
    t.stop().await;
}
