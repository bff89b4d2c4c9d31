//! Path tests: whole journeys through the machine, step by step.

use super::*;
use crate::exit::Exit;

const T0: Millis = 1_800_000_000_000;

/// A tiny driver: feeds inputs, keeps the clock, answers effects on request.
struct Run {
    m: Machine,
    now: Millis,
    steps: Vec<Step>,
}

impl Run {
    fn start(config: FsmConfig) -> Self {
        let mut r = Run {
            m: Machine::new(),
            now: T0,
            steps: Vec::new(),
        };
        r.feed(Event::Started {
            boot_id: "boot-a".into(),
            config,
        });
        r
    }

    fn feed(&mut self, event: Event) -> Step {
        let step = self.m.handle(&Input {
            now: self.now,
            jitter: 0,
            event,
        });
        self.steps.push(step.clone());
        step
    }

    fn tick(&mut self) -> Step {
        self.feed(Event::Tick {
            gates: Gates::default(),
        })
    }

    /// Answers every answerable effect of `step` with success, recursively, until one of
    /// `stop` is reached or nothing is left to answer.
    fn happy_until(&mut self, step: Step, stop: StateName) -> Step {
        let mut step = step;
        for _ in 0..50 {
            if step.to == stop {
                return step;
            }
            let Some(ev) = step.effects.iter().find_map(answer::success) else {
                return step;
            };
            step = self.feed(ev);
        }
        panic!("no progress towards {stop}: {:?}", self.steps.last());
    }

    /// From `Idle`, answers every request with success until the policy read under the slot
    /// is pending; returns that step.
    fn walk_to_policy_under_the_slot(&mut self) -> Step {
        let mut s = self.tick();
        for _ in 0..20 {
            if s.from == StateName::HealthPost && names(&s) == ["ReadClusterHealth"] {
                break;
            }
            let ev = s.effects.iter().find_map(answer::success).expect("answer");
            s = self.feed(ev);
        }
        s
    }

    fn pending(&self) -> EffectId {
        self.m.state().pending().expect("a pending request")
    }
}

fn names(step: &Step) -> Vec<&'static str> {
    step.effects.iter().map(Effect::name).collect()
}

fn cfg() -> FsmConfig {
    FsmConfig {
        reboot_command: vec!["/bin/reboot-test".into()],
        min_reboot_interval_sec: 600,
        ..FsmConfig::default()
    }
}

#[test]
fn started_schedules_an_immediate_check() {
    let r = Run::start(cfg());
    let s = &r.steps[0];
    assert_eq!((s.from, s.to), (StateName::Idle, StateName::Idle));
    assert_eq!(s.effects, vec![Effect::ScheduleTick { at: T0 }]);
}

#[test]
fn full_reboot_and_recovery() {
    let mut r = Run::start(cfg());
    let first = r.tick();
    let s = r.happy_until(first, StateName::Rebooting);
    assert_eq!(s.to, StateName::Rebooting);
    assert_eq!(
        names(&s),
        ["MoveSlotToRebootLease"],
        "no release on hand-over"
    );
    let s = r.happy_until(s, StateName::Idle);
    // The reboot command was executed exactly once and we now wait for the shutdown.
    let reboots: Vec<_> = r
        .steps
        .iter()
        .flat_map(|s| &s.effects)
        .filter(|e| matches!(e, Effect::ExecuteReboot { .. }))
        .collect();
    assert_eq!(reboots.len(), 1);
    assert!(
        matches!(reboots[0], Effect::ExecuteReboot { dry_run: false, argv, .. } if argv == &["/bin/reboot-test"])
    );
    assert_eq!(s.to, StateName::Rebooting);
    assert!(names(&s).contains(&"ScheduleTick"));
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ReleaseSlot | Effect::LeaveQueue))
    );

    // SIGTERM from the shutdown: exit without releasing.
    let s = r.feed(Event::ShutdownRequested);
    assert_eq!(names(&s), ["Exit"]);
    assert_eq!(s.to, StateName::Rebooting);

    // New process, new boot id.
    r.now += 120_000;
    let s = r.feed(Event::Started {
        boot_id: "boot-b".into(),
        config: cfg(),
    });
    assert_eq!(
        (s.from, s.to),
        (StateName::Rebooting, StateName::Recovering)
    );
    assert_eq!(names(&s), ["ReattachRebootLease"]);
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(
        names(&s),
        ["PublishHealth", "CompleteRecovery", "ScheduleTick"]
    );
    assert_eq!(s.exit, Some(Exit::Ok));
    let marker = r
        .steps
        .iter()
        .flat_map(|s| &s.effects)
        .find(|e| matches!(e, Effect::WritePostRebootMarker { .. }))
        .expect("post-reboot marker");
    assert!(
        matches!(marker, Effect::WritePostRebootMarker { previous_boot_id, boot_id, .. } if previous_boot_id == "boot-a" && boot_id == "boot-b")
    );
}

