//! tollgate: a reverse-proxy rate-limiting sidecar.
//!
//! ```text
//!  client ──> proxy::listener ──> proxy::service ──> route match ──> proxy::gate ──> limiter
//!                 (h1/h2/TLS)           │                               (keys, cost)   (sharded table,
//!                                       │                                               sliding windows)
//!                                       ├── 429/401/400 ── proxy::respond
//!                                       └── direct response | proxy::forward ──> upstream (pooled)
//!
//!  admin port: admin (live, ready, health, metrics)  — reads readiness, metrics, limiter counters
//!  config:     raw (serde) -> validate (typed) -> reload (SIGHUP / file watch) -> ArcSwap
//! ```
//!
//! - [`proxy`]: the data plane; never waits on a lock, a database or the admin plane.
//! - [`limiter`]: key extraction, the window algorithm as pure functions of (state, now), the table.
//! - [`config`]: the file, its validation into typed values, live reload.
//! - [`admin`]: probes and metrics on their own port.
//! - [`store`]: usage, violations, overrides and tiers in Postgres or SQLite (not wired yet).
//! - [`app`]: binds every listener, wires the planes, runs until shutdown and drains.

pub mod admin;
pub mod app;
pub mod config;
pub mod limiter;
pub mod proxy;
pub mod shutdown;
pub mod store;
pub mod telemetry;

pub use app::{App, AppError, AppOptions};
