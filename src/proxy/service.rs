//! One request, start to finish: route, limit, answer or forward, count.
//!
//! Reads the current config through `ArcSwap` once per request and never waits on a lock, the
//! database or the admin plane. A panic while handling a request becomes a 500 for that request
//! only, counted in `tollgate_connection_panics_total`.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header::{HeaderValue, HOST};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use super::forward::{forward, ForwardCtx};
use super::gate::{gate, Gate};
use super::metrics::{ConnMetrics, DecisionLabel, RouteMetrics};
use super::pool::Pool;
use super::respond::{self, ProxyBody, ProxyError};
use super::route::Target;
use crate::config::RuntimeConfig;
use crate::limiter::Limiter;

/// Everything a request handler reads; one per proxy listener.
pub struct ProxyState {
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    pub limiter: Arc<Limiter>,
    pub pool: Pool,
    pub response_timeout: Duration,
    /// "http" or "https", for X-Forwarded-Proto.
    pub proto: &'static str,
    pub conn_metrics: ConnMetrics,
    /// Requests no route matched, counted under `route="(none)"` (not a valid route name).
    pub unmatched: RouteMetrics,
}

/// The client end of a connection, as each of its requests needs it.
pub struct Peer {
    pub addr: SocketAddr,
    /// The IP as a header value (X-Forwarded-For), formatted once per connection.
    pub header: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        let header = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, header }
    }
}

/// Handle one request; never fails (errors become responses).
pub async fn handle(
    state: &ProxyState,
    req: Request<Incoming>,
    peer: &Peer,
) -> Response<ProxyBody> {
    let (peer, peer_value) = (peer.addr, &peer.header);
    let started = Instant::now();
    let cfg = state.config.load_full();
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let Some(route) = cfg.routes.find(host, req.uri().path(), req.method()) else {
        state.unmatched.count(DecisionLabel::Error, 404);
        return ProxyError::NoRoute.into_response();
    };
    let access = cfg
        .access_log
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let (parts, body) = req.into_parts();
    let client_ip = cfg.forwarding.client_ip(peer.ip(), &parts.headers);
    let (resp, label) = match gate(&cfg, route, &state.limiter, &parts, client_ip) {
        Gate::Stop { response, label } => (response, label),
        Gate::Pass { headers, mut label } => {
            let mut resp = match &route.target {
                Target::Direct(d) => respond::direct(d),
                Target::Upstreams(ups) => {
                    let ctx = ForwardCtx {
                        pool: &state.pool,
                        forwarding: &cfg.forwarding,
                        response_timeout: state.response_timeout,
                        peer,
                        peer_value,
                        proto: state.proto,
                    };
                    let req = Request::from_parts(parts, body);
                    match forward(ctx, route, ups.pick(), req).await {
                        Ok(resp) => resp.map(Either::Left),
                        Err(e) => {
                            label = DecisionLabel::Error;
                            e.into_response()
                        }
                    }
                }
            };
            headers.apply(resp.headers_mut());
            (resp, label)
        }
    };
    let status = resp.status().as_u16();
    route.metrics.count(label, status);
    route
        .metrics
        .duration
        .record(started.elapsed().as_secs_f64());
    if let Some((method, path)) = access {
        tracing::info!(target: "tollgate::access", %method, %path, status, route = %route.name, client = %client_ip, micros = started.elapsed().as_micros() as u64);
    }
    resp
}

/// Run a handler, turning a panic into a counted 500 for this request only.
pub async fn guarded<F>(metrics: &ConnMetrics, fut: F) -> Response<ProxyBody>
where
    F: std::future::Future<Output = Response<ProxyBody>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            metrics.panics.increment(1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "request handler panicked; answering 500");
            ProxyError::Internal.into_response()
        }
    }
}
