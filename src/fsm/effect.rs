//! Outputs of the machine: commands for the adapters, as data.
//!
//! The driver executes them in order; those with an `id` are answered by an event carrying the
//! same id. The machine never waits for an answer inside a handler.

use serde::{Deserialize, Serialize};

use super::types::{EffectId, Millis, Phase};
use crate::exit::Exit;

/// One command for the adapters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// Wake the machine with a `Tick` at this instant; replaces any earlier scheduled tick.
    ScheduleTick {
        /// When.
        at: Millis,
    },
    /// Run every reboot-required detector → `DetectorsEvaluated`.
    RunDetectors {
        /// Request id.
        id: EffectId,
        /// Gate the run belongs to.
        phase: Phase,
    },
    /// Evaluate the maintenance windows now → `WindowEvaluated`.
    EvaluateWindow {
        /// Request id.
        id: EffectId,
    },
    /// Read the cluster-health registry and apply the policies → `ClusterHealthEvaluated`.
    ReadClusterHealth {
        /// Request id.
        id: EffectId,
    },
    /// Run the operator health script → `HealthChecked`.
    RunHealthScript {
        /// Request id.
        id: EffectId,
        /// `RC_PHASE`.
        phase: Phase,
    },
    /// Publish this node's health record (SPEC §6.3).
    PublishHealth {
        /// Healthy or not.
        healthy: bool,
        /// The gate it was checked at (`pre-lock`, `post-lock`, `post-reboot` in the record).
        stage: Phase,
        /// Why.
        reason: String,
    },
    /// Sample kill switch and pause now → `GatesObserved` with this id.
    CheckGates {
        /// Request id.
        id: EffectId,
    },
    /// Create this node's queue entry and wait for a slot → `SlotQueued`* then `SlotAcquired`.
    JoinQueue {
        /// Request id.
        id: EffectId,
    },
    /// Delete this node's queue entry without having held a slot.
    LeaveQueue,
    /// Give the slot back (delete the entry; revoke the reboot lease if there is one).
    ReleaseSlot,
    /// Move the slot onto a fresh lease of `ttl_sec` and write the in-progress marker, in one
    /// transaction that fails if the entry is gone → `RebootLeaseMoved`.
    MoveSlotToRebootLease {
        /// Request id.
        id: EffectId,
        /// Reboot lease TTL.
        ttl_sec: u64,
    },
    /// After boot: keep the persisted reboot lease alive again → `RebootLeaseReattached`.
    ReattachRebootLease {
        /// Request id.
        id: EffectId,
    },
    /// Delete this node's in-progress marker.
    ClearInProgress,
    /// Read the cluster cooldown marker → `CooldownRead`.
    ReadCooldown {
        /// Request id.
        id: EffectId,
    },
    /// Write the cluster cooldown marker (after a recovery).
    StartCooldown {
        /// Its duration.
        duration_sec: u64,
    },
    /// Resolve once something this node waits for in the coordination store changes (a slot
    /// released, an in-progress marker or a peer's health verdict changed, pause or cooldown
    /// gone) → `ClusterChanged`. Replaces any earlier such wait.
    AwaitClusterChange {
        /// Request id.
        id: EffectId,
    },
    /// After a passing post-reboot health check, in one transaction: delete the in-progress
    /// marker, write this node's healthy `post-reboot` record and the cluster cooldown, and
    /// release the slot (then revoke the reboot lease). The next holder can never see a stale
    /// marker, a stale unhealthy record, or a slot without the cooldown.
    CompleteRecovery {
        /// Cooldown to start (0 = none).
        cooldown_sec: u64,
    },
    /// Run the configured hooks of a stage in order → `HooksRan`.
    RunHooks {
        /// Request id.
        id: EffectId,
        /// Which list.
        stage: HookStage,
    },
    /// Run the reboot command (or only log it in dry-run) → `RebootCommandFinished`.
    ExecuteReboot {
        /// Request id.
        id: EffectId,
        /// The argv (before `$VAR` expansion).
        argv: Vec<String>,
        /// Log instead of executing.
        dry_run: bool,
    },
    /// Write `<run_dir>/last-reboot.json`.
    WritePostRebootMarker {
        /// Boot id before the reboot.
        previous_boot_id: String,
        /// Boot id now.
        boot_id: String,
        /// When the reboot command was issued.
        issued_at: Option<Millis>,
        /// When the daemon saw the new boot.
        returned_at: Millis,
    },
    /// End the process with this status.
    Exit {
        /// The status.
        code: Exit,
    },
}

