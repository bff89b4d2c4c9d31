//! The decision machine itself (statig). One function per state; see `fsm-spec/machine.yaml`
//! for the same behaviour as a table.
//!
//! Conventions:
//! - Handlers only look at the [`Input`] and the shared [`Core`]; they push effects into the
//!   [`Ctx`] outbox, set a one-line reason and, where a pass ends, the Go outcome.
//! - Entry actions only *emit* effects; they never change state. That is what makes restoring a
//!   machine safe: restoring runs entry actions with a discarding outbox and changes nothing.
//! - `Locking`, `HealthPost` and `Cooldown` share the `slot` superstate whose exit action gives
//!   the slot back (leave queue / release). No path out of those states can leak the slot; the
//!   one exception, handing the slot over to `Rebooting`, is an explicit flag.
//! - `Rebooting` and `Recovering` sit outside `slot` on purpose: the slot survives the reboot and
//!   is released explicitly, only after a passing post-reboot health check.

// The generated state enum has fields without doc comments; the state functions document them.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};
use statig::Outcome as Flow;
use statig::Outcome::{Handled, Super, Transition};
use statig::state_machine;

use super::backoff;
use super::config::FsmConfig;
use super::effect::{Effect, HookStage};
use super::event::*;
use super::types::{EffectId, Gates, Millis, Outcome, Phase, fmt_dur, fmt_ms};
use crate::exit::Exit;

/// Data shared by all states (statig "shared storage"). Serialised into journal snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Core {
    /// Current decision parameters (from `Started` / `ConfigReloaded`).
    pub config: FsmConfig,
    /// Boot id observed at the last `Started`.
    pub boot_id: String,
    /// Next request id to hand out.
    pub next_id: EffectId,
    /// Last observed kill switch / pause.
    pub gates: Gates,
    /// Consecutive failed or blocked passes (drives the backoff).
    pub failures: u32,
    /// Exit code of the last pass that ended (returned when stopped by a signal).
    pub last_exit: Option<Exit>,
    /// When the open window observed before queueing closes, and what it then says.
    pub window_closes: Option<(Millis, Outcome)>,
    /// Set right before `Cooldown → Rebooting`: the slot is handed over, not released.
    pub handover: bool,
    /// Whether the queue entry is a held slot (vs. still waiting).
    pub slot_held: bool,
    /// Last queue report while waiting (for status lines).
    pub queue: Option<QueueInfo>,
    /// Boot id on which the real reboot command was executed. The machine never runs it again
    /// on the same boot (at most one reboot per boot id, SPEC §2.2): if the node did not
    /// reboot, an operator has to look at it.
    pub rebooted_on: Option<String>,
    /// The `AwaitClusterChange` an idle node waits on after a pass blocked by cluster state
    /// (policy, cooldown): its answer starts the next pass at once instead of the timer.
    pub cluster_wait: Option<EffectId>,
    /// `Detecting` waits for the monitor health check of a one-shot pass (nothing required),
    /// not for the detectors.
    pub monitoring: bool,
}

/// Where the node waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// 1-based position among waiters.
    pub position: u32,
    /// Current holders.
    pub holders: Vec<SlotHolder>,
    /// The pool waited for: absent = the cluster pool, else the node's reboot group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// Outbox of one `handle` call.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Effects in emission order.
    pub effects: Vec<Effect>,
    /// One-line human reason.
    pub reason: Option<String>,
    /// Go outcome, when this input ended a pass.
    pub outcome: Option<Outcome>,
    /// Exit code of the pass that ended, when one did.
    pub exit: Option<Exit>,
}

impl Ctx {
    fn push(&mut self, e: Effect) {
        self.effects.push(e);
    }
    fn reason(&mut self, r: impl Into<String>) {
        self.reason = Some(r.into());
    }
}

/// Sub-steps of `HealthPre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreStep {
    /// Waiting for the cluster policy verdict.
    Policy,
    /// Waiting for the health script.
    Script,
    /// Reading the cluster cooldown before queueing (cheap early check; the read under the slot
    /// is the one that counts).
    Cooldown,
}

/// Sub-steps of `HealthPost` (the order of the checks under the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostStep {
    /// Kill switch / pause.
    Gates,
    /// Maintenance window.
    Window,
    /// Detectors re-check.
    Detectors,
    /// Cluster policy.
    Policy,
    /// A first cooldown read, before the health script (issue #19): a queued node that takes
    /// the slot while another node's cooldown runs gives it back without running the script.
    /// The `Cooldown` state reads it again right before the reboot.
    Cooldown,
    /// Health script.
    Script,
    /// The policy failed only because of other slot holders' planned downtime: keeping the
    /// entry and waiting (watch) for a release or a health change, then checking again.
    WaitHolders,
}

/// Sub-steps of `Rebooting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RebootStep {
    /// Moving the slot onto the reboot lease.
    Lease,
    /// Pre-reboot hooks.
    Hooks,
    /// Final maintenance-window check, after the hooks and right before the command (the health
    /// script and the hooks may run long enough for the window to close, or the clock to step).
    Window,
    /// Reboot command running.
    Command,
    /// The command returned success; waiting for the shutdown to kill us.
    AwaitShutdown,
}

/// Local data of `Rebooting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reboot {
    /// Where in the sequence we are.
    pub step: RebootStep,
    /// When the reboot command was issued.
    pub issued_at: Option<Millis>,
    /// Boot id when the sequence started (a different one after start means it rebooted).
    pub from_boot: String,
    /// Only log the command.
    pub dry_run: bool,
}

impl Reboot {
    fn new(step: RebootStep, from_boot: String, dry_run: bool) -> Self {
        Reboot {
            step,
            issued_at: None,
            from_boot,
            dry_run,
        }
    }
}

/// Sub-steps of `Recovering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoverStep {
    /// Re-attaching the reboot lease.
    Reattach,
    /// Waiting to retry the re-attach.
    RetryReattach,
    /// Post-reboot hooks.
    Hooks,
    /// Post-reboot health script.
    Health,
    /// Waiting to retry the health script (slot kept).
    RetryHealth,
}

/// Facts about the reboot being recovered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Boot id before the reboot.
    pub previous_boot_id: String,
    /// When the reboot command was issued, if known.
    pub issued_at: Option<Millis>,
    /// When recovery started.
    pub since: Millis,
    /// The command "succeeded" but the boot id did not change: the reboot did not happen.
    pub failed_reboot: bool,
}

/// Lock attempts of `run --once` (the Go daemon's number).
const ONCE_LOCK_ATTEMPTS: u32 = 5;

/// When the next pass starts after a pass ended.
enum Next {
    /// After `check_interval`; resets the failure count.
    Interval,
    /// After the backoff delay; counts a failure.
    Backoff,
    /// At a given instant (window opening, cooldown end).
    At(Millis),
}

/// How a pass ends: with an outcome (which implies its exit code), or with an exit code and no
/// outcome (errors that are not a decision: a detector failed, a timeout outside the gates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    Outcome(Outcome),
    Exit(Exit),
}

/// How a pass ends on gates that block a reboot: an operator's brake is `kill_switch_active`;
/// a pause that cannot be read is an etcd problem, `lock_unavailable` (issue #14).
fn gates_end(gates: &Gates) -> PassEnd {
    if gates.active() {
        PassEnd::Outcome(Outcome::KillSwitchActive)
    } else {
        PassEnd::Outcome(Outcome::LockUnavailable)
    }
}

/// Whether `input` answers the pending request with one of the `expected` event kinds (or
/// reports its timeout). An answer of the wrong kind, or to an older request, is not accepted.
fn fits(input: &Input, pending: EffectId, expected: &[EventKind]) -> bool {
    input.event.answers() == Some(pending)
        && (matches!(input.event, Event::EffectTimedOut { .. })
            || expected.contains(&input.event.kind()))
}

