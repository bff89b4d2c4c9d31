//! Coordination effects turned into the machine's answers, shared by the daemon's driver and the
//! cluster simulator ([`crate::sim`]) so both speak to the protocol in exactly the same way:
//! every error becomes the failing variant of the answer (fail closed), never a lost request.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::coord::{Coordinator, HealthRecord, QueueUpdate, Reattach};
use crate::fsm::*;

/// `ReadClusterHealth` → `ClusterHealthEvaluated` (an unreadable registry blocks).
pub async fn cluster_health<C: Coordinator>(coord: &C, id: EffectId) -> Event {
    let verdict = coord
        .cluster_health()
        .await
        .unwrap_or_else(|e| PolicyVerdict::Error {
            detail: e.to_string(),
        });
    Event::ClusterHealthEvaluated { id, verdict }
}

/// `ReadCooldown` → `CooldownRead` (an unreadable marker blocks).
pub async fn cooldown<C: Coordinator>(coord: &C, id: EffectId) -> Event {
    let status = coord
        .read_cooldown()
        .await
        .unwrap_or_else(|e| CooldownStatus::Error {
            detail: e.to_string(),
        });
    Event::CooldownRead { id, status }
}

/// `ReattachRebootLease` → `RebootLeaseReattached`.
pub async fn reattach<C: Coordinator>(coord: &C, id: EffectId) -> Event {
    let result = match coord.reattach_reboot_lease().await {
        Ok(Reattach::Attached) => ReattachResult::Attached,
        Ok(Reattach::Expired) => ReattachResult::Expired,
        Err(e) => ReattachResult::Failed {
            detail: e.to_string(),
        },
    };
    Event::RebootLeaseReattached { id, result }
}

/// `MoveSlotToRebootLease` → `RebootLeaseMoved`; refused without a durable journal record.
pub async fn move_lease<C: Coordinator>(
    coord: &C,
    id: EffectId,
    ttl_sec: u64,
    durable: bool,
) -> Event {
    let result = if durable {
        match coord
            .move_to_reboot_lease(Duration::from_secs(ttl_sec))
            .await
        {
            Ok(()) => StepResult::Ok,
            Err(e) => StepResult::Failed {
                detail: e.to_string(),
            },
        }
    } else {
        StepResult::Failed {
            detail: "the journal is not writable; refusing to start a reboot".into(),
        }
    };
    Event::RebootLeaseMoved { id, result }
}

/// The brakes now: the kill switch as sampled by the caller, the pause from coordination (an
/// unreadable pause is `unknown`: no reboot starts under it, but it is reported as the etcd
/// problem it is, not as an operator's pause).
pub async fn gates<C: Coordinator>(coord: &C, kill_switch: bool) -> Gates {
    let (pause, unknown) = match coord.pause().await {
        Ok(p) => (p, None),
        Err(e) => (None, Some(format!("cannot read the pause key: {e}"))),
    };
    Gates {
        kill_switch,
        pause,
        unknown,
    }
}

/// `JoinQueue`: waits for a slot, passing every queue change to `send` as `SlotQueued`, then
/// `SlotAcquired` or `SlotUnavailable`.
pub async fn join_queue<C: Coordinator>(coord: &C, id: EffectId, send: impl Fn(Event)) {
    let (utx, mut urx) = mpsc::channel::<QueueUpdate>(16);
    let forward = async {
        while let Some(u) = urx.recv().await {
            send(Event::SlotQueued {
                id,
                position: u.position,
                holders: u.holders,
                pool: u.pool,
            });
        }
    };
    let (result, ()) = tokio::join!(coord.join_queue(utx), forward);
    send(match result {
        Ok(()) => Event::SlotAcquired { id },
        Err(e) => Event::SlotUnavailable {
            id,
            detail: e.to_string(),
        },
    });
}

/// The record published for `PublishHealth` (a healthy record carries no reason).
pub fn health_record(
    node: &str,
    healthy: bool,
    stage: String,
    reason: String,
    now: jiff::Timestamp,
) -> HealthRecord {
    HealthRecord {
        node: node.to_string(),
        healthy,
        stage,
        reason: if healthy { String::new() } else { reason },
        reported_at: now.to_string(),
        group: None,
    }
}

/// The record the heartbeat publishes for a health-script result.
pub fn heartbeat_record(node: &str, result: &HealthResult, now: jiff::Timestamp) -> HealthRecord {
    let healthy = *result == HealthResult::Passed;
    let reason = match result {
        HealthResult::Passed => String::new(),
        HealthResult::Blocked { exit_code, .. } => format!("heartbeat exit {exit_code}"),
        HealthResult::Error { detail } => detail.clone(),
    };
    let stage = if healthy { "" } else { "heartbeat" };
    health_record(node, healthy, stage.into(), reason, now)
}
