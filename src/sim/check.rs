//! The invariants checked during every simulated run (SPEC §2.2, §12.2).
//!
//! - **Cluster invariant**: at most K nodes are between "slot moved onto the reboot lease" and
//!   "slot released after recovery" (the *reboot span*), counted from the machines and the
//!   simulated hardware, not from what the protocol claims — a protocol that frees the slot
//!   too early is caught here. K is the capacity in effect when a node enters the span.
//! - **Group invariant** (issue #16): the same per reboot group, at most K_group of its members
//!   in their reboot span at once (the cluster invariant above is the K_total one).
//! - **Slot safety**: when the reboot command runs, the node's queue entry is among the first
//!   K entries in the (simulated) etcd — the reboot never happens without the slot — and, in a
//!   group, its group entry among the first K_group of the group's pool.
//! - **Brakes**: no reboot outside a maintenance window (by the node's own clock), with the
//!   kill switch present before the command, or with a pause set before the node's last gate
//!   check under the slot.
//! - **Once per boot**: at most one reboot command per boot id.
//! - **Liveness** (runs without blocking faults): every node that needed a reboot rebooted and
//!   recovered, within a bound computed from the configuration ([`liveness_bound`]).

//!
//! Every check is a pure function of what the world hands it (names, instants, the store's
//! content, the reports) and returns the violations it found; the world records them. None of
//! them locks or changes anything.

use std::time::Duration;

use super::SimSpec;
use super::report::NodeReport;
use crate::coord::HealthRecord;
use crate::coord::kv::KeyValue;
use crate::coord::slots::holder_of;
use crate::fsm::{BlockReason, StateName, WindowVerdict};
use crate::windows::Windows;

/// The cluster invariant, when a node enters its reboot span: `inside` are the nodes in their
/// span now (it included), `capacity` the `max_concurrent_reboots` in effect.
pub fn span_overflow(inside: &[&str], capacity: u32, now: u64) -> Option<String> {
    (inside.len() > capacity as usize).then(|| {
        format!(
            "at {now} ms: {} nodes in their reboot span with max_concurrent_reboots {capacity}: {}",
            inside.len(),
            inside.join(", ")
        )
    })
}

/// The group invariant, when a member of `group` enters its reboot span: `inside` are the
/// group's members in their span now (it included).
pub fn group_span_overflow(
    group: &str,
    inside: &[&str],
    capacity: u32,
    now: u64,
) -> Option<String> {
    (inside.len() > capacity as usize).then(|| {
        format!(
            "at {now} ms: {} nodes of reboot group {group} in their reboot span with group_max_concurrent_reboots {capacity}: {}",
            inside.len(),
            inside.join(", ")
        )
    })
}

/// The nodes of the first `k` queue entries under `slot_prefix` in the store's content `dump`
/// (by create revision).
pub fn holders(slot_prefix: &str, dump: &[KeyValue], k: u32) -> Vec<String> {
    let mut queue: Vec<&KeyValue> = dump
        .iter()
        .filter(|kv| kv.key.starts_with(slot_prefix))
        .collect();
    queue.sort_by_key(|kv| kv.create_revision);
    queue
        .iter()
        .take(k as usize)
        .map(|kv| holder_of(kv).node)
        .collect()
}

/// What the world knows at the instant a node runs its reboot command.
pub struct RebootFacts<'a> {
    /// The node.
    pub name: &'a str,
    /// Its boot id.
    pub boot_id: String,
    /// Ms after the start.
    pub now: u64,
    /// Its own wall clock (ms since the epoch), for the windows.
    pub clock_now: u64,
    /// The configured windows.
    pub windows: &'a Windows,
    /// The first `max_capacity` queue entries in etcd ([`holders`]).
    pub holders: Vec<String>,
    /// Kill switch present since (ms after the start).
    pub kill_switch_since: Option<u64>,
    /// Cluster paused since (ms after the start).
    pub paused_since: Option<u64>,
    /// Its last gate check (ms after the start).
    pub last_gate_sample: Option<u64>,
    /// Reboot commands it already ran in this boot.
    pub reboots_this_boot: u32,
    /// Its reboot group and the first K_group entries of the group's pool in etcd.
    pub group: Option<(String, Vec<String>)>,
}