#[state_machine(
    initial = "State::idle()",
    state(derive(Debug, Clone, PartialEq, Serialize, Deserialize)),
    superstate(derive(Debug))
)]
impl Core {
    // ----------------------------------------------------------------------------- top

    /// Catches what no state handles: process start, reloads, shutdown outside the slot, stale
    /// answers and timers. Nothing reaches statig's silent top.
    #[superstate]
    fn top(&mut self, context: &mut Ctx, event: &Input) -> Flow<State> {
        match &event.event {
            Event::Started { boot_id, config } => {
                self.config = config.clone();
                self.boot_id = boot_id.clone();
                self.failures = 0;
                self.queue = None;
                context.push(Effect::ScheduleTick { at: event.now });
                context.reason(format!("daemon started (boot id {boot_id}); checking now"));
                Transition(State::idle())
            }
            Event::ConfigReloaded { config } => {
                self.config = config.clone();
                context.reason("configuration reloaded");
                Handled
            }
            Event::ShutdownRequested => {
                context.push(Effect::Exit {
                    code: self.last_exit.unwrap_or(Exit::Ok),
                });
                context.reason("shutdown requested");
                Handled
            }
            Event::GatesObserved { gates, .. } => {
                self.gates = gates.clone();
                context.reason(format!(
                    "observed: {}",
                    gates.describe(&self.config.kill_switch_file)
                ));
                Handled
            }
            Event::Tick { gates } => {
                self.gates = gates.clone();
                context.reason("timer fired; nothing scheduled in this state");
                Handled
            }
            Event::SlotLost { detail } => {
                context.reason(format!(
                    "slot loss reported while not holding one: {detail}"
                ));
                Handled
            }
            Event::UnfinishedRebootFound {
                from_boot,
                since,
                rebooted,
            } => self.resume_unfinished_reboot(
                context,
                event,
                from_boot.as_deref(),
                *since,
                *rebooted,
            ),
            other => {
                context.reason(format!(
                    "ignored stale {} (request {})",
                    other.name(),
                    other.answers().map_or("-".into(), |i| i.to_string())
                ));
                Handled
            }
        }
    }

    // ----------------------------------------------------------------------------- Idle

