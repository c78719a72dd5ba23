//! The data plane, hot path only: listener, TLS, the per-request service, the limit gate,
//! forwarding, and every response the proxy makes itself.
//!
//! Sees a `Limiter` and the live `RuntimeConfig`; never the admin plane, a database, or a lock
//! held across an await.

mod conn_watch;
pub mod forward;
pub mod gate;
mod h1;
mod h1_encode;
mod h1_head;
mod h1_outbound;
mod h1_request;
mod h1_server;
pub mod headers;
mod heads;
mod io;
mod lines;
pub mod listener;
pub mod metrics;
mod names;
pub mod pool;
pub mod rate_headers;
pub mod respond;
pub mod route;
pub mod service;
pub mod tls;
pub mod workers;
