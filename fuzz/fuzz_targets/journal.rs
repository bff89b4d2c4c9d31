//! The journal reader (`journal.jsonl`: records and snapshots of the daemon) on real files,
//! with torn and corrupt lines.
//!
//! Input: the bytes of a journal file.
//! Properties:
//! - reading never panics: it gives the records, or a corrupt-journal error naming the line;
//! - a corrupt journal is refused by `open` as well and left byte for byte as it was;
//! - `open` keeps every record `read` returned (a torn last line is cut, nothing before it);
//!   afterwards the file reads without a warning;
//! - a torn write after valid records (half a line, no newline) never loses one of them, and
//!   appending after the repair gives back the old records plus the new one.
//!
//! A failed system call (`JournalError::Io`) says nothing about the bytes under test unless it
//! happens again: the input is checked once more from a fresh directory, and only a second
//! failure is a crash. (One CI run on 2026-12-06, on a machine short of disk, crashed at
//! `open torn` on an input that passed when run alone: `read` and `open` run the same scan, so
//! only a system call can make `open` refuse bytes that `read` just accepted.)
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clusterrebootd::fsm::Snapshot;
use clusterrebootd::fsm::record::Record;
use clusterrebootd::journal::{JournalError, JournalOptions, Loaded};
use clusterrebootd::replay::DaemonJournal;
use libfuzzer_sys::fuzz_target;

/// Small enough that an input can hold an oversized line.
const OPTS: JournalOptions = JournalOptions {
    max_records: 10_000,
    max_line_bytes: 8192,
};

/// This process's scratch directory.
fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| clusterrebootd::fuzzing::scratch_dir("journal"))
}

type Read = Loaded<Record, Snapshot>;

fn same(a: &Read, b: &Read, what: &str) {
    assert_eq!(a.snapshot, b.snapshot, "{what}: snapshot differs");
    assert_eq!(a.records, b.records, "{what}: records differ");
    assert_eq!(a.next_seq, b.next_seq, "{what}: next seq differs");
}

/// Half of the last line: what a power loss in the middle of its write leaves.
fn torn_tail(text: &[u8]) -> Vec<u8> {
    let last = text
        .split(|&b| b == b'\n')
        .rfind(|l| !l.is_empty())
        .unwrap_or(b"{\"kind\":\"record\",\"seq\":1,\"ts\":");
    last[..last.len().div_ceil(2)].to_vec()
}

fuzz_target!(|data: &[u8]| {
    if let Err(first) = check(data) {
        eprintln!("journal fuzz: {first}; checking the input again from a fresh directory");
        if let Err(again) = check(data) {
            panic!("a system call failed twice on this input: {first}; then: {again}");
        }
    }
});

/// The properties above for one input; `Err` only for a failed system call.
fn check(data: &[u8]) -> Result<(), JournalError> {
    let dir = dir();
    let _ = std::fs::remove_dir_all(dir);
    sys(std::fs::create_dir_all(dir), dir, "work directory")?;
    let path = dir.join("journal.jsonl");
    sys(std::fs::write(&path, data), &path, "write input")?;

    let first = match DaemonJournal::read(&path, OPTS) {
        Ok(l) => l,
        Err(JournalError::Corrupt { line, .. }) => {
            assert!(line >= 1, "lines are 1-based");
            match DaemonJournal::open(&path, OPTS) {
                Err(JournalError::Corrupt { .. }) => {}
                Err(e @ JournalError::Io { .. }) => return Err(e),
                Err(e) => panic!("read said corrupt, open says {e}"),
                Ok(_) => panic!("read said corrupt, open accepted it"),
            }
            assert_eq!(
                sys(std::fs::read(&path), &path, "read back")?,
                data,
                "a corrupt journal was changed"
            );
            return Ok(());
        }
        Err(e @ JournalError::Io { .. }) => return Err(e),
        Err(e) => panic!("unexpected error on a readable file: {e}"),
    };

    // Opening repairs a torn tail and keeps everything before it.
    let (journal, opened) = ok_or_io(DaemonJournal::open(&path, OPTS), "open after read")?;
    same(&first, &opened, "open after read");
    drop(journal);
    let repaired = sys(std::fs::read(&path), &path, "read back")?;
    assert!(data.starts_with(&repaired), "open only ever cuts the tail");
    let clean = ok_or_io(DaemonJournal::read(&path, OPTS), "read after repair")?;
    assert!(
        clean.warnings.is_empty(),
        "repaired journal still warns: {:?}",
        clean.warnings
    );
    same(&first, &clean, "read after repair");

    // A torn write after the valid records loses none of them.
    let mut torn = repaired.clone();
    torn.extend(torn_tail(&repaired));
    sys(std::fs::write(&path, &torn), &path, "write torn")?;
    let after_tear = ok_or_io(DaemonJournal::read(&path, OPTS), "read with torn tail")?;
    same(&first, &after_tear, "read with torn tail");
    assert_eq!(
        after_tear.warnings.len(),
        1,
        "the torn tail is reported once"
    );

    // Repair and append: the old records plus the new one, with the next sequence number.
    let Some((_, last)) = first.records.last().cloned() else {
        return Ok(());
    };
    let (mut journal, reopened) = ok_or_io(DaemonJournal::open(&path, OPTS), "open torn")?;
    same(&first, &reopened, "open with torn tail");
    let seq = match journal.append(&last) {
        Ok(seq) => seq,
        Err(JournalError::TooLarge { .. }) => return Ok(()),
        Err(e @ JournalError::Io { .. }) => return Err(e),
        Err(e) => panic!("append after repair: {e}"),
    };
    assert_eq!(seq, first.next_seq, "appended record gets the next seq");
    drop(journal);
    let grown = ok_or_io(DaemonJournal::read(&path, OPTS), "read after append")?;
    assert!(grown.warnings.is_empty(), "{:?}", grown.warnings);
    assert_eq!(grown.snapshot, first.snapshot);
    assert_eq!(grown.records.len(), first.records.len() + 1);
    assert_eq!(grown.records[..first.records.len()], first.records[..]);
    assert_eq!(grown.records.last(), Some(&(seq, last)));
    Ok(())
}

/// A failed system call of the target itself, as the journal would report it.
fn sys<T>(r: std::io::Result<T>, path: &Path, op: &'static str) -> Result<T, JournalError> {
    r.map_err(|error| JournalError::Io {
        path: path.to_path_buf(),
        op,
        error,
    })
}

/// The value; a failed system call handed up (checked again by the caller); any other error is
/// a crash naming `what`.
fn ok_or_io<T>(r: Result<T, JournalError>, what: &str) -> Result<T, JournalError> {
    match r {
        Err(e) if !matches!(e, JournalError::Io { .. }) => panic!("{what}: {e}"),
        r => r,
    }
}
