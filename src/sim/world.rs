//! The simulated world: the shared in-memory etcd, the nodes' "hardware" (power, disk, clock,
//! kill switch, pending updates), the fault injector, and the run loop.
//!
//! Every node's daemon reports each machine step here ([`Shared::after_step`]) before it
//! executes the step's effects, which is where the invariants are checked ([`super::check`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::check::{self, PolicyFacts, RebootFacts};
use super::report::{
    Activity, LogLine, LogText, NodeReport, Progress, QueueExit, RebootRecord, SimReport,
};
use super::state::{Ctl, LOCK_KEY, NAMESPACE, NodeState, Shared, World};
use super::{FaultKind, SimSpec, node, node_name};
use crate::clock::Clock;
use crate::coord::keys::Keys;
use crate::coord::kv::Kv as _;
use crate::coord::memkv::MemKv;
use crate::fsm::{BlockReason, Event, Input, Machine, StateName, Step, StepResult};
use crate::metrics::Metrics;

impl Shared {
    /// Records one machine step of node `i` (the journal write) and checks the invariants.
    pub fn after_step(&self, i: usize, input: &Input, step: &Step) {
        let now = self.elapsed_ms();
        let mut w = self.world();
        w.steps += 1;
        if step.from != step.to && self.spec.record_journal {
            w.log.push(LogLine {
                at_ms: now,
                node: Some(i),
                text: LogText::Transition {
                    from: step.from,
                    to: step.to,
                    reason: step.reason.clone(),
                },
            });
        }
        track_span(&mut w, i, input, step, now, self.spec.group_of(i));
        let n = &mut w.nodes[i];
        if step.to == StateName::Idle
            && matches!(
                step.from,
                StateName::Locking | StateName::HealthPost | StateName::Cooldown
            )
        {
            n.report.queue_exits.push(QueueExit {
                at_ms: now,
                held: step.from != StateName::Locking,
                reason: step.reason.clone(),
            });
        }
        n.set_activity(Activity::State(step.to), now);
        if self.spec.record_journal {
            n.report.inputs.push(input.clone());
            n.report.steps.push(step.clone());
        }
        drop(w);
        // The run can only become quiet when a node arrives in Idle; waking the run loop on
        // every step cost a task switch per step.
        if step.to == StateName::Idle {
            self.wake.notify_one();
        }
    }

    /// The reboot command ran on node `i`: check it, then power-cycle the node.
    pub fn reboot(self: &Arc<Self>, i: usize) {
        let now = self.elapsed_ms();
        let dump = self.kv.dump();
        let (down, never) = {
            let mut w = self.world();
            let n = &w.nodes[i];
            let facts = RebootFacts {
                name: &n.name,
                boot_id: n.boot_id(),
                now,
                clock_now: n.clock.now_ms(),
                windows: &self.spec.windows,
                holders: check::holders(&self.keys.slot_prefix(), &dump, w.max_capacity),
                kill_switch_since: n.kill_switch_since,
                paused_since: w.paused_since,
                last_gate_sample: n.last_gate_sample,
                reboots_this_boot: n.reboots_this_boot,
                group: self.spec.group_of(i).map(|g| {
                    (
                        g.name.clone(),
                        check::holders(&self.keys.group_prefix(&g.name), &dump, g.capacity),
                    )
                }),
            };
            let found = check::at_reboot(&facts);
            w.violations.extend(found);
            let n = &mut w.nodes[i];
            n.reboots_this_boot += 1;
            n.report.reboots.push(RebootRecord {
                issued_ms: now,
                back_ms: None,
                recovered_ms: None,
            });
            let (lo, hi) = self.spec.reboot_down;
            let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(0);
            let extra = if span == 0 { 0 } else { w.rng.u64(0..=span) };
            (
                lo + Duration::from_millis(extra),
                self.spec.never_return.contains(&i),
            )
        };
        self.log(Some(i), "reboot command executed".into());
        super::soak::after_reboot(self, i);
        if self.world().soak.done {
            self.wake.notify_one();
        }
        let sh = self.clone();
        tokio::spawn(async move {
            // systemd stops the daemon first (SIGTERM), then the machine goes down.
            tokio::time::sleep(Duration::from_millis(200)).await;
            sh.stop_daemon(i, true).await;
            let now = sh.elapsed_ms();
            sh.world().nodes[i].powered = false;
            sh.world().nodes[i].set_activity(Activity::Down, now);
            if never {
                sh.log(Some(i), "powered off and never comes back".into());
                return;
            }
            tokio::time::sleep(down).await;
            let now = sh.elapsed_ms();
            {
                let mut w = sh.world();
                let n = &mut w.nodes[i];
                n.boot_seq += 1;
                n.powered = true;
                // A soak brings a new update with every boot.
                n.needs_reboot = sh.spec.soak.is_some();
                n.reboots_this_boot = 0;
                if !sh.spec.boot_settle.is_zero() {
                    let settle = u64::try_from(sh.spec.boot_settle.as_millis()).unwrap_or(0);
                    n.health_fails_until = Some((now + settle, false));
                }
                if let Some(r) = n.report.reboots.last_mut() {
                    r.back_ms = Some(now);
                }
            }
            sh.log(Some(i), "powered on (update applied)".into());
            sh.start_daemon(i);
        });
    }

