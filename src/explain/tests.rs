//! Golden tests of the explanation, built from hand-made records.

use super::*;
use crate::driver::state_file::SlotInfo;
use crate::exit::Exit;
use crate::fsm::Gates;
use crate::fsm::event::{SlotHolder, StepResult};
use crate::fsm::record::fmt_ts;
use crate::fsm::*;
use serde_json::Value;

/// 2026-11-27T03:00:00Z.
const T0: Millis = 1_795_748_400_000;
const MIN: Millis = 60_000;

fn rec(at: Millis, from: StateName, to: StateName, event: Event, reason: &str) -> Record {
    Record {
        ts: fmt_ts(at),
        boot_id: "boot-a".into(),
        now: at,
        jitter: 0,
        event,
        from,
        to,
        effects: vec![],
        reason: reason.into(),
        outcome: None,
        exit: None,
    }
}

fn ended(mut r: Record, outcome: Option<Outcome>, exit: Exit) -> Record {
    r.outcome = outcome;
    r.exit = Some(exit);
    r
}

fn state(
    st: StateName,
    since: Millis,
    reason: &str,
    outcome: Option<&str>,
    next: Millis,
) -> StateFile {
    StateFile {
        node: "node-1".into(),
        pid: 4242,
        boot_id: "boot-a".into(),
        state: st,
        since: fmt_ts(since),
        reason: reason.into(),
        outcome: outcome.map(str::to_string),
        next_tick_at: Some(fmt_ts(next)),
        slot: SlotInfo::default(),
        updated_at: fmt_ts(since),
        dry_run: false,
    }
}

fn ctx(now: Millis) -> Context {
    Context {
        kill_switch_file: "/etc/clusterrebootd/disable".into(),
        now,
    }
}

/// The usual start of a pass: tick, detectors require a reboot, window open.
fn pass_start(at: Millis) -> Vec<Record> {
    use StateName::*;
    vec![
        rec(
            at,
            Idle,
            Detecting,
            Event::Tick {
                gates: Gates::default(),
            },
            "check started: running detectors",
        ),
        rec(
            at + 1000,
            Detecting,
            WindowCheck,
            Event::DetectorsEvaluated {
                id: 1,
                result: DetectorResult::Required {
                    by: vec!["file:/var/run/reboot-required".into()],
                },
            },
            "reboot required by file:/var/run/reboot-required",
        ),
        rec(
            at + 2000,
            WindowCheck,
            HealthPre,
            Event::WindowEvaluated {
                id: 2,
                verdict: WindowVerdict::Open {
                    closes_at: None,
                    closes_by: None,
                },
            },
            "window open; checking cluster health",
        ),
    ]
}

fn check(name: &str, got: &str, expected: &str) {
    assert!(
        got == expected,
        "{name}\n--- expected\n{expected}\n--- got\n{got}"
    );
}

#[test]
fn health_script_pre_lock_exit_3() {
    use StateName::*;
    let mut records = pass_start(T0);
    records.push(ended(
        rec(
            T0 + 3000,
            HealthPre,
            Idle,
            Event::HealthChecked {
                id: 4,
                result: HealthResult::Blocked { exit_code: 3, first_line: "quorum would break".into() },
            },
            "health script (pre-lock) exited 3: quorum would break; next check 2026-11-27T03:01:03Z",
        ),
        Some(Outcome::HealthBlocked),
        Exit::HealthBlocked,
    ));
    let st = state(
        StateName::Idle,
        T0 + 3000,
        "health script (pre-lock) exited 3: quorum would break; next check 2026-11-27T03:01:03Z",
        Some("health_blocked"),
        T0 + 63_000,
    );
    let now = T0 + 33_000;
    let e = explain(&st, &records, &ctx(now));
    check(
        "health",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T03:00:03Z (30s ago)
last reason: health script (pre-lock) exited 3: quorum would break; next check 2026-11-27T03:01:03Z
blocked by the health script: the health script (pre-lock) exited 3
  phase: pre-lock
  exit code: 3
  first output line: quorum would break
to unblock: fix the health script's check: it says \"quorum would break\" (exit 3); the next check runs it again
next check: 2026-11-27T03:01:03Z (in 30s)
last 4 transitions:
  2026-11-27T03:00:00Z  Idle → Detecting  check started: running detectors
  2026-11-27T03:00:01Z  Detecting → WindowCheck  reboot required by file:/var/run/reboot-required
  2026-11-27T03:00:02Z  WindowCheck → HealthPre  window open; checking cluster health
  2026-11-27T03:00:03Z  HealthPre → Idle  health script (pre-lock) exited 3: quorum would break; next check 2026-11-27T03:01:03Z
",
    );
    let j = render_json(&e);
    assert_eq!(j["daemon_running"], true);
    assert_eq!(j["state"], "Idle");
    assert_eq!(j["since"], "2026-11-27T03:00:03.000Z");
    assert_eq!(j["blocked_by"]["gate"], "health_script");
    assert_eq!(j["blocked_by"]["evidence"]["exit_code"], 3);
    assert_eq!(
        j["blocked_by"]["evidence"]["first_line"],
        "quorum would break"
    );
    assert_eq!(j["blocked_by"]["evidence"]["phase"], "pre-lock");
    assert_eq!(j["next_check_at"], "2026-11-27T03:01:03.000Z");
    assert_eq!(j["transitions"].as_array().map(Vec::len), Some(4));
    assert_eq!(j["transitions"][3]["from"], "HealthPre");
    assert_eq!(j["transitions"][3]["to"], "Idle");
}

