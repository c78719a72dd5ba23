//! `GET /api/admin/quotas/usage`: live usage per key and rule from the limiter's table, with
//! filters, top-N and paging; and the usage distribution the analytics endpoint reports.

use http::Response;
use serde_json::{json, Value};

use super::{AdminState, Query};
use crate::admin::error::ApiError;
use crate::admin::reply::{self, Body};
use crate::limiter::KeyUsage;

/// Most items one page may hold.
const MAX_PAGE: u64 = 1000;

pub async fn list(state: &AdminState, q: &Query) -> Result<Response<Body>, ApiError> {
    let rule = q.get("rule").map(str::to_owned);
    let prefix = q.get("prefix").unwrap_or_default().to_owned();
    let top = q
        .get("top")
        .map(|_| q.number("top", 10, MAX_PAGE))
        .transpose()?;
    let limit = q.number("limit", 100, MAX_PAGE)? as usize;
    let offset = q.number("offset", 0, u64::MAX)? as usize;
    let config = state.config.runtime();
    if let Some(r) = &rule {
        if !config.rules.iter().any(|b| &*b.rule.name == r) {
            return Err(ApiError::NotFound(format!("no rule named {r:?}")));
        }
    }
    let limiter = state.limiter.clone();
    let now = limiter.now_ms();
    let mut items = tokio::task::spawn_blocking(move || {
        let rules: Vec<_> = config.rules.iter().map(|b| &*b.rule).collect();
        limiter.usage_report(
            &rules,
            |r, k| rule.as_ref().is_none_or(|n| **n == *r.name) && k.starts_with(&prefix),
            now,
        )
    })
    .await
    .unwrap_or_default();
    let total = items.len();
    match top {
        Some(n) => {
            items.sort_by(|a, b| {
                b.ratio()
                    .total_cmp(&a.ratio())
                    .then(b.used().cmp(&a.used()))
            });
            items.truncate(n as usize);
        }
        None => items.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key))),
    }
    let page: Vec<_> = items
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| item(k, now))
        .collect();
    Ok(reply::json(
        &json!({"now_ms": now, "total": total, "items": page}),
    ))
}

fn item(k: &KeyUsage, now: u64) -> Value {
    let windows: Vec<_> = k
        .windows
        .iter()
        .map(|w| {
            json!({"limit": w.limit, "used": w.used, "max": w.max, "remaining": w.remaining,
                   "reset_secs": w.reset_ms.saturating_sub(now).div_ceil(1000)})
        })
        .collect();
    json!({"rule": &*k.rule, "key": &*k.key, "shadow": k.shadow, "ratio": k.ratio(),
           "last_seen_ms": k.last_seen_ms, "windows": windows})
}

/// This instance's live keys by their highest `used/max`, in ten bands of 0.1 (the last takes
/// everything from 0.9 up).
pub async fn distribution(state: &AdminState) -> Vec<Value> {
    let config = state.config.runtime();
    let limiter = state.limiter.clone();
    let now = limiter.now_ms();
    let bands = tokio::task::spawn_blocking(move || {
        let rules: Vec<_> = config.rules.iter().map(|b| &*b.rule).collect();
        let mut bands = [0u64; 10];
        for k in limiter.usage_report(&rules, |_, _| true, now) {
            let band = ((k.ratio() * 10.0).floor() as usize).min(9);
            bands[band] += 1;
        }
        bands
    })
    .await
    .unwrap_or_default();
    bands
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"from": i as f64 / 10.0, "to": (i + 1) as f64 / 10.0, "keys": n}))
        .collect()
}