    /// Planned downtime never blocks (SPEC §6.3): checked when node `i`'s policy read answered
    /// `Blocked` ([`check::blocked_only_by_holders`]).
    pub fn policy_blocked(&self, i: usize, reasons: &[BlockReason]) {
        let dump = self.kv.dump();
        let now = self.elapsed_ms();
        let mut w = self.world();
        let names: Vec<String> = w.nodes.iter().map(|n| n.name.clone()).collect();
        let facts = PolicyFacts {
            me: &w.nodes[i].name,
            nodes: &names,
            holders: check::holders(&self.keys.slot_prefix(), &dump, w.capacity),
            dump: &dump,
            health_prefix: self.keys.health_prefix(),
            clock_now: w.nodes[i].clock.now(),
            stale_after: self.spec.stale_after,
            now,
        };
        if let Some(v) = check::blocked_only_by_holders(&facts, reasons) {
            w.violations.push(v);
        }
    }

    /// Starts node `i`'s daemon.
    pub fn start_daemon(self: &Arc<Self>, i: usize) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(node::daemon(self.clone(), i, rx));
        let mut w = self.world();
        w.nodes[i].daemon = Some(handle);
        w.nodes[i].ctl = Some(tx);
    }

    /// Stops node `i`'s daemon: gracefully (SIGTERM, wait up to 90 s, then kill) or by a kill.
    pub async fn stop_daemon(&self, i: usize, graceful: bool) {
        let (handle, ctl) = {
            let mut w = self.world();
            (w.nodes[i].daemon.take(), w.nodes[i].ctl.take())
        };
        let Some(mut handle) = handle else { return };
        if graceful && let Some(ctl) = ctl {
            let _ = ctl.send(Ctl::Shutdown);
            if tokio::time::timeout(Duration::from_secs(90), &mut handle)
                .await
                .is_ok()
            {
                return;
            }
        }
        handle.abort();
        let _ = handle.await;
    }

    /// Applies one fault or operator action.
    async fn apply(self: &Arc<Self>, kind: &FaultKind, end: bool) {
        let now = self.elapsed_ms();
        self.log(None, describe(kind, end));
        match *kind {
            FaultKind::Crash { node, .. } => {
                if end {
                    if self.world().nodes[node].powered && self.world().nodes[node].daemon.is_none()
                    {
                        self.start_daemon(node);
                    }
                    return;
                }
                if self.world().nodes[node].daemon.is_none() {
                    return;
                }
                self.stop_daemon(node, false).await;
                // systemd restarts it when the fault's `down` ends (the end action above).
                self.world().nodes[node].set_activity(Activity::Crashed, now);
            }
            FaultKind::ExpireSession { node } => self.expire(node, &["waiting", "held"]),
            FaultKind::ExpireRebootLease { node } => self.expire(node, &["rebooting"]),
            FaultKind::KvUnavailable { .. } => self.kv.set_available(end),
            FaultKind::DropWatches => self.kv.drop_watches(),
            FaultKind::DelayWatches { delay, .. } => {
                self.kv
                    .delay_watch_events(if end { Duration::ZERO } else { delay })
            }
            FaultKind::HealthFails { node, span, hang } => {
                let until = now + u64::try_from(span.as_millis()).unwrap_or(0);
                self.world().nodes[node].health_fails_until = (!end).then_some((until, hang));
            }
            FaultKind::KillSwitch { node, .. } => {
                self.world().nodes[node].kill_switch_since = (!end).then_some(now);
                self.send(node, Ctl::GatesChanged);
            }
            FaultKind::Pause { .. } => {
                let key = self.keys.pause();
                // The outage fault may be on: retry until the write lands, like an operator.
                loop {
                    let r = if end {
                        self.kv.delete(&key).await.map(|_| ())
                    } else {
                        let rec =
                            serde_json::json!({"reason": "simulated pause", "by": "sim", "at": ""});
                        self.kv
                            .put(&key, rec.to_string().into_bytes(), 0)
                            .await
                            .map(|_| ())
                    };
                    if r.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                self.world().paused_since = (!end).then(|| self.elapsed_ms());
            }
            FaultKind::SetCapacity { k } => {
                let k = k.max(1);
                let running: Vec<usize> = {
                    let mut w = self.world();
                    w.capacity = k;
                    w.max_capacity = w.max_capacity.max(k);
                    (0..w.nodes.len()).collect()
                };
                for i in running {
                    self.send(i, Ctl::Reload(k));
                }
            }
            FaultKind::ClockJump { node, delta_ms } => {
                self.world().nodes[node].clock.step(delta_ms)
            }
            FaultKind::NeedsReboot { node } => self.world().nodes[node].needs_reboot = true,
            FaultKind::AdaptersStall { node, .. } => {
                self.world().nodes[node].adapters_stalled = !end;
            }
            FaultKind::UpdateArrives { node } => {
                self.world().nodes[node].needs_reboot = true;
                self.start_daemon(node);
            }
        }
    }

    /// Expires the lease of node `node`'s queue entry if its state is one of `states`.
    fn expire(&self, node: usize, states: &[&str]) {
        let name = node_name(node);
        let prefix = self.keys.slot_prefix();
        for kv in self.kv.dump() {
            if !kv.key.starts_with(&prefix) || kv.lease == 0 {
                continue;
            }
            let v: crate::coord::slots::SlotValue = match serde_json::from_slice(&kv.value) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v.node == name && states.contains(&v.state.as_str()) {
                self.kv.expire_lease(kv.lease);
            }
        }
    }

    /// Whether the run can stop: no more actions, every node up (or gone for good), idle,
    /// without pending updates and out of its reboot span.
    fn quiet(&self) -> bool {
        let mut w = self.world();
        if w.soak.done {
            return true;
        }
        if w.pending_actions != 0 {
            return false;
        }
        let done = |i: usize, n: &NodeState| {
            let gone = !n.powered && self.spec.never_return.contains(&i);
            gone || (n.powered
                && n.daemon.is_some()
                && !n.needs_reboot
                && !n.in_span
                && n.activity.0 == Activity::State(StateName::Idle))
        };
        // Asked after every node's arrival in Idle: start with the node that kept the run
        // going last time (usually still busy) instead of walking every node each time, which
        // made an N-node plan cost O(N) per idle check (issue #18). Same answer either way.
        let len = w.nodes.len();
        let hint = w.busy_hint.min(len.saturating_sub(1));
        let busy = (0..len)
            .map(|k| (hint + k) % len)
            .find(|&i| !done(i, &w.nodes[i]));
        match busy {
            Some(i) => {
                w.busy_hint = i;
                false
            }
            None => true,
        }
    }
}

