//! The deterministic cluster simulation (SPEC §12.2): thousands of seeded runs of the real
//! machine and the real slot protocol over the in-memory etcd model, with faults, every step
//! checked against the invariants; determinism; a deliberately broken protocol is caught.
//!
//! `CLUSTERREBOOTD_SIM_SEED=S` re-runs one seed alone and prints its event log;
//! `CLUSTERREBOOTD_SIM_SEEDS=N` changes how many seeds the sweep runs (default 10 000).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::{Duration, Instant};

use clusterrebootd::sim::{self, Broken, random};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs seeds `shard, shard + SHARDS, …` below the sweep size (shards run in parallel).
fn sweep(shard: u64) {
    if let Some(seed) = env_u64("CLUSTERREBOOTD_SIM_SEED") {
        if shard == 0 {
            let report = sim::run(&random::spec(seed));
            println!("{:#?}", random::spec(seed));
            println!("{}", report.log_text());
            assert!(report.violations.is_empty(), "{}", report.failure_text());
        }
        return;
    }
    let seeds = env_u64("CLUSTERREBOOTD_SIM_SEEDS").unwrap_or(10_000);
    let started = Instant::now();
    let (mut runs, mut reboots, mut steps, mut live) = (0u64, 0usize, 0u64, 0usize);
    for seed in (shard..seeds).step_by(SHARDS as usize) {
        let spec = random::spec(seed);
        let report = sim::run(&spec);
        assert!(report.violations.is_empty(), "{}", report.failure_text());
        if let Some(d) = report.replay_divergence() {
            panic!("seed {seed}: replaying the journal diverged: {d}");
        }
        runs += 1;
        reboots += report.reboot_count();
        steps += report.steps;
        live += usize::from(spec.check_liveness);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation sweep shard {shard}/{SHARDS}: {runs} seeds ({live} fault-free with liveness checked) in {secs:.1} s = {:.0} seeds/s; {reboots} simulated reboots, {steps} machine steps",
        runs as f64 / secs
    );
    assert!(
        reboots as u64 > runs,
        "the sweep must actually reboot nodes"
    );
}

const SHARDS: u64 = 4;

#[test]
fn seeded_runs_keep_every_invariant_shard_0() {
    sweep(0);
}

#[test]
fn seeded_runs_keep_every_invariant_shard_1() {
    sweep(1);
}

#[test]
fn seeded_runs_keep_every_invariant_shard_2() {
    sweep(2);
}

#[test]
fn seeded_runs_keep_every_invariant_shard_3() {
    sweep(3);
}

#[test]
fn one_seed_one_run_and_seeds_differ() {
    let a = sim::run(&random::spec(42));
    let b = sim::run(&random::spec(42));
    assert_eq!(a.log_text(), b.log_text());
    assert_eq!(a.timeline(), b.timeline());
    assert!(!a.log.is_empty());
    let c = sim::run(&random::spec(43));
    assert_ne!(a.log_text(), c.log_text());
}

#[test]
fn a_protocol_that_releases_on_boot_is_caught_within_a_few_seeds() {
    let mut caught = Vec::new();
    for seed in 0..50u64 {
        let mut spec = random::spec(seed);
        spec.broken = Some(Broken::ReleaseOnBoot);
        let report = sim::run(&spec);
        if !report.violations.is_empty() {
            caught.push(seed);
        }
    }
    println!("broken protocol caught by seeds {caught:?}");
    assert!(
        caught.first().is_some_and(|&s| s < 10),
        "the checker must catch a release before post-reboot health within 10 seeds, caught by {caught:?}"
    );
}

/// The previous version's hand-off (a peer's reboot blocks, the backoff timer wakes the node)
/// must fail the sweep: by the planned-downtime check wherever a node meets a rebooting peer,
/// and by the hand-off check (one slot, updates spread over time) where it then waits.
#[test]
fn a_timer_driven_hand_off_is_caught() {
    let (mut live, mut by_check, mut spread, mut by_hand_off) = (0, 0, 0, 0);
    for seed in 0..400u64 {
        let mut spec = random::spec(seed);
        if !spec.check_liveness || spec.needs_reboot.len() < 2 {
            continue;
        }
        live += 1;
        let measured = spec.capacity == 1
            && !spec.arrivals.is_empty()
            && spec.fsm.lock_wait_timeout_ms.is_none();
        spread += usize::from(measured);
        spec.broken = Some(Broken::TimerHandoff);
        let report = sim::run(&spec);
        let has = |what: &str| report.violations.iter().any(|v| v.contains(what));
        by_check += usize::from(has("must queue behind them"));
        by_hand_off += usize::from(measured && has("hand-off too slow"));
    }
    println!(
        "timer hand-off: {live} fault-free seeds, {by_check} caught by the planned-downtime check; \
         {spread} with one slot and spread arrivals, {by_hand_off} caught by the hand-off check"
    );
    assert!(
        by_check * 3 > live,
        "planned-downtime check: {by_check} of {live}"
    );
    assert!(
        spread >= 10,
        "only {spread} seeds with one slot and spread arrivals"
    );
    assert!(
        by_hand_off * 3 >= spread,
        "hand-off check: {by_hand_off} of {spread}"
    );
}

