//! Canonical answers to effects: the event an adapter that succeeds at everything would send.
//!
//! Used by tests, example traces and the simulator to walk the machine along its happy path,
//! and as the base that fault injection then edits.

use super::effect::Effect;
use super::event::*;
use super::types::Outcome;

/// The successful answer to `effect`, or `None` for effects nobody answers (ticks, releases…).
pub fn success(effect: &Effect) -> Option<Event> {
    Some(match effect {
        Effect::RunDetectors { id, .. } => Event::DetectorsEvaluated {
            id: *id,
            result: DetectorResult::Required {
                by: vec!["file:/var/run/reboot-required".into()],
            },
        },
        Effect::EvaluateWindow { id } => Event::WindowEvaluated {
            id: *id,
            verdict: WindowVerdict::Open {
                closes_at: None,
                closes_by: Some(Outcome::WindowOutsideAllow),
            },
        },
        Effect::ReadClusterHealth { id } => Event::ClusterHealthEvaluated {
            id: *id,
            verdict: PolicyVerdict::Pass,
        },
        Effect::RunHealthScript { id, .. } => Event::HealthChecked {
            id: *id,
            result: HealthResult::Passed,
        },
        Effect::CheckGates { id } => Event::GatesObserved {
            id: Some(*id),
            gates: Default::default(),
        },
        Effect::JoinQueue { id } => Event::SlotAcquired { id: *id },
        Effect::ReadCooldown { id } => Event::CooldownRead {
            id: *id,
            status: CooldownStatus::Clear,
        },
        Effect::MoveSlotToRebootLease { id, .. } => Event::RebootLeaseMoved {
            id: *id,
            result: StepResult::Ok,
        },
        Effect::RunHooks { id, .. } => Event::HooksRan {
            id: *id,
            result: StepResult::Ok,
        },
        Effect::ExecuteReboot { id, .. } => Event::RebootCommandFinished {
            id: *id,
            result: StepResult::Ok,
        },
        Effect::ReattachRebootLease { id } => Event::RebootLeaseReattached {
            id: *id,
            result: ReattachResult::Attached,
        },
        Effect::AwaitClusterChange { id } => Event::ClusterChanged { id: *id },
        Effect::ScheduleTick { .. }
        | Effect::CompleteRecovery { .. }
        | Effect::PublishHealth { .. }
        | Effect::LeaveQueue
        | Effect::ReleaseSlot
        | Effect::ClearInProgress
        | Effect::StartCooldown { .. }
        | Effect::WritePostRebootMarker { .. }
        | Effect::Exit { .. } => return None,
    })
}
