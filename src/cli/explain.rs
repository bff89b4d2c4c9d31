//! `status --explain [--json]`: "why is this node not rebooting?" for a person at 3 a.m.
//!
//! The answer comes from the running daemon's own files: `<run_dir>/state.json` (current state,
//! since when, next check) and the tail of `<state_dir>/journal.jsonl`, whose records carry the
//! evidence (health-script exit code and first line, slot holders, window reason and next
//! opening, cooldown end, …). Without a running daemon — or when its files are unreadable — the
//! command says so and falls back to the dry-run evaluation of plain `status` (Go behaviour).
//!
//! The explanation itself ([`explain`], [`render_text`], [`render_json`]) is pure: it takes the
//! parsed files and the current time, so golden tests build records by hand. File reading and
//! the liveness check live in [`load_live`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::Settings;
use crate::driver::state_file::StateFile;
use crate::exit::Exit;
use crate::fsm::StateName;
use crate::fsm::event::{
    CooldownStatus, DetectorResult, Event, HealthResult, PolicyVerdict, ReattachResult,
    WindowVerdict,
};
use crate::fsm::record::Record;
use crate::fsm::types::{Millis, Outcome, fmt_dur, fmt_ms};
use crate::fsm::{BlockKind, BlockReason};
use crate::journal::JournalOptions;
use crate::replay::DaemonJournal;

/// How many journal records the explanation looks at.
pub const TAIL_RECORDS: usize = 200;
/// How many transitions are listed.
pub const SHOWN_TRANSITIONS: usize = 10;
/// Largest state file read (it is a few hundred bytes; anything bigger is damage).
const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;

/// Which gate keeps the node from rebooting (`blocked_by.gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The health script exited non-zero or failed (pre-lock or post-lock).
    HealthScript,
    /// The cluster-health policies block.
    ClusterPolicy,
    /// Other nodes hold every reboot slot.
    Slot,
    /// The maintenance windows forbid a reboot now.
    Window,
    /// The cluster cooldown after another reboot runs.
    Cooldown,
    /// The kill switch file exists.
    KillSwitch,
    /// The cluster is paused (`cluster pause`).
    Pause,
    /// A reboot-required detector failed.
    DetectorError,
    /// After the reboot the health script fails; the slot stays held.
    PostRebootHealth,
    /// Coordination (etcd) could not be reached or answered with an error.
    EtcdUnavailable,
}

/// The blocking reason with its evidence and the way out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    /// Which gate.
    pub gate: Gate,
    /// The reason in plain words.
    pub detail: String,
    /// Machine-readable evidence (exit code, holders, instants, …).
    pub evidence: Map<String, Value>,
    /// The same evidence as text lines, in a sensible order.
    #[serde(skip)]
    pub evidence_lines: Vec<String>,
    /// One concrete sentence: what would unblock it.
    pub unblock: String,
}

/// One state change from the journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// When (RFC 3339).
    pub at: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// The machine's reason.
    pub reason: String,
}

/// Everything `status --explain` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// Whether a running daemon's files were the source.
    pub daemon_running: bool,
    /// Node name.
    pub node: String,
    /// Current state.
    pub state: String,
    /// When it was entered (RFC 3339).
    pub since: String,
    /// The machine's last reason line.
    pub reason: String,
    /// Outcome of the last finished pass.
    pub outcome: Option<String>,
    /// What blocks the reboot; `None` when nothing does (no reboot needed, or progressing).
    pub blocked_by: Option<Block>,
    /// Context for the block, e.g. that a new check is already running.
    pub note: Option<String>,
    /// When the daemon next checks by itself (RFC 3339).
    pub next_check_at: Option<String>,
    /// The last transitions, oldest first.
    pub transitions: Vec<Transition>,
    /// Non-fatal problems met while reading (torn journal tail, …).
    pub warnings: Vec<String>,
}

/// What the explanation needs besides the files.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configured kill switch file (the journal only says "present").
    pub kill_switch_file: String,
    /// Current wall-clock time.
    pub now: Millis,
}

