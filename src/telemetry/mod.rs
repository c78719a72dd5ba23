//! Every metric name as a const, described once, and the tracing setup.
//!
//! Each `App` owns its own Prometheus recorder (no global recorder), so tests that run several
//! instances in one process see their own numbers. Handles are registered once, when a config is
//! compiled, and the hot path only bumps our own atomics through them; a scrape copies those into
//! the exporter. Labels are route and rule names,
//! never client keys or raw paths.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

mod histogram;
pub use histogram::Histogram;
use histogram::{label_text, Series};

pub const REQUESTS: &str = "tollgate_requests_total";
pub const REQUEST_DURATION: &str = "tollgate_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "tollgate_upstream_duration_seconds";
pub const UPSTREAM_ERRORS: &str = "tollgate_upstream_errors_total";
pub const DECISIONS: &str = "tollgate_limiter_decisions_total";
pub const TRACKED_KEYS: &str = "tollgate_limiter_tracked_keys";
pub const EVICTIONS: &str = "tollgate_limiter_evictions_total";
pub const OVERFLOW: &str = "tollgate_limiter_overflow_total";
pub const OPEN_CONNECTIONS: &str = "tollgate_open_connections";
pub const CONNECTIONS: &str = "tollgate_connections_total";
pub const WORKER_CONNECTIONS: &str = "tollgate_worker_connections_total";
pub const CONNECTION_PANICS: &str = "tollgate_connection_panics_total";
pub const CONNECTIONS_RESTED: &str = "tollgate_connections_rested_total";
pub const RELOADS: &str = "tollgate_config_reloads_total";
pub const READY: &str = "tollgate_ready";
pub const STORE_FLUSHES: &str = "tollgate_store_flushes_total";
pub const STORE_FLUSH_DURATION: &str = "tollgate_store_flush_duration_seconds";
pub const STORE_ROWS: &str = "tollgate_store_rows_written_total";
pub const STORE_PENDING: &str = "tollgate_store_pending_rows";
pub const STORE_OLDEST: &str = "tollgate_store_oldest_pending_seconds";
pub const STORE_DROPPED_ROWS: &str = "tollgate_store_dropped_rows_total";
pub const STORE_DROPPED_COST: &str = "tollgate_store_dropped_usage_total";
pub const STORE_SYNCS: &str = "tollgate_store_syncs_total";
pub const STORE_UP: &str = "tollgate_store_up";
pub const ALERTS: &str = "tollgate_alerts_total";
pub const ALERTS_FIRING: &str = "tollgate_alerts_firing";
pub const WEBHOOK_DELIVERIES: &str = "tollgate_alert_webhook_deliveries_total";
pub const FEED_CLIENTS: &str = "tollgate_feed_clients";
pub const FEED_DROPPED_CLIENTS: &str = "tollgate_feed_dropped_clients_total";
pub const LOG_DROPPED_LINES: &str = "tollgate_log_dropped_lines_total";

/// Every histogram family, with its help text, in the order rendered (see `histogram.rs`).
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        REQUEST_DURATION,
        "Time from request head to response head, by route.",
    ),
    (
        UPSTREAM_DURATION,
        "Time the upstream took to answer with a head, by route.",
    ),
    (
        STORE_FLUSH_DURATION,
        "Time one flush of the usage store took, failures included.",
    ),
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// One process-local Prometheus registry and the handle that renders it.
///
/// Counters and gauges live in atomics of our own (`Values`): the hot path bumps those, a scrape
/// copies them into the exporter, and the admin plane reads them back (the feed's stats, the
/// per-minute traffic rows) without rendering text. Histograms are ours entirely
/// (`histogram.rs`): rendered after the exporter's text.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
    values: Arc<Values>,
}

/// Every counter and gauge registered, by key: our atomic and the exporter's handle.
#[derive(Default)]
struct Values {
    counters: Mutex<HashMap<Key, (Arc<AtomicU64>, Counter)>>,
    /// Gauges hold an `f64`'s bits.
    gauges: Mutex<HashMap<Key, (Arc<AtomicU64>, Gauge)>>,
    /// Counters kept elsewhere (a library's own atomic): read into our atomic on each render.
    observed: Mutex<Vec<(Arc<AtomicU64>, Observer)>>,
    histograms: Mutex<HashMap<Key, Arc<Series>>>,
}

