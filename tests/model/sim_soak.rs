//! Accelerated soak in the simulator (issue #20, `src/sim/soak.rs`): four nodes with two slots
//! reboot over and over in virtual time (a new update every boot), the production machine and
//! slot protocol over the in-memory etcd, every invariant checked at every step; memory, the
//! store and the report stay flat.
//!
//! `CLUSTERREBOOTD_SIM_SOAK_CYCLES=N` sets the number of reboots (default 10 000; the long
//! run in docs/PERFORMANCE.md used 100 000), `CLUSTERREBOOTD_SIM_SOAK_CSV=FILE` writes the
//! checkpoints. Its own test binary: the memory figures are this process's (nextest runs each
//! test in a process of its own).

use clusterrebootd::sim::{self, soak};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn nodes_rebooting_over_and_over_stay_safe_and_flat() {
    let cycles = env_u64("CLUSTERREBOOTD_SIM_SOAK_CYCLES").unwrap_or(10_000);
    let spec = soak::spec(4, 2, cycles, 50, 7);
    let started = std::time::Instant::now();
    let report = sim::run(&spec);
    let secs = started.elapsed().as_secs_f64();
    assert!(report.violations.is_empty(), "{}", report.failure_text());
    let p = &report.soak;
    if let Ok(path) = std::env::var("CLUSTERREBOOTD_SIM_SOAK_CSV") {
        std::fs::write(&path, soak::csv(p)).expect("write the checkpoints");
    }
    let last = p.checkpoints.last().copied().unwrap_or_default();
    println!(
        "sim soak: {} reboots ({:?} per node), {} machine steps, {} simulated days in {secs:.1} s = {:.0} reboots/s; peak RSS {} KiB; etcd {:?}",
        p.reboots,
        p.per_node,
        report.steps,
        last.sim_ms / 86_400_000,
        p.reboots as f64 / secs,
        last.peak_rss_kib,
        last.kv
    );
    let problems = soak::problems(&spec, p);
    assert!(
        problems.is_empty(),
        "soak not flat:\n{}\ncheckpoints:\n{}",
        problems.join("\n"),
        soak::csv(p)
    );
}

/// The rules have teeth: progress that stalls, is unfair or grows fails.
#[test]
fn the_flat_rules_catch_growth() {
    let spec = soak::spec(4, 2, 1000, 20, 1);
    let flat = |k: u64| soak::Checkpoint {
        reboots: 50 * (k + 1),
        rss_kib: 20_000,
        peak_rss_kib: 20_000,
        kv: clusterrebootd::coord::memkv::MemKvStats {
            keys: 10,
            leases: 6,
            watchers: 12,
            history: 1000,
        },
        retained: 200,
        ..soak::Checkpoint::default()
    };
    let progress = |f: &dyn Fn(u64, &mut soak::Checkpoint)| soak::Progress {
        reboots: 1000,
        per_node: vec![250; 4],
        checkpoints: (0..20)
            .map(|k| {
                let mut c = flat(k);
                f(k, &mut c);
                c
            })
            .collect(),
        done: true,
    };
    assert_eq!(
        soak::problems(&spec, &progress(&|_, _| {})),
        Vec::<String>::new()
    );
    type Leak<'a> = &'a dyn Fn(u64, &mut soak::Checkpoint);
    let leaks: [(&str, Leak); 6] = [
        ("peak RSS", &|k, c| c.peak_rss_kib += 500 * k),
        ("watches", &|k, c| c.kv.watchers += k as usize),
        ("leases", &|k, c| c.kv.leases += k as usize / 5),
        ("keys, slowly", &|k, c| c.kv.keys += k as usize / 3),
        ("history", &|k, c| c.kv.history += 10_000 * k as usize),
        ("report", &|k, c| c.retained += 1000 * k as usize),
    ];
    for (what, leak) in leaks {
        assert!(
            !soak::problems(&spec, &progress(leak)).is_empty(),
            "a growing {what} passed"
        );
    }
    let mut stalled = progress(&|_, _| {});
    stalled.reboots = 400;
    assert!(
        !soak::problems(&spec, &stalled).is_empty(),
        "a stall passed"
    );
    let mut unfair = progress(&|_, _| {});
    unfair.per_node = vec![700, 100, 100, 100];
    assert!(
        !soak::problems(&spec, &unfair).is_empty(),
        "starvation passed"
    );
}
