//! One shutdown signal for the whole process, and a count of work still in flight to drain.
//!
//! `Shutdown::trigger` flips a watch channel every listener selects on; `Tracker` counts open
//! connections (and, later, flushes) so `drain` can wait for them up to a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// The process-wide shutdown switch.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Resolves once shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Resolves once the receiver's shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Counts things that must finish before exit.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<(AtomicUsize, Notify)>,
}

/// Held while one tracked thing is in flight.
pub struct Token(Tracker);

impl Tracker {
    pub fn enter(&self) -> Token {
        self.inner.0.fetch_add(1, Ordering::AcqRel);
        Token(self.clone())
    }

    pub fn active(&self) -> usize {
        self.inner.0.load(Ordering::Acquire)
    }

    /// Wait until nothing is in flight or `deadline` passes; returns how many were left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.inner.1.notified();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.active()
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.0.inner.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.inner.1.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tokens_up_to_the_deadline() {
        let t = Tracker::default();
        assert_eq!(t.drain(Duration::from_secs(1)).await, 0);
        let held = t.enter();
        assert_eq!(
            t.drain(Duration::from_secs(1)).await,
            1,
            "deadline passes with one left"
        );
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.drain(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
