//! The fleet view (issue #17) on a real etcd with real daemons: every node publishes its
//! decision state under `<ns>/node_state/<node>` on transitions only, a dead daemon's entry
//! disappears with its lease, `cluster status` shows the fleet table, the web page works in a
//! real headless chromium (`scripts/install-deps` installs it), and webhooks reach local
//! receivers (one of which hangs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::browser;
use crate::etcd;
use crate::node;
use crate::tls;

use std::time::{Duration, Instant};

use node::*;

/// A node on etcd namespace `/fleet` with a short session lease (11 s: above the 10 s health
/// timeout, as the validation requires), so a killed daemon's record expires quickly.
pub(crate) fn fleet_node(name: &str, e: &etcd::Etcd) -> Node {
    let n = Node::named(
        name,
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /fleet\nmin_reboot_interval_sec: 0\n",
            e.endpoints().join(", ")
        ),
    );
    ETCD_ENDPOINT.with(|ep| *ep.borrow_mut() = e.endpoints().first().cloned());
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

pub(crate) fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}\n{}", dump(e_for_dump()));
}

thread_local! {
    static ETCD_ENDPOINT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The etcd whose node_state records a timeout prints (set by [`fleet_node`]).
fn e_for_dump() -> Option<String> {
    ETCD_ENDPOINT.with(|e| e.borrow().clone())
}

fn dump(endpoint: Option<String>) -> String {
    let Some(ep) = endpoint else {
        return String::new();
    };
    std::process::Command::new("etcdctl")
        .args(["--endpoints", &ep, "get", "--prefix", "/fleet/"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
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

/// `cluster status` as an operator reads it: one line per node with its state and what it
/// waits for, the same in `--json`; `cluster pause` refuses an empty reason and says when it
/// replaces a pause; `cluster request-reboot` warns about a node nobody has heard of.
#[test]
fn cluster_status_shows_every_node_and_what_it_waits_for() {
    let e = etcd::Etcd::start(1);
    let a = fleet_node("node-a", &e);
    std::fs::remove_file(a.path("reboot-required")).expect("marker");
    let b = fleet_node("node-b", &e);
    std::fs::write(b.path("block"), "").expect("block");
    // node-c's kill switch (a health block there too would make node-b and node-c block each
    // other through the cluster policy: each is an unhealthy peer of the other).
    let c = fleet_node("node-c", &e);
    std::fs::write(c.path("disable"), "").expect("kill switch");
    let mut daemons = vec![a.start(), b.start(), c.start()];
    let gate =
        |n: &str, g: &str| node_state(&e, n).is_some_and(|(v, _)| v["waiting_for"]["gate"] == g);
    wait("all three records", 30, || {
        node_state(&e, "node-a").is_some_and(|(v, _)| v["reboot_required"] == false)
            && gate("node-b", "health_script")
            && gate("node-c", "kill_switch")
    });
    let (code, out, err) = a.once(&["cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    println!("--- cluster status\n{out}");
    let line = |node: &str| {
        out.lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no line for {node}:\n{out}"))
            .to_string()
    };
    assert!(out.starts_with("NODE "), "{out}");
    assert!(
        out.lines()
            .next()
            .is_some_and(|h| h.contains("WAITING FOR")),
        "{out}"
    );
    let la = line("node-a");
    assert!(
        la.contains("Idle") && la.contains("nothing (no reboot needed)"),
        "{out}"
    );
    let lb = line("node-b");
    assert!(
        lb.contains("Idle")
            && lb.contains("yes (file:")
            && lb.contains(
                "health_script: the health script (pre-lock) exited 3: \"quorum would break\""
            ),
        "{out}"
    );
    assert!(
        line("node-c").contains("kill_switch: the kill switch file"),
        "{out}"
    );
    assert!(out.contains("slots: 0 of 1 held"), "{out}");
    assert!(out.contains("paused: no"), "{out}");

    let (_, out, _) = a.once(&["cluster", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["schema_version"], 1, "{v:#}");
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(nodes, ["node-a", "node-b", "node-c"], "{v:#}");
    assert_eq!(
        v["nodes"][1]["record"]["waiting_for"]["gate"],
        "health_script"
    );
    assert_eq!(v["nodes"][0]["healthy"], true, "{v:#}");
    assert_eq!(v["pause"], serde_json::Value::Null);

    // node-b unblocked: it goes on, and `cluster status` follows it.
    std::fs::remove_file(b.path("block")).expect("unblock");
    wait("node-b's reboot", 30, || !b.read("reboots.log").is_empty());
    // The fleet view follows within the publisher's coalescing delay (100 ms).
    wait("node-b's record says Rebooting", 5, || {
        node_state(&e, "node-b").is_some_and(|(v, _)| v["state"] == "Rebooting")
    });
    let (_, out, _) = a.once(&["cluster", "status"]);
    println!("--- cluster status during node-b's reboot\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("node-b") && l.contains("Rebooting")),
        "{out}"
    );
    assert!(out.contains("held: node-b"), "{out}");

    // Pause: an empty reason is refused; a second pause says it replaced the first.
    let (code, _, err) = a.once(&["cluster", "pause", "--reason", "  "]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--reason must say why"), "{err}");
    let (code, out, _) = a.once(&["cluster", "pause", "--reason", "kernel rollout on hold"]);
    assert_eq!(code, 0);
    assert!(!out.contains("already paused"), "{out}");
    let (code, out, _) = a.once(&["cluster", "pause", "--reason", "until 14:00"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "the cluster was already paused: replaced the pause \"kernel rollout on hold (by "
        ),
        "{out}"
    );
    let (_, out, _) = a.once(&["cluster", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pause"]["reason"], "until 14:00", "{v:#}");
    // The paused nodes say so (node-a's next pass).
    wait("node-a to report the pause", 30, || gate("node-a", "pause"));
    assert_eq!(a.once(&["cluster", "resume"]).0, 0);

    // A request for a node nobody has heard of is stored, with a warning.
    let (code, _, err) = a.once(&["cluster", "request-reboot", "node-x"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: no node named \"node-x\" has published"),
        "{err}"
    );
    let (code, _, err) = a.once(&["cluster", "request-reboot", "node-c"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    for d in &mut daemons {
        sigterm(d);
    }
}

/// The read-only page on the metrics listener, in a real headless chromium, against three
/// daemons on a real etcd: the table (also without JavaScript), the diagram's highlighted
/// states, a state change showing up without a reload, hostile text shown as text. Set
/// `CLUSTERREBOOTD_SCREENSHOT=docs/fleet-page.png` to save the screenshot for the docs.
#[test]
fn the_page_shows_the_fleet_and_follows_a_change_in_a_real_browser() {
    let e = etcd::Etcd::start(1);
    let port = etcd::free_port();
    let metrics = |p: u16| format!("metrics: {{enabled: true, listen: \"127.0.0.1:{p}\"}}\n");
    // node-a (serving the page) and node-b are in reboot group db, one slot (issue #16).
    let group = "group: db\ngroup_max_concurrent_reboots: 1\n";
    let a = fleet_node("node-a", &e);
    std::fs::remove_file(a.path("reboot-required")).expect("marker");
    let cfg = a.read("config.yaml") + &metrics(port) + group;
    std::fs::write(a.path("config.yaml"), cfg).expect("config");
    let b = fleet_node("node-b", &e);
    std::fs::write(b.path("config.yaml"), b.read("config.yaml") + group).expect("config");
    std::fs::write(b.path("block"), "").expect("block");
    let c = fleet_node("node-c", &e);
    std::fs::write(c.path("disable"), "").expect("kill switch");
    let mut daemons = vec![a.start(), b.start(), c.start()];
    let gate =
        |n: &str, g: &str| node_state(&e, n).is_some_and(|(v, _)| v["waiting_for"]["gate"] == g);
    wait("all three records", 30, || {
        node_state(&e, "node-a").is_some_and(|(v, _)| v["reboot_required"] == false)
            && gate("node-b", "health_script")
            && gate("node-c", "kill_switch")
    });
    let url = format!("http://127.0.0.1:{port}/");

    // Without JavaScript: the server-rendered table and diagram.
    let dom = browser::Browser::dom_without_js(&url);
    for want in [
        "<td>node-a</td>",
        "<td>node-b</td>",
        "<td>node-c</td>",
        "health_script: the health script (pre-lock) exited 3: \"quorum would break\"",
        "kill_switch: the kill switch file",
        r#"<g id="st-Idle" class="state on">"#,
        r#"<g id="st-Rebooting" class="state">"#,
        "<dd data-fact=\"Slots\">0 of 1 held</dd>",
        "<tbody id=\"groups\"><tr><td colspan=\"4\">no reboot group pool has an entry</td></tr>",
    ] {
        assert!(
            dom.contains(want),
            "no {want:?} in the page without JS:\n{dom}"
        );
    }

    // With JavaScript: the same table, then the page follows the cluster by itself.
    let mut page = browser::Browser::open(&url, 1280, 1000);
    page.wait_text("the three nodes", "#rows", 20, |t| {
        ["node-a", "node-b", "node-c"].iter().all(|n| t.contains(n))
    });
    assert_eq!(
        page.eval("document.querySelector('#st-Idle').classList.contains('on')"),
        true
    );
    assert_eq!(page.text("#cnt-Idle"), "3: node-a, node-b, node…");
    std::fs::remove_file(b.path("block")).expect("unblock");
    wait("node-b's Rebooting record", 30, || {
        node_state(&e, "node-b").is_some_and(|(v, _)| v["state"] == "Rebooting")
    });
    let changed = Instant::now();
    page.wait_text("node-b Rebooting in the table", "#rows", 20, |t| {
        t.lines()
            .any(|l| l.starts_with("node-b") && l.contains("Rebooting"))
    });
    println!(
        "the page showed node-b's Rebooting record {} ms after it was in etcd",
        changed.elapsed().as_millis()
    );
    page.wait_text("the holder", "#facts", 10, |t| t.contains("node-b"));
    assert_eq!(
        page.eval("document.querySelector('#st-Rebooting').classList.contains('on')"),
        true
    );
    assert_eq!(page.text("#cnt-Rebooting"), "1: node-b");

    // The reboot groups, followed without a reload: node-b holds db's one slot, node-d (an
    // entry put by hand) waits for it; web-1 holds a slot of a group whose size node-a does
    // not know.
    let at = jiff::Timestamp::now();
    for (key, node, state) in [
        (
            "/fleet/reboot_group/db/7fffffffffff0001",
            "node-d",
            "waiting",
        ),
        (
            "/fleet/reboot_group/web/7fffffffffff0002",
            "web-1",
            "rebooting",
        ),
    ] {
        let value =
            format!(r#"{{"node":"{node}","pid":1,"acquired_at":"{at}","state":"{state}"}}"#);
        let (ok, out) = e.etcdctl(None, &["put", key, &value]);
        assert!(ok, "{out}");
    }
    page.wait_text("the group pools", "#groups", 10, |t| {
        t.contains("web-1") && t.contains("node-d")
    });
    let groups = page.text("#groups");
    let db = groups
        .lines()
        .find(|l| l.starts_with("db"))
        .unwrap_or_default();
    assert!(db.contains("1 of 1 held"), "{groups}");
    assert!(
        db.contains("node-b for") && db.contains("[rebooting]"),
        "{groups}"
    );
    assert!(db.contains("#1 node-d for"), "{groups}");
    let web = groups
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap_or_default();
    assert!(
        web.contains("1 held") && web.contains("web-1 for"),
        "{groups}"
    );

    // Hostile text from etcd is shown as text, never run.
    let evil = "<img src=x onerror=\"window.__pwned=1\">kernel rollout";
    assert_eq!(a.once(&["cluster", "pause", "--reason", evil]).0, 0);
    page.wait_text("the pause", "#facts", 10, |t| {
        t.contains("PAUSED: <img src=x")
    });
    assert_eq!(page.eval("typeof window.__pwned"), "undefined");
    assert_eq!(page.eval("document.querySelectorAll('img').length"), 0);
    assert_eq!(a.once(&["cluster", "resume"]).0, 0);
    assert_eq!(
        a.once(&[
            "cluster",
            "pause",
            "--reason",
            "kernel 6.1.119 rollout: waiting for the db team"
        ])
        .0,
        0
    );
    page.wait_text("the readable pause", "#facts", 10, |t| {
        t.contains("db team")
    });

    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Ok(path) = std::env::var("CLUSTERREBOOTD_SCREENSHOT") {
        std::fs::write(&path, &png).expect("write screenshot");
        println!("screenshot written to {path}");
    }
    for d in &mut daemons {
        sigterm(d);
    }
}

/// A webhook receiver on loopback: answers 200 and keeps every JSON body, or (`hang`) accepts
/// connections and never answers.
struct Receiver {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    fn start(hang: bool) -> Receiver {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                if hang {
                    held.push(c);
                    continue;
                }
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let Ok(n) = c.read(&mut buf) else { break None };
                    if n == 0 {
                        break None;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() >= len {
                            break Some(rest[..len].to_string());
                        }
                    }
                };
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if let Some(b) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                    kept.lock().expect("lock").push(b);
                }
            }
        });
        Receiver { port, bodies }
    }

    fn events(&self) -> Vec<String> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|b| b["event"].as_str().map(str::to_string))
            .collect()
    }

    fn find(&self, event: &str) -> Option<serde_json::Value> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .find(|b| b["event"] == event)
            .cloned()
    }
}

/// Webhooks against local receivers: reboot started, rollout stuck (a Recovering node whose
/// post-reboot health keeps failing), node back, pause and resume; a receiver that hangs
/// delays nothing (the reboot and the recovery go on) and is counted as failed.
#[test]
fn webhooks_report_the_reboot_a_stuck_recovery_and_the_pause_even_past_a_hanging_receiver() {
    let e = etcd::Etcd::start(1);
    let ok = Receiver::start(false);
    let hang = Receiver::start(true);
    let mport = etcd::free_port();
    let n = fleet_node("node-w", &e);
    let cfg = n.read("config.yaml")
        + &format!(
            "webhooks: {{urls: [\"http://127.0.0.1:{}/hook\"], slack_urls: [\"http://127.0.0.1:{}/slack\"], timeout_sec: 1, retries: 1, stuck_after_sec: 2}}\nmetrics: {{enabled: true, listen: \"127.0.0.1:{mport}\"}}\n",
            ok.port, hang.port
        );
    std::fs::write(n.path("config.yaml"), cfg).expect("config");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut d = n.start();
    wait("reboot_started", 30, || ok.find("reboot_started").is_some());
    let started = ok.find("reboot_started").expect("body");
    assert_eq!(started["node"], "node-w", "{started}");
    assert_eq!(started["state"], "Rebooting", "{started}");
    assert_eq!(started["version"], 1, "{started}");
    assert!(
        started["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("node-w is rebooting")),
        "{started}"
    );
    // The hanging receiver did not hold the reboot back.
    wait("the reboot command", 30, || {
        !n.read("reboots.log").is_empty()
    });

    // The "reboot"; the node comes back with a post-reboot health check that fails.
    sigterm(&mut d);
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    std::fs::write(n.path("fail-post-reboot"), "").expect("fail");
    let mut d = n.start();
    wait("rollout_stuck", 30, || ok.find("rollout_stuck").is_some());
    let stuck = ok.find("rollout_stuck").expect("body");
    assert_eq!(stuck["state"], "Recovering", "{stuck}");
    assert_eq!(stuck["detail"]["cause"], "too_long_in_state", "{stuck}");
    std::fs::remove_file(n.path("fail-post-reboot")).expect("heal");
    wait("node_back", 30, || ok.find("node_back").is_some());
    let back = ok.find("node_back").expect("body");
    assert!(
        back["summary"]
            .as_str()
            .is_some_and(|s| s.contains("is back and healthy")),
        "{back}"
    );
    assert!(back["detail"]["last_reboot"].is_object(), "{back}");

    // The hanging Slack receiver: each notification failed after its retry, counted and logged.
    wait("the failed deliveries to be counted", 30, || {
        metrics_text(mport).contains("clusterrebootd_webhooks_total{result=\"failed\"}")
    });
    assert!(
        n.read("daemon.log").contains("webhook_failed"),
        "no webhook_failed log line"
    );
    assert!(metrics_text(mport).contains("clusterrebootd_webhooks_total{result=\"sent\"} "));

    // Pause and resume come from the command that made them; the hanging receiver makes it
    // warn, after its timeouts, not fail.
    let (code, _, err) = n.once(&["cluster", "pause", "--reason", "db maintenance"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "webhook http://127.0.0.1:{}/slack not notified",
            hang.port
        )),
        "{err}"
    );
    let pause = ok.find("pause").expect("pause notification");
    assert_eq!(pause["detail"]["reason"], "db maintenance", "{pause}");
    assert_eq!(n.once(&["cluster", "resume"]).0, 0);
    assert!(ok.find("resume").is_some(), "{:?}", ok.events());
    assert_eq!(
        ok.events()
            .iter()
            .filter(|e| *e == "reboot_started")
            .count(),
        1,
        "{:?}",
        ok.events()
    );
    sigterm(&mut d);
}

fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}

/// Bad webhook settings are configuration errors that name the field and say why.
#[test]
fn bad_webhook_settings_are_named() {
    let n = Node::new(
        "webhooks: {urls: [\"ftp://x/\"], slack_urls: [\"https://u:p@hooks.example/x\"], timeout_sec: 0, retries: 1000, stuck_after_sec: 0, ca_file: certs.pem, hmm: 1}\n",
    );
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "webhooks.urls[0]",
        "must start with http:// or https://",
        "webhooks.slack_urls[0]",
        "user:password@",
        "webhooks.ca_file",
        "webhooks.timeout_sec",
        "webhooks.retries",
        "webhooks.stuck_after_sec",
        "webhooks.hmm",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
}

/// `rollout_stuck` for a peer's in-progress marker without a slot (a node that rebooted and
/// never came back): sent once, not once per blocked pass.
#[test]
fn a_marker_without_a_slot_is_reported_stuck_once() {
    let e = etcd::Etcd::start(1);
    let ok = Receiver::start(false);
    let (put_ok, out) = e.etcdctl(
        None,
        &[
            "put",
            "/fleet/reboot_in_progress/ghost",
            r#"{"node":"ghost","since":"2026-12-01T03:00:00Z","boot_id":"old"}"#,
        ],
    );
    assert!(put_ok, "{out}");
    let n = fleet_node("node-m", &e);
    let cfg = n.read("config.yaml")
        + &format!(
            "webhooks: {{urls: [\"http://127.0.0.1:{}/hook\"], timeout_sec: 1, retries: 0}}\n",
            ok.port
        );
    std::fs::write(n.path("config.yaml"), cfg).expect("config");
    let mut d = n.start();
    wait("rollout_stuck", 30, || ok.find("rollout_stuck").is_some());
    let stuck = ok.find("rollout_stuck").expect("body");
    assert_eq!(stuck["detail"]["cause"], "marker_without_slot", "{stuck}");
    assert!(
        stuck["detail"]["reason"].as_str().is_some_and(|r| r
            .contains("reboot in progress on ghost")
            && r.contains("without a slot")),
        "{stuck}"
    );
    let before = passes(&n);
    n.wait_for("three more blocked passes", 30, |n| passes(n) >= before + 3);
    let count = ok.events().iter().filter(|e| *e == "rollout_stuck").count();
    assert_eq!(count, 1, "{:?}", ok.events());
    assert_eq!(n.read("reboots.log"), "", "a node rebooted past the marker");
    sigterm(&mut d);
}

/// An HTTPS webhook receiver (rustls, the test CA's server certificate for 127.0.0.1) that
/// answers 200 and keeps the JSON bodies.
fn tls_receiver(
    certs: &tls::Certs,
) -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("key");
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if rest.len() >= len {
                            break Some(rest[..len].to_string());
                        }
                    }
                };
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
                if let Some(b) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                    kept.lock().expect("lock").push(b);
                }
            }
        });
    });
    (port, bodies)
}

/// `https://` webhooks: delivered to a receiver whose certificate verifies against
/// `webhooks.ca_file`, refused (and reported) when the name does not match the certificate.
#[test]
fn https_webhooks_verify_the_receiver() {
    let e = etcd::Etcd::start(1);
    let certs = tls::Certs::generate();
    let (port, bodies) = tls_receiver(&certs);
    let n = fleet_node("node-t", &e);
    let cfg = n.read("config.yaml")
        + &format!(
            "webhooks: {{urls: [\"https://127.0.0.1:{port}/hook\"], slack_urls: [\"https://localhost:{port}/wrong-name\"], ca_file: {}, timeout_sec: 2, retries: 0}}\n",
            certs.ca.display()
        );
    std::fs::write(n.path("config.yaml"), cfg).expect("config");
    let (code, _, err) = n.once(&["cluster", "pause", "--reason", "tls check"]);
    assert_eq!(code, 0, "{err}");
    let got = bodies.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}\n{err}");
    assert_eq!(got[0]["event"], "pause");
    assert_eq!(got[0]["detail"]["reason"], "tls check");
    assert!(
        err.contains(&format!(
            "webhook https://localhost:{port}/wrong-name not notified"
        )) && err.contains("TLS"),
        "{err}"
    );
}