/// Slot safety, the brakes and once per boot, at a reboot command.
pub fn at_reboot(f: &RebootFacts<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if !f.holders.iter().any(|h| h == f.name) {
        problems.push("rebooted without holding a slot in etcd".to_string());
    }
    if let Some((group, holders)) = &f.group
        && !holders.iter().any(|h| h == f.name)
    {
        problems.push(format!(
            "rebooted without holding a slot of reboot group {group} in etcd"
        ));
    }
    if let WindowVerdict::Closed { reason, .. } =
        crate::adapters::window::evaluate(f.windows, f.clock_now)
    {
        problems.push(format!(
            "rebooted outside the maintenance windows ({reason})"
        ));
    }
    if let Some(t) = f.kill_switch_since
        && t < f.now
    {
        problems.push(format!(
            "rebooted with the kill switch present since {t} ms"
        ));
    }
    if let (Some(p), Some(g)) = (f.paused_since, f.last_gate_sample)
        && p <= g
    {
        problems.push(format!(
            "rebooted while paused (pause set at {p} ms, before its gate check at {g} ms)"
        ));
    }
    if f.reboots_this_boot > 0 {
        problems.push(format!("second reboot command in boot {}", f.boot_id));
    }
    problems
        .into_iter()
        .map(|p| format!("at {} ms: {}: {p}", f.now, f.name))
        .collect()
}

/// An upper bound on the makespan of a fault-free rollout with every window open.
///
/// The last update's arrival, then per node: the slowest down time, the boot settle time (the
/// post-reboot health check retries with backoff until it passes: one backoff more), the
/// cooldown, the health checks before and after (two each), the detectors and a second of
/// slack. Nothing in it waits for the check interval or a backoff between nodes: every wait on
/// the cluster (a peer rebooting, its slot, the cooldown) is woken by a watch or by the
/// cooldown's own end (SPEC §6.3), so a timer-driven hand-off (up to `backoff_max` per node)
/// breaks the bound. Per node, not per K nodes, because the cooldown after each recovery
/// serialises the next start. Only `lock_wait_timeout` may legitimately send a node back to
/// its check interval: one interval per node when it is set.
pub fn liveness_bound(spec: &SimSpec) -> Duration {
    let nodes = u32::try_from(spec.needs_reboot.len()).unwrap_or(u32::MAX);
    let f = &spec.fsm;
    let last_arrival = spec.arrivals.iter().map(|a| a.1).max().unwrap_or_default();
    let settle = if spec.boot_settle.is_zero() {
        Duration::ZERO
    } else {
        spec.boot_settle + Duration::from_millis(f.backoff_max_ms)
    };
    let per_node = spec.reboot_down.1
        + settle
        + Duration::from_secs(f.min_reboot_interval_sec)
        + spec.health_latency * 4
        + spec.detector_latency * 3
        + Duration::from_secs(1);
    let timeouts = if f.lock_wait_timeout_ms.is_some() {
        Duration::from_millis(f.check_interval_ms) * nodes
    } else {
        Duration::ZERO
    };
    last_arrival + per_node * nodes + timeouts
}

/// Planned downtime never blocks (SPEC §6.3). Checked when node `i`'s policy read answered
/// `Blocked`, against the store itself (not the policy code): in a fault-free run that is only
/// right if some peer is neither a slot holder nor reports healthy and fresh (no record yet,
/// say). Were every peer a holder or healthy, the seeded policies (`min_healthy_absolute` at
/// most N − K) pass once the holders are back, so the node had to queue behind them.
pub fn blocked_only_by_holders(p: &PolicyFacts<'_>, reasons: &[BlockReason]) -> Option<String> {
    let healthy = |name: &str| {
        p.dump
            .iter()
            .find(|kv| kv.key == format!("{}{name}", p.health_prefix))
            .and_then(|kv| serde_json::from_slice::<HealthRecord>(&kv.value).ok())
            .is_some_and(|r| {
                r.healthy
                    && r.reported_at.parse::<jiff::Timestamp>().is_ok_and(|t| {
                        p.clock_now.duration_since(t).unsigned_abs() <= p.stale_after
                    })
            })
    };
    let trouble = p
        .nodes
        .iter()
        .filter(|n| *n != p.me)
        .any(|n| !p.holders.contains(n) && !healthy(n));
    (!trouble).then(|| {
        format!(
            "at {} ms: {}: blocked by the cluster policy although every peer is a slot holder or healthy (holders {}); it must queue behind them: {}",
            p.now,
            p.me,
            p.holders.join(", "),
            reasons.join("; ")
        )
    })
}

