//! End-to-end on the local backend: the real binary, real files, real processes, a fake reboot
//! command and a fake boot id file. The "reboot" is simulated: the fake command records the
//! request, the test stops the daemon with SIGTERM (as systemd would), writes a new boot id,
//! removes the reboot-required marker and starts the daemon again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::node;

use std::time::Duration;

use node::*;

#[test]
fn reboot_then_recovery_releases_the_local_slot() {
    let n = Node::new("");
    let mut daemon = n.start();
    n.wait_for("the fake reboot command", 30, |n| {
        n.read("reboots.log").lines().count() == 1
    });
    assert_eq!(n.read("reboots.log").trim(), "reboot -r node-1 node=node-1");
    n.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");
    let slot = n.read("state/slot.json");
    assert!(slot.contains("\"rebooting\""), "{slot}");
    // The shutdown's SIGTERM must not release the slot.
    sigterm(&mut daemon);
    assert!(
        n.path("state/slot.json").exists(),
        "slot released on SIGTERM in Rebooting"
    );
    let states = journal_states(&n);
    assert!(
        states
            .iter()
            .any(|(f, t, _)| f == "Cooldown" && t == "Rebooting"),
        "{states:?}"
    );
    assert!(
        states
            .last()
            .is_some_and(|(_, t, e)| t == "Rebooting" && e == "shutdown_requested"),
        "{states:?}"
    );

    // "Reboot": new boot id, update applied.
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let mut daemon = n.start();
    n.wait_for("recovery to finish", 30, |n| {
        !n.path("state/slot.json").exists()
    });
    n.wait_for("Idle after recovery", 10, |n| n.state()["state"] == "Idle");
    let marker: serde_json::Value =
        serde_json::from_str(&n.read("run/last-reboot.json")).expect("last-reboot.json");
    assert_eq!(marker["previous_boot_id"], "boot-a");
    assert_eq!(marker["boot_id"], "boot-b");
    assert!(!n.path("state/reboot-in-progress.json").exists());
    assert!(
        n.read("health.log").contains("post-reboot node-1"),
        "{}",
        n.read("health.log")
    );
    assert_eq!(
        n.read("reboots.log").lines().count(),
        1,
        "rebooted exactly once"
    );
    let states = journal_states(&n);
    assert!(
        states
            .iter()
            .any(|(f, t, e)| f == "Rebooting" && t == "Recovering" && e == "started"),
        "{states:?}"
    );
    assert_eq!(sigterm(&mut daemon), 0);
}

