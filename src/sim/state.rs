//! The state every task of a simulation shares: the world behind one lock (the nodes'
//! "hardware" and bookkeeping, the violations found) and what reaches it without the lock
//! (the in-memory etcd, the clock's start). Data only: the run loop and the simulated hardware
//! live in [`super::world`], a node's daemon in [`super::node`], the invariants in
//! [`super::check`]; each of them uses this module and none of them is used by it.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::SimSpec;
use super::report::{Activity, LogLine, LogText, NodeReport, Progress, Segment};
use crate::clock::Clock;
use crate::coord::etcd::RebootLease;
use crate::coord::keys::Keys;
use crate::coord::memkv::MemKv;
use crate::fsm::Machine;
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
            // Idle checks (Idle, a zero-length Detecting, Idle again) continue one segment
            // instead of starting one per check: a node idle all day is one segment, not
            // 1 440 (a 1 000-node plan held ~0.3 MiB of them per node, issue #18).
            if let Some(last) = self.report.segments.last_mut()
                && last.activity == cur
                && last.to_ms == since
            {
                last.to_ms = now;
                self.activity.1 = now;
                return;
            }
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
    pub soak: Progress,
    /// The node that kept the run from being quiet at the last check (checked first next time).
    pub busy_hint: usize,
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
    /// Behind [`Shared::world`].
    pub(super) world: Mutex<World>,
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
}
