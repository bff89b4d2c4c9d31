//! The trace parser of `simulate --trace` (hand-written YAML traces and journals) and the
//! decision machine behind it.
//!
//! Input: the bytes of a trace file.
//! Properties:
//! - loading and replaying never panic: bad input is an error naming the input;
//! - replay is deterministic and the journal keeps every decision: the journal written from a
//!   hand-written trace's run (as the daemon writes it) replays without a divergence.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use clusterrebootd::fsm::record::Record;
use clusterrebootd::journal::{JournalError, JournalOptions};
use clusterrebootd::replay::{self, DaemonJournal};
use libfuzzer_sys::fuzz_target;

/// This process's scratch directory.
fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| clusterrebootd::fuzzing::scratch_dir("trace"))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("work directory");
    let path = dir.join("trace.yaml");
    std::fs::write(&path, data).expect("write input");

    let Ok(trace) = replay::load(&path) else {
        return;
    };
    let mut records = Vec::new();
    let run = replay::run(&trace, |input, step| {
        let _ = replay::step_line(input, step);
        records.push(Record::new("fuzz-boot", input, step));
    });
    if trace.is_journal() || !matches!(run, Ok(None)) {
        return;
    }

    // Journal the run as the daemon does, then replay that journal: same decisions.
    let journal_path = dir.join("journal.jsonl");
    let (mut journal, _) =
        DaemonJournal::open(&journal_path, JournalOptions::default()).expect("new journal");
    for r in &records {
        match journal.append_no_sync(r) {
            Ok(_) => {}
            Err(JournalError::TooLarge { .. }) => return,
            Err(e) => panic!("append: {e}"),
        }
    }
    journal.sync().expect("sync");
    drop(journal);
    if records.is_empty() {
        return;
    }
    let recorded = replay::load(&journal_path).expect("the journal just written loads");
    assert!(recorded.is_journal());
    assert_eq!(
        recorded.items.len(),
        records.len(),
        "every record is read back"
    );
    match replay::run(&recorded, |_, _| {}) {
        Ok(None) => {}
        Ok(Some(d)) => panic!("the journal of a run diverges on replay: {d}"),
        Err(e) => panic!("the journal of a run does not replay: {e}"),
    }
});
