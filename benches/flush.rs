//! Store flush throughput: one [`Batch`] of N active keys (N = 100k and 1M usage rows, no
//! violations) written by `Store::flush` into a fresh Postgres database (from `DATABASE_URL`) and
//! a fresh SQLite file in a temp dir. Plain `main`, no criterion: one flush of 1M rows takes
//! seconds, so a few timed repetitions say enough.
//!
//! Per backend and N, each repetition starts from an empty `usage` table and times:
//! - `insert`: the first flush, every row new (`INSERT`);
//! - `update`: a second flush of the same keys under a new batch id, every row a conflict
//!   (`ON CONFLICT DO UPDATE count = count + excluded.count`).
//!
//! Timed is the whole `Store::flush` call (coalescing, encoding the arrays or JSON, the one
//! transaction, commit), not building the batch. Reported: the median of `REPS` repetitions in
//! seconds and rows/s (N / median), with the min and max beside it.
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench flush`.
//! Without `DATABASE_URL` the Postgres half is skipped with a loud message. `FLUSH_BENCH_SIZES`
//! (comma separated, e.g. `1000,10000`) and `FLUSH_BENCH_REPS` override the defaults.
//!
//! Note: `PgStore` sets `statement_timeout = 10s` on its connections, so a flush of one batch
//! taking longer than that fails here exactly as it would in the proxy.

use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
/// The test suite's database helpers: a fresh `tollgate_t_<hex>` database, dropped at the end.
#[path = "../tests/support/db.rs"]
mod db;

use tollgate::store::{connect, AnyStore, Batch, FlushOutcome, Store, StoreTarget, UsageDelta};

const DEFAULT_SIZES: [usize; 2] = [100_000, 1_000_000];
const DEFAULT_REPS: usize = 3;
/// An hour start (2025-01-01T00:00:00Z), like the batcher's quota rows.
const PERIOD_START: i64 = 1_735_689_600;

struct Result_ {
    backend: &'static str,
    rows: usize,
    phase: &'static str,
    /// One per successful repetition.
    times: Vec<Duration>,
    /// Why the repetitions stopped early, if they did.
    failed: Option<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes = env_list("FLUSH_BENCH_SIZES").unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    let reps = std::env::var("FLUSH_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r: &usize| r > 0)
        .unwrap_or(DEFAULT_REPS);
    let started = Instant::now();
    let mut results = Vec::new();

    match db::fresh_pg_url().await {
        Some(url) => {
            // In its own task, so the database is dropped even when a flush panics.
            let task = tokio::spawn(run_target(
                "postgres",
                StoreTarget::Postgres { url: url.clone() },
                sizes.clone(),
                reps,
            ));
            let outcome = task.await;
            db::drop_pg_database(&url).await;
            match outcome {
                Ok(rows) => results.extend(rows),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        None => {
            eprintln!();
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!("!!! SKIPPING the Postgres flush bench: DATABASE_URL is unset.");
            eprintln!("!!! e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench flush");
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!();
        }
    }

    let dir = tempfile::tempdir().expect("a temp dir for the SQLite file");
    let path = dir.path().join("flush-bench.db");
    results.extend(run_target("sqlite", StoreTarget::Sqlite { path }, sizes, reps).await);
    drop(dir);

    print_table(&results, reps);
    eprintln!("total bench time: {:.1} s", started.elapsed().as_secs_f64());
}

/// Opens and migrates the store, then runs every size against it.
async fn run_target(
    backend: &'static str,
    target: StoreTarget,
    sizes: Vec<usize>,
    reps: usize,
) -> Vec<Result_> {
    let store = connect(&target).await.expect("open the store");
    store.migrate().await.expect("migrate the store");
    let mut results = Vec::new();
    for n in sizes {
        results.extend(run_size(backend, &target, &store, n, reps).await);
    }
    store.close().await;
    results
}

/// `reps` × (empty the table, flush N inserts, flush N updates) for one backend and size.
async fn run_size(
    backend: &'static str,
    target: &StoreTarget,
    store: &AnyStore,
    n: usize,
    reps: usize,
) -> Vec<Result_> {
    let usage = deltas(n);
    let mut insert = Vec::with_capacity(reps);
    let mut update = Vec::with_capacity(reps);
    let mut failed = None;
    for rep in 0..reps {
        reset(target).await;
        let first = Batch {
            id: format!("bench-{backend}-{n}-{rep}-insert"),
            usage: usage.clone(),
            ..Batch::default()
        };
        let second = Batch {
            id: format!("bench-{backend}-{n}-{rep}-update"),
            ..first.clone()
        };
        // A failed first flush rolled back, so a second one would insert again: stop this size.
        let result = match timed_flush(store, &first).await {
            Ok(i) => timed_flush(store, &second).await.map(|u| (i, u)),
            Err(e) => Err(format!("1st flush: {e}")),
        };
        match result {
            Ok((i, u)) => {
                eprintln!(
                    "{backend} n={n} rep={rep}: insert {:.3} s, update {:.3} s",
                    i.as_secs_f64(),
                    u.as_secs_f64()
                );
                insert.push(i);
                update.push(u);
            }
            Err(e) => {
                eprintln!("!!! {backend} n={n} rep={rep}: FAILED: {e}");
                failed = Some(e);
                break;
            }
        }
    }
    reset(target).await;
    let result = |backend, phase, times, failed: &Option<String>| Result_ {
        backend,
        rows: n,
        phase,
        times,
        failed: failed.clone(),
    };
    let mut out = vec![
        result(backend, "insert", insert, &failed),
        result(backend, "update", update, &failed),
    ];
    // When the store's own flush failed on Postgres (its 10 s statement_timeout), time the same
    // upsert statement once on a connection without that timeout, to show how far off it is.
    if let (Some(_), StoreTarget::Postgres { url }) = (&failed, target) {
        let (i, u) = raw_pg_flushes(url, &usage).await;
        eprintln!(
            "{backend} n={n} raw SQL, no statement_timeout: insert {:.3} s, update {:.3} s",
            i.as_secs_f64(),
            u.as_secs_f64()
        );
        let raw = "postgres, same SQL without the 10 s statement_timeout (1 run)";
        out.push(result(raw, "insert", vec![i], &None));
        out.push(result(raw, "update", vec![u], &None));
        reset(target).await;
    }
    out
}

/// The store's Postgres usage upsert (copied from `src/store/postgres/upsert.rs`), in one
/// transaction with the batch-id insert, twice (insert, then update), on a plain connection
/// with `statement_timeout = 0`.
async fn raw_pg_flushes(url: &str, rows: &[UsageDelta]) -> (Duration, Duration) {
    let mut conn = db::connect(url).await;
    sqlx::raw_sql("SET statement_timeout = 0")
        .execute(&mut conn)
        .await
        .expect("SET statement_timeout");
    let mut times = Vec::new();
    for id in ["raw-insert", "raw-update"] {
        let started = Instant::now();
        let mut tx = conn.begin().await.expect("BEGIN");
        sqlx::query("INSERT INTO flush_batches (batch_id, flushed_at_ms) VALUES ($1, 0)")
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("insert the batch id");
        sqlx::query(
            "INSERT INTO usage (rule, key, period, period_start, count, updated_at_ms)
             SELECT rule, key, period, period_start, count, $6
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[])
                  AS d(rule, key, period, period_start, count)
             ON CONFLICT (rule, key, period, period_start) DO UPDATE
             SET count = usage.count + excluded.count, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(rows.iter().map(|r| &*r.rule).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| &*r.key).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.period).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.period_start).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.count).collect::<Vec<_>>())
        .bind(0_i64)
        .execute(&mut *tx)
        .await
        .expect("the usage upsert without statement_timeout");
        tx.commit().await.expect("COMMIT");
        times.push(started.elapsed());
    }
    conn.close().await.ok();
    (times[0], times[1])
}

/// The wall time of one `Store::flush`, or why it failed (with the time it took to fail).
async fn timed_flush(store: &AnyStore, batch: &Batch) -> Result<Duration, String> {
    let started = Instant::now();
    let outcome = store.flush(batch).await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(FlushOutcome::Applied) => Ok(elapsed),
        Ok(FlushOutcome::AlreadyApplied) => panic!("batch {} was already applied", batch.id),
        Err(e) => Err(format!("failed after {:.1} s: {e}", elapsed.as_secs_f64())),
    }
}

/// N distinct keys of one rule and hour, as N active API keys produce them.
/// `n` rows in the order a drain yields them: the limiter table's hash order, not key order.
fn deltas(n: usize) -> Vec<UsageDelta> {
    let rule: std::sync::Arc<str> = "per-key".into();
    let mut order: Vec<usize> = (0..n).collect();
    // A fixed odd multiplier scatters the keys like a hash would, the same way every run.
    order.sort_by_key(|&i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order
        .into_iter()
        .map(|i| UsageDelta {
            rule: rule.clone(),
            key: format!("key-{i:08}").into(),
            period: "hour",
            period_start: PERIOD_START,
            count: 1 + (i % 7) as i64,
        })
        .collect()
}

/// Empties `usage` and `flush_batches` (untimed), through a connection of its own since the
/// store exposes no raw SQL, and flushes dirty pages so one repetition does not pay for the last.
async fn reset(target: &StoreTarget) {
    match target {
        StoreTarget::Postgres { url } => {
            let mut conn = db::connect(url).await;
            // One statement per call: VACUUM refuses to run in a multi-statement string.
            for sql in [
                "TRUNCATE usage, flush_batches",
                "VACUUM ANALYZE usage",
                "CHECKPOINT",
            ] {
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            conn.close().await.ok();
        }
        StoreTarget::Sqlite { path } => {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .connect()
                .await
                .expect("open the SQLite file");
            sqlx::raw_sql(
                "DELETE FROM usage; DELETE FROM flush_batches; PRAGMA wal_checkpoint(TRUNCATE)",
            )
            .execute(&mut conn)
            .await
            .expect("empty the SQLite usage table");
            conn.close().await.ok();
        }
    }
}

fn print_table(results: &[Result_], reps: usize) {
    println!();
    println!("Store::flush of one batch of N usage rows (median of {reps}; min..max in seconds)");
    println!();
    println!("| backend | N rows | flush | median s | rows/s | min..max s |");
    println!("|---|---:|---|---:|---:|---|");
    let mut failures = Vec::new();
    for r in results {
        let phase = match r.phase {
            "insert" => "1st (all insert)",
            _ => "2nd (all conflict-update)",
        };
        let mut t: Vec<f64> = r.times.iter().map(Duration::as_secs_f64).collect();
        t.sort_by(f64::total_cmp);
        let note = match &r.failed {
            Some(e) => {
                failures.push(format!("{} N={}: {e}", r.backend, r.rows));
                format!(" (FAILED after {} ok)", t.len())
            }
            None => String::new(),
        };
        if t.is_empty() {
            println!(
                "| {} | {} | {phase} | FAILED | - | -{note} |",
                r.backend,
                group(r.rows as u64)
            );
            continue;
        }
        let median = t[t.len() / 2];
        println!(
            "| {} | {} | {phase} | {:.3} | {} | {:.3}..{:.3}{note} |",
            r.backend,
            group(r.rows as u64),
            median,
            group((r.rows as f64 / median) as u64),
            t[0],
            t[t.len() - 1]
        );
    }
    println!();
    failures.dedup();
    for f in failures {
        println!("- {f}");
    }
}

/// 1234567 → "1 234 567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn env_list(name: &str) -> Option<Vec<usize>> {
    let v = std::env::var(name).ok()?;
    let sizes: Vec<usize> = v
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect();
    (!sizes.is_empty()).then_some(sizes)
}
