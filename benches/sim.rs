//! Cluster simulation throughput: simulated node-reboots per second on one core (issue #8 asks
//! for ≥ 10 000). Each iteration simulates a complete fault-free rollout — 5 nodes, one slot,
//! the Go default intervals and TTLs, 2–5 min reboots, 5 s health checks — with the production
//! machine and slot protocol over the in-memory etcd model and the invariants checked at every
//! step, and counts one element per node reboot. A 50-node rollout with 5 slots is measured too.
//! Run: `cargo bench --bench sim`; results are recorded in docs/PERFORMANCE.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Arc;
use std::time::Duration;

use clusterrebootd::config::Policies;
use clusterrebootd::fsm::FsmConfig;
use clusterrebootd::sim::{self, SimSpec, random};
use clusterrebootd::windows::Windows;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The same allocator as the `clusterrebootd` binary (src/main.rs), so the figure is the
/// planner's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODES: usize = 5;

fn rollout(nodes: usize, capacity: u32) -> SimSpec {
    SimSpec {
        nodes,
        capacity,
        fsm: FsmConfig {
            check_interval_ms: 60_000,
            ..FsmConfig::default()
        },
        windows: Arc::new(Windows::unrestricted(jiff::tz::TimeZone::UTC)),
        policies: Policies::default(),
        stale_after: Duration::from_secs(600),
        lock_ttl: Duration::from_secs(90),
        heartbeat: Duration::from_secs(60),
        start_ms: random::SEED_START_MS,
        seed: 1,
        reboot_down: (Duration::from_secs(120), Duration::from_secs(300)),
        health_latency: Duration::from_secs(5),
        boot_settle: Duration::ZERO,
        detector_latency: Duration::ZERO,
        health_timeout: Duration::from_secs(30),
        needs_reboot: (0..nodes).collect(),
        arrivals: Vec::new(),
        never_return: Vec::new(),
        faults: Vec::new(),
        horizon: Duration::from_secs(7 * 86_400),
        record_journal: false,
        check_liveness: true,
        broken: None,
        groups: Vec::new(),
        soak: None,
    }
}

fn bench(c: &mut Criterion) {
    let spec = rollout(NODES, 1);
    let check = sim::run(&spec);
    assert!(check.violations.is_empty(), "{}", check.failure_text());
    assert_eq!(check.reboot_count(), NODES, "every node reboots once");
    eprintln!(
        "one rollout: {} machine steps, {} simulated s",
        check.steps,
        check.end_ms / 1000
    );
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(NODES as u64));
    g.sample_size(20);
    g.bench_function("rollout, planner (no journal kept)", |b| {
        b.iter(|| sim::run(&spec))
    });
    let with_journal = SimSpec {
        record_journal: true,
        ..spec.clone()
    };
    g.bench_function("rollout, test suite (every input and step kept)", |b| {
        b.iter(|| sim::run(&with_journal))
    });
    // A bigger cluster costs more per reboot: every waiting node retries its pre-lock checks
    // while a peer's in-progress marker blocks the policy (SPEC §6.3), so idle work grows with N.
    let big = rollout(50, 5);
    g.throughput(Throughput::Elements(50));
    g.sample_size(10);
    g.bench_function("rollout of 50 nodes with 5 slots, planner", |b| {
        b.iter(|| sim::run(&big))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
