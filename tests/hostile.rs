//! Lost state and hostile input on a real etcd with real daemons (issue #20): nothing others
//! write, and nothing we lose, unlocks a reboot.

#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/node.rs"]
mod node;

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
