//! The simulated world: the shared in-memory etcd, the nodes' "hardware" (power, disk, clock,
//! kill switch, pending updates), the fault injector, and the run loop.
//!
//! Every node's daemon reports each machine step here ([`Shared::after_step`]) before it
//! executes the step's effects, which is where the invariants are checked ([`super::check`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::report::{Activity, LogLine, LogText, NodeReport, RebootRecord, Segment, SimReport};
use super::{FaultKind, SimSpec, node, node_name};
use crate::clock::Clock;
use crate::coord::etcd::RebootLease;
use crate::coord::keys::Keys;
use crate::coord::kv::Kv as _;
use crate::coord::memkv::MemKv;
use crate::fsm::{Input, Machine, StateName, Step};
use crate::metrics::Metrics;

/// Namespace and lock key of the simulated cluster (the Go defaults).
pub const NAMESPACE: &str = "/cluster-reboot-coordinator";
/// Lock key of the simulated cluster.
pub const LOCK_KEY: &str = "/cluster-reboot-coordinator/lock";

/// A command from the world to a running simulated daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// SIGTERM (the shutdown of a reboot).
    Shutdown,
    /// The kill switch file appeared or vanished.
    GatesChanged,
    /// SIGHUP with a new `max_concurrent_reboots`.
    Reload(u32),
}

/// One node's hardware and bookkeeping.
pub struct NodeState {
    /// Name.
    pub name: String,
    /// Its wall clock (steps independently on NTP jumps).
    pub clock: Clock,
    /// Its "disk": the persisted reboot lease.
    pub lease_store: Arc<Mutex<Option<RebootLease>>>,
    /// Its "disk": the machine exactly as the journal leaves it after the last recorded step
    /// (a restarted daemon restores from it, without re-running effects).
    pub machine: Arc<Mutex<Machine>>,
    /// Boot counter (boot id = `<name>-boot<n>`).
    pub boot_seq: u32,
    /// An update is installed and waits for a reboot.
    pub needs_reboot: bool,
    /// Powered on.
    pub powered: bool,
    /// The running daemon, if any.
    pub daemon: Option<JoinHandle<()>>,
    /// How to reach it.
    pub ctl: Option<mpsc::UnboundedSender<Ctl>>,
    /// Kill switch present since (ms after the start).
    pub kill_switch_since: Option<u64>,
    /// Health script fails until (ms after the start); `true` = hangs until the timeout.
    pub health_fails_until: Option<(u64, bool)>,
    /// Its detectors and health script do not answer (fault `AdaptersStall`).
    pub adapters_stalled: bool,
    /// Between "slot moved onto the reboot lease" and "released after recovery".
    pub in_span: bool,
    /// Reboot commands executed in the current boot.
    pub reboots_this_boot: u32,
    /// When the last gate sample (`CheckGates`) was taken (ms after the start).
    pub last_gate_sample: Option<u64>,
    /// Current activity and since when.
    pub activity: (Activity, u64),
    /// Report being built.
    pub report: NodeReport,
}

impl NodeState {
    /// Boot id of the current boot.
    pub fn boot_id(&self) -> String {
        format!("{}-boot{}", self.name, self.boot_seq)
    }

    /// Closes the current segment at `now` and starts `activity`.
    pub fn set_activity(&mut self, activity: Activity, now: u64) {
        if self.activity.0 != activity {
            self.close(now);
            self.activity = (activity, now);
        }
    }

    /// Ends the current segment at `now` (the report's last segment).
    pub fn close(&mut self, now: u64) {
        let (cur, since) = self.activity;
        if now > since {
            self.report.segments.push(Segment {
                from_ms: since,
                to_ms: now,
                activity: cur,
            });
        }
        self.activity.1 = now;
    }
}

/// Mutable world state behind one lock.
pub struct World {
    /// Nodes.
    pub nodes: Vec<NodeState>,
    /// Current `max_concurrent_reboots`.
    pub capacity: u32,
    /// Largest capacity in effect at any time so far.
    pub max_capacity: u32,
    /// Cluster paused since (ms after the start).
    pub paused_since: Option<u64>,
    /// The seeded random generator (jitter, reboot durations).
    pub rng: fastrand::Rng,
    /// The event log.
    pub log: Vec<LogLine>,
    /// Violations found so far.
    pub violations: Vec<String>,
    /// Steps taken.
    pub steps: u64,
    /// Faults and operator actions still to come.
    pub pending_actions: usize,
    /// A soak's progress ([`super::soak`]).
    pub soak: super::soak::Progress,
}

/// What every task of the simulation shares.
pub struct Shared {
    /// The run's parameters.
    pub spec: SimSpec,
    /// The in-memory etcd.
    pub kv: MemKv,
    /// Key names.
    pub keys: Keys,
    /// Start of the run on tokio's clock.
    pub t0: Instant,
    /// One metrics registry for every simulated daemon of every run in this process (the
    /// bookkeeping queue counts into it; nobody scrapes it).
    pub metrics: Arc<Metrics>,
    /// Wakes the run loop after every step.
    pub wake: Notify,
    /// Start of the run in real time (a soak's checkpoints report it).
    pub wall_start: std::time::Instant,
    world: Mutex<World>,
}

impl Shared {
    /// Locks the world.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ms since the start of the run.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends a line to the event log.
    pub fn log(&self, node: Option<usize>, text: String) {
        let at_ms = self.elapsed_ms();
        self.world().log.push(LogLine {
            at_ms,
            node,
            text: LogText::Note(text),
        });
    }

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
        super::check::after_step(&mut w, i, input, step, now);
        let n = &mut w.nodes[i];
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
            super::check::at_reboot(&mut w, self, i, now, &dump);
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

    /// Sends `c` to node `i`'s daemon if it runs.
    pub fn send(&self, i: usize, c: Ctl) {
        if let Some(ctl) = &self.world().nodes[i].ctl {
            let _ = ctl.send(c);
        }
    }

    /// The kill switch of node `i` right now.
    pub fn kill_switch(&self, i: usize) -> bool {
        self.world().nodes[i].kill_switch_since.is_some()
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
        let w = self.world();
        if w.soak.done {
            return true;
        }
        w.pending_actions == 0
            && w.nodes.iter().enumerate().all(|(i, n)| {
                let gone = !n.powered && self.spec.never_return.contains(&i);
                gone || (n.powered
                    && n.daemon.is_some()
                    && !n.needs_reboot
                    && !n.in_span
                    && n.activity.0 == Activity::State(StateName::Idle))
            })
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
            format!(
                "watch events delayed by {}",
                humantime::format_duration(*delay)
            )
        }
        FaultKind::HealthFails { node, hang, .. } => format!(
            "{} health script {}",
            node_name(*node),
            if *hang { "hangs" } else { "fails" }
        ),
        FaultKind::KillSwitch { node, .. } => format!("{} kill switch", node_name(*node)),
        FaultKind::Pause { .. } => "cluster pause".into(),
        FaultKind::SetCapacity { k } => format!("max_concurrent_reboots set to {k} (SIGHUP)"),
        FaultKind::ClockJump { node, delta_ms } => {
            format!("{} clock stepped by {delta_ms} ms", node_name(*node))
        }
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
    let sh = Arc::new(Shared {
        kv: MemKv::new(),
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
            soak: super::soak::Progress::default(),
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
    super::check::at_end(&mut w, &sh.spec, finished);
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
    };
    for n in &mut w.nodes {
        n.close(end_ms);
        report.nodes.push(std::mem::take(&mut n.report));
    }
    report
}
