//! The real binary: --version, check-config, quick mode, SIGHUP reload, and a graceful drain of an
//! in-flight request on SIGTERM.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

#[test]
fn version_prints_the_crate_version() {
    let out = tollgate().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tollgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_bundled_config_and_lists_every_error() {
    let ok = tollgate()
        .args(["check-config", "config/tollgate.toml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let (_dir, path) = config_file(
        r#"
[[rules]]
name = "bad name"
key = "cookie:x"
limits = ["10/fortnight", "0/s"]
on_missing = "maybe"

[[routes]]
name = "r"
rules = ["nope"]
upstreams = ["ftp://x"]

[[routes]]
name = "early-hints"
[routes.direct]
status = 103

[[overrides]]
key = "k"
rule = "ghost"
tier = "silver"

[upstream]
response_timeout = "0s"
"#,
    );
    let out = tollgate().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "rules[0].name",
        "rules[0].key",
        "rules[0].limits[0]",
        "rules[0].limits[1]",
        "rules[0].on_missing",
        "routes[0].rules[0]",
        "routes[0].upstreams[0]",
        "routes[1].direct.status",
        "overrides[0].rule",
        "overrides[0].tier",
        "upstream.response_timeout",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
    assert_eq!(
        err.matches("overrides[0].tier").count(),
        1,
        "each problem is reported once:\n{err}"
    );

    let unknown = tollgate()
        .arg("check-config")
        .arg("/nonexistent.toml")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64));
}

#[test]
fn a_typo_in_a_key_name_is_an_error_not_ignored() {
    let (_dir, path) = config_file(
        "[limits]\nmax_kyes = 5\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n",
    );
    let out = tollgate().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_kyes"));
}

#[test]
fn hour_rows_cannot_be_flushed_more_often_than_the_flush_ticks() {
    let route = "[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n";
    let check = |db: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, format!("[database]\nenabled = false\n{db}\n{route}")).unwrap();
        tollgate().arg("check-config").arg(&path).output().unwrap()
    };
    let out = check("flush_interval = \"5s\"\nhour_flush_interval = \"2s\"");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.hour_flush_interval"), "{err}");
    // Unset, it follows a flush interval longer than its 10 s default instead of failing.
    let out = check("flush_interval = \"30s\"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_store_whose_hour_rows_wait_past_the_flush_lag_alert_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let check = |db: &str, alerts: &str| {
        let path = dir.path().join("tollgate.toml");
        let store = dir.path().join("usage.db");
        let text = format!(
            "[admin.alerts]\n{alerts}\n[database]\nsqlite_path = {store:?}\n{db}\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n"
        );
        std::fs::write(&path, text).unwrap();
        tollgate().arg("check-config").arg(&path).output().unwrap()
    };
    let refused = |out: std::process::Output, field: &str| {
        assert_eq!(out.status.code(), Some(64));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field) && err.contains("flush_lag"), "{err}");
    };
    // flush_lag defaults to 30 s.
    refused(
        check("hour_flush_interval = \"30s\"", ""),
        "database.hour_flush_interval",
    );
    refused(
        check("flush_interval = \"45s\"", ""),
        "database.flush_interval",
    );
    for (db, alerts) in [
        ("hour_flush_interval = \"29s\"", ""),
        ("hour_flush_interval = \"30s\"", "flush_lag = \"31s\""),
    ] {
        let out = check(db, alerts);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{db} {alerts}: {err}");
    }
}

