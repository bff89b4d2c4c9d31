//! Which gate holds the node and what would unblock it, from the journal's evidence.

use serde_json::{Map, Value, json};

use crate::driver::state_file::StateFile;
use crate::fsm::StateName;
use crate::fsm::event::{
    CooldownStatus, DetectorResult, Event, HealthResult, PolicyVerdict, ReattachResult,
    WindowVerdict,
};
use crate::fsm::record::Record;
use crate::fsm::types::{Millis, Outcome, fmt_dur, fmt_ms};
use crate::fsm::{BlockKind, BlockReason, SlotLoss, SlotLossKind};

use super::*;

/// Builds a block from evidence pairs (label for text, key for JSON, value).
/// What would unblock the cluster-health policy, one hint per kind of reason
/// (`coord::policy::evaluate` words them).
pub(super) fn policy_unblock(reasons: &[BlockReason]) -> String {
    let mut hints: Vec<&str> = Vec::new();
    for r in reasons {
        let hint = match r.kind {
            BlockKind::PlannedDowntime => {
                "nothing to do: that is planned downtime; this node waits in the queue (or under its slot) and goes on as soon as the slot holders named above have recovered"
            }
            BlockKind::UnreadableRecords => {
                "the cluster_health records named above cannot be read: let the node's daemon rewrite them, or delete them (`etcdctl del KEY`) if the node is gone"
            }
            BlockKind::RebootInProgress => {
                "the rebooting nodes named above must come back and pass their post-reboot health check; for a node that will never return: clusterrebootd cluster forget NODE"
            }
            BlockKind::UnhealthyPeers => {
                "the unhealthy nodes named above must report healthy again (see `clusterrebootd cluster status`)"
            }
            BlockKind::StaleRecords => {
                "the nodes with stale records must publish fresh heartbeats (is their daemon running?)"
            }
            BlockKind::TooFewHealthy if r.is_within_group() => {
                "more members of this node's reboot group must report healthy, or lower group_policies.min_healthy_absolute / min_healthy_fraction"
            }
            BlockKind::TooFewHealthy => {
                "more nodes must report healthy, or lower cluster_policies.min_healthy_absolute / min_healthy_fraction"
            }
            BlockKind::OnlyFallbackLeft if r.is_within_group() => {
                "a member of this node's reboot group that is not in group_policies.fallback_nodes must report healthy (or change fallback_nodes / forbid_if_only_fallback_left)"
            }
            BlockKind::OnlyFallbackLeft => {
                "a node that is not in cluster_policies.fallback_nodes must report healthy (or change fallback_nodes / forbid_if_only_fallback_left)"
            }
            BlockKind::Other => {
                "the peers named above must report healthy again (see `clusterrebootd cluster status`)"
            }
        };
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    hints.join("; ")
}

/// Under the slot, waiting for other holders' planned downtime (the last step under the slot
/// was a held-back policy verdict): not blocked for good, but what it waits for.
pub(super) fn held_back_block(records: &[Record]) -> Option<Block> {
    let last = records
        .iter()
        .rev()
        .find(|r| r.from == StateName::HealthPost)?;
    match &last.event {
        Event::ClusterHealthEvaluated {
            verdict: PolicyVerdict::HeldBack { reasons },
            ..
        } if last.to == StateName::HealthPost => Some(block(
            Gate::ClusterPolicy,
            format!(
                "holding the slot and waiting for the other slot holders: {}",
                reasons.join("; ")
            ),
            vec![(
                "policy reasons",
                "reasons",
                json!(BlockReason::texts(reasons)),
            )],
            policy_unblock(reasons),
        )),
        _ => None,
    }
}

pub(super) fn block(
    gate: Gate,
    detail: String,
    evidence: Vec<(&str, &str, Value)>,
    unblock: String,
) -> Block {
    let mut map = Map::new();
    let mut lines = Vec::new();
    for (label, key, value) in evidence {
        let text = match &value {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("; "),
            Value::Null => "unknown".to_string(),
            v => v.to_string(),
        };
        lines.push(format!("{label}: {text}"));
        map.insert(key.to_string(), value);
    }
    Block {
        gate,
        detail,
        evidence: map,
        evidence_lines: lines,
        unblock,
    }
}

/// Phase of a health-script run judged in state `from`.
pub(super) fn phase_of(from: StateName) -> &'static str {
    match from {
        StateName::HealthPost => "post-lock",
        StateName::Recovering => "post-reboot",
        _ => "pre-lock",
    }
}

