//! The usage store against real databases: every case is one generic function over [`Store`],
//! run by `store_cases!` against a fresh SQLite file and a fresh Postgres database
//! (`DATABASE_URL`; see `support/db.rs` for what happens when it is unset).
//!
//! - `usage.rs`: flushes, replays, periods and totals; `violations.rs`: aggregation and filters;
//! - `admin.rs`: migrations, config entries, the audit log and the analytics reads.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod usage;
mod violations;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use support::db::{drop_pg_database, fresh_pg_url};
use tollgate::store::{
    connect, AnyStore, Batch, FlushOutcome, PgStore, Store, StoreTarget, UsageDelta, UsageRow,
    ViolationDelta,
};

use admin::*;
use usage::*;
use violations::*;

pub const DAY: i64 = 1_704_067_200;
pub const MINUTE: i64 = DAY + 600;

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
    config_entries_round_trip,
    audit_log_keeps_newest_first,
    traffic_sums_into_buckets,
    top_keys_and_violators,
    empty_batch_is_applied_without_recording_its_id,
    failed_batch_changes_nothing_and_is_permanent,
    large_batch_fits_in_one_flush,
);

// ---------------------------------------------------------------- builders

pub fn usage(key: &str, period: &'static str, start: i64, count: i64) -> UsageDelta {
    UsageDelta {
        rule: "api".into(),
        key: key.into(),
        period,
        period_start: start,
        count,
    }
}

pub fn row(key: &str, period: &'static str, start: i64, count: i64) -> UsageRow {
    let d = usage(key, period, start, count);
    UsageRow {
        rule: d.rule.to_string(),
        key: d.key.to_string(),
        period: d.period.to_owned(),
        period_start: d.period_start,
        count: d.count,
    }
}

pub fn violation(
    key: &str,
    minute: i64,
    shadow: bool,
    seen: (i64, i64),
    path: &str,
) -> ViolationDelta {
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

pub fn batch(id: &str, usage: Vec<UsageDelta>, violations: Vec<ViolationDelta>) -> Batch {
    Batch {
        id: id.into(),
        usage,
        violations,
        traffic: Vec::new(),
    }
}

pub async fn migrated<S: Store>(store: &S) {
    store.migrate().await.expect("migrate");
}

pub async fn day_rows<S: Store>(store: &S) -> Vec<UsageRow> {
    let mut rows = store.usage_for_period("day", DAY).await.unwrap();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

pub async fn flush<S: Store>(store: &S, batch: &Batch) -> FlushOutcome {
    store.flush(batch).await.expect("flush")
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