#[test]
fn window_closed_names_the_next_opening() {
    use StateName::*;
    let why = "blocked by deny window \"Mon-Fri 06:00-22:00\"";
    let records = vec![
        rec(
            T0,
            Idle,
            Detecting,
            Event::Tick {
                gates: Gates::default(),
            },
            "check started: running detectors",
        ),
        rec(
            T0 + 1000,
            Detecting,
            WindowCheck,
            Event::DetectorsEvaluated {
                id: 1,
                result: DetectorResult::Required {
                    by: vec!["debian".into()],
                },
            },
            "reboot required by debian",
        ),
        ended(
            rec(
                T0 + 2000,
                WindowCheck,
                Idle,
                Event::WindowEvaluated {
                    id: 2,
                    verdict: WindowVerdict::Closed {
                        outcome: Outcome::WindowDenied,
                        reason: why.into(),
                        next_open: Some(T0 + 19 * 60 * MIN),
                    },
                },
                "closed; next opening 2026-11-27T22:00:00Z",
            ),
            Some(Outcome::WindowDenied),
            Exit::Ok,
        ),
    ];
    let st = state(
        StateName::Idle,
        T0 + 2000,
        "closed; next opening 2026-11-27T22:00:00Z",
        Some("window_denied"),
        T0 + 19 * 60 * MIN,
    );
    let now = T0 + 2000 + 12 * MIN;
    let e = explain(&st, &records, &ctx(now));
    check(
        "window",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T03:00:02Z (12m ago)
last reason: closed; next opening 2026-11-27T22:00:00Z
blocked by the maintenance window: maintenance window closed: blocked by deny window \"Mon-Fri 06:00-22:00\"
  outcome: window_denied
  next opening: 2026-11-27T22:00:00Z
to unblock: wait until 2026-11-27T22:00:00Z (18h 47m 58s from now), when the maintenance window opens
next check: 2026-11-27T22:00:00Z (in 18h 47m 58s)
last 3 transitions:
  2026-11-27T03:00:00Z  Idle → Detecting  check started: running detectors
  2026-11-27T03:00:01Z  Detecting → WindowCheck  reboot required by debian
  2026-11-27T03:00:02Z  WindowCheck → Idle  closed; next opening 2026-11-27T22:00:00Z
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "window");
    assert_eq!(
        j["blocked_by"]["evidence"]["next_open"],
        "2026-11-27T22:00:00Z"
    );
    assert_eq!(j["blocked_by"]["evidence"]["outcome"], "window_denied");
}

