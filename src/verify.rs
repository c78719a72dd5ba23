//! `tollgate verify --admin URL [--token T]`: the deploy checks in one command, against a
//! running instance's admin port. One line per check; the result says whether all passed.
//!
//! Checks, in order: `/health` is 200; the config API answers with the token; the WebSocket
//! feed connects and sends a heartbeat or stats within `wait`; the store answers a query
//! (`/api/admin/quotas/violations?limit=1`). Never prints the token.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What to check and how long to wait.
pub struct Verify {
    /// `http://host:port` of the admin port.
    pub admin: String,
    pub token: Option<String>,
    /// How long the feed may take to say something (its heartbeat is every 10 s by default).
    pub wait: Duration,
}

/// One check's outcome.
pub struct Outcome {
    pub name: &'static str,
    pub result: Result<String, String>,
}

impl Verify {
    /// Runs every check, printing a line each; true if all passed.
    pub async fn run(&self) -> bool {
        let mut ok = true;
        for outcome in self.checks().await {
            match &outcome.result {
                Ok(detail) => println!("ok    {:<8} {detail}", outcome.name),
                Err(detail) => {
                    ok = false;
                    println!("FAIL  {:<8} {detail}", outcome.name);
                }
            }
        }
        println!(
            "{}",
            if ok {
                "all checks passed"
            } else {
                "some checks failed"
            }
        );
        ok
    }

    pub async fn checks(&self) -> Vec<Outcome> {
        let base = self.admin.trim_end_matches('/');
        vec![
            Outcome {
                name: "health",
                result: self
                    .get(&format!("{base}/health"), false)
                    .await
                    .map(|(s, _)| format!("{s}")),
            },
            Outcome {
                name: "config",
                result: self.config(base).await,
            },
            Outcome {
                name: "feed",
                result: self.feed(base).await,
            },
            Outcome {
                name: "store",
                result: self
                    .get(&format!("{base}/api/admin/quotas/violations?limit=1"), true)
                    .await
                    .map(|_| "answered a violations query".into()),
            },
        ]
    }

    async fn config(&self, base: &str) -> Result<String, String> {
        let (_, body) = self
            .get(&format!("{base}/api/admin/quotas/config"), true)
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
        Ok(format!(
            "{} rules, {} tiers, {} overrides (version {})",
            count("rules"),
            count("tiers"),
            count("overrides"),
            v["version"]
        ))
    }

    /// GET `url`; Ok only for 200. The problem's `detail` is the error otherwise.
    async fn get(&self, url: &str, auth: bool) -> Result<(StatusCode, Bytes), String> {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut req = Request::get(url);
        if let (true, Some(t)) = (auth, &self.token) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| format!("bad URL {url}: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status == StatusCode::OK {
            return Ok((status, body));
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        Err(format!("{status}: {detail}"))
    }

    async fn feed(&self, base: &str) -> Result<String, String> {
        let url = format!("{}/ws/admin/quotas", base.replacen("http", "ws", 1));
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad URL {url}: {e}"))?;
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| "the token is not a valid header value".to_owned())?;
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(req),
        )
        .await
        .map_err(|_| "no WebSocket handshake within 10 s".to_owned())?
        .map_err(|e| format!("cannot connect: {e}"))?;
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, ws.next()).await {
                Err(_) => {
                    return Err(format!(
                        "connected, but no heartbeat or stats within {:?}",
                        self.wait
                    ))
                }
                Ok(None) => return Err("the server closed the feed".into()),
                Ok(Some(Err(e))) => return Err(format!("feed error: {e}")),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(kind @ ("heartbeat" | "stats")) = v["type"].as_str() {
                        let _ = ws.close(None).await;
                        return Ok(format!("connected; got {kind}"));
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