#[test]
fn no_reboot_required_waits_one_interval() {
    let mut r = Run::start(cfg());
    r.tick();
    let id = r.pending();
    let s = r.feed(Event::DetectorsEvaluated {
        id,
        result: DetectorResult::NotRequired,
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::NoAction));
    assert_eq!(s.effects, vec![Effect::ScheduleTick { at: T0 + 60_000 }]);
}

#[test]
fn closed_window_sleeps_until_the_opening() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::WindowCheck);
    assert_eq!(s.to, StateName::WindowCheck);
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Closed {
            outcome: Outcome::WindowDenied,
            reason: "blocked by deny window \"* 00:00-23:00\"".into(),
            next_open: Some(T0 + 3_600_000),
        },
    });
    assert_eq!(s.outcome, Some(Outcome::WindowDenied));
    assert_eq!(s.effects, vec![Effect::ScheduleTick { at: T0 + 3_600_000 }]);
    assert!(s.reason.contains("blocked by deny window"), "{}", s.reason);
}

#[test]
fn health_blocked_backs_off_and_never_queues() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::HealthPre);
    let s = r.feed(answer::success(&s.effects[0]).expect("policy answer"));
    assert_eq!(names(&s), ["RunHealthScript"]);
    let id = r.pending();
    let s = r.feed(Event::HealthChecked {
        id,
        result: HealthResult::Blocked {
            exit_code: 3,
            first_line: "quorum would break".into(),
        },
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::HealthBlocked));
    assert_eq!(s.exit, Some(Exit::HealthBlocked));
    assert!(
        s.reason.contains("exited 3: quorum would break"),
        "{}",
        s.reason
    );
    assert_eq!(names(&s), ["PublishHealth", "ScheduleTick"]);
    assert_eq!(s.effects[1], Effect::ScheduleTick { at: T0 + 5_000 });
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::JoinQueue { .. }))
    );
}

#[test]
fn kill_switch_on_tick_keeps_idle() {
    let mut r = Run::start(cfg());
    let s = r.feed(Event::Tick {
        gates: Gates {
            kill_switch: true,
            pause: None,
            unknown: None,
        },
    });
    assert_eq!((s.from, s.to), (StateName::Idle, StateName::Idle));
    assert_eq!(s.outcome, Some(Outcome::KillSwitchActive));
    assert_eq!(s.exit, Some(Exit::KillSwitch));
}

#[test]
fn window_closing_while_queued_leaves_the_queue() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::WindowCheck);
    let id = r.pending();
    let _ = s;
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Open {
            closes_at: Some(T0 + 1_000_000),
            closes_by: Some(Outcome::WindowDenied),
        },
    });
    let s = r.feed(answer::success(&s.effects[0]).expect("policy"));
    let s = r.feed(answer::success(&s.effects[0]).expect("script"));
    assert_eq!(
        names(&s),
        ["PublishHealth", "ReadCooldown"],
        "cheap cooldown read before queueing"
    );
    let s = r.feed(answer::success(&s.effects[1]).expect("cooldown"));
    assert_eq!(s.to, StateName::Locking);
    assert_eq!(names(&s), ["JoinQueue", "ScheduleTick"]);
    let id = r.pending();
    let q = r.feed(Event::SlotQueued {
        id,
        position: 2,
        holders: vec![SlotHolder {
            node: "node-3".into(),
            since: Some(T0),
        }],
        pool: None,
    });
    assert!(
        q.reason.contains("position 2, held by node-3 since"),
        "{}",
        q.reason
    );
    // In a reboot group the reason names the pool waited for (issue #16).
    let g = r.feed(Event::SlotQueued {
        id,
        position: 1,
        holders: vec![],
        pool: Some("db".into()),
    });
    assert_eq!(
        g.reason,
        "waiting for a slot of reboot group db, position 1, held by nobody"
    );
    r.now = T0 + 1_000_000;
    let s = r.tick();
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::WindowDenied));
    assert_eq!(names(&s), ["LeaveQueue", "ScheduleTick"]);
}

#[test]
fn detectors_clearing_under_the_slot_release_it() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::HealthPost);
    let s = r.feed(answer::success(&s.effects[0]).expect("gates"));
    let s = r.feed(answer::success(&s.effects[0]).expect("window"));
    assert!(matches!(
        s.effects[0],
        Effect::RunDetectors {
            phase: Phase::PostLock,
            ..
        }
    ));
    let id = r.pending();
    let s = r.feed(Event::DetectorsEvaluated {
        id,
        result: DetectorResult::NotRequired,
    });
    assert_eq!(s.outcome, Some(Outcome::RecheckCleared));
    assert_eq!(names(&s), ["ReleaseSlot", "ScheduleTick"]);
}

