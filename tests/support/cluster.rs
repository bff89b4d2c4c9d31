//! A cluster of real daemons on one real etcd for chaos tests (issue #7): N [`Node`]s with
//! `lock_backend: etcd`, a **reboot simulator** thread (when a node's fake reboot command ran:
//! SIGTERM, down time, new boot id, marker removed, start again) and an **invariant checker**
//! thread (every 50 ms: at most K nodes between "slot acquired" and "slot released after
//! recovery", SPEC §12.3).
//!
//! Needs `mod etcd;` and `mod node;` declared beside it (`#[path = "support/…"]`).
//!
//! Each node's health script (`health.sh` in its directory) is steered by files there:
//! `block` (every phase fails, exit 3), `fail-post-reboot` (phase post-reboot fails), `slow`
//! (phase post-lock sleeps that many seconds first) and `hold` (phase post-lock waits while the
//! file exists, at most 5 s, with a `holding` file present meanwhile).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::etcd::Etcd;
use super::node::{Node, script, sigterm, tail};

/// The states in which `state.json` says `slot.held`.
pub const HELD: [&str; 4] = ["HealthPost", "Cooldown", "Rebooting", "Recovering"];

/// How to build the cluster.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Number of nodes.
    pub n: usize,
    /// `max_concurrent_reboots`.
    pub k: usize,
    /// How long a simulated reboot keeps the node down.
    pub down: Duration,
    /// `health_timeout_sec`.
    pub health_timeout_sec: u64,
    /// `lock_ttl_sec`.
    pub lock_ttl_sec: u64,
    /// Further YAML for every node.
    pub extra: String,
    /// etcd members (1, or 3 for leader loss).
    pub members: usize,
    /// Runs one node inside a network namespace (see [`InNetns`]).
    pub netns: Option<InNetns>,
    /// The Go default intervals (`check_interval_sec: 60`, backoff 5–60 s) instead of the
    /// suite's 1 s / 1–2 s: a hand-off that waits for a timer shows up as seconds, not ms.
    pub go_intervals: bool,
}

/// One node that runs inside a network namespace and reaches etcd through a veth pair.
#[derive(Debug, Clone)]
pub struct InNetns {
    /// Which node.
    pub node: usize,
    /// Command prefix running a program in the namespace (`ip netns exec <ns>`).
    pub wrap: Vec<String>,
    /// The host's address as seen from the namespace: every etcd member also listens there, and
    /// the node's `etcd_endpoints` use it.
    pub host: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            n: 3,
            k: 1,
            down: Duration::from_secs(2),
            health_timeout_sec: 2,
            lock_ttl_sec: 4,
            extra: String::new(),
            members: 1,
            netns: None,
            go_intervals: false,
        }
    }
}

/// What the simulator saw, per node, in ms since the cluster started.
#[derive(Debug, Clone, Default)]
pub struct SimLog {
    /// When the reboot command was noticed.
    pub reboot_cmd: Vec<u64>,
    /// When the node was started again after its down time.
    pub up: Vec<u64>,
}

#[derive(Default)]
struct NodeRt {
    child: Option<Child>,
    /// Stopped by the simulator and will come back (counts as holding a slot).
    down: bool,
    /// Not running and not coming back by itself (SIGKILLed, or a reboot that never returns):
    /// holds a slot only while its etcd queue entry still does.
    gone: bool,
    /// Running but cut off from etcd (network partition): whatever its state file claims, it
    /// holds a slot only while its etcd queue entry still does.
    cut_off: bool,
    handled: usize,
    sim: SimLog,
}

struct Shared {
    t0: Instant,
    /// The `max_concurrent_reboots` the checker enforces (changed with [`Cluster::set_k`]).
    k: AtomicUsize,
    down_time: Duration,
    stop: AtomicBool,
    /// The next node whose reboot command runs never comes back.
    next_never_returns: AtomicBool,
    rt: Mutex<Vec<NodeRt>>,
    max_seen: AtomicUsize,
    violation: Mutex<Option<String>>,
    lock_prefix: String,
    endpoints: String,
}

