//! `lock_backend: etcd`: the [`Coordinator`] for a cluster, over any [`Kv`] (real etcd in
//! production, the in-memory model in tests and simulation).
//!
//! - A **session lease** (`lock_ttl_sec`) is granted once and kept alive every TTL/3; the queue
//!   entry lives on it, so a crashed daemon's entry disappears after the TTL. If the lease is
//!   lost, a [`Notice::SlotLost`] goes to the driver and a new session starts on the next join.
//! - **Through the reboot** the entry is moved, in one transaction that requires it to still
//!   exist, onto a fresh lease of `reboot_lease_ttl_sec`, together with the in-progress marker;
//!   the lease id and key are persisted in `<state_dir>/reboot-lease.json` so the next boot can
//!   keep that lease alive again and release it only after post-reboot health passed.
//! - Cooldown, cluster health, pause and reboot requests use the Go key names and formats
//!   ([`super::keys`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::keys::Keys;
use super::kv::*;
use super::policy::{self, ClusterFacts, InProgress};
use super::slots::{self, SlotError, SlotValue};
use super::{CoordError, Coordinator, HealthRecord, Notice, QueueUpdate, Reattach};
use crate::clock::Clock;
use crate::config::Policies;
use crate::fsm::event::{SlotLoss, SlotLossKind};
use crate::fsm::{CooldownStatus, PolicyVerdict};
use crate::fsutil::{read_json, remove_if_exists, write_atomic};

mod groups;
pub use groups::{AcquireOrder, GroupPool};

/// What the backend needs to know about this node and the cluster rules.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Node name.
    pub node: String,
    /// Boot id of this process.
    pub boot_id: String,
    /// Key names.
    pub keys: Keys,
    /// Slots in the pool.
    pub capacity: u32,
    /// Session lease TTL.
    pub lock_ttl: Duration,
    /// Where the reboot lease is persisted across the reboot.
    pub lease_store: LeaseStore,
    /// Wall clock for records (cooldown, markers, policy staleness).
    pub clock: Clock,
    /// Cluster policies.
    pub policies: Policies,
    /// `group_policies` (issue #16): thresholds among the members of [`EtcdConfig::group`],
    /// evaluated in addition to `policies`; unused without a group.
    pub group_policies: Policies,
    /// A health record older than this is not counted healthy.
    pub stale_after: Duration,
    /// For `status`: read only, never write (a free slot is reported as acquired without
    /// taking it; a full queue as unavailable).
    pub read_only: bool,
    /// Where the pinned identity of the etcd store lives (`<state_dir>/etcd-identity.json`);
    /// `None` keeps the pin in memory only (tools, tests, the simulator).
    pub identity_file: Option<PathBuf>,
    /// The node's reboot group (issue #16): `None` = the cluster pool only, exactly the keys
    /// and behaviour of a daemon without groups (Go mutex interop).
    pub group: Option<GroupPool>,
    /// The order the two pools are taken in; always [`AcquireOrder::GroupFirst`] in the daemon.
    pub acquire_order: AcquireOrder,
}

impl EtcdConfig {
    /// A read-write node with no cluster-health policies, health records stale after 60 s and
    /// the system clock: what tools, tests and benchmarks start from (the daemon fills every
    /// field from its settings).
    pub fn new(
        node: &str,
        boot_id: &str,
        keys: Keys,
        capacity: u32,
        lock_ttl: Duration,
        lease_store: LeaseStore,
    ) -> EtcdConfig {
        EtcdConfig {
            node: node.to_string(),
            boot_id: boot_id.to_string(),
            keys,
            capacity,
            lock_ttl,
            lease_store,
            clock: Clock::System,
            policies: Policies::default(),
            group_policies: Policies::default(),
            stale_after: Duration::from_secs(60),
            read_only: false,
            identity_file: None,
            group: None,
            acquire_order: AcquireOrder::GroupFirst,
        }
    }
}

/// Where the reboot lease survives the reboot: a file in production, memory in the simulator
/// (whose simulated nodes keep their "disk" across simulated reboots).
#[derive(Debug, Clone)]
pub enum LeaseStore {
    /// `<state_dir>/reboot-lease.json`.
    File(PathBuf),
    /// A slot shared by every incarnation of one simulated node.
    Memory(Arc<Mutex<Option<RebootLease>>>),
}

impl LeaseStore {
    /// The production store: `reboot-lease.json` in `state_dir`.
    pub fn in_dir(state_dir: &std::path::Path) -> LeaseStore {
        LeaseStore::File(state_dir.join("reboot-lease.json"))
    }

    fn describe(&self) -> String {
        match self {
            LeaseStore::File(p) => p.display().to_string(),
            LeaseStore::Memory(_) => "in-memory reboot lease".into(),
        }
    }

    fn load(&self) -> Result<Option<RebootLease>, CoordError> {
        match self {
            LeaseStore::File(p) => read_json(p).map_err(|e| CoordError::Corrupt {
                what: p.display().to_string(),
                message: e.to_string(),
            }),
            LeaseStore::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }

    fn save(&self, record: &RebootLease) -> Result<(), CoordError> {
        match self {
            LeaseStore::File(p) => {
                let bytes = serde_json::to_vec_pretty(record).map_err(|e| CoordError::Corrupt {
                    what: p.display().to_string(),
                    message: format!("cannot serialise the reboot lease: {e}"),
                })?;
                write_atomic(p, &bytes).map_err(|source| CoordError::Io {
                    what: format!("persist {}", p.display()),
                    source,
                })
            }
            LeaseStore::Memory(m) => {
                *m.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
                Ok(())
            }
        }
    }

    fn remove(&self) -> Result<(), CoordError> {
        match self {
            LeaseStore::File(p) => remove_if_exists(p).map_err(|source| CoordError::Io {
                what: format!("remove {}", p.display()),
                source,
            }),
            LeaseStore::Memory(m) => {
                *m.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
        }
    }
}

/// The persisted reboot lease (`<state_dir>/reboot-lease.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootLease {
    /// The lease carrying the slot through the reboot.
    pub lease: LeaseId,
    /// The queue entry on it.
    pub key: String,
    /// This node's entry in its group's pool, on the same lease (issue #16; absent without a
    /// group and in files of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// Node.
    pub node: String,
    /// Boot id on which the slot was moved (empty in files of earlier versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
    /// When (RFC 3339; empty in files of earlier versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
}

/// The pause record `{"reason","by","at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    /// Why.
    pub reason: String,
    /// Who.
    #[serde(default)]
    pub by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: String,
}

/// An operator's reboot request `{"by","at"}` (`cluster request-reboot`). Both fields are
/// required: the request makes a node reboot, so only the record the command writes counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRequest {
    /// Who asked (`user@host`).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The largest value read from etcd as one of the daemon's small records (reboot request,
/// health record, in-progress marker); anything larger is not one (docs/SECURITY.md "Size
/// limits"). The records the daemons write are well under 1 KiB.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// How often the fleet view's store checks write an advanced revision to
/// `etcd-identity.json` (two fsyncs); the decision points write it every time
/// ([`EtcdBackend::check_store`]).
pub const PIN_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Reads a reboot request; `Err` says why the value is not one.
pub fn decode_request(v: &[u8]) -> Result<(), String> {
    if v.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "value is {} bytes, more than the {MAX_RECORD_BYTES}-byte limit",
            v.len()
        ));
    }
    serde_json::from_slice::<RebootRequest>(v)
        .map(|_| ())
        .map_err(|e| format!("not a reboot request: {e}"))
}

/// The Go cooldown record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CooldownRecord {
    /// Node whose recovery started it.
    pub node: String,
    /// RFC 3339.
    pub started_at: String,
    /// Length.
    pub duration_sec: u64,
}

/// The pinned identity of the etcd store (`<state_dir>/etcd-identity.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedStore {
    /// etcd cluster id, hex.
    pub cluster_id: String,
    /// The highest store revision seen; the store's revision never goes below it.
    pub revision: Revision,
}

/// The operator's acceptance of a new store (`<ns>/store_accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreAccepted {
    /// The accepted cluster id, hex.
    pub cluster_id: String,
    /// Who.
    #[serde(default)]
    pub by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: String,
}

