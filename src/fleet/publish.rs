//! Writes this node's [`NodeState`] from a task of its own: the driver hands over the newest
//! record and goes on; the task writes it, retries a failed write with backoff (a newer record
//! replaces the one being retried), and reports each write as a metric
//! (`node_state_publishes_total{result}`) and each failure also as a log line. Nothing here
//! can block or change a decision.
//!
//! Records are coalesced: the task writes [`COALESCE`] after the first change it has not
//! written, the newest record by then. A reboot hand-off runs a dozen transitions in ~20 ms;
//! one `node_state` write per transition there cost the next node ~7 ms of its hand-off (each
//! write is an etcd commit the next linearizable read waits behind) and etcd a write per step
//! (docs/PERFORMANCE.md, "Hand-off latency"). The fleet view is at most [`COALESCE`] behind;
//! [`Publisher::flush`] writes what is pending at once (the driver calls it before it exits).
//!
//! Every [`REFRESH`] the task offers the same record again: the backend writes nothing while
//! the lease it sits on lives, and re-publishes it on a new session after the old one was
//! lost (etcd unreachable for longer than `lock_ttl_sec`), so an idle node does not vanish
//! from the fleet view until its next transition.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::NodeState;
use crate::coord::{CoordError, Coordinator};
use crate::metrics::Metrics;

/// How long one write may take before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between retries of a failed write.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the unchanged record is offered again (costs nothing while its lease lives).
pub const REFRESH: Duration = Duration::from_secs(30);
/// How long after a change the record is written (later changes in between ride along).
pub const COALESCE: Duration = Duration::from_millis(100);

/// Hands records to the publishing task (which ends when this is dropped).
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Option<NodeState>>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

impl Publisher {
    /// Starts the publishing task. Must run inside a tokio runtime.
    pub fn start<C: Coordinator>(coord: Arc<C>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = watch::channel(None);
        let (flush, flushes) = mpsc::channel(4);
        tokio::spawn(run(coord, metrics, rx, flushes));
        Publisher { tx, flush }
    }

    /// Writes the pending record now (no [`COALESCE`] wait) and waits for it, at most `limit`:
    /// what the node last did stays visible after the process exits.
    pub async fn flush(&self, limit: Duration) {
        let (done, wait) = oneshot::channel();
        if self.flush.try_send(done).is_ok() {
            let _ = tokio::time::timeout(limit, wait).await;
        }
    }

    /// Queues `record` for writing; returns at once. Only the newest queued record is written.
    pub fn publish(&self, record: NodeState) {
        self.tx.send_replace(Some(record));
    }
}

async fn run<C: Coordinator>(
    coord: Arc<C>,
    metrics: Arc<Metrics>,
    mut rx: watch::Receiver<Option<NodeState>>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    loop {
        // A new record (then the coalescing wait, which a flush cuts short), a flush, or the
        // refresh timer; the sender gone ends the task.
        let mut ack = None;
        tokio::select! {
            changed = tokio::time::timeout(REFRESH, rx.changed()) => {
                if let Ok(Err(_)) = changed {
                    return;
                }
                if changed.is_ok() {
                    tokio::select! {
                        () = tokio::time::sleep(COALESCE) => {}
                        f = flushes.recv() => ack = f,
                    }
                }
            }
            f = flushes.recv() => match f {
                Some(f) => ack = Some(f),
                None => return,
            },
        }
        write_newest(coord.as_ref(), &metrics, &mut rx).await;
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Writes the newest record, retrying with backoff until it lands (a newer one replaces it).
async fn write_newest<C: Coordinator>(
    coord: &C,
    metrics: &Metrics,
    rx: &mut watch::Receiver<Option<NodeState>>,
) {
    let mut delay = RETRY_MIN;
    loop {
        let Some(record) = rx.borrow_and_update().clone() else {
            break;
        };
        let result = tokio::time::timeout(WRITE_TIMEOUT, coord.publish_node_state(&record))
            .await
            .unwrap_or_else(|_| {
                Err(CoordError::Busy(format!(
                    "no answer within {} s",
                    WRITE_TIMEOUT.as_secs()
                )))
            });
        match result {
            Ok(written) => {
                if written {
                    metrics.node_state_publish("written");
                }
                break;
            }
            Err(e) => {
                metrics.node_state_publish("error");
                tracing::warn!(event = "node_state_publish_failed", state = %record.state, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot publish this node's state for the fleet view; retrying (decisions are not affected)");
                // A newer record cuts the wait short; the loop then writes that one.
                if let Ok(Err(_)) = tokio::time::timeout(delay, rx.changed()).await {
                    return;
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}
