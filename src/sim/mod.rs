//! Deterministic cluster simulation (SPEC §11, §12.2).
//!
//! N simulated nodes, each the **production machine** ([`crate::fsm::Machine`]) driven by a
//! small simulated driver ([`node`]) that answers effects with simulated detectors, health
//! scripts and reboots, and talks to the **production slot protocol**
//! ([`crate::coord::etcd::EtcdBackend`]) over the deterministic in-memory etcd model
//! ([`crate::coord::memkv::MemKv`]). Everything runs in one current-thread tokio runtime whose
//! clock is paused, so simulated hours pass in milliseconds and one seed gives one exact run.
//!
//! Two users:
//! - the test suite: thousands of seeded runs with faults ([`random`]), every step checked
//!   against the cluster invariants ([`check`]);
//! - operators: `simulate --cluster N`, the rollout planner ([`plan`], [`svg`]).

pub mod check;
pub mod node;
pub mod plan;
pub mod random;
pub mod report;
pub mod soak;
pub mod state;
pub mod svg;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Policies;
use crate::fsm::{FsmConfig, Millis};
use crate::windows::Windows;

pub use report::SimReport;
pub use world::run;

/// Everything one simulated run needs; the same spec (seed included) gives the same run.
#[derive(Debug, Clone)]
pub struct SimSpec {
    /// Number of nodes (`node-1` …).
    pub nodes: usize,
    /// `max_concurrent_reboots` at the start.
    pub capacity: u32,
    /// The machine's configuration (intervals, cooldown, lease TTLs, …).
    pub fsm: FsmConfig,
    /// Maintenance windows with their time zone.
    pub windows: Arc<Windows>,
    /// Cluster-health policies.
    pub policies: Policies,
    /// Health records older than this are not counted healthy.
    pub stale_after: Duration,
    /// Session lease TTL (`lock_ttl_sec`).
    pub lock_ttl: Duration,
    /// Heartbeat period (publishes health records between passes).
    pub heartbeat: Duration,
    /// Simulated wall-clock start (ms since the epoch).
    pub start_ms: Millis,
    /// Seed for every random choice (jitter, reboot durations).
    pub seed: u64,
    /// How long a node is down for a reboot: uniform in `[min, max]`.
    pub reboot_down: (Duration, Duration),
    /// How long one health-script run takes.
    pub health_latency: Duration,
    /// After a reboot the health script fails for this long (services warming up).
    pub boot_settle: Duration,
    /// How long the detectors take.
    pub detector_latency: Duration,
    /// Health-script timeout (a hanging script is reported after this long).
    pub health_timeout: Duration,
    /// Which nodes need a reboot at the start (indexes).
    pub needs_reboot: Vec<usize>,
    /// Updates that land later (node, when after the start), as in a real fleet where
    /// packages install at different times: the node's daemon starts at that instant with its
    /// update installed, so its first check finds it. The node must also be in `needs_reboot`.
    pub arrivals: Vec<(usize, Duration)>,
    /// Nodes that never come back from their reboot.
    pub never_return: Vec<usize>,
    /// Scheduled faults and operator actions.
    pub faults: Vec<Fault>,
    /// Stop at this simulated time after the start, finished or not.
    pub horizon: Duration,
    /// Keep every node's inputs and steps and log every transition in the report (replay
    /// checks, event logs); the planner needs only the timeline and does without.
    pub record_journal: bool,
    /// Whether liveness is checked (only meaningful without faults that block forever).
    pub check_liveness: bool,
    /// A deliberately broken protocol variant, to prove the checker catches it (tests only).
    #[doc(hidden)]
    pub broken: Option<Broken>,
    /// An endless-update soak ([`soak`]): stop after this many reboots, with checkpoints.
    pub soak: Option<soak::SoakMode>,
    /// Reboot groups (issue #16): a node listed in one needs a slot of that group's pool as
    /// well as a cluster slot; a node in none needs the cluster slot only.
    pub groups: Vec<SimGroup>,
}

