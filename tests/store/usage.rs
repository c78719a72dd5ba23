//! Usage cases: flushes sum, replays do not, periods and totals select exactly their rows.

use tollgate::store::{FlushOutcome, Store, UsageDelta, UsageKey, ViolationDelta, ViolationFilter};

use crate::{batch, day_rows, flush, migrated, row, usage, violation, DAY, MINUTE};

pub async fn flush_sums_usage_across_batches<S: Store>(store: &S) {
    migrated(store).await;
    let first = batch(
        "b1",
        vec![usage("k1", "day", DAY, 3), usage("k2", "day", DAY, 1)],
        vec![],
    );
    let second = batch("b2", vec![usage("k1", "day", DAY, 4)], vec![]);
    assert_eq!(flush(store, &first).await, FlushOutcome::Applied);
    assert_eq!(flush(store, &second).await, FlushOutcome::Applied);
    assert_eq!(
        day_rows(store).await,
        vec![row("k1", "day", DAY, 7), row("k2", "day", DAY, 1)]
    );
}

pub async fn replayed_batch_is_already_applied_and_not_double_counted<S: Store>(store: &S) {
    migrated(store).await;
    let b = batch(
        "instance-a:42",
        vec![usage("k1", "day", DAY, 5)],
        vec![violation("k1", MINUTE, false, (1, 2), "/x")],
    );
    assert_eq!(flush(store, &b).await, FlushOutcome::Applied);
    assert_eq!(flush(store, &b).await, FlushOutcome::AlreadyApplied);
    // The id alone decides: different content under the same id is not applied either.
    let same_id = batch("instance-a:42", vec![usage("k1", "day", DAY, 100)], vec![]);
    assert_eq!(flush(store, &same_id).await, FlushOutcome::AlreadyApplied);

    assert_eq!(day_rows(store).await, vec![row("k1", "day", DAY, 5)]);
    let v = store.violations(&ViolationFilter::default()).await.unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].count, 1);
}

pub async fn duplicate_rows_in_one_batch_are_summed<S: Store>(store: &S) {
    migrated(store).await;
    let b = batch(
        "dup",
        vec![usage("k1", "day", DAY, 1), usage("k1", "day", DAY, 2)],
        vec![
            violation("k1", MINUTE, false, (10, 20), "/first"),
            violation("k1", MINUTE, false, (5, 30), "/second"),
        ],
    );
    flush(store, &b).await;
    assert_eq!(day_rows(store).await, vec![row("k1", "day", DAY, 3)]);
    let v = store.violations(&ViolationFilter::default()).await.unwrap();
    assert_eq!(
        (v[0].count, v[0].first_seen_ms, v[0].last_seen_ms),
        (2, 5, 30)
    );
    assert_eq!(v[0].path, "/first");
}

pub async fn usage_for_period_returns_only_that_period<S: Store>(store: &S) {
    migrated(store).await;
    let b = batch(
        "p",
        vec![
            usage("k1", "day", DAY, 1),
            usage("k2", "day", DAY, 2),
            usage("k1", "day", DAY + 86_400, 4),
            usage("k1", "hour", DAY, 8),
            usage("k1", "month", DAY, 16),
        ],
        vec![],
    );
    flush(store, &b).await;
    assert_eq!(
        day_rows(store).await,
        vec![row("k1", "day", DAY, 1), row("k2", "day", DAY, 2)]
    );
    let hour = store.usage_for_period("hour", DAY).await.unwrap();
    assert_eq!(hour, vec![row("k1", "hour", DAY, 8)]);
    assert!(store
        .usage_for_period("week", DAY)
        .await
        .unwrap()
        .is_empty());
}

pub async fn usage_totals_returns_only_requested_rows<S: Store>(store: &S) {
    migrated(store).await;
    let deltas = vec![
        usage("k1", "day", DAY, 1),
        usage("k2", "day", DAY, 2),
        usage("k3", "day", DAY, 3),
    ];
    flush(store, &batch("t", deltas, vec![])).await;
    let key = |k: &str| UsageKey {
        rule: "api".into(),
        key: k.into(),
        period: "day".into(),
        period_start: DAY,
    };
    let mut got = store
        .usage_totals(&[key("k3"), key("k1"), key("missing")])
        .await
        .unwrap();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        got,
        vec![row("k1", "day", DAY, 1), row("k3", "day", DAY, 3)]
    );
    assert!(store.usage_totals(&[]).await.unwrap().is_empty());
}

pub async fn empty_batch_is_applied_without_recording_its_id<S: Store>(store: &S) {
    migrated(store).await;
    assert_eq!(
        flush(store, &batch("e", vec![], vec![])).await,
        FlushOutcome::Applied
    );
    let b = batch("e", vec![usage("k1", "day", DAY, 1)], vec![]);
    assert_eq!(flush(store, &b).await, FlushOutcome::Applied);
    assert_eq!(day_rows(store).await, vec![row("k1", "day", DAY, 1)]);
}

pub async fn failed_batch_changes_nothing_and_is_permanent<S: Store>(store: &S) {
    migrated(store).await;
    // "year" breaks the schema's CHECK on period: the whole transaction must roll back.
    let bad = batch(
        "bad",
        vec![usage("k1", "day", DAY, 1), usage("k1", "year", DAY, 1)],
        vec![],
    );
    let err = store.flush(&bad).await.unwrap_err();
    assert!(
        !err.is_transient(),
        "a constraint violation is permanent: {err}"
    );
    assert!(day_rows(store).await.is_empty());
    // Its id was rolled back too, so a corrected batch under the same id applies.
    let fixed = batch("bad", vec![usage("k1", "day", DAY, 1)], vec![]);
    assert_eq!(flush(store, &fixed).await, FlushOutcome::Applied);
}

pub async fn large_batch_fits_in_one_flush<S: Store>(store: &S) {
    migrated(store).await;
    let deltas: Vec<UsageDelta> = (0..20_000)
        .map(|i| usage(&format!("key-{i:05}"), "day", DAY, i % 7 + 1))
        .collect();
    let violations: Vec<ViolationDelta> = (0..5_000)
        .map(|i| violation(&format!("key-{i:05}"), MINUTE, false, (i, i), "/big"))
        .collect();
    let expected: i64 = deltas.iter().map(|d| d.count).sum();
    flush(store, &batch("big-1", deltas.clone(), violations)).await;
    flush(store, &batch("big-2", deltas, vec![])).await;

    let rows = store.usage_for_period("day", DAY).await.unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), 2 * expected);
    let page = ViolationFilter {
        limit: ViolationFilter::MAX_PAGE,
        ..ViolationFilter::default()
    };
    assert_eq!(store.violations(&page).await.unwrap().len(), 5_000);
}
