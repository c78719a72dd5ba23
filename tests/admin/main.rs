//! The admin plane over real HTTP and a real WebSocket client, against a tollgate in this
//! process with a real upstream and a SQLite store in a temp dir.
//!
//! - `api.rs`: auth and roles, every REST endpoint, live and persisted config changes;
//! - `feed.rs`: stats on the driven clock, violation coalescing, heartbeats, slow clients;
//! - `alerts.rs`: alert transitions on the feed and to a webhook receiver on 127.0.0.1;
//! - `openapi.rs`: the OpenAPI document against real responses.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod api;
mod feed;
mod openapi;

use std::path::Path;

use support::{empty, full, h1_client, send, Got, TestTollgate, Upstream};

pub const ADMIN: &str = "admin-token-0123456789abcdef";
pub const READ: &str = "read-token-0123456789abcdef";

/// The rules every admin test runs with: `api` keyed on `x-user` at 5/m, one route.
pub const RULES: &str = r#"
[[routes]]
name = "default"
path_prefix = "/"
upstreams = ["UPSTREAM"]
rules = ["api"]

[[rules]]
name = "api"
key = "header:x-user"
limits = ["5/m"]
"#;

/// A tollgate with both tokens, a fast feed and a SQLite store at `dir/t.db`.
pub async fn start(dir: &Path, up: &Upstream, extra_admin: &str) -> TestTollgate {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN}\"\nread_token = \"{READ}\"\n{extra_admin}\n[database]\nsqlite_path = \"{}\"\nflush_interval = \"100ms\"\nhour_flush_interval = \"100ms\"\n{}",
        dir.join("t.db").display(),
        RULES.replace("UPSTREAM", &up.url()),
    );
    TestTollgate::from_text(&text, None).await
}

/// A proxied GET as user `user`.
pub async fn hit(t: &TestTollgate, user: &str) -> u16 {
    support::get(&t.url("/x"), &[("x-user", user)])
        .await
        .status
        .as_u16()
}

/// An admin call with `token` (none if empty).
pub async fn call(
    t: &TestTollgate,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Got {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("content-type", "application/json")];
    if !token.is_empty() {
        headers.push(("authorization", auth.as_str()));
    }
    let body = match body {
        Some(v) => full(v.to_string()),
        None => empty(),
    };
    send(&h1_client(), method, &t.admin_url(path), &headers, body).await
}

/// Waits (bounded) until `check` passes, polling.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
