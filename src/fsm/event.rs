//! Inputs of the machine: facts in the past tense, produced by adapters and timers.
//!
//! Every event travels inside an [`Input`] that carries `now` and a random `jitter` drawn by the
//! driver, so the machine needs neither a clock nor a random generator and a journal of inputs
//! replays bit for bit.

use serde::{Deserialize, Serialize};

use super::config::FsmConfig;
use super::types::{EffectId, Gates, Millis, Outcome};

/// One input to the machine: an event plus the time it was observed and jitter for backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Wall-clock time of the observation.
    pub now: Millis,
    /// Uniform random number drawn by the driver; spreads retries of many nodes.
    #[serde(default)]
    pub jitter: u32,
    /// What happened.
    pub event: Event,
}

/// Everything that can happen to the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The daemon process started and read this boot id: the first event of every process
    /// lifetime. Carries the configuration so a journal replays without the config file.
    Started {
        /// Current boot id (`boot_id_path`).
        boot_id: String,
        /// The machine's view of the configuration.
        config: FsmConfig,
    },
    /// SIGHUP applied a new valid configuration (hot fields only).
    ConfigReloaded {
        /// The new machine configuration.
        config: FsmConfig,
    },
    /// A timer the machine asked for fired; carries the brakes sampled at that moment.
    Tick {
        /// Kill switch / pause as sampled by the driver.
        #[serde(default)]
        gates: Gates,
    },
    /// Kill switch or pause state observed: either the answer to `CheckGates` (with its id) or
    /// an unsolicited change noticed by a watcher (no id).
    GatesObserved {
        /// The `CheckGates` request answered, if any.
        #[serde(default)]
        id: Option<EffectId>,
        /// What was observed.
        #[serde(default)]
        gates: Gates,
    },
    /// The detectors finished.
    DetectorsEvaluated {
        /// The `RunDetectors` request answered.
        id: EffectId,
        /// Their combined verdict.
        result: DetectorResult,
    },
    /// The maintenance windows were evaluated at `now`.
    WindowEvaluated {
        /// The `EvaluateWindow` request answered.
        id: EffectId,
        /// Open or closed, with the relevant instants.
        verdict: WindowVerdict,
    },
    /// The cluster-health registry was read and the policies applied.
    ClusterHealthEvaluated {
        /// The `ReadClusterHealth` request answered.
        id: EffectId,
        /// Pass, or every blocking reason.
        verdict: PolicyVerdict,
    },
    /// The health script finished (or failed to run).
    HealthChecked {
        /// The `RunHealthScript` request answered.
        id: EffectId,
        /// Its result.
        result: HealthResult,
    },
    /// The node's queue entry exists and waits behind others.
    SlotQueued {
        /// The `JoinQueue` request answered.
        id: EffectId,
        /// 1-based position among waiters (after the holders).
        position: u32,
        /// Who holds the slots now (for status lines).
        holders: Vec<SlotHolder>,
        /// Which pool the node waits for: absent = the cluster pool, else its reboot group's
        /// (issue #16; it decides nothing, it only names the pool in status lines).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<String>,
    },
    /// The node now holds a reboot slot.
    SlotAcquired {
        /// The `JoinQueue` request answered.
        id: EffectId,
    },
    /// Joining the queue failed (coordination unreachable, refused).
    SlotUnavailable {
        /// The `JoinQueue` request answered.
        id: EffectId,
        /// Why.
        detail: String,
    },
    /// The slot or queue entry vanished (session lease expired, key deleted by an operator).
    SlotLost {
        /// Why, as far as the adapter knows.
        detail: SlotLoss,
    },
    /// The cluster cooldown marker was read under the slot.
    CooldownRead {
        /// The `ReadCooldown` request answered.
        id: EffectId,
        /// Clear, active, or unreadable.
        status: CooldownStatus,
    },
    /// The slot was moved onto the long reboot lease (and the in-progress marker written).
    RebootLeaseMoved {
        /// The `MoveSlotToRebootLease` request answered.
        id: EffectId,
        /// Whether it worked.
        result: StepResult,
    },
    /// A list of hooks finished.
    HooksRan {
        /// The `RunHooks` request answered.
        id: EffectId,
        /// Ok, or the first failure.
        result: StepResult,
    },
    /// The reboot command returned (in a real reboot, usually it never does).
    RebootCommandFinished {
        /// The `ExecuteReboot` request answered.
        id: EffectId,
        /// Whether it exited successfully.
        result: StepResult,
    },
    /// After boot: the persisted reboot lease was kept alive again, or found expired.
    RebootLeaseReattached {
        /// The `ReattachRebootLease` request answered.
        id: EffectId,
        /// Attached, expired, or failed.
        result: ReattachResult,
    },
    /// An adapter did not answer a request in time; treated as that request's failure.
    EffectTimedOut {
        /// The request that timed out.
        id: EffectId,
    },
    /// SIGTERM/SIGINT: the process is asked to stop.
    ShutdownRequested,
    /// Something this node waits for in the coordination store changed (a slot released, a
    /// marker or a peer's health changed, the pause or the cooldown went away): the answer to
    /// `AwaitClusterChange`, so a cluster wait is woken by a watch, not by a timer.
    ClusterChanged {
        /// The `AwaitClusterChange` request answered.
        id: EffectId,
    },
    /// At start, coordination (the persisted reboot lease, this node's slot entry or
    /// in-progress marker) shows a reboot of this node that is not finished, while the journal
    /// does not know of it (lost, damaged, or older): a lost journal is never a licence to start
    /// over (SPEC §8). Ignored in `Rebooting` and `Recovering`, where the journal knows.
    UnfinishedRebootFound {
        /// Boot id on which the slot was moved onto the reboot lease, if recorded.
        #[serde(default)]
        from_boot: Option<String>,
        /// When (ms since the epoch), if recorded.
        #[serde(default)]
        since: Option<Millis>,
        /// Whether the reboot is known to have happened (the slot was re-attached after a boot).
        #[serde(default)]
        rebooted: bool,
    },
}

