//! The pure decision core (SPEC §2): a statig state machine that consumes [`Input`]s and emits
//! [`Effect`]s. No I/O, no clock, no randomness: time and jitter arrive inside inputs, results of
//! slow work arrive as events, and commands leave as data.
//!
//! Contract for callers (the driver, replay, the simulator):
//! 1. Create a [`Machine`] (or [`Machine::restore`] a snapshot), feed it `Started` first.
//! 2. For each observation call [`Machine::handle`]; journal the returned [`Step`] durably, then
//!    execute its effects in order (`Exit` is always last).
//! 3. Answer every effect that has an id with the matching event; a `ScheduleTick` replaces any
//!    earlier one.

pub mod answer;
pub mod backoff;
pub mod config;
pub mod deadline;
pub mod effect;
pub mod event;
pub mod machine;
pub mod record;
pub mod types;

use serde::{Deserialize, Serialize};
use statig::blocking::{InitializedStateMachine, IntoStateMachineExt as _};

pub use config::{FsmConfig, RunMode};
pub use effect::{Effect, HookStage};
pub use event::*;
pub use machine::{Core, Ctx, State};
pub use types::{EffectId, Gates, Millis, Outcome, Phase};

use crate::exit::Exit;

/// Names of the states, without their data (logs, metrics labels, the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateName {
    /// Waiting for the next check.
    Idle,
    /// Running detectors.
    Detecting,
    /// Evaluating maintenance windows.
    WindowCheck,
    /// Cluster policy + health script before the queue.
    HealthPre,
    /// In the slot queue.
    Locking,
    /// Re-checking everything under the slot.
    HealthPost,
    /// Reading the cluster cooldown under the slot.
    Cooldown,
    /// Moving the slot to the reboot lease, hooks, reboot command.
    Rebooting,
    /// After boot, until post-reboot health passes.
    Recovering,
}

impl StateName {
    /// Whether this node holds a reboot slot in this state (the `slot` superstate and the
    /// reboot and recovery after it): the `lock_held` metric and `state.json`'s `slot.held`.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            StateName::HealthPost
                | StateName::Cooldown
                | StateName::Rebooting
                | StateName::Recovering
        )
    }

    /// Every state, in lifecycle order.
    pub const ALL: [StateName; 9] = [
        StateName::Idle,
        StateName::Detecting,
        StateName::WindowCheck,
        StateName::HealthPre,
        StateName::Locking,
        StateName::HealthPost,
        StateName::Cooldown,
        StateName::Rebooting,
        StateName::Recovering,
    ];

    /// The name as written in the spec and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Idle => "Idle",
            StateName::Detecting => "Detecting",
            StateName::WindowCheck => "WindowCheck",
            StateName::HealthPre => "HealthPre",
            StateName::Locking => "Locking",
            StateName::HealthPost => "HealthPost",
            StateName::Cooldown => "Cooldown",
            StateName::Rebooting => "Rebooting",
            StateName::Recovering => "Recovering",
        }
    }

    /// Whether the node owns a queue entry or slot in this state (released on leaving).
    pub fn in_slot(self) -> bool {
        matches!(
            self,
            StateName::Locking | StateName::HealthPost | StateName::Cooldown
        )
    }
}

/// Whether a transition belongs to a check that found nothing to do: the check starting
/// (`Idle -> Detecting`) or ending with `no_action` (`Detecting -> Idle`). An idle node makes
/// one pair per interval: logs keep them at debug and `status --explain` counts them instead
/// of listing them (issue #19).
pub fn is_idle_check(from: StateName, to: StateName, outcome: Option<Outcome>) -> bool {
    match (from, to) {
        (StateName::Idle, StateName::Detecting) => true,
        (StateName::Detecting, StateName::Idle) => outcome == Some(Outcome::NoAction),
        _ => false,
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl State {
    /// The state's name without its data.
    pub fn name(&self) -> StateName {
        match self {
            State::Idle {} => StateName::Idle,
            State::Detecting { .. } => StateName::Detecting,
            State::WindowCheck { .. } => StateName::WindowCheck,
            State::HealthPre { .. } => StateName::HealthPre,
            State::Locking { .. } => StateName::Locking,
            State::HealthPost { .. } => StateName::HealthPost,
            State::Cooldown { .. } => StateName::Cooldown,
            State::Rebooting { .. } => StateName::Rebooting,
            State::Recovering { .. } => StateName::Recovering,
        }
    }

    /// The request this state is waiting for, if any.
    pub fn pending(&self) -> Option<EffectId> {
        match self {
            State::Idle {} => None,
            State::Detecting { pending }
            | State::WindowCheck { pending }
            | State::HealthPre { pending, .. }
            | State::Locking { pending, .. }
            | State::HealthPost { pending, .. }
            | State::Cooldown { pending }
            | State::Rebooting { pending, .. }
            | State::Recovering { pending, .. } => Some(*pending),
        }
    }
}

/// What one input did: the journal record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// State before.
    pub from: StateName,
    /// State after.
    pub to: StateName,
    /// Effects to execute, in order.
    pub effects: Vec<Effect>,
    /// One-line human reason.
    pub reason: String,
    /// Go outcome, when a pass ended.
    pub outcome: Option<Outcome>,
    /// Exit code of the pass that ended, when one did.
    pub exit: Option<Exit>,
}

/// Everything needed to continue exactly where a machine was (journal snapshots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The state with its local data.
    pub state: State,
    /// The shared data.
    pub core: Core,
}