#[test]
fn shutdown_in_locking_leaves_the_queue_before_exiting() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::Locking);
    assert_eq!(s.to, StateName::Locking);
    let s = r.feed(Event::ShutdownRequested);
    assert_eq!(names(&s), ["LeaveQueue", "Exit"]);
    assert_eq!(s.to, StateName::Idle);
}

#[test]
fn kill_switch_under_the_slot_aborts_and_releases() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::HealthPost);
    let id = r.pending();
    let _ = s;
    let s = r.feed(Event::GatesObserved {
        id: Some(id),
        gates: Gates {
            kill_switch: true,
            pause: None,
            unknown: None,
        },
    });
    assert_eq!(s.outcome, Some(Outcome::KillSwitchActive));
    assert_eq!(names(&s), ["ReleaseSlot", "ScheduleTick"]);
}

#[test]
fn failing_post_reboot_health_keeps_the_slot() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.to, StateName::Rebooting);
    r.feed(Event::Started {
        boot_id: "boot-b".into(),
        config: cfg(),
    });
    let s = r.feed(Event::RebootLeaseReattached {
        id: r.pending(),
        result: ReattachResult::Expired,
    });
    assert!(s.reason.contains("expired"), "{}", s.reason);
    let s = r.feed(answer::success(s.effects.last().expect("hooks")).expect("hooks ok"));
    assert_eq!(names(&s), ["RunHealthScript"]);
    for attempt in 1..=3 {
        let s = r.feed(Event::HealthChecked {
            id: r.pending(),
            result: HealthResult::Error {
                detail: "timed out".into(),
            },
        });
        assert_eq!(s.to, StateName::Recovering, "attempt {attempt}");
        assert_eq!(
            names(&s),
            ["PublishHealth", "ScheduleTick"],
            "no release, attempt {attempt}"
        );
        r.now += 60_000;
        let s = r.tick();
        assert_eq!(names(&s), ["RunHealthScript"]);
    }
    let s = r.feed(Event::HealthChecked {
        id: r.pending(),
        result: HealthResult::Passed,
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(
        s.effects[1],
        Effect::CompleteRecovery { cooldown_sec: 600 },
        "marker, record, cooldown and release in one transaction"
    );
}

#[test]
fn same_boot_id_after_the_command_is_a_failed_reboot_after_the_grace() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    r.happy_until(s, StateName::Idle);
    r.now += 60_000;
    let s = r.feed(Event::Started {
        boot_id: "boot-a".into(),
        config: cfg(),
    });
    assert_eq!(
        s.to,
        StateName::Rebooting,
        "inside the grace period we keep waiting"
    );
    assert!(names(&s) == ["ScheduleTick"]);
    r.now += 10 * 60_000;
    let s = r.tick();
    assert_eq!(s.to, StateName::Recovering);
    assert!(s.reason.contains("did not reboot"), "{}", s.reason);
    // Health check before release, no marker (there was no reboot), then a runtime error exit.
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.exit, Some(Exit::Runtime));
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::WritePostRebootMarker { .. }))
    );
    let reboots = r
        .steps
        .iter()
        .flat_map(|s| &s.effects)
        .filter(|e| matches!(e, Effect::ExecuteReboot { .. }))
        .count();
    assert_eq!(reboots, 1, "never a silent second reboot");
}

#[test]
fn stale_answers_are_ignored() {
    let mut r = Run::start(cfg());
    r.tick();
    let id = r.pending();
    let s = r.feed(Event::DetectorsEvaluated {
        id: id + 100,
        result: DetectorResult::NotRequired,
    });
    assert_eq!((s.from, s.to), (StateName::Detecting, StateName::Detecting));
    assert!(s.effects.is_empty());
    assert!(s.reason.contains("ignored stale"), "{}", s.reason);
}

#[test]
fn once_mode_stops_at_ready_and_releases() {
    let mut r = Run::start(FsmConfig {
        once: true,
        ..cfg()
    });
    let s = r.tick();
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::Ready));
    assert_eq!(names(&s), ["ReleaseSlot", "Exit"]);
    assert!(s.reason.contains("run without --once"), "{}", s.reason);
    assert!(!r.steps.iter().flat_map(|s| &s.effects).any(|e| matches!(
        e,
        Effect::ExecuteReboot { .. } | Effect::MoveSlotToRebootLease { .. }
    )));
}

#[test]
fn dry_run_logs_the_command_and_keeps_running() {
    let mut r = Run::start(FsmConfig {
        dry_run: true,
        ..cfg()
    });
    let s = r.tick();
    let s = r.happy_until(s, StateName::Rebooting);
    assert!(matches!(
        &s.effects[..],
        [Effect::ExecuteReboot { dry_run: true, .. }]
    ));
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::Ready));
    assert_eq!(names(&s), ["ReleaseSlot", "ScheduleTick"]);
    assert!(s.reason.contains("dry run: would reboot"), "{}", s.reason);
}

