//! The fleet view (issue #17) on a real etcd with real daemons: every node publishes its
//! decision state under `<ns>/node_state/<node>` on transitions only, a dead daemon's entry
//! disappears with its lease, and `cluster status` shows the fleet table.

#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/node.rs"]
mod node;

use std::time::{Duration, Instant};

use node::*;

/// A node on etcd namespace `/fleet` with a short session lease (11 s: above the 10 s health
/// timeout, as the validation requires), so a killed daemon's record expires quickly.
fn fleet_node(name: &str, e: &etcd::Etcd) -> Node {
    let n = Node::named(
        name,
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /fleet\nmin_reboot_interval_sec: 0\n",
            e.endpoints().join(", ")
        ),
    );
    let cfg = n
        .read("config.yaml")
        .replace("lock_ttl_sec: 30", "lock_ttl_sec: 11");
    std::fs::write(n.path("config.yaml"), cfg).expect("config");
    n
}

/// `(value, version)` of a key; `version` counts the writes since the key was created.
fn get(e: &etcd::Etcd, key: &str) -> Option<(serde_json::Value, u64)> {
    let (ok, out) = e.etcdctl(None, &["get", key, "-w", "json"]);
    assert!(ok, "etcdctl get {key}: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
    let version = v["kvs"].as_array()?.first()?["version"].as_u64()?;
    let (ok, value) = e.etcdctl(None, &["get", key, "--print-value-only"]);
    assert!(ok, "etcdctl get {key}: {value}");
    let value = serde_json::from_str(value.trim()).ok()?;
    Some((value, version))
}

fn node_state(e: &etcd::Etcd, node: &str) -> Option<(serde_json::Value, u64)> {
    get(e, &format!("/fleet/node_state/{node}"))
}

fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Check passes the node has finished (journal records that end a pass).
fn passes(n: &Node) -> usize {
    n.read("state/journal.jsonl")
        .lines()
        .filter(|l| l.contains("\"outcome\":\"") && !l.contains("\"outcome\":null"))
        .count()
}

#[test]
fn node_state_is_published_on_transitions_only_and_vanishes_with_the_daemon() {
    let e = etcd::Etcd::start(1);
    let idle = fleet_node("node-idle", &e);
    std::fs::remove_file(idle.path("reboot-required")).expect("marker");
    let blocked = fleet_node("node-blocked", &e);
    std::fs::write(blocked.path("block"), "").expect("block");
    let mut di = idle.start();
    let mut db = blocked.start();

    // The first record (at start) does not know yet whether a reboot is needed; the first
    // pass's verdict is the second write.
    wait("node-idle's record after its first check", 20, || {
        node_state(&e, "node-idle").is_some_and(|(v, _)| v["reboot_required"] == false)
    });
    let (v, version) = node_state(&e, "node-idle").expect("record");
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["node"], "node-idle", "{v}");
    assert_eq!(v["reboot_required"], false, "{v}");
    assert_eq!(v["waiting_for"], serde_json::Value::Null, "{v}");
    assert_eq!(v["daemon_version"], env!("CARGO_PKG_VERSION"), "{v}");
    // Idle checks (one per second here) write nothing: after five more passes the key has
    // not been written again.
    let before = passes(&idle);
    idle.wait_for("five more idle passes", 30, |n| passes(n) >= before + 5);
    let (_, later) = node_state(&e, "node-idle").expect("record");
    assert_eq!(later, version, "an idle check rewrote node_state");

    // The blocked node says what it waits for, in plain words, and which detector asks.
    wait("node-blocked's health block", 20, || {
        node_state(&e, "node-blocked")
            .is_some_and(|(v, _)| v["waiting_for"]["gate"] == "health_script")
    });
    let (v, version) = node_state(&e, "node-blocked").expect("record");
    assert_eq!(v["state"], "Idle", "{v}");
    assert_eq!(v["reboot_required"], true, "{v}");
    assert!(
        v["required_by"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("file:") && d.ends_with("reboot-required")),
        "{v}"
    );
    let detail = v["waiting_for"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("quorum would break"), "{v}");
    assert!(v["next_check_at"].is_string(), "{v}");
    // Blocked passes repeat with backoff (1-2 s here); each ends with a new next check, so a
    // blocked node writes once per blocked pass, never more.
    let before = passes(&blocked);
    blocked.wait_for("three more blocked passes", 30, |n| passes(n) >= before + 3);
    let (_, later) = node_state(&e, "node-blocked").expect("record");
    let written = later - version;
    let done = passes(&blocked) - before;
    assert!(
        written <= done as u64 + 1,
        "{written} writes for {done} blocked passes"
    );

    // Unblocked, it takes the slot, "reboots" and the record says Rebooting.
    std::fs::remove_file(blocked.path("block")).expect("unblock");
    wait("node-blocked's reboot", 30, || {
        !blocked.read("reboots.log").is_empty()
    });
    wait("the Rebooting record", 10, || {
        node_state(&e, "node-blocked").is_some_and(|(v, _)| v["state"] == "Rebooting")
    });

    // A dead daemon's record disappears with its session lease (11 s).
    di.kill().expect("kill");
    let _ = di.wait();
    wait("node-idle's record to expire", 30, || {
        node_state(&e, "node-idle").is_none()
    });
    sigterm(&mut db);
}

/// docs/PERFORMANCE.md "node_state writes": how many times one reboot cycle writes the record
/// (Idle → Locking → … → Rebooting, the reboot, Recovering → Idle), counted by etcd's own
/// per-key version. Printed for the docs; bounded so a write per step would fail.
#[test]
fn a_reboot_cycle_writes_node_state_a_handful_of_times() {
    let e = etcd::Etcd::start(1);
    let n = fleet_node("node-r", &e);
    let mut d = n.start();
    wait("the reboot command", 30, || {
        !n.read("reboots.log").is_empty()
    });
    wait("the Rebooting record", 10, || {
        node_state(&e, "node-r").is_some_and(|(v, _)| {
            v["state"] == "Rebooting"
                && v["reason"].as_str().is_some_and(|r| r.contains("shutdown"))
        })
    });
    let (_, at_reboot) = node_state(&e, "node-r").expect("record");
    // The "reboot": the daemon stops (its session lease dies), the node comes back on a new
    // boot id. The Rebooting record rides on the reboot lease and stays visible meanwhile.
    sigterm(&mut d);
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let (v, _) = node_state(&e, "node-r").expect("the record outlives the daemon's shutdown");
    assert_eq!(v["state"], "Rebooting", "{v}");
    let mut d = n.start();
    wait("the recovered record", 30, || {
        node_state(&e, "node-r").is_some_and(|(v, _)| {
            v["state"] == "Idle" && v["last_reboot"].is_object() && v["reboot_required"] == false
        })
    });
    let (v, total) = node_state(&e, "node-r").expect("record");
    assert!(v["last_reboot"]["down_seconds"].is_number(), "{v}");
    let transitions = journal_states(&n)
        .iter()
        .filter(|(from, to, _)| from != to)
        .count();
    println!(
        "node_state writes: {at_reboot} from start to the reboot command, {total} for the whole cycle ({transitions} journal records with a state change)"
    );
    assert!(total <= 20, "{total} writes for one reboot cycle");
    sigterm(&mut d);
}
