//! Keeps `fsm-spec/machine.yaml` and the machine equal: every reachable position of every state
//! receives every kind of event (each variant/guard), and the observed target state, effects and
//! outcome must equal the first matching spec row. Rows that never match are reported too, so
//! the spec cannot describe behaviour the code does not have.
//!
//! `FSM_SPEC_PRINT=1 cargo test --test fsm_spec -- --nocapture` prints the observed table in
//! spec syntax (for review when the machine changes on purpose).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::BTreeMap;

use clusterrebootd::fsm::answer;
use clusterrebootd::fsm::*;
use clusterrebootd::fsm_spec::Spec;

const T0: Millis = 1_800_000_000_000;
const DAY: Millis = 86_400_000;

/// A machine at a known position, with the clock and the last step.
struct At {
    m: Machine,
    now: Millis,
    last: Step,
}

impl At {
    fn start(config: FsmConfig) -> At {
        let mut m = Machine::new();
        let last = m.handle(&Input {
            now: T0,
            jitter: 0,
            event: Event::Started {
                boot_id: "boot-a".into(),
                config,
            },
        });
        At { m, now: T0, last }
    }
    fn feed(mut self, event: Event) -> At {
        self.last = self.m.handle(&Input {
            now: self.now,
            jitter: 0,
            event,
        });
        self
    }
    fn ok(self) -> At {
        let ev = self
            .last
            .effects
            .iter()
            .find_map(answer::success)
            .expect("an answerable effect");
        self.feed(ev)
    }
    fn tick(self) -> At {
        self.feed(Event::Tick {
            gates: Gates::default(),
        })
    }
    fn pending(&self) -> EffectId {
        // Idle has no pending request of its own; its cluster wait stands in.
        self.m
            .state()
            .pending()
            .or(self.m.core().cluster_wait)
            .unwrap_or(0)
    }
}

fn base() -> FsmConfig {
    FsmConfig {
        reboot_command: vec!["/bin/true".into()],
        min_reboot_interval_sec: 300,
        ..FsmConfig::default()
    }
}

