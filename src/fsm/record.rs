//! The journal record: one per handled input, enough to replay it and to explain it.

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::event::{Event, Input};
use super::types::{Millis, Outcome};
use super::{StateName, Step};
use crate::exit::Exit;

/// One handled input and what the machine did with it (`journal.jsonl` line, `kind: record`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Human-readable time of the input (RFC 3339, UTC).
    pub ts: String,
    /// Boot id of the process that handled it.
    pub boot_id: String,
    /// Exact input time in ms since the epoch (what replay feeds back).
    pub now: Millis,
    /// Jitter that came with the input.
    #[serde(default)]
    pub jitter: u32,
    /// The event.
    pub event: Event,
    /// State before.
    pub from: StateName,
    /// State after.
    pub to: StateName,
    /// Effects emitted, in order.
    pub effects: Vec<Effect>,
    /// One-line reason.
    pub reason: String,
    /// Go outcome, when a pass ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Exit code of the pass that ended, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
}

impl Record {
    /// Builds the record for `input` handled into `step` by a process on `boot_id`.
    pub fn new(boot_id: &str, input: &Input, step: &Step) -> Record {
        Record {
            ts: fmt_ts(input.now),
            boot_id: boot_id.to_string(),
            now: input.now,
            jitter: input.jitter,
            event: input.event.clone(),
            from: step.from,
            to: step.to,
            effects: step.effects.clone(),
            reason: step.reason.clone(),
            outcome: step.outcome,
            exit: step.exit,
        }
    }

    /// The input to feed back on replay.
    pub fn input(&self) -> Input {
        Input {
            now: self.now,
            jitter: self.jitter,
            event: self.event.clone(),
        }
    }

    /// Whether a recomputed step is the same decision (states, effects, outcome, exit code).
    /// The reason text may differ between versions without being a divergence.
    pub fn same_decision(&self, step: &Step) -> bool {
        self.from == step.from
            && self.to == step.to
            && self.effects == step.effects
            && self.outcome == step.outcome
            && self.exit == step.exit
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn fmt_ts(ms: Millis) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
    {
        Some(t) => format!("{t:.3}"),
        None => format!("{ms}ms"),
    }
}