    /// Waiting for the next check (interval, window opening, backoff, cooldown end).
    #[state(superstate = "top")]
    fn idle(&mut self, context: &mut Ctx, event: &Input) -> Flow<State> {
        match &event.event {
            Event::Tick { gates } => {
                self.gates = gates.clone();
                self.cluster_wait = None;
                if gates.active() {
                    let why = gates.describe(&self.config.kill_switch_file);
                    self.end_pass(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::KillSwitchActive),
                        why,
                        Next::Interval,
                    );
                    Handled
                } else {
                    context.reason("check started: running detectors");
                    self.detect()
                }
            }
            Event::ConfigReloaded { config } => {
                self.config = config.clone();
                context.push(Effect::ScheduleTick { at: event.now });
                context.reason("configuration reloaded; checking again now");
                Handled
            }
            Event::ClusterChanged { id } if self.cluster_wait == Some(*id) => {
                self.cluster_wait = None;
                if self.gates.active() {
                    context.reason("cluster state changed, but the kill switch or pause is on");
                    return Handled;
                }
                context.reason("cluster state changed (watch): checking again now");
                self.detect()
            }
            Event::GatesObserved { id: None, gates } if self.gates.active() && !gates.active() => {
                self.gates = gates.clone();
                context.reason("kill switch and pause lifted: checking now");
                self.detect()
            }
            _ => Super,
        }
    }

    // ----------------------------------------------------------------------------- Detecting

    /// Running the detectors (phase pre-lock).
    #[state(superstate = "top", entry_action = "enter_detecting")]
    fn detecting(
        &mut self,
        pending: &mut EffectId,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        let expected: &[EventKind] = if self.monitoring {
            &[EventKind::HealthChecked]
        } else {
            &[EventKind::DetectorsEvaluated]
        };
        if !fits(event, *pending, expected) {
            return Super;
        }
        match &event.event {
            Event::HealthChecked { result, .. } => {
                self.monitoring = false;
                if let Some(stopped) = self.health_answer(context, event, result, Phase::Monitor) {
                    return stopped;
                }
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::NoAction),
                    "no reboot required; health script (monitor) passed".into(),
                    Next::Interval,
                )
            }
            Event::EffectTimedOut { .. } if self.monitoring => {
                self.monitoring = false;
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::HealthBlocked),
                    "no reboot required; health script (monitor) timed out".into(),
                    Next::Backoff,
                )
            }
            Event::DetectorsEvaluated { result, .. } => match result {
                DetectorResult::Required { .. }
                    if self.rebooted_on.as_deref() == Some(&self.boot_id) =>
                {
                    let why = format!(
                        "reboot required, but the reboot command already ran on boot {} and the node did not reboot; not running it again on this boot (check reboot_command, then reboot by hand)",
                        self.boot_id
                    );
                    self.stop(
                        context,
                        event,
                        PassEnd::Exit(Exit::Runtime),
                        why,
                        Next::Interval,
                    )
                }
                DetectorResult::Required { by } => {
                    context.reason(format!("reboot required by {}", by.join(", ")));
                    Transition(State::window_check(self.alloc()))
                }
                // A one-shot pass runs the health script as Go does (`monitor`); the daemon
                // publishes its health by the heartbeat instead.
                DetectorResult::NotRequired if self.config.once && !self.config.skip_health => {
                    self.monitoring = true;
                    *pending = self.alloc();
                    context.push(Effect::RunHealthScript {
                        id: *pending,
                        phase: Phase::Monitor,
                    });
                    context.reason("no reboot required; running the health script (monitor)");
                    Handled
                }
                DetectorResult::NotRequired => self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::NoAction),
                    "no reboot required".into(),
                    Next::Interval,
                ),
                DetectorResult::Error { detail } => self.stop(
                    context,
                    event,
                    PassEnd::Exit(Exit::DetectorError),
                    format!("detector error: {detail}"),
                    Next::Backoff,
                ),
            },
            Event::EffectTimedOut { .. } => self.stop(
                context,
                event,
                PassEnd::Exit(Exit::DetectorError),
                "detectors timed out".into(),
                Next::Backoff,
            ),
            _ => Super,
        }
    }

    #[action]
    fn enter_detecting(pending: &mut EffectId, context: &mut Ctx) {
        context.push(Effect::RunDetectors {
            id: *pending,
            phase: Phase::PreLock,
        });
    }

    // ----------------------------------------------------------------------------- WindowCheck

    /// Evaluating the maintenance windows at "now".
    #[state(superstate = "top", entry_action = "enter_window_check")]
    fn window_check(
        &mut self,
        pending: &mut EffectId,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        if !fits(event, *pending, &[EventKind::WindowEvaluated]) {
            return Super;
        }
        match &event.event {
            Event::WindowEvaluated { verdict, .. } => match verdict {
                WindowVerdict::Open {
                    closes_at,
                    closes_by,
                } => {
                    self.window_closes =
                        closes_at.map(|t| (t, closes_by.unwrap_or(Outcome::WindowOutsideAllow)));
                    if self.config.skip_health {
                        context.reason("window open; health gate skipped");
                        self.after_health_pre(context, event)
                    } else {
                        context.reason("window open; checking cluster health");
                        Transition(State::health_pre(self.alloc(), PreStep::Policy))
                    }
                }
                WindowVerdict::Closed {
                    outcome,
                    reason,
                    next_open,
                } => {
                    let at = self.after_closed_window(*next_open, event.now);
                    let why = match next_open {
                        Some(t) => format!("{reason}; next opening {}", fmt_ms(*t)),
                        None => format!("{reason}; no opening within 8 days"),
                    };
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(*outcome),
                        why,
                        Next::At(at),
                    )
                }
            },
            Event::EffectTimedOut { .. } => self.stop(
                context,
                event,
                PassEnd::Exit(Exit::Runtime),
                "window evaluation timed out".into(),
                Next::Backoff,
            ),
            _ => Super,
        }
    }

    #[action]
    fn enter_window_check(pending: &mut EffectId, context: &mut Ctx) {
        context.push(Effect::EvaluateWindow { id: *pending });
    }

    // ----------------------------------------------------------------------------- HealthPre

    /// Cluster policy, then the health script (phase pre-lock).
    #[state(superstate = "top", entry_action = "enter_health_pre")]
    fn health_pre(
        &mut self,
        pending: &mut EffectId,
        step: &mut PreStep,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        if !fits(event, *pending, pre_expects(*step)) {
            return Super;
        }
        match &event.event {
            Event::ClusterHealthEvaluated { verdict, .. } => {
                let held_back = match self.policy_answer(context, event, verdict, Phase::PreLock) {
                    Ok(held_back) => held_back,
                    Err(stopped) => return stopped,
                };
                *pending = self.alloc();
                *step = PreStep::Script;
                context.push(Effect::RunHealthScript {
                    id: *pending,
                    phase: Phase::PreLock,
                });
                match held_back {
                    None => {
                        context.reason("cluster policy passed; running health script (pre-lock)")
                    }
                    Some(reasons) => context.reason(format!(
                        "cluster policy: only slot holders' planned downtime stands in the way ({}); running health script (pre-lock), then queueing behind them",
                        reasons.join("; ")
                    )),
                }
                Handled
            }
            Event::HealthChecked { result, .. } => {
                if let Some(stopped) = self.health_answer(context, event, result, Phase::PreLock) {
                    return stopped;
                }
                context.reason("health script (pre-lock) passed; reading the cluster cooldown");
                self.after_health_pre(context, event)
            }
            Event::CooldownRead { status, .. } => match status {
                CooldownStatus::Active { until, by } => {
                    let why = format!(
                        "cluster cooldown started by {by} active until {}",
                        fmt_ms(*until)
                    );
                    self.await_cluster(context);
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::CooldownActive),
                        why,
                        Next::At(*until),
                    )
                }
                CooldownStatus::Clear => {
                    context.reason("cooldown clear; joining the slot queue");
                    self.enqueue(context, event)
                }
                CooldownStatus::Error { detail } => {
                    context.reason(format!(
                        "cooldown unreadable before queueing ({detail}); it is checked again under the slot"
                    ));
                    self.enqueue(context, event)
                }
            },
            Event::EffectTimedOut { .. } => {
                let why = match step {
                    PreStep::Policy => "cluster health read timed out",
                    PreStep::Script => "health script (pre-lock) timed out",
                    PreStep::Cooldown => {
                        context.reason("cooldown read timed out before queueing; it is checked again under the slot");
                        return self.enqueue(context, event);
                    }
                };
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::HealthBlocked),
                    why.into(),
                    Next::Backoff,
                )
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_health_pre(pending: &mut EffectId, step: &mut PreStep, context: &mut Ctx) {
        match step {
            PreStep::Policy => context.push(Effect::ReadClusterHealth { id: *pending }),
            PreStep::Script => context.push(Effect::RunHealthScript {
                id: *pending,
                phase: Phase::PreLock,
            }),
            PreStep::Cooldown => context.push(Effect::ReadCooldown { id: *pending }),
        }
    }

    // ----------------------------------------------------------------------------- slot

    /// Holding a queue entry or a slot. Its exit action gives it back on every path out,
    /// except the explicit hand-over to `Rebooting`.
    #[superstate(superstate = "top", exit_action = "exit_slot")]
    fn slot(&mut self, context: &mut Ctx, event: &Input) -> Flow<State> {
        match &event.event {
            Event::UnfinishedRebootFound {
                from_boot,
                since,
                rebooted,
            } => {
                // The entry coordination shows is the reboot's slot: it is handed over to the
                // reboot being resumed, never released by leaving this state.
                self.handover = true;
                self.resume_unfinished_reboot(
                    context,
                    event,
                    from_boot.as_deref(),
                    *since,
                    *rebooted,
                )
            }
            Event::SlotLost { detail } => {
                let why = format!("slot lost: {detail}");
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::LockUnavailable),
                    why,
                    Next::Backoff,
                )
            }
            Event::ShutdownRequested => {
                context.push(Effect::Exit {
                    code: self.last_exit.unwrap_or(Exit::Ok),
                });
                context.reason("shutdown requested: giving the slot back");
                Transition(State::idle())
            }
            Event::Tick { gates } | Event::GatesObserved { gates, .. } if gates.active() => {
                self.gates = gates.clone();
                let why = format!(
                    "{}; giving the slot back",
                    gates.describe(&self.config.kill_switch_file)
                );
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::KillSwitchActive),
                    why,
                    Next::Interval,
                )
            }
            _ => Super,
        }
    }

    #[action]
    fn exit_slot(&mut self, context: &mut Ctx) {
        if self.handover {
            self.handover = false;
        } else if self.slot_held {
            context.push(Effect::ReleaseSlot);
        } else {
            context.push(Effect::LeaveQueue);
        }
        self.slot_held = false;
        self.queue = None;
    }

    // ----------------------------------------------------------------------------- Locking

    /// In the slot queue, woken by the coordination layer (watch), not by polling.
    #[state(superstate = "slot", entry_action = "enter_locking")]
    fn locking(
        &mut self,
        pending: &mut EffectId,
        deadline: &mut Option<Millis>,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        match &event.event {
            Event::Tick { gates } if !gates.active() => {
                self.gates = gates.clone();
                let now = event.now;
                if deadline.is_some_and(|d| now >= d) {
                    let why = match self.config.lock_wait_timeout_ms {
                        Some(t) => format!(
                            "gave up waiting for a slot after {} (lock_wait_timeout_sec)",
                            fmt_dur(t)
                        ),
                        None => {
                            format!("failed to acquire lock after {ONCE_LOCK_ATTEMPTS} attempts")
                        }
                    };
                    return self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::LockUnavailable),
                        why,
                        Next::Interval,
                    );
                }
                if let Some((at, outcome)) = self.window_closes
                    && now >= at
                {
                    let why = "maintenance window closed while waiting for a slot".to_string();
                    return self.stop(
                        context,
                        event,
                        PassEnd::Outcome(outcome),
                        why,
                        Next::Interval,
                    );
                }
                if let Some(at) = self.locking_wakeup(*deadline) {
                    context.push(Effect::ScheduleTick { at });
                }
                context.reason("still waiting for a slot");
                Handled
            }
            _ if !fits(
                event,
                *pending,
                &[
                    EventKind::SlotQueued,
                    EventKind::SlotAcquired,
                    EventKind::SlotUnavailable,
                ],
            ) =>
            {
                Super
            }
            Event::SlotQueued {
                position,
                holders,
                pool,
                ..
            } => {
                let held = holders
                    .iter()
                    .map(|h| match h.since {
                        Some(t) => format!("{} since {}", h.node, fmt_ms(t)),
                        None => h.node.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let held = if held.is_empty() { "nobody" } else { &held };
                context.reason(match pool {
                    None => format!("waiting for slot, position {position}, held by {held}"),
                    Some(g) => format!(
                        "waiting for a slot of reboot group {g}, position {position}, held by {held}"
                    ),
                });
                self.queue = Some(QueueInfo {
                    position: *position,
                    holders: holders.clone(),
                    pool: pool.clone(),
                });
                Handled
            }
            Event::SlotAcquired { .. } => {
                self.slot_held = true;
                self.queue = None;
                context.reason("slot acquired; re-checking everything under the slot");
                Transition(State::health_post(self.alloc(), PostStep::Gates))
            }
            Event::SlotUnavailable { detail, .. } => {
                let why = format!("cannot join the slot queue: {detail}");
                self.stop(
                    context,
                    event,
                    PassEnd::Outcome(Outcome::LockUnavailable),
                    why,
                    Next::Backoff,
                )
            }
            Event::EffectTimedOut { .. } => self.stop(
                context,
                event,
                PassEnd::Outcome(Outcome::LockUnavailable),
                "slot queue request timed out".into(),
                Next::Backoff,
            ),
            _ => Super,
        }
    }

    #[action]
    fn enter_locking(
        &mut self,
        pending: &mut EffectId,
        deadline: &mut Option<Millis>,
        context: &mut Ctx,
    ) {
        context.push(Effect::JoinQueue { id: *pending });
        if let Some(at) = self.locking_wakeup(*deadline) {
            context.push(Effect::ScheduleTick { at });
        }
    }

    // ----------------------------------------------------------------------------- HealthPost

    /// Under the slot: gates, window, detectors (post-lock), cluster policy, health script.
    #[state(superstate = "slot", entry_action = "enter_health_post")]
    fn health_post(
        &mut self,
        pending: &mut EffectId,
        step: &mut PostStep,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        if *step == PostStep::WaitHolders
            && let Event::Tick { gates } = &event.event
            && !gates.active()
        {
            self.gates = gates.clone();
            if let Some((at, outcome)) = self.window_closes
                && event.now >= at
            {
                let why =
                    "maintenance window closed while waiting under the slot for other holders"
                        .to_string();
                return self.stop(
                    context,
                    event,
                    PassEnd::Outcome(outcome),
                    why,
                    Next::Interval,
                );
            }
            *pending = self.alloc();
            *step = PostStep::Policy;
            context.push(Effect::ReadClusterHealth { id: *pending });
            context.reason("still waiting under the slot for other holders: checking cluster health again (timer)");
            return Handled;
        }
        if !fits(event, *pending, post_expects(*step)) {
            return Super;
        }
        // Moves to the next check under the slot: the new request becomes the pending one.
        let mut next = |s: PostStep, e: Effect, ctx: &mut Ctx, why: &str| {
            *pending = e.id().unwrap_or(*pending);
            *step = s;
            ctx.push(e);
            ctx.reason(why.to_string());
            Handled
        };
        match &event.event {
            Event::GatesObserved { gates, .. } => {
                self.gates = gates.clone();
                if gates.blocks_reboot() {
                    let why = format!(
                        "{} (under the slot)",
                        gates.describe(&self.config.kill_switch_file)
                    );
                    return self.stop(context, event, gates_end(gates), why, Next::Interval);
                }
                let id = self.alloc();
                next(
                    PostStep::Window,
                    Effect::EvaluateWindow { id },
                    context,
                    "gates clear under the slot; checking window",
                )
            }
            Event::WindowEvaluated { verdict, .. } => match verdict {
                WindowVerdict::Open { .. } => {
                    let id = self.alloc();
                    next(
                        PostStep::Detectors,
                        Effect::RunDetectors {
                            id,
                            phase: Phase::PostLock,
                        },
                        context,
                        "window open under the slot; re-running detectors",
                    )
                }
                WindowVerdict::Closed {
                    outcome,
                    reason,
                    next_open,
                } => {
                    let at = self.after_closed_window(*next_open, event.now);
                    let why = format!("{reason} (under the slot)");
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(*outcome),
                        why,
                        Next::At(at),
                    )
                }
            },
            Event::DetectorsEvaluated { result, .. } => match result {
                DetectorResult::Required { .. } if self.config.skip_health => {
                    context.reason("detectors still require a reboot; health gate skipped");
                    Transition(State::cooldown(self.alloc()))
                }
                DetectorResult::Required { .. } => {
                    let id = self.alloc();
                    next(
                        PostStep::Policy,
                        Effect::ReadClusterHealth { id },
                        context,
                        "detectors still require a reboot; checking cluster health",
                    )
                }
                DetectorResult::NotRequired => {
                    let why = "detectors cleared under the slot; no reboot needed".to_string();
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::RecheckCleared),
                        why,
                        Next::Interval,
                    )
                }
                DetectorResult::Error { detail } => {
                    let why = format!("detector error under the slot: {detail}");
                    self.stop(
                        context,
                        event,
                        PassEnd::Exit(Exit::DetectorError),
                        why,
                        Next::Backoff,
                    )
                }
            },
            Event::ClusterHealthEvaluated { verdict, .. } => {
                match self.policy_answer(context, event, verdict, Phase::PostLock) {
                    Err(stopped) => stopped,
                    Ok(None) => {
                        let id = self.alloc();
                        next(
                            PostStep::Cooldown,
                            Effect::ReadCooldown { id },
                            context,
                            "cluster policy passed under the slot; reading the cluster cooldown before the health script",
                        )
                    }
                    Ok(Some(reasons)) => {
                        let id = self.alloc();
                        *pending = id;
                        *step = PostStep::WaitHolders;
                        context.push(Effect::AwaitClusterChange { id });
                        let at = self.holders_wakeup(event.now);
                        context.push(Effect::ScheduleTick { at });
                        context.reason(format!(
                            "holding the slot and waiting for the other holders: {}",
                            reasons.join("; ")
                        ));
                        Handled
                    }
                }
            }
            Event::CooldownRead { status, .. } => match status {
                CooldownStatus::Clear => {
                    let id = self.alloc();
                    next(
                        PostStep::Script,
                        Effect::RunHealthScript {
                            id,
                            phase: Phase::PostLock,
                        },
                        context,
                        "cooldown clear under the slot; running health script (post-lock)",
                    )
                }
                CooldownStatus::Active { until, by } => {
                    let why = format!(
                        "cluster cooldown started by {by} active until {} (under the slot, before the health script): giving the slot back",
                        fmt_ms(*until)
                    );
                    self.await_cluster(context);
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::CooldownActive),
                        why,
                        Next::At(*until),
                    )
                }
                CooldownStatus::Error { detail } => {
                    let why = format!("cooldown unreadable under the slot: {detail}");
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::LockUnavailable),
                        why,
                        Next::Backoff,
                    )
                }
            },
            Event::HealthChecked { result, .. } => {
                if let Some(stopped) = self.health_answer(context, event, result, Phase::PostLock) {
                    return stopped;
                }
                context.reason("health script (post-lock) passed; reading cooldown");
                Transition(State::cooldown(self.alloc()))
            }
            Event::ClusterChanged { .. } => {
                *pending = self.alloc();
                *step = PostStep::Policy;
                context.push(Effect::ReadClusterHealth { id: *pending });
                context.reason("cluster state changed while waiting under the slot: checking cluster health again");
                Handled
            }
            Event::EffectTimedOut { .. } => {
                let end = match step {
                    PostStep::Detectors => PassEnd::Exit(Exit::DetectorError),
                    PostStep::Policy | PostStep::Script | PostStep::WaitHolders => {
                        PassEnd::Outcome(Outcome::HealthBlocked)
                    }
                    PostStep::Cooldown => PassEnd::Outcome(Outcome::LockUnavailable),
                    PostStep::Gates | PostStep::Window => PassEnd::Exit(Exit::Runtime),
                };
                let why = format!("check under the slot timed out ({step:?})");
                self.stop(context, event, end, why, Next::Backoff)
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_health_post(pending: &mut EffectId, step: &mut PostStep, context: &mut Ctx) {
        let id = *pending;
        context.push(match step {
            PostStep::Gates => Effect::CheckGates { id },
            PostStep::Window => Effect::EvaluateWindow { id },
            PostStep::Detectors => Effect::RunDetectors {
                id,
                phase: Phase::PostLock,
            },
            PostStep::Policy => Effect::ReadClusterHealth { id },
            PostStep::Cooldown => Effect::ReadCooldown { id },
            PostStep::Script => Effect::RunHealthScript {
                id,
                phase: Phase::PostLock,
            },
            PostStep::WaitHolders => Effect::AwaitClusterChange { id },
        });
    }

    // ----------------------------------------------------------------------------- Cooldown

    /// Reading the cluster cooldown marker under the slot.
    #[state(superstate = "slot", entry_action = "enter_cooldown")]
    fn cooldown(
        &mut self,
        pending: &mut EffectId,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        if !fits(event, *pending, &[EventKind::CooldownRead]) {
            return Super;
        }
        match &event.event {
            Event::CooldownRead { status, .. } => match status {
                CooldownStatus::Clear if self.config.once && !self.config.dry_run => {
                    let why = "ready: every gate passed; run without --once to execute the reboot command".to_string();
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::Ready),
                        why,
                        Next::Interval,
                    )
                }
                CooldownStatus::Clear => {
                    self.handover = true;
                    self.failures = 0;
                    context.outcome = Some(Outcome::Ready);
                    let id = self.alloc();
                    if self.config.dry_run {
                        context.reason("cooldown clear; dry run: logging the reboot command");
                        Transition(State::rebooting(
                            id,
                            Reboot::new(RebootStep::Command, self.boot_id.clone(), true),
                        ))
                    } else {
                        context.reason("cooldown clear; moving the slot onto the reboot lease");
                        Transition(State::rebooting(
                            id,
                            Reboot::new(RebootStep::Lease, self.boot_id.clone(), false),
                        ))
                    }
                }
                CooldownStatus::Active { until, by } => {
                    let why = format!(
                        "cluster cooldown started by {by} active until {}",
                        fmt_ms(*until)
                    );
                    self.await_cluster(context);
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::CooldownActive),
                        why,
                        Next::At(*until),
                    )
                }
                CooldownStatus::Error { detail } => {
                    let why = format!("cannot read the cluster cooldown: {detail}");
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::LockUnavailable),
                        why,
                        Next::Backoff,
                    )
                }
            },
            Event::EffectTimedOut { .. } => self.stop(
                context,
                event,
                PassEnd::Outcome(Outcome::LockUnavailable),
                "cooldown read timed out".into(),
                Next::Backoff,
            ),
            _ => Super,
        }
    }

    #[action]
    fn enter_cooldown(pending: &mut EffectId, context: &mut Ctx) {
        context.push(Effect::ReadCooldown { id: *pending });
    }

    // ----------------------------------------------------------------------------- Rebooting

    /// Slot moved onto the reboot lease, in-progress marker, pre-reboot hooks, a final
    /// maintenance-window check, reboot command.
    /// Outside the `slot` superstate: leaving it releases explicitly, and only on abort.
    #[state(superstate = "top", entry_action = "enter_rebooting")]
    fn rebooting(
        &mut self,
        pending: &mut EffectId,
        reboot: &mut Reboot,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        let Reboot {
            step,
            issued_at,
            from_boot,
            dry_run,
        } = reboot;
        let before_command = matches!(
            step,
            RebootStep::Lease | RebootStep::Hooks | RebootStep::Window
        );
        // The in-progress marker exists once the lease move succeeded (never in a dry run).
        let marker_written = !*dry_run && *step != RebootStep::Lease;
        match &event.event {
            Event::Started { boot_id, config } => {
                self.config = config.clone();
                self.boot_id = boot_id.clone();
                if boot_id != from_boot {
                    context.reason(format!(
                        "node rebooted (boot id {from_boot} -> {boot_id}); recovering"
                    ));
                    return self.begin_recovery(event, from_boot, *issued_at, false);
                }
                if before_command || *dry_run {
                    return self.abort_reboot(
                        context,
                        event,
                        marker_written,
                        PassEnd::Exit(Exit::Runtime),
                        "daemon restarted before the reboot command ran; no reboot happened".into(),
                    );
                }
                match issued_at {
                    Some(t) if event.now < t.saturating_add(self.config.reboot_grace_ms) => {
                        let at = t.saturating_add(self.config.reboot_grace_ms);
                        *step = RebootStep::AwaitShutdown;
                        context.push(Effect::ScheduleTick { at });
                        context.reason(format!(
                            "restarted with the same boot id; waiting for the shutdown until {}",
                            fmt_ms(at)
                        ));
                        Handled
                    }
                    _ => {
                        context.reason("reboot command ran but the node did not reboot (same boot id); checking health before releasing the slot");
                        self.begin_recovery(event, from_boot, *issued_at, true)
                    }
                }
            }
            Event::ShutdownRequested => {
                context.push(Effect::Exit {
                    code: self.last_exit.unwrap_or(Exit::Ok),
                });
                context.reason("shutdown requested while rebooting: keeping the slot");
                Handled
            }
            Event::UnfinishedRebootFound { .. } => {
                context.reason("coordination shows this reboot; the journal knows it already");
                Handled
            }
            Event::Tick { gates } | Event::GatesObserved { gates, .. }
                if before_command && gates.blocks_reboot() =>
            {
                self.gates = gates.clone();
                let why = format!(
                    "{}; reboot aborted",
                    gates.describe(&self.config.kill_switch_file)
                );
                self.abort_reboot(context, event, marker_written, gates_end(gates), why)
            }
            Event::Tick { .. } if *step == RebootStep::AwaitShutdown => {
                let due = issued_at.map_or(0, |t| t.saturating_add(self.config.reboot_grace_ms));
                if event.now >= due {
                    context.reason(format!(
                        "reboot command succeeded but the node did not reboot within {}; checking health before releasing the slot",
                        fmt_dur(self.config.reboot_grace_ms)
                    ));
                    self.begin_recovery(event, from_boot, *issued_at, true)
                } else {
                    context.push(Effect::ScheduleTick { at: due });
                    context.reason("waiting for the shutdown");
                    Handled
                }
            }
            Event::SlotLost { detail } if before_command => {
                let why = format!("slot lost before the reboot command: {detail}; reboot aborted");
                self.abort_reboot(
                    context,
                    event,
                    marker_written,
                    PassEnd::Outcome(Outcome::LockUnavailable),
                    why,
                )
            }
            _ if !fits(event, *pending, reboot_expects(*step)) => Super,
            Event::RebootLeaseMoved { result, .. } => match result {
                StepResult::Ok => {
                    *pending = self.alloc();
                    *step = RebootStep::Hooks;
                    context.push(Effect::RunHooks {
                        id: *pending,
                        stage: HookStage::PreReboot,
                    });
                    context.reason(format!(
                        "slot moved onto the reboot lease (ttl {}s), in-progress marker written; running pre-reboot hooks",
                        self.config.reboot_lease_ttl_sec
                    ));
                    Handled
                }
                StepResult::Failed { detail } => {
                    let why = format!(
                        "cannot move the slot onto the reboot lease: {detail}; reboot aborted"
                    );
                    self.abort_reboot(
                        context,
                        event,
                        marker_written,
                        PassEnd::Outcome(Outcome::LockUnavailable),
                        why,
                    )
                }
            },
            Event::HooksRan { result, .. } => match result {
                StepResult::Ok if self.config.dry_run => {
                    let why = "dry_run was enabled by a reload: the reboot command is not executed"
                        .to_string();
                    self.abort_reboot(context, event, marker_written, PassEnd::Exit(Exit::Ok), why)
                }
                StepResult::Ok => {
                    // The window was last checked before the health script and the hooks:
                    // check it once more right before the command.
                    *pending = self.alloc();
                    *step = RebootStep::Window;
                    context.push(Effect::EvaluateWindow { id: *pending });
                    context.reason(
                        "pre-reboot hooks done; checking the maintenance window once more before the reboot command",
                    );
                    Handled
                }
                StepResult::Failed { detail } => {
                    let why = format!("pre-reboot hook failed: {detail}; reboot aborted");
                    self.abort_reboot(
                        context,
                        event,
                        marker_written,
                        PassEnd::Exit(Exit::Runtime),
                        why,
                    )
                }
            },
            Event::WindowEvaluated { verdict, .. } => match verdict {
                WindowVerdict::Open { .. } if self.config.dry_run => {
                    let why = "dry_run was enabled by a reload: the reboot command is not executed"
                        .to_string();
                    self.abort_reboot(context, event, marker_written, PassEnd::Exit(Exit::Ok), why)
                }
                WindowVerdict::Open { .. } => {
                    *pending = self.alloc();
                    *step = RebootStep::Command;
                    *issued_at = Some(event.now);
                    let argv = self.config.reboot_command.clone();
                    self.rebooted_on = Some(self.boot_id.clone());
                    context.reason(format!(
                        "window still open; executing the reboot command: {}",
                        argv.join(" ")
                    ));
                    context.push(Effect::ExecuteReboot {
                        id: *pending,
                        argv,
                        dry_run: false,
                    });
                    Handled
                }
                WindowVerdict::Closed {
                    outcome,
                    reason,
                    next_open,
                } => {
                    let at = self.after_closed_window(*next_open, event.now);
                    let why = format!(
                        "maintenance window closed before the reboot command ({reason}); reboot aborted"
                    );
                    // Like any abort after the marker was written, but the next check waits
                    // for the window to open (as in HealthPost) instead of backing off.
                    give_back_reboot_slot(context, marker_written);
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(*outcome),
                        why,
                        Next::At(at),
                    )
                }
            },
            Event::RebootCommandFinished { result, .. } => match (result, *dry_run) {
                (StepResult::Ok, true) => {
                    context.push(Effect::ReleaseSlot);
                    let why = format!(
                        "dry run: would reboot now with {}",
                        self.config.reboot_command.join(" ")
                    );
                    self.stop(
                        context,
                        event,
                        PassEnd::Outcome(Outcome::Ready),
                        why,
                        Next::Interval,
                    )
                }
                (StepResult::Ok, false) => {
                    *step = RebootStep::AwaitShutdown;
                    let at = issued_at
                        .unwrap_or(event.now)
                        .saturating_add(self.config.reboot_grace_ms);
                    context.push(Effect::ScheduleTick { at });
                    context.reason("reboot command succeeded; waiting for the shutdown");
                    Handled
                }
                (StepResult::Failed { detail }, _) => {
                    let why = format!("reboot command failed: {detail}");
                    self.abort_reboot(
                        context,
                        event,
                        marker_written,
                        PassEnd::Exit(Exit::Runtime),
                        why,
                    )
                }
            },
            Event::EffectTimedOut { .. } => match step {
                RebootStep::Command | RebootStep::AwaitShutdown if !*dry_run => {
                    // A hung shutdown command may well be the reboot under way: never release here.
                    *step = RebootStep::AwaitShutdown;
                    let at = issued_at
                        .unwrap_or(event.now)
                        .saturating_add(self.config.reboot_grace_ms);
                    context.push(Effect::ScheduleTick { at });
                    context.reason("reboot command did not return in time; keeping the slot and waiting for the shutdown");
                    Handled
                }
                _ => {
                    let why = format!("{step:?} step timed out; reboot aborted");
                    self.abort_reboot(
                        context,
                        event,
                        marker_written,
                        PassEnd::Exit(Exit::Runtime),
                        why,
                    )
                }
            },
            _ => Super,
        }
    }

    #[action]
    fn enter_rebooting(&mut self, pending: &mut EffectId, reboot: &mut Reboot, context: &mut Ctx) {
        let id = *pending;
        match reboot.step {
            RebootStep::Lease => context.push(Effect::MoveSlotToRebootLease {
                id,
                ttl_sec: self.config.reboot_lease_ttl_sec,
            }),
            RebootStep::Hooks => context.push(Effect::RunHooks {
                id,
                stage: HookStage::PreReboot,
            }),
            RebootStep::Window => context.push(Effect::EvaluateWindow { id }),
            RebootStep::Command => context.push(Effect::ExecuteReboot {
                id,
                argv: self.config.reboot_command.clone(),
                dry_run: reboot.dry_run,
            }),
            RebootStep::AwaitShutdown => {}
        }
    }

    // ----------------------------------------------------------------------------- Recovering

    /// After boot: re-attach the reboot lease, marker, post-reboot hooks, health (post-reboot).
    /// The slot is released only after a passing health check; failures keep it and retry.
    #[state(superstate = "top", entry_action = "enter_recovering")]
    fn recovering(
        &mut self,
        pending: &mut EffectId,
        step: &mut RecoverStep,
        rec: &mut Recovery,
        context: &mut Ctx,
        event: &Input,
    ) -> Flow<State> {
        match &event.event {
            Event::Started { boot_id, config } => {
                self.config = config.clone();
                self.boot_id = boot_id.clone();
                context.reason(format!(
                    "daemon restarted during recovery (boot id {boot_id}); resuming"
                ));
                let id = self.alloc();
                Transition(State::recovering(id, RecoverStep::Reattach, rec.clone()))
            }
            Event::ShutdownRequested => {
                context.push(Effect::Exit {
                    code: self.last_exit.unwrap_or(Exit::Ok),
                });
                context.reason("shutdown requested while recovering: keeping the slot");
                Handled
            }
            Event::UnfinishedRebootFound { .. } => {
                context.reason("coordination shows this reboot; the journal knows it already");
                Handled
            }
            Event::SlotLost { detail } => {
                context.reason(format!("reboot lease lost while recovering ({detail}); the slot is already free; continuing recovery"));
                Handled
            }
            Event::Tick { gates } => {
                self.gates = gates.clone();
                match step {
                    RecoverStep::RetryHealth => {
                        *pending = self.alloc();
                        *step = RecoverStep::Health;
                        context.push(Effect::RunHealthScript {
                            id: *pending,
                            phase: Phase::PostReboot,
                        });
                        context.reason("retrying the post-reboot health check");
                        Handled
                    }
                    RecoverStep::RetryReattach => {
                        *pending = self.alloc();
                        *step = RecoverStep::Reattach;
                        context.push(Effect::ReattachRebootLease { id: *pending });
                        context.reason("retrying to re-attach the reboot lease");
                        Handled
                    }
                    _ => Super,
                }
            }
            _ if !fits(event, *pending, recover_expects(*step)) => Super,
            Event::RebootLeaseReattached { result, .. } => match result {
                ReattachResult::Attached | ReattachResult::Expired => {
                    let lease = if *result == ReattachResult::Attached {
                        "reboot lease re-attached (slot still held)"
                    } else {
                        "reboot lease expired while the node was down (slot already freed; in-progress marker still blocks peers)"
                    };
                    *pending = self.alloc();
                    if rec.failed_reboot {
                        *step = RecoverStep::Health;
                        context.push(Effect::RunHealthScript {
                            id: *pending,
                            phase: Phase::PostReboot,
                        });
                        context.reason(format!("{lease}; running the post-reboot health check"));
                    } else {
                        *step = RecoverStep::Hooks;
                        context.push(Effect::WritePostRebootMarker {
                            previous_boot_id: rec.previous_boot_id.clone(),
                            boot_id: self.boot_id.clone(),
                            issued_at: rec.issued_at,
                            returned_at: rec.since,
                        });
                        context.push(Effect::RunHooks {
                            id: *pending,
                            stage: HookStage::PostReboot,
                        });
                        context.reason(format!("{lease}; running post-reboot hooks"));
                    }
                    Handled
                }
                ReattachResult::Failed { detail } => self.retry_recovery(
                    context,
                    event,
                    step,
                    RecoverStep::RetryReattach,
                    format!("cannot re-attach the reboot lease: {detail}"),
                ),
            },
            Event::HooksRan { result, .. } => {
                *pending = self.alloc();
                *step = RecoverStep::Health;
                context.push(Effect::RunHealthScript {
                    id: *pending,
                    phase: Phase::PostReboot,
                });
                context.reason(match result {
                    StepResult::Ok => "post-reboot hooks done; running the post-reboot health check".to_string(),
                    StepResult::Failed { detail } => format!("post-reboot hook failed ({detail}); running the post-reboot health check anyway"),
                });
                Handled
            }
            Event::HealthChecked { result, .. } => {
                self.publish(context, result, Phase::PostReboot);
                match health_block_reason(result, Phase::PostReboot) {
                    None => {
                        // One transaction: marker gone, healthy record, cooldown and release
                        // land together, so the next holder never sees a stale marker or
                        // record, nor a free slot without the cooldown.
                        context.push(Effect::CompleteRecovery {
                            cooldown_sec: self.config.min_reboot_interval_sec,
                        });
                        let (exit, why) = if rec.failed_reboot {
                            (Exit::Runtime, "healthy, but the reboot did not happen (reboot failed); slot released".to_string())
                        } else {
                            (
                                Exit::Ok,
                                format!(
                                    "recovered: post-reboot health passed after {}; slot released",
                                    fmt_dur(event.now.saturating_sub(rec.since))
                                ),
                            )
                        };
                        self.stop(context, event, PassEnd::Exit(exit), why, Next::Interval)
                    }
                    Some(why) => {
                        self.retry_recovery(context, event, step, RecoverStep::RetryHealth, why)
                    }
                }
            }
            Event::EffectTimedOut { .. } => {
                let (retry, why) = match step {
                    RecoverStep::Reattach | RecoverStep::RetryReattach => (
                        RecoverStep::RetryReattach,
                        "re-attaching the reboot lease timed out",
                    ),
                    _ => (RecoverStep::RetryHealth, "post-reboot step timed out"),
                };
                self.retry_recovery(context, event, step, retry, why.into())
            }
            _ => Super,
        }
    }

    #[action]
    fn enter_recovering(pending: &mut EffectId, step: &mut RecoverStep, context: &mut Ctx) {
        let id = *pending;
        match step {
            RecoverStep::Reattach => context.push(Effect::ReattachRebootLease { id }),
            RecoverStep::Hooks => context.push(Effect::RunHooks {
                id,
                stage: HookStage::PostReboot,
            }),
            RecoverStep::Health => context.push(Effect::RunHealthScript {
                id,
                phase: Phase::PostReboot,
            }),
            RecoverStep::RetryReattach | RecoverStep::RetryHealth => {}
        }
    }
}

