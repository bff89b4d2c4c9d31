//! Derives this node's [`NodeState`] from what the driver observes after each step, and says
//! when it changed (only then is it written).
//!
//! The blocking gate and its plain-words reason come from the same code as `status --explain`
//! ([`crate::explain::explain`] over the state file and the journal tail), so the fleet
//! view and the per-node explanation never disagree.

use std::path::PathBuf;

use super::{LastReboot, NodeState, SCHEMA_VERSION, Waiting};
use crate::adapters::boot::{POST_REBOOT_MARKER, PostRebootMarker};
use crate::driver::state_file::StateFile;
use crate::explain;
use crate::fsm::record::Record;
use crate::fsm::{DetectorResult, Event, StateName, Step};

/// Remembers what was published and what the journal tail no longer shows (the last detector
/// verdict, the last reboot).
#[derive(Debug)]
pub struct Tracker {
    run_dir: PathBuf,
    kill_switch_file: String,
    last: Option<NodeState>,
    required: Option<bool>,
    required_by: Vec<String>,
    last_reboot: Option<LastReboot>,
    reboot_read: bool,
}

/// States that are not published: the steps of one check pass (see [`NodeState::state`]).
fn passing(s: StateName) -> bool {
    matches!(
        s,
        StateName::Detecting | StateName::WindowCheck | StateName::HealthPre
    )
}

impl Tracker {
    /// A tracker for a daemon whose files live in `run_dir`.
    pub fn new(run_dir: PathBuf, kill_switch_file: String) -> Self {
        Tracker {
            run_dir,
            kill_switch_file,
            last: None,
            required: None,
            required_by: Vec::new(),
            last_reboot: None,
            reboot_read: false,
        }
    }

    /// The last record returned by [`Tracker::observe`].
    pub fn last(&self) -> Option<&NodeState> {
        self.last.as_ref()
    }

    /// After a step: the new record when it differs from the last one, else `None`.
    /// `records` is the journal tail, oldest first, ending with this step's record.
    pub fn observe<'a>(
        &mut self,
        event: &Event,
        step: &Step,
        file: &StateFile,
        records: impl Iterator<Item = &'a Record>,
    ) -> Option<NodeState> {
        match event {
            Event::DetectorsEvaluated { result, .. } => match result {
                DetectorResult::Required { by } => {
                    self.required = Some(true);
                    self.required_by = by.clone();
                }
                DetectorResult::NotRequired => {
                    self.required = Some(false);
                    self.required_by.clear();
                }
                DetectorResult::Error { .. } => {
                    self.required = None;
                    self.required_by.clear();
                }
            },
            _ if step.from == StateName::Recovering && step.to == StateName::Idle => {
                // Rebooted and healthy: the next check tells whether another reboot is due.
                self.required = Some(false);
                self.required_by.clear();
            }
            _ => {}
        }
        if step.from != step.to || !self.reboot_read {
            self.last_reboot = read_last_reboot(&self.run_dir);
            self.reboot_read = true;
        }
        if passing(step.to) {
            return None;
        }
        let records: Vec<Record> = records.cloned().collect();
        let ctx = explain::Context {
            kill_switch_file: self.kill_switch_file.clone(),
            now: crate::driver::now_ms(),
        };
        let e = explain::explain(file, &records, &ctx);
        let waiting_for = e.blocked_by.map(|b| {
            // The script's own words say more than its exit code.
            let detail = match b.evidence.get("first_line").and_then(|v| v.as_str()) {
                Some(line) if !line.trim().is_empty() => {
                    format!("{}: \"{}\"", b.detail, line.trim())
                }
                _ => b.detail,
            };
            Waiting {
                gate: serde_json::to_value(b.gate)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".into()),
                detail: crate::text::cap(detail, super::MAX_TEXT),
                unblock: crate::text::cap(b.unblock, super::MAX_TEXT),
            }
        });
        let state = file.state.as_str().to_string();
        let since = match &self.last {
            Some(l) if l.state == state => {
                let same_gate = l.waiting_for.as_ref().map(|w| &w.gate)
                    == waiting_for.as_ref().map(|w| &w.gate);
                if same_gate {
                    l.since.clone()
                } else {
                    file.updated_at.clone()
                }
            }
            _ => file.since.clone(),
        };
        let idle = step.to == StateName::Idle;
        let rec = NodeState {
            version: SCHEMA_VERSION,
            node: file.node.clone(),
            state,
            since,
            reason: (!idle).then(|| crate::text::cap(file.reason.clone(), super::MAX_TEXT)),
            reboot_required: self.required,
            required_by: self.required_by.clone(),
            next_check_at: waiting_for.as_ref().and_then(|_| file.next_tick_at.clone()),
            waiting_for,
            queue_position: (step.to == StateName::Locking)
                .then_some(file.slot.queue_position)
                .flatten(),
            last_reboot: self.last_reboot.clone(),
            daemon_version: crate::version::VERSION.to_string(),
            dry_run: file.dry_run,
        };
        if self.last.as_ref() == Some(&rec) {
            return None;
        }
        self.last = Some(rec.clone());
        Some(rec)
    }
}

