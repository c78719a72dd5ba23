//! Startup-only settings: listeners, timeouts, pools, the limiter's size, logging.
//!
//! Read once by `App::build`; a reload that changes them logs that a restart is needed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::StoreTarget;
use crate::telemetry::LogFormat;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Proxy worker threads; 0 = one per core (see [`Settings::proxy_workers`]).
    pub workers: usize,
    pub runtime: RuntimeShape,
    pub tls: Option<TlsFiles>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub admin: AdminSettings,
    pub upstream: UpstreamSettings,
    pub max_keys: usize,
    pub sweep_interval: Duration,
    pub log: LogSettings,
    pub database: DatabaseSettings,
}

/// How the proxy's workers share connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeShape {
    /// Each worker is a thread with its own current-thread runtime and its own listening socket
    /// (SO_REUSEPORT): the kernel spreads new connections over the sockets, and a connection
    /// stays on the thread that accepted it. Worker 0 is the main thread, which also runs the
    /// admin plane.
    PerWorker,
    /// One multi-thread Tokio runtime whose workers steal tasks from each other, on one socket.
    WorkStealing,
}

impl RuntimeShape {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "per_worker" => Some(Self::PerWorker),
            "work_stealing" => Some(Self::WorkStealing),
            _ => None,
        }
    }
}

impl Settings {
    /// `workers`, with 0 resolved to the number of cores this process may run on.
    pub fn proxy_workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The write-behind usage store.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: usage stays in memory.
    pub target: Option<StoreTarget>,
    pub flush_interval: Duration,
    /// Hour rows wait this long (a multiple of flush ticks): they are most of the rows, and
    /// nothing but reports and restarts reads them.
    pub hour_flush_interval: Duration,
    pub sync_interval: Duration,
    pub max_pending: usize,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The admin role's token. Never printed: Debug redacts it.
    pub token: Option<String>,
    /// The read role's token. Never printed.
    pub read_token: Option<String>,
    pub metrics_require_token: bool,
    /// Normalized `scheme://host[:port]`, lowercase.
    pub allowed_origins: Vec<String>,
    pub feed: FeedSettings,
    pub alerts: AlertSettings,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &redact(&self.token))
            .field("read_token", &redact(&self.read_token))
            .field("metrics_require_token", &self.metrics_require_token)
            .field("allowed_origins", &self.allowed_origins)
            .field("feed", &self.feed)
            .field("alerts", &self.alerts)
            .finish()
    }
}

/// The WebSocket feed.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub stats_interval: Duration,
    pub heartbeat_interval: Duration,
    pub buffer: usize,
    pub max_clients: usize,
}

/// Alert thresholds; `None` turns an alert off.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub violations_per_minute: Option<u64>,
    /// A fraction (0.01 = 1%).
    pub upstream_error_rate: Option<f64>,
    pub flush_lag: Duration,
    /// A fraction of max_keys.
    pub tracked_keys_ratio: Option<f64>,
    pub new_blocked_key: bool,
    pub webhook: Option<WebhookSettings>,
}

/// Where alerts are POSTed.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: http::Uri,
    pub timeout: Duration,
    pub retries: u32,
}

impl std::fmt::Debug for WebhookSettings {
    /// Prints the host only: hook URLs often carry a secret in their path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("host", &self.url.host())
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: Option<String>,
    /// Lines queued for stdout before new ones are dropped.
    pub buffer_lines: usize,
}
