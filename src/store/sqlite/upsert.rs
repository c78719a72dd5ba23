//! The statements of a SQLite flush: all usage rows in one upsert, all violation rows in
//! another, the per-minute traffic rows in a third, each reading its rows from one JSON array of arrays through `json_each`.
//!
//! Owns only SQL and the JSON encoding of rows; runs inside the caller's transaction and must not
//! commit, roll back or retry. One bound parameter per statement keeps a 20k-row batch far from
//! SQLite's variable limit. (`WHERE true` is required: without it SQLite would read
//! `ON CONFLICT` as a join constraint of the `SELECT`.)

use serde::Serialize;
use sqlx::SqliteConnection;

use crate::store::{StoreError, TrafficDelta, UsageDelta, ViolationDelta};

/// Rows as a JSON array of arrays (tuples serialize as arrays), read back as `value ->> N`.
pub(super) fn json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("tuples of strings and integers always serialize")
}

/// Adds each delta's count to its usage row, creating rows that do not exist yet.
pub(super) async fn usage(
    conn: &mut SqliteConnection,
    rows: &[UsageDelta],
    now_ms: i64,
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &str, &str, i64, i64)> = rows
        .iter()
        .map(|r| (&*r.rule, &*r.key, r.period, r.period_start, r.count))
        .collect();
    sqlx::query(
        "INSERT INTO usage (rule, key, period, period_start, count, updated_at_ms)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (rule, key, period, period_start) DO UPDATE
         SET count = usage.count + excluded.count, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(json(&rows))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds each delta to its violation row: counts summed, first/last seen widened, and the sample
/// (method, path, client ip, limit) of the row that was there first kept.
pub(super) async fn violations(
    conn: &mut SqliteConnection,
    rows: &[ViolationDelta],
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let sample = (&r.method, &r.path, &r.client_ip, &r.limit);
            (
                &r.rule,
                &r.key,
                r.minute,
                i64::from(r.shadow),
                r.count,
                r.first_seen_ms,
                r.last_seen_ms,
                sample,
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO violations (rule, key, minute, shadow, count, first_seen_ms, last_seen_ms,
                                 method, path, client_ip, limit_desc)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                value ->> 6, value ->> '$[7][0]', value ->> '$[7][1]', value ->> '$[7][2]',
                value ->> '$[7][3]'
         FROM json_each(?1) WHERE true
         ON CONFLICT (rule, key, minute, shadow) DO UPDATE
         SET count = violations.count + excluded.count,
             first_seen_ms = min(violations.first_seen_ms, excluded.first_seen_ms),
             last_seen_ms = max(violations.last_seen_ms, excluded.last_seen_ms)",
    )
    .bind(json(&rows))
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds each instance's decision counts to its (rule, minute) row.
pub(super) async fn traffic(
    conn: &mut SqliteConnection,
    rows: &[TrafficDelta],
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let c = r.counts;
            (&r.rule, r.minute, c.allowed, c.denied, c.shadow_denied)
        })
        .collect();
    sqlx::query(
        "INSERT INTO traffic (rule, minute, allowed, denied, shadow_denied)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4
         FROM json_each(?1) WHERE true
         ON CONFLICT (rule, minute) DO UPDATE
         SET allowed = traffic.allowed + excluded.allowed,
             denied = traffic.denied + excluded.denied,
             shadow_denied = traffic.shadow_denied + excluded.shadow_denied",
    )
    .bind(json(&rows))
    .execute(conn)
    .await?;
    Ok(())
}
