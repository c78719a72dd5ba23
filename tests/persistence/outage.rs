//! Postgres behind a relay the test controls: cut mid-run, and cut during a COMMIT.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::support::relay::Relay;
use super::*;

/// The host:port of a postgres URL.
fn pg_addr(url: &str) -> SocketAddr {
    let (authority, _) = authority(url);
    authority
        .parse()
        .expect("DATABASE_URL names 127.0.0.1:PORT")
}

/// `url` with its host:port replaced by `addr`, in plain text so the relay can see a COMMIT.
fn via(url: &str, addr: SocketAddr) -> String {
    let (authority, start) = authority(url);
    let rest = &url[start + authority.len()..];
    let sep = if rest.contains('?') { '&' } else { '?' };
    format!("{}{addr}{rest}{sep}sslmode=disable", &url[..start])
}

fn authority(url: &str) -> (&str, usize) {
    let after_scheme = url.find("://").unwrap() + 3;
    let rest = &url[after_scheme..];
    let end = rest.find('/').unwrap_or(rest.len());
    let start = rest[..end].rfind('@').map_or(0, |i| i + 1);
    (&rest[start..end], after_scheme + start)
}

async fn send(t: &TestTollgate, i: usize, worst: &mut Duration) -> u16 {
    let started = Instant::now();
    let key = format!("key-{}", i % 20);
    let status = get(&t.url("/x"), &[("x-api-key", &key)])
        .await
        .status
        .as_u16();
    *worst = (*worst).max(started.elapsed());
    status
}

async fn metric(t: &TestTollgate, series: &str) -> f64 {
    metric_value(&metrics_text(t).await, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_fails_no_request_and_loses_nothing() {
    with_pg(|url| async move {
        let relay = Relay::start(pg_addr(&url)).await;
        let db = Db::postgres(&via(&url, relay.addr));
        let t = TestTollgate::from_text(&config(r#"["30/m"]"#, &db.section), None).await;
        let (mut allowed, mut denied, mut worst) = (0, 0, Duration::ZERO);
        let mut tally = |status| match status {
            200 => allowed += 1,
            429 => denied += 1,
            other => panic!("a request failed with {other} while the database was cut"),
        };
        for i in 0..200 {
            tally(send(&t, i, &mut worst).await);
        }
        relay.cut();
        for i in 200..500 {
            tally(send(&t, i, &mut worst).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let errors = metric(&t, "tollgate_store_flushes_total{result=\"error\"}").await;
        assert!(errors >= 1.0, "the cut must have failed some flushes");
        let pending = metric(&t, "tollgate_store_pending_rows").await;
        assert!(
            pending >= 1.0,
            "usage waits in memory while the database is cut"
        );
        relay.restore();
        for i in 500..700 {
            tally(send(&t, i, &mut worst).await);
        }
        t.stop().await;
        assert_eq!((allowed, denied), (600, 100));
        // A sanity bound, not a benchmark: a request never waits on the database.
        assert!(
            worst < Duration::from_secs(1),
            "slowest request took {worst:?}"
        );
        let store = Db::postgres(&url).store().await;
        assert_eq!(totals(&store).await, (600, 100), "exact after recovery");
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_an_unknown_outcome_is_not_counted_twice() {
    with_pg(|url| async move {
        let relay = Relay::start(pg_addr(&url)).await;
        let db = Db::postgres(&via(&url, relay.addr));
        let t = TestTollgate::from_text(&config(r#"["30/m"]"#, &db.section), None).await;
        relay.cut_after(b"COMMIT");
        let mut worst = Duration::ZERO;
        for i in 0..100 {
            assert_eq!(send(&t, i, &mut worst).await, 200);
        }
        let deadline = Instant::now() + PATIENCE;
        while metric(&t, "tollgate_store_flushes_total{result=\"replayed\"}").await < 1.0 {
            assert!(Instant::now() < deadline, "no batch was replayed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(relay.tripped());
        t.stop().await;
        let store = Db::postgres(&url).store().await;
        assert_eq!(
            totals(&store).await,
            (100, 0),
            "the replayed batch counted once"
        );
        store.close().await;
    })
    .await;
}