/// Declares [`EventKind`] with one variant per [`Event`] variant, its names and `ALL`.
macro_rules! event_kinds {
    ($($kind:ident),* $(,)?) => {
        /// The kind of an [`Event`] without its data: what a pending request waits for, typed,
        /// so that answers are paired with requests by the compiler rather than by strings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(
                #[doc = concat!("[`Event::", stringify!($kind), "`].")]
                $kind,
            )*
        }

        impl EventKind {
            /// Every kind, in declaration order (the spec must list exactly these).
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),*];

            /// The kind's name (spec tables, logs, metrics labels).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$kind => stringify!($kind),)*
                }
            }
        }
    };
}

event_kinds!(
    Started,
    ConfigReloaded,
    Tick,
    GatesObserved,
    DetectorsEvaluated,
    WindowEvaluated,
    ClusterHealthEvaluated,
    HealthChecked,
    SlotQueued,
    SlotAcquired,
    SlotUnavailable,
    SlotLost,
    CooldownRead,
    RebootLeaseMoved,
    HooksRan,
    RebootCommandFinished,
    RebootLeaseReattached,
    EffectTimedOut,
    ShutdownRequested,
    ClusterChanged,
    UnfinishedRebootFound,
);

impl Event {
    /// The variant's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Started { .. } => EventKind::Started,
            Event::ConfigReloaded { .. } => EventKind::ConfigReloaded,
            Event::Tick { .. } => EventKind::Tick,
            Event::GatesObserved { .. } => EventKind::GatesObserved,
            Event::DetectorsEvaluated { .. } => EventKind::DetectorsEvaluated,
            Event::WindowEvaluated { .. } => EventKind::WindowEvaluated,
            Event::ClusterHealthEvaluated { .. } => EventKind::ClusterHealthEvaluated,
            Event::HealthChecked { .. } => EventKind::HealthChecked,
            Event::SlotQueued { .. } => EventKind::SlotQueued,
            Event::SlotAcquired { .. } => EventKind::SlotAcquired,
            Event::SlotUnavailable { .. } => EventKind::SlotUnavailable,
            Event::SlotLost { .. } => EventKind::SlotLost,
            Event::CooldownRead { .. } => EventKind::CooldownRead,
            Event::RebootLeaseMoved { .. } => EventKind::RebootLeaseMoved,
            Event::HooksRan { .. } => EventKind::HooksRan,
            Event::RebootCommandFinished { .. } => EventKind::RebootCommandFinished,
            Event::RebootLeaseReattached { .. } => EventKind::RebootLeaseReattached,
            Event::EffectTimedOut { .. } => EventKind::EffectTimedOut,
            Event::ShutdownRequested => EventKind::ShutdownRequested,
            Event::ClusterChanged { .. } => EventKind::ClusterChanged,
            Event::UnfinishedRebootFound { .. } => EventKind::UnfinishedRebootFound,
        }
    }

    /// Short name of the variant (spec tables, logs, metrics labels).
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Every variant name, in declaration order (the spec must list exactly these).
    pub fn names() -> Vec<&'static str> {
        EventKind::ALL.iter().map(|k| k.as_str()).collect()
    }

    /// The request this event answers, if it answers one.
    pub fn answers(&self) -> Option<EffectId> {
        match self {
            Event::GatesObserved { id, .. } => *id,
            Event::DetectorsEvaluated { id, .. }
            | Event::WindowEvaluated { id, .. }
            | Event::ClusterHealthEvaluated { id, .. }
            | Event::HealthChecked { id, .. }
            | Event::SlotQueued { id, .. }
            | Event::SlotAcquired { id }
            | Event::SlotUnavailable { id, .. }
            | Event::CooldownRead { id, .. }
            | Event::RebootLeaseMoved { id, .. }
            | Event::HooksRan { id, .. }
            | Event::RebootCommandFinished { id, .. }
            | Event::RebootLeaseReattached { id, .. }
            | Event::EffectTimedOut { id }
            | Event::ClusterChanged { id } => Some(*id),
            Event::Started { .. }
            | Event::ConfigReloaded { .. }
            | Event::Tick { .. }
            | Event::SlotLost { .. }
            | Event::UnfinishedRebootFound { .. }
            | Event::ShutdownRequested => None,
        }
    }
}

