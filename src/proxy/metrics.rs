//! Metric handles the data plane bumps: registered once per config (routes) or per app
//! (connections), so a request only touches atomics.

use metrics::{Counter, Gauge};

use crate::telemetry::{
    Histogram, Metrics, CONNECTIONS, CONNECTIONS_RESTED, CONNECTION_PANICS, OPEN_CONNECTIONS,
    REQUESTS, REQUEST_DURATION, UPSTREAM_DURATION, UPSTREAM_ERRORS,
};

/// How a request was decided, for the `decision` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLabel {
    Allow = 0,
    Deny = 1,
    ShadowDeny = 2,
    /// Answered by the proxy itself: no route, missing key, bad cost, upstream failure.
    Error = 3,
}

const DECISIONS: [&str; 4] = ["allow", "deny", "shadow_deny", "error"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per-route handles.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    requests: Box<[[Counter; 5]; 4]>,
    pub duration: Histogram,
    pub upstream_duration: Histogram,
    pub upstream_connect_errors: Counter,
    pub upstream_timeouts: Counter,
    /// The upstream was reached but the exchange failed (reset, bad response).
    pub upstream_other_errors: Counter,
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, route: &str) -> Self {
        let requests = DECISIONS.map(|d| {
            CLASSES.map(|c| {
                metrics.counter(
                    REQUESTS,
                    &[("route", route), ("decision", d), ("status_class", c)],
                )
            })
        });
        let err = |kind| metrics.counter(UPSTREAM_ERRORS, &[("route", route), ("kind", kind)]);
        Self {
            requests: Box::new(requests),
            duration: metrics.histogram(REQUEST_DURATION, &[("route", route)]),
            upstream_duration: metrics.histogram(UPSTREAM_DURATION, &[("route", route)]),
            upstream_connect_errors: err("connect"),
            upstream_timeouts: err("timeout"),
            upstream_other_errors: err("other"),
        }
    }

    pub fn count(&self, decision: DecisionLabel, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[decision as usize][class].increment(1);
    }
}

/// Process-wide connection handles.
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub accepted: Counter,
    pub panics: Counter,
    /// Idle connections that gave back their buffers (the lean HTTP/1.1 path's rest).
    pub rested: Counter,
}

impl ConnMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            open: metrics.gauge(OPEN_CONNECTIONS, &[]),
            accepted: metrics.counter(CONNECTIONS, &[]),
            panics: metrics.counter(CONNECTION_PANICS, &[]),
            rested: metrics.counter(CONNECTIONS_RESTED, &[]),
        }
    }
}
