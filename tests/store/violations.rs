//! Violation cases: aggregation per (rule, key, minute, shadow), the kept sample, filters, pages.

use tollgate::store::{Store, ViolationFilter};

use crate::{batch, flush, migrated, violation, MINUTE};

pub async fn violations_aggregate_and_keep_the_first_sample<S: Store>(store: &S) {
    migrated(store).await;
    let mut first = violation("k1", MINUTE, false, (1_000, 2_000), "/first");
    first.count = 2;
    let mut later = violation("k1", MINUTE, false, (500, 3_000), "/later");
    later.count = 3;
    later.method = "POST".into();
    let shadow = violation("k1", MINUTE, true, (1_500, 1_500), "/shadow");
    flush(store, &batch("v1", vec![], vec![first.clone(), shadow])).await;
    flush(store, &batch("v2", vec![], vec![later])).await;

    let rows = store.violations(&ViolationFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 2, "shadow rows are kept apart: {rows:?}");
    let real = rows.iter().find(|r| !r.shadow).unwrap();
    assert_eq!(
        (real.count, real.first_seen_ms, real.last_seen_ms),
        (5, 500, 3_000)
    );
    assert_eq!(
        (real.method.as_str(), real.path.as_str()),
        ("GET", "/first")
    );
    assert_eq!(
        (real.client_ip.as_str(), real.limit.as_str()),
        ("10.0.0.1", "100/m")
    );
    let shadowed = rows.iter().find(|r| r.shadow).unwrap();
    assert_eq!((shadowed.count, shadowed.path.as_str()), (1, "/shadow"));
}

pub async fn violation_filters_and_pages<S: Store>(store: &S) {
    migrated(store).await;
    let rows = (0..5)
        .map(|i| {
            violation(
                &format!("k{}", i % 2),
                MINUTE + 60 * i,
                i == 4,
                (0, 0),
                "/p",
            )
        })
        .collect();
    flush(store, &batch("v", vec![], rows)).await;
    let query = |f: ViolationFilter| async move {
        let rows = store.violations(&f).await.unwrap();
        rows.iter()
            .map(|r| (r.key.clone(), (r.minute - MINUTE) / 60))
            .collect::<Vec<_>>()
    };
    let all = ViolationFilter::default();
    let k = |key: &str, i: i64| (key.to_string(), i);
    assert_eq!(
        query(all.clone()).await,
        vec![k("k0", 4), k("k1", 3), k("k0", 2), k("k1", 1), k("k0", 0)],
        "newest first"
    );
    let only_k1 = ViolationFilter {
        key: Some("k1".into()),
        ..all.clone()
    };
    assert_eq!(query(only_k1).await, vec![k("k1", 3), k("k1", 1)]);
    let shadow = ViolationFilter {
        shadow: Some(true),
        ..all.clone()
    };
    assert_eq!(query(shadow).await, vec![k("k0", 4)]);
    let other_rule = ViolationFilter {
        rule: Some("nope".into()),
        ..all.clone()
    };
    assert_eq!(query(other_rule).await, vec![]);
    // since falls inside minute 1 (included); until is the start of minute 3 (excluded).
    let window = ViolationFilter {
        since_ms: Some((MINUTE + 90) * 1000),
        until_ms: Some((MINUTE + 180) * 1000),
        ..all.clone()
    };
    assert_eq!(query(window).await, vec![k("k0", 2), k("k1", 1)]);
    let page = ViolationFilter {
        limit: 2,
        offset: 1,
        ..all
    };
    assert_eq!(query(page).await, vec![k("k1", 3), k("k0", 2)]);
}
