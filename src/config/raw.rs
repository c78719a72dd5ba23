//! The config file as written: serde types that mirror `config/tollgate.toml` one to one.
//!
//! Owns only the shape of the file and its defaults. Nothing here is trusted: durations, limits,
//! CIDRs and key specs are still strings, and `validate.rs` turns them into typed values.
//! Every table denies unknown fields so a typo is an error, not a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub upstream: RawUpstreamDefaults,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub database: RawDatabase,
    /// Key material for `jwt:CLAIM` keys; absent means no rule may use a JWT key.
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Tier name -> rule name -> limits (e.g. `["1000/m"]`).
    #[serde(default)]
    pub tiers: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub overrides: Vec<RawOverride>,
}

/// The proxy listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address the proxy listens on. Default 127.0.0.1:8080.
    pub listen: Option<String>,
    /// Proxy worker threads; 0 or absent means one per core.
    pub workers: Option<usize>,
    /// How workers share connections: "per_worker" (default: each worker its own current-thread
    /// runtime and its own SO_REUSEPORT listener) or "work_stealing" (one multi-thread runtime).
    pub runtime: Option<String>,
    pub tls: Option<RawTls>,
    /// Deadline for a whole request head (slowloris guard). Default "10s".
    pub header_timeout: Option<String>,
    /// Close a connection after this long with no bytes either way. Default "60s".
    pub idle_timeout: Option<String>,
    /// Maximum bytes of a request head. Default 16384; larger heads get 431.
    pub max_header_bytes: Option<usize>,
    /// Maximum number of request headers. Default 100; more get 431.
    pub max_headers: Option<usize>,
    /// Maximum concurrent client connections. Default 10000; past it new ones wait in the backlog.
    pub max_connections: Option<usize>,
    /// How long in-flight requests may finish after SIGTERM. Default "30s".
    pub drain_timeout: Option<String>,
}

/// PEM files for the proxy's TLS listener (HTTP/1.1 and HTTP/2 by ALPN).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

/// The admin listener: probes, metrics, the REST API, the feed and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Default 127.0.0.1:9091. A non-loopback address requires `token`.
    pub listen: Option<String>,
    /// Bearer token of the admin role (read and write). Prefer TOLLGATE_ADMIN_TOKEN.
    pub token: Option<String>,
    /// Bearer token of the read role (GET only). Prefer TOLLGATE_ADMIN_READ_TOKEN.
    pub read_token: Option<String>,
    /// Require a token (read or admin) on /metrics. Default false.
    pub metrics_require_token: Option<bool>,
    /// Origins (`scheme://host[:port]`) whose pages may open the WebSocket feed, beside the admin
    /// port's own. Default none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub feed: RawFeed,
    #[serde(default)]
    pub alerts: RawAlerts,
}

/// The WebSocket feed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    /// How often a `stats` message goes out. Default "5s".
    pub stats_interval: Option<String>,
    /// How often a `heartbeat` (and a ping) goes out. Default "10s".
    pub heartbeat_interval: Option<String>,
    /// Messages a client may fall behind before it is dropped. Default 256.
    pub buffer: Option<usize>,
    /// Clients connected at once; more get 503. Default 64.
    pub max_clients: Option<usize>,
}

/// Alert rules; each fires once past its threshold and resolves once back under it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Denials per minute over every rule. Default 100; 0 turns it off.
    pub violations_per_minute: Option<u64>,
    /// Upstream failures as a percentage of forwarded requests, over a minute. Default 1.0; 0 off.
    pub upstream_error_percent: Option<f64>,
    /// The oldest unwritten usage older than this, or flushes failing that long. Default "30s".
    pub flush_lag: Option<String>,
    /// Tracked keys as a percentage of `limits.max_keys`. Default 80; 0 off.
    pub tracked_keys_percent: Option<f64>,
    /// Alert when a key is denied for the first time (per rule, once per hour). Default true.
    pub new_blocked_key: Option<bool>,
    /// POST each alert as JSON to this http(s) URL. Default none.
    pub webhook_url: Option<String>,
    /// Deadline of one webhook attempt. Default "5s".
    pub webhook_timeout: Option<String>,
    /// Attempts after the first. Default 3, with backoff from 1 s.
    pub webhook_retries: Option<u32>,
}

/// Defaults for every upstream.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamDefaults {
    /// TCP (+TLS) connect deadline. Default "2s"; a failure answers 502.
    pub connect_timeout: Option<String>,
    /// Deadline for the upstream's response head. Default "30s"; past it 504.
    pub response_timeout: Option<String>,
    /// How long an idle pooled connection is kept. Default "90s".
    pub pool_idle_timeout: Option<String>,
    /// Idle pooled connections kept per upstream host. Default 256.
    pub pool_max_idle: Option<usize>,
    /// Extra CA bundle (PEM) trusted for https upstreams, beside the webpki roots.
    pub ca_file: Option<String>,
}

