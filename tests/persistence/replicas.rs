//! Three instances on one Postgres share a daily quota: together they admit at least the quota
//! and at most the quota plus the documented overshoot,
//! rate × (2 × flush_interval + sync_interval + 5 × the longest flush), the last term measured.

use std::time::{Duration, Instant};

use super::*;

const QUOTA: i64 = 200;
const FLUSH_MS: u64 = 50;
const SYNC_MS: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hold_one_quota_within_the_bound() {
    with_pg(|url| async move {
        let section = format!(
            "url = {url:?}\nflush_interval = \"{FLUSH_MS}ms\"\nsync_interval = \"{SYNC_MS}ms\""
        );
        let text = config(&format!(r#"["{QUOTA}/d"]"#), &section);
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(TestTollgate::from_text(&text, None).await);
        }
        let started = Instant::now();
        let (mut sent, mut allowed, mut denied_in_a_row) = (0u32, 0i64, 0);
        while denied_in_a_row < 30 {
            for t in &instances {
                sent += 1;
                match get(&t.url("/x"), &[("x-api-key", "shared")])
                    .await
                    .status
                    .as_u16()
                {
                    200 => {
                        allowed += 1;
                        denied_in_a_row = 0;
                    }
                    429 => denied_in_a_row += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            assert!(sent < 20_000, "the instances never converged on the quota");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rate = f64::from(sent) / started.elapsed().as_secs_f64();
        let mut longest_flush = 0.0f64;
        for t in &instances {
            longest_flush = longest_flush.max(longest_flush_secs(&metrics_text(t).await));
        }
        let intervals = Duration::from_millis(2 * FLUSH_MS + SYNC_MS).as_secs_f64();
        let bound = (rate * (intervals + 5.0 * longest_flush)).ceil() as i64;
        eprintln!(
            "3 instances: {allowed} allowed of quota {QUOTA}; {rate:.0} req/s, \
             longest flush <= {longest_flush}s, bound +{bound}"
        );
        assert!(allowed >= QUOTA, "the quota was never used up: {allowed}");
        assert!(
            allowed <= QUOTA + bound,
            "overshoot {} above the bound {bound}",
            allowed - QUOTA
        );
        for t in instances {
            t.stop().await;
        }
        let store = Db::postgres(&url).store().await;
        let day = store.usage_for_period("day", 0).await.unwrap();
        assert_eq!(day.iter().map(|r| r.count).sum::<i64>(), allowed);
        store.close().await;
    })
    .await;
}

/// An upper bound on the longest flush, from the histogram: the smallest bucket that holds them all.
fn longest_flush_secs(metrics: &str) -> f64 {
    let name = "tollgate_store_flush_duration_seconds";
    let count = metric_value(metrics, &format!("{name}_count")).unwrap_or(0.0);
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, n.trim().parse::<f64>().ok()?))
        })
        .filter(|&(_, n)| n >= count)
        .map(|(le, _)| le)
        .fold(f64::INFINITY, f64::min)
}
