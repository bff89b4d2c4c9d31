//! Replay (SPEC §11 `simulate --trace`): feed the inputs of a recorded journal, or of a
//! hand-written trace, through a fresh machine and print every transition. For a journal the
//! recomputed decisions are compared with the recorded ones, so a new version can be checked
//! against production traces before it is rolled out.
//!
//! Hand-written traces are YAML lists of inputs:
//! ```yaml
//! - {at: "2026-11-24T22:00:00Z", event: {type: started, boot_id: a, config: {}}}
//! - {at: "2026-11-24T22:00:00Z", event: {type: tick, gates: {}}}
//! - {at: "2026-11-24T22:00:01Z", event: {type: detectors_evaluated, id: pending, result: {verdict: not_required}}}
//! ```
//! `at` is RFC 3339 (or `now` in ms since the epoch); `id: pending` stands for the id of the
//! request the machine is waiting for, so traces need not count ids.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::fsm::record::{Record, fmt_ts};
use crate::fsm::{Effect, Input, Machine, Snapshot, Step};
use crate::journal::{Journal, JournalError, JournalOptions};

/// The journal file type of the daemon: records plus machine snapshots.
pub type DaemonJournal = Journal<Record, Snapshot>;

/// Largest hand-written trace accepted.
const MAX_TRACE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a trace could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read {}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// The journal is damaged.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The trace is not valid YAML or not a list of inputs.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One input of a hand-written trace is invalid.
    #[error("{} input {index}: {message}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based position in the list.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// One input of a trace.
#[derive(Debug, Clone)]
pub enum TraceItem {
    /// From a journal: the input and what the machine did then.
    Recorded(Box<Record>),
    /// From a hand-written trace: time, jitter and the event still as YAML (`id: pending`
    /// is resolved when it is replayed).
    Written {
        /// Input time.
        now: u64,
        /// Jitter.
        jitter: u32,
        /// The event mapping.
        event: Value,
    },
}

/// A loaded trace.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Where it came from.
    pub path: PathBuf,
    /// Machine state to start from (journal snapshot), else a fresh machine.
    pub snapshot: Option<Snapshot>,
    /// The inputs in order.
    pub items: Vec<TraceItem>,
    /// Non-fatal problems (e.g. a torn last journal line).
    pub warnings: Vec<String>,
}

impl Trace {
    /// Whether the trace carries recorded decisions to verify.
    pub fn is_journal(&self) -> bool {
        self.items
            .first()
            .is_some_and(|i| matches!(i, TraceItem::Recorded(_)))
            || self.snapshot.is_some()
    }
}

/// Loads a journal (`*.jsonl`, JSON objects with `kind`) or a YAML trace.
pub fn load(path: &Path) -> Result<Trace, TraceError> {
    let text = crate::config::load::read_capped_with(path, MAX_TRACE_BYTES).map_err(|e| {
        TraceError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    if text.trim_start().starts_with('{') {
        let loaded = DaemonJournal::read(path, JournalOptions::default())?;
        return Ok(Trace {
            path: path.to_path_buf(),
            snapshot: loaded.snapshot,
            items: loaded
                .records
                .into_iter()
                .map(|(_, r)| TraceItem::Recorded(Box::new(r)))
                .collect(),
            warnings: loaded.warnings,
        });
    }
    let fmt_err = |message: String| TraceError::Format {
        path: path.to_path_buf(),
        message,
    };
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| fmt_err(e.to_string()))?;
    let Value::Sequence(list) = doc else {
        return Err(fmt_err("a trace must be a YAML list of inputs".into()));
    };
    let mut items = Vec::new();
    for (i, v) in list.into_iter().enumerate() {
        let bad = |message: String| TraceError::Input {
            path: path.to_path_buf(),
            index: i + 1,
            message,
        };
        let Value::Mapping(m) = v else {
            return Err(bad(
                "must be a mapping with `at` (or `now`) and `event`".into()
            ));
        };
        let now = match (m.get("at"), m.get("now")) {
            (Some(Value::String(s)), _) => s
                .parse::<jiff::Timestamp>()
                .map_err(|e| bad(format!("at: {e}")))
                .and_then(|t| {
                    u64::try_from(t.as_millisecond()).map_err(|_| bad("at: before 1970".into()))
                })?,
            (None, Some(Value::Number(n))) => n
                .as_u64()
                .ok_or_else(|| bad("now: must be milliseconds since the epoch".into()))?,
            _ => return Err(bad("needs `at: <RFC 3339>` or `now: <ms>`".into())),
        };
        let jitter = match m.get("jitter") {
            None => 0,
            Some(v) => v
                .as_u64()
                .and_then(|j| u32::try_from(j).ok())
                .ok_or_else(|| bad("jitter: must be an unsigned 32-bit number".into()))?,
        };
        let event = m
            .get("event")
            .cloned()
            .ok_or_else(|| bad("missing `event`".into()))?;
        items.push(TraceItem::Written { now, jitter, event });
    }
    Ok(Trace {
        path: path.to_path_buf(),
        snapshot: None,
        items,
        warnings: Vec::new(),
    })
}

/// The first place where a recomputed decision differs from the recorded one.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// 1-based index of the input in the trace.
    pub index: usize,
    /// What the journal says happened.
    pub recorded: Box<Record>,
    /// What this version decides.
    pub recomputed: Step,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.recorded;
        let c = &self.recomputed;
        writeln!(
            f,
            "divergence at input {} ({} {}):",
            self.index,
            r.ts,
            r.event.name()
        )?;
        writeln!(
            f,
            "  recorded:   {} -> {}  [{}]  outcome {:?} exit {:?}",
            r.from,
            r.to,
            effects_text(&r.effects),
            r.outcome,
            r.exit
        )?;
        write!(
            f,
            "  recomputed: {} -> {}  [{}]  outcome {:?} exit {:?}",
            c.from,
            c.to,
            effects_text(&c.effects),
            c.outcome,
            c.exit
        )
    }
}