#[test]
fn window_closed_before_the_reboot_command_is_a_window_block() {
    use StateName::*;
    // The final window check after the pre-reboot hooks found the window closed.
    let why = "maintenance window closed before the reboot command (outside configured allow windows); reboot aborted; next check 2026-11-27T22:00:00Z";
    let mut records = pass_start(T0);
    records.push(rec(
        T0 + 3000,
        Rebooting,
        Rebooting,
        Event::HooksRan {
            id: 15,
            result: StepResult::Ok,
        },
        "pre-reboot hooks done; checking the maintenance window once more before the reboot command",
    ));
    records.push(ended(
        rec(
            T0 + 4000,
            Rebooting,
            Idle,
            Event::WindowEvaluated {
                id: 16,
                verdict: WindowVerdict::Closed {
                    outcome: Outcome::WindowOutsideAllow,
                    reason: "outside configured allow windows".into(),
                    next_open: Some(T0 + 19 * 60 * MIN),
                },
            },
            why,
        ),
        Some(Outcome::WindowOutsideAllow),
        Exit::Ok,
    ));
    let st = state(
        StateName::Idle,
        T0 + 4000,
        why,
        Some("window_outside_allow"),
        T0 + 19 * 60 * MIN,
    );
    let now = T0 + 5000;
    let e = explain(&st, &records, &ctx(now));
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "window");
    assert_eq!(
        j["blocked_by"]["evidence"]["outcome"],
        "window_outside_allow"
    );
    assert_eq!(
        j["blocked_by"]["evidence"]["next_open"],
        "2026-11-27T22:00:00Z"
    );
    assert!(
        render_text(&e, now)
            .contains("Rebooting → Idle  maintenance window closed before the reboot command"),
        "{}",
        render_text(&e, now)
    );
}

#[test]
fn policy_unblock_hint_follows_the_reason() {
    // It used to tell the operator to wait for unhealthy peers whatever the reason, also
    // when the fallback nodes were perfectly healthy.
    use BlockKind::*;
    let only_fallback = policy_unblock(&[BlockReason::new(
        OnlyFallbackLeft,
        "only fallback nodes would remain healthy",
    )]);
    assert_eq!(
        only_fallback,
        "a node that is not in cluster_policies.fallback_nodes must report healthy (or change fallback_nodes / forbid_if_only_fallback_left)"
    );
    // The hint follows the reason's kind, whatever its words (issue #12: a rewording
    // used to lose the hint silently).
    let mixed = policy_unblock(&[
        BlockReason::new(RebootInProgress, "node-2 went down (since 02:00)"),
        BlockReason::new(RebootInProgress, "reboot in progress on node-3"),
        BlockReason::new(UnhealthyPeers, "node-4 says no (heartbeat, exit 1)"),
        BlockReason::new(TooFewHealthy, "1 healthy, 2 wanted"),
    ]);
    assert_eq!(
        mixed,
        "the rebooting nodes named above must come back and pass their post-reboot health check; for a node that will never return: clusterrebootd cluster forget NODE; \
         the unhealthy nodes named above must report healthy again (see `clusterrebootd cluster status`); \
         more nodes must report healthy, or lower cluster_policies.min_healthy_absolute / min_healthy_fraction"
    );
    // A group_policies reason (issue #16) points at group_policies.
    let group = policy_unblock(&[
        BlockReason::new(TooFewHealthy, "1 healthy, 2 wanted"),
        BlockReason::within_group("db", BlockReason::new(TooFewHealthy, "1 healthy, 2 wanted")),
        BlockReason::within_group("db", BlockReason::new(OnlyFallbackLeft, "only fallback")),
    ]);
    assert_eq!(
        group,
        "more nodes must report healthy, or lower cluster_policies.min_healthy_absolute / min_healthy_fraction; \
         more members of this node's reboot group must report healthy, or lower group_policies.min_healthy_absolute / min_healthy_fraction; \
         a member of this node's reboot group that is not in group_policies.fallback_nodes must report healthy (or change fallback_nodes / forbid_if_only_fallback_left)"
    );
}

/// Issue #12: the hint for a lost slot follows its cause, not the adapter's words.
#[test]
fn slot_lost_hint_follows_the_cause() {
    let lost = |kind| {
        let mut r = rec(
            T0,
            StateName::Locking,
            StateName::Idle,
            Event::SlotLost {
                detail: SlotLoss::new(kind, "lease 7f gone"),
            },
            "slot lost: lease 7f gone",
        );
        r.outcome = Some(Outcome::LockUnavailable);
        r.exit = Some(Exit::LockUnavailable);
        pass_block(&r, &[], &ctx(T0)).expect("a lost slot blocks")
    };
    let session = lost(SlotLossKind::SessionExpired);
    assert!(
        session.unblock.contains("restore the connection to etcd"),
        "{}",
        session.unblock
    );
    let reboot = lost(SlotLossKind::RebootLeaseExpired);
    assert!(
        reboot.unblock.contains("reboot lease's TTL"),
        "{}",
        reboot.unblock
    );
    assert!(reboot.detail.contains("lease 7f gone"), "{}", reboot.detail);
}