impl Effect {
    /// Short name of the variant (spec tables, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Effect::ScheduleTick { .. } => "ScheduleTick",
            Effect::RunDetectors { .. } => "RunDetectors",
            Effect::EvaluateWindow { .. } => "EvaluateWindow",
            Effect::ReadClusterHealth { .. } => "ReadClusterHealth",
            Effect::RunHealthScript { .. } => "RunHealthScript",
            Effect::PublishHealth { .. } => "PublishHealth",
            Effect::CheckGates { .. } => "CheckGates",
            Effect::JoinQueue { .. } => "JoinQueue",
            Effect::LeaveQueue => "LeaveQueue",
            Effect::ReleaseSlot => "ReleaseSlot",
            Effect::MoveSlotToRebootLease { .. } => "MoveSlotToRebootLease",
            Effect::ReattachRebootLease { .. } => "ReattachRebootLease",
            Effect::ClearInProgress => "ClearInProgress",
            Effect::ReadCooldown { .. } => "ReadCooldown",
            Effect::StartCooldown { .. } => "StartCooldown",
            Effect::AwaitClusterChange { .. } => "AwaitClusterChange",
            Effect::CompleteRecovery { .. } => "CompleteRecovery",
            Effect::RunHooks { .. } => "RunHooks",
            Effect::ExecuteReboot { .. } => "ExecuteReboot",
            Effect::WritePostRebootMarker { .. } => "WritePostRebootMarker",
            Effect::Exit { .. } => "Exit",
        }
    }

    /// Whether the effect only observes: it reads or waits, and changes nothing a peer, the
    /// node or a later run of this daemon could see. A step whose effects all observe need
    /// not be durable before they run: losing its record in a crash is the same as crashing
    /// before the event arrived (the answer is lost, the machine asks again), so the driver
    /// appends it without fsync and the next step that acts makes both durable at once.
    /// Everything else (the queue, the slot, markers, health records, hooks, the reboot, the
    /// exit) waits for the fsync.
    pub fn only_observes(&self) -> bool {
        match self {
            Effect::ScheduleTick { .. }
            | Effect::RunDetectors { .. }
            | Effect::EvaluateWindow { .. }
            | Effect::ReadClusterHealth { .. }
            | Effect::RunHealthScript { .. }
            | Effect::CheckGates { .. }
            | Effect::ReadCooldown { .. }
            | Effect::AwaitClusterChange { .. } => true,
            Effect::PublishHealth { .. }
            | Effect::JoinQueue { .. }
            | Effect::LeaveQueue
            | Effect::ReleaseSlot
            | Effect::MoveSlotToRebootLease { .. }
            | Effect::ReattachRebootLease { .. }
            | Effect::ClearInProgress
            | Effect::StartCooldown { .. }
            | Effect::CompleteRecovery { .. }
            | Effect::RunHooks { .. }
            | Effect::ExecuteReboot { .. }
            | Effect::WritePostRebootMarker { .. }
            | Effect::Exit { .. } => false,
        }
    }

    /// Every variant name, in declaration order (the spec must list exactly these).
    pub const NAMES: [&'static str; 21] = [
        "ScheduleTick",
        "RunDetectors",
        "EvaluateWindow",
        "ReadClusterHealth",
        "RunHealthScript",
        "PublishHealth",
        "CheckGates",
        "JoinQueue",
        "LeaveQueue",
        "ReleaseSlot",
        "MoveSlotToRebootLease",
        "ReattachRebootLease",
        "ClearInProgress",
        "ReadCooldown",
        "StartCooldown",
        "AwaitClusterChange",
        "CompleteRecovery",
        "RunHooks",
        "ExecuteReboot",
        "WritePostRebootMarker",
        "Exit",
    ];

    /// The request id, for effects answered by an event.
    pub fn id(&self) -> Option<EffectId> {
        match self {
            Effect::RunDetectors { id, .. }
            | Effect::EvaluateWindow { id }
            | Effect::ReadClusterHealth { id }
            | Effect::RunHealthScript { id, .. }
            | Effect::CheckGates { id }
            | Effect::JoinQueue { id }
            | Effect::MoveSlotToRebootLease { id, .. }
            | Effect::ReattachRebootLease { id }
            | Effect::ReadCooldown { id }
            | Effect::AwaitClusterChange { id }
            | Effect::RunHooks { id, .. }
            | Effect::ExecuteReboot { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Which hook list to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookStage {
    /// Before the reboot command; a failure aborts the reboot.
    PreReboot,
    /// After boot, before the post-reboot health check.
    PostReboot,
}
