//! Every pending request has a deadline (issue #12). A request whose adapter never answers (a
//! task that panicked, a call stuck somewhere) would otherwise leave the machine in Detecting,
//! HealthPre or Cooldown for good, while heartbeats make the node look alive.
//!
//! Deadlines are data, as in quinn-proto's timer table: when a step leaves the state waiting
//! for a request, [`Machine`](super::Machine) records `Pending { id, deadline }` from the
//! request's budget ([`Budgets`], derived from the configuration), and the driver asks
//! [`Machine::deadline`](super::Machine::deadline) how long it may sleep. Past the deadline the
//! driver feeds `EffectTimedOut { id }`, which every state already handles as that request's
//! failure; the input is journaled like any other, so replay reproduces it.

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::types::{EffectId, Millis};

/// How long each kind of request may take before it counts as failed (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Budgets {
    /// All detectors (their timeouts, a cap for those without, plus a margin).
    pub detectors_ms: u64,
    /// One health-script run (`health_timeout_sec` plus a margin).
    pub health_ms: u64,
    /// One hook list (hooks × `hooks.timeout_sec` plus a margin).
    pub hooks_ms: u64,
    /// One coordination call (etcd reads and writes, the local backend's files).
    pub coordination_ms: u64,
    /// The maintenance-window evaluation (local arithmetic).
    pub window_ms: u64,
    /// The reboot command (a slow `shutdown` may take a while to return).
    pub reboot_ms: u64,
}

/// What every budget adds to the adapter's own timeout: the adapter kills at its timeout and
/// answers; the deadline is only for an adapter that does not.
pub const MARGIN_MS: u64 = 10_000;

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            detectors_ms: 10 * 60_000 + MARGIN_MS,
            health_ms: 30_000 + MARGIN_MS,
            hooks_ms: 5 * 60_000 + MARGIN_MS,
            coordination_ms: 60_000,
            window_ms: MARGIN_MS,
            reboot_ms: 5 * 60_000,
        }
    }
}

impl Budgets {
    /// The budget of `effect`, or `None` for requests that may rightly wait for long: joining
    /// the queue (`lock_wait_timeout_sec` and the window bound it) and cluster waits (woken by a
    /// watch, with a timer of their own).
    pub fn of(&self, effect: &Effect) -> Option<u64> {
        match effect {
            Effect::RunDetectors { .. } => Some(self.detectors_ms),
            Effect::EvaluateWindow { .. } => Some(self.window_ms),
            Effect::RunHealthScript { .. } => Some(self.health_ms),
            Effect::RunHooks { .. } => Some(self.hooks_ms),
            Effect::ExecuteReboot { .. } => Some(self.reboot_ms),
            Effect::ReadClusterHealth { .. }
            | Effect::ReadCooldown { .. }
            | Effect::CheckGates { .. }
            | Effect::MoveSlotToRebootLease { .. }
            | Effect::ReattachRebootLease { .. } => Some(self.coordination_ms),
            _ => None,
        }
    }
}

/// The request the current state waits for, and when it counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Its id.
    pub id: EffectId,
    /// Past this instant the driver feeds `EffectTimedOut { id }`.
    pub deadline: Millis,
}
