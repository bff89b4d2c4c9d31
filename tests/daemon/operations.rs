//! What an operator touches (issue #6): SIGHUP reload (valid and invalid), systemd notify
//! messages, and the /metrics endpoint of a running daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::node;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use node::*;

fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, sig).expect("kill");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn scrape(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (head.to_string(), body.to_string())
}

fn set_config(n: &Node, from: &str, to: &str) {
    let c = n.read("config.yaml");
    assert!(c.contains(from), "config lacks {from:?}");
    std::fs::write(n.path("config.yaml"), c.replace(from, to)).expect("config");
}

#[test]
fn sighup_applies_a_valid_window_change_and_rejects_an_invalid_file() {
    let port = free_port();
    let n = Node::new(&format!(
        "windows: {{deny: ['* 0:00-0:00']}}\nmetrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n"
    ));
    let mut daemon = n.start();
    n.wait_for("the window to deny", 30, |n| {
        n.read("run/state.json").contains("blocked by deny window")
    });

    // An invalid file: the old configuration stays, the error is logged and counted.
    let good = n.read("config.yaml");
    std::fs::write(
        n.path("config.yaml"),
        good.replace("check_interval_sec: 1", "check_interval_sec: -1"),
    )
    .expect("break config");
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    n.wait_for("the rejected reload to be logged", 10, |n| {
        n.read("daemon.log").contains("config_reload_failed")
    });
    assert!(
        n.read("daemon.log")
            .contains("check_interval_sec: must be a whole number ≥ 1")
    );
    let (_, body) = scrape(port, "/metrics");
    assert!(
        body.contains("clusterrebootd_config_reloads_total{result=\"invalid\"} 1"),
        "{body}"
    );
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "daemon died on a bad reload"
    );
    assert!(n.read("reboots.log").is_empty());

    // A valid change (no deny window): applied at once, the reboot goes ahead.
    std::fs::write(
        n.path("config.yaml"),
        good.replace("windows: {deny: ['* 0:00-0:00']}", "windows: {deny: []}"),
    )
    .expect("fix config");
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    n.wait_for("the reboot after the reload", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    let (_, body) = scrape(port, "/metrics");
    assert!(
        body.contains("clusterrebootd_config_reloads_total{result=\"applied\"} 1"),
        "{body}"
    );
    assert!(
        n.read("state/journal.jsonl")
            .contains("\"type\":\"config_reloaded\"")
    );

    // Restart-only fields are named, not applied.
    set_config(&n, "node_name: node-1", "node_name: renamed");
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    n.wait_for("the restart-only warning", 10, |n| {
        n.read("daemon.log")
            .contains("config_reload_restart_needed")
    });
    assert!(n.read("daemon.log").contains("node_name"));
    sigterm(&mut daemon);
}

