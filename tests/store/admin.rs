//! Admin-plane cases: migrations and their status, config entries, the audit log, analytics reads.

use tollgate::store::{
    AuditRow, Batch, ConfigEntryRow, Store, TopQuery, TrafficCounts, TrafficDelta, UsageDelta,
    UsageKey,
};

use crate::{batch, flush, migrated, violation, DAY, MINUTE};

pub async fn migrate_is_idempotent_and_status_shows_it<S: Store>(store: &S) {
    let before = store.migration_status().await.unwrap();
    assert!(!before.is_empty());
    assert!(before.iter().all(|m| !m.applied), "{before:?}");
    assert_eq!(
        (before[0].version, before[0].description.as_str()),
        (1, "initial")
    );

    migrated(store).await;
    migrated(store).await;
    let after = store.migration_status().await.unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|m| m.applied), "{after:?}");
    store.ping().await.unwrap();
}

pub async fn config_entries_round_trip<S: Store>(store: &S) {
    migrated(store).await;
    let entry = |id: &str, body: &str, at: i64| ConfigEntryRow {
        id: id.into(),
        body: body.into(),
        updated_at_ms: at,
    };
    let rule = entry("rule:api", r#"{"kind":"rule","name":"api"}"#, 1);
    let tier = entry("tier:gold", r#"{"kind":"tier","name":"gold"}"#, 1);
    store.upsert_config_entry(&tier).await.unwrap();
    store.upsert_config_entry(&rule).await.unwrap();
    assert_eq!(
        store.list_config_entries().await.unwrap(),
        vec![rule.clone(), tier.clone()]
    );

    let replaced = entry(
        "rule:api",
        r#"{"kind":"rule","name":"api","limits":["5/s"]}"#,
        2,
    );
    store.upsert_config_entry(&replaced).await.unwrap();
    assert_eq!(
        store.list_config_entries().await.unwrap(),
        vec![replaced, tier]
    );
    assert!(store.delete_config_entry("rule:api").await.unwrap());
    assert!(!store.delete_config_entry("rule:api").await.unwrap());
    assert_eq!(store.list_config_entries().await.unwrap().len(), 1);
}

pub async fn audit_log_keeps_newest_first<S: Store>(store: &S) {
    migrated(store).await;
    for (at, action) in [(1, "reset"), (2, "config.upsert"), (3, "config.delete")] {
        let row = AuditRow {
            at_ms: at,
            actor: "admin@127.0.0.1".into(),
            action: action.into(),
            detail: "{}".into(),
        };
        store.append_audit(&row).await.unwrap();
    }
    let rows = store.list_audit(2).await.unwrap();
    let actions: Vec<_> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["config.delete", "config.upsert"]);
}

/// Traffic rows add up across flushes and instances, and group into buckets from `since`.
pub async fn traffic_sums_into_buckets<S: Store>(store: &S) {
    migrated(store).await;
    let row = |rule: &str, minute: i64, allowed, denied| TrafficDelta {
        rule: rule.into(),
        minute,
        counts: TrafficCounts {
            allowed,
            denied,
            shadow_denied: 0,
        },
    };
    let first = Batch {
        id: "a-1".into(),
        traffic: vec![row("api", DAY, 10, 1), row("api", DAY + 60, 5, 0)],
        ..Batch::default()
    };
    let second = Batch {
        id: "b-1".into(),
        traffic: vec![row("api", DAY, 3, 2), row("login", DAY + 600, 7, 7)],
        ..Batch::default()
    };
    flush(store, &first).await;
    flush(store, &second).await;
    let range = TopQuery {
        since: DAY,
        until: DAY + 3600,
        limit: 10,
    };
    let rows = store.traffic(&range, 300).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.rule.as_str(), r.bucket - DAY, r.allowed, r.denied))
        .collect();
    assert_eq!(got, [("api", 0, 18, 3), ("login", 600, 7, 7)]);
    // A range that ends before the login minute leaves it out.
    let early = TopQuery {
        until: DAY + 600,
        ..range
    };
    assert_eq!(store.traffic(&early, 60).await.unwrap().len(), 2);
}

/// Top keys by hour usage and by real denials, and deleting one usage row.
pub async fn top_keys_and_violators<S: Store>(store: &S) {
    migrated(store).await;
    let usage = |key: &str, period: &'static str, start: i64, count| UsageDelta {
        rule: "api".into(),
        key: key.into(),
        period,
        period_start: start,
        count,
    };
    let mut shadow = violation("c", MINUTE, true, (1, 1), "/s");
    shadow.count = 100;
    let mut denied = violation("b", MINUTE, false, (1, 1), "/d");
    denied.count = 4;
    let b = batch(
        "t-1",
        vec![
            usage("a", "hour", DAY, 5),
            usage("b", "hour", DAY, 9),
            usage("b", "hour", DAY + 3600, 1),
            usage("a", "day", DAY, 500),
        ],
        vec![shadow, denied, violation("a", MINUTE, false, (1, 1), "/a")],
    );
    flush(store, &b).await;
    let q = TopQuery {
        since: DAY + 10,
        until: DAY + 3600,
        limit: 10,
    };
    let top: Vec<_> = store
        .top_usage(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key, k.count))
        .collect();
    assert_eq!(top, [("b".to_owned(), 9), ("a".to_owned(), 5)]);
    let worst: Vec<_> = store
        .top_violators(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.key, k.count))
        .collect();
    assert_eq!(worst, [("b".to_owned(), 4), ("a".to_owned(), 1)]);

    let day = UsageKey {
        rule: "api".into(),
        key: "a".into(),
        period: "day".into(),
        period_start: DAY,
    };
    assert_eq!(store.delete_usage(&day).await.unwrap(), 1);
    assert_eq!(store.delete_usage(&day).await.unwrap(), 0);
}
