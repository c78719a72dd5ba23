//! Test databases: a fresh, empty Postgres database per test, named `tollgate_t_<random hex>`.
//!
//! Reads `DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`, trust auth). Without it,
//! CI (`CI=true`) fails loudly and a developer's run skips the Postgres half with a warning.

use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// The URL of a new empty database on the `DATABASE_URL` server, or `None` (after a loud
/// warning) when `DATABASE_URL` is unset outside CI. Panics in CI when it is unset, and
/// whenever the server cannot create the database.
pub async fn fresh_pg_url() -> Option<String> {
    let base = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("DATABASE_URL must be set in CI")
        }
        _ => {
            // Straight to stderr, past the test harness's capture, once per test binary.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPING postgres store tests: DATABASE_URL unset"
                );
            });
            return None;
        }
    };
    let name = format!("tollgate_t_{:016x}", random_u64());
    let mut admin = connect(&base).await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    admin.close().await.ok();
    Some(with_database(&base, &name))
}

/// Drops a database made by [`fresh_pg_url`], closing any connection still open to it.
pub async fn drop_pg_database(url: &str) {
    let options = PgConnectOptions::from_str(url).expect("a URL from fresh_pg_url");
    let name = options
        .get_database()
        .expect("a URL from fresh_pg_url names its database")
        .to_owned();
    assert!(name.starts_with("tollgate_t_"), "refusing to drop {name}");
    let mut admin = connect(&with_database(url, "postgres")).await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    admin.close().await.ok();
}

/// A single connection to `url`; panics with the server's error.
pub async fn connect(url: &str) -> sqlx::PgConnection {
    let options = PgConnectOptions::from_str(url).expect("DATABASE_URL is a postgres URL");
    options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the DATABASE_URL server: {e}"))
}

/// `url` with its path (the database name) replaced by `name`, query kept.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let path_start = authority_start + rest.find(['/', '?']).unwrap_or(rest.len());
    let query_start = url[path_start..]
        .find('?')
        .map_or(url.len(), |i| path_start + i);
    format!("{}/{name}{}", &url[..path_start], &url[query_start..])
}

fn random_u64() -> u64 {
    // RandomState is seeded randomly per process; the clock and a counter separate calls.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}