/// Combined verdict of all detectors (any error makes the evaluation an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum DetectorResult {
    /// At least one detector says a reboot is required.
    Required {
        /// Names of the detectors that said so.
        by: Vec<String>,
    },
    /// No detector requires a reboot.
    NotRequired,
    /// A detector failed.
    Error {
        /// Which one and why.
        detail: String,
    },
}

/// Window evaluation at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum WindowVerdict {
    /// A reboot may start now.
    Open {
        /// When the permission ends (`None`: not within the search horizon).
        #[serde(default)]
        closes_at: Option<Millis>,
        /// The outcome that applies once it has closed.
        #[serde(default)]
        closes_by: Option<Outcome>,
    },
    /// No reboot may start now.
    Closed {
        /// `window_denied` or `window_outside_allow`.
        outcome: Outcome,
        /// Go reason text, e.g. `blocked by deny window "Fri 18:00-Mon 08:00"`.
        reason: String,
        /// When a reboot will next be allowed (`None`: not within the search horizon).
        #[serde(default)]
        next_open: Option<Millis>,
    },
}

/// What kind of fact a policy reason is about: what `status --explain`, the fleet view and
/// notifications act on (what would unblock it), so that no module decides on English text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// A slot holder's reboot or recovery: planned downtime the node queues behind.
    PlannedDowntime,
    /// A peer's reboot marker without a slot: it rebooted and has not come back healthy.
    RebootInProgress,
    /// Peers report unhealthy.
    UnhealthyPeers,
    /// Peers' records are too old to count as healthy.
    StaleRecords,
    /// Peers' records cannot be decoded.
    UnreadableRecords,
    /// Fewer healthy nodes than `min_healthy_absolute` / `min_healthy_fraction` allow.
    TooFewHealthy,
    /// Only `fallback_nodes` would remain healthy.
    OnlyFallbackLeft,
    /// Not classified (records written before reasons were typed).
    Other,
}

/// Why a slot or queue entry vanished: its cause and the adapter's words for it. Typed, so
/// `status --explain` chooses its hint by the cause and not by the wording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SlotLossRepr")]
pub struct SlotLoss {
    /// What happened.
    pub kind: SlotLossKind,
    /// Plain words, with the lease id.
    pub text: String,
}

/// The causes of a lost slot the backends can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotLossKind {
    /// The session lease expired: etcd was out of reach for longer than `lock_ttl_sec`.
    SessionExpired,
    /// The reboot lease expired: the node did not come back (or reach etcd) within the reboot
    /// lease's TTL after its reboot command.
    RebootLeaseExpired,
    /// Anything else (journals written before the cause was typed).
    Other,
}

impl SlotLoss {
    /// A loss of `kind`.
    pub fn new(kind: SlotLossKind, text: impl Into<String>) -> SlotLoss {
        SlotLoss {
            kind,
            text: text.into(),
        }
    }
}

/// Journals written before the cause was typed hold plain strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum SlotLossRepr {
    Typed { kind: SlotLossKind, text: String },
    Text(String),
}

impl From<SlotLossRepr> for SlotLoss {
    fn from(r: SlotLossRepr) -> SlotLoss {
        match r {
            SlotLossRepr::Typed { kind, text } => SlotLoss { kind, text },
            SlotLossRepr::Text(text) => SlotLoss::new(SlotLossKind::Other, text),
        }
    }
}

