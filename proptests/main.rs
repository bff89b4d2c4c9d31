//! Property tests of the machine's invariants (SPEC §2.2, `fsm-spec/machine.yaml` invariants).
//!
//! Random input sequences — sensible ones (answers to what the machine asked for) mixed with
//! nonsense (wrong kinds, stale ids, duplicates, timers, restarts, reloads, brakes) — are fed to
//! the machine while an independent monitor, which only sees inputs and emitted effects, checks:
//! - `reboot-only-with-every-gate` (including a window check answered after the pre-reboot
//!   hooks), `slot-released-exactly-once`,
//!   `recovering-releases-after-health`, `one-reboot-per-boot`, `dry-run-never-reboots`;
//! - `replay-determinism`: the same inputs through a fresh machine give identical steps, and a
//!   machine restored from a snapshot at any point continues identically.
//!
//! Failures shrink to a short list of `Action`s, printed with the step-by-step trace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashMap;

use clusterrebootd::fsm::answer;
use clusterrebootd::fsm::*;
use proptest::prelude::*;

const T0: Millis = 1_800_000_000_000;

/// One generated action; turned into an input against the machine's current situation.
#[derive(Debug, Clone)]
enum Action {
    /// Answer the first answerable effect of the last step with success.
    Succeed,
    /// `Succeed` this many times in a row (long runs reach the deep states).
    SucceedN(u8),
    /// Answer the pending request with a failure / negative variant `variant`.
    Fail(u8),
    /// An event of kind `kind` with a stale id.
    Stale(u8),
    /// A timer fires after `advance_s` seconds, brakes on or off.
    Tick { advance_s: u32, brakes: bool },
    /// An unsolicited brake observation.
    Brakes(bool),
    /// The process restarts; on a new boot id or not.
    Restart { new_boot: bool },
    /// SIGHUP with dry_run on or off.
    Reload { dry_run: bool },
    /// The slot is lost.
    Lost,
    /// SIGTERM.
    Shutdown,
    /// The pending request times out.
    Timeout,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::Succeed),
        6 => (1u8..30).prop_map(Action::SucceedN),
        3 => any::<u8>().prop_map(Action::Fail),
        1 => any::<u8>().prop_map(Action::Stale),
        2 => (0u32..4000, prop::bool::weighted(0.2)).prop_map(|(advance_s, brakes)| Action::Tick { advance_s, brakes }),
        1 => any::<bool>().prop_map(Action::Brakes),
        1 => any::<bool>().prop_map(|new_boot| Action::Restart { new_boot }),
        1 => any::<bool>().prop_map(|dry_run| Action::Reload { dry_run }),
        1 => Just(Action::Lost),
        1 => Just(Action::Shutdown),
        1 => Just(Action::Timeout),
    ]
}

fn config(dry_run: bool, once: bool) -> FsmConfig {
    FsmConfig {
        dry_run,
        once,
        min_reboot_interval_sec: 60,
        lock_wait_timeout_ms: Some(600_000),
        reboot_command: vec!["/sbin/reboot".into()],
        ..FsmConfig::default()
    }
}

