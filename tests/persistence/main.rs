//! Write-behind persistence end to end: tollgate in-process on a real SQLite file or a real
//! Postgres database (a fresh one per test, see `support/db.rs`), requests over loopback, totals
//! read back through the store.
//!
//! - this file: exact accounting and restarts, against both stores;
//! - `outage.rs`: Postgres behind a relay that is cut mid-run and during a commit;
//! - `replicas.rs`: three instances sharing one Postgres quota;
//! - `backlog.rs`: a backlog of several batches through the flusher itself.

#[path = "../support/mod.rs"]
mod support;

mod backlog;
mod outage;
mod replicas;

use std::future::Future;

use backlog::a_backlog_of_many_batches_is_written_whole;
use support::db::{drop_pg_database, fresh_pg_url};
use support::*;
use tollgate::store::{connect, AnyStore, Store, StoreTarget, ViolationFilter};

/// The clock's start in every TestTollgate: 1970-01-01T10:00Z, so the hour row starts at 36000 s.
const HOUR_START: i64 = 36_000;

/// A config of one route with one rule keyed by `x-api-key`, on the store `database`.
fn config(limits: &str, database: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[database]
{database}

[[rules]]
name = "quota"
key = "header:x-api-key"
limits = {limits}

[[routes]]
name = "api"
rules = ["quota"]
[routes.direct]
body = "ok"
"#
    )
}

/// Where a test's store lives; `section` is its `[database]` body.
struct Db {
    target: StoreTarget,
    section: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        Db {
            section: format!(
                "sqlite_path = {:?}\nflush_interval = \"100ms\"\nhour_flush_interval = \"100ms\"",
                path.display().to_string()
            ),
            target: StoreTarget::Sqlite { path },
            _dir: Some(dir),
        }
    }

    fn postgres(url: &str) -> Db {
        Db {
            section: format!(
                "url = {url:?}\nflush_interval = \"100ms\"\nhour_flush_interval = \"100ms\"\nsync_interval = \"100ms\""
            ),
            target: StoreTarget::Postgres { url: url.into() },
            _dir: None,
        }
    }

    async fn store(&self) -> AnyStore {
        connect(&self.target).await.unwrap()
    }
}

/// Runs `case` on SQLite and, when DATABASE_URL is set (always in CI), on a fresh Postgres db.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Db::sqlite()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::with_pg(|url| super::$case(super::Db::postgres(&url))).await;
            })*
        }
    };
}

both_stores!(
    usage_and_violations_are_exact,
    hour_rows_wait_for_their_interval_and_shutdown_writes_them,
    a_restart_keeps_a_spent_quota,
    zoned_quotas_survive_restarts_across_dst_and_a_month_boundary,
    a_backlog_of_many_batches_is_written_whole
);

/// Runs `case` with the URL of a fresh Postgres database, dropped afterwards.
pub async fn with_pg<F: Future<Output = ()>>(case: impl FnOnce(String) -> F) {
    let Some(url) = fresh_pg_url().await else {
        return;
    };
    case(url.clone()).await;
    drop_pg_database(&url).await;
}

/// The sum of the usage rows of the clock's hour, and of real and shadow violation rows.
async fn totals(store: &impl Store) -> (i64, i64) {
    let usage = store.usage_for_period("hour", HOUR_START).await.unwrap();
    let filter = ViolationFilter {
        shadow: Some(false),
        limit: ViolationFilter::MAX_PAGE,
        ..ViolationFilter::default()
    };
    let violations = store.violations(&filter).await.unwrap();
    (
        usage.iter().map(|r| r.count).sum(),
        violations.iter().map(|r| r.count).sum(),
    )
}

