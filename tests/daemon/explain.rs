//! `status --explain [--json]` against a real local-backend daemon: the blocking gate and its
//! evidence come from the daemon's state file and journal; once the daemon is gone the command
//! says so and falls back to the dry-run evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::node;

use node::*;

#[test]
fn explains_a_health_block_then_falls_back_without_a_daemon() {
    let n = Node::new("");
    std::fs::write(n.path("block"), "").expect("block file");
    let mut daemon = n.start();
    n.wait_for("a health-blocked pass", 30, |n| {
        n.state()["outcome"] == "health_blocked"
    });

    let (code, out, err) = n.once(&["status", "--explain", "--json"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["daemon_running"], true, "{v:#}");
    assert_eq!(v["blocked_by"]["gate"], "health_script", "{v:#}");
    assert_eq!(v["blocked_by"]["evidence"]["exit_code"], 3, "{v:#}");
    assert_eq!(
        v["blocked_by"]["evidence"]["first_line"], "quorum would break",
        "{v:#}"
    );
    assert_eq!(v["blocked_by"]["evidence"]["phase"], "pre-lock", "{v:#}");
    assert!(
        v["transitions"].as_array().is_some_and(|t| !t.is_empty()),
        "{v:#}"
    );

    let (code, out, err) = n.once(&["status", "--explain"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("node node-1: "), "{out}");
    assert!(
        out.contains(
            "to unblock: fix the health script's check: it says \"quorum would break\" (exit 3)"
        ),
        "{out}"
    );
    assert!(out.contains("last "), "{out}");

    let pid = daemon.id();
    sigterm(&mut daemon);
    let (code, out, err) = n.once(&["status", "--explain"]);
    assert!(
        out.starts_with(&format!(
            "no running daemon (pid {pid} not running); dry-run evaluation instead:\n"
        )),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("status evaluation for node node-1"), "{out}");
    assert_eq!(code, 3, "the dry run is still health-blocked\n{out}\n{err}");

    let (code, out, _) = n.once(&["status", "--explain", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["daemon_running"], false, "{v:#}");
    assert_eq!(v["blocked_by"], serde_json::Value::Null);
}

#[test]
fn without_a_state_file_it_says_so_and_falls_back() {
    let n = Node::new("");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let (code, out, err) = n.once(&["status", "--explain"]);
    let expected = format!(
        "no running daemon (no state file at {}); dry-run evaluation instead:\n",
        n.path("run/state.json").display()
    );
    assert!(out.starts_with(&expected), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_corrupt_state_file_is_named_and_falls_back() {
    let n = Node::new("");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    std::fs::create_dir_all(n.path("run")).expect("run dir");
    std::fs::write(n.path("run/state.json"), "{\"pid\": 1, garbage").expect("state");
    let (code, out, err) = n.once(&["status", "--explain"]);
    assert!(
        out.starts_with("cannot explain from the daemon's files (state file "),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("state.json is corrupt"), "{out}");
    assert!(out.contains("dry-run evaluation instead:"), "{out}");
    assert_eq!(code, 0, "{out}\n{err}");
}
