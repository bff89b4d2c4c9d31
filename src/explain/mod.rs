//! "Why is this node not rebooting?" for a person at 3 a.m. (`status --explain`), and the same
//! answer as data for the fleet view.
//!
//! The answer comes from the running daemon's own files: `<run_dir>/state.json` (current state,
//! since when, next check) and the tail of `<state_dir>/journal.jsonl`, whose records carry the
//! evidence (health-script exit code and first line, slot holders, window reason and next
//! opening, cooldown end, …). The explanation itself ([`explain`], [`render_text`],
//! [`render_json`]) is pure: it takes the parsed files and the current time, so golden tests
//! build records by hand. Which gate blocks and what unblocks it is [`gates`]; file reading and
//! the liveness check are [`live`]; the CLI command is `crate::cli::explain`.

pub mod gates;
pub mod live;
pub mod render;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::driver::state_file::StateFile;
use crate::fsm::record::Record;
use crate::fsm::types::{Millis, fmt_dur, fmt_ms};
use crate::fsm::{StateName, is_idle_check};

use self::gates::*;
pub use self::live::{NoDaemon, load_live, pid_alive, read_journal_tail, read_state_file};
pub use self::render::{JSON_SCHEMA_VERSION, no_daemon_json, render_json, render_text};

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
    /// The last transitions, oldest first, without the checks that found nothing to do
    /// (counted in `idle_checks`).
    pub transitions: Vec<Transition>,
    /// The checks that found nothing to do since the last other transition, if any.
    pub idle_checks: Option<IdleChecks>,
    /// Non-fatal problems met while reading (torn journal tail, …).
    pub warnings: Vec<String>,
}

/// A run of checks that found nothing to do, counted instead of listed: an idle node makes one
/// per interval, and listing them pushed everything else out of the history (issue #19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleChecks {
    /// How many ended with `no_action`.
    pub count: u64,
    /// When the first of them started (RFC 3339).
    pub since: String,
    /// When the last of them ended (RFC 3339).
    pub last: String,
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
    let cur = state.state;
    let mut note = None;
    let blocked_by = match cur {
        StateName::Recovering => recovering_block(state, records),
        StateName::Locking => locking_block(records),
        StateName::HealthPost => held_back_block(records),
        StateName::Rebooting => None,
        _ => {
            let last = records
                .iter()
                .rev()
                .find(|r| r.outcome.is_some() || r.exit.is_some());
            let block = last.and_then(|r| pass_block(r, records, ctx));
            if block.is_some() && cur != StateName::Idle {
                note = Some(format!(
                    "a new check is in progress ({}); the last finished check was blocked",
                    state.state
                ));
            }
            block
        }
    };
    let idle = idle_marks(records.iter());
    let transitions = records
        .iter()
        .zip(&idle)
        .filter(|(r, idle)| r.from != r.to && !**idle)
        .map(|(r, _)| Transition {
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
        state: state.state.as_str().to_string(),
        since: state.since.clone(),
        reason: state.reason.clone(),
        outcome: state.outcome.clone(),
        blocked_by,
        note,
        next_check_at: state.next_tick_at.clone(),
        transitions: transitions.into_iter().skip(skip).collect(),
        idle_checks: idle_checks(records),
        warnings: Vec::new(),
    }
}

/// Which of `records` (oldest first) belong to a check that found nothing to do: a
/// `Detecting -> Idle` ending with `no_action`, and the `Idle -> Detecting` that started it
/// (one still running is not idle yet: it is the current check). Self-loops are not marked.
pub(super) fn idle_marks<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<bool> {
    let mut marks = Vec::new();
    let mut started: Option<usize> = None;
    for (i, r) in records.enumerate() {
        marks.push(false);
        if r.from == r.to {
            continue;
        }
        if is_idle_check(r.from, r.to, r.outcome) && r.to == StateName::Idle {
            marks[i] = true;
            if let Some(s) = started {
                marks[s] = true;
            }
        }
        started = (r.from == StateName::Idle && r.to == StateName::Detecting).then_some(i);
    }
    marks
}

/// The trailing run of idle checks in `records` (oldest first): from the end back to the last
/// transition that is not part of one.
fn idle_checks(records: &[Record]) -> Option<IdleChecks> {
    let marks = idle_marks(records.iter());
    let mut count = 0;
    let mut since: Option<&str> = None;
    let mut last: Option<&str> = None;
    for (r, idle) in records.iter().zip(&marks).rev() {
        if r.from == r.to {
            continue;
        }
        if !idle {
            break;
        }
        if r.to == StateName::Idle {
            count += 1;
            last = last.or(Some(&r.ts));
        }
        since = Some(&r.ts);
    }
    let last = last?;
    Some(IdleChecks {
        count,
        since: since.unwrap_or(last).to_string(),
        last: last.to_string(),
    })
}

pub(super) fn parse_ts(s: &str) -> Option<Millis> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
}

/// `"12m 5s ago"`-style age of an RFC 3339 instant, in the words of every other duration
/// ([`crate::human`], issue #19).
pub(super) fn ago(ts: &str, now: Millis) -> String {
    match parse_ts(ts) {
        Some(t) if t <= now => format!("{} ago", fmt_dur((now - t) / 1000 * 1000)),
        Some(t) => format!("in {}", fmt_dur(t - now)),
        None => "unknown".into(),
    }
}

/// Seconds-precision display of a journal/state-file timestamp.
pub(super) fn short(ts: &str) -> String {
    parse_ts(ts).map_or_else(|| ts.to_string(), fmt_ms)
}

#[cfg(test)]
mod tests;
