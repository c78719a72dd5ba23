//! The `tollgate` binary: flags, logging, config, then `App::build(..).run()`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tollgate::config::{self, quick_config, Config, Overrides, RuntimeShape};
use tollgate::limiter::MonotonicClock;
use tollgate::store::{self, Store as _};
use tollgate::telemetry::{init_tracing, LogFormat, Metrics};
use tollgate::{App, AppOptions};

/// jemalloc rather than glibc's malloc: glibc keeps much of what a burst freed (the store's hour
/// drain of a million rows), where jemalloc returns it (1M keys with SQLite: 215-226 MB settled
/// with glibc, 196-201 with jemalloc), and a proxied request costs about 4% fewer instructions.
/// The crate's `unprefixed_malloc_on_supported_platforms` feature routes C code's `malloc` (the
/// bundled SQLite) to it as well. See docs/PERFORMANCE.md.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A reverse-proxy rate-limiting sidecar.
#[derive(Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (watched for changes; SIGHUP reloads it).
    #[arg(
        long,
        short,
        default_value = "config/tollgate.toml",
        env = "TOLLGATE_CONFIG"
    )]
    config: PathBuf,
    /// Proxy listen address; overrides server.listen.
    #[arg(long, env = "TOLLGATE_LISTEN")]
    listen: Option<String>,
    /// Admin listen address; overrides admin.listen.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Admin bearer token; overrides admin.token.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Read-only admin bearer token; overrides admin.read_token.
    #[arg(long, env = "TOLLGATE_ADMIN_READ_TOKEN", hide_env_values = true)]
    admin_read_token: Option<String>,
    /// Quick mode: upstream URL (repeat for round-robin). No config file is read.
    #[arg(long)]
    upstream: Vec<String>,
    /// Quick mode: a sliding-window limit such as 100/s or 1000/h (repeatable).
    #[arg(long)]
    limit: Vec<String>,
    /// Quick mode: the key, e.g. ip, header:x-api-key, query:key, or several joined by commas.
    #[arg(long, default_value = "ip")]
    key: String,
    /// Proxy worker threads (0 = one per core); overrides server.workers.
    #[arg(long, env = "TOLLGATE_WORKERS")]
    workers: Option<usize>,
    /// How workers share connections: per_worker (own runtime and SO_REUSEPORT socket each) or
    /// work_stealing; overrides server.runtime.
    #[arg(long, env = "TOLLGATE_RUNTIME")]
    runtime: Option<String>,
    /// Tracked (rule, key) pairs at most; overrides limits.max_keys.
    #[arg(long, env = "TOLLGATE_MAX_KEYS")]
    max_keys: Option<usize>,
    /// Keep usage in memory only (no SQLite or Postgres store); overrides database.enabled.
    #[arg(long, env = "TOLLGATE_NO_STORE")]
    no_store: bool,
    /// Postgres URL for the usage store when the config file names none.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log filter such as info or tollgate=debug; overrides log.level (RUST_LOG also works).
    #[arg(long, env = "TOLLGATE_LOG")]
    log: Option<String>,
    /// Log format; overrides log.format.
    #[arg(long, value_enum)]
    log_format: Option<Format>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file: exit 0, or print every error (field and reason) and exit 64.
    CheckConfig { path: PathBuf },
    /// Apply pending migrations to the usage store named by --config (or DATABASE_URL).
    Migrate {
        /// List applied and pending migrations instead; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Run the deploy checks against a running instance: health, the config API, the WebSocket
    /// feed, the store. One line per check; exit 0 if all pass, 1 otherwise.
    Verify {
        /// The admin port's base URL, e.g. http://127.0.0.1:9091.
        #[arg(long)]
        admin: String,
        /// A read (or admin) token.
        #[arg(long, env = "TOLLGATE_VERIFY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// How long the feed may take to send a heartbeat or stats.
        #[arg(long, default_value = "15s", value_parser = parse_wait)]
        wait: std::time::Duration,
    },
}

fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(text)
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

const EXIT_CONFIG: u8 = 64;

