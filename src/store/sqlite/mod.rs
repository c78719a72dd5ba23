//! [`SqliteStore`]: the store in a local SQLite file, for a single instance.
//!
//! Owns the file's pool (WAL, `synchronous = NORMAL`, a busy timeout) and the SQLite dialect of
//! every statement. Must not decide about retries. A flush sends each table's rows as one JSON
//! array read back with `json_each`: one statement per table whatever the batch size, so
//! SQLite's bound-variable limit (32766) never caps a batch.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

mod upsert;

use super::migrations::{self, TABLE};
use super::priority;
use super::{
    unix_ms, AuditRow, Batch, ConfigEntryRow, FlushOutcome, KeyCount, MigrationState, Store,
    StoreError, TopQuery, TrafficRow, UsageKey, UsageRow, ViolationFilter, ViolationRow,
};

/// WAL lets readers (the admin plane) run beside the one writer (the batcher).
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for another writer's lock before `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the busy timeout: waiting for a pooled connection includes waiting for the lock.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long flushed batch ids are remembered for replay detection, in milliseconds.
const BATCH_ID_TTL_MS: i64 = 24 * 3600 * 1000;

/// The store in a SQLite file. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the file at `path`; fails now if it cannot be opened.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .thread_name(|id| format!("{}{id}", priority::SQLITE_THREAD_PREFIX));
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|_, _| {
                Box::pin(async {
                    priority::lower_sqlite_threads();
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        migrations::sqlite().run(&self.pool).await?;
        Ok(())
    }

    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        )
        .bind(TABLE)
        .fetch_one(&self.pool)
        .await?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(migrations::states(&migrations::sqlite(), &applied))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // SQLite: IMMEDIATE takes the write lock up front, so a second writer waits out the busy
    // timeout instead of failing when it upgrades a read snapshot.
    super::shared::flush_methods!(begin_with("BEGIN IMMEDIATE"));

    async fn usage_totals(&self, keys: &[UsageKey]) -> Result<Vec<UsageRow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<(&str, &str, &str, i64)> = keys
            .iter()
            .map(|k| {
                (
                    k.rule.as_str(),
                    k.key.as_str(),
                    k.period.as_str(),
                    k.period_start,
                )
            })
            .collect();
        let rows = sqlx::query(
            "SELECT u.rule, u.key, u.period, u.period_start, u.count
             FROM json_each(?1) AS k
             JOIN usage u ON u.rule = k.value ->> 0 AND u.key = k.value ->> 1
                         AND u.period = k.value ->> 2 AND u.period_start = k.value ->> 3",
        )
        .bind(upsert::json(&wanted))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_row).collect()
    }

    async fn violations(&self, filter: &ViolationFilter) -> Result<Vec<ViolationRow>, StoreError> {
        let (limit, offset) = filter.page();
        let rows = sqlx::query(
            "SELECT rule, key, minute, shadow, count, first_seen_ms, last_seen_ms,
                    method, path, client_ip, limit_desc
             FROM violations
             WHERE (?1 IS NULL OR rule = ?1) AND (?2 IS NULL OR key = ?2)
               AND minute >= ?3 AND minute < ?4 AND (?5 IS NULL OR shadow = ?5)
             ORDER BY minute DESC, last_seen_ms DESC, rule, key, shadow
             LIMIT ?6 OFFSET ?7",
        )
        .bind(filter.rule.as_deref())
        .bind(filter.key.as_deref())
        .bind(filter.min_minute())
        .bind(filter.end_minute())
        .bind(filter.shadow)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(violation_row).collect()
    }
    super::shared::admin_methods!();
}

super::shared::row_readers!(SqliteRow);
