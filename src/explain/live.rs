//! Reading a running daemon's files (bounded, never trusted) and checking that it is alive.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::driver::state_file::StateFile;
use crate::fsm::record::Record;
use crate::fsm::types::Millis;
use crate::journal::JournalOptions;
use crate::replay::DaemonJournal;

use super::*;

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
    // The tail, the whole run of idle checks it ends with (they are counted), and before them
    // the last transitions that were not idle checks: on an idle node the tail is nothing but
    // idle checks, and the history an operator wants is older (issue #19).
    let idle = idle_marks(loaded.records.iter().map(|(_, r)| r));
    let idle_run = loaded
        .records
        .iter()
        .zip(&idle)
        .rposition(|((_, r), idle)| r.from != r.to && !idle)
        .map_or(0, |i| i + 1);
    let skip = loaded
        .records
        .len()
        .saturating_sub(TAIL_RECORDS)
        .min(idle_run);
    let mut older: Vec<Record> = loaded.records[..skip]
        .iter()
        .zip(&idle)
        .filter(|((_, r), idle)| r.from != r.to && !**idle)
        .map(|((_, r), _)| r.clone())
        .collect();
    older.drain(..older.len().saturating_sub(SHOWN_TRANSITIONS));
    let records = older
        .into_iter()
        .chain(loaded.records.into_iter().skip(skip).map(|(_, r)| r))
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
