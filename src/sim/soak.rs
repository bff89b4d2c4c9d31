//! Accelerated soak (issue #20): a few simulated nodes reboot over and over in virtual time —
//! every boot brings a new update — for a fixed number of reboot cycles, with every invariant
//! of [`super::check`] checked at every step, and figures taken at checkpoints to show that
//! nothing grows: the process's memory (`/proc/self/status`), the in-memory etcd (keys, leases,
//! watches, history) and what the report keeps.
//!
//! A real etcd compacts its history (`--auto-compaction-*`); the simulated one keeps it until
//! told, so every [`HOUSEKEEPING_EVERY`] reboots the soak compacts it to the last
//! [`KV_HISTORY_KEPT`] revisions, and trims the report to the last [`RETAINED`] segments,
//! reboots and log lines of each kind (the planner and the tests keep everything; a soak of
//! 100 000 reboots would not be flat). The journal of inputs and steps is not recorded (it is
//! what the seeded sweep replays).

use std::sync::Arc;
use std::time::Duration;

pub use super::report::{Checkpoint, Progress};
use super::state::{Shared, World};
use super::{SimSpec, random};
use crate::config::Policies;
use crate::coord::memkv::MemKvStats;
use crate::fsm::FsmConfig;
use crate::windows::Windows;

/// Revisions of history the simulated etcd keeps after each compaction.
pub const KV_HISTORY_KEPT: i64 = 1000;
/// Reboots between two compactions and trims, whatever the checkpoint interval.
pub const HOUSEKEEPING_EVERY: u64 = 100;
/// Segments and reboots per node, and world log lines, the report keeps in a soak.
pub const RETAINED: usize = 64;

/// What a soak run is asked to do (part of [`SimSpec`], `None` outside a soak).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakMode {
    /// Stop after this many reboot commands (all nodes together).
    pub cycles: u64,
    /// Take a checkpoint every this many reboots.
    pub checkpoint_every: u64,
}

/// The soak's parameters: `nodes` nodes, `capacity` slots, a policy that keeps
/// `nodes - capacity` healthy (so heartbeats and the policy read run every pass), Go default
/// intervals and TTLs, 30 s – 2 min reboots, 5 s health checks, every window open, no faults.
pub fn spec(nodes: usize, capacity: u32, cycles: u64, checkpoints: u64, seed: u64) -> SimSpec {
    let nodes = nodes.max(1);
    let capacity = capacity.clamp(1, u32::try_from(nodes).unwrap_or(u32::MAX));
    SimSpec {
        nodes,
        capacity,
        fsm: FsmConfig {
            check_interval_ms: 60_000,
            ..FsmConfig::default()
        },
        windows: Arc::new(Windows::unrestricted(jiff::tz::TimeZone::UTC)),
        policies: Policies {
            min_healthy_absolute: (nodes as u64).saturating_sub(u64::from(capacity)),
            ..Policies::default()
        },
        stale_after: Duration::from_secs(600),
        lock_ttl: Duration::from_secs(90),
        heartbeat: Duration::from_secs(60),
        start_ms: random::SEED_START_MS,
        seed,
        reboot_down: (Duration::from_secs(30), Duration::from_secs(120)),
        health_latency: Duration::from_secs(5),
        boot_settle: Duration::ZERO,
        detector_latency: Duration::ZERO,
        health_timeout: Duration::from_secs(30),
        needs_reboot: (0..nodes).collect(),
        arrivals: Vec::new(),
        never_return: Vec::new(),
        faults: Vec::new(),
        // An hour of virtual time per cycle is far more than a cycle takes: reaching the
        // horizon means the soak stalled.
        horizon: Duration::from_secs(3600)
            .saturating_mul(u32::try_from(cycles).unwrap_or(u32::MAX)),
        record_journal: false,
        check_liveness: true,
        broken: None,
        groups: Vec::new(),
        soak: Some(SoakMode {
            cycles,
            checkpoint_every: (cycles / checkpoints.max(1)).max(1),
        }),
    }
}

