//! Alerts: a violation flood fires `violations_per_minute` once, on the feed and to a webhook
//! receiver on 127.0.0.1 (which fails its first delivery, so the retry is exercised too).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::Upstream;
use crate::{call, eventually, hit, start, READ};

/// A webhook receiver that answers 500 to its first POST and 200 after, keeping every body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/secret-path", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (seen, attempts) = (seen.clone(), attempts.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (seen, attempts) = (seen.clone(), attempts.clone());
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let status = if n == 0 { 500 } else { 200 };
                        if status == 200 {
                            seen.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                        }
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_flood_fires_once_to_the_feed_and_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("up").await;
    let (hook, received) = receiver().await;
    let settings = format!(
        "[admin.alerts]\nviolations_per_minute = 20\nnew_blocked_key = false\nwebhook_url = \"{hook}\"\nwebhook_timeout = \"2s\""
    );
    let t = start(dir.path(), &up, &settings).await;
    for _ in 0..30 {
        hit(&t, "noisy").await;
    }
    eventually("the alert is active", || async {
        let a = call(&t, "GET", "/api/admin/quotas/alerts", READ, None)
            .await
            .json();
        a["active"][0]["name"] == "violations_per_minute"
    })
    .await;
    let a = call(&t, "GET", "/api/admin/quotas/alerts", READ, None)
        .await
        .json();
    assert_eq!(a["active"][0]["value"], 25.0);
    assert_eq!(a["active"][0]["threshold"], 20.0);
    // Delivered after one failed attempt (retried after a second), exactly once.
    eventually("webhook delivery", || async {
        !received.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..10 {
        hit(&t, "noisy").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "fires once: {got:?}");
    assert_eq!(got[0]["name"], "violations_per_minute");
    assert_eq!(got[0]["state"], "firing");
    let m = crate::support::metrics_text(&t).await;
    assert!(
        m.contains("tollgate_alerts_total{alert=\"violations_per_minute\",state=\"firing\"} 1"),
        "{m}"
    );
    assert!(m.contains("tollgate_alert_webhook_deliveries_total{result=\"ok\"} 1"));
    assert!(m.contains("tollgate_alerts_firing{alert=\"violations_per_minute\"} 1"));
    t.stop().await;
}
