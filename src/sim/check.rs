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

/// Checks taken at the instant node `i` runs its reboot command; `dump` is etcd's content.
pub fn at_reboot(w: &mut World, sh: &Shared, i: usize, now: u64, dump: &[KeyValue]) {
    let name = w.nodes[i].name.clone();
    let mut problems = Vec::new();
    let prefix = sh.keys.slot_prefix();
    let mut queue: Vec<&KeyValue> = dump
        .iter()
        .filter(|kv| kv.key.starts_with(&prefix))
        .collect();
    queue.sort_by_key(|kv| kv.create_revision);
    let holds = queue
        .iter()
        .take(w.max_capacity as usize)
        .any(|kv| holder_of(kv).node == name);
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
/// One check interval to notice, then per node (not per K nodes: any peer's in-progress marker
/// blocks the cluster-health policy until that peer recovered, SPEC §6.3, so reboots of
/// different rounds never overlap and even one round is not guaranteed to run together): the
/// slowest down time, the boot settle time, the cooldown, the health checks before and after
/// (two each), the detectors, two of the longest backoff (the recovering node's post-reboot
/// health retry and the blocked peers' retry) and a lock TTL of slack for hand-off and jitter.
pub fn liveness_bound(spec: &SimSpec) -> Duration {
    let rounds = u32::try_from(spec.needs_reboot.len()).unwrap_or(u32::MAX);
    let f = &spec.fsm;
    let per_round = spec.reboot_down.1
        + spec.boot_settle
        + Duration::from_secs(f.min_reboot_interval_sec)
        + spec.health_latency * 4
        + spec.detector_latency * 3
        + Duration::from_millis(f.backoff_max_ms) * 2
        + spec.lock_ttl;
    Duration::from_millis(f.check_interval_ms) + per_round * rounds
}

/// End-of-run checks: liveness and nobody left in a reboot span when the run was quiet.
pub fn at_end(w: &mut World, spec: &SimSpec, finished: Option<u64>) {
    if !spec.check_liveness {
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
