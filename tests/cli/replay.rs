//! `simulate --trace`: the shipped example traces, and journal verification that detects an
//! edited record.

use std::path::{Path, PathBuf};

use clusterrebootd::fsm::record::Record;
use clusterrebootd::fsm::{Event, Machine};
use clusterrebootd::journal::JournalOptions;
use clusterrebootd::replay::{self, DaemonJournal};

use super::outcome;

fn example(name: &str) -> String {
    format!("{}/examples/traces/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_traces_replay_to_their_documented_end() {
    let cases = [
        ("clean-reboot.yaml", "Recovering  -> Idle"),
        ("health-blocked-then-passing.yaml", "HealthPre   -> Locking"),
        ("contention-window-closes.yaml", "[LeaveQueue"),
        (
            "window-closes-during-hooks.yaml",
            "[ClearInProgress, ReleaseSlot, ScheduleTick@2026-11-25T22:00:00.000Z] (window_outside_allow)",
        ),
    ];
    for (file, last_contains) in cases {
        let (code, out, err) = outcome(&["simulate", "--trace", &example(file)]);
        assert_eq!(code, 0, "{file}: {err}");
        let last = out.lines().last().unwrap_or_default();
        assert!(last.contains(last_contains), "{file}: last line {last:?}");
    }
}

/// Writes a real daemon journal by running the clean-reboot trace through the machine.
fn write_journal(dir: &Path) -> PathBuf {
    let trace = replay::load(Path::new(&example("clean-reboot.yaml"))).expect("trace");
    let path = dir.join("journal.jsonl");
    let (mut journal, _) = DaemonJournal::open(&path, JournalOptions::default()).expect("open");
    let mut boot = String::new();
    replay::run(&trace, |input, step| {
        if let Event::Started { boot_id, .. } = &input.event {
            boot = boot_id.clone();
        }
        journal
            .append(&Record::new(&boot, input, step))
            .expect("append");
    })
    .expect("replay");
    path
}

#[test]
fn a_recorded_journal_replays_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_journal(dir.path());
    let (code, out, err) = outcome(&["simulate", "--trace", &path.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replay identical: 23 inputs"), "{out}");
}

#[test]
fn an_edited_recorded_effect_is_reported_as_divergence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_journal(dir.path());
    let text = std::fs::read_to_string(&path).expect("read");
    // The last record completes the recovery; pretend the old version had only left the queue.
    assert!(text.contains("\"type\":\"complete_recovery\""));
    let at = text.find("\"type\":\"complete_recovery\"").expect("found");
    let end = at + text[at..].find('}').expect("object end");
    let edited = format!("{}\"type\":\"leave_queue\"{}", &text[..at], &text[end..]);
    std::fs::write(&path, edited).expect("write");
    let (code, _, err) = outcome(&["simulate", "--trace", &path.display().to_string()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("divergence at input 23"), "{err}");
    assert!(
        err.contains("recorded:   Recovering -> Idle  [PublishHealth, LeaveQueue"),
        "{err}"
    );
    assert!(
        err.contains("recomputed: Recovering -> Idle  [PublishHealth, CompleteRecovery"),
        "{err}"
    );
}

#[test]
fn a_journal_that_starts_with_a_snapshot_replays_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = replay::load(Path::new(&example("clean-reboot.yaml"))).expect("trace");
    let path = dir.path().join("journal.jsonl");
    let (mut journal, _) = DaemonJournal::open(&path, JournalOptions::default()).expect("open");
    // Keep the last 6 records after a snapshot of the machine as it was before them (taken at
    // the final window check in Rebooting).
    let mut m = Machine::new();
    let mut records = Vec::new();
    let mut snapshot = None;
    replay::run(&trace, |input, _| {
        if records.len() == 17 {
            snapshot = Some(m.snapshot());
        }
        let step = m.handle(input);
        records.push(Record::new("boot", input, &step));
    })
    .expect("replay");
    for r in &records {
        journal.append(r).expect("append");
    }
    journal
        .compact(&snapshot.expect("snapshot"), &records[17..])
        .expect("compact");
    let (code, out, err) = outcome(&["simulate", "--trace", &path.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replay identical: 6 inputs"), "{out}");
}

#[test]
fn a_bad_trace_names_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("t.yaml");
    std::fs::write(
        &p,
        "- {at: \"2026-11-24T22:00:00Z\", event: {type: nonsense}}\n",
    )
    .expect("write");
    let (code, _, err) = outcome(&["simulate", "--trace", &p.display().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("input 1: event:"), "{err}");
}
