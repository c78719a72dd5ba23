//! SQL that reads the same on Postgres and SQLite, written once: the flush transaction, the
//! period read, the admin-plane methods
//! of [`Store`](super::Store) and the row readers. Both dialects take `$1`-style parameters
//! (SQLite reads `$1` as a named parameter, bound by position in order of appearance, which is
//! why each appears once and in order).
//!
//! Owns no state; each store module expands these macros inside its own impl, with its own pool
//! and row type, so the generated code is as if written out twice.

/// `flush` and `usage_for_period`, for an `impl Store` whose type has a `pool` field and whose
/// module has `upsert::{usage, violations, traffic}` and `BATCH_ID_TTL_MS`. The tokens are how
/// the transaction begins (`begin()`, or SQLite's `begin_with("BEGIN IMMEDIATE")`).
macro_rules! flush_methods {
    ($($begin:tt)*) => {
        async fn flush(&self, batch: &Batch) -> Result<FlushOutcome, StoreError> {
            if batch.is_empty() {
                return Ok(FlushOutcome::Applied);
            }
            let now_ms = unix_ms();
            let mut tx = self.pool.$($begin)*.await?;
            let claimed = sqlx::query(
                "INSERT INTO flush_batches (batch_id, flushed_at_ms) VALUES ($1, $2)
                 ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
            )
            .bind(&batch.id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                tx.rollback().await?;
                return Ok(FlushOutcome::AlreadyApplied);
            }
            let (usage, violations) = batch.coalesced();
            if !usage.is_empty() {
                upsert::usage(&mut tx, &usage, now_ms).await?;
            }
            if !violations.is_empty() {
                upsert::violations(&mut tx, &violations).await?;
            }
            if !batch.traffic.is_empty() {
                upsert::traffic(&mut tx, &batch.traffic).await?;
            }
            sqlx::query("DELETE FROM flush_batches WHERE flushed_at_ms < $1")
                .bind(now_ms - BATCH_ID_TTL_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(FlushOutcome::Applied)
        }

        async fn usage_for_period(
            &self,
            period: &str,
            period_start: i64,
        ) -> Result<Vec<UsageRow>, StoreError> {
            let rows = sqlx::query(
                "SELECT rule, key, period, period_start, count FROM usage
                 WHERE period = $1 AND period_start = $2",
            )
            .bind(period)
            .bind(period_start)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(usage_row).collect()
        }
    };
}
pub(super) use flush_methods;

/// The admin-plane methods (config entries, audit log, analytics reads), for an `impl Store`
/// whose type has a `pool` field.
macro_rules! admin_methods {
    () => {
        async fn list_config_entries(&self) -> Result<Vec<ConfigEntryRow>, StoreError> {
            let rows = sqlx::query("SELECT id, body, updated_at_ms FROM config_entries ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ConfigEntryRow {
                        id: r.try_get("id")?,
                        body: r.try_get("body")?,
                        updated_at_ms: r.try_get("updated_at_ms")?,
                    })
                })
                .collect()
        }

        async fn upsert_config_entry(&self, row: &ConfigEntryRow) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO config_entries (id, body, updated_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body,
                     updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&row.id)
            .bind(&row.body)
            .bind(row.updated_at_ms)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn delete_config_entry(&self, id: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM config_entries WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn append_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
            sqlx::query("INSERT INTO audit_log (at_ms, actor, action, detail) VALUES ($1, $2, $3, $4)")
                .bind(row.at_ms)
                .bind(&row.actor)
                .bind(&row.action)
                .bind(&row.detail)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
            let rows = sqlx::query(
                "SELECT at_ms, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRow {
                        at_ms: r.try_get("at_ms")?,
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        detail: r.try_get("detail")?,
                    })
                })
                .collect()
        }

        async fn traffic(&self, range: &TopQuery, bucket_secs: i64) -> Result<Vec<TrafficRow>, StoreError> {
            let rows = sqlx::query(
                "SELECT rule, $1 + (minute - $2) / $3 * $4 AS bucket, CAST(SUM(allowed) AS BIGINT) AS allowed,
                        CAST(SUM(denied) AS BIGINT) AS denied, CAST(SUM(shadow_denied) AS BIGINT) AS shadow_denied
                 FROM traffic WHERE minute >= $5 AND minute < $6
                 GROUP BY rule, bucket ORDER BY rule, bucket",
            )
            .bind(range.since)
            .bind(range.since)
            .bind(bucket_secs)
            .bind(bucket_secs)
            .bind(range.since)
            .bind(range.until)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(TrafficRow {
                        rule: r.try_get("rule")?,
                        bucket: r.try_get("bucket")?,
                        allowed: r.try_get("allowed")?,
                        denied: r.try_get("denied")?,
                        shadow_denied: r.try_get("shadow_denied")?,
                    })
                })
                .collect()
        }

        async fn top_usage(&self, q: &TopQuery) -> Result<Vec<KeyCount>, StoreError> {
            let rows = sqlx::query(
                "SELECT rule, key, CAST(SUM(count) AS BIGINT) AS total FROM usage
                 WHERE period = 'hour' AND period_start >= $1 AND period_start < $2
                 GROUP BY rule, key ORDER BY total DESC, rule, key LIMIT $3",
            )
            .bind(q.since - q.since.rem_euclid(3600))
            .bind(q.until)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(key_count).collect()
        }

        async fn top_violators(&self, q: &TopQuery) -> Result<Vec<KeyCount>, StoreError> {
            let rows = sqlx::query(
                "SELECT rule, key, CAST(SUM(count) AS BIGINT) AS total FROM violations
                 WHERE minute >= $1 AND minute < $2 AND NOT shadow
                 GROUP BY rule, key ORDER BY total DESC, rule, key LIMIT $3",
            )
            .bind(q.since - q.since.rem_euclid(60))
            .bind(q.until)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(key_count).collect()
        }

        async fn delete_usage(&self, row: &UsageKey) -> Result<u64, StoreError> {
            let done = sqlx::query(
                "DELETE FROM usage WHERE rule = $1 AND key = $2 AND period = $3 AND period_start = $4",
            )
            .bind(&row.rule)
            .bind(&row.key)
            .bind(&row.period)
            .bind(row.period_start)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        }
    };
}
pub(super) use admin_methods;

/// `usage_row`, `violation_row` and `key_count` over the row type `$row`.
macro_rules! row_readers {
    ($row:ty) => {
        fn usage_row(row: &$row) -> Result<UsageRow, StoreError> {
            Ok(UsageRow {
                rule: row.try_get("rule")?,
                key: row.try_get("key")?,
                period: row.try_get("period")?,
                period_start: row.try_get("period_start")?,
                count: row.try_get("count")?,
            })
        }

        fn violation_row(row: &$row) -> Result<ViolationRow, StoreError> {
            Ok(ViolationRow {
                rule: row.try_get("rule")?,
                key: row.try_get("key")?,
                minute: row.try_get("minute")?,
                shadow: row.try_get("shadow")?,
                count: row.try_get("count")?,
                first_seen_ms: row.try_get("first_seen_ms")?,
                last_seen_ms: row.try_get("last_seen_ms")?,
                method: row.try_get("method")?,
                path: row.try_get("path")?,
                client_ip: row.try_get("client_ip")?,
                limit: row.try_get("limit_desc")?,
            })
        }

        fn key_count(row: &$row) -> Result<KeyCount, StoreError> {
            Ok(KeyCount {
                rule: row.try_get("rule")?,
                key: row.try_get("key")?,
                count: row.try_get("total")?,
            })
        }
    };
}
pub(super) use row_readers;
