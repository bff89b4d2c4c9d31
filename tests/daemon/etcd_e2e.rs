//! Real daemons coordinating through a real etcd (issue #5 "done when"): two nodes that both
//! need a reboot, one slot. The second reboots only after the first is back and healthy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::node;

use std::time::Duration;

use node::*;

fn etcd_node(name: &str, e: &etcd::Etcd) -> Node {
    Node::named(
        name,
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /e2e\nmin_reboot_interval_sec: 0\n",
            e.endpoints().join(", ")
        ),
    )
}

/// Puts the queue entry a Go daemon holding the mutex would have.
fn hold_slot_as_go_daemon(e: &etcd::Etcd) {
    let (ok, out) = e.etcdctl(
        None,
        &[
            "put",
            "/e2e/cluster/clusterrebootd/lock/694d77b8e4a3c40b",
            r#"{"node":"go-node","pid":1,"acquired_at":"2026-11-27T10:00:00Z"}"#,
        ],
    );
    assert!(ok, "etcdctl put: {out}");
}

fn reboot(n: &Node, daemon: &mut std::process::Child, boot: &str) -> std::process::Child {
    sigterm(daemon);
    std::fs::write(n.path("boot_id"), format!("{boot}\n")).expect("boot id");
    let _ = std::fs::remove_file(n.path("reboot-required"));
    n.start()
}

#[test]
fn two_daemons_take_turns_through_etcd() {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e);
    let b = etcd_node("node-b", &e);
    let mut da = a.start();
    let mut db = b.start();
    let rebooted = |n: &Node| !n.read("reboots.log").is_empty();
    a.wait_for("one node to reboot", 30, |_| rebooted(&a) || rebooted(&b));
    let (first, dfirst, second, dsecond) = if rebooted(&a) {
        (&a, &mut da, &b, &mut db)
    } else {
        (&b, &mut db, &a, &mut da)
    };
    second.wait_for("the other node to queue", 20, |n| {
        n.state()["state"] == "Locking"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!rebooted(second), "two nodes rebooted at once");
    assert_eq!(second.state()["slot"]["queue_position"], 1);

    // The first node "reboots" and comes back on a new boot id.
    let mut dfirst = reboot(first, dfirst, "boot-2");
    first.wait_for("the first node to recover", 30, |n| {
        n.state()["state"] == "Idle" && !n.read("run/last-reboot.json").is_empty()
    });
    second.wait_for("the second node to reboot", 30, rebooted);
    assert_eq!(first.read("reboots.log").lines().count(), 1);

    // Journal evidence of the order: the second's reboot follows the first's release.
    let released_at = first
        .read("state/journal.jsonl")
        .lines()
        .filter(|l| l.contains("\"complete_recovery\"") && l.contains("\"from\":\"Recovering\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["now"].as_u64())
        .next()
        .expect("first node released after recovery");
    let rebooted_at = second
        .read("state/journal.jsonl")
        .lines()
        .filter(|l| l.contains("\"execute_reboot\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["now"].as_u64())
        .next()
        .expect("second node's reboot");
    assert!(
        rebooted_at >= released_at,
        "second rebooted at {rebooted_at} before the first released at {released_at}"
    );

    let mut dsecond = reboot(second, dsecond, "boot-2");
    second.wait_for("the second node to recover", 30, |n| {
        n.state()["state"] == "Idle" && !n.read("run/last-reboot.json").is_empty()
    });
    sigterm(&mut dfirst);
    sigterm(&mut dsecond);
}

#[test]
fn status_and_once_against_etcd() {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e);
    let (code, out, err) = a.once(&["status"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("outcome: ready - "), "{out}");
    // A slot held by someone else (here: a Go daemon's mutex key) → lock_unavailable (exit 4).
    hold_slot_as_go_daemon(&e);
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("outcome: lock_unavailable - "), "{out}");
    assert!(out.contains("go-node"), "{out}");
    // A peer that is rebooting under its slot is planned downtime: it does not block the
    // policy, the node would queue behind it (status: the slot is taken, exit 4).
    let b = etcd_node("node-b", &e);
    std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &e.endpoints()[0],
            "del",
            "--prefix",
            "/e2e/cluster/",
        ])
        .env("ETCDCTL_API", "3")
        .status()
        .expect("etcdctl");
    let mut db = b.start();
    b.wait_for("node-b to reboot", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("held by node-b"), "{out}");
    // Its slot gone (lease expired, node never came back) but its marker still there: that is
    // unplanned trouble and blocks before the lock (exit 3).
    sigterm(&mut db);
    let ok = std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &e.endpoints()[0],
            "del",
            "--prefix",
            "/e2e/cluster/clusterrebootd/lock/",
        ])
        .env("ETCDCTL_API", "3")
        .status()
        .expect("etcdctl");
    assert!(ok.success());
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("reboot in progress on node-b"), "{out}");
    assert!(out.contains("without a slot"), "{out}");
}

