//! `GET/POST /api/admin/quotas/config` and `DELETE /api/admin/quotas/config/{id}`: the rules,
//! tiers and overrides in force, and changes to them through the [`Overlay`].
//!
//! A change is validated as a reload would validate it, then stored, then swapped in: a store
//! failure changes nothing, and a change that is live is also on disk (when a store exists).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{Actor, AdminState};
use crate::admin::error::ApiError;
use crate::admin::reply::{self, Body};
use crate::config::overlay::{override_id, rule_id, tier_id, Entry, Overlay};
use crate::config::RawConfig;
use crate::store::{AuditRow, ConfigEntryRow, Store};

/// `GET`: everything in force, each entry tagged with where it comes from.
pub fn list(state: &AdminState) -> Response<Body> {
    let file = state.config.file();
    let overlay = state.config.overlay();
    let merged = overlay.merged(&file).unwrap_or(file);
    reply::json(&describe(&merged, &overlay, state.config.version()))
}

fn describe(raw: &RawConfig, overlay: &Overlay, version: u64) -> Value {
    let source = |id: &str| {
        if overlay.get(id).is_some() {
            "api"
        } else {
            "file"
        }
    };
    let rules: Vec<_> = raw
        .rules
        .iter()
        .map(|r| {
            let id = rule_id(&r.name);
            let routes: Vec<_> = raw
                .routes
                .iter()
                .filter(|x| x.rules.contains(&r.name))
                .map(|x| &x.name)
                .collect();
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["id"] = json!(id);
            v["source"] = json!(source(&id));
            v["routes"] = json!(routes);
            v
        })
        .collect();
    let tiers: Vec<_> = raw
        .tiers
        .iter()
        .map(|(name, limits)| {
            let id = tier_id(name);
            json!({"id": id, "source": source(&id), "name": name, "limits": limits})
        })
        .collect();
    let overrides: Vec<_> = raw
        .overrides
        .iter()
        .map(|o| {
            let id = override_id(o);
            let mut v = serde_json::to_value(o).unwrap_or_default();
            v["id"] = json!(id);
            v["source"] = json!(source(&id));
            v
        })
        .collect();
    json!({"version": version, "rules": rules, "tiers": tiers, "overrides": overrides})
}

/// `POST`: create or replace one entry.
pub async fn upsert(
    state: &AdminState,
    body: &Value,
    actor: &Actor,
) -> Result<Response<Body>, ApiError> {
    let _one_writer = state.write_lock.lock().await;
    let entry = Entry::from_json(body).map_err(ApiError::Invalid)?;
    let id = entry.id();
    let overlay = state.config.overlay();
    let file = state.config.file();
    let existed = overlay.get(&id).is_some() || in_file(&file, &id);
    let next = overlay.with(entry.clone());
    state
        .config
        .check(&next, Some(&entry))
        .map_err(ApiError::Invalid)?;
    let stored = entry.to_json();
    let persisted = match &state.store {
        Some(store) => {
            let row = ConfigEntryRow {
                id: id.clone(),
                body: stored.to_string(),
                updated_at_ms: state.now_ms(),
            };
            store.upsert_config_entry(&row).await?;
            audit(
                state,
                actor,
                "config.upsert",
                json!({"id": id, "entry": stored}),
            )
            .await;
            true
        }
        None => false,
    };
    let version = state
        .config
        .set_overlay(next, Some(&entry))
        .map_err(ApiError::Invalid)?;
    tracing::info!(
        id,
        actor = actor.label(),
        "config entry set through the admin API"
    );
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(reply::json_with(
        status,
        &json!({"id": id, "created": !existed, "persisted": persisted, "version": version}),
    ))
}

/// `DELETE`: remove one API entry; a file entry it replaced is in force again.
pub async fn delete(
    state: &AdminState,
    id: &str,
    actor: &Actor,
) -> Result<Response<Body>, ApiError> {
    let _one_writer = state.write_lock.lock().await;
    let Some(next) = state.config.overlay().without(id) else {
        return Err(if in_file(&state.config.file(), id) {
            ApiError::Conflict(format!(
                "{id} is defined in the config file; change it there"
            ))
        } else {
            ApiError::NotFound(format!("no config entry {id}"))
        });
    };
    state.config.check(&next, None).map_err(ApiError::Invalid)?;
    if let Some(store) = &state.store {
        store.delete_config_entry(id).await?;
        audit(state, actor, "config.delete", json!({"id": id})).await;
    }
    let version = state
        .config
        .set_overlay(next, None)
        .map_err(ApiError::Invalid)?;
    tracing::info!(
        id,
        actor = actor.label(),
        "config entry removed through the admin API"
    );
    Ok(reply::json(
        &json!({"id": id, "deleted": true, "version": version}),
    ))
}

fn in_file(file: &RawConfig, id: &str) -> bool {
    file.rules.iter().any(|r| rule_id(&r.name) == id)
        || file.tiers.keys().any(|t| tier_id(t) == id)
        || file.overrides.iter().any(|o| override_id(o) == id)
}

/// Appends to the audit log; a failure is logged, not returned (the change itself is stored).
pub async fn audit(state: &AdminState, actor: &Actor, action: &str, detail: Value) {
    let Some(store) = &state.store else { return };
    let row = AuditRow {
        at_ms: state.now_ms(),
        actor: actor.label(),
        action: action.to_owned(),
        detail: detail.to_string(),
    };
    if let Err(e) = store.append_audit(&row).await {
        tracing::warn!(error = %e, action, "could not write the audit log");
    }
}
