//! `tollgate verify` against a running tollgate binary: passing, and failing with a wrong token,
//! without a store, and against a port where nothing listens.

mod support;

use std::process::Command;

use support::{dead_addr, Binary};

const TOKEN: &str = "verify-admin-token-0123456789";

fn config(dir: &std::path::Path, database: &str) -> std::path::PathBuf {
    let path = dir.join("tollgate.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n[admin.feed]\nheartbeat_interval = \"1s\"\n{database}\n[[routes]]\nname = \"r\"\n[routes.direct]\nbody = \"ok\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn verify(admin: &str, token: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["verify", "--admin", admin, "--token", token, "--wait", "5s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_against_a_healthy_instance_and_fails_clearly_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(
        &config(dir.path(), "[database]\nsqlite_path = \"t.db\""),
        &[],
    );
    let admin = format!("http://{}", bin.admin);
    let (code, out) = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || verify(&admin, TOKEN)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}");
    for check in ["health", "config", "feed", "store"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {out}"
        );
    }
    assert!(
        out.contains("got heartbeat") || out.contains("got stats"),
        "{out}"
    );
    assert!(out.contains("all checks passed"));

    let (code, out) = tokio::task::spawn_blocking(move || verify(&admin, "wrong-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("health")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("config") && l.contains("401")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("feed")),
        "{out}"
    );
    assert!(
        !out.contains("wrong-token"),
        "the token is never printed: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_without_a_store_and_against_a_dead_port() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::start(&config(dir.path(), "[database]\nenabled = false"), &[]);
    let admin = format!("http://{}", bin.admin);
    let (code, out) = tokio::task::spawn_blocking(move || verify(&admin, TOKEN))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("store") && l.contains("[database]")),
        "{out}"
    );
    let dead = format!("http://{}", dead_addr().await);
    let (code, out) = tokio::task::spawn_blocking(move || verify(&dead, TOKEN))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.lines().all(|l| !l.starts_with("ok")), "{out}");
}
