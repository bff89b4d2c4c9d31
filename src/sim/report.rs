//! What a simulated run produced: every node's inputs and steps (its journal), a timeline of
//! state segments, the reboots, the event log, and any invariant violations.

use std::fmt::Write as _;

use crate::coord::memkv::MemKvStats;
use crate::fsm::{Input, Machine, Millis, StateName, Step};

/// What a node was doing during a segment of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// Its daemon was in this state.
    State(StateName),
    /// Powered off for a reboot.
    Down,
    /// Its daemon was dead (crash) and not yet restarted.
    Crashed,
}

impl Activity {
    /// Short label (Gantt legend, JSON).
    pub fn label(self) -> &'static str {
        match self {
            Activity::State(s) => s.as_str(),
            Activity::Down => "Down",
            Activity::Crashed => "Crashed",
        }
    }
}

/// A stretch of time (ms after the start) a node spent doing one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Start (ms after the run's start).
    pub from_ms: u64,
    /// End (ms after the run's start).
    pub to_ms: u64,
    /// What.
    pub activity: Activity,
}

/// One reboot of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootRecord {
    /// When the reboot command ran (ms after the start).
    pub issued_ms: u64,
    /// When the node was powered on again (ms after the start).
    pub back_ms: Option<u64>,
    /// When it released its slot after recovering (ms after the start).
    pub recovered_ms: Option<u64>,
}

/// A node that left the slot queue, or gave its slot back, without rebooting: when and why
/// (the planner says why, issue #19; kept for every run, it is rare and small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueExit {
    /// When (ms after the start).
    pub at_ms: u64,
    /// It held the slot (gave it back from `HealthPost`/`Cooldown`) rather than waiting.
    pub held: bool,
    /// The machine's reason.
    pub reason: String,
}

/// One node's part of the report.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// Node name.
    pub name: String,
    /// Its timeline.
    pub segments: Vec<Segment>,
    /// Its reboots in order.
    pub reboots: Vec<RebootRecord>,
    /// Each time it left the queue or gave the slot back without rebooting.
    pub queue_exits: Vec<QueueExit>,
    /// Every input its machines handled, in order across restarts (the journal's inputs).
    pub inputs: Vec<Input>,
    /// The step each input produced.
    pub steps: Vec<Step>,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When (ms after the start).
    pub at_ms: u64,
    /// Node index, or `None` for the world (faults, operator actions).
    pub node: Option<usize>,
    /// What happened.
    pub text: LogText,
}

/// The text of a log line, formatted only when printed (the simulator logs every transition
/// of every node; formatting them eagerly was a tenth of its time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogText {
    /// A machine transition with its reason.
    Transition {
        /// State before.
        from: StateName,
        /// State after.
        to: StateName,
        /// Why.
        reason: String,
    },
    /// Anything else (faults, power).
    Note(String),
}

impl std::fmt::Display for LogText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogText::Transition { from, to, reason } => write!(f, "{from} -> {to}: {reason}"),
            LogText::Note(s) => f.write_str(s),
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Wall-clock start of the simulation (ms since the epoch).
    pub start_ms: Millis,
    /// When the run stopped (ms after the start).
    pub end_ms: u64,
    /// When every node that needed a reboot had recovered and all was quiet, if it happened.
    pub finished_ms: Option<u64>,
    /// Per node.
    pub nodes: Vec<NodeReport>,
    /// The event log.
    pub log: Vec<LogLine>,
    /// Invariant violations (empty = the run is correct).
    pub violations: Vec<String>,
    /// Machine steps taken in total.
    pub steps: u64,
    /// A soak's reboot count and checkpoints (empty outside a soak).
    pub soak: Progress,
    /// The requests the fleet made of the simulated etcd over the run (its load, issue #18).
    pub kv_load: crate::coord::memkv::MemKvLoad,
}

/// `+1h02m03.004s`-style offset for logs.
pub fn fmt_offset(ms: u64) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("+{h}h{m:02}m{s:02}.{milli:03}s")
    } else {
        format!("+{m:02}m{s:02}.{milli:03}s")
    }
}

impl SimReport {
    /// Number of reboot commands executed.
    pub fn reboot_count(&self) -> usize {
        self.nodes.iter().map(|n| n.reboots.len()).sum()
    }

    /// The event log as text, one line per entry.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        for l in &self.log {
            let who = match l.node {
                Some(i) => self.nodes.get(i).map_or("?", |n| n.name.as_str()),
                None => "world",
            };
            let _ = writeln!(out, "{} {who:<8} {}", fmt_offset(l.at_ms), l.text);
        }
        out
    }

    /// Per-node timeline of transitions (for failure reports).
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let _ = writeln!(out, "{}:", n.name);
            for s in &n.segments {
                let _ = writeln!(
                    out,
                    "  {} .. {}  {}",
                    fmt_offset(s.from_ms),
                    fmt_offset(s.to_ms),
                    s.activity.label()
                );
            }
        }
        out
    }

    /// Replays every node's inputs through one fresh machine each and compares every decision
    /// with the recorded one (the journal's promise: replay reproduces the run). Returns the
    /// first divergence.
    pub fn replay_divergence(&self) -> Option<String> {
        for n in &self.nodes {
            let mut m = Machine::new();
            for (k, (input, step)) in n.inputs.iter().zip(&n.steps).enumerate() {
                let again = m.handle(input);
                if &again != step {
                    return Some(format!(
                        "{} input {k} ({}): recorded {} -> {}, replayed {} -> {}",
                        n.name,
                        input.event.name(),
                        step.from,
                        step.to,
                        again.from,
                        again.to
                    ));
                }
            }
        }
        None
    }

    /// A readable failure report: seed, violations, timeline and the tail of the log.
    pub fn failure_text(&self) -> String {
        let mut out = format!(
            "seed {} violated {} invariant(s) (re-run alone with CLUSTERREBOOTD_SIM_SEED={}):\n",
            self.seed,
            self.violations.len(),
            self.seed
        );
        for v in &self.violations {
            let _ = writeln!(out, "  - {v}");
        }
        out.push_str("timeline:\n");
        out.push_str(&self.timeline());
        out.push_str("event log:\n");
        out.push_str(&self.log_text());
        out
    }
}

/// One checkpoint: figures after `reboots` reboot commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Reboot commands so far.
    pub reboots: u64,
    /// Machine steps so far.
    pub steps: u64,
    /// Simulated time since the start (ms).
    pub sim_ms: u64,
    /// Real time since the start (ms).
    pub wall_ms: u64,
    /// Resident memory of the process now (`VmRSS`, KiB; 0 where unknown).
    pub rss_kib: u64,
    /// Peak resident memory of the process so far (`VmHWM`, KiB; 0 where unknown).
    pub peak_rss_kib: u64,
    /// The simulated etcd's size (compacted at most [`super::soak::HOUSEKEEPING_EVERY`] reboots ago).
    pub kv: MemKvStats,
    /// Segments, reboot records and log lines the report holds.
    pub retained: usize,
}

/// A soak's progress, kept in the world and handed out with the report.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Reboot commands so far, all nodes.
    pub reboots: u64,
    /// Reboot commands per node.
    pub per_node: Vec<u64>,
    /// Checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// The requested number of cycles was reached.
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_like_durations() {
        assert_eq!(fmt_offset(0), "+00m00.000s");
        assert_eq!(fmt_offset(61_001), "+01m01.001s");
        assert_eq!(fmt_offset(3_723_004), "+1h02m03.004s");
    }
}