impl std::fmt::Display for SlotLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One reason a cluster policy blocks: its kind and the operator's words for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BlockReasonRepr")]
pub struct BlockReason {
    /// What it is about.
    pub kind: BlockKind,
    /// Plain words, with the nodes and numbers involved.
    pub text: String,
}

impl BlockReason {
    /// A reason of `kind`.
    pub fn new(kind: BlockKind, text: impl Into<String>) -> BlockReason {
        BlockReason {
            kind,
            text: text.into(),
        }
    }

    /// `reason` as found by `group_policies` within reboot group `group` (issue #16): the same
    /// kind, the words prefixed with the group, so that every reader names the group.
    pub fn within_group(group: &str, reason: BlockReason) -> BlockReason {
        BlockReason {
            kind: reason.kind,
            text: format!("{GROUP_REASON_PREFIX}{group}: {}", reason.text),
        }
    }

    /// Whether this reason comes from `group_policies` rather than `cluster_policies`.
    pub fn is_within_group(&self) -> bool {
        self.text.starts_with(GROUP_REASON_PREFIX)
    }

    /// The texts of `reasons` (Go's report and JSON evidence carry the words only).
    pub fn texts(reasons: &[BlockReason]) -> Vec<String> {
        reasons.iter().map(|r| r.text.clone()).collect()
    }
}

/// How the words of a `group_policies` reason begin ([`BlockReason::within_group`]).
const GROUP_REASON_PREFIX: &str = "in reboot group ";

/// Journals written before reasons were typed hold plain strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum BlockReasonRepr {
    Typed { kind: BlockKind, text: String },
    Text(String),
}

impl From<BlockReasonRepr> for BlockReason {
    fn from(r: BlockReasonRepr) -> BlockReason {
        match r {
            BlockReasonRepr::Typed { kind, text } => BlockReason { kind, text },
            BlockReasonRepr::Text(text) => BlockReason {
                kind: BlockKind::Other,
                text,
            },
        }
    }
}

/// Tests and old call sites build unclassified reasons from text.
impl From<&str> for BlockReason {
    fn from(text: &str) -> BlockReason {
        BlockReason::new(BlockKind::Other, text)
    }
}

impl std::borrow::Borrow<str> for BlockReason {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Cluster-health policy verdict (SPEC §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum PolicyVerdict {
    /// Every policy passes.
    Pass,
    /// At least one policy blocks; every reason named.
    Blocked {
        /// Every reason, typed.
        reasons: Vec<BlockReason>,
    },
    /// The thresholds fail only because of slot holders' planned downtime (SPEC §6.3): the
    /// node queues behind them (or, under the slot, keeps its entry) and waits for a release.
    HeldBack {
        /// The holders and the thresholds they break.
        reasons: Vec<BlockReason>,
    },
    /// The registry could not be read (fails closed).
    Error {
        /// Why.
        detail: String,
    },
}

/// Result of one health-script run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HealthResult {
    /// Exit 0.
    Passed,
    /// Non-zero exit: the script says the cluster cannot afford this reboot.
    Blocked {
        /// The exit code.
        exit_code: i32,
        /// First line of its output (evidence for `status --explain`).
        first_line: String,
    },
    /// Timeout or exec failure: blocks, and is reported as an error.
    Error {
        /// Why.
        detail: String,
    },
}

/// A node holding a slot, as reported by the coordination layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotHolder {
    /// Node name.
    pub node: String,
    /// Since when (ms since epoch), when known.
    pub since: Option<Millis>,
}

/// Cluster cooldown marker status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CooldownStatus {
    /// No cooldown in force.
    Clear,
    /// A cooldown started by `by` runs until `until`.
    Active {
        /// End of the cooldown.
        until: Millis,
        /// Node whose recovery started it.
        by: String,
    },
    /// The marker could not be read (fails closed).
    Error {
        /// Why.
        detail: String,
    },
}

/// Result of a side-effecting step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepResult {
    /// It worked.
    Ok,
    /// It failed.
    Failed {
        /// Why.
        detail: String,
    },
}

/// Result of re-attaching the reboot lease after boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReattachResult {
    /// The lease is alive and kept alive again: the slot is still ours.
    Attached,
    /// The lease expired while the node was down: the slot was already freed.
    Expired,
    /// Coordination unreachable; retry.
    Failed {
        /// Why.
        detail: String,
    },
}
