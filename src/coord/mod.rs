//! Coordination: where reboot slots, the cooldown marker, the cluster-health registry and the
//! pause live. One trait, [`Coordinator`], so the driver runs the same way on the single-host
//! [`local`] backend and on etcd ([`etcd`]).
//!
//! Slot pools (issue #16): a node in a reboot group holds a slot in its group's pool and one in
//! the cluster pool; the etcd backend takes both inside [`Coordinator::join_queue`] (group
//! first, see `etcd_groups`), so the driver and the machine see one slot.

pub mod etcd;
pub mod etcd_kv;
pub mod fleet_view;
pub mod group_policy;
pub mod keys;
pub mod kv;
pub mod local;
pub mod memkv;
pub mod node_state;
pub mod policy;
pub mod slots;

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::fsm::{CooldownStatus, PolicyVerdict, SlotHolder};

/// A progress report while waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUpdate {
    /// 1-based position among waiters.
    pub position: u32,
    /// Current holders.
    pub holders: Vec<SlotHolder>,
    /// The pool waited for: `None` = the cluster pool, `Some(group)` = that group's pool.
    pub pool: Option<String>,
}

/// What re-attaching the reboot lease after boot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reattach {
    /// The slot is still ours.
    Attached,
    /// The lease expired while the node was down; the slot was freed.
    Expired,
}

/// This node's health record (Go format: `{"node","healthy","stage","reason","reported_at"}`,
/// plus an optional `group`: Go's `json.Unmarshal` ignores a field it does not know, so Go peers
/// read the record unchanged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthRecord {
    /// Node name.
    pub node: String,
    /// Whether the last health-script run passed.
    pub healthy: bool,
    /// Phase of that run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
    /// Why (for unhealthy records).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// RFC 3339 time of the run.
    pub reported_at: String,
    /// The node's reboot group (issue #16), so that peers can evaluate `group_policies` among
    /// the members of their own group; absent without a group (and from Go daemons). Filled in
    /// by the etcd backend from its configuration when it publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A reboot of this node that coordination shows as not finished (see
/// [`Coordinator::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedReboot {
    /// Boot id on which the slot was moved onto the reboot lease, if recorded.
    pub from_boot: Option<String>,
    /// When (ms since the epoch), if recorded.
    pub since: Option<u64>,
    /// The slot was re-attached after a boot: the reboot has happened.
    pub rebooted: bool,
}

/// Parses an RFC 3339 time into ms since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<u64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
}

/// Something the backend noticed on its own (not as the answer to a call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The queue entry or slot is gone (session lease expired, key deleted).
    SlotLost(crate::fsm::event::SlotLoss),
    /// The cluster pause changed (`Some(reason)` = paused).
    PauseChanged(Option<String>),
}

/// Why a coordination call failed. Every failure fails closed: no reboot starts.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The backing store could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted (names the file or key).
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Stored data is not in the expected format.
    #[error("{what}: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The slot is not ours any more.
    #[error("slot lost: {0}")]
    Lost(String),
    /// Another daemon owns the coordination state.
    #[error("{0}")]
    Busy(String),
    /// The etcd store is not the one this node pinned (restored or replaced): nothing new
    /// starts until an operator accepts it.
    #[error("{0}")]
    StoreChanged(String),
    /// The coordination store failed.
    #[error(transparent)]
    Kv(#[from] kv::KvError),
}

impl CoordError {
    /// Label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CoordError::Io { .. } => "io",
            CoordError::Corrupt { .. } => "corrupt",
            CoordError::Lost(_) => "lost",
            CoordError::Busy(_) => "busy",
            CoordError::StoreChanged(_) => "store_changed",
            CoordError::Kv(e) => e.kind(),
        }
    }
}