/// Every position the table distinguishes: (state, position label, how to get there).
fn positions() -> Vec<(&'static str, &'static str, At)> {
    let dry = FsmConfig {
        dry_run: true,
        ..base()
    };
    let once = FsmConfig {
        once: true,
        ..base()
    };
    let deadline = FsmConfig {
        lock_wait_timeout_ms: Some(60_000),
        ..base()
    };
    let to_locking = |c: FsmConfig| At::start(c).tick().ok().ok().ok().ok().ok();
    let window_closes = {
        let a = At::start(base()).tick().ok();
        let id = a.pending();
        a.feed(Event::WindowEvaluated {
            id,
            verdict: WindowVerdict::Open {
                closes_at: Some(T0 + 60_000),
                closes_by: Some(Outcome::WindowDenied),
            },
        })
        .ok()
        .ok()
        .ok()
    };
    let to_cooldown = |c: FsmConfig| to_locking(c).ok().ok().ok().ok().ok().ok().ok();
    let await_shutdown = || to_cooldown(base()).ok().ok().ok().ok().ok();
    let recovering = || {
        await_shutdown().feed(Event::Started {
            boot_id: "boot-b".into(),
            config: base(),
        })
    };
    let retry_reattach = {
        let a = recovering();
        let id = a.pending();
        a.feed(Event::RebootLeaseReattached {
            id,
            result: ReattachResult::Failed {
                detail: "etcd down".into(),
            },
        })
    };
    let retry_health = {
        let a = recovering().ok().ok();
        let id = a.pending();
        a.feed(Event::HealthChecked {
            id,
            result: HealthResult::Error {
                detail: "timeout".into(),
            },
        })
    };
    let failed_reboot = {
        let mut a = await_shutdown();
        a.now += DAY;
        a.tick()
    };
    let after_failed_reboot = {
        let mut a = await_shutdown();
        a.now += DAY;
        a.tick().ok().ok().tick()
    };
    let blocked = |a: At| {
        let id = a.pending();
        a.feed(Event::ClusterHealthEvaluated {
            id,
            verdict: PolicyVerdict::Blocked {
                reasons: vec!["peer n2 is unhealthy".into()],
            },
        })
    };
    let held_back = |a: At| {
        let id = a.pending();
        a.feed(Event::ClusterHealthEvaluated {
            id,
            verdict: PolicyVerdict::HeldBack {
                reasons: vec!["n2 is rebooting and holds a slot".into()],
            },
        })
    };
    let paused = At::start(base()).feed(Event::Tick {
        gates: Gates {
            kill_switch: false,
            pause: Some("maintenance".into()),
            unknown: None,
        },
    });
    vec![
        ("Idle", "-", At::start(base())),
        (
            "Idle",
            "cluster_wait",
            blocked(At::start(base()).tick().ok().ok()),
        ),
        ("Idle", "gates_active", paused),
        ("Detecting", "after_failed_reboot", after_failed_reboot),
        ("Detecting", "-", At::start(base()).tick()),
        ("Detecting", "once", At::start(once.clone()).tick()),
        ("Detecting", "monitor", {
            let a = At::start(once.clone()).tick();
            let id = a.pending();
            a.feed(Event::DetectorsEvaluated {
                id,
                result: DetectorResult::NotRequired,
            })
        }),
        ("WindowCheck", "-", At::start(base()).tick().ok()),
        ("HealthPre", "policy", At::start(base()).tick().ok().ok()),
        (
            "HealthPre",
            "cooldown",
            At::start(base()).tick().ok().ok().ok().ok(),
        ),
        (
            "HealthPre",
            "script",
            At::start(base()).tick().ok().ok().ok(),
        ),
        ("Locking", "-", to_locking(base())),
        ("Locking", "deadline", to_locking(deadline)),
        ("Locking", "window_closes", window_closes),
        ("HealthPost", "gates", to_locking(base()).ok()),
        ("HealthPost", "window", to_locking(base()).ok().ok()),
        ("HealthPost", "detectors", to_locking(base()).ok().ok().ok()),
        (
            "HealthPost",
            "policy",
            to_locking(base()).ok().ok().ok().ok(),
        ),
        (
            "HealthPost",
            "wait_holders",
            held_back(to_locking(base()).ok().ok().ok().ok()),
        ),
        (
            "HealthPost",
            "cooldown",
            to_locking(base()).ok().ok().ok().ok().ok(),
        ),
        (
            "HealthPost",
            "script",
            to_locking(base()).ok().ok().ok().ok().ok().ok(),
        ),
        ("Cooldown", "-", to_cooldown(base())),
        ("Cooldown", "once", to_cooldown(once)),
        ("Cooldown", "dry_run", to_cooldown(dry.clone())),
        ("Rebooting", "lease", to_cooldown(base()).ok()),
        ("Rebooting", "hooks", to_cooldown(base()).ok().ok()),
        ("Rebooting", "window", to_cooldown(base()).ok().ok().ok()),
        (
            "Rebooting",
            "command",
            to_cooldown(base()).ok().ok().ok().ok(),
        ),
        (
            "Rebooting",
            "hooks_dry_reload",
            to_cooldown(base()).ok().ok().feed(Event::ConfigReloaded {
                config: FsmConfig {
                    dry_run: true,
                    ..base()
                },
            }),
        ),
        (
            "Rebooting",
            "window_dry_reload",
            to_cooldown(base())
                .ok()
                .ok()
                .ok()
                .feed(Event::ConfigReloaded {
                    config: FsmConfig {
                        dry_run: true,
                        ..base()
                    },
                }),
        ),
        ("Rebooting", "await_shutdown", await_shutdown()),
        ("Rebooting", "dry_run", to_cooldown(dry).ok()),
        ("Recovering", "reattach", recovering()),
        ("Recovering", "hooks", recovering().ok()),
        ("Recovering", "health", recovering().ok().ok()),
        ("Recovering", "retry_health", retry_health),
        ("Recovering", "retry_reattach", retry_reattach),
        ("Recovering", "failed_reboot", failed_reboot),
    ]
}