/// After a reboot command of node `i` (the world unlocked): counts it, compacts the simulated
/// etcd and trims the report every [`HOUSEKEEPING_EVERY`] reboots, and takes the figures at a
/// checkpoint.
pub fn after_reboot(sh: &Shared, i: usize) {
    let Some(mode) = sh.spec.soak else { return };
    let (housekeeping, checkpoint) = {
        let mut w = sh.world();
        let p = &mut w.soak;
        p.per_node.resize(sh.spec.nodes, 0);
        p.reboots += 1;
        if let Some(n) = p.per_node.get_mut(i) {
            *n += 1;
        }
        p.done = p.reboots >= mode.cycles;
        (
            p.reboots.is_multiple_of(HOUSEKEEPING_EVERY),
            p.reboots.is_multiple_of(mode.checkpoint_every) || p.done,
        )
    };
    if housekeeping {
        sh.kv
            .compact(sh.kv.revision().saturating_sub(KV_HISTORY_KEPT));
        trim(&mut sh.world());
    }
    if !checkpoint {
        return;
    }
    let kv = sh.kv.stats();
    let mut w = sh.world();
    let retained = retained(&w);
    let (rss_kib, peak_rss_kib) = memory();
    let c = Checkpoint {
        reboots: w.soak.reboots,
        steps: w.steps,
        sim_ms: sh.elapsed_ms(),
        wall_ms: u64::try_from(sh.wall_start.elapsed().as_millis()).unwrap_or(u64::MAX),
        rss_kib,
        peak_rss_kib,
        kv,
        retained,
    };
    w.soak.checkpoints.push(c);
}

/// Keeps the last [`RETAINED`] entries of every growing list of the report.
fn trim(w: &mut World) {
    fn keep_last<T>(v: &mut Vec<T>) {
        if v.len() > RETAINED {
            v.drain(..v.len() - RETAINED);
        }
    }
    keep_last(&mut w.log);
    for n in &mut w.nodes {
        keep_last(&mut n.report.segments);
        keep_last(&mut n.report.reboots);
    }
}

/// Entries the report's growing lists hold.
fn retained(w: &World) -> usize {
    w.log.len()
        + w.nodes
            .iter()
            .map(|n| n.report.segments.len() + n.report.reboots.len())
            .sum::<usize>()
}

/// `VmRSS` and `VmHWM` of this process in KiB (Linux; zeros elsewhere).
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Growth allowed for the peak RSS after warm-up: this share of it …
pub const PEAK_GROWTH_PCT: u64 = 10;
/// … or at least this much (KiB), allocator noise on a small heap.
pub const PEAK_GROWTH_FLOOR_KIB: u64 = 4096;