// ------------------------------------------------------------------------------- explain

/// Explains the daemon's situation from its state file and journal tail (oldest first).
pub fn explain(state: &StateFile, records: &[Record], ctx: &Context) -> Explanation {
    let cur = current_state(&state.state);
    let mut note = None;
    let blocked_by = match cur {
        Some(StateName::Recovering) => recovering_block(state, records),
        Some(StateName::Locking) => locking_block(records),
        Some(StateName::HealthPost) => held_back_block(records),
        Some(StateName::Rebooting) => None,
        _ => {
            let last = records
                .iter()
                .rev()
                .find(|r| r.outcome.is_some() || r.exit.is_some());
            let block = last.and_then(|r| pass_block(r, records, ctx));
            if block.is_some() && cur != Some(StateName::Idle) {
                note = Some(format!(
                    "a new check is in progress ({}); the last finished check was blocked",
                    state.state
                ));
            }
            block
        }
    };
    let transitions = records
        .iter()
        .filter(|r| r.from != r.to)
        .map(|r| Transition {
            at: r.ts.clone(),
            from: r.from.as_str().to_string(),
            to: r.to.as_str().to_string(),
            reason: r.reason.clone(),
        })
        .collect::<Vec<_>>();
    let skip = transitions.len().saturating_sub(SHOWN_TRANSITIONS);
    Explanation {
        daemon_running: true,
        node: state.node.clone(),
        state: state.state.clone(),
        since: state.since.clone(),
        reason: state.reason.clone(),
        outcome: state.outcome.clone(),
        blocked_by,
        note,
        next_check_at: state.next_tick_at.clone(),
        transitions: transitions.into_iter().skip(skip).collect(),
        warnings: Vec::new(),
    }
}

fn current_state(name: &str) -> Option<StateName> {
    StateName::ALL.into_iter().find(|s| s.as_str() == name)
}