#[test]
fn restoring_in_any_state_executes_nothing_and_continues_identically() {
    // Walk a full cycle; after every step, restore a copy from its snapshot and check that the
    // copy emits nothing on restore and then behaves exactly like the original.
    let mut r = Run::start(cfg());
    let mut seen = std::collections::BTreeSet::new();
    let mut next = Some(Event::Tick {
        gates: Gates::default(),
    });
    let mut booted = false;
    while let Some(ev) = next.take() {
        let snap = r.m.snapshot();
        let mut copy = Machine::restore(snap.clone());
        assert_eq!(copy.snapshot(), snap, "restore changed data");
        seen.insert(r.m.state().name());
        let input = Input {
            now: r.now,
            jitter: 7,
            event: ev.clone(),
        };
        let a = r.m.handle(&input);
        let b = copy.handle(&input);
        assert_eq!(a, b, "restored copy diverged");
        r.steps.push(a.clone());
        next = a.effects.iter().find_map(answer::success);
        if next.is_none() && a.to == StateName::Rebooting && !booted {
            booted = true;
            next = Some(Event::Started {
                boot_id: "boot-b".into(),
                config: cfg(),
            });
        }
    }
    assert_eq!(seen.len(), StateName::ALL.len(), "visited {seen:?}");
}

#[test]
fn an_active_cooldown_stops_the_pass_before_queueing() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::Locking);
    assert_eq!(s.to, StateName::Locking, "happy path still queues");
    let mut r = Run::start(cfg());
    r.tick();
    for _ in 0..4 {
        let s = r.steps.last().cloned().expect("step");
        let ev = s.effects.iter().find_map(answer::success).expect("answer");
        r.feed(ev);
    }
    let id = r.pending();
    let s = r.feed(Event::CooldownRead {
        id,
        status: CooldownStatus::Active {
            until: T0 + 900_000,
            by: "node-2".into(),
        },
    });
    assert_eq!((s.from, s.to), (StateName::HealthPre, StateName::Idle));
    assert_eq!(s.outcome, Some(Outcome::CooldownActive));
    assert_eq!(s.exit, Some(Exit::Ok), "cooldown_active exits 0 (Go)");
    assert!(
        matches!(
            s.effects.as_slice(),
            [Effect::AwaitClusterChange { .. }, Effect::ScheduleTick { at }] if *at == T0 + 900_000
        ),
        "woken by the cooldown's deletion or its end: {:?}",
        s.effects
    );
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::JoinQueue { .. }))
    );
}

/// Walks the happy path to the final window check in `Rebooting` (after the pre-reboot hooks),
/// letting `hooks_ms` pass while the hooks run.
fn at_final_window_check(hooks_ms: Millis) -> Run {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::Rebooting);
    assert_eq!(names(&s), ["MoveSlotToRebootLease"]);
    let s = r.feed(answer::success(&s.effects[0]).expect("lease"));
    assert_eq!(names(&s), ["RunHooks"]);
    r.now += hooks_ms;
    let s = r.feed(answer::success(&s.effects[0]).expect("hooks"));
    assert_eq!((s.from, s.to), (StateName::Rebooting, StateName::Rebooting));
    assert_eq!(
        s.effects,
        vec![Effect::EvaluateWindow { id: r.pending() }],
        "the hooks are followed by a window check, not by the command"
    );
    assert!(s.reason.contains("window once more"), "{}", s.reason);
    r
}

fn executed_reboots(r: &Run) -> usize {
    r.steps
        .iter()
        .flat_map(|s| &s.effects)
        .filter(|e| matches!(e, Effect::ExecuteReboot { .. }))
        .count()
}

#[test]
fn window_closing_during_the_hooks_aborts_the_reboot() {
    // A five-minute drain in the hooks; the window closed meanwhile.
    let mut r = at_final_window_check(300_000);
    let next_open = r.now + 20 * 3_600_000;
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Closed {
            outcome: Outcome::WindowOutsideAllow,
            reason: "outside configured allow windows".into(),
            next_open: Some(next_open),
        },
    });
    assert_eq!((s.from, s.to), (StateName::Rebooting, StateName::Idle));
    assert_eq!(executed_reboots(&r), 0, "no reboot outside the window");
    // Marker first, then the slot, then the next check at the window's opening.
    assert_eq!(
        s.effects,
        vec![
            Effect::ClearInProgress,
            Effect::ReleaseSlot,
            Effect::ScheduleTick { at: next_open }
        ]
    );
    assert_eq!(s.outcome, Some(Outcome::WindowOutsideAllow));
    assert_eq!(s.exit, Some(Outcome::WindowOutsideAllow.exit()));
    assert!(
        s.reason
            .contains("maintenance window closed before the reboot command (outside configured allow windows); reboot aborted"),
        "{}",
        s.reason
    );
    assert_eq!(r.m.core().rebooted_on, None, "the command never ran");
    // The next pass starts from scratch and may reboot (on the same boot id) once it reopens.
    r.now = next_open;
    let s = r.tick();
    assert_eq!(s.to, StateName::Detecting);
    r.happy_until(s, StateName::Idle);
    assert_eq!(executed_reboots(&r), 1);
}

