//! tollgate: a reverse-proxy rate-limiting sidecar.
//!
//! ```text
//!  client ──> proxy::listener ──> proxy::service ──> route match ──> proxy::gate ──> limiter
//!                 (h1/h2/TLS)           │                               (keys, cost)   (sharded table,
//!                                       │                                               sliding windows)
//!                                       ├── 429/401/400 ── proxy::respond
//!                                       └── direct response | proxy::forward ──> upstream (pooled)
//!
//!  admin port: admin (probes, metrics, REST API, WebSocket feed, alerts, dashboard)
//!              — reads readiness, metrics, the limiter and its tap, the live config, the store
//!  config:     raw (serde) + admin-API overlay -> validate (typed) -> live (ArcSwap swap),
//!              on reload (SIGHUP / file watch) or an API change
//! ```
//!
//! - [`proxy`]: the data plane; never waits on a lock, a database or the admin plane.
//! - [`limiter`]: key extraction, the window algorithm as pure functions of (state, now), the table.
//! - [`config`]: the file, its validation into typed values, live reload.
//! - [`admin`]: probes, metrics, the REST API, the feed, alerts and the dashboard on their own port.
//! - [`store`]: usage, violations, traffic, API config entries and the audit log, in Postgres or SQLite.
//! - [`verify`]: `tollgate verify`, the deploy checks against a running admin port.
//! - [`background`]: threads below the proxy's priority for the flusher and the sweeper.
//! - [`app`]: binds every listener, wires the planes, runs until shutdown and drains.

pub mod admin;
pub mod app;
pub mod background;
pub mod config;
pub mod limiter;
pub mod proxy;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use app::{App, AppError, AppOptions};
