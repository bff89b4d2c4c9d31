//! The invariants checked during every simulated run (SPEC §2.2, §12.2).
//!
//! - **Cluster invariant**: at most K nodes are between "slot moved onto the reboot lease" and
//!   "slot released after recovery" (the *reboot span*), counted from the machines and the
//!   simulated hardware, not from what the protocol claims — a protocol that frees the slot
//!   too early is caught here. K is the capacity in effect when a node enters the span.
//! - **Slot safety**: when the reboot command runs, the node's queue entry is among the first
//!   K entries in the (simulated) etcd — the reboot never happens without the slot.
//! - **Brakes**: no reboot outside a maintenance window (by the node's own clock), with the
//!   kill switch present before the command, or with a pause set before the node's last gate
//!   check under the slot.
//! - **Once per boot**: at most one reboot command per boot id.
//! - **Liveness** (runs without blocking faults): every node that needed a reboot rebooted and
//!   recovered, within a bound computed from the configuration ([`liveness_bound`]).

use std::time::Duration;

use super::SimSpec;
use super::world::{Shared, World};
use crate::coord::kv::KeyValue;
use crate::coord::slots::holder_of;
use crate::fsm::{Event, Input, StateName, Step, StepResult, WindowVerdict};

/// Span bookkeeping and the cluster invariant, after each step of node `i`.
pub fn after_step(w: &mut World, i: usize, input: &Input, step: &Step, now: u64) {
    let moved = matches!(
        input.event,
        Event::RebootLeaseMoved {
            result: StepResult::Ok,
            ..
        }
    ) && step.to == StateName::Rebooting;
    if moved && !w.nodes[i].in_span {
        w.nodes[i].in_span = true;
        let inside: Vec<&str> = w
            .nodes
            .iter()
            .filter(|n| n.in_span)
            .map(|n| n.name.as_str())
            .collect();
        if inside.len() > w.capacity as usize {
            let msg = format!(
                "at {now} ms: {} nodes in their reboot span with max_concurrent_reboots {}: {}",
                inside.len(),
                w.capacity,
                inside.join(", ")
            );
            w.violations.push(msg);
        }
    }
    let n = &mut w.nodes[i];
    let in_reboot = matches!(step.to, StateName::Rebooting | StateName::Recovering);
    if n.in_span && !in_reboot {
        n.in_span = false;
        if step.from == StateName::Recovering
            && let Some(r) = n.report.reboots.last_mut()
            && r.recovered_ms.is_none()
        {
            r.recovered_ms = Some(now);
        }
    }
}

/// The nodes of the first `k` queue entries in the store's content `dump` (by create revision).
fn holders(sh: &Shared, dump: &[KeyValue], k: u32) -> Vec<String> {
    let prefix = sh.keys.slot_prefix();
    let mut queue: Vec<&KeyValue> = dump
        .iter()
        .filter(|kv| kv.key.starts_with(&prefix))
        .collect();
    queue.sort_by_key(|kv| kv.create_revision);
    queue
        .iter()
        .take(k as usize)
        .map(|kv| holder_of(kv).node)
        .collect()
}