#[derive(Default)]
struct Inner {
    pinned: Option<PinnedStore>,
    /// The pin as last written to `identity_file`, and when (monotonic: a wall-clock step
    /// must not stop the writes).
    pin_on_disk: Option<(PinnedStore, tokio::time::Instant)>,
    session: Option<LeaseId>,
    session_task: Option<JoinHandle<()>>,
    entry: Option<String>,
    /// This session's entry in the group pool (issue #16), if it has one.
    group_entry: Option<String>,
    reboot: Option<RebootLease>,
    reboot_task: Option<JoinHandle<()>>,
    /// The last `node_state` written and the lease it is on (a repeat writes nothing).
    node_state: Option<(Vec<u8>, LeaseId)>,
    /// Peers' records that said "not healthy" at the last `cluster_health` read.
    unhealthy: Vec<HealthRecord>,
}

/// The etcd coordination backend.
pub struct EtcdBackend<K: Kv + Clone> {
    kv: K,
    cfg: EtcdConfig,
    /// Cluster policies and staleness in force (a reload replaces them).
    policies: Mutex<(Policies, Duration)>,
    /// `group_policies` in force (a reload replaces them).
    group_policies: Mutex<Policies>,
    /// Slots in the pool; a change (SIGHUP) wakes the waiters, which re-read the queue.
    capacity: watch::Sender<u32>,
    /// Slots in the group's pool (unused without a group), applied like `capacity`.
    group_capacity: watch::Sender<u32>,
    inner: Arc<Mutex<Inner>>,
    notices: broadcast::Sender<Notice>,
    pause_task: JoinHandle<()>,
}