fn cluster(n: &Node, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["cluster"];
    all.extend_from_slice(args);
    n.once(&all)
}

#[test]
fn cluster_pause_request_and_forget() {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e);
    let (code, out, err) = cluster(&a, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("slots: 0 of 1 held"), "{out}");
    assert!(out.contains("paused: no"), "{out}");

    // Pause acts like the kill switch on every node.
    let (code, _, _) = cluster(&a, &["pause", "--reason", "quarterly audit"]);
    assert_eq!(code, 0);
    let (_, out, _) = cluster(&a, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pause"]["reason"], "quarterly audit", "{v}");
    assert!(
        v["pause"]["by"].as_str().is_some_and(|b| b.contains('@')),
        "{v}"
    );
    assert!(v["pause"]["at"].is_string(), "{v}");
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("cluster paused (quarterly audit"), "{out}");
    assert_eq!(cluster(&a, &["resume"]).0, 0);

    // A reboot request counts as "required" even when no detector says so.
    std::fs::remove_file(a.path("reboot-required")).expect("marker");
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("outcome: no_action"), "{out}");
    assert_eq!(cluster(&a, &["request-reboot", "node-a"]).0, 0);
    let (_, out, _) = cluster(&a, &["status"]);
    assert!(out.contains("reboot requests: node-a"), "{out}");
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reboot-request => reboot-required"), "{out}");
    assert!(out.contains("outcome: ready - "), "{out}");

    // A node that never came back blocks everyone through its marker until it is forgotten.
    std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &e.endpoints()[0],
            "put",
            "/e2e/reboot_in_progress/ghost",
            r#"{"node":"ghost","since":"2026-11-27T01:00:00Z"}"#,
        ])
        .env("ETCDCTL_API", "3")
        .status()
        .expect("etcdctl");
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("reboot in progress on ghost"), "{out}");
    let (_, out, _) = cluster(&a, &["status"]);
    assert!(out.contains("reboots in progress: ghost ("), "{out}");
    let (code, _, err) = cluster(&a, &["forget", "ghost"]);
    assert_eq!(code, 64, "no terminal and no --yes: refuse ({err})");
    let (code, out, _) = cluster(&a, &["forget", "ghost", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("/e2e/reboot_in_progress/ghost"), "{out}");
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn sigterm_while_queued_leaves_the_queue() {
    let e = etcd::Etcd::start(1);
    // Someone else (a Go daemon) holds the only slot.
    let (ok, out) = e.etcdctl(
        None,
        &[
            "put",
            "/e2e/cluster/clusterrebootd/lock/694d77b8e4a3c40b",
            r#"{"node":"go-node","pid":1,"acquired_at":"2026-11-27T10:00:00Z"}"#,
        ],
    );
    assert!(ok, "{out}");
    let b = etcd_node("node-b", &e);
    let mut db = b.start();
    b.wait_for("node-b to queue behind go-node", 20, |n| {
        n.state()["state"] == "Locking" && n.read("run/state.json").contains("go-node")
    });
    assert_eq!(b.state()["slot"]["queue_position"], 1);
    let keys = |e: &etcd::Etcd| {
        e.etcdctl(
            None,
            &[
                "get",
                "--prefix",
                "--keys-only",
                "/e2e/cluster/clusterrebootd/lock/",
            ],
        )
        .1
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    };
    assert_eq!(keys(&e), 2, "holder and waiter");
    assert_eq!(sigterm(&mut db), 0);
    assert_eq!(keys(&e), 1, "the waiter's entry must be gone");
    let last = b
        .read("state/journal.jsonl")
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains("\"from\":\"Locking\"") && last.contains("leave_queue"),
        "{last}"
    );
}

