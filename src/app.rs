//! `App::build` binds every listener and returns their real addresses; `run` serves until
//! shutdown, then drains.
//!
//! Wiring only: this is where planes meet. The proxy gets the limiter and the live config; the
//! admin plane gets the readiness latch, the metrics registry and the limiter's counters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::admin::alerts::Alerts;
use crate::admin::feed::ticker::Ticker;
use crate::admin::feed::Feed;
use crate::admin::webhook::Webhook;
use crate::admin::{self, AdminParts, AdminState, Readiness};
use crate::config::live::LiveConfig;
use crate::config::reload::Reloader;
use crate::config::{Config, Overrides, RuntimeConfig, Settings};
use crate::limiter::{Clock, Limiter, MonotonicClock, UsageLog, ViolationTap};
use crate::proxy::forward;
use crate::proxy::listener::{self, ConnLimits};
use crate::proxy::metrics::{ConnMetrics, RouteMetrics};
use crate::proxy::service::ProxyState;
use crate::proxy::tls;
use crate::proxy::workers::Listeners;
use crate::shutdown::{Shutdown, Tracker};
use crate::store::startup::StoreTask;
use crate::store::AnyStore;
use crate::telemetry::Metrics;

/// Distinct (rule, key) denials the feed's tap holds between its one-second drains.
const TAP_KEYS: usize = 10_000;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// How to build an app beyond its config.
pub struct AppOptions {
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    /// The file to reload from (SIGHUP, file change); none in quick mode and most tests.
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    /// Handle SIGTERM/SIGINT (drain and exit) and SIGHUP (reload). The binary sets this.
    pub signals: bool,
}

impl AppOptions {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            clock: Arc::new(MonotonicClock::default()),
            config_path: None,
            overrides: Overrides::default(),
            signals: false,
        }
    }
}