#[test]
fn deny_window_or_clock_step_before_the_command_aborts_with_its_outcome() {
    // A deny window began (or the clock stepped back before the opening) during the hooks.
    let mut r = at_final_window_check(60_000);
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Closed {
            outcome: Outcome::WindowDenied,
            reason: "blocked by deny window \"* 04:00-05:00\"".into(),
            next_open: None,
        },
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::WindowDenied));
    assert_eq!(
        names(&s),
        ["ClearInProgress", "ReleaseSlot", "ScheduleTick"]
    );
    // No opening known: the next check after one interval.
    assert_eq!(s.effects[2], Effect::ScheduleTick { at: r.now + 60_000 });
    assert_eq!(executed_reboots(&r), 0);
}

#[test]
fn window_still_open_before_the_command_executes_the_reboot() {
    let mut r = at_final_window_check(300_000);
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Open {
            closes_at: Some(r.now + 1_000),
            closes_by: Some(Outcome::WindowOutsideAllow),
        },
    });
    assert_eq!(s.to, StateName::Rebooting);
    assert_eq!(
        s.effects,
        vec![Effect::ExecuteReboot {
            id: r.pending(),
            argv: vec!["/bin/reboot-test".into()],
            dry_run: false,
        }]
    );
    assert!(s.reason.contains("window still open"), "{}", s.reason);
    assert_eq!(r.m.core().rebooted_on.as_deref(), Some("boot-a"));
    let State::Rebooting { reboot, .. } = r.m.state() else {
        panic!("not rebooting");
    };
    assert_eq!(reboot.issued_at, Some(r.now), "issued when the command is");
    // The command returns; then we wait for the shutdown and never release.
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.to, StateName::Rebooting);
    assert_eq!(names(&s), ["ScheduleTick"]);
}

#[test]
fn kill_switch_during_the_final_window_check_aborts() {
    let mut r = at_final_window_check(1_000);
    let id = r.pending();
    let s = r.feed(Event::GatesObserved {
        id: None,
        gates: Gates {
            kill_switch: true,
            pause: None,
            unknown: None,
        },
    });
    assert_eq!((s.from, s.to), (StateName::Rebooting, StateName::Idle));
    assert_eq!(s.outcome, Some(Outcome::KillSwitchActive));
    assert_eq!(
        names(&s),
        ["ClearInProgress", "ReleaseSlot", "ScheduleTick"]
    );
    // The window's answer arrives late: stale, nothing happens.
    let s = r.feed(answer::success(&Effect::EvaluateWindow { id }).expect("window"));
    assert_eq!((s.from, s.to), (StateName::Idle, StateName::Idle));
    assert!(s.effects.is_empty());
    assert_eq!(executed_reboots(&r), 0);
}

#[test]
fn final_window_check_fails_closed() {
    // Timed out: abort.
    let mut r = at_final_window_check(1_000);
    let s = r.feed(Event::EffectTimedOut { id: r.pending() });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(
        names(&s),
        ["ClearInProgress", "ReleaseSlot", "ScheduleTick"]
    );
    assert_eq!(s.exit, Some(Exit::Runtime));
    // A stale answer is ignored; the slot is lost; a restart on the same boot: all abort or wait.
    let mut r = at_final_window_check(1_000);
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id: id + 7,
        verdict: WindowVerdict::Open {
            closes_at: None,
            closes_by: None,
        },
    });
    assert_eq!(s.to, StateName::Rebooting);
    assert!(s.effects.is_empty(), "stale answers are ignored");
    let s = r.feed(Event::SlotLost {
        detail: SlotLoss::new(SlotLossKind::RebootLeaseExpired, "lease expired"),
    });
    assert_eq!(s.outcome, Some(Outcome::LockUnavailable));
    assert_eq!(
        names(&s),
        ["ClearInProgress", "ReleaseSlot", "ScheduleTick"]
    );
    let mut r = at_final_window_check(1_000);
    let s = r.feed(Event::Started {
        boot_id: "boot-a".into(),
        config: cfg(),
    });
    assert_eq!(s.to, StateName::Idle);
    assert!(
        s.reason.contains("before the reboot command ran"),
        "{}",
        s.reason
    );
    assert_eq!(executed_reboots(&r), 0);
}

#[test]
fn dry_run_reload_during_the_final_window_check_does_not_reboot() {
    let mut r = at_final_window_check(1_000);
    let id = r.pending();
    r.feed(Event::ConfigReloaded {
        config: FsmConfig {
            dry_run: true,
            ..cfg()
        },
    });
    let s = r.feed(answer::success(&Effect::EvaluateWindow { id }).expect("window"));
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(
        names(&s),
        ["ClearInProgress", "ReleaseSlot", "ScheduleTick"]
    );
    assert_eq!(executed_reboots(&r), 0);
}