/// Replays `trace`, calling `on_step` for every handled input (print it with [`step_line`]).
/// Returns the first divergence (for journals); hand-written traces never diverge.
pub fn run(
    trace: &Trace,
    mut on_step: impl FnMut(&Input, &Step),
) -> Result<Option<Divergence>, TraceError> {
    let mut m = match &trace.snapshot {
        Some(s) => Machine::restore(s.clone()),
        None => Machine::new(),
    };
    for (i, item) in trace.items.iter().enumerate() {
        let input = match item {
            TraceItem::Recorded(r) => r.input(),
            TraceItem::Written { now, jitter, event } => {
                let event = resolve_pending(event.clone(), m.state().pending());
                let event = serde_yaml_ng::from_value(event).map_err(|e| TraceError::Input {
                    path: trace.path.clone(),
                    index: i + 1,
                    message: format!("event: {e}"),
                })?;
                Input {
                    now: *now,
                    jitter: *jitter,
                    event,
                }
            }
        };
        let step = m.handle(&input);
        on_step(&input, &step);
        if let TraceItem::Recorded(r) = item
            && !r.same_decision(&step)
        {
            return Ok(Some(Divergence {
                index: i + 1,
                recorded: r.clone(),
                recomputed: step,
            }));
        }
    }
    Ok(None)
}

/// Replaces `id: pending` in an event mapping with the id the machine waits for.
fn resolve_pending(mut event: Value, pending: Option<u64>) -> Value {
    if let Value::Mapping(m) = &mut event
        && let Some(v) = m.get_mut("id")
        && v.as_str() == Some("pending")
    {
        *v = match pending {
            Some(p) => Value::Number(p.into()),
            None => Value::Null,
        };
    }
    event
}

/// One printed line: time, transition, event, effects, reason.
pub fn step_line(input: &Input, step: &Step) -> String {
    let outcome = step
        .outcome
        .map(|o| format!(" ({})", o.as_str()))
        .unwrap_or_default();
    format!(
        "{}  {:<11} -> {:<11} {:<22} [{}]{outcome}  {}",
        fmt_ts(input.now),
        step.from.as_str(),
        step.to.as_str(),
        input.event.name(),
        effects_text(&step.effects),
        step.reason
    )
}

/// Compact effect list: `RunDetectors#3, ScheduleTick@2026-…`.
pub fn effects_text(effects: &[Effect]) -> String {
    effects
        .iter()
        .map(|e| match e {
            Effect::ScheduleTick { at } => format!("ScheduleTick@{}", fmt_ts(*at)),
            Effect::Exit { code } => format!("Exit({})", code.code()),
            Effect::ExecuteReboot { id, dry_run, .. } if *dry_run => {
                format!("ExecuteReboot#{id}(dry-run)")
            }
            other => match other.id() {
                Some(id) => format!("{}#{id}", other.name()),
                None => other.name().to_string(),
            },
        })
        .collect::<Vec<_>>()
        .join(", ")
}