/// Issue #14: `run --once` never waits forever for a slot held by someone else: after the Go
/// daemon's 5 lock attempts (here 1 + 2 + 2 + 2 + 2 s of backoff) it exits 4 with
/// `lock_unavailable`, and leaves the queue.
#[test]
fn run_once_gives_up_after_the_go_lock_attempts() {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e);
    hold_slot_as_go_daemon(&e);
    let started = std::time::Instant::now();
    let (code, out, _) = a.once(&["run", "--once"]);
    let took = started.elapsed();
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("outcome: lock_unavailable - failed to acquire lock after 5 attempts"),
        "{out}"
    );
    assert!(
        took >= Duration::from_secs(8),
        "gave up too early: {took:?}"
    );
    let (_, keys) = e.etcdctl(
        None,
        &[
            "get",
            "--prefix",
            "--keys-only",
            "/e2e/cluster/clusterrebootd/lock/",
        ],
    );
    assert_eq!(
        keys.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "only the Go holder's key is left: {keys}"
    );
    // Like Go, the pass leaves this node's cluster_health record behind (issue #14).
    let (_, record) = e.etcdctl(
        None,
        &["get", "--print-value-only", "/e2e/cluster_health/node-a"],
    );
    assert!(
        record.contains("\"node\":\"node-a\"") && record.contains("\"healthy\":true"),
        "no cluster_health record after run --once: {record:?}"
    );
}