/// Test-only, deliberately left out of `--help` and the README's tables: Unix milliseconds the
/// limiter clock starts at instead of the wall clock, so a load test can cross a quota's local
/// midnight in seconds (`loadtest/quota-boundary.sh`). Never set it in production.
const CLOCK_START_ENV: &str = "TOLLGATE_CLOCK_START_MS";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let metrics = Metrics::new();
    let overrides = Overrides {
        listen: cli.listen.clone(),
        admin_listen: cli.admin_listen.clone(),
        admin_token: cli.admin_token.clone(),
        admin_read_token: cli.admin_read_token.clone(),
        log: cli.log.clone(),
        workers: cli.workers,
        runtime: cli.runtime.clone(),
        max_keys: cli.max_keys,
        no_store: cli.no_store,
        database_url: cli.database_url.clone(),
    };
    if let Some(Command::CheckConfig { path }) = &cli.command {
        // The environment's overrides apply, so a file relying on TOLLGATE_ADMIN_TOKEN checks as it runs.
        return match config::load_file(path, &overrides, &metrics) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    if let Some(Command::Verify { admin, token, wait }) = &cli.command {
        let check = tollgate::verify::Verify {
            admin: admin.clone(),
            token: token.clone(),
            wait: *wait,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let passed = runtime.map(|rt| rt.block_on(check.run()));
        return if matches!(passed, Ok(true)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(Command::Migrate { status }) = &cli.command {
        return migrate(&cli, &overrides, &metrics, *status);
    }
    let (config, path) = match load(&cli, &overrides, &metrics) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = match cli.log_format {
        Some(Format::Json) => LogFormat::Json,
        Some(Format::Text) => LogFormat::Text,
        None => config.settings.log.format,
    };
    let filter = cli
        .log
        .clone()
        .or(std::env::var("RUST_LOG").ok())
        .or(config.settings.log.level.clone())
        .unwrap_or_else(|| "info".into());
    // Held to the end of main: dropping it writes the log lines still queued.
    let _log_writer = init_tracing(format, &filter, config.settings.log.buffer_lines, &metrics);
    match run(config, path, overrides, metrics) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tollgate migrate [--status]`: exit 0 when done, 1 when the store fails, 64 on bad config.
fn migrate(cli: &Cli, overrides: &Overrides, metrics: &Metrics, status: bool) -> ExitCode {
    let config = match load(cli, overrides, metrics) {
        Ok((config, _)) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(target) = config.settings.database.target else {
        eprintln!("tollgate: database.enabled = false: there is no store to migrate");
        return ExitCode::from(EXIT_CONFIG);
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let store = store::connect(&target).await?;
                if !status {
                    store.migrate().await?;
                }
                let states = store.migration_status().await?;
                Ok::<_, store::StoreError>(format!("{target}\n{}", store::format_status(&states)))
            })
            .map_err(anyhow::Error::from)
        });
    match outcome {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The limiter clock: the wall clock, or the instant in [`CLOCK_START_ENV`] when it is set.
fn clock() -> anyhow::Result<MonotonicClock> {
    let Ok(text) = std::env::var(CLOCK_START_ENV) else {
        return Ok(MonotonicClock::new());
    };
    let start_ms: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{CLOCK_START_ENV}={text:?} is not Unix milliseconds"))?;
    tracing::warn!(
        start_ms,
        "{CLOCK_START_ENV} is set: the limiter clock starts there, not at the wall clock (tests only)"
    );
    Ok(MonotonicClock::starting_at(start_ms))
}

/// Quick mode when --upstream is given, else the config file.
fn load(
    cli: &Cli,
    overrides: &Overrides,
    metrics: &Metrics,
) -> Result<(Config, Option<PathBuf>), config::ConfigErrors> {
    if cli.upstream.is_empty() && !cli.limit.is_empty() {
        return Err(config::ConfigErrors {
            origin: "command line".into(),
            errors: vec![config::ConfigError {
                field: "--limit".into(),
                reason: "quick mode needs --upstream".into(),
            }],
        });
    }
    if cli.upstream.is_empty() {
        let config = config::load_file(&cli.config, overrides, metrics)?;
        return Ok((config, Some(cli.config.clone())));
    }
    let mut raw = quick_config(None, &cli.upstream, &cli.limit, &cli.key);
    overrides.apply(&mut raw);
    Ok((config::validate(raw, "command line", metrics)?, None))
}

fn run(
    config: Config,
    path: Option<PathBuf>,
    overrides: Overrides,
    metrics: Metrics,
) -> anyhow::Result<()> {
    // Per worker (and any single worker): the main thread runs worker 0 on a current-thread
    // runtime, which skips the work-stealing scheduler's bookkeeping; `App::build` starts the
    // others on their own threads.
    let workers = config.settings.proxy_workers();
    let mut rt = match config.settings.runtime {
        _ if workers == 1 => tokio::runtime::Builder::new_current_thread(),
        RuntimeShape::PerWorker => tokio::runtime::Builder::new_current_thread(),
        RuntimeShape::WorkStealing => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
    };
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut opts = AppOptions::new(metrics);
        opts.clock = Arc::new(clock()?);
        opts.config_path = path;
        opts.overrides = overrides;
        opts.signals = true;
        let app = App::build(config, opts).await?;
        app.run().await?;
        Ok(())
    })
}