impl<K: Kv + Clone> Drop for EtcdBackend<K> {
    fn drop(&mut self) {
        self.pause_task.abort();
        let inner = lock(&self.inner);
        if let Some(t) = &inner.session_task {
            t.abort();
        }
        if let Some(t) = &inner.reboot_task {
            t.abort();
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets the queue entry `key` once it is deleted (unless another entry replaced it).
fn forget_entry(inner: &Mutex<Inner>, key: &str) {
    let mut i = lock(inner);
    if i.entry.as_deref() == Some(key) {
        i.entry = None;
    }
    if i.group_entry.as_deref() == Some(key) {
        i.group_entry = None;
    }
}

impl<K: Kv + Clone> EtcdBackend<K> {
    /// Creates the backend and starts watching the pause key. Must run inside a tokio runtime.
    pub fn new(kv: K, cfg: EtcdConfig) -> Self {
        let (notices, _) = broadcast::channel(16);
        let pause_task = tokio::spawn(watch_pause(kv.clone(), cfg.keys.pause(), notices.clone()));
        EtcdBackend {
            capacity: watch::Sender::new(cfg.capacity.max(1)),
            group_capacity: watch::Sender::new(cfg.group.as_ref().map_or(1, |g| g.capacity).max(1)),
            policies: Mutex::new((cfg.policies.clone(), cfg.stale_after)),
            group_policies: Mutex::new(cfg.group_policies.clone()),
            kv,
            cfg,
            inner: Arc::new(Mutex::new(Inner::default())),
            notices,
            pause_task,
        }
    }

    /// Changes the number of slots (SIGHUP): a node waiting in the queue re-reads it at once
    /// with the new number (so a raise lets it take a slot that is now free).
    pub fn set_capacity(&self, k: u32) {
        self.capacity.send_replace(k.max(1));
    }

    fn now_rfc3339(&self) -> String {
        self.cfg.clock.now().to_string()
    }

    /// The session lease, granted (and kept alive) on first use.
    async fn session(&self) -> Result<LeaseId, CoordError> {
        if let Some(id) = lock(&self.inner).session {
            return Ok(id);
        }
        let id = self.kv.lease_grant(self.cfg.lock_ttl).await?;
        let task = tokio::spawn(keep_session(
            self.kv.clone(),
            id,
            self.cfg.lock_ttl,
            self.inner.clone(),
            self.notices.clone(),
        ));
        let mut inner = lock(&self.inner);
        if let Some(old) = inner.session_task.replace(task) {
            old.abort();
        }
        inner.session = Some(id);
        Ok(id)
    }

    fn value(&self, state: &str) -> SlotValue {
        SlotValue {
            node: self.cfg.node.clone(),
            pid: std::process::id(),
            acquired_at: self.now_rfc3339(),
            boot_id: self.cfg.boot_id.clone(),
            state: state.into(),
        }
    }

    /// Whether a health record counts as healthy for the policies right now.
    fn counts_healthy(&self, r: &HealthRecord, stale_after: Duration) -> bool {
        let now = self.cfg.clock.now();
        r.healthy
            && r.reported_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| now.duration_since(t).unsigned_abs() <= stale_after)
    }

    /// One watch over what a waiting node depends on (see
    /// [`Coordinator::await_cluster_change`]); `Ok` on the first relevant change.
    async fn watch_cluster_once(&self) -> Result<(), CoordError> {
        let me = self.cfg.node.as_str();
        let stale_after = self.policies.lock().unwrap_or_else(|p| p.into_inner()).1;
        let health_prefix = self.cfg.keys.health_prefix();
        let ip_prefix = self.cfg.keys.in_progress_prefix();
        let slot_prefix = self.cfg.keys.slot_prefix();
        let (pause, cooldown) = (self.cfg.keys.pause(), self.cfg.keys.cooldown());
        // Baseline: who is counted healthy, and whose slot entries exist.
        let health = self.kv.range(&health_prefix, RangeOpts::default()).await?;
        let start = health.revision + 1;
        let mut verdicts: std::collections::BTreeMap<String, bool> = health
            .kvs
            .iter()
            .map(|kv| match decode_health(&health_prefix, kv) {
                Ok(r) => (r.node.clone(), self.counts_healthy(&r, stale_after)),
                Err((node, _)) => (node, false),
            })
            .collect();
        let entries: std::collections::BTreeMap<String, String> = self
            .queue()
            .await?
            .iter()
            .map(|kv| (kv.key.clone(), slots::holder_of(kv).node))
            .collect();
        let mut streams = Vec::new();
        for prefix in [&slot_prefix, &ip_prefix, &health_prefix, &pause, &cooldown] {
            streams.push(self.kv.watch(prefix, start).await?);
        }
        let (mut w_slot, mut w_ip, mut w_health, mut w_pause, mut w_cool) = {
            let mut it = streams.into_iter();
            match (it.next(), it.next(), it.next(), it.next(), it.next()) {
                (Some(a), Some(b), Some(c), Some(d), Some(e)) => (a, b, c, d, e),
                _ => return Err(CoordError::Lost("cluster watch not established".into())),
            }
        };
        let ended = || CoordError::Lost("cluster watch ended".into());
        loop {
            tokio::select! {
                b = w_slot.recv() => {
                    for e in b.ok_or_else(ended)?? {
                        if let WatchEvent::Delete { key, .. } = e
                            && entries.get(&key).is_some_and(|n| n != me)
                        {
                            return Ok(());
                        }
                    }
                }
                b = w_ip.recv() => {
                    for e in b.ok_or_else(ended)?? {
                        let key = match &e {
                            WatchEvent::Put(kv) => kv.key.clone(),
                            WatchEvent::Delete { key, .. } => key.clone(),
                        };
                        if key.get(ip_prefix.len()..).is_some_and(|n| n != me) {
                            return Ok(());
                        }
                    }
                }
                b = w_health.recv() => {
                    for e in b.ok_or_else(ended)?? {
                        match e {
                            WatchEvent::Put(kv) => {
                                let (node, now_healthy) = match decode_health(&health_prefix, &kv) {
                                    Ok(r) => (r.node.clone(), self.counts_healthy(&r, stale_after)),
                                    Err((node, _)) => (node, false),
                                };
                                if node == me {
                                    continue;
                                }
                                if verdicts.insert(node, now_healthy) != Some(now_healthy) {
                                    return Ok(());
                                }
                            }
                            WatchEvent::Delete { key, .. } => {
                                if key.get(health_prefix.len()..).is_some_and(|n| n != me) {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
                b = w_pause.recv() => {
                    for e in b.ok_or_else(ended)?? {
                        if matches!(&e, WatchEvent::Delete { key, .. } if *key == pause) {
                            return Ok(());
                        }
                    }
                }
                b = w_cool.recv() => {
                    for e in b.ok_or_else(ended)?? {
                        if matches!(&e, WatchEvent::Delete { key, .. } if *key == cooldown) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Checks that the store is the one this node pinned (SPEC §7): the same etcd cluster id,
    /// and a revision not below the highest seen. The first check pins it. A store restored
    /// empty or replaced fails closed with [`CoordError::StoreChanged`] until an operator has
    /// accepted it (`cluster accept-store` writes `<ns>/store_accepted` with its cluster id).
    /// Every decision point calls this one: an advanced revision is written to
    /// `etcd-identity.json` at once, so after a restart the file is at least the highest
    /// revision any decision of this node was based on.
    pub async fn check_store(&self) -> Result<(), CoordError> {
        self.check_store_and_pin(true).await
    }

    /// [`Self::check_store`] for the fleet view's `node_state` writes, which decide nothing: the
    /// pin advances in memory, and on disk at most every [`PIN_SAVE_EVERY`] (every transition
    /// writes `node_state`; two fsyncs each had cost the reboot hand-off milliseconds).
    async fn check_store_for_view(&self) -> Result<(), CoordError> {
        self.check_store_and_pin(false).await
    }

    async fn check_store_and_pin(&self, always: bool) -> Result<(), CoordError> {
        let now = self.kv.identity(&self.cfg.keys.pause()).await?;
        let current = format!("{:x}", now.cluster_id);
        let pinned = {
            let cached = lock(&self.inner).pinned.clone();
            match cached {
                Some(p) => Some(p),
                None => self.load_pin()?,
            }
        };
        let ok = pinned
            .as_ref()
            .is_none_or(|p| p.cluster_id == current && now.revision >= p.revision);
        if !ok {
            let accepted = match self.kv.get(&self.cfg.keys.store_accepted()).await? {
                (Some(kv), _) => match serde_json::from_slice::<StoreAccepted>(&kv.value) {
                    Ok(a) => a.cluster_id == current,
                    Err(e) => {
                        tracing::warn!(event = "store_accepted_invalid", key = %kv.key, error = %e, "the store acceptance cannot be read; it accepts nothing (run `clusterrebootd cluster accept-store` again)");
                        false
                    }
                },
                (None, _) => false,
            };
            let p = pinned.clone().unwrap_or(PinnedStore {
                cluster_id: String::new(),
                revision: 0,
            });
            if !accepted {
                return Err(CoordError::StoreChanged(format!(
                    "the etcd store is not the one this node knows: pinned cluster id {} at revision {}, now cluster id {current} at revision {} (restored from a backup, or replaced?); no new reboot starts. If this store is the right one, check that no node is down in a reboot, then run `clusterrebootd cluster accept-store`",
                    p.cluster_id, p.revision, now.revision
                )));
            }
            tracing::warn!(event = "store_accepted", cluster_id = %current, revision = now.revision, previous = %p.cluster_id, "an operator accepted a new etcd store; pinning it");
        }
        let advanced = PinnedStore {
            cluster_id: current,
            revision: now.revision.max(
                pinned
                    .as_ref()
                    .filter(|p| ok && p.cluster_id == format!("{:x}", now.cluster_id))
                    .map_or(0, |p| p.revision),
            ),
        };
        let due = match &lock(&self.inner).pin_on_disk {
            // A new store (or the first pin) is written at once.
            Some((disk, _)) if disk.cluster_id != advanced.cluster_id => true,
            Some((disk, _)) if *disk == advanced => false,
            Some((_, at)) => always || at.elapsed() >= PIN_SAVE_EVERY,
            // Not written by this process yet: `pinned` is what the file holds (or nothing).
            None => pinned.as_ref() != Some(&advanced),
        };
        lock(&self.inner).pinned = Some(advanced);
        if due {
            self.flush_pin(0)?;
        }
        Ok(())
    }

    /// Writes the in-memory pin to `identity_file` if it is newer than the file: from
    /// [`Self::check_store`], and before the slot moves onto the reboot lease with the move's
    /// own revision, so the revision on disk when this node goes down covers its slot: a store
    /// restored to a backup taken before that slot existed is caught after the reboot.
    /// `seen` is a revision this store has just answered with (the move's), raised into the pin.
    fn flush_pin(&self, seen: Revision) -> Result<(), CoordError> {
        let (pin, disk) = {
            let mut i = lock(&self.inner);
            if let Some(p) = i.pinned.as_mut() {
                p.revision = p.revision.max(seen);
            }
            (
                i.pinned.clone(),
                i.pin_on_disk.as_ref().map(|(p, _)| p.clone()),
            )
        };
        let Some(pin) = pin else {
            return Ok(());
        };
        if disk.as_ref() == Some(&pin) {
            return Ok(());
        }
        self.save_pin(&pin)?;
        lock(&self.inner).pin_on_disk = Some((pin, tokio::time::Instant::now()));
        Ok(())
    }

    fn load_pin(&self) -> Result<Option<PinnedStore>, CoordError> {
        match &self.cfg.identity_file {
            Some(p) => read_json(p).map_err(|e| CoordError::Corrupt {
                what: p.display().to_string(),
                message: e.to_string(),
            }),
            None => Ok(None),
        }
    }

    fn save_pin(&self, pin: &PinnedStore) -> Result<(), CoordError> {
        let Some(p) = &self.cfg.identity_file else {
            return Ok(());
        };
        if self.cfg.read_only {
            return Ok(());
        }
        write_atomic(p, &to_json(pin, "store identity")?).map_err(|source| CoordError::Io {
            what: format!("persist {}", p.display()),
            source,
        })
    }

    /// What a release gives back: the queue entry (the session's, or the one on the reboot
    /// lease) and the reboot lease, also from `reboot-lease.json` after a restart. Stops keeping
    /// the reboot lease alive. Nothing is forgotten here: a retry after a failure finds it all.
    fn slot_to_release(&self) -> (Vec<String>, Option<RebootLease>) {
        let (key, group_key, reboot, task) = {
            let mut i = lock(&self.inner);
            (
                i.entry.clone(),
                i.group_entry.clone(),
                i.reboot.clone(),
                i.reboot_task.take(),
            )
        };
        if let Some(t) = task {
            t.abort();
        }
        let reboot = reboot.or_else(|| self.cfg.lease_store.load().ok().flatten());
        let entry = key.or_else(|| reboot.as_ref().map(|r| r.key.clone()));
        let group_key = group_key.or_else(|| reboot.as_ref().and_then(|r| r.group_key.clone()));
        (entry.into_iter().chain(group_key).collect(), reboot)
    }

    /// After the entry was deleted: forget it, revoke the reboot lease, remove its file.
    async fn released(
        &self,
        entries: &[String],
        reboot: Option<&RebootLease>,
    ) -> Result<(), CoordError> {
        for k in entries {
            forget_entry(&self.inner, k);
        }
        if let Some(r) = reboot {
            self.kv.lease_revoke(r.lease).await?;
            let mut i = lock(&self.inner);
            if i.reboot.as_ref() == Some(r) {
                i.reboot = None;
            }
        }
        self.cfg.lease_store.remove()
    }

    /// Current queue (for `cluster status`).
    pub async fn queue(&self) -> Result<Vec<KeyValue>, CoordError> {
        Ok(self
            .kv
            .range(
                &self.cfg.keys.slot_prefix(),
                RangeOpts {
                    by_create_revision: true,
                    ..RangeOpts::default()
                },
            )
            .await?
            .kvs)
    }
}

/// Keeps the session lease alive; reports its loss.
async fn keep_session<K: Kv>(
    kv: K,
    id: LeaseId,
    ttl: Duration,
    inner: Arc<Mutex<Inner>>,
    notices: broadcast::Sender<Notice>,
) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(period).await;
        match kv.lease_keep_alive(id).await {
            Ok(_) => {}
            Err(KvError::LeaseNotFound(_)) => {
                let had_entry = {
                    let mut i = lock(&inner);
                    i.session = None;
                    let group = i.group_entry.take().is_some();
                    i.entry.take().is_some() || group
                };
                tracing::warn!(
                    event = "session_lost",
                    lease = format!("{id:x}"),
                    "etcd session lease expired"
                );
                if had_entry {
                    let _ = notices.send(Notice::SlotLost(SlotLoss::new(
                        SlotLossKind::SessionExpired,
                        format!(
                            "session lease {id:x} expired (etcd unreachable for longer than lock_ttl_sec?)"
                        ),
                    )));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(event = "session_keepalive_failed", error = %e, "cannot refresh the etcd session lease; retrying");
            }
        }
    }
}

/// Keeps the reboot lease alive after boot, until released.
async fn keep_reboot_lease<K: Kv>(kv: K, id: LeaseId, notices: broadcast::Sender<Notice>) {
    let mut period = Duration::from_secs(5);
    loop {
        tokio::time::sleep(period).await;
        match kv.lease_keep_alive(id).await {
            Ok(ttl) => {
                period = (ttl / 3).clamp(Duration::from_millis(200), Duration::from_secs(60))
            }
            Err(KvError::LeaseNotFound(_)) => {
                let _ = notices.send(Notice::SlotLost(SlotLoss::new(
                    SlotLossKind::RebootLeaseExpired,
                    format!("reboot lease {id:x} expired"),
                )));
                return;
            }
            Err(e) => tracing::warn!(event = "reboot_lease_keepalive_failed", error = %e),
        }
    }
}

/// Watches the pause key and reports changes; re-watches after errors.
async fn watch_pause<K: Kv>(kv: K, key: String, notices: broadcast::Sender<Notice>) {
    loop {
        let start = match kv.get(&key).await {
            Ok((v, rev)) => {
                let _ = notices.send(Notice::PauseChanged(
                    v.and_then(|kv| pause_reason(&kv.key, &kv.value)),
                ));
                rev + 1
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Ok(mut w) = kv.watch(&key, start).await {
            while let Some(Ok(events)) = w.recv().await {
                for e in events {
                    let state = match e {
                        WatchEvent::Put(kv) if kv.key == key => pause_reason(&kv.key, &kv.value),
                        WatchEvent::Delete { key: k, .. } if k == key => None,
                        _ => continue,
                    };
                    let _ = notices.send(Notice::PauseChanged(state));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn pause_reason(key: &str, v: &[u8]) -> Option<String> {
    // Capped (issue #20): the reason is copied into state.json and every journal record, and a
    // 1 MB value in etcd must not push those over their limits. Raw bytes are cut before the
    // lossy conversion so a huge non-JSON value is never copied whole.
    let cap = crate::text::MAX_COPIED_TEXT;
    let text = match serde_json::from_slice::<PauseRecord>(v) {
        Ok(p) if p.by.is_empty() => crate::text::cap(p.reason, cap),
        Ok(p) => format!(
            "{} (by {} at {})",
            crate::text::cap(p.reason, cap),
            crate::text::cap(p.by, 256),
            crate::text::cap(p.at, 64)
        ),
        Err(e) => {
            // Still a pause (fail closed): anyone who can write the key can pause anyway.
            tracing::warn!(event = "pause_record_invalid", key = %key, error = %e, "the pause key holds no pause record; the cluster counts as paused (`clusterrebootd cluster resume` deletes it)");
            crate::text::cap_bytes(v, cap)
        }
    };
    Some(text)
}

impl From<SlotError> for CoordError {
    fn from(e: SlotError) -> Self {
        match e {
            SlotError::Kv(k) => CoordError::Kv(k),
            SlotError::Lost(k) => CoordError::Lost(format!("queue entry {k} vanished")),
        }
    }
}

impl<K: Kv + Clone> Coordinator for EtcdBackend<K> {
    async fn join_queue(&self, updates: mpsc::Sender<QueueUpdate>) -> Result<(), CoordError> {
        self.check_store().await?;
        if self.cfg.read_only {
            let queue = self.queue().await?;
            let cap = *self.capacity.borrow() as usize;
            if queue.len() >= cap {
                let holders: Vec<String> = queue
                    .iter()
                    .take(cap)
                    .map(|kv| slots::holder_of(kv).node)
                    .collect();
                return Err(CoordError::Busy(format!(
                    "all {cap} reboot slot(s) held by {}",
                    holders.join(", ")
                )));
            }
            if let Some(busy) = self.group_busy().await? {
                return Err(CoordError::Busy(busy));
            }
            return Ok(());
        }
        match self.cfg.group.clone() {
            None => self.join_cluster_only(&updates).await,
            Some(g) => self.join_pools(&g, &updates).await,
        }
    }

    async fn leave_queue(&self) -> Result<(), CoordError> {
        if self.cfg.read_only {
            return Ok(());
        }
        // The entry is forgotten only once it is deleted, so that the retry of a failed call
        // deletes it (a forgotten entry stays on the live session lease and keeps its place).
        let keys: Vec<String> = {
            let i = lock(&self.inner);
            i.entry.iter().chain(&i.group_entry).cloned().collect()
        };
        self.delete_entries(&keys).await?;
        for key in &keys {
            forget_entry(&self.inner, key);
        }
        Ok(())
    }

    async fn release_slot(&self) -> Result<(), CoordError> {
        if self.cfg.read_only {
            return Ok(());
        }
        // As in `leave_queue`, nothing is forgotten before it is done: a retry after a failure
        // finds the entry and the reboot lease again.
        let (entries, reboot) = self.slot_to_release();
        self.delete_entries(&entries).await?;
        self.released(&entries, reboot.as_ref()).await
    }

    async fn move_to_reboot_lease(&self, ttl: Duration) -> Result<(), CoordError> {
        let key = lock(&self.inner)
            .entry
            .clone()
            .ok_or_else(|| CoordError::Lost("no queue entry to move".into()))?;
        // A reload may have lowered max_concurrent_reboots since the slot was granted: only
        // an entry still among the first K may reboot (fail closed). Entries ahead can only
        // leave and new ones queue behind, so the position cannot get worse before the txn.
        let cap = *self.capacity.borrow() as usize;
        // The queue read and the lease grant are independent: one round trip for both. A lease
        // granted for a move that does not happen is revoked (and would expire anyway).
        let (queue, lease) = tokio::join!(self.queue(), self.kv.lease_grant(ttl));
        let lease = lease?;
        let checked = queue.and_then(|queue| match queue.iter().position(|kv| kv.key == key) {
            Some(pos) if pos < cap => Ok(()),
            Some(pos) => Err(CoordError::Lost(format!(
                "queue entry {key} is at position {} but max_concurrent_reboots is now {cap}",
                pos + 1
            ))),
            None => Err(CoordError::Lost(format!(
                "queue entry {key} vanished before the reboot"
            ))),
        });
        // In a group, the group entry moves in the same transaction, which requires it too.
        let group_key = match checked {
            Ok(()) => self.group_entry_to_move().await,
            Err(e) => Err(e),
        };
        let group_key = match group_key {
            Ok(g) => g,
            Err(e) => {
                let _ = self.kv.lease_revoke(lease).await;
                return Err(e);
            }
        };
        let since = self.now_rfc3339();
        let marker =
            serde_json::json!({"node": self.cfg.node, "since": since, "boot_id": self.cfg.boot_id});
        let mut compares = vec![Compare::Version(key.clone(), CmpOp::Greater, 0)];
        let mut ops = vec![
            TxnOp::Put {
                key: key.clone(),
                value: self.value("rebooting").to_bytes(),
                lease,
            },
            TxnOp::Put {
                key: self.cfg.keys.in_progress(&self.cfg.node),
                value: marker.to_string().into_bytes(),
                lease: 0,
            },
        ];
        if let Some(g) = &group_key {
            compares.push(Compare::Version(g.clone(), CmpOp::Greater, 0));
            ops.push(TxnOp::Put {
                key: g.clone(),
                value: self.value("rebooting").to_bytes(),
                lease,
            });
        }
        let r = self.kv.txn(compares, ops, vec![]).await;
        let moved_at = match r {
            Ok(t) if t.succeeded => t.revision,
            Ok(_) => {
                let _ = self.kv.lease_revoke(lease).await;
                return Err(CoordError::Lost(match &group_key {
                    None => format!("queue entry {key} vanished before the reboot"),
                    Some(g) => {
                        format!("queue entry {key} or group entry {g} vanished before the reboot")
                    }
                }));
            }
            Err(e) => {
                let _ = self.kv.lease_revoke(lease).await;
                return Err(e.into());
            }
        };
        let record = RebootLease {
            lease,
            key,
            group_key,
            node: self.cfg.node.clone(),
            boot_id: self.cfg.boot_id.clone(),
            since,
        };
        lock(&self.inner).reboot = Some(record.clone());
        self.flush_pin(moved_at)?;
        self.cfg.lease_store.save(&record)
    }

    async fn reattach_reboot_lease(&self) -> Result<Reattach, CoordError> {
        let record = self.cfg.lease_store.load()?;
        // The node rebooted: an operator's reboot request is fulfilled.
        if let Err(e) = self.kv.delete(&self.cfg.keys.request(&self.cfg.node)).await {
            tracing::warn!(event = "reboot_request_clear_failed", error = %e);
        }
        let Some(record) = record else {
            return Ok(Reattach::Expired);
        };
        match self.kv.lease_keep_alive(record.lease).await {
            Ok(_) => {
                // The entry says so too: a daemon that lost its journal and its lease file
                // learns from etcd that this reboot has happened.
                let mut v = self.value("recovering");
                v.boot_id = self.cfg.boot_id.clone();
                for key in std::iter::once(&record.key).chain(&record.group_key) {
                    if let Err(e) = self
                        .kv
                        .txn(
                            vec![Compare::Version(key.clone(), CmpOp::Greater, 0)],
                            vec![TxnOp::Put {
                                key: key.clone(),
                                value: v.to_bytes(),
                                lease: record.lease,
                            }],
                            vec![],
                        )
                        .await
                    {
                        tracing::warn!(event = "slot_value_update_failed", error = %e);
                    }
                }
                let task = tokio::spawn(keep_reboot_lease(
                    self.kv.clone(),
                    record.lease,
                    self.notices.clone(),
                ));
                let mut i = lock(&self.inner);
                i.entry = Some(record.key.clone());
                i.group_entry = record.group_key.clone();
                i.reboot = Some(record);
                if let Some(old) = i.reboot_task.replace(task) {
                    old.abort();
                }
                Ok(Reattach::Attached)
            }
            Err(KvError::LeaseNotFound(_)) => {
                tracing::warn!(
                    event = "reboot_lease_expired",
                    lease = format!("{:x}", record.lease),
                    "the reboot lease expired while the node was down; the slot was freed (the in-progress marker still blocks peers until recovery)"
                );
                if let Err(e) = self.cfg.lease_store.remove() {
                    tracing::warn!(event = "reboot_lease_forget_failed", store = %self.cfg.lease_store.describe(), error = %e);
                }
                Ok(Reattach::Expired)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn clear_in_progress(&self) -> Result<(), CoordError> {
        if self.cfg.read_only {
            return Ok(());
        }
        self.kv
            .delete(&self.cfg.keys.in_progress(&self.cfg.node))
            .await?;
        Ok(())
    }

    async fn read_cooldown(&self) -> Result<CooldownStatus, CoordError> {
        let key = self.cfg.keys.cooldown();
        let (kv, _) = self.kv.get(&key).await?;
        let Some(kv) = kv else {
            return Ok(CooldownStatus::Clear);
        };
        let rec: CooldownRecord =
            serde_json::from_slice(&kv.value).map_err(|e| CoordError::Corrupt {
                what: key.clone(),
                message: format!("parse cooldown payload: {e}"),
            })?;
        let now = self.cfg.clock.now().as_millisecond();
        if rec
            .started_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|t| t.as_millisecond() > now.saturating_add(60_000))
        {
            tracing::warn!(event = "cooldown_in_future", key = %key, started_at = %crate::text::cap(rec.started_at.clone(), 64), "the cooldown record starts in the future (a clock ahead?); its duration counts from now");
        }
        let remaining = if kv.lease != 0 {
            self.kv.lease_ttl(kv.lease).await?
        } else {
            None
        };
        let until =
            cooldown_until(&rec, now, remaining).map_err(|message| CoordError::Corrupt {
                what: key.clone(),
                message,
            })?;
        if until <= now {
            return Ok(CooldownStatus::Clear);
        }
        Ok(CooldownStatus::Active {
            until: u64::try_from(until).unwrap_or(0),
            by: rec.node,
        })
    }

    async fn start_cooldown(&self, duration: Duration) -> Result<(), CoordError> {
        if duration.is_zero() || self.cfg.read_only {
            return Ok(());
        }
        let lease = self.kv.lease_grant(duration).await?;
        let rec = CooldownRecord {
            node: self.cfg.node.clone(),
            started_at: self.now_rfc3339(),
            duration_sec: duration.as_secs(),
        };
        self.kv
            .put(
                &self.cfg.keys.cooldown(),
                to_json(&rec, "cooldown record")?,
                lease,
            )
            .await?;
        Ok(())
    }

    fn unhealthy_records(&self) -> Vec<HealthRecord> {
        lock(&self.inner).unhealthy.clone()
    }

    async fn cluster_health(&self) -> Result<PolicyVerdict, CoordError> {
        // Every pass checks the store: a restored or replaced one is noticed here (its error
        // wins over the reads'). The four reads are independent: one round trip for all (the
        // post-lock check is on the hand-off's critical path).
        let health_prefix = self.cfg.keys.health_prefix();
        let ip_prefix = self.cfg.keys.in_progress_prefix();
        let range = |prefix: &str| {
            let prefix = prefix.to_string();
            async move {
                self.kv
                    .range(&prefix, RangeOpts::default())
                    .await
                    .map_err(CoordError::from)
            }
        };
        let (store, health, markers, queue) = tokio::join!(
            self.check_store(),
            range(&health_prefix),
            range(&ip_prefix),
            self.queue()
        );
        store?;
        let (health, markers, queue) = (health?, markers?, queue?);
        let stale_after = self.policies.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut facts = ClusterFacts::default();
        for kv in health.kvs {
            match decode_health(&health_prefix, &kv) {
                Ok(r) => {
                    if kv.value.len() > MAX_RECORD_BYTES {
                        tracing::warn!(event = "health_record_oversized", key = %kv.key, bytes = kv.value.len(), "a cluster_health record is larger than {MAX_RECORD_BYTES} bytes; its text is cut");
                    }
                    let now = self.cfg.clock.now();
                    let ahead = r
                        .reported_at
                        .parse::<jiff::Timestamp>()
                        .map(|t| t.duration_since(now).unsigned_abs() > stale_after && t > now);
                    if !ahead.is_ok_and(|a| !a) {
                        tracing::warn!(event = "health_record_time_invalid", key = %kv.key, reported_at = %crate::text::cap(r.reported_at.clone(), 64), "a cluster_health record's reported_at is unreadable or in the future; it counts as not healthy");
                    }
                    facts.records.push(r)
                }
                Err((node, why)) => {
                    tracing::warn!(event = "health_record_invalid", key = %kv.key, error = %why, "a cluster_health record cannot be read; it counts as not healthy");
                    if !node.is_empty() {
                        facts.unreadable.push((node, why));
                    }
                }
            }
        }
        lock(&self.inner).unhealthy = facts
            .records
            .iter()
            .filter(|r| !r.healthy && r.node.trim() != self.cfg.node)
            .cloned()
            .collect();
        facts.in_progress = markers
            .kvs
            .iter()
            .map(|kv| {
                let node = kv.key[ip_prefix.len().min(kv.key.len())..].to_string();
                // Whatever its value, a marker counts (unplanned trouble blocks); one that is
                // not a daemon's marker is named so that an operator can find it.
                let since = match decode_marker(&node, &kv.value) {
                    Ok(since) => Some(since),
                    Err(why) => {
                        tracing::warn!(event = "in_progress_marker_invalid", key = %kv.key, error = %why, "an in-progress marker is not a daemon's record; it still counts as a reboot in progress (`clusterrebootd cluster forget NODE` removes it)");
                        None
                    }
                };
                InProgress { node, since }
            })
            .collect();
        // Slot holders: the first K entries. Those ahead of our own entry (all of them when we
        // have none) are counted as down whatever their records say.
        let cap = *self.capacity.borrow() as usize;
        let mine = lock(&self.inner).entry.clone();
        let my_index = mine
            .as_ref()
            .and_then(|k| queue.iter().position(|kv| &kv.key == k));
        for (i, kv) in queue.iter().take(cap).enumerate() {
            let node = slots::holder_of(kv).node;
            if node == self.cfg.node || Some(i) == my_index {
                continue;
            }
            if my_index.is_none_or(|m| i < m) {
                facts.ahead.push(node.clone());
            }
            facts.holders.push(node);
        }
        let (policies, stale_after) = self
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = self.cfg.clock.now();
        let cluster = policy::evaluate(&self.cfg.node, &facts, &policies, stale_after, now);
        Ok(match self.group_verdict(&facts, stale_after, now).await? {
            Some(group) => super::group_policy::combine(cluster, group),
            None => cluster,
        })
    }

    async fn reconcile(&self) -> Result<Option<super::UnfinishedReboot>, CoordError> {
        use super::{UnfinishedReboot, rfc3339_ms};
        if self.cfg.read_only {
            return Ok(None);
        }
        let file = match self.cfg.lease_store.load() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(event = "reboot_lease_unreadable", error = %e, "the persisted reboot lease cannot be read; looking for this node's slot in etcd instead");
                None
            }
        };
        let from_file = |f: &RebootLease| UnfinishedReboot {
            from_boot: (!f.boot_id.is_empty()).then(|| f.boot_id.clone()),
            since: rfc3339_ms(&f.since),
            rebooted: false,
        };
        let read = async {
            // A store that is not the pinned one is not ours to clean up: local facts only.
            self.check_store().await?;
            let queue = self.queue().await?;
            let groups = self
                .my_group_entries(file.as_ref().is_some_and(|f| f.group_key.is_some()))
                .await?;
            let (marker, _) = self
                .kv
                .get(&self.cfg.keys.in_progress(&self.cfg.node))
                .await?;
            Ok::<_, CoordError>((queue, groups, marker))
        };
        let (queue, groups, marker) = match read.await {
            Ok(r) => r,
            Err(e) => {
                return match (&file, &e) {
                    (Some(f), _) => Ok(Some(from_file(f))),
                    (None, CoordError::StoreChanged(why)) => {
                        tracing::error!(event = "store_changed", "{why}");
                        Ok(None)
                    }
                    (None, _) => Err(e),
                };
            }
        };
        let of_this_node = |entries: Vec<KeyValue>| -> Vec<(KeyValue, SlotValue)> {
            entries
                .into_iter()
                .filter_map(|kv| {
                    let v = serde_json::from_slice::<SlotValue>(&kv.value).ok()?;
                    (v.node == self.cfg.node).then_some((kv, v))
                })
                .collect()
        };
        let mine = of_this_node(queue);
        let mine_in_groups = of_this_node(groups);
        let on_reboot_lease = mine.iter().find(|(kv, v)| {
            kv.lease != 0
                && (v.state == "rebooting" || v.state == "recovering")
                && file.as_ref().is_none_or(|f| f.key == kv.key)
        });
        let mut lease = file.clone();
        if lease.is_none()
            && let Some((kv, v)) = on_reboot_lease
        {
            // The group entry moved onto the same lease in the same transaction.
            let group_key = mine_in_groups
                .iter()
                .find(|(g, _)| g.lease == kv.lease)
                .map(|(g, _)| g.key.clone());
            let rebuilt = RebootLease {
                lease: kv.lease,
                key: kv.key.clone(),
                group_key,
                node: self.cfg.node.clone(),
                boot_id: v.boot_id.clone(),
                since: v.acquired_at.clone(),
            };
            tracing::warn!(event = "reboot_lease_rebuilt", key = %kv.key, "the persisted reboot lease was missing; rebuilt it from this node's slot in etcd");
            if let Err(e) = self.cfg.lease_store.save(&rebuilt) {
                tracing::warn!(event = "reboot_lease_persist_failed", error = %e);
            }
            lease = Some(rebuilt);
        }
        // Entries an earlier process of this daemon left on this boot: it is dead (the state
        // directory lock says so), and a new entry beside them would be a second slot.
        for (kv, v) in mine.iter().chain(&mine_in_groups) {
            let ours_now = lease
                .as_ref()
                .is_some_and(|l| l.key == kv.key || l.group_key.as_ref() == Some(&kv.key));
            if !ours_now && v.boot_id == self.cfg.boot_id {
                self.kv.delete(&kv.key).await?;
                tracing::warn!(event = "stale_queue_entry_removed", key = %kv.key, state = %v.state, "removed a queue entry left by an earlier process of this daemon");
            } else if !ours_now {
                tracing::warn!(event = "queue_entry_of_this_node", key = %kv.key, boot_id = %crate::text::cap(v.boot_id.clone(), 64), "a queue entry names this node but is not this process's (another boot, or written by someone else); it keeps its place until its lease ends or it is removed (`clusterrebootd cluster forget --key ENTRY`)");
            }
        }
        // This node's marker counts as an unfinished reboot whether or not it can be read
        // (found by fuzzing): an unreadable value must not make the node forget it.
        let marker = marker.map(|kv| {
            if let Err(why) = decode_marker(&self.cfg.node, &kv.value) {
                tracing::warn!(event = "in_progress_marker_invalid", key = %kv.key, error = %why, "this node's in-progress marker is not a daemon's record; it still counts as an unfinished reboot");
            }
            if kv.value.len() > MAX_RECORD_BYTES {
                return serde_json::Value::Null;
            }
            serde_json::from_slice::<serde_json::Value>(&kv.value)
                .unwrap_or(serde_json::Value::Null)
        });
        // Re-attached after a boot: the reboot has happened (the entry says `recovering`).
        let rebooted = on_reboot_lease.is_some_and(|(_, v)| v.state == "recovering");
        Ok(match (&lease, &marker) {
            (None, None) => None,
            _ => {
                let from_boot = lease
                    .as_ref()
                    .map(|l| l.boot_id.clone())
                    .filter(|b| !b.is_empty())
                    .or_else(|| {
                        marker
                            .as_ref()
                            .and_then(|m| m["boot_id"].as_str().map(str::to_string))
                    })
                    .filter(|b| !b.is_empty());
                let since = lease
                    .as_ref()
                    .and_then(|l| rfc3339_ms(&l.since))
                    .or_else(|| {
                        marker
                            .as_ref()
                            .and_then(|m| m["since"].as_str().and_then(rfc3339_ms))
                    });
                Some(UnfinishedReboot {
                    from_boot,
                    since,
                    rebooted,
                })
            }
        })
    }

    async fn await_cluster_change(&self) {
        loop {
            match self.watch_cluster_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(event = "cluster_watch_failed", error = %e, "re-establishing the cluster watch");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn complete_recovery(&self, cooldown: Duration) -> Result<(), CoordError> {
        if self.cfg.read_only {
            return Ok(());
        }
        let (entries, reboot) = self.slot_to_release();
        let now = self.now_rfc3339();
        let record = HealthRecord {
            node: self.cfg.node.clone(),
            healthy: true,
            stage: "post-reboot".into(),
            reason: String::new(),
            reported_at: now.clone(),
            group: self.cfg.group.as_ref().map(|g| g.name.clone()),
        };
        let mut ops = vec![
            TxnOp::Delete(self.cfg.keys.in_progress(&self.cfg.node)),
            TxnOp::Put {
                key: self.cfg.keys.health(&self.cfg.node),
                value: to_json(&record, "health record")?,
                lease: 0,
            },
        ];
        if !cooldown.is_zero() {
            let lease = self.kv.lease_grant(cooldown).await?;
            let rec = CooldownRecord {
                node: self.cfg.node.clone(),
                started_at: now,
                duration_sec: cooldown.as_secs(),
            };
            ops.push(TxnOp::Put {
                key: self.cfg.keys.cooldown(),
                value: to_json(&rec, "cooldown record")?,
                lease,
            });
        }
        for k in &entries {
            ops.push(TxnOp::Delete(k.clone()));
        }
        self.kv.txn(vec![], ops, vec![]).await?;
        self.released(&entries, reboot.as_ref()).await
    }

    async fn publish_health(&self, mut record: HealthRecord) -> Result<(), CoordError> {
        if self.cfg.read_only {
            return Ok(());
        }
        // Peers read the group from the record to evaluate `group_policies` among its members.
        record.group = self.cfg.group.as_ref().map(|g| g.name.clone());
        self.kv
            .put(
                &self.cfg.keys.health(&self.cfg.node),
                to_json(&record, "health record")?,
                0,
            )
            .await?;
        Ok(())
    }

    async fn publish_node_state(
        &self,
        record: &super::node_state::NodeState,
    ) -> Result<bool, CoordError> {
        if self.cfg.read_only {
            return Ok(false);
        }
        let bytes = to_json(record, "node state")?;
        // While rebooting, the record rides on the reboot lease: it outlives the daemon's
        // shutdown and shows the node as rebooting until it is back (or the lease expires).
        let current = {
            let i = lock(&self.inner);
            let reboot = i.reboot.as_ref().map(|r| r.lease);
            match (record.state == "Rebooting", reboot) {
                (true, Some(l)) => Some(l),
                _ => i.session,
            }
        };
        let unchanged = {
            let i = lock(&self.inner);
            matches!((&i.node_state, current), (Some((b, l)), Some(c)) if *b == bytes && *l == c)
        };
        if unchanged {
            return Ok(false);
        }
        self.check_store_for_view().await?;
        let lease = match current {
            Some(l) => l,
            None => self.session().await?,
        };
        self.kv
            .put(
                &self.cfg.keys.node_state(&self.cfg.node),
                bytes.clone(),
                lease,
            )
            .await?;
        lock(&self.inner).node_state = Some((bytes, lease));
        Ok(true)
    }

    async fn fleet_view(&self) -> Result<super::fleet_view::FleetView, CoordError> {
        let stale_after = self.policies.lock().unwrap_or_else(|p| p.into_inner()).1;
        let capacity = *self.capacity.borrow();
        let group_capacity = *self.group_capacity.borrow();
        let own = self
            .cfg
            .group
            .as_ref()
            .map(|g| (g.name.as_str(), group_capacity));
        Ok(
            super::fleet_view::read_with_group(
                &self.kv,
                &self.cfg.keys,
                capacity,
                own,
                stale_after,
            )
            .await?,
        )
    }

    async fn pause(&self) -> Result<Option<String>, CoordError> {
        let (kv, _) = self.kv.get(&self.cfg.keys.pause()).await?;
        Ok(kv.and_then(|kv| pause_reason(&kv.key, &kv.value)))
    }

    async fn reboot_requested(&self) -> Result<bool, CoordError> {
        let (kv, _) = self.kv.get(&self.cfg.keys.request(&self.cfg.node)).await?;
        let Some(kv) = kv else {
            return Ok(false);
        };
        // The request is the only thing that makes a node without a reboot-required detector
        // reboot: a value that is not `cluster request-reboot`'s record is no request (fail
        // closed), with a warning naming the key (issue #20, the hostile-etcd table).
        match decode_request(&kv.value) {
            Ok(()) => Ok(true),
            Err(why) => {
                tracing::warn!(event = "reboot_request_invalid", key = %kv.key, error = %why, "this node's reboot request cannot be read; counting it as not requested (remove it, or write it again with `clusterrebootd cluster request-reboot`)");
                Ok(false)
            }
        }
    }

    fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    fn set_capacity(&self, k: u32) {
        EtcdBackend::set_capacity(self, k);
    }

    fn set_group_capacity(&self, k: u32) {
        EtcdBackend::set_group_capacity(self, k);
    }

    fn set_policies(&self, policies: Policies, stale_after: Duration) {
        *self.policies.lock().unwrap_or_else(|p| p.into_inner()) = (policies, stale_after);
    }

    fn set_group_policies(&self, policies: Policies) {
        *self
            .group_policies
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = policies;
    }
}

/// Serialises a value written to etcd; an error is an error, never an empty value.
fn to_json<T: Serialize>(v: &T, what: &str) -> Result<Vec<u8>, CoordError> {
    serde_json::to_vec(v).map_err(|e| CoordError::Corrupt {
        what: what.to_string(),
        message: format!("cannot serialise: {e}"),
    })
}

/// The longest cooldown a record may ask for; anything longer is corrupt (fail closed).
pub const MAX_COOLDOWN_SEC: u64 = 366 * 24 * 3600;

/// When the cooldown `rec` ends, in ms since the epoch, given `now` and the remaining TTL of
/// its lease (if it has a live one). Never earlier than the record's own start + duration, so
/// the second-granular lease TTL cannot shorten it; a start in the future counts as now (a
/// record from a clock far ahead cannot park the node for years). Checked arithmetic: a value
/// out of range is an error naming it, never a wrap-around that reads as "clear".
pub fn cooldown_until(
    rec: &CooldownRecord,
    now: i64,
    remaining: Option<Duration>,
) -> Result<i64, String> {
    if rec.duration_sec > MAX_COOLDOWN_SEC {
        return Err(format!(
            "duration_sec {} is longer than the maximum of {MAX_COOLDOWN_SEC} s",
            rec.duration_sec
        ));
    }
    let started: jiff::Timestamp = rec
        .started_at
        .parse()
        .map_err(|e| format!("parse cooldown start timestamp {:?}: {e}", rec.started_at))?;
    let duration_ms = i64::try_from(rec.duration_sec)
        .ok()
        .and_then(|d| d.checked_mul(1000))
        .ok_or_else(|| format!("duration_sec {} out of range", rec.duration_sec))?;
    let by_record = started
        .as_millisecond()
        .min(now)
        .checked_add(duration_ms)
        .ok_or_else(|| format!("cooldown end out of range ({})", rec.started_at))?;
    let by_lease = remaining
        .and_then(|r| i64::try_from(r.as_millis()).ok())
        .map(|r| now.saturating_add(r.min(duration_ms)))
        .unwrap_or(i64::MIN);
    Ok(by_record.max(by_lease))
}

/// Reads one `cluster_health/<node>` record. The key names the node: a body naming another
/// node is refused (it could otherwise speak for that node). Errors carry the key's node.
pub fn decode_health(prefix: &str, kv: &KeyValue) -> Result<HealthRecord, (String, String)> {
    let node = kv.key.get(prefix.len()..).unwrap_or_default().to_string();
    if node.is_empty() || node.contains('/') {
        return Err((String::new(), format!("unexpected key {}", kv.key)));
    }
    let mut r = serde_json::from_slice::<HealthRecord>(&kv.value)
        .map_err(|e| (node.clone(), format!("not a health record: {e}")))?;
    // Text others wrote is copied into reasons, the journal and state.json: capped. An
    // oversized record is not counted healthy; one saying unhealthy still says so (either
    // way it can only hold reboots back).
    if kv.value.len() > MAX_RECORD_BYTES && r.healthy {
        return Err((
            node,
            format!(
                "value is {} bytes, more than the {MAX_RECORD_BYTES}-byte limit",
                kv.value.len()
            ),
        ));
    }
    r.reason = crate::text::cap(std::mem::take(&mut r.reason), 1024);
    r.stage = crate::text::cap(std::mem::take(&mut r.stage), 64);
    r.reported_at = crate::text::cap(std::mem::take(&mut r.reported_at), 64);
    r.group = r.group.take().map(|g| crate::text::cap(g, 64));
    if r.node.is_empty() {
        r.node = node.clone();
    } else if r.node != node {
        return Err((
            node.clone(),
            format!(
                "record under {} claims to be node {:?}",
                kv.key,
                crate::text::cap(r.node, 256)
            ),
        ));
    }
    Ok(r)
}

/// Reads one `reboot_in_progress/<node>` marker `{"node","since","boot_id"}`: its `since`, or
/// why the value is not one (too large, not JSON, another node's name, no `since`). A marker
/// counts whatever its value says; this only decides what is shown and logged.
pub fn decode_marker(node: &str, v: &[u8]) -> Result<String, String> {
    if v.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "value is {} bytes, more than the {MAX_RECORD_BYTES}-byte limit",
            v.len()
        ));
    }
    let j: serde_json::Value =
        serde_json::from_slice(v).map_err(|e| format!("not an in-progress marker: {e}"))?;
    match j["node"].as_str() {
        Some(n) if n == node => {}
        Some(n) => {
            return Err(format!(
                "the marker of {node:?} claims to be node {:?}",
                crate::text::cap(n.to_string(), 256)
            ));
        }
        None => return Err("not an in-progress marker: no node".into()),
    }
    j["since"]
        .as_str()
        .filter(|t| t.parse::<jiff::Timestamp>().is_ok())
        .map(|t| crate::text::cap(t.to_string(), 64))
        .ok_or_else(|| "not an in-progress marker: no readable since".into())
}

#[cfg(test)]
mod cooldown_tests {
    use super::*;

    fn rec(started_at: &str, duration_sec: u64) -> CooldownRecord {
        CooldownRecord {
            node: "n1".into(),
            started_at: started_at.into(),
            duration_sec,
        }
    }

    const START: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z
    const START_TEXT: &str = "2027-01-15T08:00:00Z";

    #[test]
    fn never_shorter_than_configured_even_with_a_whole_second_ttl() {
        // 19.6 s after the start of a 20 s cooldown etcd reports 0 s left (whole seconds): the
        // record still says 20 s, and that wins (it ran 19.04 s before).
        let now = START + 19_600;
        let until = cooldown_until(&rec(START_TEXT, 20), now, Some(Duration::ZERO)).expect("ok");
        assert_eq!(until, START + 20_000);
        // A lease that outlives the record's arithmetic (clock skew) is honoured too.
        let until = cooldown_until(
            &rec(START_TEXT, 20),
            START + 1_000,
            Some(Duration::from_secs(20)),
        )
        .expect("ok");
        assert_eq!(until, START + 21_000);
    }

    #[test]
    fn absurd_values_are_corrupt_not_clear() {
        let e = cooldown_until(&rec(START_TEXT, 18_446_744_073_709_551), START, None)
            .expect_err("overflowing duration");
        assert!(e.contains("duration_sec"), "{e}");
        let e = cooldown_until(&rec("yesterday", 60), START, None).expect_err("bad time");
        assert!(e.contains("yesterday"), "{e}");
    }

    #[test]
    fn a_start_in_the_future_counts_as_now() {
        // started_at in 9999: the wait is the duration from now, not until 9999.
        let until = cooldown_until(&rec("9999-01-01T00:00:00Z", 600), START, None).expect("ok");
        assert_eq!(until, START + 600_000);
    }
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;
    use crate::coord::memkv::MemKv;

    #[tokio::test]
    async fn an_unreadable_own_marker_is_still_an_unfinished_reboot() {
        let kv = MemKv::new();
        let keys = Keys::new("/prod", "/lock");
        let cfg = EtcdConfig::new(
            "n1",
            "boot-2",
            keys.clone(),
            1,
            Duration::from_secs(30),
            LeaseStore::Memory(Default::default()),
        );
        let backend = EtcdBackend::new(kv.clone(), cfg);
        assert_eq!(backend.reconcile().await.expect("reconcile"), None);
        kv.put(&keys.in_progress("n1"), b"not json".to_vec(), 0)
            .await
            .expect("put");
        let found = backend.reconcile().await.expect("reconcile");
        assert_eq!(
            found,
            Some(super::super::UnfinishedReboot {
                from_boot: None,
                since: None,
                rebooted: false,
            })
        );
    }
}

#[cfg(test)]
mod hostile_value_tests {
    use super::*;
    use crate::coord::memkv::MemKv;

    /// Issue #20, the hostile-etcd table: the reboot request is the only thing that makes a
    /// node without a reboot-required detector reboot, so only `cluster request-reboot`'s
    /// record counts; garbage, an empty or an oversized value is no request.
    #[tokio::test]
    async fn only_a_readable_reboot_request_is_one() {
        let kv = MemKv::new();
        let keys = Keys::new("/prod", "/lock");
        let cfg = EtcdConfig::new(
            "n1",
            "boot-1",
            keys.clone(),
            1,
            Duration::from_secs(30),
            LeaseStore::Memory(Default::default()),
        );
        let backend = EtcdBackend::new(kv.clone(), cfg);
        let big = format!(r#"{{"by":"{}","at":"now"}}"#, "x".repeat(MAX_RECORD_BYTES));
        for value in [
            &b"not json"[..],
            b"",
            br#"{"by":5,"at":[]}"#,
            br#"{}"#,
            big.as_bytes(),
        ] {
            kv.put(&keys.request("n1"), value.to_vec(), 0)
                .await
                .expect("put");
            assert!(
                !backend.reboot_requested().await.expect("read"),
                "{:?} counted as a request",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            );
        }
        kv.put(
            &keys.request("n1"),
            br#"{"by":"ops@host","at":"2026-12-07T00:00:00Z"}"#.to_vec(),
            0,
        )
        .await
        .expect("put");
        assert!(backend.reboot_requested().await.expect("read"));
    }

    /// Text others wrote is capped before it is copied anywhere; an oversized record that
    /// claims healthy is not counted, one that says unhealthy still does.
    #[test]
    fn health_records_are_capped_and_oversized_healthy_ones_refused() {
        let kv = |value: String| KeyValue {
            key: "/cluster_health/n2".into(),
            value: value.into_bytes(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        };
        let reason = "r".repeat(MAX_RECORD_BYTES);
        let r = decode_health(
            "/cluster_health/",
            &kv(format!(
                r#"{{"node":"n2","healthy":false,"reason":"{reason}","reported_at":"x"}}"#
            )),
        )
        .expect("an unhealthy record still counts");
        assert!(!r.healthy && r.reason.len() < 2048, "{}", r.reason.len());
        let e = decode_health(
            "/cluster_health/",
            &kv(format!(
                r#"{{"node":"n2","healthy":true,"reason":"{reason}","reported_at":"x"}}"#
            )),
        )
        .expect_err("an oversized healthy record is refused");
        assert!(e.1.contains("byte limit"), "{e:?}");
    }

    /// Issue #16: the optional `group` is read (and capped); a record without it (a Go peer,
    /// a node without a group) has none, and one with a field nobody knows still decodes.
    #[test]
    fn health_records_carry_an_optional_group() {
        let kv = |value: &str| KeyValue {
            key: "/cluster_health/n2".into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        };
        let go = r#"{"node":"n2","healthy":true,"reported_at":"2026-12-07T00:00:00Z"}"#;
        let r = decode_health("/cluster_health/", &kv(go)).expect("a Go record");
        assert_eq!(r.group, None);
        let r = decode_health(
            "/cluster_health/",
            &kv(r#"{"node":"n2","healthy":true,"reported_at":"x","group":"db","future":1}"#),
        )
        .expect("a record with a group and an unknown field");
        assert_eq!(r.group.as_deref(), Some("db"));
        let long = format!(
            r#"{{"node":"n2","healthy":true,"reported_at":"x","group":"{}"}}"#,
            "g".repeat(5000)
        );
        let r = decode_health("/cluster_health/", &kv(&long)).expect("decodes");
        assert!(
            r.group
                .is_some_and(|g| g.len() < 128 && g.contains("truncated"))
        );
        // Written: only with a group, so a daemon without one writes the Go record.
        let rec = HealthRecord {
            node: "n2".into(),
            healthy: true,
            stage: String::new(),
            reason: String::new(),
            reported_at: "2026-12-07T00:00:00Z".into(),
            group: None,
        };
        assert_eq!(serde_json::to_string(&rec).expect("json"), go);
    }

    #[test]
    fn markers_that_are_not_a_daemons_are_named() {
        assert!(decode_marker("n2", br#"{"node":"n2","since":"2026-12-07T00:00:00Z"}"#).is_ok());
        for v in [
            &b"garbage"[..],
            br#"{"node":"n3","since":"2026-12-07T00:00:00Z"}"#,
            br#"{"node":"n2","since":5}"#,
        ] {
            assert!(decode_marker("n2", v).is_err(), "{v:?}");
        }
    }
}
