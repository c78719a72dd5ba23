//! One WebSocket client: the upgrade (token, Origin, subprotocol), then a loop that forwards
//! broadcast messages, answers pings, applies `subscribe` filters and drops the client when it
//! lags or stops answering.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use hyper_tungstenite::tungstenite::Message as WsMessage;
use hyper_tungstenite::HyperWebsocket;
use tokio::sync::broadcast::error::RecvError;

use super::{ClientSlot, Feed, Message};
use crate::admin::auth::{offers_subprotocol, Auth, SUBPROTOCOL};
use crate::admin::error::ApiError;
use crate::admin::reply::Body;

/// Largest message a client may send (a subscribe is a few hundred bytes).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// A client that takes longer to accept one message is too slow, and is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the request and answers 101, serving the client on a task of its own.
pub fn upgrade(
    auth: &Auth,
    feed: &Arc<Feed>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if !auth.origin_allowed(req.headers()) {
        return Err(ApiError::Origin);
    }
    auth.check_socket(req.headers())?;
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return Err(ApiError::BadRequest(
            "this is the WebSocket feed: send an Upgrade: websocket request".into(),
        ));
    }
    let slot = feed
        .join()
        .ok_or(ApiError::FeedFull(feed.settings.max_clients))?;
    let with_protocol = offers_subprotocol(req.headers());
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE));
    let (response, socket) = hyper_tungstenite::upgrade(&mut req, Some(config))
        .map_err(|e| ApiError::BadRequest(format!("bad WebSocket upgrade: {e}")))?;
    tokio::spawn(serve(socket, feed.clone(), slot));
    let (mut parts, _) = response.into_parts();
    if with_protocol {
        parts.headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(Response::from_parts(parts, Body::default()))
}

async fn serve(socket: HyperWebsocket, feed: Arc<Feed>, _slot: ClientSlot) {
    let Ok(ws) = socket.await else { return };
    let (mut sink, mut stream) = ws.split();
    let mut rx = feed.subscribe();
    let heartbeat = feed.settings.heartbeat_interval;
    let mut check = tokio::time::interval(heartbeat);
    check.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut rules: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    if wanted(&m, &rules) {
                        match tokio::time::timeout(SEND_TIMEOUT, sink.send(WsMessage::text(m.text.clone()))).await {
                            Ok(Ok(())) => feed.count_sent(),
                            Ok(Err(_)) => return,
                            Err(_) => {
                                // Its socket is full: it stopped reading. Nothing more to say to it.
                                feed.count_dropped(1 + rx.len() as u64);
                                return;
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    feed.count_dropped(missed);
                    let close = CloseFrame { code: CloseCode::Policy, reason: "too slow: fell behind the feed".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(WsMessage::Close(Some(close)))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    last_heard = tokio::time::Instant::now();
                    if let Some(r) = subscription(&text) { rules = r; }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
            _ = check.tick() => {
                // Two heartbeats without a word (pong included): the client is gone.
                if last_heard.elapsed() > heartbeat * 2 {
                    let close = CloseFrame { code: CloseCode::Away, reason: "no pong".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(WsMessage::Close(Some(close)))).await;
                    return;
                }
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() { return; }
            }
        }
    }
}

/// Violations go only to clients subscribed to their rule (or to all rules).
fn wanted(m: &Message, rules: &Option<Vec<String>>) -> bool {
    match (&m.rule, rules) {
        (Some(rule), Some(rules)) if m.kind == "violation" => rules.iter().any(|r| **r == **rule),
        _ => true,
    }
}

/// `{"type": "subscribe", "rules": [..]}`: `Some(None)` for every rule, `None` if not a subscribe.
fn subscription(text: &str) -> Option<Option<Vec<String>>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "subscribe" {
        return None;
    }
    let rules = v.get("rules").cloned().unwrap_or_default();
    let rules: Option<Vec<String>> = serde_json::from_value(rules).ok()?;
    Some(rules.filter(|r| !r.is_empty()))
}