/// Feeds `verdict` as the answer to the pending `ReadClusterHealth`.
fn policy(r: &mut Run, verdict: PolicyVerdict) -> Step {
    let id = r.pending();
    r.feed(Event::ClusterHealthEvaluated { id, verdict })
}

fn held_back() -> PolicyVerdict {
    PolicyVerdict::HeldBack {
        reasons: vec!["node-2 is rebooting and holds a slot".into()],
    }
}

#[test]
fn planned_downtime_before_the_lock_queues_instead_of_blocking() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::HealthPre);
    assert_eq!(names(&s), ["ReadClusterHealth"]);
    let s = policy(&mut r, held_back());
    assert_eq!(s.to, StateName::HealthPre);
    assert_eq!(names(&s), ["RunHealthScript"]);
    let s = r.happy_until(s, StateName::Locking);
    assert_eq!(
        s.to,
        StateName::Locking,
        "joins the queue behind the holder"
    );
    assert!(names(&s).contains(&"JoinQueue"));
}

#[test]
fn held_back_under_the_slot_keeps_it_and_waits_for_a_change() {
    let mut r = Run::start(cfg());
    let s = r.walk_to_policy_under_the_slot();
    assert_eq!(names(&s), ["ReadClusterHealth"]);
    let s = policy(&mut r, held_back());
    assert_eq!(s.to, StateName::HealthPost, "the slot is kept");
    assert!(
        matches!(s.effects.as_slice(), [Effect::AwaitClusterChange { .. }, Effect::ScheduleTick { at }] if *at == r.now + cfg().check_interval_ms),
        "{:?}",
        s.effects
    );
    let wait = r.pending();
    // A stale change is ignored; the pending one re-reads the cluster.
    let s = r.feed(Event::ClusterChanged { id: wait + 99 });
    assert!(s.effects.is_empty());
    let s = r.feed(Event::ClusterChanged { id: wait });
    assert_eq!(names(&s), ["ReadClusterHealth"]);
    // The holder recovered: the policy passes and the checks go on under the same slot.
    let s = policy(&mut r, PolicyVerdict::Pass);
    assert_eq!(names(&s), ["ReadCooldown"]);
    let s = r.happy_until(s, StateName::Rebooting);
    assert_eq!(s.to, StateName::Rebooting);
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ReleaseSlot | Effect::LeaveQueue)),
        "never gave the slot back while waiting"
    );
}

/// Issue #19: under the slot the cooldown is read before the post-lock health script, so a
/// queued node that gets the slot during another node's cooldown gives it back without
/// running the script; a clear cooldown is read once more right before the reboot.
#[test]
fn under_the_slot_the_cooldown_is_read_before_the_health_script() {
    let mut r = Run::start(cfg());
    r.walk_to_policy_under_the_slot();
    let s = policy(&mut r, PolicyVerdict::Pass);
    assert_eq!(names(&s), ["ReadCooldown"]);
    let until = r.now + 600_000;
    let s = r.feed(Event::CooldownRead {
        id: r.pending(),
        status: CooldownStatus::Active {
            until,
            by: "node-2".into(),
        },
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::CooldownActive));
    assert_eq!(
        names(&s),
        ["AwaitClusterChange", "ReleaseSlot", "ScheduleTick"]
    );
    assert!(
        !r.steps.iter().flat_map(|s| &s.effects).any(|e| matches!(
            e,
            Effect::RunHealthScript {
                phase: Phase::PostLock,
                ..
            }
        )),
        "the post-lock script ran although the cooldown gave the slot back"
    );
    // A clear cooldown: the script, then the final read in the Cooldown state.
    let mut r = Run::start(cfg());
    let s = r.tick();
    let s = r.happy_until(s, StateName::Rebooting);
    assert_eq!(s.to, StateName::Rebooting);
    let order: Vec<&str> = r
        .steps
        .iter()
        .flat_map(|s| &s.effects)
        .filter_map(|e| match e {
            Effect::ReadCooldown { .. } => Some("cooldown"),
            Effect::RunHealthScript {
                phase: Phase::PostLock,
                ..
            } => Some("script"),
            _ => None,
        })
        .collect();
    // Before queueing, under the slot before the script, and right before the reboot.
    assert_eq!(order, ["cooldown", "cooldown", "script", "cooldown"]);
}

