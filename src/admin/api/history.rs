//! `GET /api/admin/quotas/violations` and `/analytics`: history from the store.

use std::time::Duration;

use http::Response;
use serde_json::{json, Value};

use super::{usage, AdminState, Query};
use crate::admin::error::ApiError;
use crate::admin::reply::{self, Body};
use crate::store::{AnyStore, KeyCount, Store, TopQuery, ViolationFilter};

/// Most buckets one analytics answer may hold.
const MAX_BUCKETS: i64 = 1000;

fn store(state: &AdminState) -> Result<&AnyStore, ApiError> {
    state.store.as_deref().ok_or(ApiError::NoStore)
}

pub async fn violations(state: &AdminState, q: &Query) -> Result<Response<Body>, ApiError> {
    let store = store(state)?;
    let filter = ViolationFilter {
        rule: q.get("rule").map(str::to_owned),
        key: q.get("key").map(str::to_owned),
        since_ms: q.time_ms("since")?,
        until_ms: q.time_ms("until")?,
        shadow: q.flag("shadow")?,
        limit: q.number("limit", 100, ViolationFilter::MAX_PAGE as u64)? as i64,
        offset: q.number("offset", 0, i64::MAX as u64)? as i64,
    };
    let rows = store.violations(&filter).await?;
    let items: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({"rule": r.rule, "key": r.key, "minute": r.minute, "shadow": r.shadow,
                   "count": r.count, "first_seen_ms": r.first_seen_ms, "last_seen_ms": r.last_seen_ms,
                   "method": r.method, "path": r.path, "client_ip": r.client_ip, "limit": r.limit})
        })
        .collect();
    Ok(reply::json(
        &json!({"items": items, "limit": filter.limit, "offset": filter.offset}),
    ))
}

pub async fn analytics(state: &AdminState, q: &Query) -> Result<Response<Body>, ApiError> {
    let store = store(state)?;
    let now_ms = i64::try_from(state.limiter.now_ms()).unwrap_or(i64::MAX);
    // By default the range ends just after now, so the current minute is in it.
    let until_ms = q.time_ms("until")?.unwrap_or(now_ms + 1);
    let since_ms = q.time_ms("since")?.unwrap_or(until_ms - 3_600_000);
    let bucket = bucket_secs(q.get("bucket"))?;
    if since_ms >= until_ms {
        return Err(ApiError::BadRequest("since must be before until".into()));
    }
    let since = since_ms.div_euclid(1000) / 60 * 60;
    let until = until_ms.div_euclid(1000) + i64::from(until_ms.rem_euclid(1000) > 0);
    if (until - since) / bucket > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BUCKETS} buckets: widen bucket or narrow the range"
        )));
    }
    let rule = q.get("rule");
    let top = q.number("top", 10, 100)? as i64;
    let range = TopQuery {
        since,
        until,
        limit: top,
    };
    let mut series: Vec<(String, Vec<Value>)> = Vec::new();
    for row in store.traffic(&range, bucket).await? {
        if rule.is_some_and(|r| r != row.rule) {
            continue;
        }
        let point = json!({"t": row.bucket, "allowed": row.allowed, "denied": row.denied,
                           "shadow_denied": row.shadow_denied});
        match series.last_mut() {
            Some((r, points)) if *r == row.rule => points.push(point),
            _ => series.push((row.rule.clone(), vec![point])),
        }
    }
    let keep = |rows: Vec<KeyCount>| -> Vec<Value> {
        rows.into_iter()
            .filter(|k| rule.is_none_or(|r| r == k.rule))
            .map(|k| json!({"rule": k.rule, "key": k.key, "count": k.count}))
            .collect()
    };
    let top_keys = keep(store.top_usage(&range).await?);
    let top_violators = keep(store.top_violators(&range).await?);
    let series: Vec<_> = series
        .into_iter()
        .map(|(rule, points)| json!({"rule": rule, "points": points}))
        .collect();
    Ok(reply::json(&json!({
        "since_ms": since_ms, "until_ms": until_ms, "bucket_secs": bucket,
        "series": series, "top_keys": top_keys, "top_violators": top_violators,
        "distribution": usage::distribution(state).await,
    })))
}

/// A bucket of whole minutes, default 5m.
fn bucket_secs(text: Option<&str>) -> Result<i64, ApiError> {
    let Some(text) = text else { return Ok(300) };
    let d: Duration = crate::config::parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("bucket: {e}")))?;
    let secs = d.as_secs();
    if secs < 60 || !secs.is_multiple_of(60) || d.subsec_nanos() != 0 {
        return Err(ApiError::BadRequest(format!(
            "bucket must be whole minutes such as 1m, 5m or 1h, got {text:?}"
        )));
    }
    Ok(secs as i64)
}
