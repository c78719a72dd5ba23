//! [`PgStore`]: the store in PostgreSQL, shared by every instance.
//!
//! Owns the pool (small, fails fast) and the Postgres dialect of every statement. Must not decide
//! about retries; it reports errors and [`StoreError::is_transient`] tells the caller. A flush
//! sends each table's rows as parallel arrays through `UNNEST`: one statement per table whatever
//! the batch size, and no bind-parameter limit to hit.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

mod upsert;

use super::migrations::{self, TABLE};
use super::target::target_error;
use super::{
    unix_ms, AuditRow, Batch, ConfigEntryRow, FlushOutcome, KeyCount, MigrationState, Store,
    StoreError, TopQuery, TrafficRow, UsageKey, UsageRow, ViolationFilter, ViolationRow,
};

/// At most this many connections: the store sees one batcher and the admin plane, not traffic.
const MAX_CONNECTIONS: u32 = 4;
/// How long a call waits for a connection before failing, so an outage fails fast.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Server-side cap on one statement, so a stuck query frees its connection.
const STATEMENT_TIMEOUT: &str = "10s";
/// How long flushed batch ids are remembered for replay detection, in milliseconds.
const BATCH_ID_TTL_MS: i64 = 24 * 3600 * 1000;

/// The store in PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// A store whose pool connects on first use: no I/O here, so a down database does not stop
    /// startup. The URL's password never appears in the error.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| target_error(url, e))?
            .application_name("tollgate")
            .options([("statement_timeout", STATEMENT_TIMEOUT)]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        migrations::postgres().run(&self.pool).await?;
        Ok(())
    }

    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
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
        Ok(migrations::states(&migrations::postgres(), &applied))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    super::shared::flush_methods!(begin());

    async fn usage_totals(&self, keys: &[UsageKey]) -> Result<Vec<UsageRow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT u.rule, u.key, u.period, u.period_start, u.count
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[])
                  AS k(rule, key, period, period_start)
             JOIN usage u USING (rule, key, period, period_start)",
        )
        .bind(keys.iter().map(|k| k.rule.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.period.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.period_start).collect::<Vec<_>>())
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
             WHERE ($1::text IS NULL OR rule = $1) AND ($2::text IS NULL OR key = $2)
               AND minute >= $3 AND minute < $4 AND ($5::boolean IS NULL OR shadow = $5)
             ORDER BY minute DESC, last_seen_ms DESC, rule, key, shadow
             LIMIT $6 OFFSET $7",
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

super::shared::row_readers!(PgRow);