#[test]
fn a_window_closing_while_held_back_gives_the_slot_back() {
    let mut r = Run::start(cfg());
    r.tick();
    let id = r.pending();
    r.feed(Event::DetectorsEvaluated {
        id,
        result: DetectorResult::Required {
            by: vec!["file:/run/reboot-required".into()],
        },
    });
    let id = r.pending();
    let s = r.feed(Event::WindowEvaluated {
        id,
        verdict: WindowVerdict::Open {
            closes_at: Some(T0 + 30_000),
            closes_by: Some(Outcome::WindowDenied),
        },
    });
    let mut s = s;
    for _ in 0..20 {
        if s.from == StateName::HealthPost && names(&s) == ["ReadClusterHealth"] {
            break;
        }
        let ev = s.effects.iter().find_map(answer::success).expect("answer");
        s = r.feed(ev);
    }
    let s = policy(&mut r, held_back());
    assert!(
        matches!(s.effects.as_slice(), [Effect::AwaitClusterChange { .. }, Effect::ScheduleTick { at }] if *at == T0 + 30_000),
        "the safety-net timer is the window's closing: {:?}",
        s.effects
    );
    r.now = T0 + 30_000;
    let s = r.tick();
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::WindowDenied));
    assert!(names(&s).contains(&"ReleaseSlot"));
}

#[test]
fn a_blocked_pass_is_woken_by_the_cluster_watch() {
    let mut r = Run::start(cfg());
    let mut s = r.tick();
    while names(&s) != ["ReadClusterHealth"] {
        let ev = s.effects.iter().find_map(answer::success).expect("answer");
        s = r.feed(ev);
    }
    let s = policy(
        &mut r,
        PolicyVerdict::Blocked {
            reasons: vec!["peer node-3 is unhealthy".into()],
        },
    );
    assert_eq!(s.to, StateName::Idle);
    let Some(Effect::AwaitClusterChange { id }) = s.effects.first().cloned() else {
        panic!("no cluster wait: {:?}", s.effects);
    };
    assert_eq!(names(&s), ["AwaitClusterChange", "ScheduleTick"]);
    // An answer to an older wait does nothing; the current one starts the pass at once.
    let s = r.feed(Event::ClusterChanged { id: id - 1 });
    assert_eq!(s.to, StateName::Idle);
    let s = r.feed(Event::ClusterChanged { id });
    assert_eq!(s.to, StateName::Detecting);
}

#[test]
fn lifting_the_pause_starts_a_pass_at_once() {
    let mut r = Run::start(cfg());
    let paused = Gates {
        kill_switch: false,
        pause: Some("incident".into()),
        unknown: None,
    };
    let s = r.feed(Event::Tick { gates: paused });
    assert_eq!(s.outcome, Some(Outcome::KillSwitchActive));
    let s = r.feed(Event::GatesObserved {
        id: None,
        gates: Gates::default(),
    });
    assert_eq!(s.to, StateName::Detecting);
}

#[test]
fn a_lost_journal_on_the_same_boot_never_reboots_again() {
    // The daemon starts with a fresh journal while its slot is on the reboot lease (found by
    // reconciliation). The command may have run on this boot: wait for the shutdown, then the
    // failed-reboot path, and never run the reboot command on this boot.
    let mut r = Run::start(cfg());
    let s = r.feed(Event::UnfinishedRebootFound {
        from_boot: Some("boot-a".into()),
        since: Some(T0 - 60_000),
        rebooted: false,
    });
    assert_eq!(s.to, StateName::Rebooting);
    assert_eq!(names(&s), ["ScheduleTick"]);
    r.now = T0 + cfg().reboot_grace_ms;
    let s = r.tick();
    assert_eq!(s.to, StateName::Recovering);
    let s = r.happy_until(s, StateName::Idle);
    assert_eq!(s.to, StateName::Idle);
    assert!(names(&s).contains(&"CompleteRecovery"), "{:?}", names(&s));
    // Later passes find the update still required and refuse to reboot on this boot.
    for _ in 0..3 {
        r.now += 3_600_000;
        let s = r.tick();
        r.happy_until(s, StateName::Idle);
    }
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ExecuteReboot { .. } | Effect::JoinQueue { .. })),
        "no second reboot, not even a new slot, on the same boot"
    );
}

#[test]
fn a_lost_journal_after_the_reboot_resumes_recovery() {
    let mut r = Run::start(cfg());
    let s = r.feed(Event::UnfinishedRebootFound {
        from_boot: Some("boot-old".into()),
        since: Some(T0 - 600_000),
        rebooted: false,
    });
    assert_eq!(s.to, StateName::Recovering);
    assert_eq!(names(&s), ["ReattachRebootLease"]);
    let s = r.happy_until(s, StateName::Idle);
    assert!(names(&s).contains(&"CompleteRecovery"));
    assert!(
        !r.steps
            .iter()
            .flat_map(|s| &s.effects)
            .any(|e| matches!(e, Effect::ReleaseSlot | Effect::LeaveQueue)),
        "the slot is released by the recovery, after its health check"
    );
}