/// The last reboot from `<run_dir>/last-reboot.json`; `None` when absent or unreadable (a
/// broken marker is the operator's evidence file, not a reason to stop publishing).
fn read_last_reboot(run_dir: &std::path::Path) -> Option<LastReboot> {
    let m: PostRebootMarker = crate::fsutil::read_json(&run_dir.join(POST_REBOOT_MARKER))
        .ok()
        .flatten()?;
    Some(LastReboot {
        at: m.issued_at.unwrap_or(m.returned_at),
        down_seconds: m.down_seconds,
        recovered_at: m.recovered_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::state_file::SlotInfo;
    use crate::fsm::{Gates, Input, Outcome};

    fn step(from: StateName, to: StateName, reason: &str, outcome: Option<Outcome>) -> Step {
        Step {
            from,
            to,
            effects: Vec::new(),
            reason: reason.into(),
            outcome,
            exit: None,
        }
    }

    fn file(step: &Step, since: u64, now: u64, next: Option<u64>) -> StateFile {
        StateFile::after(
            "n1",
            "boot",
            step,
            since,
            now,
            step.outcome.map(|o| o.as_str().to_string()),
            next,
            SlotInfo::default(),
            false,
        )
    }

    fn record(event: &Event, step: &Step, now: u64) -> Record {
        let input = Input {
            now,
            jitter: 0,
            event: event.clone(),
        };
        Record::new("boot", &input, step)
    }

    /// Idle passes that find nothing to do give no new record; the check states are never
    /// published; a pass blocked by the kill switch is, with the same `since` on repeats.
    #[test]
    fn only_changes_are_published_and_since_survives_repeated_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Tracker::new(dir.path().to_path_buf(), "/etc/disable".into());
        let mut records = Vec::new();
        let mut observe = |t: &mut Tracker, event: Event, s: Step, now: u64, next| {
            records.push(record(&event, &s, now));
            let f = file(&s, now, now, next);
            t.observe(&event, &s, &f, records.iter())
        };
        let tick = Event::Tick {
            gates: Gates::default(),
        };
        let detecting = step(StateName::Idle, StateName::Detecting, "check started", None);
        assert_eq!(
            observe(&mut t, tick.clone(), detecting.clone(), 1_000, None),
            None
        );
        let clear = Event::DetectorsEvaluated {
            id: 1,
            result: DetectorResult::NotRequired,
        };
        let idle = step(
            StateName::Detecting,
            StateName::Idle,
            "no reboot required",
            Some(Outcome::NoAction),
        );
        let first = observe(&mut t, clear.clone(), idle.clone(), 1_100, Some(61_000))
            .expect("the first record");
        assert_eq!(first.reboot_required, Some(false));
        assert_eq!(first.waiting_for, None);
        assert_eq!(
            first.next_check_at, None,
            "no next check while nothing is awaited"
        );
        // The next idle pass: nothing changed, nothing to write.
        assert_eq!(
            observe(&mut t, tick.clone(), detecting.clone(), 61_000, None),
            None
        );
        assert_eq!(observe(&mut t, clear, idle, 61_100, Some(121_000)), None);

        // Blocked by the kill switch: a new record naming the gate; repeated blocks keep the
        // first block's `since` (only the next check moves).
        let killed = Event::Tick {
            gates: Gates {
                kill_switch: true,
                ..Gates::default()
            },
        };
        let blocked = step(
            StateName::Idle,
            StateName::Idle,
            "kill switch present",
            Some(Outcome::KillSwitchActive),
        );
        let b1 = observe(
            &mut t,
            killed.clone(),
            blocked.clone(),
            200_000,
            Some(205_000),
        )
        .expect("blocked record");
        let w = b1.waiting_for.clone().expect("waiting_for");
        assert_eq!(w.gate, "kill_switch");
        assert!(w.detail.contains("/etc/disable"), "{w:?}");
        let b2 =
            observe(&mut t, killed, blocked, 300_000, Some(305_000)).expect("next check moved");
        assert_eq!(b2.since, b1.since);
        assert_ne!(b2.next_check_at, b1.next_check_at);
    }
}
