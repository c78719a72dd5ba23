//! SQL that reads the same on Postgres and SQLite, written once: the override and tier methods
//! of [`Store`](super::Store) and the row readers. Both dialects take `$1`-style parameters
//! (SQLite reads `$1` as a named parameter, bound by position in order of appearance, which is
//! why each appears once and in order).
//!
//! Owns no state; each store module expands these macros inside its own impl, with its own pool
//! and row type, so the generated code is as if written out twice.

/// The override and tier methods, for an `impl Store` whose type has a `pool` field.
macro_rules! admin_methods {
    () => {
        async fn list_overrides(&self) -> Result<Vec<OverrideRow>, StoreError> {
            let rows = sqlx::query(
                "SELECT rule, key, limits, tier, updated_at_ms FROM overrides ORDER BY rule, key",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(override_row).collect()
        }

        async fn upsert_override(&self, row: &OverrideRow) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO overrides (rule, key, limits, tier, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (rule, key) DO UPDATE SET limits = excluded.limits,
                     tier = excluded.tier, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&row.rule)
            .bind(&row.key)
            .bind(encode_limits(&row.limits))
            .bind(row.tier.as_deref())
            .bind(row.updated_at_ms)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn delete_override(&self, rule: &str, key: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM overrides WHERE rule = $1 AND key = $2")
                .bind(rule)
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn list_tiers(&self) -> Result<Vec<TierRow>, StoreError> {
            let rows = sqlx::query("SELECT name, limits, updated_at_ms FROM tiers ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(tier_row).collect()
        }

        async fn upsert_tier(&self, row: &TierRow) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO tiers (name, limits, updated_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET limits = excluded.limits,
                     updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&row.name)
            .bind(encode_limits(&row.limits))
            .bind(row.updated_at_ms)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        async fn delete_tier(&self, name: &str) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM tiers WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }
    };
}
pub(super) use admin_methods;

/// `usage_row`, `violation_row`, `override_row` and `tier_row` over the row type `$row`.
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

        fn override_row(row: &$row) -> Result<OverrideRow, StoreError> {
            Ok(OverrideRow {
                rule: row.try_get("rule")?,
                key: row.try_get("key")?,
                limits: decode_limits(row.try_get("limits")?)?,
                tier: row.try_get("tier")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        }

        fn tier_row(row: &$row) -> Result<TierRow, StoreError> {
            Ok(TierRow {
                name: row.try_get("name")?,
                limits: decode_limits(row.try_get("limits")?)?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        }
    };
}
pub(super) use row_readers;