#[test]
fn held_back_under_the_slot_says_what_it_waits_for() {
    use StateName::*;
    let mut records = pass_start(T0);
    let reasons = vec![
        BlockReason::new(
            BlockKind::PlannedDowntime,
            "node-3 is rebooting and holds a slot (since 2026-11-27T02:58:00Z)",
        ),
        BlockReason::new(
            BlockKind::TooFewHealthy,
            "healthy nodes 3 below minimum 4 (this node counts as down)",
        ),
    ];
    records.push(rec(
        T0 + 5000,
        HealthPost,
        HealthPost,
        Event::ClusterHealthEvaluated {
            id: 9,
            verdict: PolicyVerdict::HeldBack {
                reasons: reasons.clone(),
            },
        },
        "holding the slot and waiting for the other holders",
    ));
    let st = state(
        StateName::HealthPost,
        T0 + 4000,
        "holding the slot",
        None,
        T0 + 4000,
    );
    let e = explain(&st, &records, &ctx(T0 + 60_000));
    let b = e.blocked_by.expect("a block");
    assert_eq!(b.gate, Gate::ClusterPolicy);
    assert!(
        b.detail.starts_with("holding the slot and waiting for the other slot holders: node-3 is rebooting and holds a slot"),
        "{}",
        b.detail
    );
    assert!(
        b.unblock
            .starts_with("nothing to do: that is planned downtime"),
        "{}",
        b.unblock
    );
    assert!(
        b.unblock.contains("more nodes must report healthy"),
        "{}",
        b.unblock
    );
    // Once the watch fired and the policy is read again, nothing is claimed any more.
    records.push(rec(
        T0 + 9000,
        HealthPost,
        HealthPost,
        Event::ClusterChanged { id: 10 },
        "cluster state changed while waiting under the slot",
    ));
    assert_eq!(explain(&st, &records, &ctx(T0 + 60_000)).blocked_by, None);
}

#[test]
fn slot_held_by_another_node() {
    use StateName::*;
    let mut records = pass_start(T0);
    records.push(rec(
        T0 + 3000,
        HealthPre,
        HealthPre,
        Event::ClusterHealthEvaluated {
            id: 3,
            verdict: PolicyVerdict::Pass,
        },
        "cluster policy passed; running health script (pre-lock)",
    ));
    records.push(rec(
        T0 + 4000,
        HealthPre,
        Locking,
        Event::HealthChecked {
            id: 4,
            result: HealthResult::Passed,
        },
        "health script (pre-lock) passed",
    ));
    records.push(rec(
        T0 + 5000,
        Locking,
        Locking,
        Event::SlotQueued {
            id: 5,
            position: 2,
            holders: vec![SlotHolder {
                node: "node-3".into(),
                since: Some(T0 - 25 * MIN),
            }],
            pool: None,
        },
        "waiting for slot, position 2, held by node-3 since 2026-11-27T02:35:00Z",
    ));
    let mut st = state(
        StateName::Locking,
        T0 + 4000,
        "waiting for slot, position 2, held by node-3 since 2026-11-27T02:35:00Z",
        None,
        T0 + 4000,
    );
    st.next_tick_at = None;
    let now = T0 + 5 * MIN + 4000;
    let e = explain(&st, &records, &ctx(now));
    check(
        "slot",
        &render_text(&e, now),
        "node node-1: Locking since 2026-11-27T03:00:04Z (5m ago)
last reason: waiting for slot, position 2, held by node-3 since 2026-11-27T02:35:00Z
blocked by the reboot slot: the reboot slot is held by node-3 since 2026-11-27T02:35:00Z; we wait at queue position 2
  queue position: 2
  held by: node-3 since 2026-11-27T02:35:00Z
  queue read at: 2026-11-27T03:00:05Z (read again when an entry just ahead leaves; `clusterrebootd cluster status` shows the queue now)
to unblock: node-3 must finish its reboot; if it will never return: clusterrebootd cluster forget node-3
next check: none scheduled
last 4 transitions:
  2026-11-27T03:00:00Z  Idle → Detecting  check started: running detectors
  2026-11-27T03:00:01Z  Detecting → WindowCheck  reboot required by file:/var/run/reboot-required
  2026-11-27T03:00:02Z  WindowCheck → HealthPre  window open; checking cluster health
  2026-11-27T03:00:04Z  HealthPre → Locking  health script (pre-lock) passed
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "slot");
    assert_eq!(j["blocked_by"]["evidence"]["position"], 2);
    assert_eq!(
        j["blocked_by"]["evidence"]["queue_read_at"],
        "2026-11-27T03:00:05Z"
    );
    assert_eq!(j["blocked_by"]["evidence"]["holders"][0]["node"], "node-3");
    assert_eq!(
        j["blocked_by"]["evidence"]["holders"][0]["since"],
        "2026-11-27T02:35:00Z"
    );
    assert_eq!(j["next_check_at"], Value::Null);
}

