//! A backlog larger than one batch, through the real flusher and a real store: the hour drain
//! hands its rows on in chunks, each becomes a batch of at most 20k rows, and every row is
//! written once.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tollgate::limiter::{Check, Key, KeyPart, Limiter, ManualClock, UsageLog};
use tollgate::store::{Flusher, Store};
use tollgate::telemetry::{Metrics, STORE_FLUSHES};

use super::{config, Db, HOUR_START};

/// More distinct keys than two batches hold (20k rows each).
const KEYS: usize = 45_000;

pub async fn a_backlog_of_many_batches_is_written_whole(db: Db) {
    let metrics = Metrics::new();
    let loaded = tollgate::config::load(&config(r#"["100/m"]"#, &db.section), "test", &metrics)
        .expect("the test config is valid");
    let store = Arc::new(db.store().await);
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(HOUR_START as u64 * 1000));
    let limiter = Arc::new(Limiter::new(clock, KEYS * 2).with_usage_log(Arc::new(UsageLog::new())));
    let rule = loaded.runtime.rules[0].rule.clone();
    for i in 0..KEYS {
        let key = format!("key-{i}");
        let check = Check {
            rule: &rule,
            key: Key::single(KeyPart::Str(&key)),
            cost: 1 + (i % 3) as u32,
        };
        assert!(limiter.check(&[check]).is_allowed());
    }
    let config = Arc::new(ArcSwap::from_pointee(loaded.runtime));
    let mut flusher = Flusher::new(
        store.clone(),
        limiter,
        config,
        loaded.settings.database.clone(),
        &metrics,
    )
    .expect("the limiter has a usage log");
    // The hour interval (100 ms) has passed by the first tick.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    flusher.tick().await;

    let rows = store.usage_for_period("hour", HOUR_START).await.unwrap();
    assert_eq!(rows.len(), KEYS, "one hour row per key");
    let expected: i64 = (0..KEYS).map(|i| 1 + (i % 3) as i64).sum();
    assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), expected);
    assert_eq!(
        metrics.counter_sum(STORE_FLUSHES),
        3,
        "20k + 20k + 5k rows: three batches, all in one tick"
    );
    store.close().await;
}