/// Builds a block from evidence pairs (label for text, key for JSON, value).
/// What would unblock the cluster-health policy, one hint per kind of reason
/// (`coord::policy::evaluate` words them).
fn policy_unblock(reasons: &[BlockReason]) -> String {
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
            BlockKind::TooFewHealthy => {
                "more nodes must report healthy, or lower cluster_policies.min_healthy_absolute / min_healthy_fraction"
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
fn held_back_block(records: &[Record]) -> Option<Block> {
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

fn block(gate: Gate, detail: String, evidence: Vec<(&str, &str, Value)>, unblock: String) -> Block {
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
fn phase_of(from: StateName) -> &'static str {
    match from {
        StateName::HealthPost => "post-lock",
        StateName::Recovering => "post-reboot",
        _ => "pre-lock",
    }
}

/// Largest gRPC response the etcd client accepts (tonic's default decoding limit, which
/// etcd-client keeps): a prefix read whose values add up to more fails with "message length
/// too large".
const ETCD_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

fn etcd_block(what: &str, detail: &str) -> Block {
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
fn pass_block(rec: &Record, records: &[Record], ctx: &Context) -> Option<Block> {
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
        (Event::SlotLost { detail }, _) => Some(etcd_block("the slot was lost", detail)),
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

fn cooldown_block(until: &Millis, by: &str, now: Millis) -> Block {
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
fn pass_block_rest(rec: &Record) -> Option<Block> {
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

fn unreachable_gates() -> Block {
    // `gates.active()` guarantees one brake; keep a sane answer rather than panicking.
    block(
        Gate::KillSwitch,
        "a brake is active".into(),
        vec![],
        String::new(),
    )
}

fn window_block(reason: &str, outcome: &str, next_open: Option<Millis>, now: Millis) -> Block {
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

fn health_block(result: &HealthResult, from: StateName) -> Option<Block> {
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
/// names its holder `unknown (<last key segment>)`; `cluster forget --key` takes that segment.
fn foreign_entry(node: &str) -> Option<&str> {
    node.strip_prefix("unknown (")?.strip_suffix(')')
}

/// Records since the machine last entered `state` from another state.
fn since_entry(records: &[Record], state: StateName) -> &[Record] {
    let start = records
        .iter()
        .rposition(|r| r.to == state && r.from != state)
        .unwrap_or(0);
    &records[start..]
}

fn locking_block(records: &[Record]) -> Option<Block> {
    let cycle = since_entry(records, StateName::Locking);
    let (position, holders) = cycle.iter().rev().find_map(|r| match &r.event {
        Event::SlotQueued {
            position, holders, ..
        } => Some((*position, holders)),
        _ => None,
    })?;
    let names: Vec<String> = holders
        .iter()
        .map(|h| match h.since {
            Some(t) => format!("{} since {}", h.node, fmt_ms(t)),
            None => h.node.clone(),
        })
        .collect();
    let detail = if names.is_empty() {
        format!("waiting for a reboot slot at queue position {position}")
    } else {
        format!(
            "the reboot slot is held by {}; we wait at queue position {position}",
            names.join(", ")
        )
    };
    let unblock = match holders.first() {
        Some(h) => match foreign_entry(&h.node) {
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
    Some(b)
}

fn recovering_block(state: &StateFile, records: &[Record]) -> Option<Block> {
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

fn parse_ts(s: &str) -> Option<Millis> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
}

/// `"12 min ago"`-style age of an RFC 3339 instant.
fn ago(ts: &str, now: Millis) -> String {
    match parse_ts(ts) {
        Some(t) if t <= now => {
            let secs = (now - t) / 1000;
            if secs < 60 {
                format!("{secs} s ago")
            } else if secs < 3600 {
                format!("{} min ago", secs / 60)
            } else if secs < 86_400 {
                format!("{} h {} min ago", secs / 3600, secs % 3600 / 60)
            } else {
                format!("{} d {} h ago", secs / 86_400, secs % 86_400 / 3600)
            }
        }
        Some(t) => format!("in {}", fmt_dur(t - now)),
        None => "unknown".into(),
    }
}

/// Seconds-precision display of a journal/state-file timestamp.
fn short(ts: &str) -> String {
    parse_ts(ts).map_or_else(|| ts.to_string(), fmt_ms)
}

/// The text answer.
pub fn render_text(e: &Explanation, now: Millis) -> String {
    let mut s = format!(
        "node {}: {} since {} ({})\n",
        e.node,
        e.state,
        short(&e.since),
        ago(&e.since, now)
    );
    s.push_str(&format!("last reason: {}\n", e.reason));
    match &e.blocked_by {
        Some(b) => {
            if let Some(n) = &e.note {
                s.push_str(&format!("note: {n}\n"));
            }
            s.push_str(&format!("blocked by {}: {}\n", gate_name(b.gate), b.detail));
            for l in &b.evidence_lines {
                s.push_str(&format!("  {l}\n"));
            }
            s.push_str(&format!("to unblock: {}\n", b.unblock));
        }
        None => s.push_str(&format!("not blocked: {}\n", not_blocked_words(e))),
    }
    match &e.next_check_at {
        Some(t) => s.push_str(&format!("next check: {} ({})\n", short(t), ago(t, now))),
        None => s.push_str("next check: none scheduled\n"),
    }
    s.push_str(&format!("last {} transitions:\n", e.transitions.len()));
    if e.transitions.is_empty() {
        s.push_str("  (none in the journal)\n");
    }
    for t in &e.transitions {
        s.push_str(&format!(
            "  {}  {} → {}  {}\n",
            short(&t.at),
            t.from,
            t.to,
            t.reason
        ));
    }
    for w in &e.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

fn gate_name(g: Gate) -> &'static str {
    match g {
        Gate::HealthScript => "the health script",
        Gate::ClusterPolicy => "the cluster-health policy",
        Gate::Slot => "the reboot slot",
        Gate::Window => "the maintenance window",
        Gate::Cooldown => "the cluster cooldown",
        Gate::KillSwitch => "the kill switch",
        Gate::Pause => "the cluster pause",
        Gate::DetectorError => "a detector error",
        Gate::PostRebootHealth => "post-reboot health",
        Gate::EtcdUnavailable => "etcd being unavailable",
    }
}

fn not_blocked_words(e: &Explanation) -> String {
    match (e.state.as_str(), e.outcome.as_deref()) {
        ("Idle", Some("no_action")) => "no reboot is required".into(),
        ("Idle", Some("recheck_cleared")) => {
            "the reboot is no longer required (detectors cleared under the slot)".into()
        }
        ("Idle", Some("ready")) => {
            "the last check passed every gate (dry run: reboot only logged)".into()
        }
        ("Idle", _) => "nothing blocks; waiting for the next check".into(),
        ("Rebooting", _) => "the reboot is in progress".into(),
        ("Recovering", _) => "recovering after the reboot".into(),
        (st, _) => format!("a check is in progress ({st})"),
    }
}

/// The `--json` answer.
pub fn render_json(e: &Explanation) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

// ------------------------------------------------------------------------------- files

/// Why the daemon's files cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum NoDaemon {
    /// No state file: the daemon never ran (or `run_dir` was cleared at boot).
    NoStateFile(PathBuf),
    /// The state file names a process that is gone.
    NotRunning(u32),
    /// A file is unreadable or damaged.
    Damaged(String),
}

impl std::fmt::Display for NoDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoDaemon::NoStateFile(p) => {
                write!(f, "no running daemon (no state file at {})", p.display())
            }
            NoDaemon::NotRunning(pid) => write!(f, "no running daemon (pid {pid} not running)"),
            NoDaemon::Damaged(m) => write!(f, "cannot explain from the daemon's files ({m})"),
        }
    }
}

/// Whether `pid` names a live process (`kill(pid, 0)`; EPERM means it exists).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// Reads and parses a state file.
pub fn read_state_file(path: &Path) -> Result<StateFile, NoDaemon> {
    let text = crate::config::load::read_capped_with(path, MAX_STATE_FILE_BYTES).map_err(|e| {
        if let crate::config::ConfigError::Io { err, .. } = &e
            && err.kind() == std::io::ErrorKind::NotFound
        {
            return NoDaemon::NoStateFile(path.to_path_buf());
        }
        NoDaemon::Damaged(format!("state file {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| NoDaemon::Damaged(format!("state file {} is corrupt: {e}", path.display())))
}

/// Reads the last [`TAIL_RECORDS`] records of a journal without changing it; a missing journal
/// is empty (with a warning).
pub fn read_journal_tail(path: &Path) -> Result<(Vec<Record>, Vec<String>), NoDaemon> {
    if !path.exists() {
        return Ok((
            Vec::new(),
            vec![format!(
                "journal {} not found; no evidence available",
                path.display()
            )],
        ));
    }
    let loaded = DaemonJournal::read(path, JournalOptions::default())
        .map_err(|e| NoDaemon::Damaged(e.to_string()))?;
    let skip = loaded.records.len().saturating_sub(TAIL_RECORDS);
    let records = loaded
        .records
        .into_iter()
        .skip(skip)
        .map(|(_, r)| r)
        .collect();
    Ok((records, loaded.warnings))
}

/// The running daemon's explanation, or why there is none.
pub fn load_live(s: &Settings, now: Millis) -> Result<Explanation, NoDaemon> {
    let state = read_state_file(&s.run_dir.join("state.json"))?;
    if !pid_alive(state.pid) {
        return Err(NoDaemon::NotRunning(state.pid));
    }
    let (records, warnings) = read_journal_tail(&s.state_dir.join("journal.jsonl"))?;
    let ctx = Context {
        kill_switch_file: s.kill_switch_file.display().to_string(),
        now,
    };
    let mut e = explain(&state, &records, &ctx);
    e.warnings = warnings;
    Ok(e)
}

/// `status --explain [--json]`.
pub fn run(config: &Path, json: bool) -> Exit {
    let s = match super::run::settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = crate::driver::now_ms();
    match load_live(&s, now) {
        Ok(e) => {
            if json {
                println!("{:#}", render_json(&e));
            } else {
                print!("{}", crate::text::for_terminal(&render_text(&e, now)));
            }
            Exit::Ok
        }
        Err(why) if json => {
            // A JSON consumer gets JSON only: the dry-run's Go report is text, so it is not run.
            let v = json!({
                "daemon_running": false,
                "state": null,
                "since": null,
                "reason": why.to_string(),
                "blocked_by": null,
                "next_check_at": null,
                "transitions": [],
                "hint": "run `clusterrebootd status` for a dry-run evaluation",
            });
            println!("{v:#}");
            Exit::Ok
        }
        Err(why) => {
            println!(
                "{}; dry-run evaluation instead:",
                crate::text::for_terminal(&why.to_string())
            );
            super::run::status(config, false, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::state_file::SlotInfo;
    use crate::exit::Exit;
    use crate::fsm::Gates;
    use crate::fsm::event::{SlotHolder, StepResult};
    use crate::fsm::record::fmt_ts;

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
        st: &str,
        since: Millis,
        reason: &str,
        outcome: Option<&str>,
        next: Millis,
    ) -> StateFile {
        StateFile {
            node: "node-1".into(),
            pid: 4242,
            boot_id: "boot-a".into(),
            state: st.into(),
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
            "Idle",
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
            "node node-1: Idle since 2026-11-27T03:00:03Z (30 s ago)
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
            "Idle",
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
            "node node-1: Idle since 2026-11-27T03:00:02Z (12 min ago)
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
            "Idle",
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
        let st = state("HealthPost", T0 + 4000, "holding the slot", None, T0 + 4000);
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
            },
            "waiting for slot, position 2, held by node-3 since 2026-11-27T02:35:00Z",
        ));
        let mut st = state(
            "Locking",
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
            "node node-1: Locking since 2026-11-27T03:00:04Z (5 min ago)
last reason: waiting for slot, position 2, held by node-3 since 2026-11-27T02:35:00Z
blocked by the reboot slot: the reboot slot is held by node-3 since 2026-11-27T02:35:00Z; we wait at queue position 2
  queue position: 2
  held by: node-3 since 2026-11-27T02:35:00Z
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
        assert_eq!(j["blocked_by"]["evidence"]["holders"][0]["node"], "node-3");
        assert_eq!(
            j["blocked_by"]["evidence"]["holders"][0]["since"],
            "2026-11-27T02:35:00Z"
        );
        assert_eq!(j["next_check_at"], Value::Null);
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
            "Idle",
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
            "node node-1: Idle since 2026-11-27T03:00:01Z (4 min ago)
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
            "Idle",
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
        let reason =
            "kill switch /etc/clusterrebootd/disable present; next check 2026-11-27T03:01:00Z";
        let (e, now) = gates_case(
            Gates {
                kill_switch: true,
                pause: None,
            },
            reason,
        );
        check(
            "kill switch",
            &render_text(&e, now),
            "node node-1: Idle since 2026-11-27T02:59:00Z (1 min ago)
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
            },
            reason,
        );
        check(
            "pause",
            &render_text(&e, now),
            "node node-1: Idle since 2026-11-27T02:59:00Z (1 min ago)
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
            "Recovering",
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
            "node node-1: Recovering since 2026-11-27T03:00:00Z (15 s ago)
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
            "Idle",
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
            "node node-1: Idle since 2026-11-27T03:00:01Z (30 s ago)
last reason: no reboot required; next check 2026-11-27T03:01:01Z
not blocked: no reboot is required
next check: 2026-11-27T03:01:01Z (in 30s)
last 2 transitions:
  2026-11-27T03:00:00Z  Idle → Detecting  check started: running detectors
  2026-11-27T03:00:01Z  Detecting → Idle  no reboot required; next check 2026-11-27T03:01:01Z
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
            "HealthPre",
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
}