/// Every event variant with every guard the table distinguishes, answering request `p`.
fn samples(p: EffectId, boot: &str) -> Vec<(&'static str, &'static str, Millis, Event)> {
    let stale = p + 1000;
    let gates = |kill_switch| Gates {
        kill_switch,
        pause: None,
        unknown: None,
    };
    let failed = || StepResult::Failed {
        detail: "boom".into(),
    };
    vec![
        (
            "Started",
            "new_boot",
            0,
            Event::Started {
                boot_id: "boot-z".into(),
                config: base(),
            },
        ),
        (
            "Started",
            "same_boot",
            0,
            Event::Started {
                boot_id: boot.into(),
                config: base(),
            },
        ),
        (
            "ConfigReloaded",
            "*",
            0,
            Event::ConfigReloaded { config: base() },
        ),
        (
            "Tick",
            "clear",
            0,
            Event::Tick {
                gates: gates(false),
            },
        ),
        (
            "Tick",
            "gates_active",
            0,
            Event::Tick { gates: gates(true) },
        ),
        (
            "Tick",
            "late",
            30 * DAY,
            Event::Tick {
                gates: gates(false),
            },
        ),
        (
            "GatesObserved",
            "answer_clear",
            0,
            Event::GatesObserved {
                id: Some(p),
                gates: gates(false),
            },
        ),
        (
            "GatesObserved",
            "answer_active",
            0,
            Event::GatesObserved {
                id: Some(p),
                gates: gates(true),
            },
        ),
        (
            "GatesObserved",
            "unsolicited_clear",
            0,
            Event::GatesObserved {
                id: None,
                gates: gates(false),
            },
        ),
        (
            "GatesObserved",
            "unsolicited_active",
            0,
            Event::GatesObserved {
                id: None,
                gates: gates(true),
            },
        ),
        (
            "DetectorsEvaluated",
            "required",
            0,
            Event::DetectorsEvaluated {
                id: p,
                result: DetectorResult::Required {
                    by: vec!["d".into()],
                },
            },
        ),
        (
            "DetectorsEvaluated",
            "not_required",
            0,
            Event::DetectorsEvaluated {
                id: p,
                result: DetectorResult::NotRequired,
            },
        ),
        (
            "DetectorsEvaluated",
            "error",
            0,
            Event::DetectorsEvaluated {
                id: p,
                result: DetectorResult::Error { detail: "x".into() },
            },
        ),
        (
            "DetectorsEvaluated",
            "stale",
            0,
            Event::DetectorsEvaluated {
                id: stale,
                result: DetectorResult::NotRequired,
            },
        ),
        (
            "WindowEvaluated",
            "open",
            0,
            Event::WindowEvaluated {
                id: p,
                verdict: WindowVerdict::Open {
                    closes_at: None,
                    closes_by: None,
                },
            },
        ),
        (
            "WindowEvaluated",
            "closed",
            0,
            Event::WindowEvaluated {
                id: p,
                verdict: WindowVerdict::Closed {
                    outcome: Outcome::WindowOutsideAllow,
                    reason: "outside configured allow windows".into(),
                    next_open: Some(T0 + DAY),
                },
            },
        ),
        (
            "WindowEvaluated",
            "stale",
            0,
            Event::WindowEvaluated {
                id: stale,
                verdict: WindowVerdict::Open {
                    closes_at: None,
                    closes_by: None,
                },
            },
        ),
        (
            "ClusterHealthEvaluated",
            "pass",
            0,
            Event::ClusterHealthEvaluated {
                id: p,
                verdict: PolicyVerdict::Pass,
            },
        ),
        (
            "ClusterHealthEvaluated",
            "blocked",
            0,
            Event::ClusterHealthEvaluated {
                id: p,
                verdict: PolicyVerdict::Blocked {
                    reasons: vec!["n2 unhealthy".into()],
                },
            },
        ),
        (
            "ClusterHealthEvaluated",
            "held_back",
            0,
            Event::ClusterHealthEvaluated {
                id: p,
                verdict: PolicyVerdict::HeldBack {
                    reasons: vec!["n2 is rebooting and holds a slot".into()],
                },
            },
        ),
        (
            "ClusterHealthEvaluated",
            "error",
            0,
            Event::ClusterHealthEvaluated {
                id: p,
                verdict: PolicyVerdict::Error {
                    detail: "etcd".into(),
                },
            },
        ),
        (
            "ClusterHealthEvaluated",
            "stale",
            0,
            Event::ClusterHealthEvaluated {
                id: stale,
                verdict: PolicyVerdict::Pass,
            },
        ),
        (
            "HealthChecked",
            "passed",
            0,
            Event::HealthChecked {
                id: p,
                result: HealthResult::Passed,
            },
        ),
        (
            "HealthChecked",
            "blocked",
            0,
            Event::HealthChecked {
                id: p,
                result: HealthResult::Blocked {
                    exit_code: 1,
                    first_line: "no".into(),
                },
            },
        ),
        (
            "HealthChecked",
            "error",
            0,
            Event::HealthChecked {
                id: p,
                result: HealthResult::Error {
                    detail: "timeout".into(),
                },
            },
        ),
        (
            "HealthChecked",
            "stale",
            0,
            Event::HealthChecked {
                id: stale,
                result: HealthResult::Passed,
            },
        ),
        (
            "SlotQueued",
            "answer",
            0,
            Event::SlotQueued {
                id: p,
                position: 1,
                holders: vec![],
                pool: None,
            },
        ),
        (
            "SlotQueued",
            "stale",
            0,
            Event::SlotQueued {
                id: stale,
                position: 1,
                holders: vec![],
                pool: None,
            },
        ),
        ("SlotAcquired", "answer", 0, Event::SlotAcquired { id: p }),
        (
            "SlotAcquired",
            "stale",
            0,
            Event::SlotAcquired { id: stale },
        ),
        (
            "SlotUnavailable",
            "answer",
            0,
            Event::SlotUnavailable {
                id: p,
                detail: "etcd".into(),
            },
        ),
        (
            "SlotUnavailable",
            "stale",
            0,
            Event::SlotUnavailable {
                id: stale,
                detail: "etcd".into(),
            },
        ),
        (
            "SlotLost",
            "*",
            0,
            Event::SlotLost {
                detail: SlotLoss::new(SlotLossKind::SessionExpired, "lease expired"),
            },
        ),
        (
            "CooldownRead",
            "clear",
            0,
            Event::CooldownRead {
                id: p,
                status: CooldownStatus::Clear,
            },
        ),
        (
            "CooldownRead",
            "active",
            0,
            Event::CooldownRead {
                id: p,
                status: CooldownStatus::Active {
                    until: T0 + 600_000,
                    by: "n2".into(),
                },
            },
        ),
        (
            "CooldownRead",
            "error",
            0,
            Event::CooldownRead {
                id: p,
                status: CooldownStatus::Error {
                    detail: "etcd".into(),
                },
            },
        ),
        (
            "CooldownRead",
            "stale",
            0,
            Event::CooldownRead {
                id: stale,
                status: CooldownStatus::Clear,
            },
        ),
        (
            "RebootLeaseMoved",
            "ok",
            0,
            Event::RebootLeaseMoved {
                id: p,
                result: StepResult::Ok,
            },
        ),
        (
            "RebootLeaseMoved",
            "failed",
            0,
            Event::RebootLeaseMoved {
                id: p,
                result: failed(),
            },
        ),
        (
            "RebootLeaseMoved",
            "stale",
            0,
            Event::RebootLeaseMoved {
                id: stale,
                result: StepResult::Ok,
            },
        ),
        (
            "HooksRan",
            "ok",
            0,
            Event::HooksRan {
                id: p,
                result: StepResult::Ok,
            },
        ),
        (
            "HooksRan",
            "failed",
            0,
            Event::HooksRan {
                id: p,
                result: failed(),
            },
        ),
        (
            "HooksRan",
            "stale",
            0,
            Event::HooksRan {
                id: stale,
                result: StepResult::Ok,
            },
        ),
        (
            "RebootCommandFinished",
            "ok",
            0,
            Event::RebootCommandFinished {
                id: p,
                result: StepResult::Ok,
            },
        ),
        (
            "RebootCommandFinished",
            "failed",
            0,
            Event::RebootCommandFinished {
                id: p,
                result: failed(),
            },
        ),
        (
            "RebootCommandFinished",
            "stale",
            0,
            Event::RebootCommandFinished {
                id: stale,
                result: StepResult::Ok,
            },
        ),
        (
            "RebootLeaseReattached",
            "attached",
            0,
            Event::RebootLeaseReattached {
                id: p,
                result: ReattachResult::Attached,
            },
        ),
        (
            "RebootLeaseReattached",
            "expired",
            0,
            Event::RebootLeaseReattached {
                id: p,
                result: ReattachResult::Expired,
            },
        ),
        (
            "RebootLeaseReattached",
            "failed",
            0,
            Event::RebootLeaseReattached {
                id: p,
                result: ReattachResult::Failed {
                    detail: "etcd".into(),
                },
            },
        ),
        (
            "RebootLeaseReattached",
            "stale",
            0,
            Event::RebootLeaseReattached {
                id: stale,
                result: ReattachResult::Attached,
            },
        ),
        (
            "EffectTimedOut",
            "answer",
            0,
            Event::EffectTimedOut { id: p },
        ),
        (
            "EffectTimedOut",
            "stale",
            0,
            Event::EffectTimedOut { id: stale },
        ),
        ("ShutdownRequested", "*", 0, Event::ShutdownRequested),
        (
            "ClusterChanged",
            "answer",
            0,
            Event::ClusterChanged { id: p },
        ),
        (
            "UnfinishedRebootFound",
            "rebooted",
            0,
            Event::UnfinishedRebootFound {
                from_boot: Some(boot.to_string()),
                since: Some(T0 - 60_000),
                rebooted: true,
            },
        ),
        (
            "UnfinishedRebootFound",
            "other_boot",
            0,
            Event::UnfinishedRebootFound {
                from_boot: Some("boot-old".into()),
                since: Some(T0 - 60_000),
                rebooted: false,
            },
        ),
        (
            "UnfinishedRebootFound",
            "same_boot",
            0,
            Event::UnfinishedRebootFound {
                from_boot: Some(boot.to_string()),
                since: Some(T0 - 60_000),
                rebooted: false,
            },
        ),
        (
            "UnfinishedRebootFound",
            "unknown_boot",
            0,
            Event::UnfinishedRebootFound {
                from_boot: None,
                since: None,
                rebooted: false,
            },
        ),
        (
            "ClusterChanged",
            "stale",
            0,
            Event::ClusterChanged { id: stale },
        ),
    ]
}