/// A figure of the store: name, bound for the soak's nodes, how to read it.
type Field = (&'static str, usize, fn(&MemKvStats) -> usize);

/// What is not flat or not done in a soak's progress (empty = it passed): the cycles were
/// reached and every node took its share; after warm-up (the first tenth of the checkpoints)
/// the peak RSS grew by at most [`PEAK_GROWTH_PCT`] % (or [`PEAK_GROWTH_FLOOR_KIB`]); the
/// simulated etcd's keys, leases and watches stay within a bound per node and do not trend
/// up, its history stays within what [`HOUSEKEEPING_EVERY`] reboots write beyond
/// [`KV_HISTORY_KEPT`], and the report stays trimmed (what as many reboots add to
/// [`RETAINED`] per list).
pub fn problems(spec: &SimSpec, p: &Progress) -> Vec<String> {
    let mut out = Vec::new();
    let Some(mode) = spec.soak else {
        return vec!["not a soak spec".into()];
    };
    if p.reboots < mode.cycles {
        out.push(format!(
            "only {} of {} reboot cycles before the horizon: the soak stalled",
            p.reboots, mode.cycles
        ));
    }
    let fair = mode.cycles / (spec.nodes as u64) / 2;
    for (i, n) in p.per_node.iter().enumerate() {
        if *n < fair {
            out.push(format!(
                "{} rebooted {n} times, less than half its share ({fair})",
                super::node_name(i)
            ));
        }
    }
    let cps = &p.checkpoints;
    let warm = (cps.len() / 10).max(1);
    if cps.len() < warm + 4 {
        out.push(format!("only {} checkpoints, too few to judge", cps.len()));
        return out;
    }
    let (w, rest) = cps.split_at(warm);
    let base = w.last().map_or(0, |c| c.peak_rss_kib);
    let end = rest.last().map_or(0, |c| c.peak_rss_kib);
    let allowed = (base * PEAK_GROWTH_PCT / 100).max(PEAK_GROWTH_FLOOR_KIB);
    if end > base + allowed {
        out.push(format!(
            "peak RSS grew from {base} KiB after warm-up to {end} KiB, more than {allowed} KiB"
        ));
    }
    // The store's live content depends on where each node is in its cycle at the checkpoint,
    // so it is held to a bound per node (at most a queue entry, an in-progress marker, a
    // health record and the cooldown each; a session and a reboot lease; a pause, a queue and
    // a cluster watch) and must not trend up: its mean over the second half of the checkpoints
    // after warm-up within one of the first half's (a peak of a few discrete samples is noise).
    let n = spec.nodes;
    let fields: [Field; 3] = [
        ("keys", 4 * n + 2, |k| k.keys),
        ("leases", 2 * n, |k| k.leases),
        ("watches", 3 * n, |k| k.watchers),
    ];
    let (first, second) = rest.split_at(rest.len() / 2);
    for (name, bound, f) in fields {
        let most = cps.iter().map(|c| f(&c.kv)).max().unwrap_or(0);
        let mean = |cs: &[Checkpoint]| {
            cs.iter().map(|c| f(&c.kv) as f64).sum::<f64>() / cs.len().max(1) as f64
        };
        if most > bound {
            out.push(format!(
                "simulated etcd {name}: {most} at a checkpoint, more than {bound} for {n} nodes"
            ));
        } else if mean(second) > mean(first) + 1.0 {
            out.push(format!(
                "simulated etcd {name}: mean {:.1} in the second half after warm-up, {:.1} in the first",
                mean(second),
                mean(first)
            ));
        }
    }
    // Revisions written between two compactions, generously: each reboot writes a few dozen.
    let history_bound =
        usize::try_from(KV_HISTORY_KEPT).unwrap_or(0) + 100 * HOUSEKEEPING_EVERY as usize;
    if let Some(c) = cps.iter().find(|c| c.kv.history > history_bound) {
        out.push(format!(
            "simulated etcd history {} revisions at {} reboots, bound {history_bound}",
            c.kv.history, c.reboots
        ));
    }
    // Per reboot: one reboot record, a few segments, two log lines, at most.
    let retained_bound = RETAINED * (2 * spec.nodes + 1) + 20 * HOUSEKEEPING_EVERY as usize;
    if let Some(c) = cps.iter().find(|c| c.retained > retained_bound) {
        out.push(format!(
            "report holds {} entries at {} reboots, bound {retained_bound}",
            c.retained, c.reboots
        ));
    }
    out
}

/// The checkpoints as CSV (docs/PERFORMANCE.md's chart reads it).
pub fn csv(p: &Progress) -> String {
    let mut out = String::from(
        "reboots,steps,sim_s,wall_ms,rss_kib,peak_rss_kib,kv_keys,kv_leases,kv_watches,kv_history,retained\n",
    );
    for c in &p.checkpoints {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            c.reboots,
            c.steps,
            c.sim_ms / 1000,
            c.wall_ms,
            c.rss_kib,
            c.peak_rss_kib,
            c.kv.keys,
            c.kv.leases,
            c.kv.watchers,
            c.kv.history,
            c.retained
        ));
    }
    out
}
