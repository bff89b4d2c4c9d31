//! Lost state and hostile input on a real etcd with real daemons (issue #20): nothing others
//! write, and nothing we lose, unlocks a reboot.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::node;

use std::time::Duration;

use node::*;

const NS: &str = "/hostile";

fn etcd_node(name: &str, e: &etcd::Etcd, extra: &str) -> Node {
    Node::named(
        name,
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: {NS}\nmin_reboot_interval_sec: 0\n{extra}",
            e.endpoints().join(", ")
        ),
    )
}

/// Keys under `prefix` (below the namespace).
fn keys(e: &etcd::Etcd, prefix: &str) -> Vec<String> {
    let (ok, out) = e.etcdctl(
        None,
        &["get", "--prefix", "--keys-only", &format!("{NS}{prefix}")],
    );
    assert!(ok, "etcdctl get {prefix}: {out}");
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn put(e: &etcd::Etcd, key: &str, value: &str) {
    let (ok, out) = e.etcdctl(None, &["put", &format!("{NS}{key}"), value]);
    assert!(ok, "etcdctl put {key}: {out}");
}

fn reboots(n: &Node) -> usize {
    n.read("reboots.log").lines().count()
}

/// The node runs its reboot command (the fake one only logs, so the daemon waits for a
/// shutdown that never comes), and is stopped there; then `lose` does something to its journal
/// and the daemon starts again on the same boot: it must neither run the reboot command again
/// nor take a second slot (K=2), and it must recover normally once the node really reboots.
fn lost_journal_between_command_and_recovery(lose: impl Fn(&Node)) {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e, "max_concurrent_reboots: 2\n");
    let mut d = a.start();
    a.wait_for("the reboot command", 30, |n| reboots(n) == 1);
    a.wait_for("the wait for the shutdown", 10, |n| {
        n.state()["state"] == "Rebooting"
    });
    sigterm(&mut d);
    assert_eq!(keys(&e, "/cluster/clusterrebootd/lock/").len(), 1);
    lose(&a);

    let mut d = a.start();
    a.wait_for("the reconciled state", 20, |n| {
        n.state()["state"] == "Rebooting"
            && n.state()["reason"]
                .as_str()
                .is_some_and(|r| r.contains("never run again on this boot"))
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        reboots(&a),
        1,
        "the reboot command ran a second time on the same boot"
    );
    assert_eq!(
        keys(&e, "/cluster/clusterrebootd/lock/").len(),
        1,
        "a second queue entry for the same node"
    );
    assert_eq!(
        a.state()["state"],
        "Rebooting",
        "{}",
        a.read("run/state.json")
    );

    // The node really reboots now: the daemon recovers and releases the slot.
    sigterm(&mut d);
    std::fs::write(a.path("boot_id"), "boot-b\n").expect("boot id");
    let _ = std::fs::remove_file(a.path("reboot-required"));
    let mut d = a.start();
    a.wait_for("the recovery", 30, |n| {
        n.state()["state"] == "Idle" && !n.read("run/last-reboot.json").is_empty()
    });
    a.wait_for("the slot and the marker to go", 10, |_| {
        keys(&e, "/cluster/clusterrebootd/lock/").is_empty()
            && keys(&e, "/reboot_in_progress/").is_empty()
    });
    assert_eq!(reboots(&a), 1);
    sigterm(&mut d);
}

#[test]
fn a_garbage_line_in_the_journal_does_not_reboot_twice() {
    lost_journal_between_command_and_recovery(|n| {
        let text = n.read("state/journal.jsonl");
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 4, "{text}");
        let mid = lines.len() / 2;
        lines.insert(mid, "{\"seq\": garbage");
        std::fs::write(n.path("state/journal.jsonl"), lines.join("\n") + "\n").expect("write");
    });
}

#[test]
fn a_deleted_journal_and_lease_file_do_not_reboot_twice() {
    // Worst case: the journal and the persisted reboot lease are both gone; etcd still holds
    // the node's entry on the reboot lease and its in-progress marker.
    lost_journal_between_command_and_recovery(|n| {
        std::fs::remove_file(n.path("state/journal.jsonl")).expect("rm journal");
        std::fs::remove_file(n.path("state/reboot-lease.json")).expect("rm lease file");
    });
}