/// The machine behind a small API: inputs in, [`Step`]s out.
pub struct Machine {
    sm: InitializedStateMachine<Core>,
    /// The pending request's deadline ([`deadline`]): rebuilt by every step, empty after a
    /// restore (the next input of a process is always `Started`, which re-issues requests).
    pending: Option<deadline::Pending>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("state", self.sm.state())
            .finish()
    }
}

impl Machine {
    /// A fresh machine in Idle with default configuration; feed it `Started` first.
    pub fn new() -> Self {
        let sm = Core::default()
            .uninitialized_state_machine()
            .init_with_context(&mut Ctx::default());
        Machine { sm, pending: None }
    }

    /// Continues from a snapshot **without executing anything**: statig re-runs the entry actions
    /// of the restored state during initialisation, so they run into a discarded outbox (entry
    /// actions only emit effects, they never change data).
    pub fn restore(snapshot: Snapshot) -> Self {
        let mut u = Core::default().uninitialized_state_machine();
        *u.state_mut() = snapshot.state;
        *u.inner_mut() = snapshot.core;
        let mut discarded = Ctx::default();
        let sm = u.init_with_context(&mut discarded);
        Machine { sm, pending: None }
    }

    /// The request the current state waits for and its deadline, if it has one: the driver
    /// sleeps no longer than this, and past it feeds `EffectTimedOut { id }`.
    pub fn deadline(&self) -> Option<deadline::Pending> {
        self.pending
    }

    /// Keeps the deadline table equal to what the state waits for after `step`.
    fn track_pending(&mut self, input: &Input, effects: &[Effect]) {
        let waiting = self.sm.state().pending();
        self.pending = match waiting {
            None => None,
            Some(id) => match effects.iter().find(|e| e.id() == Some(id)) {
                // A new request: its budget starts now.
                Some(e) => self
                    .sm
                    .inner()
                    .config
                    .budgets
                    .of(e)
                    .map(|b| deadline::Pending {
                        id,
                        deadline: input.now.saturating_add(b),
                    }),
                // Answered (and not re-issued): nothing outstanding any more.
                None if input.event.answers() == Some(id)
                    && !matches!(input.event, Event::SlotQueued { .. }) =>
                {
                    None
                }
                // Still the same request (a progress report, an ignored input): same deadline.
                None => self.pending.filter(|p| p.id == id),
            },
        };
    }

    /// Handles one input.
    pub fn handle(&mut self, input: &Input) -> Step {
        let from = self.sm.state().name();
        let mut ctx = Ctx::default();
        self.sm.handle_with_context(input, &mut ctx);
        let to = self.sm.state().name();
        // Work first, then the timer, then Exit: a shutdown must release before the process
        // ends, and a release (run by statig after the handler) must not wait behind a timer.
        let mut effects = ctx.effects;
        effects.sort_by_key(|e| match e {
            Effect::ScheduleTick { .. } => 1,
            Effect::Exit { .. } => 2,
            _ => 0,
        });
        self.track_pending(input, &effects);
        Step {
            from,
            to,
            effects,
            reason: ctx
                .reason
                .unwrap_or_else(|| format!("{} handled in {from}", input.event.name())),
            outcome: ctx.outcome,
            exit: ctx.exit,
        }
    }

    /// Current state with its data.
    pub fn state(&self) -> &State {
        self.sm.state()
    }

    /// Shared data (configuration, gates, counters).
    pub fn core(&self) -> &Core {
        self.sm.inner()
    }

    /// A copy of everything needed to continue later.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.sm.state().clone(),
            core: self.sm.inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests;
