//! `POST /api/admin/quotas/reset`: forget one key's counters, live and stored.
//!
//! The live entries go from the limiter; the stored rows of the key's current quota periods go
//! from the store, so a restart (or another instance's sync) does not bring the usage back.
//! Hour rows stay: they are history, not limits. Audited.

use http::Response;
use serde_json::{json, Value};

use super::config::audit;
use super::{Actor, AdminState};
use crate::admin::error::ApiError;
use crate::admin::reply::{self, Body};
use crate::limiter::quota::kind_name;
use crate::store::{Store, UsageKey};

pub async fn reset(
    state: &AdminState,
    body: &Value,
    actor: &Actor,
) -> Result<Response<Body>, ApiError> {
    let key = body
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "body must be {\"key\": \"...\", \"rule\": \"...\" (optional)}".into(),
            )
        })?;
    let rule = body.get("rule").and_then(Value::as_str);
    let config = state.config.runtime();
    let rules: Vec<_> = config
        .rules
        .iter()
        .filter(|b| rule.is_none_or(|r| *b.rule.name == *r))
        .collect();
    if let (Some(r), true) = (rule, rules.is_empty()) {
        return Err(ApiError::NotFound(format!("no rule named {r:?}")));
    }
    let now = state.limiter.now_ms();
    let mut stored = Vec::new();
    for b in &rules {
        for w in b.rule.limits_for(key).windows.iter() {
            if let Some(q) = &w.quota {
                stored.push(UsageKey {
                    rule: b.rule.name.to_string(),
                    key: key.to_owned(),
                    period: kind_name(q.kind()).to_owned(),
                    period_start: i64::try_from(q.period(now).start_ms / 1000).unwrap_or(0),
                });
            }
        }
    }
    if let Some(store) = &state.store {
        for row in &stored {
            store.delete_usage(row).await?;
        }
    }
    let reset = rules
        .iter()
        .filter(|b| state.limiter.reset_key(b.rule.id, key))
        .count();
    let names: Vec<_> = rules.iter().map(|b| b.rule.name.to_string()).collect();
    audit(state, actor, "reset", json!({"key": key, "rules": names})).await;
    tracing::info!(
        key,
        ?names,
        actor = actor.label(),
        "key reset through the admin API"
    );
    Ok(reply::json(
        &json!({"key": key, "rules": names, "reset": reset}),
    ))
}