/// A record that does not parse, or one under another node's key, must not make the
/// thresholds pass: with `min_healthy_fraction: 0.5` of 4 nodes two peers must be healthy.
#[test]
fn unreadable_or_impostor_health_records_do_not_unlock_a_reboot() {
    let e = etcd::Etcd::start(1);
    let now = jiff::Timestamp::now().to_string();
    let healthy = |n: &str| format!(r#"{{"node":"{n}","healthy":true,"reported_at":"{now}"}}"#);
    put(&e, "/cluster_health/n2", &healthy("n2"));
    put(&e, "/cluster_health/n3", "this is not JSON");
    let a = etcd_node(
        "node-a",
        &e,
        "cluster_policies: {min_healthy_fraction: 0.5}\n",
    );
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("unreadable health records not counted healthy: n3"),
        "{out}"
    );
    // An impostor record under another key claiming to be n3 does not count for n3.
    put(&e, "/cluster_health/n3", &healthy("n3-other"));
    put(&e, "/cluster_health/zzz", &healthy("n3"));
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 3, "{out}");
    // n3 healthy for real: 2 of 4 (n2, n3; node-a counts as down; zzz is unreadable) → passes.
    put(&e, "/cluster_health/n3", &healthy("n3"));
    put(&e, "/cluster_health/zzz", &healthy("zzz"));
    let (code, out, _) = a.once(&["status"]);
    assert_eq!(code, 0, "{out}");
}

