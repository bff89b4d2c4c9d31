//! Coordination bookkeeping that must eventually happen, in order: leave the queue, clear the
//! in-progress marker, write the cooldown, release the slot.
//!
//! These commands carry no answer for the machine, but losing one is harmful (a marker left in
//! etcd blocks every peer; a missing cooldown lets the next node reboot too early). So they go
//! through one ordered queue that retries each with backoff until it succeeds (all of them are
//! idempotent), and the driver waits a bounded time for the queue to drain before it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::coord::Coordinator;
use crate::metrics::Metrics;

/// One bookkeeping command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    /// Delete the queue entry.
    LeaveQueue,
    /// Give the slot back.
    ReleaseSlot,
    /// Delete this node's in-progress marker.
    ClearInProgress,
    /// Write the cluster cooldown.
    StartCooldown(Duration),
}

/// The ordered, retrying queue.
/// Dropping it stops the worker (a crashed simulated daemon must not keep retrying).
pub struct Chores {
    tx: mpsc::UnboundedSender<Chore>,
    pending: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    worker: tokio::task::JoinHandle<()>,
}

impl Drop for Chores {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

impl Chores {
    /// Starts the worker.
    pub fn start<C: Coordinator>(coord: Arc<C>, metrics: Arc<Metrics>) -> Chores {
        let (tx, mut rx) = mpsc::unbounded_channel::<Chore>();
        let pending = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let (p, n) = (pending.clone(), drained.clone());
        let worker = tokio::spawn(async move {
            while let Some(chore) = rx.recv().await {
                let mut delay = Duration::from_millis(500);
                loop {
                    let result = match chore {
                        Chore::LeaveQueue => coord.leave_queue().await,
                        Chore::ReleaseSlot => coord.release_slot().await,
                        Chore::ClearInProgress => coord.clear_in_progress().await,
                        Chore::StartCooldown(d) => coord.start_cooldown(d).await,
                    };
                    match (result, chore) {
                        (Ok(()), Chore::ReleaseSlot) => {
                            tracing::info!(event = "slot_released", "reboot slot released")
                        }
                        (Ok(()), Chore::StartCooldown(_)) => metrics.cooldown_activation("success"),
                        (Ok(()), _) => {}
                        (Err(e), _) => {
                            if let Chore::StartCooldown(_) = chore {
                                metrics.cooldown_activation("error");
                            }
                            tracing::warn!(event = "coordination_update_failed", chore = ?chore, error = %e, retry_in = ?delay, "coordination update failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                            continue;
                        }
                    }
                    break;
                }
                p.fetch_sub(1, Ordering::SeqCst);
                n.notify_waiters();
            }
        });
        Chores {
            tx,
            pending,
            drained,
            worker,
        }
    }

    /// Queues a chore.
    pub fn push(&self, chore: Chore) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(chore).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits until every queued chore is done, at most `limit`; returns how many are left.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.drained.notified();
            let left = self.pending.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst);
            }
        }
    }
}
