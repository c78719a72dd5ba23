//! The live feed: one broadcast of typed JSON messages (`{type, ts, data}`) that every WebSocket
//! client reads at its own pace.
//!
//! Owns the message shape and the feed's counters. Publishing never waits: a message is
//! serialized once and sent on a bounded `broadcast`; a client that falls more than `buffer`
//! messages behind is dropped (see `socket.rs`), so a slow client can never hold back the
//! publisher, let alone the proxy. `ticker.rs` produces the messages.

pub mod socket;
pub mod ticker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::config::FeedSettings;

/// One message as sent, serialized once for every client.
#[derive(Debug)]
pub struct Message {
    pub kind: &'static str,
    /// The rule a `violation` is about, for clients that subscribed to some rules.
    pub rule: Option<Arc<str>>,
    pub text: String,
}

/// The broadcast and its counters.
pub struct Feed {
    tx: broadcast::Sender<Arc<Message>>,
    pub settings: FeedSettings,
    clients: AtomicUsize,
    sent: AtomicU64,
    dropped_messages: AtomicU64,
    dropped_clients: AtomicU64,
    coalesced: AtomicU64,
    suppressed: AtomicU64,
}

impl Feed {
    pub fn new(settings: FeedSettings) -> Self {
        let (tx, _) = broadcast::channel(settings.buffer);
        Self {
            tx,
            settings,
            clients: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped_messages: AtomicU64::new(0),
            dropped_clients: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Sends `{type, ts, data}` to every client; a no-op without clients.
    pub fn publish(&self, kind: &'static str, ts: u64, data: Value, rule: Option<Arc<str>>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let text = json!({"type": kind, "ts": ts, "data": data}).to_string();
        let _ = self.tx.send(Arc::new(Message { kind, rule, text }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// Takes a client slot, or `None` when `max_clients` are connected.
    pub fn join(self: &Arc<Self>) -> Option<ClientSlot> {
        let taken = self.clients.fetch_add(1, Ordering::Relaxed);
        if taken >= self.settings.max_clients {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ClientSlot(self.clone()))
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn count_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A client fell `missed` messages behind and was dropped.
    pub fn count_dropped(&self, missed: u64) {
        self.dropped_clients.fetch_add(1, Ordering::Relaxed);
        self.dropped_messages.fetch_add(missed, Ordering::Relaxed);
    }

    /// Denials folded into `violation` messages beyond the first of each.
    pub fn count_coalesced(&self, n: u64) {
        self.coalesced.fetch_add(n, Ordering::Relaxed);
    }

    /// Denials left out of the feed because more keys were denied in a second than it carries.
    pub fn count_suppressed(&self, n: u64) {
        self.suppressed.fetch_add(n, Ordering::Relaxed);
    }

    /// `GET /api/ws/health`.
    pub fn health(&self) -> Value {
        json!({
            "clients": self.clients(),
            "messages_sent": self.sent.load(Ordering::Relaxed),
            "messages_dropped": self.dropped_messages.load(Ordering::Relaxed),
            "clients_dropped": self.dropped_clients.load(Ordering::Relaxed),
            "violations_coalesced": self.coalesced.load(Ordering::Relaxed),
            "violations_suppressed": self.suppressed.load(Ordering::Relaxed),
        })
    }
}

/// A connected client's place; gives it back on drop.
pub struct ClientSlot(Arc<Feed>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}