fn describe(kind: &FaultKind, end: bool) -> String {
    let what = match kind {
        FaultKind::Crash { node, .. } => format!("{} daemon crash", node_name(*node)),
        FaultKind::ExpireSession { node } => format!("{} session lease expired", node_name(*node)),
        FaultKind::ExpireRebootLease { node } => {
            format!("{} reboot lease expired", node_name(*node))
        }
        FaultKind::KvUnavailable { .. } => "etcd unavailable".into(),
        FaultKind::DropWatches => "watch streams dropped".into(),
        FaultKind::DelayWatches { delay, .. } => {
            format!("watch events delayed by {}", crate::human::duration(*delay))
        }
        FaultKind::HealthFails { node, hang, .. } => format!(
            "{} health script {}",
            node_name(*node),
            if *hang { "hangs" } else { "fails" }
        ),
        FaultKind::KillSwitch { node, .. } => format!("{} kill switch", node_name(*node)),
        FaultKind::Pause { .. } => "cluster pause".into(),
        FaultKind::SetCapacity { k } => format!("max_concurrent_reboots set to {k} (SIGHUP)"),
        FaultKind::ClockJump { node, delta_ms } => format!(
            "{} clock stepped {} by {}",
            node_name(*node),
            if *delta_ms < 0 { "back" } else { "forward" },
            crate::human::duration_ms(delta_ms.unsigned_abs())
        ),
        FaultKind::NeedsReboot { node } => format!("{} got a new update", node_name(*node)),
        FaultKind::UpdateArrives { node } => {
            format!("{}: update lands, daemon starts", node_name(*node))
        }
        FaultKind::AdaptersStall { node, .. } => {
            format!("{} detectors and health script stall", node_name(*node))
        }
    };
    if end {
        format!("end of {what}")
    } else {
        format!("fault: {what}")
    }
}