#[test]
fn a_bad_config_at_startup_exits_64() {
    let (_dir, path) = config_file("[[routes]]\nname = \"r\"\n");
    let out = tollgate().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_public_admin_address_without_a_token_refuses_to_start() {
    let (_dir, path) = config_file("[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n");
    let out = tollgate()
        .arg("--config")
        .arg(&path)
        .args(["--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.listen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_proxies_and_limits_without_a_file() {
    let up = Upstream::start("quick").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            &up.url(),
        ])
        .args([
            "--limit",
            "2/m",
            "--limit",
            "100/h",
            "--key",
            "header:x-api-key",
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let proxy = loop {
        let line = lines.next_line().await.unwrap().expect("exited early");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "tollgate ready" {
            break v["proxy"].as_str().unwrap().to_string();
        }
    };
    let url = format!("http://{proxy}/echo");
    let k = [("x-api-key", "q")];
    let r = get(&url, &k).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("quick"));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""quick-1m";q=2;w=60, "quick-1h";q=100;w=3600"#)
    );
    assert_eq!(get(&url, &k).await.status, 200);
    assert_eq!(get(&url, &k).await.status, 429);
    assert_eq!(
        get(&url, &[]).await.status,
        401,
        "quick mode rejects a missing key"
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_ready_and_drains_an_in_flight_request_then_exits_0() {
    let up = Upstream::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndrain_timeout = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"slow\"\nupstreams = [\"{}\"]\n",
            up.url()
        ),
    )
    .unwrap();
    let mut bin = Binary::start(&path, &[]);
    let (proxy, admin) = (bin.proxy, bin.admin);
    assert_eq!(get(&format!("http://{admin}/ready"), &[]).await.status, 200);
    let in_flight =
        tokio::spawn(async move { get(&format!("http://{proxy}/slow?ms=1500"), &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // /ready fails while draining (or the admin port is already closed).
    let ready = tokio::time::timeout(Duration::from_secs(2), async {
        let client = h1_client();
        let req = http::Request::get(format!("http://{admin}/ready"))
            .body(empty())
            .unwrap();
        client.request(req).await.map(|r| r.status().as_u16())
    })
    .await;
    assert!(
        !matches!(ready, Ok(Ok(200))),
        "ready must fail during drain: {ready:?}"
    );
    // New connections are refused once the listener stopped accepting.
    assert!(
        std::net::TcpStream::connect(proxy).is_err(),
        "the proxy port must be closed while draining"
    );
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done", "the in-flight request finished");
    let status = tokio::task::spawn_blocking(move || {
        let s = bin.wait_exit(Duration::from_secs(10));
        (s, bin)
    })
    .await
    .unwrap()
    .0
    .expect("exited");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file() {
    let body = |b: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"{b}\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, body("one")).unwrap();
    // One worker runs on a current-thread runtime: reload (spawn_blocking) and signals must work there too.
    let bin = Binary::start(&path, &["--workers", "1"]);
    let url = format!("http://{}/", bin.proxy);
    assert_eq!(get(&url, &[]).await.text(), "one");
    std::fs::write(&path, body("two")).unwrap();
    bin.signal("HUP");
    let mut seen = String::new();
    for _ in 0..100 {
        seen = get(&url, &[]).await.text();
        if seen == "two" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    // Both addresses are unusable as written; the environment supplies working ones.
    std::fs::write(
        &path,
        "[server]\nlisten = \"not-an-address\"\n[admin]\nlisten = \"0.0.0.0:9\"\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"from env\"\n",
    )
    .unwrap();
    let plain = tollgate().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(plain.status.code(), Some(64));
    let with_token = tollgate()
        .arg("check-config")
        .arg(&path)
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("TOLLGATE_ADMIN_TOKEN", "s3cret-admin-token-0123")
        .output()
        .unwrap();
    assert!(
        with_token.status.success(),
        "{}",
        String::from_utf8_lossy(&with_token.stderr)
    );
    let bin = Binary::start_env(
        &path,
        &[],
        &[
            ("TOLLGATE_LISTEN", "127.0.0.1:0"),
            ("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0"),
            ("TOLLGATE_LOG", "warn,tollgate=info"),
        ],
    );
    assert_eq!(
        get(&format!("http://{}/", bin.proxy), &[]).await.text(),
        "from env"
    );
    assert!(bin.admin.ip().is_loopback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_line_per_routed_request_and_all_are_written_by_exit() {
    let (_dir, path) = config_file(
        "[log]\naccess_log = true\n[[rules]]\nname = \"one\"\nkey = \"ip\"\nlimits = [\"1/m\"]\n[[routes]]\nname = \"r\"\nrules = [\"one\"]\n[routes.direct]\nbody = \"x\"\n",
    );
    let mut bin = Binary::start(&path, &["--no-store"]);
    let url = format!("http://{}/a/b?token=secret", bin.proxy);
    assert_eq!(get(&url, &[]).await.status, 200);
    assert_eq!(get(&url, &[]).await.status, 429);
    // Lines are queued to a writer thread; the ones still queued at a graceful stop are written.
    bin.signal("TERM");
    let status = bin.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    let access: Vec<serde_json::Value> = bin
        .log_to_the_end()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("micros").is_some())
        .collect();
    let seen: Vec<_> = access
        .iter()
        .map(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (
                field("method"),
                field("path"),
                v["status"].as_u64(),
                field("route"),
                field("client"),
            )
        })
        .collect();
    let line = |status| {
        let s = |t: &str| t.to_string();
        (s("GET"), s("/a/b"), Some(status), s("r"), s("127.0.0.1"))
    };
    // The path without its query string: no tokens in the log.
    assert_eq!(seen, [line(200), line(429)], "{access:?}");
}

/// With stdout stuck (its reader paused), requests are still answered at once: access lines
/// beyond `log.buffer_lines` queued are dropped and counted, never waited for.
#[tokio::test]
async fn a_stuck_stdout_drops_and_counts_log_lines_instead_of_holding_requests() {
    const REQUESTS: usize = 1_000;
    let (_dir, path) = config_file(
        "[log]\naccess_log = true\nbuffer_lines = 16\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"x\"\n",
    );
    let mut bin = Binary::start(&path, &["--no-store"]);
    bin.pause_log(true);
    let url = format!("http://{}/", bin.proxy);
    let all = async {
        for _ in 0..REQUESTS {
            assert_eq!(get(&url, &[]).await.status, 200);
        }
    };
    // About 300 lines fill the pipe, 16 more the queue; a writer that waited would stall here.
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("every request answered while stdout is stuck");
    let metrics = get(&format!("http://{}/metrics", bin.admin), &[])
        .await
        .text();
    let dropped = metric_value(&metrics, "tollgate_log_dropped_lines_total").unwrap_or(-1.0);
    bin.pause_log(false);
    bin.signal("TERM");
    assert!(bin
        .wait_exit(Duration::from_secs(10))
        .expect("exits")
        .success());
    let written = bin
        .log_to_the_end()
        .iter()
        .filter(|l| l.contains("\"micros\""))
        .count();
    assert!(dropped >= 1.0, "dropped {dropped}, written {written}");
    assert!(written < REQUESTS, "written {written}");
    // Every access line was written or counted as dropped (the count may hold other lines too).
    assert!(
        written + dropped as usize >= REQUESTS,
        "dropped {dropped}, written {written}"
    );
}

/// The background threads (the flusher's, SQLite's connection threads, the idle-key sweeper's)
/// run 10 nice steps below the process, so a flush's drain, encoding and upserts and a sweep's
/// walk yield the CPU to requests; the proxy's own threads keep the process's priority.
#[test]
fn the_background_threads_run_below_the_proxys_priority() {
    // Not `config_file`: its `[database]` is off. The default store is SQLite in the file's dir.
    let (_dir, path) = config_file_as_is(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[rules]]\nname = \"one\"\nkey = \"ip\"\nlimits = [\"1/m\"]\n[[routes]]\nname = \"r\"\nrules = [\"one\"]\n[routes.direct]\nbody = \"x\"\n",
    );
    let bin = Binary::start(&path, &[]);
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", bin.pid()));
    // A thread's nice: the 19th field of its `stat`, the 17th after its name.
    // A thread may exit between the listing and the reads: it is then left out.
    let nice = |task: &std::path::Path| -> Option<i64> {
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        after_name.split(' ').nth(16)?.parse().ok()
    };
    let threads = || -> Vec<(String, i64)> {
        std::fs::read_dir(&tasks)
            .unwrap()
            .filter_map(|t| {
                let t = t.ok()?.path();
                let name = std::fs::read_to_string(t.join("comm")).ok()?;
                Some((name.trim().to_string(), nice(&t)?))
            })
            .collect()
    };
    let own = nice(&tasks.join(bin.pid().to_string())).unwrap();
    let is_background =
        |name: &str| ["tg-store", "tg-sweep"].contains(&name) || name.starts_with("tg-sqlite-");
    let background = |all: &[(String, i64)]| -> Vec<i64> {
        all.iter()
            .filter(|(name, _)| is_background(name))
            .map(|(_, nice)| *nice)
            .collect()
    };
    // The store connects beside startup, not before "ready": wait for its threads, and for
    // the step after each connection that lowers them.
    let target = (own + 10).min(19);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = threads();
    // tg-store, tg-sweep and at least one SQLite connection.
    while background(&seen).len() < 3 || background(&seen).iter().any(|n| *n != target) {
        assert!(
            std::time::Instant::now() < deadline,
            "the background threads did not run at nice {target}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        seen = threads();
    }
    let mut rest = seen.iter().filter(|(name, _)| !is_background(name));
    assert!(rest.all(|(_, nice)| *nice == own), "{seen:?}");
}
