//! etcd load at fleet scale (issue #18), counted by the simulated etcd ([`MemKv::load`]): what
//! a fleet of N production daemons asks of etcd, idle and during a rollout, at two sizes. The
//! per-node cost must not grow with N: an idle node costs its heartbeat writes and lease
//! keep-alives and receives no watch events (nobody watches while idle), and a rollout's writes
//! per reboot do not depend on the fleet's size. Figures (with larger N, release build):
//! docs/PERFORMANCE.md, "etcd load at fleet scale".
//!
//! [`MemKv::load`]: clusterrebootd::coord::memkv::MemKv::load

use std::sync::Arc;
use std::time::Duration;

use clusterrebootd::config::Policies;
use clusterrebootd::coord::memkv::MemKvLoad;
use clusterrebootd::fsm::FsmConfig;
use clusterrebootd::sim::{self, Fault, FaultKind, SimSpec, random};
use clusterrebootd::windows::Windows;

const HOUR: Duration = Duration::from_secs(3600);

/// N nodes with the Go default intervals (60 s checks, 15 s heartbeat, 90 s session lease),
/// a health policy (so heartbeats are published), the given nodes needing a reboot.
fn fleet(nodes: usize, capacity: u32, needs_reboot: Vec<usize>) -> SimSpec {
    SimSpec {
        nodes,
        capacity,
        fsm: FsmConfig {
            check_interval_ms: 60_000,
            ..FsmConfig::default()
        },
        windows: Arc::new(Windows::unrestricted(jiff::tz::TimeZone::UTC)),
        policies: Policies {
            min_healthy_absolute: 1,
            ..Policies::default()
        },
        stale_after: Duration::from_secs(600),
        lock_ttl: Duration::from_secs(90),
        heartbeat: Duration::from_secs(15),
        start_ms: random::SEED_START_MS,
        seed: 7,
        reboot_down: (Duration::from_secs(120), Duration::from_secs(120)),
        health_latency: Duration::from_secs(5),
        boot_settle: Duration::ZERO,
        detector_latency: Duration::ZERO,
        health_timeout: Duration::from_secs(30),
        needs_reboot,
        arrivals: Vec::new(),
        never_return: Vec::new(),
        groups: Vec::new(),
        // A no-op action one hour in keeps an idle fleet running for that hour.
        faults: vec![Fault::at(
            HOUR,
            FaultKind::ClockJump {
                node: 0,
                delta_ms: 0,
            },
        )],
        horizon: Duration::from_secs(7 * 86_400),
        record_journal: false,
        check_liveness: false,
        broken: None,
        soak: None,
    }
}

/// Per node per simulated hour.
fn per_node_hour(load: MemKvLoad, nodes: usize, ms: u64) -> [f64; 5] {
    let k = nodes as f64 * ms as f64 / 3_600_000.0;
    [
        load.writes as f64 / k,
        (load.ranges + load.gets) as f64 / k,
        load.keep_alives as f64 / k,
        load.lease_grants as f64 / k,
        load.watch_events as f64 / k,
    ]
}

fn idle(nodes: usize) -> [f64; 5] {
    let r = sim::run(&fleet(nodes, 1, Vec::new()));
    assert!(r.violations.is_empty(), "{}", r.failure_text());
    assert!(r.end_ms >= 3_600_000, "ran {} ms", r.end_ms);
    let per = per_node_hour(r.kv_load, nodes, r.end_ms);
    eprintln!(
        "idle N={nodes}: per node per hour writes {:.1}, reads {:.1}, keep-alives {:.1}, lease grants {:.2}, watch events {:.2}",
        per[0], per[1], per[2], per[3], per[4]
    );
    per
}

#[test]
fn an_idle_node_costs_the_same_in_a_bigger_fleet() {
    let small = idle(10);
    let big = idle(100);
    // Heartbeats (one per 15 s) and whatever the checks write: bounded, whatever N.
    assert!(big[0] <= 250.0, "idle writes per node per hour: {}", big[0]);
    for (k, what) in ["writes", "reads", "keep-alives", "lease grants"]
        .iter()
        .enumerate()
    {
        assert!(
            big[k] <= small[k] * 1.1 + 1.0,
            "idle {what} per node per hour grew with N: {} at N=10, {} at N=100",
            small[k],
            big[k]
        );
    }
    // No watch on other nodes' heartbeats: an idle node receives (almost) nothing, at any N.
    assert!(
        big[4] <= small[4] * 1.1 + 1.0,
        "idle watch events per node per hour grew with N: {} at N=10, {} at N=100 (a watch on the heartbeats?)",
        small[4],
        big[4]
    );
}

/// A rollout where every node needs a reboot, with `k` slots: etcd requests per reboot.
fn rollout(nodes: usize, k: u32) -> (f64, f64, f64) {
    let mut spec = fleet(nodes, k, (0..nodes).collect());
    spec.faults.clear();
    let r = sim::run(&spec);
    assert!(r.violations.is_empty(), "{}", r.failure_text());
    assert_eq!(r.reboot_count(), nodes, "every node reboots once");
    let n = nodes as f64;
    let l = r.kv_load;
    let per = (
        l.writes as f64 / n,
        (l.ranges + l.gets) as f64 / n,
        l.watch_events as f64 / n,
    );
    eprintln!(
        "rollout N={nodes} K={k}: per reboot writes {:.1}, reads {:.1}, watch events {:.1}; {} s simulated",
        per.0,
        per.1,
        per.2,
        r.end_ms / 1000
    );
    per
}

#[test]
fn a_reboot_costs_the_same_in_a_bigger_fleet() {
    let small = rollout(10, 1);
    let big = rollout(40, 4);
    // The writes of one reboot cycle (queue entry, its states, markers, cooldown, records,
    // heartbeats while it lasts) do not depend on how many nodes there are (K = N/10, so the
    // rollouts last as long and carry the same heartbeats per node).
    assert!(
        big.0 <= small.0 * 1.25 + 2.0,
        "writes per reboot grew with N: {} at N=10, {} at N=40",
        small.0,
        big.0
    );
    // Nor do the watch events of a hand-off, at the same K: a waiter watches only the K
    // entries just ahead of it (issue #18). When every waiter watched the whole queue, every
    // queue write reached every waiter.
    let small = rollout(10, 2);
    let big = rollout(40, 2);
    assert!(
        big.2 <= small.2 * 1.25 + 2.0,
        "watch events per reboot grew with N: {} at N=10, {} at N=40 (every waiter woken by every hand-off?)",
        small.2,
        big.2
    );
}
