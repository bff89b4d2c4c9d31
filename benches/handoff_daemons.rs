//! Daemon-level hand-off latency (issue #18): real daemon processes on a real etcd 3.4 member,
//! `max_concurrent_reboots: 1`, trivial health and reboot scripts, the Go default intervals (so
//! nothing in a hand-off can wait for a timer). Each node starts 200 ms after the previous one
//! with its update installed, so every node but the first queues behind a reboot; the reboot is
//! simulated by `tests/support/cluster.rs` (SIGTERM, down time, new boot id, start again).
//!
//! Measured per hand-off, from the two nodes' journals (the `now` of every record, ms) and the
//! reboot script's own clock (ns): previous node's recovery finished (`Recovering → Idle`) →
//! next node's reboot command started, split into the steps between them.
//!
//! Run: `cargo bench --bench handoff_daemons -- --runs 4 --nodes 6 [--svg docs/handoff.svg]`.
//! The figures and the chart go to docs/PERFORMANCE.md. Outside `cargo bench` (test mode,
//! nextest listing) it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic

#[path = "../tests/support/cluster.rs"]
mod cluster;
#[path = "../tests/support/etcd.rs"]
mod etcd;
#[path = "../tests/support/node.rs"]
mod node;

use std::time::Duration;

use cluster::{Cluster, Opts, Rec, records};

/// One hand-off's steps, in ms (the reboot-command step from the script's ns clock).
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// Previous node's `Recovering → Idle` → next node's `Locking → HealthPost` (slot release,
    /// watch event, queue read, the record's fsync).
    acquire: f64,
    /// `Locking → HealthPost` → `HealthPost → Cooldown` (post-lock checks: detectors, cluster
    /// policy read, health script).
    checks: f64,
    /// `HealthPost → Cooldown` → `Cooldown → Rebooting` (cooldown read of the last reboot).
    cooldown: f64,
    /// `Cooldown → Rebooting` → the reboot command's first instruction (move onto the reboot
    /// lease, in-progress marker, journal, fork/exec).
    reboot: f64,
}

impl Steps {
    fn total(&self) -> f64 {
        self.acquire + self.checks + self.cooldown + self.reboot
    }
}

fn first(recs: &[Rec], from: &str, to: &str) -> u64 {
    recs.iter()
        .find(|r| r.from == from && r.to == to)
        .unwrap_or_else(|| panic!("no {from} -> {to} record"))
        .now
}