/// Issue #16: a node in a reboot group says which pool it waits for and who holds it.
#[test]
fn group_slot_held_by_a_group_peer() {
    use StateName::*;
    let mut records = pass_start(T0);
    records.push(rec(
        T0 + 5000,
        Locking,
        Locking,
        Event::SlotQueued {
            id: 5,
            position: 1,
            holders: vec![SlotHolder {
                node: "db-2".into(),
                since: None,
            }],
            pool: Some("db".into()),
        },
        "waiting for a slot of reboot group db, position 1, held by db-2",
    ));
    let st = state(
        StateName::Locking,
        T0 + 4000,
        "waiting for a slot of reboot group db, position 1, held by db-2",
        None,
        T0 + 4000,
    );
    let now = T0 + 5 * MIN;
    let e = explain(&st, &records, &ctx(now));
    let text = render_text(&e, now);
    assert!(
        text.contains("blocked by the reboot slot: the slots of reboot group db are held by db-2; we wait at queue position 1 of the group"),
        "{text}"
    );
    assert!(
        text.contains("waiting for: the pool of reboot group db"),
        "{text}"
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["evidence"]["pool"], "db");
    assert_eq!(j["blocked_by"]["evidence"]["holders"][0]["node"], "db-2");
    // An entry that is no node's record is named for `cluster forget --key` below the group.
    records.push(rec(
        T0 + 6000,
        Locking,
        Locking,
        Event::SlotQueued {
            id: 5,
            position: 1,
            holders: vec![SlotHolder {
                node: "unknown (2b)".into(),
                since: None,
            }],
            pool: Some("db".into()),
        },
        "waiting for a slot of reboot group db, position 1, held by unknown (2b)",
    ));
    let text = render_text(&explain(&st, &records, &ctx(now)), now);
    assert!(
        text.contains("clusterrebootd cluster forget --key reboot_group/db/2b"),
        "{text}"
    );
}

#[test]
fn cooldown_remaining_and_by() {
    use StateName::*;
    let records = vec![
        rec(
            T0,
            HealthPost,
            Cooldown,
            Event::HealthChecked {
                id: 9,
                result: HealthResult::Passed,
            },
            "health script (post-lock) passed; reading cooldown",
        ),
        ended(
            rec(
                T0 + 1000,
                Cooldown,
                Idle,
                Event::CooldownRead {
                    id: 10,
                    status: CooldownStatus::Active {
                        until: T0 + 20 * MIN,
                        by: "node-2".into(),
                    },
                },
                "cooldown active; next check 2026-11-27T03:20:00Z",
            ),
            Some(Outcome::CooldownActive),
            Exit::Ok,
        ),
    ];
    let st = state(
        StateName::Idle,
        T0 + 1000,
        "cooldown active; next check 2026-11-27T03:20:00Z",
        Some("cooldown_active"),
        T0 + 20 * MIN,
    );
    let now = T0 + 5 * MIN;
    let e = explain(&st, &records, &ctx(now));
    check(
        "cooldown",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T03:00:01Z (4m 59s ago)
last reason: cooldown active; next check 2026-11-27T03:20:00Z
blocked by the cluster cooldown: the cluster cooldown after node-2's reboot runs until 2026-11-27T03:20:00Z
  cooldown until: 2026-11-27T03:20:00Z
  remaining: 15m
  started by: node-2
to unblock: wait until 2026-11-27T03:20:00Z (15m left); the cooldown is min_reboot_interval_sec after node-2 recovered
next check: 2026-11-27T03:20:00Z (in 15m)
last 2 transitions:
  2026-11-27T03:00:00Z  HealthPost → Cooldown  health script (post-lock) passed; reading cooldown
  2026-11-27T03:00:01Z  Cooldown → Idle  cooldown active; next check 2026-11-27T03:20:00Z
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "cooldown");
    assert_eq!(j["blocked_by"]["evidence"]["remaining_sec"], 900);
    assert_eq!(j["blocked_by"]["evidence"]["by"], "node-2");
}

