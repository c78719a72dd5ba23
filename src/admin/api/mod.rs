//! The REST API under `/api/admin/quotas/`: routing by method and path, the role each route
//! needs, query parsing and bounded JSON bodies. Each resource lives in its own file.

mod config;
mod history;
mod reset;
mod usage;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::auth::Role;
use super::error::ApiError;
use super::reply::{self, Body};
use super::AdminState;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// Who made a change, for the audit log: the role and the peer, never the token.
pub struct Actor {
    pub role: Role,
    pub peer: SocketAddr,
}

impl Actor {
    pub fn label(&self) -> String {
        format!("{}@{}", self.role.name(), self.peer.ip())
    }
}

/// Serves one `/api/admin/quotas/...` request.
pub async fn handle(
    state: &AdminState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let role = state.auth.check(req.headers())?;
    let actor = Actor { role, peer };
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());
    let rest = path.strip_prefix("/api/admin/quotas/").unwrap_or_default();
    let method = req.method().clone();
    match (&method, rest) {
        (&Method::GET, "config") => Ok(config::list(state)),
        (&Method::POST, "config") => {
            let body = admin_body(&actor, req).await?;
            config::upsert(state, &body, &actor).await
        }
        (&Method::DELETE, id) if id.starts_with("config/") => {
            need_admin(&actor)?;
            let id = percent_encoding::percent_decode_str(&id["config/".len()..])
                .decode_utf8()
                .map_err(|_| ApiError::BadRequest("the id is not UTF-8".into()))?;
            config::delete(state, &id, &actor).await
        }
        (&Method::GET, "usage") => usage::list(state, &query).await,
        (&Method::GET, "violations") => history::violations(state, &query).await,
        (&Method::GET, "analytics") => history::analytics(state, &query).await,
        (&Method::POST, "reset") => {
            let body = admin_body(&actor, req).await?;
            reset::reset(state, &body, &actor).await
        }
        (&Method::GET, "alerts") => {
            let (active, history) = state.alerts.list();
            Ok(reply::json(&json!({"active": active, "history": history})))
        }
        (_, "config" | "usage" | "violations" | "analytics" | "reset" | "alerts") => {
            Err(ApiError::MethodNotAllowed(method.to_string()))
        }
        (_, id) if id.starts_with("config/") => Err(ApiError::MethodNotAllowed(method.to_string())),
        _ => Err(ApiError::NotFound(format!("no admin endpoint at {path}"))),
    }
}

fn need_admin(actor: &Actor) -> Result<(), ApiError> {
    match actor.role {
        Role::Admin => Ok(()),
        Role::Read => Err(ApiError::Forbidden),
    }
}

/// The JSON body of a write, after the role check (a read token never gets its body read).
async fn admin_body(actor: &Actor, req: Request<Incoming>) -> Result<Value, ApiError> {
    need_admin(actor)?;
    let bytes: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::TooLarge(MAX_BODY))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// Query parameters, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Query(pairs)
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A whole number in `0..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be a whole number from 0 to {max}, got {v:?}"
            ))),
        }
    }

    /// `true` or `false`, if given.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::BadRequest(format!(
                "{name} must be true or false, got {v:?}"
            ))),
        }
    }

    /// A time as Unix milliseconds or RFC 3339, if given.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        if let Ok(ms) = v.parse::<i64>() {
            return Ok(Some(ms));
        }
        v.parse::<jiff::Timestamp>()
            .map(|t| Some(t.as_millisecond()))
            .map_err(|_| ApiError::BadRequest(format!(
                "{name} must be Unix milliseconds or an RFC 3339 time such as 2026-11-24T10:00:00Z, got {v:?}"
            )))
    }
}