/// Forwarding headers and which peers are trusted to set them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    /// Set X-Forwarded-For/-Proto/-Host. Default true.
    pub x_forwarded: Option<bool>,
    /// Also set the RFC 7239 `Forwarded` header. Default false.
    pub forwarded: Option<bool>,
    /// CIDRs whose X-Forwarded-For is believed when picking the client IP.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// Limiter-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Tracked (rule, key) pairs at most. Default 1000000.
    pub max_keys: Option<usize>,
    /// How often idle keys are swept. Default "10s".
    pub sweep_interval: Option<String>,
    /// Shadow mode for every rule: count and report, never block. Default false.
    pub shadow: Option<bool>,
    /// Also send X-RateLimit-Limit/-Remaining/-Reset. Default false.
    pub legacy_headers: Option<bool>,
    /// Body of a 429; `{rule}` and `{retry_after}` are replaced.
    pub deny_body: Option<String>,
    /// Content-Type of that body. Default "application/json".
    pub deny_content_type: Option<String>,
    /// IANA time zone of calendar quotas for rules that set none. Default "UTC".
    pub timezone: Option<String>,
}

/// The usage store (write-behind). Startup-only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Default true. false keeps usage in memory only: quotas reset on restart.
    pub enabled: Option<bool>,
    /// postgres://user@host:port/db. Absent: DATABASE_URL, else the SQLite file.
    pub url: Option<String>,
    /// The embedded store when no Postgres is configured. Default "tollgate.db" (relative to the
    /// working directory).
    pub sqlite_path: Option<String>,
    /// How often pending usage is written. Default "1s".
    pub flush_interval: Option<String>,
    /// How often the hourly usage rows (per rule and key) are written; quota rows and violations
    /// go every `flush_interval`. Default "10s"; at least `flush_interval`.
    pub hour_flush_interval: Option<String>,
    /// How often quota totals are read back (several instances on one Postgres). Default "2s".
    pub sync_interval: Option<String>,
    /// Pending rows kept while the database is unreachable; past it the oldest are dropped.
    /// Default 1000000.
    pub max_pending: Option<usize>,
    /// Apply pending migrations at startup. Default true.
    pub migrate_on_start: Option<bool>,
}

/// Logging.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// "text" (default) or "json".
    pub format: Option<String>,
    /// One line per request. Default false.
    pub access_log: Option<bool>,
    /// A tracing filter such as "info" or "tollgate=debug"; TOLLGATE_LOG (or --log), then RUST_LOG, win over it.
    pub level: Option<String>,
    /// Lines queued for the writer thread before new ones are dropped (counted). Default 131072.
    pub buffer_lines: Option<usize>,
}

/// How JWTs for `jwt:CLAIM` keys are verified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// "HS256", "RS256" or "ES256".
    pub algorithm: Option<String>,
    /// HS256 shared secret (prefer `secret_env`).
    pub secret: Option<String>,
    /// Name of an environment variable holding the HS256 secret.
    pub secret_env: Option<String>,
    /// PEM public key file for RS256/ES256.
    pub public_key_file: Option<String>,
    /// Default true. false trusts unsigned claims: only behind a gateway that already verified them.
    pub verify: Option<bool>,
    /// Header carrying the token. Default "authorization" (with a "Bearer " prefix).
    pub header: Option<String>,
}

/// One route: a match and a destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Exact Host (port ignored), or "*.example.com".
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries ("/api" matches "/api" and "/api/x", not "/apix").
    pub path_prefix: Option<String>,
    /// Glob over the path: `*` within one segment, `**` across segments.
    pub path_pattern: Option<String>,
    /// Methods matched; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Upstream base URLs, taken in turn.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// A fixed response instead of an upstream.
    pub direct: Option<RawDirect>,
    /// Rule names checked for this route, all-or-nothing.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A static response, like Envoy's direct_response or nginx's `return`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirect {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

/// One rule: a key and its limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    /// "ip", "header:NAME", "query:NAME", "jwt:CLAIM", or several joined by commas.
    pub key: String,
    /// Sliding windows and calendar quotas, e.g. ["10/s", "1000/h", "50/30s", "10000/d", "1000000/mo"].
    #[serde(default)]
    pub limits: Vec<String>,
    /// "reject" (401, default), "anonymous" (one shared bucket) or "skip".
    pub on_missing: Option<String>,
    /// Fixed weight of a request. Default 1.
    pub cost: Option<u32>,
    /// Header carrying the weight; absent header means `cost`.
    pub cost_header: Option<String>,
    /// Count and report, never block. Default false.
    pub shadow: Option<bool>,
    /// IANA time zone of the rule's calendar quotas (/d, /w, /mo). Default `[limits] timezone`.
    pub timezone: Option<String>,
    /// Day of the month (1-28) on which monthly quotas reset. Default 1.
    pub billing_day: Option<u8>,
}

/// A per-key override: a tier or explicit limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// The key as the rule sees it (composite parts joined by `|`).
    pub key: String,
    /// Only this rule; absent means every rule.
    pub rule: Option<String>,
    pub tier: Option<String>,
    #[serde(default)]
    pub limits: Vec<String>,
}