/// The reboot script's start time, ns since the epoch (first line of `reboot-at.log`).
fn reboot_ns(n: &node::Node) -> u64 {
    n.read("reboot-at.log")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("reboot-at.log")
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// etcd's own WAL fsyncs so far: (count, total seconds), from its `/metrics` (each write the
/// daemons make waits for one; a hand-off has four on its path).
fn wal_fsyncs(c: &Cluster) -> (f64, f64) {
    let url = format!("{}/metrics", c.etcd.endpoints()[0]);
    let out = std::process::Command::new("curl")
        .args(["-s", &url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let value = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("etcd_disk_wal_fsync_duration_seconds_count"),
        value("etcd_disk_wal_fsync_duration_seconds_sum"),
    )
}

fn one_run(n: usize) -> Vec<Steps> {
    let c = Cluster::new(Opts {
        n,
        k: 1,
        down: Duration::from_millis(500),
        go_intervals: true,
        ..Opts::default()
    });
    for nd in c.nodes.iter() {
        // The packaged log level (the test nodes log at debug).
        let cfg = nd.read("config.yaml").replace(
            "log: {level: debug, format: json}",
            "log: {level: info, format: json}",
        );
        std::fs::write(nd.path("config.yaml"), cfg).expect("config");
        // The reboot command's own clock, before the simulator's record of it.
        let script = nd.path("reboot.sh");
        let body = std::fs::read_to_string(&script).expect("reboot.sh");
        let body = body.replacen(
            "#!/bin/sh\n",
            &format!(
                "#!/bin/sh\ndate +%s%N >> {}\n",
                nd.path("reboot-at.log").display()
            ),
            1,
        );
        std::fs::write(&script, body).expect("reboot.sh");
    }
    let mut tracer = None;
    for i in 0..n {
        c.start(i);
        std::thread::sleep(Duration::from_millis(200));
        if i == 1
            && let Some(out) = std::env::var_os("HANDOFF_STRACE")
        {
            // The second node's daemon, while it waits in the queue (investigation only).
            let cfg = c.nodes[1].path("config.yaml");
            let pid = std::process::Command::new("pgrep")
                .args(["-f", &cfg.display().to_string()])
                .output()
                .expect("pgrep");
            let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
            tracer = Some(
                std::process::Command::new("strace")
                    .args(["-ttt", "-T", "-s", "80", "-p", &pid, "-o"])
                    .arg(out)
                    .spawn()
                    .expect("strace"),
            );
        }
    }
    c.wait_all_rebooted_once(30 + 5 * n as u64);
    assert_eq!(c.max_seen(), 1, "{}", c.timeline());
    let recs: Vec<Vec<Rec>> = c.nodes.iter().map(records).collect();
    let mut order: Vec<(u64, usize)> = (0..n).map(|i| (reboot_ns(&c.nodes[i]), i)).collect();
    order.sort_unstable();
    let steps = order
        .windows(2)
        .map(|w| {
            let (prev, next) = (&recs[w[0].1], &recs[w[1].1]);
            let recovered = first(prev, "Recovering", "Idle");
            let acquired = first(next, "Locking", "HealthPost");
            let checked = first(next, "HealthPost", "Cooldown");
            let rebooting = first(next, "Cooldown", "Rebooting");
            if std::env::var_os("HANDOFF_TRACE").is_some() {
                for r in next
                    .iter()
                    .filter(|r| r.now >= acquired && r.now <= rebooting + 50)
                {
                    let v: serde_json::Value = serde_json::from_str(&r.line).expect("record");
                    let effects: Vec<String> = v["effects"]
                        .as_array()
                        .map(|a| a.iter().map(|e| e["type"].to_string()).collect())
                        .unwrap_or_default();
                    println!(
                        "  {} +{} {} -> {} {} {effects:?}",
                        r.now,
                        r.now - recovered,
                        r.from,
                        r.to,
                        r.event
                    );
                }
            }
            Steps {
                acquire: (acquired - recovered) as f64,
                checks: (checked - acquired) as f64,
                cooldown: (rebooting - checked) as f64,
                reboot: ms(w[1].0) - rebooting as f64,
            }
        })
        .collect();
    let (count, sum) = wal_fsyncs(&c);
    if count > 0.0 {
        println!(
            "etcd WAL fsyncs in this run: {count}, mean {:.2} ms",
            sum * 1e3 / count
        );
    }
    c.finish();
    if let Some(mut t) = tracer {
        let _ = t.wait();
    }
    steps
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// An SVG chart: one stacked bar per hand-off (the four steps), sorted by total, with the
/// median and the goal (15 ms) as lines.
fn svg(all: &[Steps]) -> String {
    let mut v = all.to_vec();
    v.sort_by(|a, b| a.total().total_cmp(&b.total()));
    let (w, h, left, right, top, bottom) = (800.0, 380.0, 60.0, 110.0, 40.0, 100.0);
    let max = v.iter().map(Steps::total).fold(20.0_f64, f64::max).ceil();
    let plot_h = h - top - bottom;
    let y = |ms: f64| top + plot_h * (1.0 - ms / max);
    let bar_w = (w - left - right) / v.len() as f64;
    let colours = [
        ("acquire: release → watch → queue read", "#4e79a7"),
        (
            "post-lock checks: gates, window, detectors, cluster health, cooldown, health script",
            "#f28e2b",
        ),
        ("cooldown read", "#59a14f"),
        (
            "cooldown → reboot command: reboot lease + marker, hooks, last window check, exec",
            "#e15759",
        ),
    ];
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{left}' y='18' font-size='13'>Hand-off: previous node recovered → next node's reboot command ({} hand-offs, ms)</text>\n",
        v.len()
    );
    // A round tick step (1, 2, 5 × 10^k) giving at most 6 ticks.
    let step = [1u64, 2, 5, 10, 20, 50, 100, 200, 500]
        .into_iter()
        .find(|s| max / (*s as f64) <= 6.0)
        .unwrap_or(1000);
    s += &format!(
        "<text x='14' y='{:.1}' transform='rotate(-90 14 {:.1})' text-anchor='middle'>ms</text>\n\
         <text x='{:.1}' y='{:.1}' text-anchor='middle'>hand-offs, sorted by total</text>\n",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        left + (w - left - right) / 2.0,
        h - bottom + 14.0
    );
    for tick in (0..=max as u64).step_by(step as usize) {
        let ty = y(tick as f64);
        s += &format!(
            "<line x1='{left}' x2='{}' y1='{ty:.1}' y2='{ty:.1}' stroke='#ddd'/>\
             <text x='{}' y='{:.1}' text-anchor='end'>{tick}</text>\n",
            w - right,
            left - 6.0,
            ty + 4.0
        );
    }
    for (i, st) in v.iter().enumerate() {
        let x = left + i as f64 * bar_w;
        let mut base = 0.0;
        for (part, (_, colour)) in [st.acquire, st.checks, st.cooldown, st.reboot]
            .iter()
            .zip(colours)
        {
            let part = part.max(0.0);
            s += &format!(
                "<rect x='{x:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='{colour}'/>\n",
                y(base + part),
                (bar_w - 1.0).max(1.0),
                y(base) - y(base + part)
            );
            base += part;
        }
    }
    let totals: Vec<f64> = v.iter().map(Steps::total).collect();
    for (label, ms, colour) in [
        ("median", percentile(&totals, 0.5), "#333"),
        ("goal", 15.0, "#b00"),
    ] {
        let ly = y(ms);
        s += &format!(
            "<line x1='{left}' x2='{}' y1='{ly:.1}' y2='{ly:.1}' stroke='{colour}' stroke-dasharray='4 3'/>\
             <text x='{}' y='{:.1}' fill='{colour}'>{label} {ms:.1} ms</text>\n",
            w - right,
            w - right + 6.0,
            ly + 4.0
        );
    }
    for (i, (label, colour)) in colours.iter().enumerate() {
        let lx = left;
        let ly = h - bottom + 30.0 + i as f64 * 14.0;
        s += &format!(
            "<rect x='{lx}' y='{:.1}' width='10' height='10' fill='{colour}'/>\
             <text x='{}' y='{ly:.1}'>{label}</text>\n",
            ly - 9.0,
            lx + 14.0
        );
    }
    s += "</svg>\n";
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return; // test mode / nextest listing: nothing to run
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if std::env::var_os("LD_LIBRARY_PATH").is_some() {
        // cargo points LD_LIBRARY_PATH at its build directories; every exec the daemons do (the
        // health and reboot scripts) would search them for libc first, which no node does. Run
        // again without it.
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(&args[1..])
            .env_remove("LD_LIBRARY_PATH")
            .status()
            .expect("re-run");
        std::process::exit(status.code().unwrap_or(1));
    }
    let runs: usize = arg("--runs").map_or(4, |v| v.parse().expect("--runs"));
    let nodes: usize = arg("--nodes").map_or(6, |v| v.parse().expect("--nodes"));
    let mut all = Vec::new();
    for run in 0..runs {
        let steps = one_run(nodes);
        for s in &steps {
            println!(
                "run {run}: total {:5.1} ms = acquire {:4.1} + checks {:4.1} + cooldown {:4.1} + reboot {:4.1}",
                s.total(),
                s.acquire,
                s.checks,
                s.cooldown,
                s.reboot
            );
        }
        all.extend(steps);
    }
    let col = |f: fn(&Steps) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), percentile(&v, 0.99), v[v.len() - 1])
    };
    println!(
        "\n{} hand-offs ({runs} runs × {} ), ms: step | median | p99 | max",
        all.len(),
        nodes - 1
    );
    for (name, f) in [
        ("total", Steps::total as fn(&Steps) -> f64),
        ("acquire", |s: &Steps| s.acquire),
        ("checks", |s: &Steps| s.checks),
        ("cooldown", |s: &Steps| s.cooldown),
        ("reboot", |s: &Steps| s.reboot),
    ] {
        let (p50, p99, max) = col(f);
        println!("| {name} | {p50:.1} | {p99:.1} | {max:.1} |");
    }
    if let Some(path) = arg("--svg") {
        std::fs::write(&path, svg(&all)).expect("svg");
        println!("chart: {path}");
    }
}
