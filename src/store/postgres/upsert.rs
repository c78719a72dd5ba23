//! The statements of a Postgres flush: all usage rows in one upsert, all violation rows in
//! another, the per-minute traffic rows in a third, each sending its columns as arrays through `UNNEST`.
//!
//! Owns only SQL and the column arrays; runs inside the caller's transaction and must not
//! commit, roll back or retry. Rows arrive coalesced (one per primary key), which Postgres
//! requires: one `INSERT .. ON CONFLICT DO UPDATE` may not touch a row twice.

use sqlx::PgConnection;

use crate::store::{StoreError, TrafficDelta, UsageDelta, ViolationDelta};

/// Adds each delta's count to its usage row, creating rows that do not exist yet.
pub(super) async fn usage(
    conn: &mut PgConnection,
    rows: &[UsageDelta],
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO usage (rule, key, period, period_start, count, updated_at_ms)
         SELECT rule, key, period, period_start, count, $6
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])
              AS d(rule, key, period, period_start, count)
         ON CONFLICT (rule, key, period, period_start) DO UPDATE
         SET count = usage.count + excluded.count, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(rows.iter().map(|r| &*r.rule).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| &*r.key).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.period).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.period_start).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.count).collect::<Vec<_>>())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds each delta to its violation row: counts summed, first/last seen widened, and the sample
/// (method, path, client ip, limit) of the row that was there first kept.
pub(super) async fn violations(
    conn: &mut PgConnection,
    rows: &[ViolationDelta],
) -> Result<(), StoreError> {
    let text = |f: fn(&ViolationDelta) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let int = |f: fn(&ViolationDelta) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO violations (rule, key, minute, shadow, count, first_seen_ms, last_seen_ms,
                                 method, path, client_ip, limit_desc)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bool[], $5::int8[],
                              $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[],
                              $11::text[])
         ON CONFLICT (rule, key, minute, shadow) DO UPDATE
         SET count = violations.count + excluded.count,
             first_seen_ms = LEAST(violations.first_seen_ms, excluded.first_seen_ms),
             last_seen_ms = GREATEST(violations.last_seen_ms, excluded.last_seen_ms)",
    )
    .bind(text(|r| &r.rule))
    .bind(text(|r| &r.key))
    .bind(int(|r| r.minute))
    .bind(rows.iter().map(|r| r.shadow).collect::<Vec<_>>())
    .bind(int(|r| r.count))
    .bind(int(|r| r.first_seen_ms))
    .bind(int(|r| r.last_seen_ms))
    .bind(text(|r| &r.method))
    .bind(text(|r| &r.path))
    .bind(text(|r| &r.client_ip))
    .bind(text(|r| &r.limit))
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds each instance's decision counts to its (rule, minute) row.
pub(super) async fn traffic(
    conn: &mut PgConnection,
    rows: &[TrafficDelta],
) -> Result<(), StoreError> {
    let int = |f: fn(&TrafficDelta) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO traffic (rule, minute, allowed, denied, shadow_denied)
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])
         ON CONFLICT (rule, minute) DO UPDATE
         SET allowed = traffic.allowed + excluded.allowed,
             denied = traffic.denied + excluded.denied,
             shadow_denied = traffic.shadow_denied + excluded.shadow_denied",
    )
    .bind(rows.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>())
    .bind(int(|r| r.minute))
    .bind(int(|r| r.counts.allowed))
    .bind(int(|r| r.counts.denied))
    .bind(int(|r| r.counts.shadow_denied))
    .execute(conn)
    .await?;
    Ok(())
}