/// The failure (or negative) variant number `v` of the answer to `effect`.
fn failure(effect: &Effect, v: u8) -> Option<Event> {
    let failed = || StepResult::Failed {
        detail: "boom".into(),
    };
    Some(match effect {
        Effect::RunDetectors { id, .. } => Event::DetectorsEvaluated {
            id: *id,
            result: if v.is_multiple_of(2) {
                DetectorResult::NotRequired
            } else {
                DetectorResult::Error { detail: "x".into() }
            },
        },
        Effect::EvaluateWindow { id } => Event::WindowEvaluated {
            id: *id,
            verdict: WindowVerdict::Closed {
                outcome: Outcome::WindowDenied,
                reason: "deny".into(),
                next_open: Some(T0),
            },
        },
        Effect::ReadClusterHealth { id } => Event::ClusterHealthEvaluated {
            id: *id,
            verdict: if v.is_multiple_of(2) {
                PolicyVerdict::Blocked {
                    reasons: vec!["n2".into()],
                }
            } else {
                PolicyVerdict::Error {
                    detail: "etcd".into(),
                }
            },
        },
        Effect::RunHealthScript { id, .. } => Event::HealthChecked {
            id: *id,
            result: if v.is_multiple_of(2) {
                HealthResult::Blocked {
                    exit_code: 1,
                    first_line: String::new(),
                }
            } else {
                HealthResult::Error { detail: "t".into() }
            },
        },
        Effect::CheckGates { id } => Event::GatesObserved {
            id: Some(*id),
            gates: Gates {
                kill_switch: v.is_multiple_of(2),
                pause: (!v.is_multiple_of(2)).then(|| "ops".into()),
                unknown: None,
            },
        },
        Effect::JoinQueue { id } => {
            if v.is_multiple_of(2) {
                Event::SlotQueued {
                    id: *id,
                    position: 1,
                    holders: vec![],
                    pool: None,
                }
            } else {
                Event::SlotUnavailable {
                    id: *id,
                    detail: "etcd".into(),
                }
            }
        }
        Effect::ReadCooldown { id } => Event::CooldownRead {
            id: *id,
            status: if v.is_multiple_of(2) {
                CooldownStatus::Active {
                    until: T0,
                    by: "n2".into(),
                }
            } else {
                CooldownStatus::Error { detail: "e".into() }
            },
        },
        Effect::MoveSlotToRebootLease { id, .. } => Event::RebootLeaseMoved {
            id: *id,
            result: failed(),
        },
        Effect::RunHooks { id, .. } => Event::HooksRan {
            id: *id,
            result: failed(),
        },
        Effect::ExecuteReboot { id, .. } => Event::RebootCommandFinished {
            id: *id,
            result: failed(),
        },
        Effect::ReattachRebootLease { id } => Event::RebootLeaseReattached {
            id: *id,
            result: if v.is_multiple_of(2) {
                ReattachResult::Expired
            } else {
                ReattachResult::Failed { detail: "e".into() }
            },
        },
        _ => return None,
    })
}

/// Every answer kind, with a stale id, chosen by `k`.
fn stale(k: u8, id: EffectId) -> Event {
    let all = [
        Event::DetectorsEvaluated {
            id,
            result: DetectorResult::Required { by: vec![] },
        },
        Event::WindowEvaluated {
            id,
            verdict: WindowVerdict::Open {
                closes_at: None,
                closes_by: None,
            },
        },
        Event::ClusterHealthEvaluated {
            id,
            verdict: PolicyVerdict::Pass,
        },
        Event::HealthChecked {
            id,
            result: HealthResult::Passed,
        },
        Event::SlotAcquired { id },
        Event::CooldownRead {
            id,
            status: CooldownStatus::Clear,
        },
        Event::RebootLeaseMoved {
            id,
            result: StepResult::Ok,
        },
        Event::HooksRan {
            id,
            result: StepResult::Ok,
        },
        Event::RebootCommandFinished {
            id,
            result: StepResult::Ok,
        },
        Event::RebootLeaseReattached {
            id,
            result: ReattachResult::Attached,
        },
        Event::GatesObserved {
            id: Some(id),
            gates: Gates::default(),
        },
    ];
    all[usize::from(k) % all.len()].clone()
}

/// Facts established under the current slot (reset when it is acquired).
#[derive(Debug, Default, Clone)]
struct Facts {
    gates: bool,
    window: bool,
    detectors: bool,
    policy: bool,
    health: bool,
    cooldown: bool,
}

/// The independent monitor: sees only inputs and effects.
#[derive(Default)]
struct Monitor {
    /// Requests seen: id → (effect name, phase, emitted while holding the slot).
    requests: HashMap<EffectId, (&'static str, Option<Phase>, bool)>,
    held: bool,
    facts: Facts,
    boot: String,
    dry_run: bool,
    reboots_per_boot: HashMap<String, u32>,
}

fn releases(step: &Step) -> usize {
    step.effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::LeaveQueue | Effect::ReleaseSlot | Effect::CompleteRecovery { .. }
            )
        })
        .count()
}