/// A running tollgate.
pub struct App {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    settings: Settings,
    shutdown: Shutdown,
    connections: Tracker,
    readiness: Readiness,
    live: Arc<ArcSwap<RuntimeConfig>>,
    hub: Arc<LiveConfig>,
    limiter: Arc<Limiter>,
    reloader: Option<Arc<Reloader>>,
    _watcher: Option<notify::RecommendedWatcher>,
    signals: bool,
    /// Fired after requests drain, so the last usage is flushed.
    store_stop: Shutdown,
    store_task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Bind the proxy and admin listeners and start serving. /ready turns true before this returns.
    pub async fn build(config: Config, opts: AppOptions) -> Result<App, AppError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let Config {
            settings,
            runtime,
            raw,
        } = config;
        let proxy_listeners = Listeners::bind(&settings).map_err(|source| AppError::Bind {
            what: "proxy",
            addr: settings.listen,
            source,
        })?;
        let admin_listener = bind("admin", settings.admin.listen).await?;
        let proxy_addr = proxy_listeners
            .local_addr()
            .map_err(|e| AppError::Setup(e.to_string()))?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|e| AppError::Setup(e.to_string()))?;
        let tls = settings
            .tls
            .as_ref()
            .map(tls::acceptor)
            .transpose()
            .map_err(AppError::Setup)?;
        let pool = forward::pool(&settings.upstream).map_err(AppError::Setup)?;
        let mut limiter = Limiter::new(opts.clock.clone(), settings.max_keys)
            .with_tap(Arc::new(ViolationTap::new(TAP_KEYS)));
        if settings.database.target.is_some() {
            limiter = limiter.with_usage_log(Arc::new(UsageLog::new()));
        }
        let limiter = Arc::new(limiter);
        let live = Arc::new(ArcSwap::from_pointee(runtime));
        let hub = Arc::new(LiveConfig::new(live.clone(), opts.metrics.clone(), raw));
        let store = StoreTask::open(&settings.database)
            .await
            .map_err(|e| AppError::Setup(format!("usage store: {e}")))?;
        let state = Arc::new(ProxyState {
            config: live.clone(),
            limiter: limiter.clone(),
            pool,
            response_timeout: settings.upstream.response_timeout,
            proto: if tls.is_some() { "https" } else { "http" },
            conn_metrics: ConnMetrics::new(&opts.metrics),
            unmatched: RouteMetrics::new(&opts.metrics, "(none)"),
        });
        let shutdown = Shutdown::default();
        let connections = Tracker::default();
        let readiness = Readiness::default();
        let limits = Arc::new(ConnLimits::new(&settings));
        let shared = listener::Shared::new(state, limits, tls, connections.clone());
        let admin_state = start_admin_plane(
            &settings,
            &readiness,
            &opts.metrics,
            &limiter,
            &hub,
            &store,
            &shutdown,
        )?;
        tokio::spawn(admin::serve(
            admin_listener,
            admin_state,
            shutdown.subscribe(),
        ));
        spawn_housekeeping(&settings, &limiter, &opts.metrics, &shutdown);
        // Export the reload counters at 0 even when there is no file to reload (quick mode).
        for result in ["success", "failure"] {
            let _ = opts
                .metrics
                .counter(crate::telemetry::RELOADS, &[("result", result)]);
        }
        let reloader = opts.config_path.map(|path| {
            Arc::new(Reloader::new(
                path,
                opts.overrides,
                hub.clone(),
                &opts.metrics,
            ))
        });
        let watcher = match &reloader {
            Some(r) => Some(r.watch().map_err(|e| {
                AppError::Setup(format!("cannot watch {}: {e}", r.path().display()))
            })?),
            None => None,
        };
        // After the last step that can fail, so a failed build leaves no worker thread serving.
        proxy_listeners
            .serve(&shared, &shutdown, &settings, &opts.metrics)
            .map_err(|e| AppError::Setup(format!("cannot start the proxy's workers: {e}")))?;
        let store_stop = Shutdown::default();
        let store_task = start_store(
            &settings,
            StoreTask {
                settings: settings.database.clone(),
                live: hub.clone(),
                limiter: limiter.clone(),
                config: live.clone(),
                metrics: opts.metrics.clone(),
                stop: store_stop.clone(),
                final_deadline: settings.drain_timeout,
            },
            store,
            &readiness,
            &shutdown,
        )
        .await;
        tracing::info!(proxy = %proxy_addr, admin = %admin_addr, ready = readiness.is_ready(), "tollgate ready");
        Ok(App {
            proxy_addr,
            admin_addr,
            settings,
            shutdown,
            connections,
            readiness,
            live,
            hub,
            limiter,
            reloader,
            _watcher: watcher,
            signals: opts.signals,
            store_stop,
            store_task,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Trigger this to begin a graceful shutdown.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn config(&self) -> Arc<ArcSwap<RuntimeConfig>> {
        self.live.clone()
    }

    /// The config in force with its file and admin-API parts.
    pub fn live_config(&self) -> Arc<LiveConfig> {
        self.hub.clone()
    }

    pub fn limiter(&self) -> Arc<Limiter> {
        self.limiter.clone()
    }

    pub fn reloader(&self) -> Option<Arc<Reloader>> {
        self.reloader.clone()
    }

    /// Serve until shutdown (a signal, or [`Shutdown::trigger`]), then: /ready fails, the proxy
    /// stops accepting, in-flight requests drain up to `drain_timeout`.
    pub async fn run(self) -> Result<(), AppError> {
        if self.signals {
            self.wait_for_signals().await?;
        } else {
            self.shutdown.wait().await;
        }
        self.readiness.set(false);
        self.shutdown.trigger();
        tracing::info!(open = self.connections.active(), "draining");
        let started = std::time::Instant::now();
        let left = self.connections.drain(self.settings.drain_timeout).await;
        if left > 0 {
            tracing::warn!(left, "drain deadline passed; closing remaining connections");
        }
        // The last flush gets what is left of the drain deadline (at least a second).
        let budget = self
            .settings
            .drain_timeout
            .saturating_sub(started.elapsed())
            .max(std::time::Duration::from_secs(1));
        self.store_stop.trigger();
        if tokio::time::timeout(budget, self.store_task).await.is_err() {
            tracing::error!("shutdown: the usage store did not finish its last flush in time");
        }
        tracing::info!("tollgate stopped");
        Ok(())
    }

    #[cfg(unix)]
    async fn wait_for_signals(&self) -> Result<(), AppError> {
        use tokio::signal::unix::{signal, SignalKind};
        let sig = |k| {
            signal(k).map_err(|e| AppError::Setup(format!("cannot install signal handler: {e}")))
        };
        let (mut term, mut int, mut hup) = (
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
            sig(SignalKind::hangup())?,
        );
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); return Ok(()) }
                _ = int.recv() => { tracing::info!("SIGINT received"); return Ok(()) }
                _ = self.shutdown.wait() => return Ok(()),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received");
                    if let Some(r) = self.reloader.clone() {
                        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                    }
                }
            }
        }
    }

    #[cfg(not(unix))]
    async fn wait_for_signals(&self) -> Result<(), AppError> {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = self.shutdown.wait() => Ok(()),
        }
    }
}

