//! Reboot groups (issue #16): a node in a group needs a slot in its group's pool **and** one in
//! the cluster pool, and holds both through the reboot like the single slot of a node without a
//! group.
//!
//! - **Keys.** Group entries live under `<ns>/reboot_group/<group>/<lease-hex>`, on the same
//!   session lease as the cluster entry — never under `<ns><lock_key>/`, where Go's mutex (and
//!   [`slots::wait_for_slot`]) would count them as cluster-pool entries. Without a group nothing of
//!   this module runs: the keys and calls are exactly those of a daemon without groups.
//! - **Order: group pool first, then the cluster pool.** A node creates its cluster entry only
//!   once it holds its group slot. No deadlock: a node waiting for a group slot holds nothing;
//!   a node waiting in the cluster queue holds only its group slot, and everyone ahead of it in
//!   the cluster pool holds both slots and waits for no pool any more. The wait-for relation
//!   therefore always points from "holds less" to "holds both", so it has no cycle. It also
//!   wastes no cluster slot: two nodes of one group never fill the cluster pool while one of
//!   them waits for the group (which cluster-first would allow). docs/ARCHITECTURE.md has the
//!   argument in full.
//! - **Both or none.** The move onto the reboot lease requires both entries in one transaction;
//!   release, leave and `complete_recovery` delete both in one transaction.

use std::time::Duration;

use tokio::sync::mpsc;

use super::super::group_policy::{self, GroupScope};
use super::super::kv::*;
use super::super::policy::ClusterFacts;
use super::super::slots::{self, SlotError};
use super::super::{CoordError, QueueUpdate};
use super::{EtcdBackend, lock};
use crate::fsm::PolicyVerdict;

/// A node's group pool: its name and its number of slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPool {
    /// Group name (validated: `[A-Za-z0-9._-]`).
    pub name: String,
    /// Slots in the group's pool (≥ 1).
    pub capacity: u32,
}

/// In which order a node in a group takes its two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcquireOrder {
    /// The group pool, then the cluster pool: the daemon's one order (deadlock-free, see the
    /// module doc).
    #[default]
    GroupFirst,
    /// The cluster pool, then the group pool. Deadlock-free on its own too, but it can fill the
    /// cluster pool with nodes waiting for their group; **mixed** with `GroupFirst` it
    /// deadlocks (A holds the cluster slot and waits for the group slot B holds, B waits for
    /// the cluster slot). Only the simulator's deadlock test uses it, to prove that the
    /// liveness check catches that.
    ClusterFirst,
}