impl Monitor {
    fn check(&mut self, input: &Input, step: &Step) -> Result<(), String> {
        // What the input establishes.
        let req = input
            .event
            .answers()
            .and_then(|id| self.requests.get(&id).copied());
        match (&input.event, req) {
            (Event::Started { boot_id, config }, _) => {
                self.boot = boot_id.clone();
                self.dry_run = config.dry_run;
                self.held = false;
            }
            (Event::ConfigReloaded { config }, _) => self.dry_run = config.dry_run,
            (Event::SlotAcquired { .. }, Some(("JoinQueue", _, _))) => {
                self.held = true;
                self.facts = Facts::default();
            }
            (Event::GatesObserved { gates, .. }, Some(("CheckGates", _, true))) => {
                self.facts.gates = !gates.active()
            }
            (Event::WindowEvaluated { verdict, .. }, Some(("EvaluateWindow", _, true))) => {
                self.facts.window = matches!(verdict, WindowVerdict::Open { .. })
            }
            (
                Event::DetectorsEvaluated { result, .. },
                Some(("RunDetectors", Some(Phase::PostLock), true)),
            ) => self.facts.detectors = matches!(result, DetectorResult::Required { .. }),
            (
                Event::ClusterHealthEvaluated { verdict, .. },
                Some(("ReadClusterHealth", _, true)),
            ) => self.facts.policy = *verdict == PolicyVerdict::Pass,
            (
                Event::HealthChecked { result, .. },
                Some(("RunHealthScript", Some(Phase::PostLock), true)),
            ) => self.facts.health = *result == HealthResult::Passed,
            (Event::CooldownRead { status, .. }, Some(("ReadCooldown", _, true))) => {
                self.facts.cooldown = *status == CooldownStatus::Clear
            }
            // The pre-reboot hooks (a drain may take minutes) make any earlier window check
            // stale: only a check answered after them may let the command run.
            (Event::HooksRan { .. }, Some(("RunHooks", _, true))) => self.facts.window = false,
            // A lost slot is lost: no reboot may follow in this cycle.
            (Event::SlotLost { .. }, _) => self.held = false,
            _ => {}
        }
        // Any brake seen while holding the slot invalidates the gate check.
        if let Event::Tick { gates } | Event::GatesObserved { gates, .. } = &input.event
            && gates.active()
        {
            self.facts.gates = false;
        }

        // reboot-only-with-every-gate, one-reboot-per-boot, dry-run-never-reboots
        for e in &step.effects {
            if let Effect::ExecuteReboot { dry_run, .. } = e {
                if self.dry_run && !dry_run {
                    return Err("dry-run-never-reboots: real reboot with dry_run configured".into());
                }
                if !dry_run {
                    let f = &self.facts;
                    if step.to != StateName::Rebooting
                        || !self.held
                        || !(f.gates
                            && f.window
                            && f.detectors
                            && f.policy
                            && f.health
                            && f.cooldown)
                    {
                        return Err(format!(
                            "reboot-only-with-every-gate: reboot in {:?} with held={} facts={f:?}",
                            step.to, self.held
                        ));
                    }
                    let n = self.reboots_per_boot.entry(self.boot.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!(
                            "one-reboot-per-boot: second reboot on boot {}",
                            self.boot
                        ));
                    }
                }
            }
        }

        // slot-released-exactly-once, recovering-releases-after-health
        let n = releases(step);
        let (from, to) = (step.from, step.to);
        let expected = if from.in_slot() && to == StateName::Idle {
            Some(1)
        } else if from.in_slot() || (from == StateName::Rebooting && to != StateName::Idle) {
            Some(0)
        } else if from == StateName::Rebooting && to == StateName::Idle {
            Some(1)
        } else if from == StateName::Recovering {
            let passed = matches!(
                (&input.event, req),
                (
                    Event::HealthChecked {
                        result: HealthResult::Passed,
                        ..
                    },
                    Some(("RunHealthScript", Some(Phase::PostReboot), _))
                )
            );
            if n > 0 && !passed {
                return Err("recovering-releases-after-health: released without a passing post-reboot check".into());
            }
            Some(if to == StateName::Idle { 1 } else { 0 })
        } else {
            Some(0)
        };
        if let Some(exp) = expected
            && n != exp
        {
            return Err(format!(
                "slot-released-exactly-once: {from} -> {to} released {n} times, expected {exp}"
            ));
        }
        if n > 0
            || step
                .effects
                .iter()
                .any(|e| matches!(e, Effect::JoinQueue { .. }))
        {
            self.held = false;
            self.facts = Facts::default();
        }

        // Remember the requests of this step.
        for e in &step.effects {
            if let Some(id) = e.id() {
                let phase = match e {
                    Effect::RunDetectors { phase, .. } | Effect::RunHealthScript { phase, .. } => {
                        Some(*phase)
                    }
                    _ => None,
                };
                self.requests.insert(id, (e.name(), phase, self.held));
            }
        }
        Ok(())
    }
}

