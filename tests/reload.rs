//! Hot reload in-process: a file change (notify on the directory) swaps the config; an invalid
//! file is rejected, counted, and the old config stays; counters of unchanged rules survive.

mod support;

use std::time::Duration;

use support::*;

fn api(limit: &str, body: &str) -> String {
    format!(
        r#"
[[rules]]
name = "per-key"
key = "header:x-api-key"
limits = ["{limit}"]

[[routes]]
name = "api"
rules = ["per-key"]
[routes.direct]
body = "{body}"
"#
    )
}

/// Poll until `f` holds, for at most 10 s (file watching is asynchronous).
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn file_change_reloads_and_keeps_counters_and_rejects_invalid_files() {
    let (dir, path) = config_file(&api("3/m", "v1"));
    let t = TestTollgate::start_with(&api("3/m", "v1"), Some(&path)).await;
    let key = [("x-api-key", "k")];
    for _ in 0..2 {
        assert_eq!(get(&t.url("/"), &key).await.status, 200);
    }

    // A valid change: new body, raised limit. The two requests already made still count.
    std::fs::write(&path, format!("{LISTEN_ANY}{}", api("4/m", "v2"))).unwrap();
    assert!(
        eventually(|| async {
            get(&t.url("/"), &[]).await.text() == "v2"
                || get(&t.url("/"), &key).await.text() == "v2"
        })
        .await
    );
    let r = get(&t.url("/"), &key).await;
    let state = r.header("ratelimit").unwrap().to_string();
    // 2 earlier + at most 2 polls with the key + this one; the window kept its count.
    assert!(state.starts_with(r#""per-key";r="#), "{state}");
    let remaining: u32 = state
        .split("r=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining < 2, "counters survived the reload: {state}");

    // An invalid file: rejected, counted, the old config stays in force.
    let m = metrics_text(&t).await;
    let failures_before =
        metric_value(&m, r#"tollgate_config_reloads_total{result="failure"}"#).unwrap();
    std::fs::write(&path, format!("{LISTEN_ANY}{}", api("lots/m", "v3"))).unwrap();
    assert!(
        eventually(|| async {
            let m = metrics_text(&t).await;
            metric_value(&m, r#"tollgate_config_reloads_total{result="failure"}"#).unwrap()
                > failures_before
        })
        .await
    );
    assert_eq!(
        get(&t.url("/"), &[("x-api-key", "other")]).await.text(),
        "v2"
    );
    let m = metrics_text(&t).await;
    assert!(metric_value(&m, r#"tollgate_config_reloads_total{result="success"}"#).unwrap() >= 1.0);

    // The reloader reports the exact errors too.
    let err = t.reloader.as_ref().unwrap().reload().unwrap_err();
    assert!(err.to_string().contains("rules[0].limits[0]"), "{err}");
    t.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_changed_window_starts_fresh_while_an_unchanged_rule_keeps_counting() {
    let two_rules = |minute: &str| {
        format!(
            r#"
[[rules]]
name = "a"
key = "ip"
limits = ["{minute}"]

[[rules]]
name = "b"
key = "ip"
limits = ["100/h"]

[[routes]]
name = "r"
rules = ["a", "b"]
[routes.direct]
body = "ok"
"#
        )
    };
    let (_dir, path) = config_file(&two_rules("5/m"));
    let t = TestTollgate::start_with(&two_rules("5/m"), Some(&path)).await;
    for _ in 0..5 {
        assert_eq!(get(&t.url("/"), &[]).await.status, 200);
    }
    assert_eq!(get(&t.url("/"), &[]).await.status, 429);
    std::fs::write(&path, format!("{LISTEN_ANY}{}", two_rules("5/30s"))).unwrap();
    let reloaded = t.reloader.as_ref().unwrap().reload();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    let r = get(&t.url("/"), &[]).await;
    assert_eq!(r.status, 200, "a new window length starts fresh");
    assert_eq!(
        r.header("ratelimit"),
        Some(r#""a";r=4;t=30, "b";r=94;t=3600"#)
    );
    t.stop().await;
}
