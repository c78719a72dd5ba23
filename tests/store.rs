//! The usage store against real databases: every case is one generic function over [`Store`],
//! run by `store_cases!` against a fresh SQLite file and a fresh Postgres database
//! (`DATABASE_URL`; see `support/db.rs` for what happens when it is unset).

mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use support::db::{drop_pg_database, fresh_pg_url};
use tollgate::store::{
    connect, AnyStore, Batch, FlushOutcome, OverrideRow, PgStore, Store, StoreTarget, TierRow,
    UsageDelta, UsageKey, UsageRow, ViolationDelta, ViolationFilter,
};

/// Monday 2024-01-01 00:00:00 UTC: the period start every case counts in.
const DAY: i64 = 1_704_067_200;
const MINUTE: i64 = DAY + 600;

async fn with_sqlite<F: Future<Output = ()>>(case: impl FnOnce(AnyStore) -> F) {
    let dir = tempfile::tempdir().unwrap();
    let target = StoreTarget::Sqlite {
        path: dir.path().join("store.db"),
    };
    let store = connect(&target).await.unwrap();
    case(store.clone()).await;
    store.close().await;
}

async fn with_postgres<F: Future<Output = ()>>(case: impl FnOnce(AnyStore) -> F) {
    let Some(url) = fresh_pg_url().await else {
        return;
    };
    let store = connect(&StoreTarget::Postgres { url: url.clone() })
        .await
        .unwrap();
    // Drop the database even when the case fails, then fail with the case's panic.
    let outcome = AssertUnwindSafe(case(store.clone())).catch_unwind().await;
    store.close().await;
    drop_pg_database(&url).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// One `#[tokio::test]` per case and database: `sqlite::case` and `postgres::case`.
macro_rules! store_cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::with_sqlite(|s| async move { super::$case(&s).await }).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::with_postgres(|s| async move { super::$case(&s).await }).await;
            })*
        }
    };
}

store_cases!(
    migrate_is_idempotent_and_status_shows_it,
    flush_sums_usage_across_batches,
    replayed_batch_is_already_applied_and_not_double_counted,
    duplicate_rows_in_one_batch_are_summed,
    violations_aggregate_and_keep_the_first_sample,
    violation_filters_and_pages,
    usage_for_period_returns_only_that_period,
    usage_totals_returns_only_requested_rows,
    overrides_round_trip,
    tiers_round_trip,
    empty_batch_is_applied_without_recording_its_id,
    failed_batch_changes_nothing_and_is_permanent,
    large_batch_fits_in_one_flush,
);

// ---------------------------------------------------------------- builders

fn usage(key: &str, period: &str, start: i64, count: i64) -> UsageDelta {
    UsageDelta {
        rule: "api".into(),
        key: key.into(),
        period: period.into(),
        period_start: start,
        count,
    }
}

fn row(key: &str, period: &str, start: i64, count: i64) -> UsageRow {
    let d = usage(key, period, start, count);
    UsageRow {
        rule: d.rule,
        key: d.key,
        period: d.period,
        period_start: d.period_start,
        count: d.count,
    }
}

fn violation(key: &str, minute: i64, shadow: bool, seen: (i64, i64), path: &str) -> ViolationDelta {
    ViolationDelta {
        rule: "api".into(),
        key: key.into(),
        minute,
        shadow,
        count: 1,
        first_seen_ms: seen.0,
        last_seen_ms: seen.1,
        method: "GET".into(),
        path: path.into(),
        client_ip: "10.0.0.1".into(),
        limit: "100/m".into(),
    }
}

fn batch(id: &str, usage: Vec<UsageDelta>, violations: Vec<ViolationDelta>) -> Batch {
    Batch {
        id: id.into(),
        usage,
        violations,
    }
}

async fn migrated<S: Store>(store: &S) {
    store.migrate().await.expect("migrate");
}