/// Everything the driver needs from a coordination backend.
///
/// All methods are idempotent where that is possible (releasing twice is fine), and none of
/// them decides anything: they report facts, the machine decides.
pub trait Coordinator: Send + Sync + 'static {
    /// Creates this node's queue entry and resolves once it holds a slot; sends a
    /// [`QueueUpdate`] whenever the queue ahead changes. Waiting must not poll a remote store.
    fn join_queue(
        &self,
        updates: mpsc::Sender<QueueUpdate>,
    ) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Deletes the queue entry (never held).
    fn leave_queue(&self) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Gives the slot back (entry and reboot lease).
    fn release_slot(&self) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Moves the held slot onto a lease of `ttl` and writes the in-progress marker, only if the
    /// entry still exists; persists what is needed to re-attach after boot.
    fn move_to_reboot_lease(
        &self,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// After boot: keeps the persisted reboot lease alive again, or reports it expired.
    fn reattach_reboot_lease(&self) -> impl Future<Output = Result<Reattach, CoordError>> + Send;
    /// Deletes this node's in-progress marker.
    fn clear_in_progress(&self) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Reads the cluster cooldown marker.
    fn read_cooldown(&self) -> impl Future<Output = Result<CooldownStatus, CoordError>> + Send;
    /// Writes the cluster cooldown marker for `duration`.
    fn start_cooldown(
        &self,
        duration: Duration,
    ) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Reads the cluster-health registry and applies the policies.
    fn cluster_health(&self) -> impl Future<Output = Result<PolicyVerdict, CoordError>> + Send;
    /// The peers' records that said "not healthy" at the last [`Coordinator::cluster_health`]
    /// read: what the Go pass report lists under `cluster health blockers:`. Empty for a
    /// backend without a registry.
    fn unhealthy_records(&self) -> Vec<HealthRecord> {
        Vec::new()
    }
    /// Publishes this node's health record.
    fn publish_health(
        &self,
        record: HealthRecord,
    ) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// The cluster pause reason, if paused.
    fn pause(&self) -> impl Future<Output = Result<Option<String>, CoordError>> + Send;
    /// Whether an operator asked for this node to be rebooted (`cluster request-reboot`).
    fn reboot_requested(&self) -> impl Future<Output = Result<bool, CoordError>> + Send;
    /// Notices about slot loss and pause changes, for the driver to turn into events.
    fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice>;
    /// Applies a reloaded `max_concurrent_reboots` (no-op where it means nothing).
    fn set_capacity(&self, _k: u32) {}
    /// Applies a reloaded `group_max_concurrent_reboots` (no-op without a group pool).
    fn set_group_capacity(&self, _k: u32) {}
    /// Applies reloaded `cluster_policies` and `health_stale_after_sec` (no-op where there are
    /// no peers): an operator tightening the policies during an incident must be obeyed at once.
    fn set_policies(&self, _policies: crate::config::Policies, _stale_after: Duration) {}
    /// Applies reloaded `group_policies` (no-op without a group): obeyed at once, like
    /// `cluster_policies`.
    fn set_group_policies(&self, _policies: crate::config::Policies) {}
    /// Resolves once something a waiting node depends on changes in the coordination store: a
    /// peer's slot entry deleted, a peer's in-progress marker created or deleted, a peer's
    /// health verdict (healthy and fresh) changed, the pause or the cooldown deleted. This
    /// node's own writes never wake it. Backends without peers never resolve. Errors are
    /// retried inside (a broken watch is re-established); the caller's timer is the safety net.
    fn await_cluster_change(&self) -> impl Future<Output = ()> + Send;
    /// At start, before anything else: what coordination knows of this node, so that "once per
    /// boot" and "one entry per node" hold even when the journal is lost or damaged (SPEC §8).
    /// Returns the unfinished reboot it shows (persisted reboot lease, this node's entry on it,
    /// its in-progress marker), and removes queue entries an earlier process of this daemon left
    /// on this boot (they would hold a second slot). When the store cannot be read, the local
    /// facts alone are returned, or the error if there are none.
    fn reconcile(
        &self,
    ) -> impl Future<Output = Result<Option<UnfinishedReboot>, CoordError>> + Send;
    /// After a passing post-reboot health check, in one transaction: delete this node's
    /// in-progress marker, write its healthy `post-reboot` record, start the cooldown
    /// (`cooldown` > 0) and delete its queue entry; then revoke the reboot lease. Idempotent.
    fn complete_recovery(
        &self,
        cooldown: Duration,
    ) -> impl Future<Output = Result<(), CoordError>> + Send;
    /// Publishes this node's decision state for the fleet view (`<ns>/node_state/<node>`, on
    /// the session lease, or on the reboot lease while `Rebooting` so it outlives the reboot).
    /// Cheap when called again with the same record on the same live lease (nothing is
    /// written), so the caller may repeat it to re-publish after a lost session. Never
    /// decides anything; a failure only means the fleet view is out of date. Returns whether
    /// something was written.
    fn publish_node_state(
        &self,
        record: &node_state::NodeState,
    ) -> impl Future<Output = Result<bool, CoordError>> + Send;
    /// The fleet as this backend sees it (the web page): every node's published state, slot
    /// holders, queue, pause and cooldown.
    fn fleet_view(&self) -> impl Future<Output = Result<fleet_view::FleetView, CoordError>> + Send;
}
