//! The WebSocket feed with a real client: stats on the driven clock, heartbeats, violation
//! coalescing under a burst of 10k denials, subscriptions, and a slow client dropped while the
//! proxy keeps answering.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{self, TestTollgate, Upstream};
use crate::{call, hit, start, ADMIN, READ};
use tollgate::limiter::Clock;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Feed settings for these tests: stats every 5 s and heartbeats every 10 s of the driven clock.
const FEED: &str =
    "[admin.feed]\nstats_interval = \"5s\"\nheartbeat_interval = \"10s\"\nbuffer = 64";

async fn connect(t: &TestTollgate, token: &str) -> Ws {
    let mut req = t
        .admin_url("/ws/admin/quotas")
        .replace("http", "ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next message of type `kind` within `wait`, skipping others.
async fn next_of(ws: &mut Ws, kind: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_heartbeats_follow_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, FEED).await;
    let mut ws = connect(&t, READ).await;
    for _ in 0..7 {
        hit(&t, "s").await;
    }
    // The clock has not moved: no stats however long we wait in real time.
    assert!(next_of(&mut ws, "stats", Duration::from_millis(2500))
        .await
        .is_none());
    t.clock.advance(Duration::from_millis(4_900));
    assert!(
        next_of(&mut ws, "stats", Duration::from_millis(1500))
            .await
            .is_none(),
        "not before 5 s"
    );
    t.clock.advance(Duration::from_millis(100));
    let stats = next_of(&mut ws, "stats", support::PATIENCE)
        .await
        .expect("stats at 5 s");
    let d = &stats["data"];
    assert_eq!(stats["ts"], json!(t.clock.now_ms()));
    assert_eq!(
        (d["allowed"].as_u64(), d["denied"].as_u64()),
        (Some(5), Some(2)),
        "{stats}"
    );
    assert_eq!(d["requests"], 7);
    assert_eq!(d["active_keys"], 1);
    assert_eq!(d["top_keys"][0]["key"], "s");
    assert_eq!(d["top_keys"][0]["ratio"], 1.0);
    assert!(
        (d["rps"].as_f64().unwrap() - 7.0 / 5.0).abs() < 1e-9,
        "{stats}"
    );
    assert!(d["flush_lag_secs"].is_number() && d["upstream_error_rate"] == 0.0);
    t.clock.advance(Duration::from_secs(5));
    let second = next_of(&mut ws, "stats", support::PATIENCE)
        .await
        .expect("stats at 10 s");
    assert_eq!(second["data"]["requests"], 0, "counts are per interval");
    let beat = next_of(&mut ws, "heartbeat", support::PATIENCE)
        .await
        .expect("heartbeat at 10 s");
    assert_eq!(beat["data"]["clients"], 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10k_denials_is_coalesced_per_key_and_second() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(dir.path(), &up, FEED).await;
    let mut ws = connect(&t, ADMIN).await;
    let mut filtered = connect(&t, READ).await;
    filtered
        .send(Message::text(
            json!({"type": "subscribe", "rules": ["other"]}).to_string(),
        ))
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(hit(&t, "flood").await, 200);
    }
    let started = std::time::Instant::now();
    let client = support::h1_client();
    let url = t.url("/x");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..1250 {
                    let g = support::send(
                        &client,
                        "GET",
                        &url,
                        &[("x-user", "flood")],
                        support::empty(),
                    )
                    .await;
                    assert_eq!(g.status, 429);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs() + 1;
    let (mut messages, mut denials) = (0u64, 0u64);
    while denials < 10_000 {
        let v = next_of(&mut ws, "violation", support::PATIENCE)
            .await
            .expect("violation messages");
        assert_eq!(
            (v["data"]["key"].as_str(), v["data"]["rule"].as_str()),
            (Some("flood"), Some("api"))
        );
        assert_eq!(v["data"]["limit"], "5/1m");
        assert_eq!(v["data"]["path"], "/x");
        messages += 1;
        denials += v["data"]["count"].as_u64().unwrap();
    }
    assert_eq!(denials, 10_000, "every denial is counted once");
    assert!(
        messages <= secs + 1,
        "{messages} messages for a {secs} s burst: at most one per key per second"
    );
    let health = call(&t, "GET", "/api/ws/health", READ, None).await.json();
    assert_eq!(
        health["violations_coalesced"],
        10_000 - messages,
        "{health}"
    );
    assert_eq!(health["clients"], 2);
    // The client subscribed to another rule saw none of them.
    assert!(next_of(&mut filtered, "violation", Duration::from_secs(2))
        .await
        .is_none());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_and_the_proxy_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let feed = "[admin.feed]\nbuffer = 256\n[limits]\nmax_keys = 100000";
    let t = start(dir.path(), &up, feed).await;
    // A client that completes the handshake on a tiny receive buffer and then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(t.admin).await.unwrap();
    let mut req = t
        .admin_url("/ws/admin/quotas")
        .replace("http", "ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {READ}").parse().unwrap());
    let (_stalled, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let mut healthy = connect(&t, READ).await;

    // Thousands of distinct denied keys: thousands of violation messages, a few MB of feed.
    let client = support::h1_client();
    let url = t.url("/x");
    let tasks: Vec<_> = (0..2)
        .map(|w| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                for i in 0..600 {
                    let user = format!("user-{w}-{i}-{}", "p".repeat(200));
                    for _ in 0..6 {
                        let g = support::send(
                            &client,
                            "GET",
                            &url,
                            &[("x-user", &user)],
                            support::empty(),
                        )
                        .await;
                        assert!(g.status == 200 || g.status == 429);
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap();
    }
    assert_eq!(
        answered,
        2 * 600 * 6,
        "every proxied request was answered while the client stalled"
    );
    crate::eventually("the stalled client dropped", || async {
        let h = call(&t, "GET", "/api/ws/health", READ, None).await.json();
        h["clients_dropped"].as_u64() >= Some(1) && h["clients"] == 1
    })
    .await;
    t.clock.advance(Duration::from_secs(5));
    assert!(
        next_of(&mut healthy, "stats", support::PATIENCE)
            .await
            .is_some(),
        "the healthy client stays"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_needs_a_token_and_an_allowed_origin() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let t = start(
        dir.path(),
        &up,
        "allowed_origins = [\"https://ops.example.com\"]",
    )
    .await;
    let url = t.admin_url("/ws/admin/quotas").replace("http", "ws");
    let refused = tokio_tungstenite::connect_async(url.clone())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let with = |origin: &str| {
        let mut req = url.clone().into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {READ}").parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };
    let evil = tokio_tungstenite::connect_async(with("https://evil.example.com"))
        .await
        .unwrap_err();
    assert!(evil.to_string().contains("403"), "{evil}");
    assert!(
        tokio_tungstenite::connect_async(with("https://ops.example.com"))
            .await
            .is_ok()
    );
    // A browser's form: the token as a subprotocol, answered with tollgate.v1.
    use base64::Engine;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(READ);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("tollgate.v1, tollgate.bearer.{token}")
            .parse()
            .unwrap(),
    );
    let (_, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "tollgate.v1");
    t.stop().await;
}