async fn day_rows<S: Store>(store: &S) -> Vec<UsageRow> {
    let mut rows = store.usage_for_period("day", DAY).await.unwrap();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

async fn flush<S: Store>(store: &S, batch: &Batch) -> FlushOutcome {
    store.flush(batch).await.expect("flush")
}

// ---------------------------------------------------------------- cases

async fn migrate_is_idempotent_and_status_shows_it<S: Store>(store: &S) {
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

async fn flush_sums_usage_across_batches<S: Store>(store: &S) {
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

async fn replayed_batch_is_already_applied_and_not_double_counted<S: Store>(store: &S) {
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

async fn duplicate_rows_in_one_batch_are_summed<S: Store>(store: &S) {
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

async fn violations_aggregate_and_keep_the_first_sample<S: Store>(store: &S) {
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

async fn violation_filters_and_pages<S: Store>(store: &S) {
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

async fn usage_for_period_returns_only_that_period<S: Store>(store: &S) {
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

async fn usage_totals_returns_only_requested_rows<S: Store>(store: &S) {
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

async fn overrides_round_trip<S: Store>(store: &S) {
    migrated(store).await;
    let gold = OverrideRow {
        rule: "api".into(),
        key: "acme".into(),
        limits: vec!["100/m".into(), "10000/d".into()],
        tier: Some("gold".into()),
        updated_at_ms: 1,
    };
    let other = OverrideRow {
        key: "zeta".into(),
        limits: vec![],
        tier: None,
        ..gold.clone()
    };
    store.upsert_override(&other).await.unwrap();
    store.upsert_override(&gold).await.unwrap();
    assert_eq!(
        store.list_overrides().await.unwrap(),
        vec![gold.clone(), other.clone()]
    );

    let replaced = OverrideRow {
        limits: vec!["5/s".into()],
        tier: None,
        updated_at_ms: 2,
        ..gold
    };
    store.upsert_override(&replaced).await.unwrap();
    assert_eq!(store.list_overrides().await.unwrap(), vec![replaced, other]);

    assert!(store.delete_override("api", "acme").await.unwrap());
    assert!(!store.delete_override("api", "acme").await.unwrap());
    assert!(store.delete_override("api", "zeta").await.unwrap());
    assert!(store.list_overrides().await.unwrap().is_empty());
}

async fn tiers_round_trip<S: Store>(store: &S) {
    migrated(store).await;
    let gold = TierRow {
        name: "gold".into(),
        limits: vec!["1000/m".into()],
        updated_at_ms: 1,
    };
    let free = TierRow {
        name: "free".into(),
        limits: vec!["10/m".into(), "100/d".into()],
        updated_at_ms: 1,
    };
    store.upsert_tier(&gold).await.unwrap();
    store.upsert_tier(&free).await.unwrap();
    assert_eq!(
        store.list_tiers().await.unwrap(),
        vec![free.clone(), gold.clone()]
    );

    let gold2 = TierRow {
        limits: vec!["2000/m".into()],
        updated_at_ms: 2,
        ..gold
    };
    store.upsert_tier(&gold2).await.unwrap();
    assert_eq!(store.list_tiers().await.unwrap(), vec![free, gold2]);
    assert!(store.delete_tier("gold").await.unwrap());
    assert!(!store.delete_tier("gold").await.unwrap());
    assert_eq!(store.list_tiers().await.unwrap().len(), 1);
}

async fn empty_batch_is_applied_without_recording_its_id<S: Store>(store: &S) {
    migrated(store).await;
    assert_eq!(
        flush(store, &batch("e", vec![], vec![])).await,
        FlushOutcome::Applied
    );
    let b = batch("e", vec![usage("k1", "day", DAY, 1)], vec![]);
    assert_eq!(flush(store, &b).await, FlushOutcome::Applied);
    assert_eq!(day_rows(store).await, vec![row("k1", "day", DAY, 1)]);
}

async fn failed_batch_changes_nothing_and_is_permanent<S: Store>(store: &S) {
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

async fn large_batch_fits_in_one_flush<S: Store>(store: &S) {
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

// ---------------------------------------------------------------- outside the generic suite

#[tokio::test]
async fn unreachable_postgres_fails_fast_transient_and_without_the_password() {
    // Port 1 on loopback refuses connections; the pool gives up within its acquire timeout.
    let store = PgStore::connect_lazy("postgres://app:hunter2@127.0.0.1:1/tollgate").unwrap();
    let started = std::time::Instant::now();
    let err = store.ping().await.unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn bad_urls_are_reported_without_the_password() {
    let err = PgStore::connect_lazy("postgres://app:hunter2@host:notaport/db").unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@host:notaport/db"),
        "{shown}"
    );
    assert!(!err.is_transient());
}
