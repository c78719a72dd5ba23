//! Proxy workers (`server.workers`, `server.runtime`): per-worker runtimes on one SO_REUSEPORT
//! address share one set of limits, one connection cap and one drain; the one-socket
//! work-stealing runtime still serves; a port held by a running group cannot be bound again.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;

use support::*;
use tollgate::limiter::ManualClock;
use tollgate::{App, AppOptions};

/// Both listeners on port 0, two workers, `server` lines added to the `[server]` table.
fn two_workers(server: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n{server}[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nenabled = false\n")
}

/// Connections each opened anew (and closed after one request): the kernel picks a worker
/// socket for every one.
async fn fresh_connections(t: &TestTollgate, n: usize, path: &str, key: &str) -> Vec<String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n");
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(exchange(t.proxy, request.as_bytes()).await);
    }
    answers
}

/// One request on a fresh connection, read to the close: head and body.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer))
        .await
        .expect("timed out reading an answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

async fn accepted_by(t: &TestTollgate, worker: usize) -> Option<f64> {
    metric_value(
        &metrics_text(t).await,
        &format!("tollgate_worker_connections_total{{worker=\"{worker}\"}}"),
    )
}

/// The names of a process's threads.
fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// An upstream that counts the requests it has received and answers each after `delay`.
async fn counting_upstream(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(full("slow done")))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn connections_spread_over_per_worker_runtimes_that_share_one_limit() {
    let up = Upstream::start("up").await;
    let t = TestTollgate::from_text(
        &format!(
            "{}[[rules]]\nname = \"ten\"\nkey = \"header:x-api-key\"\nlimits = [\"10/m\"]\n[[routes]]\nname = \"r\"\nrules = [\"ten\"]\nupstreams = [\"{}\"]\n",
            two_workers(""),
            up.url()
        ),
        None,
    )
    .await;
    let answers = fresh_connections(&t, 64, "/", "k").await;
    let allowed = answers.iter().filter(|a| status(a) == "200").count();
    let denied = answers.iter().filter(|a| status(a) == "429").count();
    assert_eq!(
        (allowed, denied),
        (10, 54),
        "one limit over both workers: {:?}",
        answers.iter().map(|a| status(a)).collect::<Vec<_>>()
    );
    assert!(
        answers
            .iter()
            .filter(|a| status(a) == "200")
            .all(|a| a.contains("x-upstream: up\r\n")),
        "allowed requests reached the upstream"
    );
    let (first, second) = (accepted_by(&t, 0).await, accepted_by(&t, 1).await);
    // 64 connections from 64 source ports: the chance that the kernel's hash puts them all on
    // one of two sockets is 2^-63.
    assert!(
        first.unwrap_or(0.0) > 0.0 && second.unwrap_or(0.0) > 0.0,
        "both workers accepted connections: {first:?} and {second:?}"
    );
    assert_eq!(first.unwrap() + second.unwrap(), 64.0);
    assert_eq!(accepted_by(&t, 2).await, None, "two workers, no third");
    t.stop().await;
}

#[tokio::test]
async fn a_shutdown_drains_requests_in_flight_on_every_worker() {
    const IN_FLIGHT: usize = 32;
    let (upstream, received) = counting_upstream(Duration::from_millis(1000)).await;
    let t = TestTollgate::from_text(
        &format!(
            "{}[[routes]]\nname = \"r\"\nupstreams = [\"{upstream}\"]\n",
            two_workers("")
        ),
        None,
    )
    .await;
    let slow: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let addr = t.proxy;
            tokio::spawn(async move {
                exchange(
                    addr,
                    b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .await
            })
        })
        .collect();
    // Every request has reached the upstream (so it is in flight, not only accepted) before
    // the shutdown.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < IN_FLIGHT {
        assert!(
            std::time::Instant::now() < deadline,
            "{IN_FLIGHT} requests at the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 32 connections: the chance that none went to worker 1 is 2^-32.
    assert!(
        accepted_by(&t, 1).await.unwrap_or(0.0) > 0.0,
        "worker 1 holds some of them"
    );
    t.app_shutdown.trigger();
    for answer in slow {
        let answer = answer.await.unwrap();
        assert_eq!(status(&answer), "200", "{answer}");
        assert!(answer.ends_with("slow done"), "{answer}");
    }
    t.stop().await;
}

/// The binary's own runtimes: per_worker runs worker 1 on `tg-worker-1`, work_stealing runs
/// tokio's multi-thread workers and no thread of ours; both serve.
#[tokio::test]
async fn the_binary_runs_each_runtime_shape() {
    let (_dir, path) = config_file("[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"ok\"\n");
    for shape in ["per_worker", "work_stealing"] {
        let bin = Binary::start(&path, &["--workers", "2", "--runtime", shape]);
        for _ in 0..16 {
            let answer = exchange(
                bin.proxy,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            assert!(answer.ends_with("ok"), "{shape}: {answer}");
        }
        let names = thread_names(bin.pid());
        let ours = names.iter().filter(|n| n.starts_with("tg-worker-")).count();
        let tokio_workers = names.iter().filter(|n| *n == "tokio-rt-worker").count();
        match shape {
            "per_worker" => assert_eq!(ours, 1, "{names:?}"),
            _ => assert!(ours == 0 && tokio_workers >= 2, "{names:?}"),
        }
    }
}

#[tokio::test]
async fn work_stealing_serves_every_connection_from_one_socket() {
    let t = TestTollgate::from_text(
        &format!(
            "{}[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"ok\"\n",
            two_workers("runtime = \"work_stealing\"\n")
        ),
        None,
    )
    .await;
    let answers = fresh_connections(&t, 8, "/", "k").await;
    assert!(answers.iter().all(|a| a.ends_with("ok")), "{answers:?}");
    assert_eq!(accepted_by(&t, 0).await, Some(8.0));
    assert_eq!(accepted_by(&t, 1).await, None, "one accept loop");
    t.stop().await;
}

#[tokio::test]
async fn a_port_held_by_a_worker_group_cannot_be_bound_again() {
    let held = TestTollgate::from_text(
        &format!(
            "{}[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"first\"\n",
            two_workers("")
        ),
        None,
    )
    .await;
    // A second instance on the same port, with one worker or with a group of its own, would
    // otherwise take a share of the first one's connections.
    for workers in [1, 2] {
        let text = format!(
            "[server]\nlisten = \"{}\"\nworkers = {workers}\n[admin]\nlisten = \"127.0.0.1:0\"\n[database]\nenabled = false\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"second\"\n",
            held.proxy
        );
        let metrics = tollgate::telemetry::Metrics::new();
        let config = tollgate::config::load(&text, "test", &metrics).unwrap();
        let mut opts = AppOptions::new(metrics);
        opts.clock = Arc::new(ManualClock::new(0));
        match App::build(config, opts).await {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("cannot bind proxy") && text.contains("in use"),
                    "{text}"
                );
            }
            Ok(_) => panic!(
                "a second instance bound {} with {workers} worker(s)",
                held.proxy
            ),
        }
    }
    let answers = fresh_connections(&held, 16, "/", "k").await;
    assert!(answers.iter().all(|a| a.ends_with("first")), "{answers:?}");
    held.stop().await;
}

#[test]
fn bad_worker_settings_are_config_errors() {
    for (text, field, reason) in [
        (
            two_workers("runtime = \"fibers\"\n"),
            "server.runtime",
            "\"per_worker\" or \"work_stealing\"",
        ),
        (
            two_workers("").replace("workers = 2", "workers = 100000"),
            "server.workers",
            "at most 1024",
        ),
    ] {
        let metrics = tollgate::telemetry::Metrics::new();
        let Err(err) = tollgate::config::load(&text, "test", &metrics) else {
            panic!("accepted: {text}");
        };
        let shown = err.to_string();
        assert!(shown.contains(field) && shown.contains(reason), "{shown}");
    }
}