/// The end of a fault with a duration, if it has one.
fn end_of(kind: &FaultKind) -> Option<Duration> {
    match kind {
        FaultKind::Crash { down, .. } => Some(*down),
        FaultKind::KvUnavailable { span }
        | FaultKind::DelayWatches { span, .. }
        | FaultKind::HealthFails { span, .. }
        | FaultKind::KillSwitch { span, .. }
        | FaultKind::AdaptersStall { span, .. }
        | FaultKind::Pause { span } => Some(*span),
        _ => None,
    }
}

/// Whether node `i`'s update (and daemon) only arrives after the start.
fn arrives_later(spec: &SimSpec, i: usize) -> bool {
    spec.arrivals.iter().any(|&(n, at)| n == i && !at.is_zero())
}

/// Revisions of history the simulated etcd keeps (its auto-compaction): minutes of a
/// 1 000-node fleet's writes, far more than any watch of the protocol needs.
const SIM_HISTORY_REVISIONS: usize = 20_000;

static SIM_METRICS: std::sync::OnceLock<Arc<Metrics>> = std::sync::OnceLock::new();

/// Runs one simulation to the end (everyone done, or the horizon) and reports.
pub fn run(spec: &SimSpec) -> SimReport {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return SimReport {
                seed: spec.seed,
                violations: vec![format!("cannot start the simulation runtime: {e}")],
                ..SimReport::default()
            };
        }
    };
    rt.block_on(run_async(spec.clone()))
}

