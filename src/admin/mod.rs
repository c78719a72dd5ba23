//! The admin plane on its own port: probes, Prometheus metrics, the REST API, the WebSocket
//! feed, alerts and the dashboard.
//!
//! Reads proxy state only through narrow handles (the readiness latch, the metrics registry, the
//! limiter and its violation tap, the live config, the store) and never touches the request path:
//! a slow admin client or a dead store costs admin requests, never proxied ones. HTTP/1.1 only,
//! with header, body and connection bounds.
//!
//! - `auth.rs`: tokens and roles, Origin; `error.rs`: every failure as problem+json, in one place.
//! - `api/`: the REST resources; `feed/`: the WebSocket broadcast and what it says, when.
//! - `alerts.rs` and `webhook.rs`: alert rules and their delivery; `dashboard.rs`: the page.

pub mod alerts;
mod api;
pub mod auth;
mod dashboard;
pub mod error;
pub mod feed;
pub mod health;
mod reply;
pub mod webhook;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, Gauge};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use health::Readiness;

use self::alerts::Alerts;
use self::auth::Auth;
use self::error::ApiError;
use self::feed::Feed;
use self::reply::Body;
use crate::config::live::LiveConfig;
use crate::config::AdminSettings;
use crate::limiter::Limiter;
use crate::store::AnyStore;
use crate::telemetry::{Metrics, EVICTIONS, OVERFLOW, READY, TRACKED_KEYS};

/// Admin connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 256;
/// Kernel send buffer of an admin connection.
const SEND_BUFFER: usize = 64 * 1024;
/// The hand-kept OpenAPI document, checked against real responses by `tests/admin_api.rs`.
const OPENAPI: &str = include_str!("openapi.json");

/// What the admin plane reads and changes.
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub limiter: Arc<Limiter>,
    pub config: Arc<LiveConfig>,
    /// `None` with `[database] enabled = false`: history endpoints answer 503.
    pub store: Option<Arc<AnyStore>>,
    pub auth: Auth,
    pub metrics_require_token: bool,
    pub feed: Arc<Feed>,
    pub alerts: Arc<Alerts>,
    /// One config change at a time, so validate-store-swap cannot interleave.
    write_lock: tokio::sync::Mutex<()>,
    gauges: ScrapeGauges,
}

/// Values copied from the limiter into the registry at scrape time.
struct ScrapeGauges {
    tracked: Gauge,
    ready: Gauge,
    evictions: Counter,
    overflow: Counter,
}

/// The handles [`AdminState::new`] takes.
pub struct AdminParts {
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub limiter: Arc<Limiter>,
    pub config: Arc<LiveConfig>,
    pub store: Option<Arc<AnyStore>>,
    pub feed: Arc<Feed>,
    pub alerts: Arc<Alerts>,
}

impl AdminState {
    pub fn new(p: AdminParts, settings: &AdminSettings) -> Self {
        let m = &p.metrics;
        let gauges = ScrapeGauges {
            tracked: m.gauge(TRACKED_KEYS, &[]),
            ready: m.gauge(READY, &[]),
            evictions: m.counter(EVICTIONS, &[]),
            overflow: m.counter(OVERFLOW, &[]),
        };
        Self {
            readiness: p.readiness,
            metrics: p.metrics,
            limiter: p.limiter,
            config: p.config,
            store: p.store,
            auth: Auth::new(settings),
            metrics_require_token: settings.metrics_require_token,
            feed: p.feed,
            alerts: p.alerts,
            write_lock: tokio::sync::Mutex::new(()),
            gauges,
        }
    }

    /// Unix milliseconds by the limiter's clock.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.limiter.now_ms()).unwrap_or(i64::MAX)
    }

    fn render_metrics(&self) -> String {
        let g = &self.gauges;
        g.tracked.set(self.limiter.tracked_keys() as f64);
        g.ready
            .set(if self.readiness.is_ready() { 1.0 } else { 0.0 });
        g.evictions.absolute(self.limiter.evictions());
        g.overflow.absolute(self.limiter.overflowed());
        self.metrics.render()
    }
}

/// Serve the admin port until shutdown.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        // A stalled feed client then holds little kernel memory, and is found out sooner.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let (state, builder) = (state.clone(), builder.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = conn.with_upgrades().await;
        });
    }
}

async fn handle(
    state: &Arc<AdminState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    route(state, req, peer)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn route(
    state: &Arc<AdminState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    match path {
        "/live"
        | "/ready"
        | "/health"
        | "/metrics"
        | "/api/ws/health"
        | "/api/admin/openapi.json"
            if !read_only =>
        {
            Err(ApiError::MethodNotAllowed(req.method().to_string()))
        }
        "/live" => Ok(reply::text(StatusCode::OK, "ok\n")),
        "/ready" | "/health" if state.readiness.is_ready() => {
            Ok(reply::text(StatusCode::OK, "ready\n"))
        }
        "/ready" | "/health" => Ok(reply::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")),
        "/metrics" => {
            if state.metrics_require_token {
                state.auth.check(req.headers())?;
            }
            let body = Bytes::from(state.render_metrics());
            Ok(reply::with(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ))
        }
        "/ws/admin/quotas" => feed::socket::upgrade(&state.auth, &state.feed, req),
        "/api/ws/health" => {
            state.auth.check(req.headers())?;
            Ok(reply::json(&state.feed.health()))
        }
        "/api/admin/openapi.json" => {
            state.auth.check(req.headers())?;
            Ok(reply::with(
                StatusCode::OK,
                "application/json",
                Bytes::from_static(OPENAPI.as_bytes()),
            ))
        }
        p if p.starts_with("/api/admin/quotas/") => api::handle(state, req, peer).await,
        p if p == "/admin/quotas" || p.starts_with("/admin/quotas/") => {
            if !read_only {
                return Err(ApiError::MethodNotAllowed(req.method().to_string()));
            }
            dashboard::asset(p)
                .ok_or_else(|| ApiError::NotFound(format!("no dashboard file at {p}")))
        }
        p => Err(ApiError::NotFound(format!("nothing at {p}"))),
    }
}