/// What the world knows when a node's policy read answered `Blocked`.
pub struct PolicyFacts<'a> {
    /// The node.
    pub me: &'a str,
    /// Every node's name.
    pub nodes: &'a [String],
    /// The first `capacity` queue entries ([`holders`]).
    pub holders: Vec<String>,
    /// The store's content.
    pub dump: &'a [KeyValue],
    /// `<namespace>/cluster_health/`.
    pub health_prefix: String,
    /// The node's own clock.
    pub clock_now: jiff::Timestamp,
    /// A health record older than this is stale.
    pub stale_after: Duration,
    /// Ms after the start.
    pub now: u64,
}

/// The hand-off is woken by the watch, not by a timer (SPEC §6.3), checked with one slot: when a
/// node recovers while another had found its update well before (time to queue), the next
/// reboot command follows within the checks under the slot (detectors and health script once),
/// or with a cooldown within its end plus a whole pass. A node left waiting for its backoff or
/// check interval is late.
fn slow_hand_offs(nodes: &[NodeReport], spec: &SimSpec) -> Vec<String> {
    if spec.capacity != 1 || spec.fsm.lock_wait_timeout_ms.is_some() || !spec.record_journal {
        return Vec::new();
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // A queued node takes the slot at the release and runs the checks under it once (detectors,
    // health script); with a cooldown it waits for its end and runs a whole pass (twice that).
    let under_slot = ms(spec.detector_latency) + ms(spec.health_latency);
    let pass = 2 * under_slot + 1_000;
    let slack = match spec.fsm.min_reboot_interval_sec {
        0 => under_slot + 500,
        c => c * 1000 + pass,
    };
    // (issued, recovered, node) of every reboot, and when each node first found its update.
    let mut reboots: Vec<(u64, Option<u64>, usize)> = Vec::new();
    let mut ready: Vec<Option<u64>> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for r in &n.reboots {
            reboots.push((r.issued_ms, r.recovered_ms, i));
        }
        // From the journal (fault-free runs have no clock steps: node time = start + elapsed).
        ready.push(
            n.steps
                .iter()
                .zip(&n.inputs)
                .find(|(s, _)| s.to == StateName::WindowCheck)
                .map(|(_, input)| input.now.saturating_sub(spec.start_ms)),
        );
    }
    reboots.sort_unstable();
    let mut problems = Vec::new();
    for pair in reboots.windows(2) {
        let ((_, Some(recovered), prev), (next_at, _, next)) = (pair[0], pair[1]) else {
            continue;
        };
        let waiting = (0..nodes.len()).any(|j| {
            j != prev
                && ready[j].is_some_and(|t| t + pass < recovered)
                && !reboots.iter().any(|r| r.2 == j && r.0 < recovered)
        });
        if waiting && next_at > recovered + slack {
            problems.push(format!(
                "hand-off too slow: {} recovered at {recovered} ms, {} rebooted only at {next_at} ms (more than {slack} ms later while a node was waiting)",
                nodes[prev].name, nodes[next].name
            ));
        }
    }
    problems
}

/// End-of-run checks over the nodes' reports: liveness and the hand-off's speed.
pub fn at_end(nodes: &[NodeReport], spec: &SimSpec, finished: Option<u64>) -> Vec<String> {
    // A soak never finishes a rollout; its liveness is `soak::problems`.
    if !spec.check_liveness || spec.soak.is_some() {
        return Vec::new();
    }
    let bound = u64::try_from(liveness_bound(spec).as_millis()).unwrap_or(u64::MAX);
    let mut problems = Vec::new();
    match finished {
        None => problems.push(format!(
            "the rollout did not finish within the horizon ({} ms)",
            spec.horizon.as_millis()
        )),
        Some(t) if t > bound => problems.push(format!(
            "the rollout took {t} ms, more than the liveness bound {bound} ms"
        )),
        Some(_) => {}
    }
    problems.extend(slow_hand_offs(nodes, spec));
    for n in spec.needs_reboot.iter().filter_map(|&i| nodes.get(i)) {
        if !n.reboots.iter().any(|r| r.recovered_ms.is_some()) {
            problems.push(format!(
                "{} needed a reboot and never completed one",
                n.name
            ));
        }
    }
    problems
}