#[test]
fn fault_free_rollouts_finish_and_reboot_everyone_once() {
    let mut checked = 0;
    for seed in 0..200u64 {
        let spec = random::spec(seed);
        if !spec.check_liveness {
            continue;
        }
        checked += 1;
        let report = sim::run(&spec);
        assert!(report.violations.is_empty(), "{}", report.failure_text());
        assert!(report.finished_ms.is_some(), "{}", report.failure_text());
        for &i in &spec.needs_reboot {
            assert_eq!(report.nodes[i].reboots.len(), 1, "{}", report.timeline());
        }
        for i in (0..spec.nodes).filter(|i| !spec.needs_reboot.contains(i)) {
            assert!(report.nodes[i].reboots.is_empty(), "{}", report.timeline());
        }
    }
    assert!(checked > 30, "only {checked} fault-free seeds");
}

/// One node that needs a reboot, with its kill switch present all along: the checker must flag
/// a daemon that ignores it, and the real one must not reboot.
#[test]
fn a_daemon_that_ignores_the_kill_switch_is_caught() {
    let mut spec = random::spec(0);
    spec.needs_reboot = vec![0];
    spec.faults = vec![sim::Fault::at(
        Duration::ZERO,
        sim::FaultKind::KillSwitch {
            node: 0,
            span: Duration::from_secs(10 * 3600),
        },
    )];
    spec.check_liveness = false;
    spec.horizon = Duration::from_secs(3600);
    let fine = sim::run(&spec);
    assert!(fine.violations.is_empty(), "{}", fine.failure_text());
    assert_eq!(fine.reboot_count(), 0, "{}", fine.timeline());
    spec.broken = Some(Broken::IgnoreKillSwitch);
    let broken = sim::run(&spec);
    assert!(
        broken.violations.iter().any(|v| v.contains("kill switch")),
        "{:?}",
        broken.violations
    );
}

/// Every window closed for the whole run: the checker must flag a daemon that reboots anyway.
#[test]
fn a_daemon_that_ignores_the_windows_is_caught() {
    let mut spec = random::spec(0);
    spec.windows = std::sync::Arc::new(
        clusterrebootd::windows::Windows::new(
            &[],
            &["* 05:00-06:00".to_string()],
            jiff::tz::TimeZone::UTC,
        )
        .expect("windows"),
    );
    spec.faults = Vec::new();
    spec.check_liveness = false;
    spec.horizon = Duration::from_secs(2 * 3600);
    let fine = sim::run(&spec);
    assert!(fine.violations.is_empty(), "{}", fine.failure_text());
    assert_eq!(fine.reboot_count(), 0, "{}", fine.timeline());
    spec.broken = Some(Broken::IgnoreWindows);
    let broken = sim::run(&spec);
    assert!(
        broken
            .violations
            .iter()
            .any(|v| v.contains("outside the maintenance windows")),
        "{:?}",
        broken.violations
    );
}

/// Issue #12: a node whose detectors and health script stop answering for 20 minutes is not
/// frozen: every request times out at its deadline, the node keeps retrying, and once the
/// adapters answer again it reboots like the others.
#[test]
fn stalled_adapters_time_out_and_the_node_reboots_afterwards() {
    let seed = (0..200u64)
        .find(|&s| {
            let spec = random::spec(s);
            spec.check_liveness && spec.needs_reboot.contains(&0) && spec.arrivals.is_empty()
        })
        .expect("a fault-free seed");
    let mut spec = random::spec(seed);
    spec.check_liveness = false;
    spec.faults.push(sim::Fault::at(
        Duration::ZERO,
        sim::FaultKind::AdaptersStall {
            node: 0,
            span: Duration::from_secs(1200),
        },
    ));
    spec.horizon = Duration::from_secs(6 * 3600);
    let report = sim::run(&spec);
    assert!(report.violations.is_empty(), "{}", report.failure_text());
    let node = &report.nodes[0];
    let timeouts = node
        .inputs
        .iter()
        .filter(|i| matches!(i.event, clusterrebootd::fsm::Event::EffectTimedOut { .. }))
        .count();
    assert!(
        timeouts >= 2,
        "requests timed out while stalled: {timeouts}\n{}",
        report.timeline()
    );
    assert_eq!(node.reboots.len(), 1, "{}", report.timeline());
    assert!(
        node.reboots[0].issued_ms >= 1_200_000,
        "it rebooted only after the adapters answered again\n{}",
        report.timeline()
    );
}