async fn run_async(spec: SimSpec) -> SimReport {
    let base = Clock::simulated(spec.start_ms);
    let nodes = (0..spec.nodes)
        .map(|i| NodeState {
            name: node_name(i),
            clock: base.fork(),
            lease_store: Arc::new(Mutex::new(None)),
            machine: Arc::new(Mutex::new(Machine::new())),
            boot_seq: 1,
            needs_reboot: spec.needs_reboot.contains(&i) && !arrives_later(&spec, i),
            powered: true,
            daemon: None,
            ctl: None,
            kill_switch_since: None,
            health_fails_until: None,
            adapters_stalled: false,
            in_span: false,
            reboots_this_boot: 0,
            last_gate_sample: None,
            activity: (Activity::State(StateName::Idle), 0),
            report: NodeReport {
                name: node_name(i),
                ..NodeReport::default()
            },
        })
        .collect();
    let mut actions: Vec<(Duration, FaultKind, bool)> = Vec::new();
    for &(node, at) in spec.arrivals.iter().filter(|a| !a.1.is_zero()) {
        actions.push((at, FaultKind::UpdateArrives { node }, false));
    }
    for f in &spec.faults {
        actions.push((f.at, f.kind.clone(), false));
        if let Some(d) = end_of(&f.kind) {
            actions.push((f.at + d, f.kind.clone(), true));
        }
    }
    actions.sort_by_key(|a| a.0);
    let capacity = spec.capacity.max(1);
    let kv = MemKv::new();
    // Every watch the protocol opens starts right after a read, so a bounded history serves
    // it; the bound keeps a long plan's memory from growing with every heartbeat (issue #18).
    kv.auto_compact(SIM_HISTORY_REVISIONS);
    let sh = Arc::new(Shared {
        kv,
        keys: Keys::new(NAMESPACE, LOCK_KEY),
        t0: Instant::now(),
        metrics: SIM_METRICS
            .get_or_init(|| Arc::new(Metrics::new("sim", "sim")))
            .clone(),
        wake: Notify::new(),
        wall_start: std::time::Instant::now(),
        world: Mutex::new(World {
            nodes,
            capacity,
            max_capacity: capacity,
            paused_since: None,
            rng: fastrand::Rng::with_seed(spec.seed),
            log: Vec::new(),
            violations: Vec::new(),
            steps: 0,
            pending_actions: actions.len(),
            soak: Progress::default(),
            busy_hint: 0,
        }),
        spec,
    });
    for i in (0..sh.spec.nodes).filter(|&i| !arrives_later(&sh.spec, i)) {
        sh.start_daemon(i);
    }
    let injector = {
        let sh = sh.clone();
        tokio::spawn(async move {
            for (at, kind, end) in actions {
                tokio::time::sleep_until(sh.t0 + at).await;
                sh.apply(&kind, end).await;
                sh.world().pending_actions -= 1;
                sh.wake.notify_one();
            }
        })
    };
    let deadline = tokio::time::sleep_until(sh.t0 + sh.spec.horizon);
    tokio::pin!(deadline);
    let mut finished = None;
    loop {
        tokio::select! {
            biased;
            () = sh.wake.notified() => {
                if sh.quiet() {
                    finished = Some(sh.elapsed_ms());
                    break;
                }
            }
            () = &mut deadline => break,
        }
    }
    injector.abort();
    for i in 0..sh.spec.nodes {
        sh.stop_daemon(i, false).await;
    }
    let end_ms = sh.elapsed_ms();
    let mut w = sh.world();
    let mut report = SimReport {
        seed: sh.spec.seed,
        start_ms: sh.spec.start_ms,
        end_ms,
        finished_ms: finished,
        nodes: Vec::new(),
        log: std::mem::take(&mut w.log),
        violations: std::mem::take(&mut w.violations),
        steps: w.steps,
        soak: std::mem::take(&mut w.soak),
        kv_load: sh.kv.load(),
    };
    for n in &mut w.nodes {
        n.close(end_ms);
        report.nodes.push(std::mem::take(&mut n.report));
    }
    report
        .violations
        .extend(check::at_end(&report.nodes, &sh.spec, finished));
    report
}

/// Span bookkeeping after each step of node `i`: a node enters its reboot span when its slot
/// moved onto the reboot lease (the cluster invariant is checked then, [`check::span_overflow`])
/// and leaves it when it is neither rebooting nor recovering any more.
fn track_span(
    w: &mut World,
    i: usize,
    input: &Input,
    step: &Step,
    now: u64,
    group: Option<&super::SimGroup>,
) {
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
        if let Some(v) = check::span_overflow(&inside, w.capacity, now) {
            w.violations.push(v);
        }
        if let Some(g) = group {
            let inside: Vec<&str> = g
                .members
                .iter()
                .filter(|&&m| w.nodes[m].in_span)
                .map(|&m| w.nodes[m].name.as_str())
                .collect();
            if let Some(v) = check::group_span_overflow(&g.name, &inside, g.capacity, now) {
                w.violations.push(v);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The planner's and the sweep's fault lines use the one duration formatter (issue #19).
    #[test]
    fn fault_labels_read_like_every_other_duration() {
        let delayed = FaultKind::DelayWatches {
            delay: Duration::from_millis(90_500),
            span: Duration::from_secs(60),
        };
        assert_eq!(
            describe(&delayed, false),
            "fault: watch events delayed by 1m 31s"
        );
        let back = FaultKind::ClockJump {
            node: 0,
            delta_ms: -250,
        };
        assert_eq!(
            describe(&back, false),
            "fault: node-1 clock stepped back by 250 ms"
        );
    }
}