#[test]
fn every_pending_request_has_a_deadline_and_a_silent_adapter_times_out() {
    let config = FsmConfig {
        budgets: super::deadline::Budgets {
            detectors_ms: 11_000,
            ..Default::default()
        },
        ..cfg()
    };
    let mut r = Run::start(config);
    r.tick();
    let id = r.pending();
    let d =
        r.m.deadline()
            .expect("the detectors request has a deadline");
    assert_eq!((d.id, d.deadline), (id, T0 + 11_000));
    // The adapter never answers (a stuck or panicked task): the driver feeds the timeout.
    r.now = d.deadline;
    let s = r.feed(Event::EffectTimedOut { id: d.id });
    assert_eq!((s.from, s.to), (StateName::Detecting, StateName::Idle));
    assert_eq!(s.exit, Some(Exit::DetectorError));
    assert!(s.reason.starts_with("detectors timed out"), "{}", s.reason);
    assert!(names(&s).contains(&"ScheduleTick"), "and it keeps running");
    assert_eq!(r.m.deadline(), None, "nothing outstanding in Idle");
}

#[test]
fn an_answer_clears_the_deadline_and_waits_that_may_be_long_have_none() {
    let mut r = Run::start(cfg());
    let s = r.tick();
    // Detectors answered → the window request gets its own (new) deadline.
    let s = r.happy_until(s, StateName::WindowCheck);
    let w = r.m.deadline().expect("window deadline");
    assert_eq!(w.id, r.pending());
    let s = r.happy_until(s, StateName::Locking);
    assert_eq!(s.to, StateName::Locking);
    assert_eq!(
        r.m.deadline(),
        None,
        "waiting for a slot may rightly take long"
    );
    // A stale timeout (an older request) changes nothing.
    let s = r.feed(Event::EffectTimedOut { id: w.id });
    assert_eq!(s.to, StateName::Locking);
}

/// Issue #12: policy reasons are typed; journals written before hold plain strings, which
/// still decode (as unclassified), and typed ones round-trip.
#[test]
fn block_reasons_are_typed_and_old_journals_still_decode() {
    let old: PolicyVerdict =
        serde_json::from_str(r#"{"verdict":"blocked","reasons":["reboot in progress on n2"]}"#)
            .expect("legacy verdict");
    assert_eq!(
        old,
        PolicyVerdict::Blocked {
            reasons: vec![BlockReason::new(
                BlockKind::Other,
                "reboot in progress on n2"
            )]
        }
    );
    let typed = PolicyVerdict::HeldBack {
        reasons: vec![BlockReason::new(
            BlockKind::PlannedDowntime,
            "n2 is rebooting and holds a slot",
        )],
    };
    let json = serde_json::to_string(&typed).expect("encode");
    assert!(json.contains(r#""kind":"planned_downtime""#), "{json}");
    assert_eq!(
        serde_json::from_str::<PolicyVerdict>(&json).expect("decode"),
        typed
    );
}

/// Issue #12: why a slot was lost is typed like the policy reasons; a journal written before
/// holds the adapter's words only and still replays (as `Other`).
#[test]
fn slot_losses_are_typed_and_old_journals_still_decode() {
    let old: Event =
        serde_json::from_str(r#"{"type":"slot_lost","detail":"reboot lease 7f expired"}"#)
            .expect("legacy SlotLost");
    assert_eq!(
        old,
        Event::SlotLost {
            detail: SlotLoss::new(SlotLossKind::Other, "reboot lease 7f expired")
        }
    );
    let typed = Event::SlotLost {
        detail: SlotLoss::new(SlotLossKind::RebootLeaseExpired, "reboot lease 7f expired"),
    };
    let json = serde_json::to_string(&typed).expect("encode");
    assert!(json.contains(r#""kind":"reboot_lease_expired""#), "{json}");
    assert_eq!(serde_json::from_str::<Event>(&json).expect("decode"), typed);
}

/// Issue #14: a pause that cannot be read (etcd down) is an etcd problem, not an operator's
/// brake: the pass goes on (the slot needs etcd anyway), and under the slot no reboot starts —
/// the pass ends as `lock_unavailable` (exit 4), never `kill_switch_active` (exit 5).
#[test]
fn an_unreadable_pause_is_an_etcd_problem_not_a_kill_switch() {
    let unknown = Gates {
        kill_switch: false,
        pause: None,
        unknown: Some("cannot read the pause key: connection refused".into()),
    };
    let mut r = Run::start(cfg());
    let s = r.feed(Event::Tick {
        gates: unknown.clone(),
    });
    assert_eq!((s.from, s.to), (StateName::Idle, StateName::Detecting));
    let s = r.happy_until(s, StateName::HealthPost);
    let _ = s;
    let id = r.pending();
    let s = r.feed(Event::GatesObserved {
        id: Some(id),
        gates: unknown,
    });
    assert_eq!(s.to, StateName::Idle);
    assert_eq!(s.outcome, Some(Outcome::LockUnavailable));
    assert_eq!(s.exit, Some(Exit::LockUnavailable));
    assert!(s.reason.contains("pause state unknown"), "{}", s.reason);
    assert_eq!(names(&s), ["ReleaseSlot", "ScheduleTick"]);
}