/// Checks taken at the instant node `i` runs its reboot command; `dump` is etcd's content.
pub fn at_reboot(w: &mut World, sh: &Shared, i: usize, now: u64, dump: &[KeyValue]) {
    let name = w.nodes[i].name.clone();
    let mut problems = Vec::new();
    let holds = holders(sh, dump, w.max_capacity).contains(&name);
    if !holds {
        problems.push("rebooted without holding a slot in etcd".to_string());
    }
    let clock_now = w.nodes[i].clock.now_ms();
    if let WindowVerdict::Closed { reason, .. } =
        crate::adapters::window::evaluate(&sh.spec.windows, clock_now)
    {
        problems.push(format!(
            "rebooted outside the maintenance windows ({reason})"
        ));
    }
    if let Some(t) = w.nodes[i].kill_switch_since
        && t < now
    {
        problems.push(format!(
            "rebooted with the kill switch present since {t} ms"
        ));
    }
    if let (Some(p), Some(g)) = (w.paused_since, w.nodes[i].last_gate_sample)
        && p <= g
    {
        problems.push(format!(
            "rebooted while paused (pause set at {p} ms, before its gate check at {g} ms)"
        ));
    }
    if w.nodes[i].reboots_this_boot > 0 {
        problems.push(format!(
            "second reboot command in boot {}",
            w.nodes[i].boot_id()
        ));
    }
    for p in problems {
        w.violations.push(format!("at {now} ms: {name}: {p}"));
    }
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
pub fn blocked_only_by_holders(sh: &Shared, i: usize, reasons: &[crate::fsm::BlockReason]) {
    let dump = sh.kv.dump();
    let mut w = sh.world();
    let holders = holders(sh, &dump, w.capacity);
    let now = w.nodes[i].clock.now();
    let health_prefix = sh.keys.health_prefix();
    let healthy = |name: &str| {
        dump.iter()
            .find(|kv| kv.key == format!("{health_prefix}{name}"))
            .and_then(|kv| serde_json::from_slice::<crate::coord::HealthRecord>(&kv.value).ok())
            .is_some_and(|r| {
                r.healthy
                    && r.reported_at
                        .parse::<jiff::Timestamp>()
                        .is_ok_and(|t| now.duration_since(t).unsigned_abs() <= sh.spec.stale_after)
            })
    };
    let me = w.nodes[i].name.clone();
    let trouble = w
        .nodes
        .iter()
        .filter(|n| n.name != me)
        .any(|n| !holders.contains(&n.name) && !healthy(&n.name));
    if !trouble {
        let now_ms = sh.elapsed_ms();
        w.violations.push(format!(
            "at {now_ms} ms: {me}: blocked by the cluster policy although every peer is a slot holder or healthy (holders {}); it must queue behind them: {}",
            holders.join(", "),
            reasons.join("; ")
        ));
    }
}

/// The hand-off is woken by the watch, not by a timer (SPEC §6.3), checked with one slot: when a
/// node recovers while another had found its update well before (time to queue), the next
/// reboot command follows within the checks under the slot (detectors and health script once),
/// or with a cooldown within its end plus a whole pass. A node left waiting for its backoff or
/// check interval is late.
fn slow_hand_offs(w: &World, spec: &SimSpec) -> Vec<String> {
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
    for (i, n) in w.nodes.iter().enumerate() {
        for r in &n.report.reboots {
            reboots.push((r.issued_ms, r.recovered_ms, i));
        }
        // From the journal (fault-free runs have no clock steps: node time = start + elapsed).
        ready.push(
            n.report
                .steps
                .iter()
                .zip(&n.report.inputs)
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
        let waiting = (0..w.nodes.len()).any(|j| {
            j != prev
                && ready[j].is_some_and(|t| t + pass < recovered)
                && !reboots.iter().any(|r| r.2 == j && r.0 < recovered)
        });
        if waiting && next_at > recovered + slack {
            problems.push(format!(
                "hand-off too slow: {} recovered at {recovered} ms, {} rebooted only at {next_at} ms (more than {slack} ms later while a node was waiting)",
                w.nodes[prev].name, w.nodes[next].name
            ));
        }
    }
    problems
}

/// End-of-run checks: liveness and nobody left in a reboot span when the run was quiet.
pub fn at_end(w: &mut World, spec: &SimSpec, finished: Option<u64>) {
    // A soak never finishes a rollout; its liveness is `soak::problems`.
    if !spec.check_liveness || spec.soak.is_some() {
        return;
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
    problems.extend(slow_hand_offs(w, spec));
    for &i in &spec.needs_reboot {
        let n = &w.nodes[i];
        if !n.report.reboots.iter().any(|r| r.recovered_ms.is_some()) {
            problems.push(format!(
                "{} needed a reboot and never completed one",
                n.name
            ));
        }
    }
    w.violations.extend(problems);
}