#[test]
fn metrics_after_a_cycle_and_only_on_slash_metrics() {
    let port = free_port();
    let n = Node::new(&format!(
        "metrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n"
    ));
    let mut daemon = n.start();
    n.wait_for("the fake reboot", 30, |n| !n.read("reboots.log").is_empty());
    n.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");
    let (head, body) = scrape(port, "/metrics");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    for needle in [
        "clusterrebootd_build_info{",
        "clusterrebootd_fsm_state{state=\"Rebooting\"} 1",
        "clusterrebootd_fsm_state{state=\"Idle\"} 0",
        "clusterrebootd_fsm_transitions_total{from=\"Cooldown\",to=\"Rebooting\"} 1",
        "clusterrebootd_reboots_total{result=\"executed\"} 1",
        "clusterrebootd_lock_held 1",
        "clusterrebootd_detector_evaluations_total{phase=\"post-lock\",result=\"requires\"} 1",
        "clusterrebootd_health_checks_total{phase=\"pre-lock\",result=\"pass\"} 1",
        // Before the queue, under the slot, and once more right before the reboot command.
        "clusterrebootd_window_evaluations_total{result=\"allowed\"} 3",
        // Go's label value for an acquired lock (issue #14).
        "clusterrebootd_lock_attempts_total{result=\"success\"} 1",
        // The record each health gate publishes, counted as Go does (issue #14).
        "clusterrebootd_cluster_health_updates_total{phase=\"pre-lock\",result=\"success\",status=\"healthy\"} 1",
        "clusterrebootd_cluster_health_updates_total{phase=\"post-lock\",result=\"success\",status=\"healthy\"} 1",
        // Go's stages and phases (issue #14): the pass's first kill-switch check is pre-lock,
        // the one under the slot post-lock; the cooldown is read before the queue.
        "clusterrebootd_kill_switch_checks_total{result=\"inactive\",stage=\"pre-lock\"} 1",
        "clusterrebootd_kill_switch_checks_total{result=\"inactive\",stage=\"post-lock\"}",
        "clusterrebootd_cooldown_checks_total{phase=\"pre-lock\",result=\"inactive\"} 1",
        "clusterrebootd_cluster_health_checks_total{phase=\"pre-lock\",result=\"healthy\"} 1",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    // `/` is the fleet page (issue #17; with the local backend: this node only); every other
    // path is still 404.
    let (head, body) = scrape(port, "/");
    assert!(
        head.contains(" 200") && head.contains("text/html"),
        "{head}"
    );
    assert!(body.contains("<td>node-1</td>"), "{body}");
    let (head, _) = scrape(port, "/elsewhere");
    assert!(head.contains(" 404"), "{head}");
    sigterm(&mut daemon);

    // The "reboot": a new process on a new boot recovers and measures the reboot from the
    // journaled issue time (issue #12: it used to read a 20-record tail, lost after a restart).
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let mut daemon = n.start();
    n.wait_for("Idle after recovery", 30, |n| {
        n.state()["state"] == "Idle" && !n.path("state/slot.json").exists()
    });
    let (_, body) = scrape(port, "/metrics");
    assert!(
        body.contains("clusterrebootd_reboot_duration_seconds_count{unit=\"seconds\"} 1"),
        "{body}"
    );
    // The slot is held through the reboot and released by the new process after recovery:
    // Go's release histogram is there although the process restarted (issue #14).
    assert!(
        body.contains(
            "clusterrebootd_lock_release_seconds_count{result=\"success\",unit=\"seconds\"} 1"
        ),
        "{body}"
    );
    sigterm(&mut daemon);
}

/// Go's `error` result of a kill-switch check: the file cannot be checked (here: a path
/// below a regular file, ENOTDIR). The gate fails closed (`kill_switch_active`).
#[test]
fn an_unreadable_kill_switch_is_counted_as_go_s_error() {
    let port = free_port();
    let n = Node::new(&format!(
        "metrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n"
    ));
    let kill = n.path("disable");
    let below_a_file = n.path("reboot-required").join("disable");
    set_config(
        &n,
        &format!("kill_switch_file: {}", kill.display()),
        &format!("kill_switch_file: {}", below_a_file.display()),
    );
    let mut daemon = n.start();
    n.wait_for("the pass to end on the kill switch", 30, |n| {
        n.read("state/journal.jsonl")
            .contains("\"outcome\":\"kill_switch_active\"")
    });
    let (_, body) = scrape(port, "/metrics");
    assert!(
        body.contains(
            "clusterrebootd_kill_switch_checks_total{result=\"error\",stage=\"pre-lock\"}"
        ),
        "{body}"
    );
    assert!(n.read("reboots.log").is_empty());
    sigterm(&mut daemon);
}

#[test]
fn systemd_notify_ready_and_status_on_transitions() {
    let n = Node::new("");
    let sock_path = n.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut cmd = n.cmd(&["run"]);
    let mut daemon = cmd
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got
        .iter()
        .any(|m: &String| m.contains("STATUS=Rebooting: "))
    {
        let len = sock.recv(&mut buf).expect("a notify message in time");
        got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    assert!(got[0].contains("READY=1"), "first message {:?}", got[0]);
    assert!(
        got.iter().any(|m| m.contains("STATUS=Locking: ")),
        "{got:?}"
    );
    // Reload: RELOADING=1 then READY=1.
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    let mut reload = Vec::new();
    while !reload.iter().any(|m: &String| m.contains("READY=1")) {
        let len = sock.recv(&mut buf).expect("reload messages");
        reload.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    assert!(
        reload.iter().any(|m| m.contains("RELOADING=1")),
        "{reload:?}"
    );
    sigterm(&mut daemon);
}

#[test]
fn identical_outcomes_are_logged_once() {
    let n = Node::new("windows: {deny: ['* 0:00-0:00']}\nlog: {level: info, format: json}\n");
    let c = n
        .read("config.yaml")
        .replace("log: {level: debug, format: json}\n", "");
    std::fs::write(n.path("config.yaml"), c).expect("config");
    let mut daemon = n.start();
    // The window is closed for good: every pass ends with window_denied, retried after 1 s
    // (the next opening is beyond the 8-day horizon).
    n.wait_for("three denied passes", 30, |n| {
        n.read("state/journal.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["outcome"] == "window_denied")
            .count()
            >= 3
    });
    let log = n.read("daemon.log");
    let logged = log
        .lines()
        .filter(|l| l.contains("\"event\":\"outcome\"") && l.contains("window_denied"))
        .count();
    assert_eq!(logged, 1, "repeated outcome re-logged:\n{log}");
    sigterm(&mut daemon);
}