/// Starts the store task (if a store is configured); /ready turns true once stored config
/// entries are restored and usage is rehydrated, which `build` waits for up to
/// `STORE_READY_WAIT` (the proxy serves either way).
async fn start_store(
    settings: &Settings,
    task: StoreTask,
    store: Option<Arc<AnyStore>>,
    readiness: &Readiness,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    const STORE_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
    let handle = task.spawn(store, move |_rows| {
        if !shutdown.is_triggered() {
            readiness.set(true);
        }
        let _ = tx.send(());
    });
    if tokio::time::timeout(STORE_READY_WAIT, rx).await.is_err() {
        tracing::warn!(store = ?settings.database.target.as_ref().map(ToString::to_string), "usage store not ready yet: /ready stays false until it is");
    }
    handle
}

/// The feed, its ticker, alerts and the webhook, and the admin plane's state over them.
fn start_admin_plane(
    settings: &Settings,
    readiness: &Readiness,
    metrics: &Metrics,
    limiter: &Arc<Limiter>,
    hub: &Arc<LiveConfig>,
    store: &Option<Arc<AnyStore>>,
    shutdown: &Shutdown,
) -> Result<Arc<AdminState>, AppError> {
    let admin_settings = &settings.admin;
    let feed = Arc::new(Feed::new(admin_settings.feed.clone()));
    let alerts = Arc::new(Alerts::new(admin_settings.alerts.clone()));
    let webhook = admin_settings
        .alerts
        .webhook
        .clone()
        .map(|w| Webhook::start(w, metrics))
        .transpose()
        .map_err(|e| AppError::Setup(format!("alert webhook: {e}")))?;
    let ticker = Ticker {
        feed: feed.clone(),
        limiter: limiter.clone(),
        config: hub.clone(),
        metrics: metrics.clone(),
        alerts: alerts.clone(),
        webhook,
        max_keys: settings.max_keys,
    };
    tokio::spawn(ticker.run(shutdown.clone()));
    let parts = AdminParts {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        limiter: limiter.clone(),
        config: hub.clone(),
        store: store.clone(),
        feed,
        alerts,
    };
    Ok(Arc::new(AdminState::new(parts, admin_settings)))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

/// The idle-key sweeper and the metrics upkeep, both until shutdown.
fn spawn_housekeeping(
    settings: &Settings,
    limiter: &Arc<Limiter>,
    metrics: &Metrics,
    shutdown: &Shutdown,
) {
    let (limiter, every, stop) = (limiter.clone(), settings.sweep_interval, shutdown.clone());
    // A sweep walks every tracked key (a million takes tens of milliseconds): not on the
    // proxy's runtime thread.
    crate::background::spawn_below("tg-sweep", async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => { limiter.sweep(limiter.now_ms()); }
                _ = stop.wait() => return,
            }
        }
    });
    let (metrics, stop) = (metrics.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => metrics.upkeep(),
                _ = stop.wait() => return,
            }
        }
    });
}