/// A fault-free seed's spec turned into a small grouped cluster (issue #16): node-1 in group
/// `c`, node-2 and node-3 in group `g`, one slot everywhere; node-1's update lands first,
/// node-3's 10 s later, node-2's 20 s later, while node-1 is down for two minutes.
fn grouped_three(broken: Option<Broken>) -> sim::SimSpec {
    let seed = (0..200u64)
        .find(|&s| {
            let spec = random::spec(s);
            spec.check_liveness && spec.fsm.lock_wait_timeout_ms.is_none()
        })
        .expect("a fault-free seed");
    let mut spec = random::spec(seed);
    spec.nodes = 3;
    spec.capacity = 1;
    spec.policies = Default::default();
    spec.needs_reboot = vec![0, 1, 2];
    spec.arrivals = vec![
        (0, Duration::ZERO),
        (2, Duration::from_secs(10)),
        (1, Duration::from_secs(20)),
    ];
    spec.reboot_down = (Duration::from_secs(120), Duration::from_secs(120));
    spec.groups = vec![
        sim::SimGroup {
            name: "c".into(),
            capacity: 1,
            members: vec![0],
        },
        sim::SimGroup {
            name: "g".into(),
            capacity: 1,
            members: vec![1, 2],
        },
    ];
    spec.broken = broken;
    spec.horizon = sim::check::liveness_bound(&spec) + Duration::from_secs(600);
    spec
}

/// The liveness check catches a deadlock: with mixed acquire orders node-3 takes the cluster
/// slot first and waits for the group slot node-2 took first, which waits for the cluster
/// slot — nobody moves until the horizon. The daemon's one order (group first) finishes the
/// same cluster.
#[test]
fn mixed_acquire_orders_deadlock_and_the_liveness_check_sees_it() {
    let fine = sim::run(&grouped_three(None));
    assert!(fine.violations.is_empty(), "{}", fine.failure_text());
    assert_eq!(fine.reboot_count(), 3, "{}", fine.timeline());
    let stuck = sim::run(&grouped_three(Some(Broken::MixedAcquireOrder)));
    assert!(
        stuck
            .violations
            .iter()
            .any(|v| v.contains("did not finish within the horizon")),
        "{}",
        stuck.failure_text()
    );
    assert_eq!(stuck.reboot_count(), 1, "{}", stuck.timeline());
}

/// The group invariant has teeth: a group pool with as many slots as there are nodes lets the
/// two members of group `g` reboot together (cluster K raised to 2), which the checker flags.
#[test]
fn a_group_pool_that_ignores_its_size_is_caught() {
    let mut spec = grouped_three(None);
    spec.capacity = 2;
    spec.arrivals = Vec::new();
    spec.needs_reboot = vec![1, 2];
    let fine = sim::run(&spec);
    assert!(fine.violations.is_empty(), "{}", fine.failure_text());
    spec.broken = Some(Broken::IgnoreGroupCapacity);
    let broken = sim::run(&spec);
    assert!(
        broken
            .violations
            .iter()
            .any(|v| v.contains("nodes of reboot group g in their reboot span")),
        "{:?}",
        broken.violations
    );
}

/// The sweep really covers groups: enough seeds have them, with and without faults, and
/// their fault-free rollouts reboot everyone once within the liveness bound.
#[test]
fn grouped_seeds_are_swept_and_finish() {
    let (mut grouped, mut live) = (0, 0);
    for seed in 0..300u64 {
        let spec = random::spec(seed);
        if spec.groups.is_empty() {
            continue;
        }
        grouped += 1;
        if !spec.check_liveness {
            continue;
        }
        live += 1;
        let report = sim::run(&spec);
        assert!(report.violations.is_empty(), "{}", report.failure_text());
        for &i in &spec.needs_reboot {
            assert_eq!(report.nodes[i].reboots.len(), 1, "{}", report.timeline());
        }
    }
    println!("{grouped} of 300 seeds have reboot groups, {live} of them fault-free");
    assert!(
        grouped >= 40 && live >= 10,
        "{grouped} grouped, {live} live"
    );
}