/// Starts `etcdctl lock NAME` (the concurrency mutex recipe the Go daemon uses on the lock
/// key); returns the child and a receiver of its stdout lines (the first one is printed when
/// the mutex is acquired).
fn etcdctl_lock(
    e: &etcd::Etcd,
    name: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("etcdctl")
        .arg(format!("--endpoints={}", e.endpoints().join(",")))
        .args(["lock", name])
        .env("ETCDCTL_API", "3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("etcdctl lock");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Issue #14, mixed fleet: a Go-style mutex holder (`etcdctl lock` on the lock key) and this
/// daemon exclude each other in both directions.
#[test]
fn an_etcdctl_lock_and_this_daemon_exclude_each_other() {
    let e = etcd::Etcd::start(1);
    let key = "/e2e/cluster/clusterrebootd/lock";
    // 1. The mutex is held elsewhere: the daemon queues and does not reboot.
    let (mut go, acquired) = etcdctl_lock(&e, key);
    acquired
        .recv_timeout(Duration::from_secs(20))
        .expect("etcdctl lock acquires the free mutex");
    let a = etcd_node("node-a", &e);
    let mut da = a.start();
    a.wait_for("node-a queued behind the mutex holder", 30, |n| {
        n.state()["state"] == "Locking" && !n.state()["slot"]["queue_position"].is_null()
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        a.read("reboots.log").is_empty(),
        "rebooted while the mutex was held elsewhere"
    );
    // Released (etcdctl unlocks on SIGTERM): the daemon takes it and reboots.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(go.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal etcdctl");
    let _ = go.wait();
    a.wait_for("the reboot after the mutex was released", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    a.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");

    // 2. The daemon holds the slot through its reboot: the Go-style locker must wait.
    let (mut go, acquired) = etcdctl_lock(&e, key);
    assert!(
        acquired.recv_timeout(Duration::from_secs(3)).is_err(),
        "etcdctl lock acquired the mutex while the daemon held the slot"
    );
    let mut da = reboot(&a, &mut da, "boot-b");
    a.wait_for("recovery to finish", 30, |n| n.state()["state"] == "Idle");
    acquired
        .recv_timeout(Duration::from_secs(30))
        .expect("etcdctl lock acquires once the daemon released the slot");
    let _ = go.kill();
    let _ = go.wait();
    assert_eq!(a.read("reboots.log").lines().count(), 1);
    sigterm(&mut da);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// Issue #14: the lock metrics carry Go's label values through a real contended slot — a
/// queued join is `contended`, a wait ended by the kill switch `canceled`, the hand-off
/// `success` — and the release after the reboot is measured by the restarted process.
#[test]
fn lock_metrics_use_go_s_label_values() {
    let e = etcd::Etcd::start(1);
    let key = "/e2e/cluster/clusterrebootd/lock";
    let (mut go, acquired) = etcdctl_lock(&e, key);
    acquired
        .recv_timeout(Duration::from_secs(20))
        .expect("etcdctl lock acquires the free mutex");
    let port = free_port();
    let a = Node::named(
        "node-a",
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /e2e\nmin_reboot_interval_sec: 0\nmetrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n",
            e.endpoints().join(", ")
        ),
    );
    let mut da = a.start();
    a.wait_for("node-a queued behind the mutex holder", 30, |n| {
        n.state()["state"] == "Locking" && !n.state()["slot"]["queue_position"].is_null()
    });
    let body = scrape_metrics(port);
    for needle in [
        "clusterrebootd_lock_attempts_total{result=\"contended\"} 1",
        "clusterrebootd_kill_switch_checks_total{result=\"inactive\",stage=\"pre-lock\"} 1",
        "clusterrebootd_cluster_health_checks_total{phase=\"pre-lock\",result=\"healthy\"} 1",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    assert!(
        !body.contains("lock_attempts_total{result=\"success\"}"),
        "{body}"
    );

    // The kill switch ends the wait: Go's `canceled`.
    std::fs::write(a.path("disable"), "").expect("kill switch");
    a.wait_for("the wait to be canceled", 30, |_| {
        scrape_metrics(port).contains("clusterrebootd_lock_attempts_total{result=\"canceled\"} 1")
    });
    std::fs::remove_file(a.path("disable")).expect("kill switch off");

    // The mutex is released: the next join gets the slot (maybe after waiting once more).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(go.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal etcdctl");
    let _ = go.wait();
    a.wait_for("the reboot", 60, |n| !n.read("reboots.log").is_empty());
    a.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");
    let body = scrape_metrics(port);
    for needle in [
        "clusterrebootd_lock_attempts_total{result=\"success\"} 1",
        "clusterrebootd_lock_acquire_seconds_count{result=\"success\",unit=\"seconds\"} 1",
        "clusterrebootd_kill_switch_checks_total{result=\"inactive\",stage=\"post-lock\"}",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    // Held through the reboot: not released by this process.
    assert!(!body.contains("lock_release_seconds_count"), "{body}");

    let mut da = reboot(&a, &mut da, "boot-b");
    a.wait_for("recovery to finish", 60, |n| n.state()["state"] == "Idle");
    a.wait_for("the release to be measured", 30, |_| {
        scrape_metrics(port).contains(
            "clusterrebootd_lock_release_seconds_count{result=\"success\",unit=\"seconds\"} 1",
        )
    });
    let body = scrape_metrics(port);
    assert!(
        body.contains("clusterrebootd_reboot_duration_seconds_count{unit=\"seconds\"} 1"),
        "{body}"
    );
    sigterm(&mut da);
}

/// Issue #16, through the real binary: a node in reboot group `db` whose group slot a peer
/// holds waits in the group's pool without taking a cluster slot; `status --explain` and
/// `cluster status` say so; `cluster forget` of the peer removes its group entry, and the node
/// then takes both slots, moves both onto the reboot lease and reboots.
#[test]
fn a_grouped_node_waits_for_its_group_then_takes_both_slots() {
    let e = etcd::Etcd::start(1);
    let port = free_port();
    let a = Node::named(
        "node-a",
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /e2e\nmin_reboot_interval_sec: 0\ngroup: db\ngroup_max_concurrent_reboots: 1\nmetrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n",
            e.endpoints().join(", ")
        ),
    );
    let (ok, out) = e.etcdctl(
        None,
        &[
            "put",
            "/e2e/reboot_group/db/1a",
            r#"{"node":"db-peer","pid":1,"acquired_at":"2026-11-27T10:00:00Z","state":"held"}"#,
        ],
    );
    assert!(ok, "{out}");
    let mut da = a.start();
    a.wait_for("node-a to wait for its group", 30, |n| {
        n.state()["state"] == "Locking" && n.read("state/journal.jsonl").contains("reboot group db")
    });
    let (code, out, err) = a.once(&["status", "--explain"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the slots of reboot group db are held by db-peer"),
        "{out}"
    );
    // The running daemon's /metrics says it waits in its group's pool, first in line.
    let body = scrape_metrics(port);
    for needle in [
        "\nclusterrebootd_lock_waiting_for_group 1\n",
        "\nclusterrebootd_lock_queue_position 1\n",
        "\nclusterrebootd_lock_held 0\n",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    let (code, out, err) = a.once(&["cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("slots: 0 of 1 held"),
        "no cluster slot taken: {out}"
    );
    assert!(
        out.contains("group db: 1 of 1 held\n  held: db-peer"),
        "{out}"
    );
    assert!(out.contains("  queued #1: node-a"), "{out}");
    // A Go daemon holds the cluster mutex: once db-peer is gone, node-a holds its group slot
    // and queues for the cluster pool, no longer waiting for its group.
    hold_slot_as_go_daemon(&e);
    let (code, out, err) = a.once(&["cluster", "forget", "db-peer", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/e2e/reboot_group/db/1a"), "{out}");
    a.wait_for("node-a to queue for the cluster slot", 30, |n| {
        n.state()["state"] == "Locking"
            && scrape_metrics(port).contains("\nclusterrebootd_lock_waiting_for_group 0\n")
    });
    let body = scrape_metrics(port);
    for needle in [
        "\nclusterrebootd_lock_queue_position 1\n",
        "\nclusterrebootd_lock_held 0\n",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    let (code, out, err) = a.once(&["cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  held: go-node"), "{out}");
    assert!(out.contains("  queued #1: node-a"), "{out}");
    assert!(
        out.contains("group db: 1 of 1 held\n  held: node-a"),
        "node-a holds its group slot: {out}"
    );
    let (ok, out) = e.etcdctl(
        None,
        &["del", "/e2e/cluster/clusterrebootd/lock/694d77b8e4a3c40b"],
    );
    assert!(ok, "{out}");
    a.wait_for("node-a to reboot", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    // Holding both slots now: no longer waiting for the group.
    let body = scrape_metrics(port);
    for needle in [
        "\nclusterrebootd_lock_waiting_for_group 0\n",
        "\nclusterrebootd_lock_held 1\n",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    let (_, dump) = e.etcdctl(None, &["get", "--prefix", "/e2e/"]);
    assert!(dump.contains("/e2e/reboot_group/db/"), "{dump}");
    assert!(dump.contains("/e2e/cluster/clusterrebootd/lock/"), "{dump}");
    let lease = a.read("state/reboot-lease.json");
    assert!(
        lease.contains("\"group_key\": \"/e2e/reboot_group/db/"),
        "{lease}"
    );
    let mut da = reboot(&a, &mut da, "boot-2");
    a.wait_for("node-a to recover", 30, |n| {
        n.state()["state"] == "Idle" && !n.read("run/last-reboot.json").is_empty()
    });
    let (_, dump) = e.etcdctl(None, &["get", "--prefix", "/e2e/"]);
    assert!(
        !dump.contains("/e2e/reboot_group/") && !dump.contains("/e2e/cluster/clusterrebootd/lock/"),
        "both entries released after recovery: {dump}"
    );
    // An entry in a group pool that is no node's record is removed by its relative name, the
    // one `status --explain` prints.
    let (ok, out) = e.etcdctl(None, &["put", "/e2e/reboot_group/db/2b", "garbage"]);
    assert!(ok, "{out}");
    let (code, out, err) = a.once(&["cluster", "forget", "--key", "reboot_group/db/2b", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("removed queue entry /e2e/reboot_group/db/2b"),
        "{out}"
    );
    sigterm(&mut da);
}

/// Issue #16: `group_policies` are evaluated among the members of the node's own group, read
/// from the `group` its peers publish in their health records. Cluster-wide, two healthy peers
/// meet `min_healthy_absolute: 2`; within group db only one does, so node-a is blocked, by a
/// reason that names the group. A second healthy member of db lets it reboot.
#[test]
fn a_group_policy_blocks_where_the_cluster_policy_would_pass() {
    let e = etcd::Etcd::start(1);
    let a = Node::named(
        "node-a",
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /e2e\nmin_reboot_interval_sec: 0\ngroup: db\nhealth_stale_after_sec: 600\ncluster_policies: {{min_healthy_absolute: 2}}\ngroup_policies: {{min_healthy_absolute: 2}}\n",
            e.endpoints().join(", ")
        ),
    );
    let record = |node: &str, group: Option<&str>| {
        let group = group
            .map(|g| format!(r#","group":"{g}""#))
            .unwrap_or_default();
        let value = format!(
            r#"{{"node":"{node}","healthy":true,"reported_at":"{}"{group}}}"#,
            jiff::Timestamp::now()
        );
        let (ok, out) = e.etcdctl(
            None,
            &["put", &format!("/e2e/cluster_health/{node}"), &value],
        );
        assert!(ok, "{out}");
    };
    record("db-2", Some("db"));
    record("web-1", None);
    let mut da = a.start();
    let reason = "in reboot group db: healthy nodes 1 below minimum 2 (this node counts as down)";
    a.wait_for("node-a to be blocked by its group's policy", 30, |n| {
        n.read("state/journal.jsonl").contains(reason)
    });
    let (code, out, err) = a.once(&["status", "--explain"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(reason), "{out}");
    assert!(
        out.contains("lower group_policies.min_healthy_absolute"),
        "the fix names group_policies: {out}"
    );
    assert_eq!(
        out.matches("healthy nodes").count(),
        out.matches(reason).count(),
        "the cluster-wide policy passes; only the group's blocks: {out}"
    );
    // Its own record names its group, for its peers.
    let (_, own) = e.etcdctl(
        None,
        &["get", "--print-value-only", "/e2e/cluster_health/node-a"],
    );
    assert!(own.contains(r#""group":"db""#), "{own}");
    assert!(a.read("reboots.log").is_empty(), "blocked, yet rebooted");
    // A second healthy member of db: the watch wakes node-a, and it reboots.
    record("db-3", Some("db"));
    a.wait_for("node-a to reboot", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    sigterm(&mut da);
}
