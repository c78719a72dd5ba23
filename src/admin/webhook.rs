//! Alert delivery to a webhook: each transition as a JSON POST, retried with backoff, each
//! attempt bounded by a timeout.
//!
//! Owns a bounded queue and one task that drains it. The ticker only `try_send`s, so a dead or
//! slow receiver costs a dropped (and counted) alert, never a wait. The URL is never logged (hook
//! URLs often carry a secret); only its host is.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics::Counter;
use tokio::sync::mpsc;

use super::alerts::Alert;
use crate::config::WebhookSettings;
use crate::telemetry::{Metrics, WEBHOOK_DELIVERIES};

/// Alerts waiting for delivery; past it new ones are dropped.
const QUEUE: usize = 256;

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    tx: mpsc::Sender<Alert>,
    dropped: Counter,
}

struct Outcomes {
    ok: Counter,
    failed: Counter,
}

impl Webhook {
    /// Starts the delivery task.
    pub fn start(settings: WebhookSettings, metrics: &Metrics) -> Result<Webhook, String> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let c = |result| metrics.counter(WEBHOOK_DELIVERIES, &[("result", result)]);
        let outcomes = Outcomes {
            ok: c("ok"),
            failed: c("failed"),
        };
        let client = client(settings.timeout)?;
        tokio::spawn(deliver(rx, client, Arc::new(settings), outcomes));
        Ok(Webhook {
            tx,
            dropped: c("dropped"),
        })
    }

    /// Queues one alert; never waits.
    pub fn send(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            self.dropped.increment(1);
        }
    }
}

type HookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(timeout: Duration) -> Result<HookClient, String> {
    let connector = crate::proxy::forward::https_connector(None, timeout)?;
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn deliver(
    mut rx: mpsc::Receiver<Alert>,
    client: HookClient,
    settings: Arc<WebhookSettings>,
    outcomes: Outcomes,
) {
    while let Some(alert) = rx.recv().await {
        let body = Bytes::from(serde_json::to_vec(&alert).unwrap_or_default());
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            match post(&client, &settings, body.clone()).await {
                Ok(()) => {
                    outcomes.ok.increment(1);
                    break;
                }
                Err(reason) if attempt >= settings.retries => {
                    outcomes.failed.increment(1);
                    let host = settings.url.host().unwrap_or_default();
                    tracing::warn!(host, alert = alert.name, %reason, "alert webhook failed; giving up on this alert");
                    break;
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

async fn post(client: &HookClient, settings: &WebhookSettings, body: Bytes) -> Result<(), String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(settings.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("tollgate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(settings.timeout, client.request(req)).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
    }
}
