//! Three instances on one Postgres share a daily quota: together they admit at least the quota
//! and at most the quota plus the documented overshoot, rate × (2 × flush_interval + sync_interval).

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
        let lag = Duration::from_millis(2 * FLUSH_MS + SYNC_MS).as_secs_f64();
        let bound = (rate * lag).ceil() as i64;
        eprintln!(
            "3 instances: {allowed} allowed of quota {QUOTA}; {rate:.0} req/s, bound +{bound}"
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