#[test]
fn failing_post_reboot_health_keeps_the_slot() {
    let n = Node::new("");
    let mut daemon = n.start();
    n.wait_for("the fake reboot command", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    n.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");
    sigterm(&mut daemon);
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    std::fs::write(n.path("fail-post-reboot"), "").expect("fail");
    let mut daemon = n.start();
    n.wait_for("two failing post-reboot checks", 30, |n| {
        n.read("health.log").matches("post-reboot").count() >= 2
    });
    assert_eq!(n.state()["state"], "Recovering");
    assert!(n.path("state/slot.json").exists(), "slot must stay held");
    // Fix it: the next retry passes and releases.
    std::fs::remove_file(n.path("fail-post-reboot")).expect("unfail");
    n.wait_for("release after the fix", 30, |n| {
        !n.path("state/slot.json").exists()
    });
    sigterm(&mut daemon);
}

#[test]
fn once_and_status_exit_codes_and_go_sections() {
    let n = Node::new("");
    // Health blocks: status exits 3 with the Go sections.
    std::fs::write(n.path("block"), "").expect("block");
    let (code, out, err) = n.once(&["status"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        out.starts_with("status evaluation for node node-1 (dry-run enforced)"),
        "{out}"
    );
    assert!(out.contains("pre-lock detector evaluations:"), "{out}");
    assert!(out.contains("pre-lock health: exit=3"), "{out}");
    assert!(out.contains("outcome: health_blocked - "), "{out}");
    std::fs::remove_file(n.path("block")).expect("unblock");

    // Kill switch: exit 5.
    std::fs::write(n.path("disable"), "").expect("kill switch");
    let (code, out, _) = n.once(&["status"]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains("outcome: kill_switch_active - kill switch"),
        "{out}"
    );
    std::fs::remove_file(n.path("disable")).expect("remove");

    // All clear: status says ready, plans the command, executes nothing.
    let (code, out, _) = n.once(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lock acquired"), "{out}");
    assert!(out.contains("outcome: ready - "), "{out}");
    assert!(
        out.contains("dry-run enabled: reboot command not executed"),
        "{out}"
    );
    assert!(n.read("reboots.log").is_empty());
    assert!(
        !n.path("state/journal.jsonl").exists(),
        "status must not write the journal"
    );

    // run --once --dry-run: same, journaled.
    let (code, out, _) = n.once(&["run", "--once", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("planned reboot command: "), "{out}");
    assert!(n.read("reboots.log").is_empty());
    assert!(n.path("state/journal.jsonl").exists());

    // run --once without dry-run: ready, slot released, nothing executed.
    let (code, out, _) = n.once(&["run", "--once"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("run without --once to execute the reboot command"),
        "{out}"
    );
    assert!(n.read("reboots.log").is_empty());
    assert!(!n.path("state/slot.json").exists());

    // No reboot required: no_action, after the health script ran in Go's `monitor` phase.
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let runs = n.read("health.log").lines().count();
    let (code, out, _) = n.once(&["run", "--once"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("outcome: no_action - no detectors require a reboot"),
        "{out}"
    );
    assert!(out.contains("monitor health: exit=0"), "{out}");
    let log = n.read("health.log");
    assert_eq!(log.lines().count(), runs + 1, "{log}");
    assert!(log.ends_with("monitor node-1 false\n"), "{log}");

    // ... and a failing script makes the one-shot pass exit 3, as in Go (a cron health probe).
    std::fs::write(n.path("block"), "").expect("block");
    for args in [&["run", "--once"][..], &["status"][..]] {
        let (code, out, err) = n.once(args);
        assert_eq!(code, 3, "{args:?}\n{out}\n{err}");
        assert!(
            out.contains("outcome: health_blocked - health script reported unhealthy during monitoring (exit 3)"),
            "{args:?}\n{out}"
        );
    }
    // `--skip-health` skips it.
    let (code, out, err) = n.once(&["status", "--skip-health"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn kill_switch_under_the_slot_aborts_the_reboot() {
    // The pre-reboot hook creates the kill switch and takes a while: the daemon notices it under
    // the slot, gives the slot back and never runs the reboot command.
    let n = Node::new("");
    script(
        &n.path("hook.sh"),
        &format!(
            "#!/bin/sh\ntouch {}\nsleep 3\n",
            n.path("disable").display()
        ),
    );
    let config = n.read("config.yaml")
        + &format!(
            "hooks: {{pre_reboot: [[{}]], timeout_sec: 10}}\n",
            n.path("hook.sh").display()
        );
    std::fs::write(n.path("config.yaml"), config).expect("config");
    let mut daemon = n.start();
    n.wait_for("the abort", 30, |n| {
        n.read("state/journal.jsonl").contains("reboot aborted")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        n.read("reboots.log").is_empty(),
        "rebooted despite the kill switch"
    );
    assert!(!n.path("state/slot.json").exists(), "slot not released");
    assert!(!n.path("state/reboot-in-progress.json").exists());
    sigterm(&mut daemon);
}

#[test]
fn dry_run_daemon_keeps_running_and_logs_what_it_would_do() {
    let n = Node::new("dry_run: true\nhealth_publish_interval_sec: 1\nhealth_stale_after_sec: 5\n");
    let mut daemon = n.start();
    n.wait_for("two dry-run passes", 30, |n| {
        n.read("daemon.log")
            .matches(r#""event":"dry_run_reboot""#)
            .count()
            >= 2
    });
    // The heartbeat runs the health script on its own schedule and publishes the result.
    n.wait_for("two heartbeats", 10, |n| {
        n.read("health.log").matches("heartbeat").count() >= 2
    });
    let record: serde_json::Value =
        serde_json::from_str(&n.read("state/health.json")).expect("health.json");
    assert_eq!(record["node"], "node-1");
    assert_eq!(record["healthy"], true);
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "dry-run daemon exited"
    );
    assert!(n.read("reboots.log").is_empty());
    assert_eq!(sigterm(&mut daemon), 0);
    // Logged once per dry-run reboot, never twice (it was, by the driver and the adapter).
    let logged = n
        .read("daemon.log")
        .matches(r#""event":"dry_run_reboot""#)
        .count();
    let decided = n
        .read("state/journal.jsonl")
        .matches(r#""type":"execute_reboot""#)
        .count();
    assert!(
        logged >= 2 && logged <= decided,
        "{logged} logs, {decided} decisions"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let n = Node::new("");
    std::fs::remove_file(n.path("reboot-required")).expect("nothing to do");
    let mut daemon = n.start();
    n.wait_for("first daemon up", 10, |n| n.path("run/state.json").exists());
    let (code, _, err) = n.once(&["run"]);
    assert_eq!(code, 1);
    assert!(err.contains("only one daemon"), "{err}");
    sigterm(&mut daemon);
}

/// Issue #12: an adapter that never answers, or whose task panics, does not freeze the daemon:
/// the request's deadline (or the panic) becomes `EffectTimedOut`, the pass ends, and the daemon
/// keeps checking. Test hook: `CLUSTERREBOOTD_TEST_STALL` / `CLUSTERREBOOTD_TEST_PANIC`.
#[test]
fn a_stalled_or_panicking_adapter_times_out_and_the_daemon_goes_on() {
    for (hook, effect, from, reason) in [
        (
            "CLUSTERREBOOTD_TEST_STALL",
            "RunDetectors",
            "Detecting",
            "detectors timed out",
        ),
        (
            "CLUSTERREBOOTD_TEST_PANIC",
            "RunHealthScript",
            "HealthPre",
            "health script (pre-lock) timed out",
        ),
    ] {
        let n = Node::new("");
        let mut d = n
            .cmd(&["run"])
            .env(hook, effect)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(n.path("daemon.log")).expect("log"))
            .spawn()
            .expect("spawn daemon");
        // The file detector's budget is its margin (10 s); a panic answers at once.
        let timed_out = |n: &Node| {
            n.read("state/journal.jsonl")
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|v| {
                    v["event"]["type"] == "effect_timed_out"
                        && v["from"] == from
                        && v["to"] == "Idle"
                        && v["reason"].as_str().is_some_and(|r| r.starts_with(reason))
                })
        };
        n.wait_for("the request to time out", 30, timed_out);
        assert!(n.read("reboots.log").is_empty(), "no reboot");
        assert!(
            n.read("daemon.log").contains("test_hook"),
            "the hook is logged loudly"
        );
        // Still running: the next pass is scheduled and the process is alive.
        assert!(d.try_wait().expect("wait").is_none(), "daemon exited");
        sigterm(&mut d);
    }
}

/// Go's report lines (issue #14): `status --skip-health` shows the skipped health block,
/// `--skip-lock` the Go message, and a non-dry `run --once` that reaches `ready` the hint line.
#[test]
fn skip_flags_and_the_ready_hint_print_the_go_lines() {
    let n = Node::new("");
    let (code, out, _) = n.once(&["status", "--skip-health", "--skip-lock"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "pre-lock health: exit=0 duration=0s\n  stdout: health script skipped during pre-lock (--skip-health)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("outcome: lock_skipped - lock acquisition skipped (--skip-lock)\n"),
        "{out}"
    );
    assert!(
        !out.contains("ready outcome reached"),
        "status is not run --once: {out}"
    );
    let (code, out, _) = n.once(&["run", "--once"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("outcome: ready - "), "{out}");
    assert!(
        out.ends_with("ready outcome reached; run without --once to execute the reboot command\n"),
        "{out}"
    );
    assert!(n.read("reboots.log").is_empty(), "--once never reboots");
}