type Observer = Box<dyn Fn() -> u64 + Send + Sync>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let metrics = Self {
            recorder: Arc::new(recorder),
            handle,
            process: Arc::new(metrics_process::Collector::default()),
            values: Arc::default(),
        };
        metrics.describe();
        metrics
    }

    fn describe(&self) {
        let r = &*self.recorder;
        let counters: &[(&'static str, &'static str)] = &[
            (REQUESTS, "Requests answered, by route, decision (allow, deny, shadow_deny, error) and status class."),
            (UPSTREAM_ERRORS, "Upstream failures by route and kind (connect and other = 502, timeout = 504)."),
            (DECISIONS, "Limiter decisions by rule and outcome (allow, deny, shadow_deny, missing_key)."),
            (EVICTIONS, "Idle keys evicted by the sweeper."),
            (OVERFLOW, "Requests counted in a rule's shared overflow bucket because max_keys was reached."),
            (CONNECTIONS, "Client connections accepted."),
            (CONNECTION_PANICS, "Panics caught inside a connection task; the process stays up."),
            (WORKER_CONNECTIONS, "Client connections accepted, by proxy worker: how SO_REUSEPORT spread them (one accept loop, worker 0, under work_stealing)."),
            (CONNECTIONS_RESTED, "Times an idle HTTP/1.1 connection gave back its buffers (after 2 s waiting for a request)."),
            (RELOADS, "Config reloads by result (success, failure)."),
            (STORE_FLUSHES, "Usage store flushes by result (ok, replayed = a batch already applied, error)."),
            (STORE_ROWS, "Rows upserted into the usage store, by table (usage, violations)."),
            (STORE_DROPPED_ROWS, "Pending rows dropped because max_pending was reached while the store was failing."),
            (STORE_DROPPED_COST, "Allowed usage (cost) lost with dropped rows."),
            (STORE_SYNCS, "Quota syncs from the store by result (ok, error)."),
            (ALERTS, "Alert transitions by alert and state (firing, resolved)."),
            (WEBHOOK_DELIVERIES, "Alert webhook deliveries by result (ok, failed after retries, dropped when the queue was full)."),
            (FEED_DROPPED_CLIENTS, "WebSocket feed clients dropped for falling behind."),
            (LOG_DROPPED_LINES, "Log lines (access log included) dropped because log.buffer_lines were already queued for a slow stdout."),
        ];
        for (name, help) in counters {
            r.describe_counter((*name).into(), None, (*help).into());
        }
        let gauges: &[(&'static str, &'static str)] = &[
            (TRACKED_KEYS, "(rule, key) pairs held in the limiter table."),
            (OPEN_CONNECTIONS, "Client connections open now."),
            (
                READY,
                "1 once config is loaded and listeners are bound; 0 while draining.",
            ),
            (
                STORE_PENDING,
                "Usage and violation rows waiting to be written.",
            ),
            (
                STORE_OLDEST,
                "Age of the oldest unwritten usage or violation, in seconds.",
            ),
            (
                STORE_UP,
                "1 when the last store operation succeeded, 0 while it fails.",
            ),
            (ALERTS_FIRING, "Alerts firing now, by alert."),
            (FEED_CLIENTS, "WebSocket feed clients connected."),
        ];
        for (name, help) in gauges {
            r.describe_gauge((*name).into(), None, (*help).into());
        }
        metrics::with_local_recorder(r, || self.process.describe());
    }

    /// The counter `name{labels}`; the same series always gets the same atomic.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        Counter::from_arc(self.counter_value(name, labels))
    }

    fn counter_value(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Arc<AtomicU64> {
        let key = key(name, labels);
        let mut map = lock(&self.values.counters);
        let (value, _) = map.entry(key.clone()).or_insert_with(|| {
            let exported = self.recorder.register_counter(&key, &METADATA);
            (Arc::new(AtomicU64::new(0)), exported)
        });
        value.clone()
    }

    /// The counter `name` (no labels), whose value `read` returns when /metrics is rendered: for
    /// a count another crate keeps, such as the log writer's dropped lines.
    pub fn observed_counter(
        &self,
        name: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let value = self.counter_value(name, &[]);
        lock(&self.values.observed).push((value, Box::new(read)));
    }

    /// The gauge `name{labels}`; the same series always gets the same atomic.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let key = key(name, labels);
        let mut map = lock(&self.values.gauges);
        let (value, _) = map.entry(key.clone()).or_insert_with(|| {
            let exported = self.recorder.register_gauge(&key, &METADATA);
            (Arc::new(AtomicU64::new(0f64.to_bits())), exported)
        });
        Gauge::from_arc(value.clone())
    }

    /// Every series of counter `name`: its labels and value.
    pub fn counter_values(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        let map = lock(&self.values.counters);
        map.iter()
            .filter(|(k, _)| k.name() == name)
            .map(|(k, (v, _))| (labels_of(k), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// The sum of every series of counter `name`.
    pub fn counter_sum(&self, name: &str) -> u64 {
        self.counter_values(name).iter().map(|(_, v)| v).sum()
    }

    /// The value of gauge `name` without labels (0 if never set).
    pub fn gauge_value(&self, name: &'static str) -> f64 {
        let map = lock(&self.values.gauges);
        map.get(&key(name, &[]))
            .map_or(0.0, |(v, _)| f64::from_bits(v.load(Ordering::Relaxed)))
    }

    /// The histogram `name{labels}` (a family of `HISTOGRAMS`); the same series always gets
    /// the same buckets.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        debug_assert!(HISTOGRAMS.iter().any(|(n, _)| *n == name), "{name}");
        let mut map = lock(&self.values.histograms);
        Histogram::new(map.entry(key(name, labels)).or_default().clone())
    }

    /// Render the text exposition, refreshing process CPU and memory first.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&*self.recorder, || self.process.collect());
        for (value, read) in lock(&self.values.observed).iter() {
            value.store(read(), Ordering::Relaxed);
        }
        for (value, exported) in lock(&self.values.counters).values() {
            exported.absolute(value.load(Ordering::Relaxed));
        }
        for (value, exported) in lock(&self.values.gauges).values() {
            exported.set(f64::from_bits(value.load(Ordering::Relaxed)));
        }
        let mut text = self.handle.render();
        self.render_histograms(&mut text);
        text
    }

    /// Each histogram family with a series: its HELP and TYPE, then its series by labels.
    fn render_histograms(&self, out: &mut String) {
        let map = lock(&self.values.histograms);
        for (name, help) in HISTOGRAMS {
            let mut series: Vec<_> = map
                .iter()
                .filter(|(k, _)| k.name() == *name)
                .map(|(k, s)| (label_text(&labels_of(k)), s))
                .collect();
            if series.is_empty() {
                continue;
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
            for (labels, s) in series {
                s.render(name, &labels, out);
            }
            out.push('\n');
        }
    }

    /// Drain histogram buffers; called on a timer so memory stays flat between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn labels_of(key: &Key) -> Vec<(String, String)> {
    key.labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect()
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global tracing subscriber. `filter` comes from TOLLGATE_LOG (or --log), RUST_LOG,
/// or config `log.level`, in that order. Colours only on a terminal.
///
/// Lines go to stdout through a background thread (tracing-appender's non-blocking writer), so
/// a request that logs (the access log) never waits on a slow stdout: it queues the line. Past
/// `buffer_lines` queued lines, new ones are dropped instead of waited for, and counted in
/// `tollgate_log_dropped_lines_total`. Keep the returned guard until
/// exit: dropping it writes what is still queued. `None` if a subscriber was already installed.
pub fn init_tracing(
    format: LogFormat,
    filter: &str,
    buffer_lines: usize,
    metrics: &Metrics,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(buffer_lines)
        .lossy(true)
        .finish(std::io::stdout());
    let dropped = writer.error_counter();
    metrics.observed_counter(LOG_DROPPED_LINES, move || dropped.dropped_lines() as u64);
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.is_ok().then_some(guard)
}
