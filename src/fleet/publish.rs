//! Writes this node's [`NodeState`] from a task of its own: the driver hands over the newest
//! record and goes on; the task writes it, retries a failed write with backoff (a newer record
//! replaces the one being retried), and reports each write as a metric
//! (`node_state_publishes_total{result}`) and each failure also as a log line. Nothing here
//! can block or change a decision.
//!
//! Every [`REFRESH`] the task offers the same record again: the backend writes nothing while
//! the lease it sits on lives, and re-publishes it on a new session after the old one was
//! lost (etcd unreachable for longer than `lock_ttl_sec`), so an idle node does not vanish
//! from the fleet view until its next transition.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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

/// Hands records to the publishing task (which ends when this is dropped).
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Option<NodeState>>,
}

impl Publisher {
    /// Starts the publishing task. Must run inside a tokio runtime.
    pub fn start<C: Coordinator>(coord: Arc<C>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(run(coord, metrics, rx));
        Publisher { tx }
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
) {
    loop {
        // A new record, or the refresh timer; the sender gone ends the task.
        if let Ok(Err(_)) = tokio::time::timeout(REFRESH, rx.changed()).await {
            return;
        }
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
}