/// What the table must predict for one (position, sample).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Observed {
    to: String,
    effects: Vec<String>,
    outcome: Option<String>,
}

fn observe() -> Vec<(String, String, String, String, Observed)> {
    let mut out = Vec::new();
    for (state, at, pos) in positions() {
        assert_eq!(
            pos.m.state().name().as_str(),
            state,
            "recipe for {state}.{at}"
        );
        let boot = pos.m.core().boot_id.clone();
        for (event, guard, offset, ev) in samples(pos.pending(), &boot) {
            let mut m = Machine::restore(pos.m.snapshot());
            let step = m.handle(&Input {
                now: pos.now + offset,
                jitter: 0,
                event: ev,
            });
            let obs = Observed {
                to: step.to.as_str().into(),
                effects: step.effects.iter().map(|e| e.name().to_string()).collect(),
                outcome: step.outcome.map(|o| o.as_str().to_string()),
            };
            out.push((state.into(), at.into(), event.into(), guard.into(), obs));
        }
        let _ = pos.last;
    }
    out
}

#[test]
fn code_and_spec_agree_on_every_state_and_event() {
    let observed = observe();
    if std::env::var_os("FSM_SPEC_PRINT").is_some() {
        print_table(&observed);
        return;
    }
    let spec = Spec::load().expect("fsm-spec/machine.yaml parses");
    let mut used = vec![false; spec.transitions.len()];
    let mut problems = Vec::new();
    for (state, at, event, guard, obs) in &observed {
        match spec.lookup(state, at, event, guard) {
            None => problems.push(format!(
                "no row for {state} (at {at}) on {event} [{guard}]; code does: -> {} {:?} outcome {:?}",
                obs.to, obs.effects, obs.outcome
            )),
            Some((i, row)) => {
                used[i] = true;
                let expected = Observed {
                    to: if row.to == "=" { state.clone() } else { row.to.clone() },
                    effects: row.effects.clone(),
                    outcome: row.outcome.clone(),
                };
                if &expected != obs {
                    problems.push(format!(
                        "{state} (at {at}) on {event} [{guard}] (spec row {}):\n    expected: -> {} {:?} outcome {:?}\n    got:      -> {} {:?} outcome {:?}",
                        i + 1, expected.to, expected.effects, expected.outcome, obs.to, obs.effects, obs.outcome
                    ));
                }
            }
        }
    }
    for (i, u) in used.iter().enumerate() {
        if !u {
            problems.push(format!(
                "spec row {} never applies: {:?}",
                i + 1,
                spec.transitions[i]
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagreement(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Prints the observed behaviour as compressed spec rows (review aid, not the spec itself).
fn print_table(observed: &[(String, String, String, String, Observed)]) {
    // (state, event, guard) -> [(at, obs)]
    let mut by_key: BTreeMap<(usize, usize, String), Vec<(String, Observed)>> = BTreeMap::new();
    let state_idx = |s: &str| {
        StateName::ALL
            .iter()
            .position(|n| n.as_str() == s)
            .unwrap_or(99)
    };
    let event_idx = |e: &str| Event::names().iter().position(|n| *n == e).unwrap_or(99);
    let mut names: BTreeMap<(usize, usize), (String, String)> = BTreeMap::new();
    for (state, at, event, guard, obs) in observed {
        let (si, ei) = (state_idx(state), event_idx(event));
        names.insert((si, ei), (state.clone(), event.clone()));
        by_key
            .entry((si, ei, guard.clone()))
            .or_default()
            .push((at.clone(), obs.clone()));
    }
    // Rows per state first.
    type Row1 = (String, Option<Vec<String>>, String, String, Observed);
    let mut rows: Vec<Row1> = Vec::new();
    for ((si, ei, guard), list) in &by_key {
        let (state, event) = &names[&(*si, *ei)];
        let mut groups: Vec<(Observed, Vec<String>)> = Vec::new();
        for (at, obs) in list {
            match groups.iter_mut().find(|(o, _)| o == obs) {
                Some((_, ats)) => ats.push(at.clone()),
                None => groups.push((obs.clone(), vec![at.clone()])),
            }
        }
        if groups.len() == 1 {
            rows.push((
                state.clone(),
                None,
                event.clone(),
                guard.clone(),
                groups[0].0.clone(),
            ));
        } else {
            for (obs, ats) in groups {
                rows.push((state.clone(), Some(ats), event.clone(), guard.clone(), obs));
            }
        }
    }
    // Merge rows that differ only in the guard, then rows that differ only in the source state.
    type R = (
        Vec<String>,
        Option<Vec<String>>,
        String,
        Vec<String>,
        Observed,
    );
    let mut merged: Vec<R> = Vec::new();
    for (state, at, event, guard, obs) in rows {
        match merged
            .iter_mut()
            .find(|r| r.0 == [state.clone()] && r.1 == at && r.2 == event && r.4 == obs)
        {
            Some(r) => r.3.push(guard),
            None => merged.push((vec![state], at, event, vec![guard], obs)),
        }
    }
    let mut merged2: Vec<R> = Vec::new();
    for r in merged {
        match merged2
            .iter_mut()
            .find(|m| m.1.is_none() && r.1.is_none() && m.2 == r.2 && m.3 == r.3 && m.4 == r.4)
        {
            Some(m) => m.0.extend(r.0),
            None => merged2.push(r),
        }
    }
    let list = |v: &[String]| {
        if v.len() == 1 {
            v[0].clone()
        } else {
            format!("[{}]", v.join(", "))
        }
    };
    for (from, at, event, guards, obs) in merged2 {
        let at = at
            .map(|a| format!(", at: {}", list(&a)))
            .unwrap_or_default();
        let outcome = obs
            .outcome
            .map(|o| format!(", outcome: {o}"))
            .unwrap_or_default();
        println!(
            "  - {{from: {}{at}, event: {event}, guard: {}, to: {}, effects: [{}]{outcome}}}",
            list(&from),
            list(&guards),
            obs.to,
            obs.effects.join(", ")
        );
    }
}