/// Largest gRPC response the etcd client accepts (tonic's default decoding limit, which
/// etcd-client keeps): a prefix read whose values add up to more fails with "message length
/// too large".
pub(super) const ETCD_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A lost slot: the hint follows the cause (a session that expired while etcd was out of
/// reach, or a reboot lease that expired because the node stayed away too long).
fn slot_lost_block(loss: &SlotLoss) -> Block {
    match loss.kind {
        SlotLossKind::RebootLeaseExpired => block(
            Gate::EtcdUnavailable,
            format!("the slot was lost: {loss}"),
            vec![("error", "error", json!(loss.text))],
            "the node was away (or out of reach of etcd) for longer than the reboot lease's TTL, so its slot was freed for others; nothing to do unless it keeps happening: then raise lock_ttl_sec or find what delays the boot".into(),
        ),
        SlotLossKind::SessionExpired | SlotLossKind::Other => {
            etcd_block("the slot was lost", &loss.text)
        }
    }
}

pub(super) fn etcd_block(what: &str, detail: &str) -> Block {
    // etcd answered, but with more than one gRPC response may carry (4 MiB): reconnecting does
    // not help, someone wrote too much under the namespace (issue #20, docs/SECURITY.md).
    let unblock = if detail.contains("message length too large") {
        format!(
            "etcd is reachable, but one read returned more than {} MiB: values under the namespace (cluster_health/, the lock key, reboot_in_progress/, …) are too large. Find them with `etcdctl get --prefix <namespace>/ --keys-only` and delete the oversized ones; records the daemon writes are under 1 KiB (docs/SECURITY.md, size limits)",
            ETCD_MAX_RESPONSE_BYTES / (1024 * 1024)
        )
    } else {
        "restore the connection to etcd (check etcd_endpoints, TLS/auth and the etcd cluster's health); the daemon retries by itself".into()
    };
    block(
        Gate::EtcdUnavailable,
        format!("{what}: {detail}"),
        vec![("error", "error", json!(detail))],
        unblock,
    )
}

/// What blocked the pass that `rec` ended, if anything.
pub(super) fn pass_block(rec: &Record, records: &[Record], ctx: &Context) -> Option<Block> {
    match (&rec.event, rec.outcome) {
        (Event::Tick { gates } | Event::GatesObserved { gates, .. }, _) if gates.active() => {
            let file = &ctx.kill_switch_file;
            Some(match (&gates.pause, gates.kill_switch) {
                (pause, true) => {
                    let mut ev = vec![("kill switch file", "file", json!(file))];
                    let mut unblock = format!("remove {file}");
                    if let Some(r) = pause {
                        ev.push(("cluster paused", "pause_reason", json!(r)));
                        unblock.push_str(" and run `clusterrebootd cluster resume`");
                    }
                    block(
                        Gate::KillSwitch,
                        format!("the kill switch file {file} is present"),
                        ev,
                        unblock,
                    )
                }
                (Some(r), false) => block(
                    Gate::Pause,
                    format!("the cluster is paused: {r}"),
                    vec![("pause reason", "reason", json!(r))],
                    "clusterrebootd cluster resume".into(),
                ),
                (None, false) => unreachable_gates(),
            })
        }
        (
            Event::WindowEvaluated {
                verdict:
                    WindowVerdict::Closed {
                        outcome,
                        reason,
                        next_open,
                    },
                ..
            },
            _,
        ) => Some(window_block(reason, outcome.as_str(), *next_open, ctx.now)),
        (_, Some(o @ (Outcome::WindowDenied | Outcome::WindowOutsideAllow))) => {
            Some(window_block(&rec.reason, o.as_str(), None, ctx.now))
        }
        (
            Event::ClusterHealthEvaluated {
                verdict: PolicyVerdict::Blocked { reasons },
                ..
            },
            _,
        ) => Some(block(
            Gate::ClusterPolicy,
            format!("the cluster-health policy blocks: {}", reasons.join("; ")),
            vec![("policy reasons", "reasons", json!(BlockReason::texts(reasons)))],
            policy_unblock(reasons),
        )),
        (
            Event::ClusterHealthEvaluated {
                verdict: PolicyVerdict::Error { detail },
                ..
            },
            _,
        ) => Some(etcd_block(
            "the cluster-health registry cannot be read",
            detail,
        )),
        (Event::HealthChecked { result, .. }, _) => health_block(result, rec.from),
        (
            Event::CooldownRead {
                status: CooldownStatus::Active { until, by },
                ..
            },
            _,
        ) => Some(cooldown_block(until, by, ctx.now)),
        (
            Event::CooldownRead {
                status: CooldownStatus::Error { detail },
                ..
            },
            _,
        ) if detail.contains("reboot_cooldown:") => Some(block(
            Gate::EtcdUnavailable,
            format!("the cooldown record in etcd is corrupt: {detail}"),
            vec![("error", "error", json!(detail))],
            "no node starts a reboot while it is there (fail closed): check who wrote it, then delete it (etcdctl del <namespace>/reboot_cooldown) or let its lease expire".into(),
        )),
        (
            Event::CooldownRead {
                status: CooldownStatus::Error { detail },
                ..
            },
            _,
        ) => Some(etcd_block("the cooldown marker cannot be read", detail)),
        (Event::SlotLost { detail }, _) => Some(slot_lost_block(detail)),
        (Event::Tick { .. }, Some(Outcome::LockUnavailable)) if rec.from == StateName::Locking => {
            let mut b = locking_block(records)
                .unwrap_or_else(|| block(Gate::Slot, String::new(), vec![], String::new()));
            b.detail = rec
                .reason
                .split("; next check")
                .next()
                .unwrap_or("")
                .to_string();
            Some(b)
        }
        (Event::SlotUnavailable { detail, .. }, _) => {
            Some(etcd_block("cannot join the slot queue", detail))
        }
        _ => pass_block_rest(rec),
    }
}

pub(super) fn cooldown_block(until: &Millis, by: &str, now: Millis) -> Block {
    let until = *until;
    let left = until.saturating_sub(now);
    let mut b = block(
        Gate::Cooldown,
        format!(
            "the cluster cooldown after {by}'s reboot runs until {}",
            fmt_ms(until)
        ),
        vec![
            ("cooldown until", "until", json!(fmt_ms(until))),
            ("remaining", "remaining_sec", json!(left.div_ceil(1000))),
            ("started by", "by", json!(by)),
        ],
        format!(
            "wait until {} ({} left); the cooldown is min_reboot_interval_sec after {by} recovered",
            fmt_ms(until),
            fmt_dur(left)
        ),
    );
    b.evidence_lines[1] = format!("remaining: {}", fmt_dur(left));
    b
}

/// The gates that need no other record than `rec`.
pub(super) fn pass_block_rest(rec: &Record) -> Option<Block> {
    match (&rec.event, rec.outcome) {
        (
            Event::DetectorsEvaluated {
                result: DetectorResult::Error { detail },
                ..
            },
            _,
        ) => Some(block(
            Gate::DetectorError,
            format!("a reboot-required detector failed: {detail}"),
            vec![("error", "error", json!(detail))],
            format!("fix the failing detector (see `clusterrebootd simulate`): {detail}"),
        )),
        (Event::EffectTimedOut { .. }, _) if rec.from == StateName::Detecting => Some(block(
            Gate::DetectorError,
            "the detectors timed out".into(),
            vec![],
            "make the detectors finish within their timeout_sec (see `clusterrebootd simulate`)"
                .into(),
        )),
        (Event::EffectTimedOut { .. }, Some(Outcome::HealthBlocked)) => Some(block(
            Gate::HealthScript,
            format!("the health gate ({}) timed out", phase_of(rec.from)),
            vec![("phase", "phase", json!(phase_of(rec.from)))],
            "make the health script finish within health_timeout_sec".into(),
        )),
        (
            Event::EffectTimedOut { .. },
            Some(Outcome::LockUnavailable | Outcome::CooldownActive),
        ) => Some(etcd_block(
            "coordination did not answer",
            "request timed out",
        )),
        _ => None,
    }
}

pub(super) fn unreachable_gates() -> Block {
    // `gates.active()` guarantees one brake; keep a sane answer rather than panicking.
    block(
        Gate::KillSwitch,
        "a brake is active".into(),
        vec![],
        String::new(),
    )
}

pub(super) fn window_block(
    reason: &str,
    outcome: &str,
    next_open: Option<Millis>,
    now: Millis,
) -> Block {
    let (next, unblock) = match next_open {
        Some(t) => (
            json!(fmt_ms(t)),
            format!("wait until {} ({} from now), when the maintenance window opens", fmt_ms(t), fmt_dur(t.saturating_sub(now))),
        ),
        None => (
            Value::Null,
            "no permitted window opens within 8 days: check `windows` in the configuration (`clusterrebootd windows`)".into(),
        ),
    };
    block(
        Gate::Window,
        format!("maintenance window closed: {reason}"),
        vec![
            ("outcome", "outcome", json!(outcome)),
            ("next opening", "next_open", next),
        ],
        unblock,
    )
}

pub(super) fn health_block(result: &HealthResult, from: StateName) -> Option<Block> {
    let phase = phase_of(from);
    match result {
        HealthResult::Passed => None,
        HealthResult::Blocked {
            exit_code,
            first_line,
        } => Some(block(
            Gate::HealthScript,
            format!("the health script ({phase}) exited {exit_code}"),
            vec![
                ("phase", "phase", json!(phase)),
                ("exit code", "exit_code", json!(exit_code)),
                ("first output line", "first_line", json!(first_line)),
            ],
            format!(
                "fix the health script's check: it says \"{first_line}\" (exit {exit_code}); the next check runs it again"
            ),
        )),
        HealthResult::Error { detail } => Some(block(
            Gate::HealthScript,
            format!("the health script ({phase}) failed to run: {detail}"),
            vec![
                ("phase", "phase", json!(phase)),
                ("error", "error", json!(detail)),
            ],
            "make the health script run and finish within health_timeout_sec".into(),
        )),
    }
}

/// The entry name of a queue entry whose value is not a node's JSON: the coordination layer
/// names its holder `unknown (<key below the lock prefix>)`; `cluster forget --key` takes it.
pub(super) fn foreign_entry(node: &str) -> Option<&str> {
    node.strip_prefix("unknown (")?.strip_suffix(')')
}

/// Records since the machine last entered `state` from another state.
pub(super) fn since_entry(records: &[Record], state: StateName) -> &[Record] {
    let start = records
        .iter()
        .rposition(|r| r.to == state && r.from != state)
        .unwrap_or(0);
    &records[start..]
}

pub(super) fn locking_block(records: &[Record]) -> Option<Block> {
    let cycle = since_entry(records, StateName::Locking);
    let (position, holders, pool, read_at) = cycle.iter().rev().find_map(|r| match &r.event {
        Event::SlotQueued {
            position,
            holders,
            pool,
            ..
        } => Some((*position, holders, pool, r.now)),
        _ => None,
    })?;
    let names: Vec<String> = holders
        .iter()
        .map(|h| match h.since {
            Some(t) => format!("{} since {}", h.node, fmt_ms(t)),
            None => h.node.clone(),
        })
        .collect();
    let detail = match (pool, names.is_empty()) {
        (None, true) => format!("waiting for a reboot slot at queue position {position}"),
        (None, false) => format!(
            "the reboot slot is held by {}; we wait at queue position {position}",
            names.join(", ")
        ),
        // Issue #16: the node waits for its group's pool (it holds nothing yet), or holds its
        // group slot and waits for the cluster pool.
        (Some(g), true) => {
            format!("waiting for a slot of reboot group {g} at queue position {position}")
        }
        (Some(g), false) => format!(
            "the slots of reboot group {g} are held by {}; we wait at queue position {position} of the group",
            names.join(", ")
        ),
    };
    let unblock = match holders.first() {
        Some(h) => match foreign_entry(&h.node) {
            // In a group pool the entry is named below the group's prefix.
            Some(entry) if let Some(g) = pool => format!(
                "the slot of reboot group {g} is held by an entry that is no node's record ({entry} under reboot_group/{g}/); if no daemon owns it, remove it: clusterrebootd cluster forget --key reboot_group/{g}/{entry}"
            ),
            Some(entry) => format!(
                "the slot is held by a queue entry that is no node's record ({entry} under lock_key); if no daemon owns it, remove it: clusterrebootd cluster forget --key {entry}"
            ),
            None => format!(
                "{n} must finish its reboot; if it will never return: clusterrebootd cluster forget {n}",
                n = h.node
            ),
        },
        None => "wait: the queue moves as soon as a slot is released".into(),
    };
    let holders_json: Vec<Value> = holders
        .iter()
        .map(|h| json!({"node": h.node, "since": h.since.map(fmt_ms)}))
        .collect();
    let mut b = block(
        Gate::Slot,
        detail,
        vec![("queue position", "position", json!(position))],
        unblock,
    );
    b.evidence_lines.push(format!(
        "held by: {}",
        if names.is_empty() {
            "nobody".into()
        } else {
            names.join(", ")
        }
    ));
    b.evidence
        .insert("holders".into(), Value::Array(holders_json));
    // A waiter reads the queue again only when an entry just ahead of it leaves (issue #18: a
    // hand-off wakes K waiters, not all), so say how old the position and the holders are.
    b.evidence_lines.push(format!(
        "queue read at: {} (read again when an entry just ahead leaves; `clusterrebootd cluster status` shows the queue now)",
        fmt_ms(read_at)
    ));
    b.evidence
        .insert("queue_read_at".into(), json!(fmt_ms(read_at)));
    if let Some(g) = pool {
        b.evidence_lines
            .push(format!("waiting for: the pool of reboot group {g}"));
        b.evidence.insert("pool".into(), json!(g));
    }
    Some(b)
}

pub(super) fn recovering_block(state: &StateFile, records: &[Record]) -> Option<Block> {
    let cycle = since_entry(records, StateName::Recovering);
    let last_retry = cycle
        .iter()
        .rev()
        .find(|r| r.from == StateName::Recovering && r.exit.is_some())?;
    let lease_expired = cycle.iter().any(|r| {
        matches!(
            r.event,
            Event::RebootLeaseReattached {
                result: ReattachResult::Expired,
                ..
            }
        )
    });
    let held = state.slot.held && !lease_expired;
    match &last_retry.event {
        Event::RebootLeaseReattached {
            result: ReattachResult::Failed { detail },
            ..
        } => Some(etcd_block("cannot re-attach the reboot lease", detail)),
        Event::HealthChecked { result, .. } if *result != HealthResult::Passed => {
            // Failing since the first failure of the current run of failures.
            let mut since = last_retry.now;
            for r in cycle.iter().rev() {
                match &r.event {
                    Event::HealthChecked {
                        result: HealthResult::Passed,
                        ..
                    } => break,
                    Event::HealthChecked { .. } => since = r.now,
                    _ => {}
                }
            }
            let what = match result {
                HealthResult::Blocked {
                    exit_code,
                    first_line,
                } => format!("exits {exit_code}: {first_line}"),
                HealthResult::Error { detail } => format!("fails to run: {detail}"),
                HealthResult::Passed => String::new(),
            };
            let mut ev = vec![("failing since", "failing_since", json!(fmt_ms(since)))];
            if let HealthResult::Blocked {
                exit_code,
                first_line,
            } = result
            {
                ev.push(("exit code", "exit_code", json!(exit_code)));
                ev.push(("first output line", "first_line", json!(first_line)));
            }
            ev.push(("slot still held", "slot_held", json!(held)));
            let slot = if held {
                "the node keeps its reboot slot, so no other node reboots meanwhile"
            } else {
                "the reboot lease expired, so the slot is free, but the in-progress marker still blocks peers"
            };
            Some(block(
                Gate::PostRebootHealth,
                format!("after the reboot the health script (post-reboot) {what}; {slot}"),
                ev,
                "fix what the health script reports on this node; the daemon retries by itself and releases the slot once it passes".into(),
            ))
        }
        Event::EffectTimedOut { .. } => Some(block(
            Gate::PostRebootHealth,
            format!("a post-reboot step timed out: {}", last_retry.reason),
            vec![("slot still held", "slot_held", json!(held))],
            "make the health script finish within health_timeout_sec; the daemon retries by itself"
                .into(),
        )),
        _ => None,
    }
}

// ------------------------------------------------------------------------------- render
