//! Startup settings: listeners, timeouts, pools, limiter size, logging.

use std::path::PathBuf;
use std::time::Duration;

use super::super::parse;
use super::super::raw::RawConfig;
use super::super::settings::{
    DatabaseSettings, LogSettings, RuntimeShape, Settings, TlsFiles, UpstreamSettings,
};
use super::{addr, Errors};
use crate::store::StoreTarget;
use crate::telemetry::LogFormat;

/// A duration that must be greater than zero (every timer here would spin or panic on zero).
pub(super) fn dur(
    errs: &mut Errors,
    field: &str,
    value: &Option<String>,
    default: u64,
) -> Duration {
    let Some(v) = value else {
        return Duration::from_secs(default);
    };
    let parsed = parse::duration(v).and_then(|d| {
        if d.is_zero() {
            Err(format!("{v:?} must be greater than zero"))
        } else {
            Ok(d)
        }
    });
    errs.check(field, parsed)
        .unwrap_or(Duration::from_secs(default))
}

/// More threads than this is a typo, not a machine: each is a thread and a runtime.
const MAX_WORKERS: usize = 1024;

fn positive(
    errs: &mut Errors,
    field: &str,
    value: Option<usize>,
    default: usize,
    min: usize,
) -> usize {
    let v = value.unwrap_or(default);
    if v < min {
        errs.push(field, format!("must be at least {min}, got {v}"));
    }
    v
}

pub(super) fn settings(raw: &RawConfig, errs: &mut Errors) -> Option<Settings> {
    let s = &raw.server;
    let listen = addr(errs, "server.listen", s.listen.as_deref(), "127.0.0.1:8080");
    let admin = super::admin::admin(raw, errs);
    let header_timeout = dur(errs, "server.header_timeout", &s.header_timeout, 10);
    let idle_timeout = dur(errs, "server.idle_timeout", &s.idle_timeout, 60);
    let settings = Settings {
        listen: listen?,
        workers: {
            let workers = s.workers.unwrap_or(0);
            if workers > MAX_WORKERS {
                errs.push(
                    "server.workers",
                    format!("must be at most {MAX_WORKERS} (0 means one per core), got {workers}"),
                );
            }
            workers
        },
        runtime: runtime_shape(s.runtime.as_deref(), errs),
        tls: s.tls.as_ref().map(|t| TlsFiles {
            cert: PathBuf::from(&t.cert),
            key: PathBuf::from(&t.key),
        }),
        header_timeout,
        idle_timeout,
        max_header_bytes: positive(
            errs,
            "server.max_header_bytes",
            s.max_header_bytes,
            16384,
            8192,
        ),
        max_headers: positive(errs, "server.max_headers", s.max_headers, 100, 1),
        max_connections: positive(errs, "server.max_connections", s.max_connections, 10_000, 1),
        drain_timeout: dur(errs, "server.drain_timeout", &s.drain_timeout, 30),
        admin: admin?,
        upstream: upstream(raw, errs),
        max_keys: positive(errs, "limits.max_keys", raw.limits.max_keys, 1_000_000, 1),
        sweep_interval: dur(
            errs,
            "limits.sweep_interval",
            &raw.limits.sweep_interval,
            10,
        ),
        log: log(raw, errs),
        database: database(raw, errs),
    };
    flush_lag_fits(raw, &settings, errs);
    Some(settings)
}

/// Hourly usage rows wait up to `hour_flush_interval` on every healthy cycle, so the store's
/// oldest pending usage reaches it under load: a `flush_lag` alert at or below it would always
/// fire.
fn flush_lag_fits(raw: &RawConfig, settings: &Settings, errs: &mut Errors) {
    let (db, lag) = (&settings.database, settings.admin.alerts.flush_lag);
    if db.target.is_none() || db.hour_flush_interval < lag {
        return;
    }
    let field = match raw.database.hour_flush_interval {
        Some(_) => "database.hour_flush_interval",
        None => "database.flush_interval",
    };
    errs.push(
        field,
        format!(
            "hourly usage rows wait up to {:?} to be written, not less than admin.alerts.flush_lag ({lag:?}): the flush-lag alert would fire on every healthy cycle; shorten the interval or raise flush_lag",
            db.hour_flush_interval
        ),
    );
}

fn upstream(raw: &RawConfig, errs: &mut Errors) -> UpstreamSettings {
    let u = &raw.upstream;
    UpstreamSettings {
        connect_timeout: dur(errs, "upstream.connect_timeout", &u.connect_timeout, 2),
        response_timeout: dur(errs, "upstream.response_timeout", &u.response_timeout, 30),
        pool_idle_timeout: dur(errs, "upstream.pool_idle_timeout", &u.pool_idle_timeout, 90),
        pool_max_idle: u.pool_max_idle.unwrap_or(256),
        ca_file: u.ca_file.as_ref().map(PathBuf::from),
    }
}

fn runtime_shape(text: Option<&str>, errs: &mut Errors) -> RuntimeShape {
    let Some(text) = text else {
        return RuntimeShape::PerWorker;
    };
    RuntimeShape::parse(text).unwrap_or_else(|| {
        errs.push(
            "server.runtime",
            format!("expected \"per_worker\" or \"work_stealing\", got {text:?}"),
        );
        RuntimeShape::PerWorker
    })
}

fn log(raw: &RawConfig, errs: &mut Errors) -> LogSettings {
    let format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errs.push(
                "log.format",
                format!("expected \"text\" or \"json\", got {other:?}"),
            );
            LogFormat::Text
        }
    };
    LogSettings {
        format,
        level: raw.log.level.clone(),
        buffer_lines: positive(errs, "log.buffer_lines", raw.log.buffer_lines, 131_072, 1),
    }
}

fn database(raw: &RawConfig, errs: &mut Errors) -> DatabaseSettings {
    let d = &raw.database;
    let target = match (&d.url, d.enabled.unwrap_or(true)) {
        (_, false) => None,
        (Some(url), true) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(StoreTarget::Postgres { url: url.clone() })
        }
        (Some(url), true) => {
            errs.push(
                "database.url",
                format!(
                    "{} is not a postgres:// URL; for SQLite set database.sqlite_path instead",
                    StoreTarget::Postgres { url: url.clone() }
                ),
            );
            None
        }
        (None, true) => Some(StoreTarget::Sqlite {
            path: PathBuf::from(d.sqlite_path.as_deref().unwrap_or("tollgate.db")),
        }),
    };
    let flush_interval = dur(errs, "database.flush_interval", &d.flush_interval, 1);
    // Unset: 10 s, or the flush interval when that is longer.
    let hour_flush_interval = match &d.hour_flush_interval {
        None => flush_interval.max(Duration::from_secs(10)),
        set => {
            let hours = dur(errs, "database.hour_flush_interval", set, 10);
            if hours < flush_interval {
                errs.push(
                    "database.hour_flush_interval",
                    format!("{hours:?} is shorter than database.flush_interval ({flush_interval:?}); hour rows are written on flush ticks"),
                );
            }
            hours
        }
    };
    DatabaseSettings {
        target,
        flush_interval,
        hour_flush_interval,
        sync_interval: dur(errs, "database.sync_interval", &d.sync_interval, 2),
        max_pending: positive(errs, "database.max_pending", d.max_pending, 1_000_000, 1),
        migrate_on_start: d.migrate_on_start.unwrap_or(true),
    }
}
