//! The usage store: where aggregated usage, violations, decision counts and API-made
//! config entries live between restarts
//! and across instances, in PostgreSQL or a local SQLite file.
//!
//! Owns the schema (the embedded migrations in `migrations/`), the connection pools and every SQL
//! statement. Must not touch the limiter, HTTP or the admin plane: a batcher hands in a [`Batch`]
//! of already aggregated deltas, the admin plane calls the
//! config-entry, audit and analytics methods, and both
//! see only the [`Store`] trait and the plain row types here, never sqlx.
//!
//! ```text
//! batcher ── Batch { id, usage, violations, traffic } ──▶ Store::flush ──▶ one transaction:
//!                                                  1. INSERT batch id (exists? roll back: AlreadyApplied)
//!                                                  2. one upsert for all usage rows (count += delta)
//!                                                  3. one upsert for all violation rows
//!                                                     and one for the per-minute traffic rows
//!                                                  4. prune batch ids older than a day
//! ```
//!
//! - `rows.rs`: the values that go in and come out; `batch.rs`: a batch and its coalescing.
//! - `postgres/` ([`PgStore`]) and `sqlite/` ([`SqliteStore`]): the two implementations, each
//!   with its flush statements in `upsert.rs`.
//! - `any.rs`: [`AnyStore`], the one concrete type the app holds; `target.rs`: [`connect`].
//! - `migrations.rs`: the embedded migrators and the `migrate --status` report.
//! - `error.rs`: [`StoreError`], which tells a batcher whether a retry can help.
//!
//! Applied migrations are recorded in the table `schema_migrations` (sqlx's `_sqlx_migrations`,
//! renamed through `Migrator::dangerous_set_table_name`; the rename is safe because no database
//! was ever migrated under the old name).
//!
//! A flush is idempotent by batch id: a batcher that lost the commit outcome (a timeout, a
//! dropped connection) replays the same [`Batch`] and gets [`FlushOutcome::AlreadyApplied`]
//! instead of counting twice. Batch ids are remembered for a day.

mod any;
mod batch;
mod error;
mod flusher;
pub mod migrations;
mod postgres;
mod priority;
mod rows;
mod shared;
mod sqlite;
pub mod startup;
mod target;

use std::future::Future;

pub use any::AnyStore;
pub use batch::{Batch, FlushOutcome, TrafficCounts, TrafficDelta, UsageDelta, ViolationDelta};
pub use error::StoreError;
pub use flusher::Flusher;
pub use migrations::{format_status, status_report, MigrationState};
pub use postgres::PgStore;
pub use rows::{
    AuditRow, ConfigEntryRow, KeyCount, TopQuery, TrafficRow, UsageKey, UsageRow, ViolationFilter,
    ViolationRow,
};
pub use sqlite::SqliteStore;
pub use target::{connect, StoreTarget};

/// Everything the app asks of a store; [`PgStore`] and [`SqliteStore`] implement it, and
/// [`AnyStore`] delegates to whichever one the config chose.
///
/// Every future is `Send`, so generic code can spawn it. No method retries: the caller decides,
/// using [`StoreError::is_transient`].
pub trait Store: Send + Sync {
    /// Applies pending embedded migrations; a no-op when all are applied.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every embedded migration in version order, applied or pending. Creates nothing.
    fn migration_status(
        &self,
    ) -> impl Future<Output = Result<Vec<MigrationState>, StoreError>> + Send;

    /// One round trip, for health checks.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies one batch atomically, or reports that its id was applied before.
    fn flush(&self, batch: &Batch)
        -> impl Future<Output = Result<FlushOutcome, StoreError>> + Send;

    /// All usage rows of one period (rehydration at start), in no particular order.
    fn usage_for_period(
        &self,
        period: &str,
        period_start: i64,
    ) -> impl Future<Output = Result<Vec<UsageRow>, StoreError>> + Send;

    /// Current totals of these rows (multi-instance sync); rows that do not exist are omitted.
    fn usage_totals(
        &self,
        keys: &[UsageKey],
    ) -> impl Future<Output = Result<Vec<UsageRow>, StoreError>> + Send;

    /// Violation rows matching the filter, newest minute first.
    fn violations(
        &self,
        filter: &ViolationFilter,
    ) -> impl Future<Output = Result<Vec<ViolationRow>, StoreError>> + Send;

    /// Every config entry made through the admin API, ordered by id.
    fn list_config_entries(
        &self,
    ) -> impl Future<Output = Result<Vec<ConfigEntryRow>, StoreError>> + Send;

    /// Inserts or replaces the entry with this id.
    fn upsert_config_entry(
        &self,
        row: &ConfigEntryRow,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the entry; `false` when there was none.
    fn delete_config_entry(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Appends one admin action to the audit log.
    fn append_audit(&self, row: &AuditRow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest `limit` audit rows, newest first.
    fn list_audit(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AuditRow>, StoreError>> + Send;

    /// Decisions per rule per bucket of `bucket_secs` (counted from `range.since`) for minutes
    /// in the range, ordered by rule then bucket; empty buckets are omitted.
    fn traffic(
        &self,
        range: &TopQuery,
        bucket_secs: i64,
    ) -> impl Future<Output = Result<Vec<TrafficRow>, StoreError>> + Send;

    /// (rule, key) by allowed usage in the range (hour rows; `since` rounds down to its hour).
    fn top_usage(
        &self,
        q: &TopQuery,
    ) -> impl Future<Output = Result<Vec<KeyCount>, StoreError>> + Send;

    /// (rule, key) by real denials in the range (shadow rows excluded).
    fn top_violators(
        &self,
        q: &TopQuery,
    ) -> impl Future<Output = Result<Vec<KeyCount>, StoreError>> + Send;

    /// Removes one usage row (a reset of a key's current quota period); how many went.
    fn delete_usage(&self, row: &UsageKey) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Wall-clock milliseconds, for `updated_at_ms` and batch-id expiry (never for limiting).
pub(crate) fn unix_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