/// Runs `actions` and returns the inputs fed and the steps produced, or the first violation.
fn run(dry_run: bool, once: bool, actions: &[Action]) -> Result<(Vec<Input>, Vec<Step>), String> {
    let mut m = Machine::new();
    let mut mon = Monitor::default();
    let mut now = T0;
    let mut boots = 0u32;
    let mut inputs = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let feed = |m: &mut Machine,
                mon: &mut Monitor,
                input: Input,
                steps: &mut Vec<Step>,
                inputs: &mut Vec<Input>|
     -> Result<(), String> {
        // Restore equivalence: a machine restored from a snapshot now must decide identically.
        let mut copy = Machine::restore(m.snapshot());
        let step = m.handle(&input);
        let copied = copy.handle(&input);
        if copied != step {
            return Err(format!(
                "replay-determinism: restored machine diverged on {:?}",
                input.event.name()
            ));
        }
        mon.check(&input, &step).map_err(|e| {
            format!(
                "{e}\n  at {:?} -> {:?} on {:?}",
                step.from, step.to, input.event
            )
        })?;
        inputs.push(input);
        steps.push(step);
        Ok(())
    };
    let start = Input {
        now,
        jitter: 0,
        event: Event::Started {
            boot_id: "boot-0".into(),
            config: config(dry_run, once),
        },
    };
    feed(&mut m, &mut mon, start, &mut steps, &mut inputs)?;
    let expanded: Vec<Action> = actions
        .iter()
        .flat_map(|a| match a {
            Action::SucceedN(n) => vec![Action::Succeed; usize::from(*n)],
            other => vec![other.clone()],
        })
        .collect();
    for (i, a) in expanded.iter().enumerate() {
        now += 1_000;
        let last = steps.last().map(|s| s.effects.clone()).unwrap_or_default();
        let pending = m.state().pending();
        let event = match a {
            Action::Succeed => last.iter().find_map(answer::success),
            Action::Fail(v) => last.iter().find_map(|e| failure(e, *v)),
            Action::Stale(k) => Some(stale(*k, pending.unwrap_or(0) + 10_000)),
            Action::Tick { advance_s, brakes } => {
                now += u64::from(*advance_s) * 1000;
                Some(Event::Tick {
                    gates: Gates {
                        kill_switch: *brakes,
                        pause: None,
                        unknown: None,
                    },
                })
            }
            Action::Brakes(on) => Some(Event::GatesObserved {
                id: None,
                gates: Gates {
                    kill_switch: false,
                    pause: on.then(|| "maintenance".into()),
                    unknown: None,
                },
            }),
            Action::Restart { new_boot } => {
                if *new_boot {
                    boots += 1;
                }
                Some(Event::Started {
                    boot_id: format!("boot-{boots}"),
                    config: config(dry_run, once),
                })
            }
            Action::Reload { dry_run: d } => Some(Event::ConfigReloaded {
                config: config(*d || dry_run, once),
            }),
            Action::Lost => Some(Event::SlotLost {
                detail: SlotLoss::new(SlotLossKind::SessionExpired, "lease expired"),
            }),
            Action::Shutdown => Some(Event::ShutdownRequested),
            Action::Timeout => pending.map(|id| Event::EffectTimedOut { id }),
            Action::SucceedN(_) => None,
        };
        if let Some(event) = event {
            let input = Input {
                now,
                jitter: (i as u32).wrapping_mul(2_654_435_761),
                event,
            };
            feed(&mut m, &mut mon, input, &mut steps, &mut inputs)?;
        }
    }
    Ok((inputs, steps))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_input_sequence(
        dry_run in prop::bool::weighted(0.2),
        once in prop::bool::weighted(0.1),
        actions in prop::collection::vec(action(), 0..60),
    ) {
        let (inputs, steps) = match run(dry_run, once, &actions) {
            Ok(x) => x,
            Err(e) => return Err(TestCaseError::fail(e)),
        };
        // replay-determinism: the journaled inputs through a fresh machine.
        let mut fresh = Machine::new();
        for (input, step) in inputs.iter().zip(&steps) {
            prop_assert_eq!(&fresh.handle(input), step);
        }
    }
}

