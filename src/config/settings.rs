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
    /// Tokio worker threads; 0 = one per core.
    pub workers: usize,
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

/// The write-behind usage store.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: usage stays in memory.
    pub target: Option<StoreTarget>,
    pub flush_interval: Duration,
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
    /// Never printed: Debug redacts it.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
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
}