async fn usage_and_violations_are_exact(db: Db) {
    let t = TestTollgate::from_text(&config(r#"["7/m"]"#, &db.section), None).await;
    let (mut allowed, mut denied) = (0, 0);
    for i in 0..600 {
        let key = format!("key-{}", i % 50);
        match get(&t.url("/x"), &[("x-api-key", &key)])
            .await
            .status
            .as_u16()
        {
            200 => allowed += 1,
            429 => denied += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (allowed, denied),
        (350, 250),
        "7 per key per minute, 50 keys"
    );
    t.stop().await;
    let store = db.store().await;
    assert_eq!(totals(&store).await, (allowed, denied));
    let rows = store.usage_for_period("hour", HOUR_START).await.unwrap();
    assert_eq!(
        rows.len(),
        50,
        "one usage row per key and hour, not per request"
    );
    let filter = ViolationFilter {
        key: Some("key-0".into()),
        ..ViolationFilter::default()
    };
    let v = store.violations(&filter).await.unwrap();
    assert_eq!(v.len(), 1, "one violation row per key and minute");
    let sample = (&*v[0].method, &*v[0].path, &*v[0].client_ip, &*v[0].limit);
    assert_eq!(sample, ("GET", "/x", "127.0.0.1", "7/1m"));
    assert_eq!((v[0].count, v[0].shadow), (5, false));
    store.close().await;
}

/// Quota rows go every `flush_interval`; hour rows wait for `hour_flush_interval` (here far
/// away), and a graceful stop writes them anyway.
async fn hour_rows_wait_for_their_interval_and_shutdown_writes_them(db: Db) {
    let section = db.section.replace(
        "hour_flush_interval = \"100ms\"",
        "hour_flush_interval = \"1h\"",
    );
    // The flush-lag alert must wait longer than the hour rows do (config validation).
    let text = config(r#"["1000/d"]"#, &section).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        "[admin]\nlisten = \"127.0.0.1:0\"\nalerts = { flush_lag = \"2h\" }\n",
    );
    let t = TestTollgate::from_text(&text, None).await;
    for i in 0..6 {
        let key = format!("k{}", i % 3);
        assert_eq!(get(&t.url("/x"), &[("x-api-key", &key)]).await.status, 200);
    }
    let store = db.store().await;
    let sum = |rows: Vec<tollgate::store::UsageRow>| rows.iter().map(|r| r.count).sum::<i64>();
    let mut day = 0;
    for _ in 0..50 {
        day = sum(store.usage_for_period("day", 0).await.unwrap());
        if day == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(day, 6, "quota rows are written every flush_interval");
    let hour = sum(store.usage_for_period("hour", HOUR_START).await.unwrap());
    assert_eq!(hour, 0, "hour rows wait for hour_flush_interval");
    t.stop().await;
    let hour = store.usage_for_period("hour", HOUR_START).await.unwrap();
    assert_eq!(
        (hour.len(), sum(hour)),
        (3, 6),
        "a graceful stop writes them"
    );
    store.close().await;
}

/// Unix milliseconds of an RFC 3339 instant.
fn at(rfc3339: &str) -> u64 {
    let ts: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(ts.as_millisecond()).unwrap()
}

async fn call(t: &TestTollgate) -> Got {
    get(&t.url("/x"), &[("x-api-key", "k")]).await
}

/// Berlin quotas stored and rehydrated: 29 March 2026 is a 23-hour day (clocks spring forward),
/// and 1 April starts at 22:00Z on 31 March.
async fn zoned_quotas_survive_restarts_across_dst_and_a_month_boundary(db: Db) {
    let text = config(r#"["1/d", "3/mo"]"#, &db.section)
        .replace("limits = [", "timezone = \"Europe/Berlin\"\nlimits = [");
    let t = TestTollgate::from_text_at(&text, None, at("2026-03-29T10:00:00Z")).await;
    assert_eq!(call(&t).await.status, 200);
    t.stop().await;

    let t = TestTollgate::from_text_at(&text, None, at("2026-03-29T10:00:00Z")).await;
    let denied = call(&t).await;
    assert_eq!(denied.status, 429, "the day's quota survived the restart");
    assert_eq!(
        denied.header("retry-after"),
        Some("43200"),
        "to 00:00 CEST = 22:00Z"
    );
    assert!(denied
        .header("ratelimit-policy")
        .unwrap()
        .contains(r#""quota-day";q=1;w=82800"#));
    t.clock.set(at("2026-03-29T22:00:00Z"));
    assert_eq!(call(&t).await.status, 200, "30 March in Berlin");
    t.stop().await;

    let t = TestTollgate::from_text_at(&text, None, at("2026-03-30T22:00:00Z")).await;
    assert_eq!(call(&t).await.status, 200, "31 March: the month's third");
    t.clock.set(at("2026-03-31T12:00:00Z"));
    let denied = call(&t).await;
    assert_eq!(denied.status, 429);
    assert!(
        denied
            .header("ratelimit")
            .unwrap()
            .contains(r#""quota-month";r=0;t=36000"#),
        "{:?}",
        denied.header("ratelimit")
    );
    t.stop().await;

    let t = TestTollgate::from_text_at(&text, None, at("2026-03-31T22:00:00Z")).await;
    let r = call(&t).await;
    assert_eq!(r.status, 200, "April began in Berlin");
    assert!(r
        .header("ratelimit-policy")
        .unwrap()
        .contains(r#""quota-month";q=3;w=2592000"#));
    t.stop().await;
}

async fn a_restart_keeps_a_spent_quota(db: Db) {
    let text = config(r#"["3/d"]"#, &db.section);
    let t = TestTollgate::from_text(&text, None).await;
    for _ in 0..3 {
        assert_eq!(get(&t.url("/x"), &[("x-api-key", "k")]).await.status, 200);
    }
    assert_eq!(get(&t.url("/x"), &[("x-api-key", "k")]).await.status, 429);
    assert_eq!(
        get(&t.url("/x"), &[("x-api-key", "other")]).await.status,
        200
    );
    t.stop().await;

    let t = TestTollgate::from_text(&text, None).await;
    assert_eq!(
        get(&t.admin_url("/ready"), &[]).await.status,
        200,
        "rehydrated before ready"
    );
    let r = get(&t.url("/x"), &[("x-api-key", "k")]).await;
    assert_eq!(r.status, 429, "the restart must not grant a new quota");
    assert_eq!(r.header("retry-after"), Some("50400"));
    let r = get(&t.url("/x"), &[("x-api-key", "other")]).await;
    assert_eq!(r.header("ratelimit").unwrap(), r#""quota";r=1;t=50400"#);
    // The next UTC day.
    t.clock.set(86_400_000);
    assert_eq!(get(&t.url("/x"), &[("x-api-key", "k")]).await.status, 200);
    t.stop().await;
}

/// kill -9 loses at most what was counted since the last flush: usage older than two flush
/// intervals is on disk. Prints the measured loss.
#[test]
fn kill_9_loses_at_most_the_last_flush_interval() {
    let toml = "[database]\nsqlite_path = \"usage.db\"\nflush_interval = \"200ms\"\nhour_flush_interval = \"200ms\"\n\n[[rules]]\nname = \"quota\"\nkey = \"header:x-api-key\"\nlimits = [\"1000/m\"]\n\n[[routes]]\nname = \"api\"\nrules = [\"quota\"]\n[routes.direct]\nbody = \"ok\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{toml}"),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut bin = Binary::start(&path, &[]);
    let url = format!("http://{}/x", bin.proxy);
    let send = |n: usize| {
        rt.block_on(async {
            for i in 0..n {
                let key = format!("k{}", i % 10);
                assert_eq!(get(&url, &[("x-api-key", &key)]).await.status, 200);
            }
        })
    };
    send(200);
    std::thread::sleep(std::time::Duration::from_millis(600));
    send(100);
    bin.signal("KILL");
    bin.wait_exit(PATIENCE).expect("killed");
    let stored: i64 = rt.block_on(async {
        let store = connect(&StoreTarget::Sqlite {
            path: dir.path().join("usage.db"),
        })
        .await
        .unwrap();
        let hour = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
            / 3600
            * 3600;
        let mut sum = 0;
        for start in [hour - 3600, hour] {
            sum += store
                .usage_for_period("hour", start)
                .await
                .unwrap()
                .iter()
                .map(|r| r.count)
                .sum::<i64>();
        }
        store.close().await;
        sum
    });
    eprintln!(
        "kill -9: {stored} of 300 allowed requests on disk, {} lost (flush_interval 200ms)",
        300 - stored
    );
    assert!(
        stored >= 200,
        "usage older than two flush intervals must be on disk: {stored}"
    );
    assert!(stored <= 300);
}