fn gates_case(gates: Gates, reason: &str) -> (Explanation, Millis) {
    use StateName::*;
    let records = vec![
        rec(
            T0 - MIN,
            Detecting,
            Idle,
            Event::DetectorsEvaluated {
                id: 1,
                result: DetectorResult::NotRequired,
            },
            "no reboot required; next check 2026-11-27T03:00:00Z",
        ),
        ended(
            rec(T0, Idle, Idle, Event::Tick { gates }, reason),
            Some(Outcome::KillSwitchActive),
            Exit::KillSwitch,
        ),
    ];
    let st = state(
        StateName::Idle,
        T0 - MIN,
        reason,
        Some("kill_switch_active"),
        T0 + MIN,
    );
    let now = T0 + 1000;
    (explain(&st, &records, &ctx(now)), now)
}

#[test]
fn kill_switch_file_present() {
    let reason = "kill switch /etc/clusterrebootd/disable present; next check 2026-11-27T03:01:00Z";
    let (e, now) = gates_case(
        Gates {
            kill_switch: true,
            pause: None,
            unknown: None,
        },
        reason,
    );
    check(
        "kill switch",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T02:59:00Z (1m 1s ago)
last reason: kill switch /etc/clusterrebootd/disable present; next check 2026-11-27T03:01:00Z
blocked by the kill switch: the kill switch file /etc/clusterrebootd/disable is present
  kill switch file: /etc/clusterrebootd/disable
to unblock: remove /etc/clusterrebootd/disable
next check: 2026-11-27T03:01:00Z (in 59s)
last 1 transitions:
  2026-11-27T02:59:00Z  Detecting → Idle  no reboot required; next check 2026-11-27T03:00:00Z
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "kill_switch");
    assert_eq!(
        j["blocked_by"]["evidence"]["file"],
        "/etc/clusterrebootd/disable"
    );
    assert_eq!(
        j["blocked_by"]["unblock"],
        "remove /etc/clusterrebootd/disable"
    );
}

#[test]
fn cluster_paused_with_reason() {
    let reason =
        "cluster paused (kernel CVE rollout halted by alice); next check 2026-11-27T03:01:00Z";
    let (e, now) = gates_case(
        Gates {
            kill_switch: false,
            pause: Some("kernel CVE rollout halted by alice".into()),
            unknown: None,
        },
        reason,
    );
    check(
        "pause",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T02:59:00Z (1m 1s ago)
last reason: cluster paused (kernel CVE rollout halted by alice); next check 2026-11-27T03:01:00Z
blocked by the cluster pause: the cluster is paused: kernel CVE rollout halted by alice
  pause reason: kernel CVE rollout halted by alice
to unblock: clusterrebootd cluster resume
next check: 2026-11-27T03:01:00Z (in 59s)
last 1 transitions:
  2026-11-27T02:59:00Z  Detecting → Idle  no reboot required; next check 2026-11-27T03:00:00Z
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "pause");
    assert_eq!(
        j["blocked_by"]["evidence"]["reason"],
        "kernel CVE rollout halted by alice"
    );
}

