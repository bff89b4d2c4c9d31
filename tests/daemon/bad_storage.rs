//! Bad storage never makes the daemon reboot, crash or lose the journal (SPEC §12.5): a full
//! state directory, and a journal damaged in the middle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::node;

use std::process::Command;

use node::*;

/// A tiny tmpfs mounted on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_dir_stops_reboots_until_space_returns() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_full_state_dir_stops_reboots_until_space_returns: needs root to mount a tmpfs"
        );
        return;
    }
    let n = Node::new("");
    let _fs = Tmpfs::mount(&n.path("state"), "256k");
    // Fill it completely.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1000"])
        .arg(format!("of={}", n.path("state/filler").display()))
        .status();
    let mut daemon = n.start();
    n.wait_for("passes that cannot be journaled", 20, |n| {
        n.read("daemon.log")
            .matches("\"event\":\"journal_error\"")
            .count()
            >= 3
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        n.read("reboots.log").is_empty(),
        "rebooted without a durable journal"
    );
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "daemon died on a full disk"
    );

    // Space returns: the next pass journals and reboots.
    std::fs::remove_file(n.path("state/filler")).expect("free space");
    n.wait_for("the reboot once the journal works", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    sigterm(&mut daemon);
}

#[test]
fn a_journal_damaged_in_the_middle_is_kept_aside_and_the_daemon_starts() {
    let n = Node::new("");
    std::fs::create_dir_all(n.path("state")).expect("mkdir");
    std::fs::write(
        n.path("state/journal.jsonl"),
        "{\"kind\":\"record\",\"seq\":1}\nthis is not json\n{\"kind\":\"record\",\"seq\":3}\n",
    )
    .expect("journal");
    let mut daemon = n.start();
    n.wait_for("the daemon to run on a new journal", 20, |n| {
        n.path("run/state.json").exists()
    });
    let log = n.read("daemon.log");
    assert!(log.contains("journal_corrupt"), "{log}");
    assert!(log.contains("line 1") || log.contains("line 2"), "{log}");
    let kept: Vec<_> = std::fs::read_dir(n.path("state"))
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("journal.jsonl.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the damaged journal must be kept");
    let old = std::fs::read_to_string(kept[0].path()).expect("read");
    assert!(old.contains("this is not json"));
    n.wait_for("a reboot cycle on the new journal", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    sigterm(&mut daemon);
}