/// The monitor has teeth: a run that reaches a real reboot exists, and the monitor rejects it
/// when one gate fact is withheld.
#[test]
fn monitor_rejects_a_reboot_without_the_post_lock_health_check() {
    let mut actions = vec![Action::Succeed; 40];
    actions.insert(
        0,
        Action::Tick {
            advance_s: 0,
            brakes: false,
        },
    );
    let (_, steps) = run(false, false, &actions).expect("happy path is clean");
    assert!(
        steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ExecuteReboot { dry_run: false, .. })),
        "the happy path reaches the reboot"
    );
    // Replay the same inputs into a monitor that never saw the post-lock health answer.
    let mut mon = Monitor::default();
    let mut m = Machine::new();
    let (inputs, _) = run(false, false, &actions).expect("again");
    let mut violation = None;
    for input in inputs {
        let step = m.handle(&input);
        let skip =
            matches!(&input.event, Event::HealthChecked { .. }) && step.to == StateName::Cooldown;
        if skip {
            // Pretend the answer never came: feed the monitor a neutral tick instead.
            let _ = mon.check(
                &Input {
                    now: input.now,
                    jitter: 0,
                    event: Event::Tick {
                        gates: Gates::default(),
                    },
                },
                &Step {
                    effects: step.effects.clone(),
                    ..step.clone()
                },
            );
            continue;
        }
        if let Err(e) = mon.check(&input, &step) {
            violation = Some(e);
            break;
        }
    }
    let v = violation.expect("monitor must reject the reboot");
    assert!(v.contains("reboot-only-with-every-gate"), "{v}");
}

/// The monitor rejects a reboot whose last window check came before the pre-reboot hooks (the
/// machine before the final window check): the happy path, with the final window check's
/// effects shown to the monitor as the answer to the hooks.
#[test]
fn monitor_rejects_a_reboot_without_the_final_window_check() {
    let mut actions = vec![Action::Succeed; 40];
    actions.insert(
        0,
        Action::Tick {
            advance_s: 0,
            brakes: false,
        },
    );
    let (inputs, steps) = run(false, false, &actions).expect("happy path is clean");
    let mut mon = Monitor::default();
    let mut hooks_answer: Option<Input> = None;
    let mut violation = None;
    for (input, step) in inputs.into_iter().zip(steps) {
        if step.from == StateName::Rebooting
            && step
                .effects
                .iter()
                .any(|e| matches!(e, Effect::EvaluateWindow { .. }))
        {
            // Hold the hooks' answer back; the final window check "does not exist".
            hooks_answer = Some(input);
            continue;
        }
        let result = match hooks_answer.take() {
            // The old machine: the hooks' answer emitted the reboot command directly.
            Some(hooks) => mon.check(&hooks, &step),
            None => mon.check(&input, &step),
        };
        if let Err(e) = result {
            violation = Some(e);
            break;
        }
    }
    let v = violation.expect("monitor must reject the reboot");
    assert!(v.contains("reboot-only-with-every-gate"), "{v}");
    assert!(v.contains("window: false"), "{v}");
}

/// The generator explores the whole machine: every state is visited and real reboots and
/// recoveries happen in a good share of the generated runs (otherwise the properties would hold
/// vacuously).
#[test]
fn generated_runs_cover_every_state_and_reach_reboots() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(action(), 0..60);
    let mut visited = std::collections::BTreeSet::new();
    let (mut reboots, mut recoveries) = (0, 0);
    let cases = 300;
    for _ in 0..cases {
        let actions = strategy.new_tree(&mut runner).expect("tree").current();
        let (_, steps) = run(false, false, &actions).expect("invariants hold");
        visited.extend(steps.iter().map(|s| s.to));
        if steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ExecuteReboot { dry_run: false, .. }))
        {
            reboots += 1;
        }
        if steps
            .iter()
            .any(|s| s.from == StateName::Recovering && s.to == StateName::Idle)
        {
            recoveries += 1;
        }
    }
    assert_eq!(visited.len(), StateName::ALL.len(), "visited {visited:?}");
    assert!(
        reboots * 10 >= cases,
        "only {reboots} of {cases} runs reached a real reboot"
    );
    assert!(
        recoveries * 20 >= cases,
        "only {recoveries} of {cases} runs completed a recovery"
    );
}