#[test]
fn post_reboot_health_failing_keeps_the_slot() {
    use StateName::*;
    let fail = |at: Millis| {
        let mut r = rec(
            at,
            Recovering,
            Recovering,
            Event::HealthChecked {
                id: 3,
                result: HealthResult::Blocked {
                    exit_code: 1,
                    first_line: "still syncing".into(),
                },
            },
            "health script (post-reboot) exited 1: still syncing; keeping the slot, retry at …",
        );
        r.exit = Some(Exit::Runtime);
        r
    };
    let records = vec![
        rec(
            T0,
            Rebooting,
            Recovering,
            Event::Started {
                boot_id: "boot-b".into(),
                config: Default::default(),
            },
            "booted (boot id boot-b)",
        ),
        rec(
            T0 + 1000,
            Recovering,
            Recovering,
            Event::RebootLeaseReattached {
                id: 1,
                result: ReattachResult::Attached,
            },
            "reboot lease re-attached (slot still held); running post-reboot hooks",
        ),
        rec(
            T0 + 2000,
            Recovering,
            Recovering,
            Event::HooksRan {
                id: 2,
                result: crate::fsm::event::StepResult::Ok,
            },
            "post-reboot hooks done; running the post-reboot health check",
        ),
        fail(T0 + 3000),
        rec(
            T0 + 8000,
            Recovering,
            Recovering,
            Event::Tick {
                gates: Gates::default(),
            },
            "retrying the post-reboot health check",
        ),
        fail(T0 + 9000),
    ];
    let mut st = state(
        StateName::Recovering,
        T0,
        "health script (post-reboot) exited 1: still syncing; keeping the slot, retry at …",
        None,
        T0 + 19_000,
    );
    st.slot.held = true;
    let now = T0 + 15_000;
    let e = explain(&st, &records, &ctx(now));
    check(
        "post-reboot",
        &render_text(&e, now),
        "node node-1: Recovering since 2026-11-27T03:00:00Z (15s ago)
last reason: health script (post-reboot) exited 1: still syncing; keeping the slot, retry at …
blocked by post-reboot health: after the reboot the health script (post-reboot) exits 1: still syncing; the node keeps its reboot slot, so no other node reboots meanwhile
  failing since: 2026-11-27T03:00:03Z
  exit code: 1
  first output line: still syncing
  slot still held: true
to unblock: fix what the health script reports on this node; the daemon retries by itself and releases the slot once it passes
next check: 2026-11-27T03:00:19Z (in 4s)
last 1 transitions:
  2026-11-27T03:00:00Z  Rebooting → Recovering  booted (boot id boot-b)
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"]["gate"], "post_reboot_health");
    assert_eq!(j["blocked_by"]["evidence"]["slot_held"], true);
    assert_eq!(
        j["blocked_by"]["evidence"]["failing_since"],
        "2026-11-27T03:00:03Z"
    );
    assert_eq!(j["blocked_by"]["evidence"]["exit_code"], 1);
}

#[test]
fn not_blocked_when_no_reboot_is_required() {
    use StateName::*;
    let records = vec![
        rec(
            T0,
            Idle,
            Detecting,
            Event::Tick {
                gates: Gates::default(),
            },
            "check started: running detectors",
        ),
        ended(
            rec(
                T0 + 1000,
                Detecting,
                Idle,
                Event::DetectorsEvaluated {
                    id: 1,
                    result: DetectorResult::NotRequired,
                },
                "no reboot required; next check 2026-11-27T03:01:01Z",
            ),
            Some(Outcome::NoAction),
            Exit::Ok,
        ),
    ];
    let st = state(
        StateName::Idle,
        T0 + 1000,
        "no reboot required; next check 2026-11-27T03:01:01Z",
        Some("no_action"),
        T0 + 61_000,
    );
    let now = T0 + 31_000;
    let e = explain(&st, &records, &ctx(now));
    check(
        "not blocked",
        &render_text(&e, now),
        "node node-1: Idle since 2026-11-27T03:00:01Z (30s ago)
last reason: no reboot required; next check 2026-11-27T03:01:01Z
not blocked: no reboot is required
next check: 2026-11-27T03:01:01Z (in 30s)
last transitions: idle checks only
  2026-11-27T03:00:00Z  idle: 1 check found nothing to do (the last ended 2026-11-27T03:00:01Z)
",
    );
    let j = render_json(&e);
    assert_eq!(j["blocked_by"], Value::Null);
    assert_eq!(j["state"], "Idle");
    assert_eq!(j["outcome"], "no_action");
}

#[test]
fn a_new_check_in_progress_still_shows_the_last_block() {
    use StateName::*;
    let mut records = pass_start(T0);
    records.push(ended(
        rec(
            T0 + 3000,
            HealthPre,
            Idle,
            Event::HealthChecked {
                id: 4,
                result: HealthResult::Blocked {
                    exit_code: 3,
                    first_line: "x".into(),
                },
            },
            "blocked",
        ),
        Some(Outcome::HealthBlocked),
        Exit::HealthBlocked,
    ));
    for i in 1..=3 {
        records.extend(pass_start(T0 + i * MIN));
    }
    let st = state(
        StateName::HealthPre,
        T0 + MIN + 2000,
        "window open",
        None,
        T0 + 2 * MIN,
    );
    let e = explain(&st, &records, &ctx(T0 + MIN + 2500));
    assert_eq!(
        e.blocked_by.as_ref().map(|b| b.gate),
        Some(Gate::HealthScript)
    );
    assert!(
        e.note.as_deref().unwrap_or("").contains("HealthPre"),
        "{:?}",
        e.note
    );
    // 13 transitions in the journal: the oldest three are not shown.
    assert_eq!(e.transitions.len(), SHOWN_TRANSITIONS);
    assert_eq!(e.transitions[0].reason, "blocked");
}

#[test]
fn damaged_files_are_named_not_panicked_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("state.json");
    assert_eq!(
        read_state_file(&missing),
        Err(NoDaemon::NoStateFile(missing.clone()))
    );
    assert!(
        NoDaemon::NoStateFile(missing.clone())
            .to_string()
            .contains("no state file at")
    );
    std::fs::write(&missing, "{\"node\": \"n\", \"pid\": ").expect("write");
    match read_state_file(&missing) {
        Err(NoDaemon::Damaged(m)) => {
            assert!(m.contains("state.json") && m.contains("corrupt"), "{m}")
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    let journal = dir.path().join("journal.jsonl");
    std::fs::write(&journal, "not json\n{\"kind\":\"record\"}\n").expect("write");
    match read_journal_tail(&journal) {
        Err(NoDaemon::Damaged(m)) => assert!(m.contains("journal.jsonl"), "{m}"),
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert_eq!(
        NoDaemon::NotRunning(7).to_string(),
        "no running daemon (pid 7 not running)"
    );
}

#[test]
fn pid_liveness() {
    assert!(pid_alive(std::process::id()));
    assert!(!pid_alive(0));
    assert!(!pid_alive(u32::MAX));
}

/// Issue #19: idle checks are counted, not listed, and the history before a long idle stretch
/// (more idle records than the tail holds) is still shown.
#[test]
fn idle_checks_are_counted_and_older_history_survives_them() {
    use StateName::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.jsonl");
    let (mut j, _) =
        crate::replay::DaemonJournal::open(&path, crate::journal::JournalOptions::default())
            .expect("journal");
    let mut reboot = rec(
        T0,
        Recovering,
        Idle,
        Event::Tick {
            gates: Gates::default(),
        },
        "post-reboot health passed; slot released",
    );
    reboot.outcome = Some(Outcome::NoAction);
    j.append(&reboot).expect("append");
    let checks = TAIL_RECORDS as u64; // two records each: more than the tail
    for k in 0..checks {
        let at = T0 + (k + 1) * MIN;
        j.append(&rec(
            at,
            Idle,
            Detecting,
            Event::Tick {
                gates: Gates::default(),
            },
            "check started: running detectors",
        ))
        .expect("append");
        j.append(&ended(
            rec(
                at + 100,
                Detecting,
                Idle,
                Event::DetectorsEvaluated {
                    id: k,
                    result: DetectorResult::NotRequired,
                },
                "no reboot required",
            ),
            Some(Outcome::NoAction),
            Exit::Ok,
        ))
        .expect("append");
    }
    drop(j);
    let (records, warnings) = read_journal_tail(&path).expect("tail");
    assert!(warnings.is_empty(), "{warnings:?}");
    let st = state(
        Idle,
        T0 + checks * MIN + 100,
        "no reboot required",
        Some("no_action"),
        T0,
    );
    let e = explain(&st, &records, &ctx(T0 + checks * MIN + 200));
    let reasons: Vec<&str> = e.transitions.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(reasons, ["post-reboot health passed; slot released"]);
    let idle = e.idle_checks.clone().expect("idle checks");
    // All of them, also those before the tail.
    assert_eq!(idle.count, checks);
    assert_eq!(idle.since, fmt_ts(T0 + MIN));
    assert_eq!(idle.last, fmt_ts(T0 + checks * MIN + 100));
    let text = render_text(&e, T0 + checks * MIN + 200);
    assert!(
        text.contains(&format!("idle: {checks} checks found nothing to do")),
        "{text}"
    );
    assert!(!text.contains("Idle → Detecting"), "{text}");
}
