//! Startup-only settings: listeners, timeouts, pools, the limiter's size, logging.
//!
//! Read once by `App::build`; a reload that changes them logs that a restart is needed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    pub target: Option<DatabaseTarget>,
    pub flush_interval: Duration,
    pub sync_interval: Duration,
    pub max_pending: usize,
    pub migrate_on_start: bool,
}

/// Where usage goes.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A `postgres://` URL; Debug hides its password.
    Postgres(String),
    Sqlite(PathBuf),
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(url) => write!(f, "Postgres({})", redact_url(url)),
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
        }
    }
}

/// A URL with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable url>".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
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