/// One reboot group of the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGroup {
    /// Group name (`group:` of its members).
    pub name: String,
    /// Its `group_max_concurrent_reboots`.
    pub capacity: u32,
    /// Its members (node indexes).
    pub members: Vec<usize>,
}

impl SimSpec {
    /// The group node `i` belongs to, if any.
    pub fn group_of(&self, i: usize) -> Option<&SimGroup> {
        self.groups.iter().find(|g| g.members.contains(&i))
    }
}

/// A deliberately wrong protocol, used only to show that the invariant checker has teeth.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Release the slot and clear the in-progress marker as soon as the node is back up,
    /// before post-reboot health passed (what a naive "unlock on boot" daemon does).
    ReleaseOnBoot,
    /// Never report the kill switch to the machine.
    IgnoreKillSwitch,
    /// Report every maintenance window as open.
    IgnoreWindows,
    /// Treat slot holders' planned downtime as a block and never wake on the cluster watch:
    /// the previous version's hand-off, which waited for the backoff timer.
    TimerHandoff,
    /// Nodes with an even index take the cluster slot before the group slot, the others the
    /// group slot first: mixed orders deadlock (issue #16), which the liveness check must see.
    MixedAcquireOrder,
    /// Every node's group pool has as many slots as the cluster: the group invariant must
    /// catch two members of a one-slot group rebooting together.
    IgnoreGroupCapacity,
}

/// One scheduled fault or operator action.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When, after the start.
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
}

/// Faults and operator actions the simulator can inject.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The node's daemon is killed (no shutdown handling) and restarted after `down`.
    Crash {
        /// Node index.
        node: usize,
        /// Time until systemd restarts it.
        down: Duration,
    },
    /// The node's session lease expires now (as after a long network partition).
    ExpireSession {
        /// Node index.
        node: usize,
    },
    /// The node's reboot lease expires now (it stayed down too long).
    ExpireRebootLease {
        /// Node index.
        node: usize,
    },
    /// The KV store answers nothing for this long.
    KvUnavailable {
        /// Outage length.
        span: Duration,
    },
    /// Every watch is cancelled (watchers must resync).
    DropWatches,
    /// Watch events arrive late for a while.
    DelayWatches {
        /// Extra delay per event.
        delay: Duration,
        /// For how long.
        span: Duration,
    },
    /// The node's health script fails (or hangs until its timeout) for a while.
    HealthFails {
        /// Node index.
        node: usize,
        /// For how long.
        span: Duration,
        /// Hang until the timeout instead of exiting non-zero.
        hang: bool,
    },
    /// The node's kill switch file exists for a while.
    KillSwitch {
        /// Node index.
        node: usize,
        /// For how long.
        span: Duration,
    },
    /// An operator pauses the cluster for a while.
    Pause {
        /// For how long.
        span: Duration,
    },
    /// `max_concurrent_reboots` is changed on every node (SIGHUP).
    SetCapacity {
        /// The new value.
        k: u32,
    },
    /// The node's wall clock is stepped (NTP); positive is forward.
    ClockJump {
        /// Node index.
        node: usize,
        /// Step in ms.
        delta_ms: i64,
    },
    /// A new update arrives on the node: it needs a reboot (again).
    NeedsReboot {
        /// Node index.
        node: usize,
    },
    /// The node's detectors and health script never answer for a while (a stuck adapter):
    /// the machine's request deadlines must turn that into failures.
    AdaptersStall {
        /// Node index.
        node: usize,
        /// For how long.
        span: Duration,
    },
    /// The node's update lands and its daemon starts (see [`SimSpec::arrivals`]).
    UpdateArrives {
        /// Node index.
        node: usize,
    },
}

impl Fault {
    /// Builds a fault at `at`.
    pub fn at(at: Duration, kind: FaultKind) -> Fault {
        Fault { at, kind }
    }
}

/// Name of node `i` (1-based, so timelines read like host names).
pub fn node_name(i: usize) -> String {
    format!("node-{}", i + 1)
}