impl<K: Kv + Clone> EtcdBackend<K> {
    /// Creates `key_of(session)` on the session lease; a lease that is gone (expired unnoticed,
    /// or an accepted new store never had it) starts a new session once. The key is
    /// remembered (as the group entry when `is_group`) **before** it is created, so that a join
    /// cancelled right after the create still leaves (deletes) it.
    async fn create_on_session(
        &self,
        key_of: impl Fn(LeaseId) -> String,
        is_group: bool,
    ) -> Result<(LeaseId, String), CoordError> {
        let lease = self.session().await?;
        let key = key_of(lease);
        self.remember(is_group, &key);
        match slots::create_entry(&self.kv, &key, &self.value("waiting"), lease).await {
            Ok(_) => Ok((lease, key)),
            Err(SlotError::Kv(KvError::LeaseNotFound(_))) => {
                {
                    let mut i = lock(&self.inner);
                    i.session = None;
                    if let Some(t) = i.session_task.take() {
                        t.abort();
                    }
                }
                let lease = self.session().await?;
                let key = key_of(lease);
                self.remember(is_group, &key);
                slots::create_entry(&self.kv, &key, &self.value("waiting"), lease).await?;
                Ok((lease, key))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `join_queue` without a group: today's single cluster entry.
    pub(super) async fn join_cluster_only(
        &self,
        updates: &mpsc::Sender<QueueUpdate>,
    ) -> Result<(), CoordError> {
        // Remembered before it is created: a join cancelled while the create is in flight
        // (committed, answer not yet read) still leaves an entry that `leave_queue` deletes,
        // instead of one that keeps its place on the live session lease.
        let (lease, key) = self
            .create_on_session(|l| self.cfg.keys.slot_entry(l), false)
            .await?;
        self.wait_in(None, &key, updates).await?;
        // Mark it held (same lease, same key: the queue position is kept).
        if let Err(e) = self
            .kv
            .put(&key, self.value("held").to_bytes(), lease)
            .await
        {
            tracing::warn!(event = "slot_value_update_failed", error = %e);
        }
        Ok(())
    }

    /// `join_queue` in a group: both pools, in [`EtcdConfig::acquire_order`], both entries on
    /// the session lease. Resolves once both are held.
    ///
    /// [`EtcdConfig::acquire_order`]: super::EtcdConfig::acquire_order
    pub(super) async fn join_pools(
        &self,
        group: &GroupPool,
        updates: &mpsc::Sender<QueueUpdate>,
    ) -> Result<(), CoordError> {
        let keys = &self.cfg.keys;
        let group_key = |l| keys.group_entry(&group.name, l);
        let cluster_key = |l| keys.slot_entry(l);
        let first_is_group = self.cfg.acquire_order == AcquireOrder::GroupFirst;
        let (lease, first) = if first_is_group {
            self.create_on_session(group_key, true).await?
        } else {
            self.create_on_session(cluster_key, false).await?
        };
        let first_pool = first_is_group.then_some(group.name.as_str());
        self.wait_in(first_pool, &first, updates).await?;
        // The second entry on the same lease: a lease that is gone now took the first entry
        // with it, so there is no new session here (the join fails closed and is retried).
        let second = if first_is_group {
            cluster_key(lease)
        } else {
            group_key(lease)
        };
        let second_pool = (!first_is_group).then_some(group.name.as_str());
        self.remember(second_pool.is_some(), &second);
        slots::create_entry(&self.kv, &second, &self.value("waiting"), lease).await?;
        self.wait_in(second_pool, &second, updates).await?;
        // Both held: mark them, in one transaction that requires both (a first entry deleted
        // meanwhile, by an operator, is a lost slot, never a recreated one).
        let held = self.value("held").to_bytes();
        let r = self
            .kv
            .txn(
                vec![
                    Compare::Version(first.clone(), CmpOp::Greater, 0),
                    Compare::Version(second.clone(), CmpOp::Greater, 0),
                ],
                [&first, &second]
                    .into_iter()
                    .map(|k| TxnOp::Put {
                        key: k.clone(),
                        value: held.clone(),
                        lease,
                    })
                    .collect(),
                vec![],
            )
            .await?;
        if !r.succeeded {
            return Err(CoordError::Lost(format!(
                "queue entry {first} vanished while {second} waited"
            )));
        }
        Ok(())
    }

    fn remember(&self, is_group: bool, key: &str) {
        let mut i = lock(&self.inner);
        if is_group {
            i.group_entry = Some(key.to_string());
        } else {
            i.entry = Some(key.to_string());
        }
    }

    /// Waits until `key` holds a slot of `pool` (`None` = the cluster pool).
    async fn wait_in(
        &self,
        pool: Option<&str>,
        key: &str,
        updates: &mpsc::Sender<QueueUpdate>,
    ) -> Result<(), CoordError> {
        let (prefix, mut cap) = match pool {
            None => (self.cfg.keys.slot_prefix(), self.capacity.subscribe()),
            Some(g) => (
                self.cfg.keys.group_prefix(g),
                self.group_capacity.subscribe(),
            ),
        };
        slots::wait_for_slot(&self.kv, &prefix, key, &mut cap, updates, pool).await?;
        Ok(())
    }

    /// `status` (read only): a full group pool is unavailable like a full cluster pool.
    pub(super) async fn group_busy(&self) -> Result<Option<String>, CoordError> {
        let Some(g) = &self.cfg.group else {
            return Ok(None);
        };
        let entries = self
            .pool_entries(&self.cfg.keys.group_prefix(&g.name))
            .await?;
        let cap = *self.group_capacity.borrow() as usize;
        if entries.len() < cap {
            return Ok(None);
        }
        let holders: Vec<String> = entries
            .iter()
            .take(cap)
            .map(|kv| slots::holder_of(kv).node)
            .collect();
        Ok(Some(format!(
            "all {cap} slot(s) of reboot group {} held by {}",
            g.name,
            holders.join(", ")
        )))
    }

    /// Every entry under `prefix`, in queue order.
    pub(super) async fn pool_entries(&self, prefix: &str) -> Result<Vec<KeyValue>, CoordError> {
        Ok(self
            .kv
            .range(
                prefix,
                RangeOpts {
                    by_create_revision: true,
                    ..RangeOpts::default()
                },
            )
            .await?
            .kvs)
    }

    /// Before the move onto the reboot lease: the group entry (if any) must still be among the
    /// first K of its pool (a reload may have lowered K). Returns the key to move with the
    /// cluster entry.
    pub(super) async fn group_entry_to_move(&self) -> Result<Option<String>, CoordError> {
        let Some(g) = &self.cfg.group else {
            return Ok(None);
        };
        let key = lock(&self.inner)
            .group_entry
            .clone()
            .ok_or_else(|| CoordError::Lost(format!("no entry in reboot group {}", g.name)))?;
        let cap = *self.group_capacity.borrow() as usize;
        let entries = self
            .pool_entries(&self.cfg.keys.group_prefix(&g.name))
            .await?;
        match entries.iter().position(|kv| kv.key == key) {
            Some(pos) if pos < cap => Ok(Some(key)),
            Some(pos) => Err(CoordError::Lost(format!(
                "entry {key} of reboot group {} is at position {} but group_max_concurrent_reboots is now {cap}",
                g.name,
                pos + 1
            ))),
            None => Err(CoordError::Lost(format!(
                "entry {key} of reboot group {} vanished before the reboot",
                g.name
            ))),
        }
    }

    /// `group_policies` among the members of this node's group (issue #16), or `None` without
    /// a group or without a threshold (then nothing more is read). The group's pool is read for
    /// its members: a node that queued or holds there is a member even before its first
    /// health record names the group.
    pub(super) async fn group_verdict(
        &self,
        facts: &ClusterFacts,
        stale_after: Duration,
        now: jiff::Timestamp,
    ) -> Result<Option<PolicyVerdict>, CoordError> {
        let Some(g) = &self.cfg.group else {
            return Ok(None);
        };
        let policies = self
            .group_policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !group_policy::has_thresholds(&policies) {
            return Ok(None);
        }
        let pool_members: Vec<String> = self
            .pool_entries(&self.cfg.keys.group_prefix(&g.name))
            .await?
            .iter()
            .map(|kv| slots::holder_of(kv).node)
            .filter(|n| !n.is_empty())
            .collect();
        let scope = GroupScope {
            name: &g.name,
            pool_members: &pool_members,
            policies: &policies,
        };
        Ok(Some(group_policy::evaluate(
            &self.cfg.node,
            facts,
            &scope,
            stale_after,
            now,
        )))
    }

    /// Applies a reloaded `group_max_concurrent_reboots`: waiters re-read their pool at once.
    pub fn set_group_capacity(&self, k: u32) {
        self.group_capacity.send_replace(k.max(1));
    }

    /// Deletes `keys` (one entry, or a cluster entry and its group entry together).
    pub(super) async fn delete_entries(&self, keys: &[String]) -> Result<(), CoordError> {
        match keys {
            [] => {}
            [one] => {
                self.kv.delete(one).await?;
            }
            many => {
                self.kv
                    .txn(
                        vec![],
                        many.iter().map(|k| TxnOp::Delete(k.clone())).collect(),
                        vec![],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// This node's entries in every group pool (reconcile at start-up): read only when this node
    /// has a group or its persisted reboot lease names a group entry, so a daemon without
    /// groups reads exactly the keys it always read.
    pub(super) async fn my_group_entries(
        &self,
        lease_names_group: bool,
    ) -> Result<Vec<KeyValue>, CoordError> {
        if self.cfg.group.is_none() && !lease_names_group {
            return Ok(Vec::new());
        }
        self.pool_entries(&self.cfg.keys.group_root()).await
    }
}
