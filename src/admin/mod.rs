//! The admin plane on its own port: probes and Prometheus metrics.
//!
//! Reads proxy state only through narrow handles (the readiness latch, the metrics registry, the
//! limiter's counters); never touches the request path. HTTP/1.1 only, small and bounded.

pub mod health;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, Gauge};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use health::Readiness;

use crate::limiter::Limiter;
use crate::telemetry::{Metrics, EVICTIONS, OVERFLOW, READY, TRACKED_KEYS};

/// What the admin plane reads.
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub limiter: Arc<Limiter>,
    gauges: ScrapeGauges,
}

/// Values copied from the limiter into the registry at scrape time.
struct ScrapeGauges {
    tracked: Gauge,
    ready: Gauge,
    evictions: Counter,
    overflow: Counter,
}

impl AdminState {
    pub fn new(readiness: Readiness, metrics: Metrics, limiter: Arc<Limiter>) -> Self {
        let gauges = ScrapeGauges {
            tracked: metrics.gauge(TRACKED_KEYS, &[]),
            ready: metrics.gauge(READY, &[]),
            evictions: metrics.counter(EVICTIONS, &[]),
            overflow: metrics.counter(OVERFLOW, &[]),
        };
        Self {
            readiness,
            metrics,
            limiter,
            gauges,
        }
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
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        let (state, builder) = (state.clone(), builder.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "ok\n"),
        "/ready" | "/health" if state.readiness.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" | "/health" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(state.render_metrics())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}
