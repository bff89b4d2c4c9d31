//! `<run_dir>/state.json`: what the running daemon is doing, rewritten atomically on every
//! transition. `status` (and operators' tooling) read it; the journal stays the record.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsm::record::fmt_ts;
use crate::fsm::{Millis, StateName, Step};

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Node name.
    pub node: String,
    /// Daemon pid.
    pub pid: u32,
    /// Boot id of this process.
    pub boot_id: String,
    /// Current state (written as its spec name, e.g. `Locking`): typed so a reader decides on
    /// the state, not on its spelling.
    pub state: StateName,
    /// When the current state was entered (RFC 3339).
    pub since: String,
    /// Reason of the last handled input.
    pub reason: String,
    /// Outcome of the last finished pass.
    pub outcome: Option<String>,
    /// When the machine next wakes up by itself (RFC 3339).
    pub next_tick_at: Option<String>,
    /// Slot details.
    pub slot: SlotInfo,
    /// When this file was written (RFC 3339).
    pub updated_at: String,
    /// Whether reboots are only logged.
    pub dry_run: bool,
}

/// What the state file says about the slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// This node holds a slot (or is between reboot and release).
    pub held: bool,
    /// Position in the queue while waiting.
    pub queue_position: Option<u32>,
    /// Current holders while waiting: `node since`.
    pub holders: Vec<String>,
}

impl StateFile {
    /// Builds the file content after `step`.
    #[allow(clippy::too_many_arguments)]
    pub fn after(
        node: &str,
        boot_id: &str,
        step: &Step,
        since: Millis,
        now: Millis,
        last_outcome: Option<String>,
        next_tick: Option<Millis>,
        slot: SlotInfo,
        dry_run: bool,
    ) -> StateFile {
        StateFile {
            node: node.to_string(),
            pid: std::process::id(),
            boot_id: boot_id.to_string(),
            state: step.to,
            since: fmt_ts(since),
            reason: step.reason.clone(),
            outcome: last_outcome,
            next_tick_at: next_tick.map(fmt_ts),
            slot,
            updated_at: fmt_ts(now),
            dry_run,
        }
    }

    /// Writes it atomically (readers see the old or the new file), without fsync: it is a
    /// snapshot for readers, rewritten at every transition and start (see
    /// [`crate::fsutil::write_status`]).
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_status(&run_dir.join("state.json"), &bytes)
    }
}
