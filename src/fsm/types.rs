//! Small value types shared by events, effects and the machine.

use serde::{Deserialize, Serialize};

use crate::exit::Exit;

/// Wall-clock time in milliseconds since the Unix epoch. The machine never reads a clock: every
/// input carries `now` in this unit, and every timer it asks for is an absolute instant.
pub type Millis = u64;

/// Identifies one requested effect; the event answering it carries the same id, so a late answer
/// to an abandoned request is recognised and ignored.
pub type EffectId = u64;

/// Which gate a detector or health-script run belongs to (exported as `RC_PHASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before joining the slot queue.
    PreLock,
    /// Under the slot, right before the reboot.
    PostLock,
    /// The periodic heartbeat (driven outside the machine).
    Heartbeat,
    /// After the node came back, before the slot is released.
    PostReboot,
    /// A one-shot pass (`run --once`, `status`) that found no reboot required: the Go daemon
    /// runs the health script then and exits 3 when it fails (a cron health probe relies on it).
    Monitor,
}

impl Phase {
    /// The `RC_PHASE` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreLock => "pre-lock",
            Phase::PostLock => "post-lock",
            Phase::Heartbeat => "heartbeat",
            Phase::PostReboot => "post-reboot",
            Phase::Monitor => "monitor",
        }
    }
}

/// The Go daemon's outcome names: how a pass ended. Dashboards and scripts key on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do: no reboot required.
    NoAction,
    /// A deny window matched.
    WindowDenied,
    /// Allow windows exist and none matched.
    WindowOutsideAllow,
    /// The health script or the cluster policy blocked.
    HealthBlocked,
    /// The cluster cooldown has not elapsed.
    CooldownActive,
    /// The slot could not be obtained (or coordination failed).
    LockUnavailable,
    /// Detectors no longer require a reboot under the slot.
    RecheckCleared,
    /// The kill switch file exists or the cluster is paused.
    KillSwitchActive,
    /// Lock skipped on request (`status --skip-lock`).
    LockSkipped,
    /// Every gate passed: the node may reboot now.
    Ready,
}

impl Outcome {
    /// The Go name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NoAction => "no_action",
            Outcome::WindowDenied => "window_denied",
            Outcome::WindowOutsideAllow => "window_outside_allow",
            Outcome::HealthBlocked => "health_blocked",
            Outcome::CooldownActive => "cooldown_active",
            Outcome::LockUnavailable => "lock_unavailable",
            Outcome::RecheckCleared => "recheck_cleared",
            Outcome::KillSwitchActive => "kill_switch_active",
            Outcome::LockSkipped => "lock_skipped",
            Outcome::Ready => "ready",
        }
    }

    /// Parses a Go outcome name.
    pub fn from_name(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Every outcome, for documentation and tests.
    pub const ALL: [Outcome; 10] = [
        Outcome::NoAction,
        Outcome::WindowDenied,
        Outcome::WindowOutsideAllow,
        Outcome::HealthBlocked,
        Outcome::CooldownActive,
        Outcome::LockUnavailable,
        Outcome::RecheckCleared,
        Outcome::KillSwitchActive,
        Outcome::LockSkipped,
        Outcome::Ready,
    ];

    /// Process exit code of a pass that ended with this outcome (Go `exitCodeForOutcome`: only
    /// kill switch, health and lock outcomes are non-zero; see docs/GO-COMPAT.md §3).
    pub fn exit(self) -> Exit {
        match self {
            Outcome::NoAction
            | Outcome::WindowDenied
            | Outcome::WindowOutsideAllow
            | Outcome::RecheckCleared
            | Outcome::LockSkipped
            | Outcome::CooldownActive
            | Outcome::Ready => Exit::Ok,
            Outcome::HealthBlocked => Exit::HealthBlocked,
            Outcome::LockUnavailable => Exit::LockUnavailable,
            Outcome::KillSwitchActive => Exit::KillSwitch,
        }
    }
}

/// Operator brakes observed by the driver (cheap, side-effect-free samples).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gates {
    /// The kill switch file exists.
    pub kill_switch: bool,
    /// The cluster is paused; the pause reason.
    pub pause: Option<String>,
    /// The pause could not be read (etcd unreachable): not a brake an operator set, so a pass
    /// is not ended as `kill_switch_active` for it (issue #14), but no reboot starts under it —
    /// it ends as `lock_unavailable`, an etcd problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl Gates {
    /// Whether either brake is on.
    pub fn active(&self) -> bool {
        self.kill_switch || self.pause.is_some()
    }

    /// Whether a reboot must not start now: a brake is on, or the pause cannot be read.
    pub fn blocks_reboot(&self) -> bool {
        self.active() || self.unknown.is_some()
    }

    /// Words for the reason line.
    pub fn describe(&self, kill_switch_file: &str) -> String {
        match (&self.pause, self.kill_switch) {
            (Some(r), true) => {
                format!("kill switch {kill_switch_file} present and cluster paused ({r})")
            }
            (Some(r), false) => format!("cluster paused ({r})"),
            (None, true) => format!("kill switch {kill_switch_file} present"),
            (None, false) => match &self.unknown {
                Some(u) => format!("pause state unknown ({u})"),
                None => "no kill switch, not paused".into(),
            },
        }
    }
}

/// Formats an instant for reason lines (RFC 3339, UTC, second precision).
pub fn fmt_ms(ms: Millis) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.to_string(),
        Err(_) => format!("{ms}ms"),
    }
}

/// Formats a duration in milliseconds for reason lines (`1m 30s`, `7 ms`): [`crate::human`].
pub fn fmt_dur(ms: u64) -> String {
    crate::human::duration_ms(ms)
}
