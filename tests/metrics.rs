//! /metrics: the exposition passes `promtool check metrics`, covers the required families with
//! real histogram buckets, and never carries a per-key label. Probes answer as documented.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is required in CI (Debian package `prometheus`; .ci/run installs it)"
        );
        eprintln!("\n!!! SKIPPING promtool check: promtool not installed (apt-get install prometheus) !!!\n");
        return None;
    }
    Some("promtool")
}

#[tokio::test]
async fn metrics_pass_promtool_and_cover_every_family() {
    let up = Upstream::start("m").await;
    let t = TestTollgate::start(&format!(
        r#"
[[rules]]
name = "per-key"
key = "header:x-api-key"
limits = ["1/m"]

[[routes]]
name = "api"
upstreams = ["{}"]
rules = ["per-key"]
"#,
        up.url()
    ))
    .await;
    let secret_key = "key-that-must-not-appear";
    assert_eq!(
        get(&t.url("/echo"), &[("x-api-key", secret_key)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&t.url("/echo"), &[("x-api-key", secret_key)])
            .await
            .status,
        429
    );
    let text = metrics_text(&t).await;

    for family in [
        "tollgate_requests_total{",
        "tollgate_limiter_decisions_total{",
        "tollgate_limiter_tracked_keys",
        "tollgate_limiter_evictions_total",
        "tollgate_request_duration_seconds_bucket{",
        "tollgate_upstream_duration_seconds_bucket{",
        "tollgate_upstream_errors_total{",
        "tollgate_open_connections",
        "tollgate_config_reloads_total{",
        "tollgate_connection_panics_total",
        "tollgate_connections_rested_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    assert!(
        text.contains(r#"tollgate_request_duration_seconds_bucket{route="api",le="0.001"}"#),
        "real buckets"
    );
    assert!(
        !text.contains(secret_key),
        "client keys never become labels"
    );
    assert!(!text.contains("/echo"), "raw paths never become labels");
    assert_eq!(
        metric_value(
            &text,
            r#"tollgate_requests_total{route="api",decision="allow",status_class="2xx"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"tollgate_requests_total{route="api",decision="deny",status_class="4xx"}"#
        ),
        Some(1.0)
    );

    if let Some(tool) = promtool() {
        let mut child = Command::new(tool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn probes_live_ready_health() {
    let t = TestTollgate::start("[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n").await;
    assert_eq!(get(&t.admin_url("/live"), &[]).await.status, 200);
    assert_eq!(get(&t.admin_url("/ready"), &[]).await.status, 200);
    assert_eq!(get(&t.admin_url("/health"), &[]).await.status, 200);
    assert_eq!(get(&t.admin_url("/nope"), &[]).await.status, 404);
    t.stop().await;
}
