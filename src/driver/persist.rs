//! The journal (SPEC §8): opened and replayed at start, appended with fsync before a step's
//! effects act (a step that only observes rides on the next fsync), compacted to a snapshot
//! plus a short tail.

use std::path::PathBuf;

use super::{Driver, TAIL};
use crate::coord::Coordinator;
use crate::fsm::record::Record;
use crate::fsm::*;
use crate::journal::{JournalError, JournalOptions};
use crate::replay::DaemonJournal;

impl<C: Coordinator> Driver<C> {
    fn journal_path(&self) -> PathBuf {
        self.node.settings.state_dir.join("journal.jsonl")
    }

    /// Opens the journal and rebuilds the machine from it without executing anything. A journal
    /// damaged in the middle is renamed aside (never deleted) and a fresh one started.
    pub(super) fn open_journal(&mut self) -> Result<(), JournalError> {
        let path = self.journal_path();
        let opened = match DaemonJournal::open(&path, JournalOptions::default()) {
            Err(JournalError::Corrupt { line, message, .. }) => {
                let moved = crate::journal::Journal::quarantine(&path)?;
                tracing::error!(
                    event = "journal_corrupt",
                    line,
                    message = %message,
                    moved_to = %moved.display(),
                    "journal {} line {line}: {message}; kept it aside as {} and starting a new one",
                    path.display(),
                    moved.display()
                );
                DaemonJournal::open(&path, JournalOptions::default())?
            }
            other => other?,
        };
        let (journal, loaded) = opened;
        for w in &loaded.warnings {
            tracing::warn!(event = "journal_warning", "{w}");
        }
        let mut m = match loaded.snapshot {
            Some(s) => Machine::restore(s),
            None => Machine::new(),
        };
        let mut diverged = 0usize;
        for (_, rec) in &loaded.records {
            let step = m.handle(&rec.input());
            if !rec.same_decision(&step) {
                diverged += 1;
            }
        }
        if diverged > 0 {
            tracing::warn!(
                event = "journal_replay_diverged",
                records = diverged,
                "this version decides differently on some recorded inputs; continuing from the replayed state"
            );
        }
        tracing::info!(
            event = "journal_restored",
            records = loaded.records.len(),
            state = %m.state().name(),
            "restored the machine from the journal"
        );
        self.machine = m;
        self.journal = Some(journal);
        Ok(())
    }

    /// Appends to the journal; returns whether the record is durable (always true without one).
    /// With `sync` false (a step whose effects only observe, [`Effect::only_observes`]) the
    /// record is written without fsync, and is durable once a later step syncs; the answer is
    /// then whether it was written.
    pub(super) fn append(&mut self, before: Snapshot, record: Record, sync: bool) -> bool {
        let Some(journal) = self.journal.as_mut() else {
            return !self.opts.persist;
        };
        let appended = if sync {
            journal.append(&record)
        } else {
            journal.append_no_sync(&record)
        };
        if let Err(e) = appended {
            tracing::error!(event = "journal_error", kind = e.kind(), error = %e, "cannot append to the journal; no reboot will start until it works");
            return false;
        }
        self.tail.push_back((before, record));
        if self.tail.len() > TAIL {
            self.tail.pop_front();
        }
        if journal.needs_compaction()
            && let Some((snap, _)) = self.tail.front()
        {
            let keep: Vec<Record> = self.tail.iter().map(|(_, r)| r.clone()).collect();
            if let Err(e) = journal.compact(snap, &keep) {
                tracing::warn!(event = "journal_compaction_failed", error = %e, "journal compaction failed; will retry");
            }
        }
        true
    }
}
