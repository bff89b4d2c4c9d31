//! Coordination bookkeeping that must eventually happen, in order: leave the queue, clear the
//! in-progress marker, write the cooldown, release the slot.
//!
//! These commands carry no answer for the machine, but losing one is harmful (a marker left in
//! etcd blocks every peer; a missing cooldown lets the next node reboot too early). So they go
//! through one ordered queue that retries each with backoff until it succeeds (all of them are
//! idempotent), and the driver waits a bounded time for the queue to drain before it exits.
//!
//! A node does not join the queue again while any of them is pending: its queue key is derived
//! from its session lease, so a new entry would have the same key as the one an earlier leave or
//! release is still deleting — that delete, landing late, would take away the new slot, even
//! after the node moved it onto its reboot lease and rebooted (found by chaos scenario 10: etcd
//! leader killed while a node gave its slot back).

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
    /// After recovery: marker, healthy record, cooldown and release in one transaction.
    CompleteRecovery(Duration),
}

/// The ordered, retrying queue.
/// Dropping it stops the worker (a crashed simulated daemon must not keep retrying).
pub struct Chores {
    tx: mpsc::UnboundedSender<Chore>,
    pending: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    worker: tokio::task::JoinHandle<()>,
    /// Cuts the worker's retry wait short (a join is waiting for the queue to drain).
    nudge: Arc<Notify>,
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
        let nudge = Arc::new(Notify::new());
        let (p, n, retry_now) = (pending.clone(), drained.clone(), nudge.clone());
        let worker = tokio::spawn(async move {
            while let Some(chore) = rx.recv().await {
                let mut delay = Duration::from_millis(500);
                loop {
                    let started = std::time::Instant::now();
                    let result = match chore {
                        Chore::LeaveQueue => coord.leave_queue().await,
                        Chore::ReleaseSlot => coord.release_slot().await,
                        Chore::ClearInProgress => coord.clear_in_progress().await,
                        Chore::StartCooldown(d) => coord.start_cooldown(d).await,
                        Chore::CompleteRecovery(d) => coord.complete_recovery(d).await,
                    };
                    if matches!(chore, Chore::ReleaseSlot | Chore::CompleteRecovery(_)) {
                        // Go's `lock_release_seconds`: each try, so a retried release shows
                        // its failed tries as `error` and the last one as `success`.
                        let took = started.elapsed().as_secs_f64();
                        let res = if result.is_ok() { "success" } else { "error" };
                        metrics.lock_release(res, took);
                    }
                    let starts_cooldown = match chore {
                        Chore::StartCooldown(_) => true,
                        Chore::CompleteRecovery(d) => !d.is_zero(),
                        _ => false,
                    };
                    match (result, chore) {
                        (Ok(()), Chore::ReleaseSlot | Chore::CompleteRecovery(_)) => {
                            if starts_cooldown {
                                metrics.cooldown_activation("success");
                            }
                            tracing::info!(event = "slot_released", "reboot slot released")
                        }
                        (Ok(()), Chore::StartCooldown(_)) => metrics.cooldown_activation("success"),
                        (Ok(()), _) => {}
                        (Err(e), _) => {
                            if starts_cooldown {
                                metrics.cooldown_activation("error");
                            }
                            tracing::warn!(event = "coordination_update_failed", chore = ?chore, error = %e, retry_in = ?delay, "coordination update failed; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(delay) => {}
                                () = retry_now.notified() => {}
                            }
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
            nudge,
        }
    }

    /// Chores queued and not done yet (one that is being retried counts until it succeeded).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Why the node must not join the slot queue now (chores pending, see the module doc), or
    /// `None`. When blocked, the worker retries at once instead of finishing its backoff, so
    /// that after an outage the node is not kept out of the queue for up to 30 s.
    pub fn join_blocked(&self) -> Option<String> {
        let n = self.pending();
        if n == 0 {
            return None;
        }
        self.nudge.notify_one();
        Some(format!(
            "{n} coordination update(s) from the previous attempt not applied yet (etcd unreachable?); joining the queue again later"
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::etcd::{EtcdBackend, EtcdConfig};
    use crate::coord::keys::Keys;
    use crate::coord::kv::{Kv, RangeOpts};
    use crate::coord::memkv::MemKv;

    /// A leave that cannot reach etcd keeps the node out of the queue until it got through.
    #[tokio::test(start_paused = true)]
    async fn joining_is_blocked_until_a_failing_leave_got_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = MemKv::new();
        let coord = Arc::new(EtcdBackend::new(
            kv.clone(),
            EtcdConfig::new(
                "n1",
                "b",
                Keys::new("/t", "/lock"),
                1,
                Duration::from_secs(10),
                crate::coord::etcd::LeaseStore::in_dir(dir.path()),
            ),
        ));
        let (tx, _rx) = mpsc::channel(4);
        coord.join_queue(tx).await.expect("join");
        let chores = Chores::start(coord.clone(), Arc::new(Metrics::new("t", "t")));
        assert_eq!(chores.join_blocked(), None);

        kv.set_available(false);
        chores.push(Chore::LeaveQueue);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let why = chores
            .join_blocked()
            .expect("blocked while the leave fails");
        assert!(why.starts_with("1 coordination update(s)"), "{why}");

        // Back: the worker sleeps 8 s before its next attempt, but a join attempt makes it
        // retry at once.
        kv.set_available(true);
        assert!(chores.join_blocked().is_some());
        assert_eq!(chores.drain(Duration::from_millis(100)).await, 0);
        assert_eq!(chores.join_blocked(), None);
        // The entry really is gone (the retry deleted it).
        let left = kv
            .range("/t/lock/", RangeOpts::default())
            .await
            .expect("range");
        assert!(left.kvs.is_empty(), "{:?}", left.kvs);
    }
}