/// A running cluster.
pub struct Cluster {
    /// The etcd ([`Opts::members`] members).
    pub etcd: Etcd,
    /// The nodes.
    pub nodes: Arc<Vec<Node>>,
    /// The etcd namespace.
    pub ns: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn ms_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Cluster {
    /// Starts etcd and builds the nodes (not started: see [`Cluster::start_all`]).
    pub fn new(o: Opts) -> Cluster {
        let etcd = Etcd::start_with(
            o.members.max(1),
            super::etcd::Options {
                extra_client_hosts: o.netns.iter().map(|n| n.host.clone()).collect(),
                ..Default::default()
            },
        );
        let ns = format!("/chaos-{}", super::etcd::free_port());
        let endpoints = etcd.endpoints().join(",");
        let nodes: Vec<Node> = (0..o.n)
            .map(|i| {
                let netns = o.netns.as_ref().filter(|n| n.node == i);
                let my_endpoints = match netns {
                    Some(n) => etcd
                        .endpoints()
                        .iter()
                        .map(|e| e.replace("127.0.0.1", &n.host))
                        .collect::<Vec<_>>()
                        .join(","),
                    None => endpoints.clone(),
                };
                let mut n = Node::named(
                    &format!("node-{i}"),
                    &format!(
                        "lock_backend: etcd\netcd_endpoints: [{my_endpoints}]\netcd_namespace: {ns}\n\
                         max_concurrent_reboots: {k}\nmin_reboot_interval_sec: 0\n\
                         health_publish_interval_sec: 1\n{extra}",
                        k = o.k,
                        extra = o.extra,
                    ),
                );
                if let Some(netns) = netns {
                    n.wrap = netns.wrap.clone();
                }
                let cfg = n
                    .read("config.yaml")
                    .replace(
                        "health_timeout_sec: 10\n",
                        &format!("health_timeout_sec: {}\n", o.health_timeout_sec),
                    )
                    .replace(
                        "lock_ttl_sec: 30\n",
                        &format!("lock_ttl_sec: {}\n", o.lock_ttl_sec),
                    );
                let cfg = if o.go_intervals {
                    cfg.replace(
                        "check_interval_sec: 1\nbackoff_min_sec: 1\nbackoff_max_sec: 2\n",
                        "check_interval_sec: 60\nbackoff_min_sec: 5\nbackoff_max_sec: 60\n",
                    )
                } else {
                    cfg
                };
                std::fs::write(n.path("config.yaml"), cfg).expect("config");
                // The node's health script (see the module doc for the files that steer it).
                let d = n.dir.path();
                script(
                    &d.join("health.sh"),
                    &format!(
                        "#!/bin/sh\necho \"$RC_PHASE $RC_NODE_NAME $RC_LOCK_HELD\" >> {log}\n\
                         if [ \"$RC_PHASE\" = post-lock ] && [ -e {slow} ]; then sleep $(cat {slow}); fi\n\
                         if [ \"$RC_PHASE\" = post-lock ] && [ -e {hold} ]; then touch {holding}; i=0; \
                         while [ -e {hold} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; rm -f {holding}; fi\n\
                         if [ \"$RC_PHASE\" = post-reboot ] && [ -e {fail} ]; then echo 'still syncing'; exit 1; fi\n\
                         if [ -e {block} ]; then echo 'quorum would break'; exit 3; fi\nexit 0\n",
                        log = d.join("health.log").display(),
                        slow = d.join("slow").display(),
                        hold = d.join("hold").display(),
                        holding = d.join("holding").display(),
                        fail = d.join("fail-post-reboot").display(),
                        block = d.join("block").display(),
                    ),
                );
                let (code, out, err) = n.once(&["validate-config"]);
                assert_eq!(code, 0, "config invalid:\n{out}\n{err}");
                n
            })
            .collect();
        let shared = Arc::new(Shared {
            t0: Instant::now(),
            k: AtomicUsize::new(o.k),
            down_time: o.down,
            stop: AtomicBool::new(false),
            next_never_returns: AtomicBool::new(false),
            rt: Mutex::new((0..o.n).map(|_| NodeRt::default()).collect()),
            max_seen: AtomicUsize::new(0),
            violation: Mutex::new(None),
            lock_prefix: format!("{ns}/cluster/clusterrebootd/lock/"),
            endpoints,
        });
        let mut c = Cluster {
            etcd,
            nodes: Arc::new(nodes),
            ns,
            shared,
            threads: Vec::new(),
        };
        let (nodes, sh) = (c.nodes.clone(), c.shared.clone());
        c.threads
            .push(std::thread::spawn(move || simulator(&nodes, &sh)));
        let (nodes, sh) = (c.nodes.clone(), c.shared.clone());
        c.threads
            .push(std::thread::spawn(move || checker(&nodes, &sh)));
        c
    }

    /// Milliseconds since the cluster was built (the simulator's clock).
    pub fn now_ms(&self) -> u64 {
        ms_since(self.shared.t0)
    }

    /// Starts every node's daemon.
    pub fn start_all(&self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Starts node `i`'s daemon (after a SIGKILL, say).
    pub fn start(&self, i: usize) {
        // A SIGKILLed daemon leaves its last state.json behind (e.g. "HealthPost"); the new
        // process rewrites it at once, but until then the checker must not read the dead
        // process's claim as a live slot holder.
        let _ = std::fs::remove_file(self.nodes[i].path("run/state.json"));
        let child = self.nodes[i].start();
        let mut rt = self.shared.rt.lock().expect("rt");
        rt[i].child = Some(child);
        rt[i].gone = false;
    }

    /// SIGKILLs node `i`'s daemon.
    pub fn sigkill(&self, i: usize) {
        let mut rt = self.shared.rt.lock().expect("rt");
        rt[i].gone = true;
        if let Some(mut c) = rt[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The next reboot (whichever node it is) never comes back.
    pub fn next_reboot_never_returns(&self) {
        self.shared.next_never_returns.store(true, Ordering::SeqCst);
    }

    /// Changes the `max_concurrent_reboots` the checker enforces from now on (raise it before
    /// the daemons are told, lower it after they all run with the new value).
    pub fn set_k(&self, k: usize) {
        self.shared.k.store(k, Ordering::SeqCst);
    }

    /// Marks node `i` as cut off from etcd (or reconnected): while cut off, the checker counts
    /// it as a slot holder only while etcd still lists its queue entry among the first K.
    pub fn set_cut_off(&self, i: usize, cut: bool) {
        self.shared.rt.lock().expect("rt")[i].cut_off = cut;
    }

    /// Whether the simulator has node `i` down (its reboot command ran, not started again).
    pub fn is_down(&self, i: usize) -> bool {
        self.shared.rt.lock().expect("rt")[i].down
    }

    /// Sends SIGHUP to every running daemon (a node that is down reads the config file when the
    /// simulator starts it again); returns the names of the nodes signalled.
    pub fn sighup_all(&self) -> Vec<String> {
        let rt = self.shared.rt.lock().expect("rt");
        let mut sent = Vec::new();
        for (i, r) in rt.iter().enumerate() {
            if let Some(c) = &r.child {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
                if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).is_ok() {
                    sent.push(self.nodes[i].name.clone());
                }
            }
        }
        sent
    }

    /// The node names of the etcd slot queue in create-revision order (the first K hold a
    /// slot); `None` when etcd does not answer.
    pub fn queue(&self) -> Option<Vec<String>> {
        etcd_queue(&self.shared)
    }

    /// The daemons that exited by themselves (empty: every started daemon still runs).
    pub fn all_running(&self) -> Vec<String> {
        let mut rt = self.shared.rt.lock().expect("rt");
        let mut dead = Vec::new();
        for (i, r) in rt.iter_mut().enumerate() {
            if let Some(Ok(Some(s))) = r.child.as_mut().map(Child::try_wait) {
                dead.push(format!("{} exited: {s}", self.nodes[i].name));
            }
        }
        dead
    }

    /// Reboot commands run by node `i` so far.
    pub fn reboots(&self, i: usize) -> usize {
        self.nodes[i].read("reboots.log").lines().count()
    }

    /// Reboot commands run by all nodes.
    pub fn total_reboots(&self) -> usize {
        (0..self.nodes.len()).map(|i| self.reboots(i)).sum()
    }

    /// What the simulator saw for node `i`.
    pub fn sim(&self, i: usize) -> SimLog {
        self.shared.rt.lock().expect("rt")[i].sim.clone()
    }

    /// Whether node `i` is idle after a recovery from `count` reboots and is running.
    pub fn recovered(&self, i: usize, count: usize) -> bool {
        let n = &self.nodes[i];
        let rt = self.shared.rt.lock().expect("rt");
        !rt[i].down
            && rt[i].sim.up.len() >= count
            && n.state()["state"] == "Idle"
            && n.state()["boot_id"] == format!("boot-{}", count + 1)
    }

    /// Waits for `cond`, failing with the cluster timeline.
    pub fn wait_for(&self, what: &str, secs: u64, cond: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            self.check_violation();
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {secs}s waiting for {what}\n{}",
            self.timeline()
        );
    }

    /// Waits until every node ran exactly one reboot and is back, idle, on its new boot id.
    pub fn wait_all_rebooted_once(&self, secs: u64) {
        self.wait_for("every node to reboot once and recover", secs, |c| {
            (0..c.nodes.len()).all(|i| c.recovered(i, 1))
        });
        for i in 0..self.nodes.len() {
            assert_eq!(
                self.reboots(i),
                1,
                "{}\n{}",
                self.nodes[i].name,
                self.timeline()
            );
        }
    }

    /// Panics with the timeline if the checker saw a violation.
    pub fn check_violation(&self) {
        if let Some(v) = self.shared.violation.lock().expect("v").clone() {
            panic!("{v}");
        }
    }

    /// The largest number of nodes seen holding a slot (or down) at once.
    pub fn max_seen(&self) -> usize {
        self.shared.max_seen.load(Ordering::SeqCst)
    }

    /// Per-node journal transitions, for failure messages.
    pub fn timeline(&self) -> String {
        timeline(&self.nodes, &self.shared)
    }

    /// Largest overlap of held intervals according to the journals (exact ms timestamps);
    /// valid when no daemon was SIGKILLed or lost.
    pub fn journal_max_overlap(&self) -> usize {
        self.journal_max_overlap_of(&(0..self.nodes.len()).collect::<Vec<_>>())
    }

    /// [`Cluster::journal_max_overlap`] over the nodes `which` only (e.g. leaving out a node
    /// whose state file kept claiming a slot etcd had already taken from it).
    pub fn journal_max_overlap_of(&self, which: &[usize]) -> usize {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        for n in which.iter().map(|i| &self.nodes[*i]) {
            let mut since: Option<u64> = None;
            for r in records(n) {
                let held = |s: &str| HELD.contains(&s);
                match (held(&r.from), held(&r.to)) {
                    (false, true) => since = Some(r.now),
                    (true, false) => {
                        if let Some(s) = since.take() {
                            edges.push((s, 1));
                            edges.push((r.now, -1));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(s) = since {
                edges.push((s, 1));
                edges.push((u64::MAX, -1));
            }
        }
        max_overlap(edges)
    }

    /// `etcdctl get --prefix <ns>/` output.
    pub fn etcd_dump(&self) -> String {
        self.etcd
            .etcdctl(None, &["get", "--prefix", &format!("{}/", self.ns)])
            .1
    }

    /// Stops the threads and every daemon (SIGTERM), checks the invariant one last time.
    pub fn finish(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.check_violation();
        let mut rt = self.shared.rt.lock().expect("rt");
        for r in rt.iter_mut() {
            if let Some(mut c) = r.child.take() {
                sigterm(&mut c);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Ok(mut rt) = self.shared.rt.lock() {
            for r in rt.iter_mut() {
                if let Some(mut c) = r.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

/// A journal record, reduced.
#[derive(Debug, Clone)]
pub struct Rec {
    /// RFC 3339 time.
    pub ts: String,
    /// ms since the epoch.
    pub now: u64,
    /// From state.
    pub from: String,
    /// To state.
    pub to: String,
    /// Event type.
    pub event: String,
    /// Reason.
    pub reason: String,
    /// Outcome, if a pass ended.
    pub outcome: Option<String>,
    /// The raw JSON line.
    pub line: String,
}

/// Node `n`'s journal records.
pub fn records(n: &Node) -> Vec<Rec> {
    n.read("state/journal.jsonl")
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .map(|v| (v, l.to_string()))
        })
        .filter(|(v, _)| v["kind"] == "record")
        .map(|(v, line)| Rec {
            line,
            ts: v["ts"].as_str().unwrap_or_default().to_string(),
            now: v["now"].as_u64().unwrap_or_default(),
            from: v["from"].as_str().unwrap_or_default().to_string(),
            to: v["to"].as_str().unwrap_or_default().to_string(),
            event: v["event"]["type"].as_str().unwrap_or_default().to_string(),
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
            outcome: v["outcome"].as_str().map(str::to_string),
        })
        .collect()
}

fn timeline(nodes: &[Node], sh: &Shared) -> String {
    let mut out = String::new();
    let sims: Vec<SimLog> = sh
        .rt
        .lock()
        .map(|rt| rt.iter().map(|r| r.sim.clone()).collect())
        .unwrap_or_default();
    for (i, n) in nodes.iter().enumerate() {
        out.push_str(&format!("=== {} (simulator: {:?})\n", n.name, sims.get(i)));
        let recs: Vec<String> = records(n)
            .into_iter()
            .filter(|r| r.from != r.to)
            .map(|r| format!("  {} {} -> {}: {}", r.ts, r.from, r.to, r.reason))
            .collect();
        out.push_str(&recs[recs.len().saturating_sub(25)..].join("\n"));
        let warnings: String = n
            .read("daemon.log")
            .lines()
            .filter(|l| l.contains("\"level\":\"warn") || l.contains("\"level\":\"error"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push_str(&format!(
            "\n  daemon.log warnings/errors (last 6):\n{}\n",
            tail(&warnings, 6)
        ));
    }
    out
}

/// Nodes with a queue entry among the first K (the slot holders) according to etcd; `None`
/// when etcd does not answer.
fn etcd_holders(sh: &Shared) -> Option<Vec<String>> {
    let k = sh.k.load(Ordering::SeqCst);
    etcd_queue(sh).map(|q| q.into_iter().take(k).collect())
}

/// The node names of the queue entries in create-revision order, according to etcd; `None`
/// when etcd does not answer.
fn etcd_queue(sh: &Shared) -> Option<Vec<String>> {
    let o = std::process::Command::new("etcdctl")
        .args([
            &format!("--endpoints={}", sh.endpoints),
            "--dial-timeout=1s",
            "--command-timeout=1s",
            "get",
            "--prefix",
            &sh.lock_prefix,
            "-w",
            "json",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let mut kvs: Vec<(u64, String)> = v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let val = kv["value"].as_str().unwrap_or_default();
                    let bytes = base64_decode(val);
                    let node = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|j| j["node"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    (kv["create_revision"].as_u64().unwrap_or_default(), node)
                })
                .collect()
        })
        .unwrap_or_default();
    kvs.sort();
    Some(kvs.into_iter().map(|(_, n)| n).collect())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buf >> bits) & 0xff).unwrap_or(0));
        }
    }
    out
}

fn checker(nodes: &[Node], sh: &Shared) {
    while !sh.stop.load(Ordering::SeqCst) {
        let (down, gone): (Vec<bool>, Vec<bool>) = {
            let rt = sh.rt.lock().expect("rt");
            (
                rt.iter().map(|r| r.down).collect(),
                rt.iter().map(|r| r.gone || r.cut_off).collect(),
            )
        };
        let k = sh.k.load(Ordering::SeqCst);
        // The state files first, etcd after: a gone or cut-off node cannot create a queue entry,
        // so one etcd still lists afterwards existed at the time of the state reads too (the
        // other order could pair a live node's fresh claim with an entry that already expired).
        let states: Vec<serde_json::Value> = nodes.iter().map(Node::state).collect();
        // A node that is not running and not coming back, or cut off from etcd, holds a slot
        // only while etcd says so.
        let holders = if gone.iter().any(|g| *g) {
            etcd_holders(sh)
        } else {
            None
        };
        let mut who = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let st = &states[i];
            let held = st["slot"]["held"] == true;
            let counts = if gone[i] {
                // etcd unreachable: assume it still holds (errs towards reporting).
                holders.as_ref().is_none_or(|h| h.contains(&n.name)) && held
            } else {
                held || down[i]
            };
            if counts {
                let why = if down[i] {
                    "down (rebooting)".to_string()
                } else {
                    format!("{} (gone or cut off: {})", st["state"], gone[i])
                };
                who.insert(n.name.clone(), why);
            }
        }
        let count = who.len();
        sh.max_seen.fetch_max(count, Ordering::SeqCst);
        if count > k {
            let mut v = sh.violation.lock().expect("v");
            if v.is_none() {
                *v = Some(format!(
                    "INVARIANT VIOLATED at +{} ms: {count} > {} nodes hold a slot or are down: {who:?}\n{}",
                    ms_since(sh.t0),
                    k,
                    timeline(nodes, sh)
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn simulator(nodes: &Arc<Vec<Node>>, sh: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !sh.stop.load(Ordering::SeqCst) {
        for (i, n) in nodes.iter().enumerate() {
            let lines = n.read("reboots.log").lines().count();
            let mut rt = sh.rt.lock().expect("rt");
            if lines <= rt[i].handled {
                continue;
            }
            rt[i].handled = lines;
            rt[i].down = true;
            rt[i].sim.reboot_cmd.push(ms_since(sh.t0));
            let never = sh.next_never_returns.swap(false, Ordering::SeqCst);
            let child = rt[i].child.take();
            drop(rt);
            let (nodes, sh) = (nodes.clone(), sh.clone());
            workers.push(std::thread::spawn(move || {
                reboot_node(&nodes[i], i, child, lines, never, &sh);
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in workers {
        let _ = w.join();
    }
}

fn reboot_node(n: &Node, i: usize, child: Option<Child>, count: usize, never: bool, sh: &Shared) {
    if let Some(mut c) = child {
        sigterm(&mut c);
    }
    if never {
        let mut rt = sh.rt.lock().expect("rt");
        rt[i].down = false;
        rt[i].gone = true;
        return;
    }
    let until = Instant::now() + sh.down_time;
    while Instant::now() < until {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(n.path("boot_id"), format!("boot-{}\n", count + 1)).expect("boot id");
    let _ = std::fs::remove_file(n.path("reboot-required"));
    let child = n.start();
    let mut rt = sh.rt.lock().expect("rt");
    rt[i].child = Some(child);
    rt[i].down = false;
    rt[i].sim.up.push(ms_since(sh.t0));
}

/// The most intervals open at once, from `(instant, +1 start / -1 end)` edges; at the same
/// instant ends count before starts.
pub fn max_overlap(mut edges: Vec<(u64, i32)>) -> usize {
    edges.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    usize::try_from(max).unwrap_or(0)
}