/// `cluster_policies` are hot: a SIGHUP that tightens them is obeyed by the next check.
#[test]
fn a_reload_that_tightens_the_policies_is_applied() {
    let e = etcd::Etcd::start(1);
    let now = jiff::Timestamp::now().to_string();
    put(
        &e,
        "/cluster_health/n2",
        &format!(r#"{{"node":"n2","healthy":true,"reported_at":"{now}"}}"#),
    );
    let a = etcd_node("node-a", &e, "");
    // Blocked first by the health script, so the daemon keeps checking without rebooting.
    std::fs::write(a.path("block"), "").expect("block");
    let mut d = a.start();
    a.wait_for("a blocked pass", 20, |n| {
        n.state()["outcome"] == "health_blocked"
    });
    let cfg = a.read("config.yaml")
        + "cluster_policies: {min_healthy_fraction: 0.5, min_healthy_absolute: 2}\n";
    std::fs::write(a.path("config.yaml"), cfg).expect("config");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("sighup");
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(a.path("block")).expect("unblock");
    a.wait_for("the tightened policy to block", 20, |n| {
        n.state()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("below minimum 2"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        reboots(&a),
        0,
        "rebooted with one healthy peer after the policies were tightened"
    );
    sigterm(&mut d);
}

/// etcd restored empty (disaster recovery) under a running daemon: the store's revision falls
/// below the one the node pinned. No new reboot starts until an operator accepts the store.
#[test]
fn an_etcd_restored_empty_fails_closed_until_accepted() {
    let mut e = etcd::Etcd::start(1);
    for i in 0..60 {
        put(&e, &format!("/filler/{i}"), "x");
    }
    let a = etcd_node("node-a", &e, "");
    std::fs::write(a.path("block"), "").expect("block");
    let mut d = a.start();
    a.wait_for("a blocked pass", 20, |n| {
        n.state()["outcome"] == "health_blocked"
    });
    a.wait_for("the pinned identity", 10, |n| {
        !n.read("state/etcd-identity.json").is_empty()
    });
    e.members[0].wipe_and_restart();
    e.wait_healthy(Duration::from_secs(20));
    std::fs::remove_file(a.path("block")).expect("unblock");
    a.wait_for("the store check to fail closed", 30, |n| {
        n.state()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not the one this node knows"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reboots(&a), 0, "rebooted on a store it does not know");
    let (code, out, err) = a.once(&["cluster", "accept-store"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("etcd store accepted"), "{out}");
    a.wait_for("the reboot on the accepted store", 30, |n| reboots(n) == 1);
    sigterm(&mut d);
}

/// `etcdctl put` with the value on stdin (a 1 MB argument is over the kernel's per-argument
/// limit).
fn put_stdin(e: &etcd::Etcd, key: &str, value: &[u8]) {
    use std::io::Write;
    let mut c = std::process::Command::new("etcdctl")
        .arg(format!("--endpoints={}", e.endpoints().join(",")))
        .args(["put", &format!("{NS}{key}")])
        .env("ETCDCTL_API", "3")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("etcdctl");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(value)
        .expect("write value");
    assert!(c.wait().expect("etcdctl").success(), "etcdctl put {key}");
}

/// Issue #20 row 3: a non-JSON entry with no lease under the lock prefix holds the slot
/// (good), and `status --explain` names the command that removes exactly that entry.
#[test]
fn a_foreign_queue_entry_is_removed_by_the_command_explain_names() {
    let e = etcd::Etcd::start(1);
    put(
        &e,
        "/cluster/clusterrebootd/lock/0bad",
        "not a daemon's JSON",
    );
    let a = etcd_node("node-a", &e, "");
    let mut d = a.start();
    // Queued behind it (not merely in Locking: the queue answer may still be on its way).
    a.wait_for("the wait behind the foreign entry", 20, |n| {
        n.state()["state"] == "Locking" && !n.state()["slot"]["queue_position"].is_null()
    });
    let (_, out, err) = a.once(&["status", "--explain"]);
    let cmd = "clusterrebootd cluster forget --key 0bad";
    assert!(
        out.contains(cmd),
        "explain does not name `{cmd}`:\n{out}{err}"
    );
    assert_eq!(reboots(&a), 0);
    let (code, out, err) = a.once(&["cluster", "forget", "--key", "0bad", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("removed queue entry /hostile/cluster/clusterrebootd/lock/0bad"),
        "{out}"
    );
    a.wait_for("the reboot once the entry is gone", 30, |n| reboots(n) == 1);
    // Nothing outside the lock prefix can be removed this way.
    let (code, _, err) = a.once(&["cluster", "forget", "--key", "../pause", "--yes"]);
    assert_eq!(code, 64, "{err}");
    // An entry under a nested key holds a slot too; explain names it by its whole key below
    // the prefix (tests/hostile_etcd.rs), and that is what `--key` removes.
    put(&e, "/cluster/clusterrebootd/lock/deep/0bad", "x");
    let (code, out, err) = a.once(&["cluster", "forget", "--key", "deep/0bad", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("removed queue entry /hostile/cluster/clusterrebootd/lock/deep/0bad"),
        "{out}"
    );
    let (code, _, err) = a.once(&["cluster", "forget", "--key", "deep//0bad", "--yes"]);
    assert_eq!(code, 64, "{err}");
    sigterm(&mut d);
}

/// Issue #20 row 4: a cooldown record that does not parse blocks every node (fail closed)
/// and `cluster status` says so instead of "cooldown: none".
#[test]
fn a_corrupt_cooldown_is_shown_as_corrupt() {
    let e = etcd::Etcd::start(1);
    put(&e, "/reboot_cooldown", "{\"node\": 12");
    let a = etcd_node("node-a", &e, "");
    let (code, out, err) = a.once(&["cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cooldown: CORRUPT") && out.contains("/hostile/reboot_cooldown"),
        "{out}"
    );
    let (_, out, _) = a.once(&["cluster", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        v["cooldown_corrupt"]
            .as_str()
            .is_some_and(|s| s.contains("not a cooldown record")),
        "{v:#}"
    );
    // Valid JSON with an impossible start is corrupt too.
    put(
        &e,
        "/reboot_cooldown",
        r#"{"node":"n2","started_at":"yesterday","duration_sec":60}"#,
    );
    let (_, out, _) = a.once(&["cluster", "status"]);
    assert!(out.contains("cooldown: CORRUPT"), "{out}");
}

/// Issue #20 row 5: ESC/BEL in a pause reason never reach the terminal raw, neither from
/// `cluster status` nor from `status --explain`.
#[test]
fn control_characters_in_a_pause_reason_are_escaped() {
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e, "");
    let evil = "patching\u{1b}]0;owned\u{7}\u{1b}[2J\rdone";
    let (code, _, err) = a.once(&["cluster", "pause", "--reason", evil]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = a.once(&["cluster", "status"]);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(
        out.contains(r"patching\u{1b}]0;owned\u{7}\u{1b}[2J\rdone"),
        "{out}"
    );
    let mut d = a.start();
    a.wait_for("the paused pass", 20, |n| {
        n.state()["outcome"] == "kill_switch_active"
    });
    let (_, out, _) = a.once(&["status", "--explain"]);
    assert!(out.contains("patching"), "{out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    sigterm(&mut d);
}

/// Issue #20 row 11: a 1 MB pause value was copied whole into state.json and every journal
/// record, and every journal append failed over its record limit. The reason is capped.
#[test]
fn a_huge_pause_reason_does_not_break_the_journal() {
    let e = etcd::Etcd::start(1);
    let reason = "x".repeat(1_000_000);
    put_stdin(
        &e,
        "/pause",
        format!(r#"{{"reason":"{reason}","by":"someone","at":"now"}}"#).as_bytes(),
    );
    let a = etcd_node("node-a", &e, "");
    let mut d = a.start();
    a.wait_for("the paused pass", 20, |n| {
        n.state()["outcome"] == "kill_switch_active"
    });
    std::thread::sleep(Duration::from_secs(2));
    let state = a.read("run/state.json");
    sigterm(&mut d);
    let log = a.read("daemon.log");
    assert!(!log.contains("journal_error"), "{}", tail(&log, 20));
    assert!(
        state.len() < 64 * 1024,
        "state.json is {} bytes",
        state.len()
    );
    assert!(
        state.contains("[truncated: 1000000 bytes in all]"),
        "{state}"
    );
    let journal = a.read("state/journal.jsonl");
    let longest = journal.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 64 * 1024, "a journal line of {longest} bytes");
    assert!(journal.contains("truncated"), "the pause was not journaled");
}

/// Issue #20 row 6: values under cluster_health/ adding up to more than one gRPC response
/// (4 MiB) fail every read; explain names that cause instead of "restore the connection".
#[test]
fn oversized_values_in_etcd_are_named_by_explain() {
    let e = etcd::Etcd::start(1);
    let big = vec![b'x'; 1_000_000];
    for i in 0..5 {
        put_stdin(&e, &format!("/cluster_health/junk{i}"), &big);
    }
    let a = etcd_node("node-a", &e, "");
    let mut d = a.start();
    a.wait_for("the failed read", 30, |n| {
        n.state()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("message length too large"))
    });
    let (_, out, err) = a.once(&["status", "--explain"]);
    assert!(
        out.contains("values under the namespace") && out.contains("too large"),
        "{out}{err}"
    );
    assert!(!out.contains("restore the connection"), "{out}");
    assert_eq!(reboots(&a), 0);
    sigterm(&mut d);
}

fn chmod(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Issue #20 row 2: a file dropped by another user into a world-writable `config.d/` set
/// `health_script`, and the daemon ran it as root. Such paths are refused by name; the
/// documented opt-out (main file only) turns that into a warning.
#[test]
fn files_other_users_can_write_are_refused() {
    let n = Node::new("");
    let d = n.path("config.d");
    std::fs::create_dir(&d).expect("mkdir");
    chmod(&d, 0o777);
    node::script(&n.path("evil.sh"), "#!/bin/sh\nexit 0\n");
    std::fs::write(
        d.join("zz.yaml"),
        format!("health_script: {}\n", n.path("evil.sh").display()),
    )
    .expect("drop-in");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!(
            "directory {} is writable by group and others (mode 0777)",
            d.display()
        )),
        "{err}"
    );
    let (code, _, err) = n.once(&["run", "--once"]);
    assert_eq!(code, 2, "run must refuse too: {err}");
    assert_eq!(reboots(&n), 0);

    // The opt-out in a drop-in does not excuse anything.
    std::fs::write(d.join("zzz.yaml"), "insecure_allow_writable_files: true\n").expect("w");
    let (code, _, err) = n.once(&["validate-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("only the main configuration file can set it"),
        "{err}"
    );
    std::fs::remove_file(d.join("zzz.yaml")).expect("rm");

    // In the main file it does: a warning, exit 0.
    let main = n.read("config.yaml");
    std::fs::write(
        n.path("config.yaml"),
        format!("{main}insecure_allow_writable_files: true\n"),
    )
    .expect("config");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning") && err.contains("allowed by insecure_allow_writable_files"),
        "{err}"
    );
    std::fs::write(n.path("config.yaml"), &main).expect("config");
    std::fs::remove_file(d.join("zz.yaml")).expect("rm");
    chmod(&d, 0o755);

    // A script others can write, and a world-writable run_dir.
    chmod(&n.path("health.sh"), 0o757);
    std::fs::create_dir(n.path("run")).expect("mkdir");
    chmod(&n.path("run"), 0o1777);
    let (code, _, err) = n.once(&["validate-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "health_script: file {} is writable by others (mode 0757)",
            n.path("health.sh").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "run_dir: directory {} is writable",
            n.path("run").display()
        )),
        "{err}"
    );
}

/// Issue #20 row 1: 1100 idle connections to the metrics port under systemd's 1024-fd limit
/// made the health script fail to start (EMFILE) and the node publish healthy:false, blocking
/// every peer. Here: 300 idle connections under a 128-fd limit. The listener holds only a
/// few of them, the heartbeat keeps publishing healthy, and a scrape works afterwards.
#[test]
fn idle_metrics_connections_do_not_make_the_node_unhealthy() {
    let e = etcd::Etcd::start(1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut a = etcd_node(
        "node-a",
        &e,
        &format!(
            "metrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\nhealth_publish_interval_sec: 1\n"
        ),
    );
    a.wrap = vec!["prlimit".into(), "--nofile=128:128".into(), "--".into()];
    std::fs::remove_file(a.path("reboot-required")).expect("rm marker");
    let mut d = a.start();
    let health = |e: &etcd::Etcd| {
        let (ok, out) = e.etcdctl(
            None,
            &[
                "get",
                "--print-value-only",
                &format!("{NS}/cluster_health/node-a"),
            ],
        );
        assert!(ok, "{out}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap_or(serde_json::Value::Null)
    };
    a.wait_for("the first heartbeat", 20, |_| health(&e)["healthy"] == true);
    // Connections beyond what the listener serves and the kernel's backlog holds wait in SYN
    // retries; a short connect timeout skips them.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<_> = (0..300)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    assert!(
        idle.len() > 128,
        "only {} connections: more than the fd limit are needed",
        idle.len()
    );
    // Several heartbeats while the connections are held.
    let before = health(&e)["reported_at"].clone();
    a.wait_for("newer heartbeats", 20, |_| {
        let h = health(&e);
        h["reported_at"] != before && h["healthy"] == true
    });
    std::thread::sleep(Duration::from_secs(3));
    let h = health(&e);
    assert_eq!(
        h["healthy"],
        true,
        "published {h}\n{}",
        tail(&a.read("daemon.log"), 20)
    );
    let log = a.read("daemon.log");
    assert!(!log.contains("Too many open files"), "{}", tail(&log, 20));
    drop(idle);
    // A scrape is answered (the idle connections are gone or closed by the server).
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut reply = String::new();
    c.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    sigterm(&mut d);
}

/// Issue #20: a command given as an interpreter and its script runs the script as root, so
/// the script is checked like the program: a world-writable one passed to `/bin/sh` is refused
/// by its argument's field, and only warned about with the main file's opt-out.
#[test]
fn a_writable_script_given_to_an_interpreter_is_refused() {
    let n = Node::new("");
    let script = n.path("drain.sh");
    node::script(&script, "#!/bin/sh\nexit 0\n");
    chmod(&script, 0o757);
    let main = n.read("config.yaml");
    std::fs::write(
        n.path("config.yaml"),
        format!(
            "{main}hooks: {{pre_reboot: [[/bin/sh, {}]]}}\n",
            script.display()
        ),
    )
    .expect("config");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 2, "{out}{err}");
    let why = format!(
        "hooks.pre_reboot[0][1]: file {} is writable by others (mode 0757)",
        script.display()
    );
    assert!(err.contains(&why), "{err}");
    let (code, _, err) = n.once(&["run", "--once"]);
    assert_eq!(code, 2, "run must refuse too: {err}");
    assert_eq!(reboots(&n), 0);

    // The main file's opt-out: a warning naming the same field, and the configuration loads.
    let cfg = n.read("config.yaml");
    std::fs::write(
        n.path("config.yaml"),
        format!("{cfg}insecure_allow_writable_files: true\n"),
    )
    .expect("config");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("warning") && err.contains(&why), "{err}");
}

/// A bare command name runs whatever `PATH` finds first, so a world-writable directory
/// searched before the real one is refused (naming it), like a writable program.
#[test]
fn a_writable_path_directory_ahead_of_a_bare_command_is_refused() {
    let n = Node::new("");
    let open = n.path("open-bin");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let main = n.read("config.yaml");
    std::fs::write(
        n.path("config.yaml"),
        format!("{main}hooks: {{post_reboot: [[true]]}}\n"),
    )
    .expect("config");
    let path = format!("{}:/usr/bin:/bin", open.display());
    let o = n
        .cmd(&["validate-config"])
        .env("PATH", &path)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "hooks.post_reboot[0][0]: directory {} is writable by group and others (mode 0777)",
            open.display()
        )) && err.contains("on PATH before `true`"),
        "{err}"
    );
    // The same command with only safe directories on PATH loads.
    let o = n
        .cmd(&["validate-config"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
