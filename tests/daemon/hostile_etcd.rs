//! The hostile-etcd table (issue #20): a malformed value for every key the daemon reads, on one
//! real etcd, one real daemon per row. Each row asserts that the daemon
//!
//! 1. does not run its reboot command where that value would be the only thing allowing it
//!    (fail closed),
//! 2. does not crash: the process is alive and its loop still answers (a SIGHUP after the first
//!    decision is logged as a reload; a node waiting in the queue or under the slot makes no
//!    passes to log),
//! 3. writes a log line naming the key (rows whose key the daemon never reads say so), and
//! 4. `clusterrebootd cluster status` and `clusterrebootd status --explain` still run, with the
//!    exit code the row states, and their output names the problem.
//!
//! Rows run a few at a time, each in its own namespace of the same etcd. `HOSTILE_ROW=<part of
//! a row name>` runs only the matching rows (to debug one).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::node;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use node::*;
use serde_json::Value;

/// The lock prefix below the namespace (default `lock_key`).
const LOCK: &str = "/cluster/clusterrebootd/lock/";

/// What decided the row: a condition on `state.json` meaning "the daemon has made its
/// decision with the hostile value in place".
type Settled = fn(&Value) -> bool;

/// One row of the table.
struct Row {
    /// Short name: `<key>: <what is wrong>`.
    name: &'static str,
    /// Keys (below the namespace) and values put before the daemon starts.
    puts: Vec<(String, Vec<u8>)>,
    /// Further configuration.
    extra: &'static str,
    /// Whether the node's own detector says "reboot required" (rows about the reboot request
    /// take it away: the request is then the only thing asking for a reboot).
    marker: bool,
    /// The node's health script fails (rows whose key gates nothing: something must hold the
    /// node so that "no reboot" can be checked at all).
    blocked: bool,
    /// A pinned etcd identity the store does not match (rows about `store_accepted`).
    foreign_pin: bool,
    /// The daemon has decided.
    settled: Settled,
    /// The key (below the namespace, when it starts with `/`) or other text a log line must
    /// name; `None`: the daemon never reads the key.
    log_key: Option<String>,
    /// `cluster status`: exit code and a text its output must contain.
    status: (i32, &'static str),
    /// `status --explain`: exit code and a text its output must contain.
    explain: (i32, &'static str),
    /// The positive control: the value is valid and the daemon must reboot (proves that the
    /// row's setup would let a reboot through, so the other rows' "no reboot" means something).
    reboots: bool,
}

fn row(name: &'static str, key: &str, value: impl Into<Vec<u8>>) -> Row {
    Row {
        name,
        puts: vec![(key.to_string(), value.into())],
        extra: "",
        marker: true,
        blocked: false,
        foreign_pin: false,
        settled: |_| true,
        log_key: Some(key.to_string()),
        status: (0, ""),
        explain: (0, ""),
        reboots: false,
    }
}

impl Row {
    fn settled(mut self, f: Settled) -> Row {
        self.settled = f;
        self
    }
    fn extra(mut self, e: &'static str) -> Row {
        self.extra = e;
        self
    }
    fn no_marker(mut self) -> Row {
        self.marker = false;
        self
    }
    fn blocked(mut self) -> Row {
        self.blocked = true;
        self
    }
    fn foreign_pin(mut self) -> Row {
        self.foreign_pin = true;
        self
    }
    fn unread(mut self) -> Row {
        self.log_key = None;
        self
    }
    fn log(mut self, key: &str) -> Row {
        self.log_key = Some(key.to_string());
        self
    }
    fn put(mut self, key: &str, value: impl Into<Vec<u8>>) -> Row {
        self.puts.push((key.to_string(), value.into()));
        self
    }
    fn status(mut self, code: i32, has: &'static str) -> Row {
        self.status = (code, has);
        self
    }
    fn explain(mut self, code: i32, has: &'static str) -> Row {
        self.explain = (code, has);
        self
    }
    fn reboots(mut self) -> Row {
        self.reboots = true;
        self
    }
}

fn reason(s: &Value) -> &str {
    s["reason"].as_str().unwrap_or_default()
}

fn queued(s: &Value) -> bool {
    s["state"] == "Locking" && !s["slot"]["queue_position"].is_null()
}

fn paused(s: &Value) -> bool {
    s["outcome"] == "kill_switch_active"
}

fn health_blocked(s: &Value) -> bool {
    s["outcome"] == "health_blocked"
}

/// A finished pass that found no reboot required.
fn nothing_to_do(s: &Value) -> bool {
    s["state"] == "Idle" && s["outcome"] == "no_action"
}

/// A finished pass that the cooldown record ended (active, or unreadable: fail closed). Only
/// a finished pass: "reading the cluster cooldown" in the middle of one is not a decision.
fn cooldown_blocks(s: &Value) -> bool {
    s["state"] == "Idle" && (s["outcome"] == "cooldown_active" || reason(s).contains("cooldown"))
}

fn store_refused(s: &Value) -> bool {
    reason(s).contains("not the one this node knows")
}

fn awaiting_shutdown(s: &Value) -> bool {
    s["state"] == "Rebooting"
}

fn big(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

/// Stands for the current time in a value; replaced when the row puts it (records must be
/// fresh when the daemon reads them, however long earlier rows took).
const NOW: &str = "@NOW@";

/// Every row.
fn table() -> Vec<Row> {
    let now = NOW;
    let healthy = |n: &str| format!(r#"{{"node":"{n}","healthy":true,"reported_at":"{now}"}}"#);
    let policy = "cluster_policies: {min_healthy_absolute: 1}\n";
    let cool = "/reboot_cooldown";
    let ip = |n: &str| format!("/reboot_in_progress/{n}");
    let request = "/reboot_request/node-a";
    vec![
        // --- queue entries under the lock prefix (K = 1: the entry holds the only slot)
        row("lock entry: not JSON", &format!("{LOCK}0bad"), "not a daemon's JSON")
            .settled(queued)
            .status(0, "unknown (")
            .explain(0, "cluster forget --key 0bad"),
        row("lock entry: empty value", &format!("{LOCK}0e0e"), "")
            .settled(queued)
            .status(0, "unknown (")
            .explain(0, "cluster forget --key 0e0e"),
        row(
            "lock entry: wrong types",
            &format!("{LOCK}0bad"),
            r#"{"node":5,"pid":"x","state":[]}"#,
        )
        .settled(queued)
        .status(0, "unknown (")
        .explain(0, "cluster forget --key 0bad"),
        row(
            "lock entry: 900 KB node name",
            &format!("{LOCK}0b16"),
            format!(r#"{{"node":"{}","pid":1}}"#, "n".repeat(900_000)),
        )
        .settled(queued)
        .status(0, "nnnnnnnn")
        .explain(0, "cluster forget --key 0b16"),
        row("lock entry: 1 MB of garbage", &format!("{LOCK}0b17"), big(1_000_000))
            .settled(queued)
            .status(0, "unknown (")
            .explain(0, "cluster forget --key 0b17"),
        row(
            "lock entry: names another node, no lease",
            &format!("{LOCK}0a0a"),
            format!(
                r#"{{"node":"node-b","pid":1,"acquired_at":"{now}","boot_id":"x","state":"held"}}"#
            ),
        )
        .settled(queued)
        .log("node-b")
        .status(0, "node-b")
        .explain(0, "node-b"),
        row(
            "lock entry: names this node, another boot, no lease",
            &format!("{LOCK}0a0b"),
            format!(
                r#"{{"node":"node-a","pid":1,"acquired_at":"{now}","boot_id":"boot-old","state":"rebooting"}}"#
            ),
        )
        .settled(queued)
        .status(0, "node-a")
        .explain(0, "slot"),
        row("lock entry: nested key", &format!("{LOCK}deep/er/0bad"), "x")
            .settled(queued)
            .status(0, "unknown (")
            .explain(0, "cluster forget --key deep/er/0bad"),
        // --- the cooldown record
        row("cooldown: not JSON", cool, "{\"node\": 12")
            .settled(cooldown_blocks)
            .status(0, "cooldown: CORRUPT")
            .explain(0, "corrupt"),
        row(
            "cooldown: wrong types",
            cool,
            r#"{"node":1,"started_at":2,"duration_sec":"x"}"#,
        )
        .settled(cooldown_blocks)
        .status(0, "cooldown: CORRUPT")
        .explain(0, "corrupt"),
        row(
            "cooldown: absurd duration",
            cool,
            format!(r#"{{"node":"n2","started_at":"{now}","duration_sec":18446744073709551615}}"#),
        )
        .settled(cooldown_blocks)
        .status(0, "cooldown: CORRUPT")
        .explain(0, "corrupt"),
        row(
            "cooldown: negative duration",
            cool,
            format!(r#"{{"node":"n2","started_at":"{now}","duration_sec":-5}}"#),
        )
        .settled(cooldown_blocks)
        .status(0, "cooldown: CORRUPT")
        .explain(0, "corrupt"),
        row(
            "cooldown: started_at in 9999",
            cool,
            r#"{"node":"n2","started_at":"9999-01-01T00:00:00Z","duration_sec":3600}"#,
        )
        .settled(cooldown_blocks)
        .status(0, "started by n2")
        .explain(0, "cooldown"),
        row("cooldown: 1 MB of garbage", cool, big(1_000_000))
            .settled(cooldown_blocks)
            .status(0, "cooldown: CORRUPT")
            .explain(0, "corrupt"),
        // --- cluster_health/<peer> (min_healthy_absolute 1: that record is the only healthy
        // peer there could be)
        row("cluster_health: valid (control)", "/cluster_health/n2", healthy("n2"))
            .extra(policy)
            .reboots(),
        row("cluster_health: not JSON", "/cluster_health/n2", "not JSON")
            .extra(policy)
            .settled(health_blocked)
            .status(0, "n2")
            .explain(0, "n2"),
        row(
            "cluster_health: body names another node",
            "/cluster_health/n2",
            healthy("n3"),
        )
        .extra(policy)
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "n2"),
        row(
            "cluster_health: wrong types",
            "/cluster_health/n2",
            format!(r#"{{"node":"n2","healthy":"yes","reported_at":"{now}"}}"#),
        )
        .extra(policy)
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "n2"),
        row(
            "cluster_health: reported in 9999",
            "/cluster_health/n2",
            r#"{"node":"n2","healthy":true,"reported_at":"9999-01-01T00:00:00Z"}"#,
        )
        .extra(policy)
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "n2"),
        row("cluster_health: 1 MB of garbage", "/cluster_health/n2", big(1_000_000))
            .extra(policy)
            .settled(health_blocked)
            .status(0, "n2")
            .explain(0, "n2"),
        row(
            "cluster_health: healthy with a 900 KB reason",
            "/cluster_health/n2",
            format!(
                r#"{{"node":"n2","healthy":true,"reason":"{}","reported_at":"{now}"}}"#,
                "r".repeat(900_000)
            ),
        )
        .extra(policy)
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "n2"),
        row(
            "cluster_health: unhealthy with a 900 KB reason",
            "/cluster_health/n2",
            format!(
                r#"{{"node":"n2","healthy":false,"stage":"pre-lock","reason":"{}","reported_at":"{now}"}}"#,
                "r".repeat(900_000)
            ),
        )
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "n2"),
        // --- reboot_in_progress/<peer>: a marker without a slot is unplanned trouble
        row("reboot_in_progress (peer): not JSON", &ip("n2"), "not JSON")
            .settled(health_blocked)
            .status(0, "reboots in progress: n2")
            .explain(0, "n2"),
        row(
            "reboot_in_progress (peer): body names another node",
            &ip("n2"),
            r#"{"node":"n3","since":5,"boot_id":[]}"#,
        )
        .settled(health_blocked)
        .status(0, "reboots in progress: n2")
        .explain(0, "n2"),
        row("reboot_in_progress (peer): 1 MB of garbage", &ip("n2"), big(1_000_000))
            .settled(health_blocked)
            .status(0, "reboots in progress: n2")
            .explain(0, "n2"),
        // --- reboot_in_progress/<this node>: an unfinished reboot, never a second command
        row("reboot_in_progress (own): not JSON", &ip("node-a"), "not JSON")
            .settled(awaiting_shutdown)
            .status(0, "reboots in progress: node-a")
            .explain(0, "Rebooting"),
        row(
            "reboot_in_progress (own): body names another node",
            &ip("node-a"),
            r#"{"node":"n9","since":"yesterday","boot_id":"boot-a"}"#,
        )
        .settled(awaiting_shutdown)
        .status(0, "reboots in progress: node-a")
        .explain(0, "Rebooting"),
        // --- the pause key: any value pauses
        row("pause: not JSON", "/pause", "not JSON")
            .settled(paused)
            .status(0, "not JSON")
            .explain(0, "pause"),
        row("pause: empty value", "/pause", "")
            .settled(paused)
            .status(0, "paused")
            .explain(0, "pause"),
        row("pause: wrong types", "/pause", r#"{"reason":5,"by":[]}"#)
            .settled(paused)
            .status(0, "paused")
            .explain(0, "pause"),
        row("pause: 1 MB of garbage", "/pause", big(1_000_000))
            .settled(paused)
            .status(0, "truncated")
            .explain(0, "pause"),
        // --- reboot_request/<this node> with no detector saying "required": an unreadable
        // request is no request
        row("reboot_request: valid (control)", request, format!(r#"{{"by":"ops","at":"{now}"}}"#))
            .no_marker()
            .settled(|_| true)
            .status(0, "node-a")
            .explain(0, "node-a")
            .reboots(),
        row("reboot_request: not JSON", request, "not JSON")
            .no_marker()
            .settled(nothing_to_do)
            .status(0, "node-a")
            .explain(0, "no reboot"),
        row("reboot_request: empty value", request, "")
            .no_marker()
            .settled(nothing_to_do)
            .status(0, "node-a")
            .explain(0, "no reboot"),
        row("reboot_request: wrong types", request, r#"{"by":5,"at":[]}"#)
            .no_marker()
            .settled(nothing_to_do)
            .status(0, "node-a")
            .explain(0, "no reboot"),
        row("reboot_request: 1 MB of garbage", request, big(1_000_000))
            .no_marker()
            .settled(nothing_to_do)
            .status(0, "node-a")
            .explain(0, "no reboot"),
        // --- store_accepted: read only when the store is not the pinned one
        row("store_accepted: not JSON", "/store_accepted", "not JSON")
            .foreign_pin()
            .settled(store_refused)
            .status(0, "")
            .explain(0, "accept-store"),
        row(
            "store_accepted: wrong types",
            "/store_accepted",
            r#"{"cluster_id":5}"#,
        )
        .foreign_pin()
        .settled(store_refused)
        .status(0, "")
        .explain(0, "accept-store"),
        // --- node_state/<node>: read by `cluster status` and the page only, never by a
        // decision (the health script holds the node so "no reboot" can be checked)
        row("node_state (peer): not JSON", "/node_state/n2", "not JSON")
            .blocked()
            .unread()
            .settled(health_blocked)
            .status(0, "n2")
            .explain(0, "health script"),
        row("node_state (peer): 1 MB of garbage", "/node_state/n2", big(1_000_000))
            .blocked()
            .unread()
            .settled(health_blocked)
            .status(0, "n2")
            .explain(0, "health script"),
        row(
            "node_state (peer): names another node",
            "/node_state/n2",
            r#"{"version":1,"node":"n3","state":"Rebooting"}"#,
        )
        .blocked()
        .unread()
        .settled(health_blocked)
        .status(0, "n2")
        .explain(0, "health script"),
        row("node_state (own): not JSON", "/node_state/node-a", "not JSON")
            .blocked()
            .unread()
            .settled(health_blocked)
            .status(0, "node-a")
            .explain(0, "health script"),
        // A combination: everything at once, each key malformed.
        row("everything at once", "/pause", "garbage")
            .put(cool, "garbage")
            .put("/cluster_health/n2", "garbage")
            .put(&ip("n2"), "garbage")
            .put("/node_state/n2", "garbage")
            .put(&format!("{LOCK}0bad"), "garbage")
            .settled(paused)
            .status(0, "cooldown: CORRUPT")
            .explain(0, "pause"),
    ]
}

/// `etcdctl put` with the value on stdin (1 MB is over the kernel's per-argument limit).
fn put(e: &etcd::Etcd, key: &str, value: &[u8]) {
    use std::io::Write;
    if value.is_empty() {
        let (ok, out) = e.etcdctl(None, &["put", key, ""]);
        assert!(ok, "etcdctl put {key} '': {out}");
        return;
    }
    let mut c = std::process::Command::new("etcdctl")
        .arg(format!("--endpoints={}", e.endpoints().join(",")))
        .args(["put", key])
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

/// A daemon process, killed if the row fails before it is stopped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// At most a few KiB of `s`, for failure messages (some values are 1 MB).
fn clip(s: &str) -> String {
    s.lines()
        .map(|l| match l.char_indices().nth(600) {
            Some((i, _)) => format!("{}… ({} bytes)", &l[..i], l.len()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn reboots(n: &Node) -> usize {
    n.read("reboots.log").lines().count()
}

/// Runs one row in namespace `ns`; panics (with the daemon's log) when an assertion fails.
fn run_row(e: &etcd::Etcd, ns: &str, r: &Row) -> String {
    for (k, v) in &r.puts {
        let v = match std::str::from_utf8(v) {
            Ok(text) if text.contains(NOW) => text
                .replace(NOW, &jiff::Timestamp::now().to_string())
                .into_bytes(),
            _ => v.clone(),
        };
        put(e, &format!("{ns}{k}"), &v);
    }
    let n = Node::named(
        "node-a",
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: {ns}\nmin_reboot_interval_sec: 0\n{}",
            e.endpoints().join(", "),
            r.extra
        ),
    );
    if !r.marker {
        std::fs::remove_file(n.path("reboot-required")).expect("rm marker");
    }
    if r.blocked {
        std::fs::write(n.path("block"), "").expect("block");
    }
    if r.foreign_pin {
        std::fs::create_dir_all(n.path("state")).expect("state dir");
        std::fs::write(
            n.path("state/etcd-identity.json"),
            r#"{"cluster_id":"1","revision":1}"#,
        )
        .expect("pin");
    }
    let mut d = Daemon(n.start());
    let ctx = |what: &str| {
        format!(
            "{what}\n--- the reboot command ran {} time(s)\n--- state.json\n{}\n--- daemon.log (tail)\n{}",
            reboots(&n),
            clip(&n.read("run/state.json")),
            clip(&tail(&n.read("daemon.log"), 15))
        )
    };
    let wait = |what: &str, cond: &dyn Fn(&Node) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !cond(&n) {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                ctx(&format!("timed out waiting for {what}"))
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    if r.reboots {
        wait("the reboot command (control row)", &|n| reboots(n) == 1);
        sigterm(&mut d.0);
        return "rebooted (control)".into();
    }
    wait("the decision with the hostile value in place", &|n| {
        (r.settled)(&n.state())
    });
    // It keeps running: its loop answers a reload after the decision.
    let reloads = |n: &Node| n.read("daemon.log").matches("\"config_reloaded\"").count();
    let before = reloads(&n);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.0.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    wait("the reload after the decision", &|n| reloads(n) > before);
    assert!(
        d.0.try_wait().expect("wait").is_none(),
        "{}",
        ctx("the daemon exited")
    );
    assert_eq!(reboots(&n), 0, "{}", ctx("the reboot command ran"));
    let log = n.read("daemon.log");
    if let Some(k) = &r.log_key {
        let key = if k.starts_with('/') {
            format!("{ns}{k}")
        } else {
            k.clone()
        };
        assert!(
            log.contains(&key),
            "{}",
            ctx(&format!("no log line names {key}"))
        );
    }
    assert!(
        !log.contains("journal_error") && !log.contains("state_file_error"),
        "{}",
        ctx("the journal or the state file failed")
    );
    let state = n.read("run/state.json");
    assert!(
        state.len() < 64 * 1024,
        "{}",
        ctx(&format!("state.json is {} bytes", state.len()))
    );
    let journal = n.read("state/journal.jsonl");
    let longest = journal.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 64 * 1024,
        "{}",
        ctx(&format!("a journal line of {longest} bytes"))
    );
    let mut seen = Vec::new();
    for (args, (code, has)) in [
        (&["cluster", "status"][..], r.status),
        (&["status", "--explain"][..], r.explain),
    ] {
        // The node passes through short check states (`HealthPost`, …) between rests; the
        // output is judged once it names the problem, or at the deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (got, out, err) = loop {
            let (got, out, err) = n.once(args);
            if (got == code && out.contains(has)) || std::time::Instant::now() > deadline {
                break (got, out, err);
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        };
        assert_eq!(
            got,
            code,
            "{}",
            ctx(&format!("`{}` exited {got}:\n{out}{err}", args.join(" ")))
        );
        assert!(
            out.contains(has),
            "{}",
            ctx(&format!(
                "`{}` does not say {has:?}:\n{}{err}",
                args.join(" "),
                tail(&out, 40)
            ))
        );
        assert!(
            out.len() < 64 * 1024 && !out.contains('\u{1b}'),
            "`{}` printed {} bytes",
            args.join(" "),
            out.len()
        );
        seen.push(got);
    }
    sigterm(&mut d.0);
    assert_eq!(reboots(&n), 0, "{}", ctx("the reboot command ran"));
    format!("cluster status {}, status --explain {}", seen[0], seen[1])
}

/// A row's index, name and summary (or why it failed).
type Outcome = (usize, &'static str, Result<String, String>);

#[test]
fn malformed_values_under_every_key_fail_closed() {
    let e = etcd::Etcd::start(1);
    let filter = std::env::var("HOSTILE_ROW").unwrap_or_default();
    let rows: Vec<(usize, Row)> = table()
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r.name.contains(&filter))
        .collect();
    assert!(!rows.is_empty(), "no row matches HOSTILE_ROW={filter}");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((idx, r)) = rows.get(i) else { break };
                    let ns = format!("/he{idx}");
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_row(&e, &ns, r)
                    }))
                    .map_err(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".into())
                    });
                    results.lock().unwrap().push((*idx, r.name, out));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _, _)| *i);
    let mut failed = Vec::new();
    for (_, name, out) in &results {
        match out {
            Ok(summary) => eprintln!("ok    {name}: {summary}"),
            Err(why) => {
                eprintln!(
                    "FAIL  {name}: {}",
                    why.lines().take(2).collect::<Vec<_>>().join(" / ")
                );
                failed.push(format!("=== {name}\n{why}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n\n")
    );
}