/// Helpers shared by the state handlers.
impl Core {
    /// A new check: into `Detecting`, waiting for the detectors (not a monitor check). Not
    /// done in the entry action: entry actions run again when a snapshot is restored.
    fn detect(&mut self) -> Flow<State> {
        self.monitoring = false;
        Transition(State::detecting(self.alloc()))
    }

    fn alloc(&mut self) -> EffectId {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Ends a pass: records the outcome and exit code, and schedules the next pass (or exits
    /// in `--once` mode).
    fn end_pass(&mut self, ctx: &mut Ctx, input: &Input, end: PassEnd, reason: String, next: Next) {
        let (outcome, exit) = match end {
            PassEnd::Outcome(o) => (Some(o), o.exit()),
            PassEnd::Exit(e) => (None, e),
        };
        ctx.outcome = outcome;
        ctx.exit = Some(exit);
        self.last_exit = Some(exit);
        self.monitoring = false;
        let at = match next {
            Next::Interval => {
                self.failures = 0;
                input.now.saturating_add(self.config.check_interval_ms)
            }
            Next::Backoff => {
                self.failures = self.failures.saturating_add(1);
                input.now.saturating_add(backoff::delay_ms(
                    &self.config,
                    self.failures,
                    input.jitter,
                ))
            }
            Next::At(t) => t,
        };
        if self.config.once {
            ctx.push(Effect::Exit { code: exit });
            ctx.reason(reason);
        } else {
            ctx.push(Effect::ScheduleTick { at });
            ctx.reason(format!("{reason}; next check {}", fmt_ms(at)));
        }
    }

    /// Ends the pass and goes back to Idle (the common way out of every checking state).
    fn stop(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        end: PassEnd,
        reason: String,
        next: Next,
    ) -> Flow<State> {
        self.end_pass(ctx, input, end, reason, next);
        Transition(State::idle())
    }

    /// After the pre-lock health gate: a cheap cooldown read before queueing.
    fn after_health_pre(&mut self, _ctx: &mut Ctx, _input: &Input) -> Flow<State> {
        Transition(State::health_pre(self.alloc(), PreStep::Cooldown))
    }

    /// After the pre-queue cooldown read: the queue, or `lock_skipped` when asked to stop here.
    fn enqueue(&mut self, ctx: &mut Ctx, input: &Input) -> Flow<State> {
        if self.config.skip_lock {
            return self.stop(
                ctx,
                input,
                PassEnd::Outcome(Outcome::LockSkipped),
                "lock acquisition skipped (--skip-lock)".into(),
                Next::Interval,
            );
        }
        // `--once` never waits forever: like the Go daemon, as long as its 5 lock attempts with
        // backoff would take, then `lock_unavailable` (exit 4).
        let deadline = self
            .config
            .lock_wait_timeout_ms
            .or_else(|| {
                self.config
                    .once
                    .then(|| backoff::attempts_ms(&self.config, ONCE_LOCK_ATTEMPTS))
            })
            .map(|t| input.now.saturating_add(t));
        Transition(State::locking(self.alloc(), deadline))
    }

    /// Earliest instant Locking must wake up by itself (wait timeout or window closing).
    /// When to look again after the window was found closed: at its next opening (at least a
    /// second away, so a verdict at the edge cannot spin), or after one check interval when no
    /// opening is known.
    fn after_closed_window(&self, next_open: Option<Millis>, now: Millis) -> Millis {
        match next_open {
            Some(t) => t.max(now.saturating_add(1000)),
            None => now.saturating_add(self.config.check_interval_ms),
        }
    }

    fn locking_wakeup(&self, deadline: Option<Millis>) -> Option<Millis> {
        match (deadline, self.window_closes.map(|(t, _)| t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Resumes a reboot that coordination shows but the journal does not know: recovery when
    /// the node has rebooted since (another boot id, or a re-attached slot); otherwise the
    /// reboot command may have run on this very boot, so it is treated as issued at `since`
    /// (wait for the shutdown, then the failed-reboot path) and never run again on this boot.
    fn resume_unfinished_reboot(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        from_boot: Option<&str>,
        since: Option<Millis>,
        rebooted: bool,
    ) -> Flow<State> {
        self.queue = None;
        self.slot_held = false;
        let other_boot = from_boot.is_some_and(|b| b != self.boot_id);
        if rebooted || other_boot {
            let from = from_boot.unwrap_or("unknown").to_string();
            ctx.reason(format!(
                "an unfinished reboot of this node was found in coordination (boot id {from} -> {}) but not in the journal; resuming its recovery",
                self.boot_id
            ));
            return self.begin_recovery(input, &from, since, false);
        }
        let issued = since.unwrap_or(input.now);
        let at = issued.saturating_add(self.config.reboot_grace_ms);
        self.rebooted_on = Some(self.boot_id.clone());
        ctx.push(Effect::ScheduleTick { at });
        ctx.reason(format!(
            "an unfinished reboot of this node was found in coordination on this boot ({}) but not in the journal: the reboot command may have run, so it is never run again on this boot; waiting for the shutdown until {}",
            self.boot_id,
            fmt_ms(at)
        ));
        let mut reboot = Reboot::new(RebootStep::AwaitShutdown, self.boot_id.clone(), false);
        reboot.issued_at = Some(issued);
        Transition(State::rebooting(self.alloc(), reboot))
    }

    /// Asks to be woken when the cluster state that blocked this pass changes (not in `--once`,
    /// whose pass ends the process).
    fn await_cluster(&mut self, ctx: &mut Ctx) {
        if self.config.once {
            return;
        }
        let id = self.alloc();
        self.cluster_wait = Some(id);
        ctx.push(Effect::AwaitClusterChange { id });
    }

    /// The safety-net wake-up while waiting under the slot for other holders: one check
    /// interval, or the window's closing if that is sooner.
    fn holders_wakeup(&self, now: Millis) -> Millis {
        let at = now.saturating_add(self.config.check_interval_ms);
        match self.window_closes {
            Some((t, _)) => at.min(t),
            None => at,
        }
    }

    /// The cluster-policy answer, read the same way before and under the slot: `Ok(None)` to go
    /// on, `Ok(Some(reasons))` when only slot holders' planned downtime stands in the way (the
    /// caller queues or waits behind them), `Err` when the pass has ended (blocked or
    /// unreadable: health_blocked, backoff).
    fn policy_answer<'v>(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        verdict: &'v PolicyVerdict,
        phase: Phase,
    ) -> Result<Option<&'v [BlockReason]>, Flow<State>> {
        let under = match phase {
            Phase::PostLock => " under the slot",
            _ => "",
        };
        let why = match verdict {
            PolicyVerdict::Pass => return Ok(None),
            PolicyVerdict::HeldBack { reasons } => return Ok(Some(reasons)),
            PolicyVerdict::Blocked { reasons } => {
                self.await_cluster(ctx);
                format!("cluster policy blocks{under}: {}", reasons.join("; "))
            }
            PolicyVerdict::Error { detail } => {
                format!("cluster health unavailable{under}: {detail}")
            }
        };
        Err(self.stop(
            ctx,
            input,
            PassEnd::Outcome(Outcome::HealthBlocked),
            why,
            Next::Backoff,
        ))
    }

    /// The health-script answer, before and under the slot: publishes it, then `None` to go
    /// on, or the ended pass (health_blocked, backoff) when the script blocks or failed.
    fn health_answer(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        result: &HealthResult,
        phase: Phase,
    ) -> Option<Flow<State>> {
        self.publish(ctx, result, phase);
        let why = health_block_reason(result, phase)?;
        Some(self.stop(
            ctx,
            input,
            PassEnd::Outcome(Outcome::HealthBlocked),
            why,
            Next::Backoff,
        ))
    }

    /// Publishes the result of a health-script run to the cluster registry.
    fn publish(&self, ctx: &mut Ctx, result: &HealthResult, phase: Phase) {
        let reason =
            health_block_reason(result, phase).unwrap_or_else(|| "health script passed".into());
        ctx.push(Effect::PublishHealth {
            healthy: *result == HealthResult::Passed,
            stage: phase,
            reason,
        });
    }

    /// Gives the slot back from `Rebooting` (outside the `slot` superstate) and ends the pass.
    fn abort_reboot(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        marker_written: bool,
        end: PassEnd,
        reason: String,
    ) -> Flow<State> {
        give_back_reboot_slot(ctx, marker_written);
        self.stop(ctx, input, end, reason, Next::Backoff)
    }

    fn begin_recovery(
        &mut self,
        input: &Input,
        from_boot: &str,
        issued_at: Option<Millis>,
        failed_reboot: bool,
    ) -> Flow<State> {
        let rec = Recovery {
            previous_boot_id: from_boot.to_string(),
            issued_at,
            since: input.now,
            failed_reboot,
        };
        Transition(State::recovering(self.alloc(), RecoverStep::Reattach, rec))
    }

    /// Keeps the slot and retries a recovery step after the backoff delay.
    fn retry_recovery(
        &mut self,
        ctx: &mut Ctx,
        input: &Input,
        step: &mut RecoverStep,
        retry: RecoverStep,
        why: String,
    ) -> Flow<State> {
        self.failures = self.failures.saturating_add(1);
        let at =
            input
                .now
                .saturating_add(backoff::delay_ms(&self.config, self.failures, input.jitter));
        *step = retry;
        ctx.push(Effect::ScheduleTick { at });
        ctx.exit = Some(Exit::Runtime);
        ctx.reason(format!("{why}; keeping the slot, retry at {}", fmt_ms(at)));
        Handled
    }
}

/// Gives the slot back from `Rebooting`: the in-progress marker (if written) goes first, so the
/// next holder does not see it.
fn give_back_reboot_slot(ctx: &mut Ctx, marker_written: bool) {
    if marker_written {
        ctx.push(Effect::ClearInProgress);
    }
    ctx.push(Effect::ReleaseSlot);
}

/// The answer `HealthPre` waits for at `step`.
fn pre_expects(step: PreStep) -> &'static [EventKind] {
    match step {
        PreStep::Policy => &[EventKind::ClusterHealthEvaluated],
        PreStep::Script => &[EventKind::HealthChecked],
        PreStep::Cooldown => &[EventKind::CooldownRead],
    }
}

/// The answer `HealthPost` waits for at `step`.
fn post_expects(step: PostStep) -> &'static [EventKind] {
    match step {
        PostStep::Gates => &[EventKind::GatesObserved],
        PostStep::Window => &[EventKind::WindowEvaluated],
        PostStep::Detectors => &[EventKind::DetectorsEvaluated],
        PostStep::Policy => &[EventKind::ClusterHealthEvaluated],
        PostStep::Cooldown => &[EventKind::CooldownRead],
        PostStep::Script => &[EventKind::HealthChecked],
        PostStep::WaitHolders => &[EventKind::ClusterChanged],
    }
}

/// The answer `Rebooting` waits for at `step`.
fn reboot_expects(step: RebootStep) -> &'static [EventKind] {
    match step {
        RebootStep::Lease => &[EventKind::RebootLeaseMoved],
        RebootStep::Hooks => &[EventKind::HooksRan],
        RebootStep::Window => &[EventKind::WindowEvaluated],
        RebootStep::Command => &[EventKind::RebootCommandFinished],
        RebootStep::AwaitShutdown => &[],
    }
}

/// The answer `Recovering` waits for at `step`.
fn recover_expects(step: RecoverStep) -> &'static [EventKind] {
    match step {
        RecoverStep::Reattach => &[EventKind::RebootLeaseReattached],
        RecoverStep::Hooks => &[EventKind::HooksRan],
        RecoverStep::Health => &[EventKind::HealthChecked],
        RecoverStep::RetryReattach | RecoverStep::RetryHealth => &[],
    }
}

/// `None` when the health result allows the reboot, else the blocking reason.
fn health_block_reason(result: &HealthResult, phase: Phase) -> Option<String> {
    match result {
        HealthResult::Passed => None,
        HealthResult::Blocked {
            exit_code,
            first_line,
        } => Some(format!(
            "health script ({}) exited {exit_code}{}",
            phase.as_str(),
            if first_line.is_empty() {
                String::new()
            } else {
                format!(": {first_line}")
            }
        )),
        HealthResult::Error { detail } => Some(format!(
            "health script ({}) failed: {detail}",
            phase.as_str()
        )),
    }
}
