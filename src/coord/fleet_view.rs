//! Reads the whole fleet from etcd: every node's [`NodeState`], the slot holders and queue, the
//! in-progress markers, health records, reboot requests, the cooldown and the pause. One
//! reader for `cluster status` (text and `--json`, schema in docs/OPERATIONS.md) and the web
//! page. Everything read is untrusted: decode errors are shown per entry, text is capped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::HealthRecord;
use super::etcd::{CooldownRecord, PauseRecord};
use super::keys::Keys;
use super::kv::{Kv, KvError, RangeOpts};
use super::node_state::{NodeState, decode};
use super::slots::SlotValue;
use crate::text::{MAX_COPIED_TEXT, cap, cap_bytes};

/// Version of the `cluster status --json` / `/api/fleet` object.
pub const VIEW_SCHEMA_VERSION: u32 = 1;

/// One slot entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Node (or `unknown (<key>)` for an entry without our JSON, e.g. a Go daemon's fresh key).
    pub node: String,
    /// The entry's own state word (`waiting`, `held`, `rebooting`).
    pub state: String,
    /// Since (RFC 3339).
    pub since: String,
    /// The key.
    pub key: String,
}

/// One reboot group's pool (issue #16), as its entries say: the reader knows the slot count
/// of its own group only, so holders are told from waiters by the entry's state word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPoolView {
    /// Group name (from the key).
    pub group: String,
    /// Slots in the pool when it is the reader's own group (its configuration), else `null`.
    pub max_concurrent_reboots: Option<u32>,
    /// Its entries in queue order (`state` `waiting` = queued; anything else holds a slot).
    pub entries: Vec<Entry>,
}

/// A node with an in-progress reboot marker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InProgress {
    /// Node.
    pub node: String,
    /// Seconds since the marker was written, when readable.
    pub age_sec: Option<i64>,
}

/// An active cooldown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cooldown {
    /// The node whose recovery started it.
    pub node: String,
    /// Seconds left.
    pub remaining_sec: i64,
}

/// The cluster pause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pause {
    /// Why.
    pub reason: String,
    /// Who (`user@host`), empty when the record does not say.
    pub by: String,
    /// When (RFC 3339), empty when the record does not say.
    pub at: String,
}

/// One node of the fleet table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    /// Node name (from the key).
    pub node: String,
    /// Its published decision state; `null` when its daemon publishes none (not running, an
    /// older version, a Go daemon) or the record cannot be read.
    pub record: Option<NodeState>,
    /// Why the record cannot be read, when it cannot.
    pub record_error: Option<String>,
    /// Its last health record: healthy or not; `null` without one.
    pub healthy: Option<bool>,
}

/// Everything `cluster status` and the page show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    /// [`VIEW_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When this was read (RFC 3339).
    pub generated_at: String,
    /// Slots in the pool (this node's configuration).
    pub max_concurrent_reboots: u32,
    /// Every node that published a `node_state` or `cluster_health` record, by name.
    pub nodes: Vec<NodeRow>,
    /// Slot holders.
    pub holders: Vec<Entry>,
    /// Waiters, in order.
    pub queue: Vec<Entry>,
    /// Nodes with an in-progress reboot marker.
    pub in_progress: Vec<InProgress>,
    /// Nodes whose last health record says unhealthy (`node (stage reason)`).
    pub unhealthy: Vec<String>,
    /// Nodes whose last health record is older than `health_stale_after_sec`.
    pub stale: Vec<String>,
    /// Nodes with a pending reboot request.
    pub requests: Vec<String>,
    /// The active cooldown.
    pub cooldown: Option<Cooldown>,
    /// Why the cooldown record cannot be read, when it cannot: the daemons then start no
    /// reboot at all (fail closed).
    pub cooldown_corrupt: Option<String>,
    /// The cluster pause.
    pub pause: Option<Pause>,
    /// Reboot group pools with at least one entry (issue #16); absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupPoolView>,
}

impl FleetView {
    /// An empty view (no node, nothing held), e.g. for the local backend.
    pub fn empty(max_concurrent_reboots: u32) -> Self {
        FleetView {
            schema_version: VIEW_SCHEMA_VERSION,
            generated_at: jiff::Timestamp::now().to_string(),
            max_concurrent_reboots,
            nodes: Vec::new(),
            holders: Vec::new(),
            queue: Vec::new(),
            in_progress: Vec::new(),
            unhealthy: Vec::new(),
            stale: Vec::new(),
            requests: Vec::new(),
            cooldown: None,
            cooldown_corrupt: None,
            pause: None,
            groups: Vec::new(),
        }
    }
}

impl FleetView {
    /// `pool`'s entries split into those holding a group slot and those waiting for one, in
    /// queue order. An entry holds when its state word says so, when it is among the first K
    /// of the reader's own group, or when its lease also has a cluster entry (a node enters
    /// the cluster queue only once it holds its group slot): so a member that holds its group
    /// slot and waits for the cluster pool is shown as holding the group slot, not queued.
    pub fn group_split<'a>(&self, pool: &'a GroupPoolView) -> (Vec<&'a Entry>, Vec<&'a Entry>) {
        let lease = |key: &str| key.rsplit('/').next().unwrap_or_default().to_string();
        let in_cluster: std::collections::BTreeSet<String> = self
            .holders
            .iter()
            .chain(&self.queue)
            .map(|e| lease(&e.key))
            .collect();
        let k = pool.max_concurrent_reboots.map(|k| k as usize);
        let mut held = Vec::new();
        let mut waiting = Vec::new();
        for (i, e) in pool.entries.iter().enumerate() {
            if e.state != "waiting"
                || k.is_some_and(|k| i < k)
                || in_cluster.contains(&lease(&e.key))
            {
                held.push(e);
            } else {
                waiting.push(e);
            }
        }
        (held, waiting)
    }
}

fn age_secs(ts: &str, now: jiff::Timestamp) -> Option<i64> {
    ts.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| now.duration_since(t).as_secs())
}

/// The key's last segment after `prefix`, capped (node names come from other machines).
fn suffix(key: &str, prefix: &str) -> String {
    cap(key.get(prefix.len()..).unwrap_or(key).to_string(), 256)
}

/// One queue entry as shown (untrusted: capped, a value that is not ours named by its key).
fn entry(e: &super::kv::KeyValue) -> Entry {
    let s = serde_json::from_slice::<SlotValue>(&e.value).ok();
    Entry {
        node: s.as_ref().map_or_else(
            || format!("unknown ({})", cap(e.key.clone(), 256)),
            |s| cap(s.node.clone(), 256),
        ),
        state: s
            .as_ref()
            .map_or_else(String::new, |s| cap(s.state.clone(), 64)),
        since: s.map(|s| cap(s.acquired_at, 64)).unwrap_or_default(),
        key: cap(e.key.clone(), 512),
    }
}

/// Reads the whole fleet.
pub async fn read<K: Kv>(
    kv: &K,
    keys: &Keys,
    capacity: u32,
    stale_after: Duration,
) -> Result<FleetView, KvError> {
    read_with_group(kv, keys, capacity, None, stale_after).await
}

/// [`read`], knowing the reader's own reboot group and its slot count (`own_group`), which
/// the view then shows for that group's pool.
pub async fn read_with_group<K: Kv>(
    kv: &K,
    keys: &Keys,
    capacity: u32,
    own_group: Option<(&str, u32)>,
    stale_after: Duration,
) -> Result<FleetView, KvError> {
    let now = jiff::Timestamp::now();
    let mut v = FleetView::empty(capacity);
    v.generated_at = now.to_string();
    let all = RangeOpts::default();
    let queue = kv
        .range(
            &keys.slot_prefix(),
            RangeOpts {
                by_create_revision: true,
                ..all
            },
        )
        .await?;
    for (i, e) in queue.kvs.iter().enumerate() {
        let entry = entry(e);
        if i < capacity as usize {
            v.holders.push(entry);
        } else {
            v.queue.push(entry);
        }
    }
    let root = keys.group_root();
    let grouped = kv
        .range(
            &root,
            RangeOpts {
                by_create_revision: true,
                ..all
            },
        )
        .await?;
    for e in &grouped.kvs {
        // `<root><group>/<entry>`; anything else under the root is shown under its own path.
        let rest = e.key.get(root.len()..).unwrap_or_default();
        let group = cap(
            rest.rsplit_once('/').map_or(rest, |(g, _)| g).to_string(),
            256,
        );
        let pool = match v.groups.iter_mut().position(|g| g.group == group) {
            Some(i) => &mut v.groups[i],
            None => {
                v.groups.push(GroupPoolView {
                    max_concurrent_reboots: own_group
                        .filter(|(name, _)| *name == group.as_str())
                        .map(|(_, k)| k),
                    group,
                    entries: Vec::new(),
                });
                let last = v.groups.len() - 1;
                &mut v.groups[last]
            }
        };
        pool.entries.push(entry(e));
    }
    v.groups.sort_by(|a, b| a.group.cmp(&b.group));
    let ip_prefix = keys.in_progress_prefix();
    v.in_progress = kv
        .range(&ip_prefix, all)
        .await?
        .kvs
        .iter()
        .map(|e| InProgress {
            node: suffix(&e.key, &ip_prefix),
            age_sec: serde_json::from_slice::<serde_json::Value>(&e.value)
                .ok()
                .and_then(|j| j["since"].as_str().and_then(|t| age_secs(t, now))),
        })
        .collect();
    let mut rows: BTreeMap<String, NodeRow> = BTreeMap::new();
    let row = |rows: &mut BTreeMap<String, NodeRow>, node: &str| -> NodeRow {
        rows.remove(node).unwrap_or(NodeRow {
            node: node.to_string(),
            record: None,
            record_error: None,
            healthy: None,
        })
    };
    let h_prefix = keys.health_prefix();
    for e in kv.range(&h_prefix, all).await?.kvs {
        let node = suffix(&e.key, &h_prefix);
        let mut r = row(&mut rows, &node);
        if let Ok(h) = serde_json::from_slice::<HealthRecord>(&e.value) {
            r.healthy = Some(h.healthy);
            let age = age_secs(&h.reported_at, now);
            if !h.healthy {
                v.unhealthy.push(
                    cap(format!("{node} ({} {})", h.stage, h.reason), 1024)
                        .trim()
                        .to_string(),
                );
            } else if age.is_none_or(|a| a > stale_after.as_secs() as i64) {
                v.stale.push(format!(
                    "{node} (last report {})",
                    crate::human::instant(&cap(h.reported_at, 64))
                ));
            }
        }
        rows.insert(node, r);
    }
    let ns_prefix = keys.node_state_prefix();
    for e in kv.range(&ns_prefix, all).await?.kvs {
        let node = suffix(&e.key, &ns_prefix);
        let mut r = row(&mut rows, &node);
        match decode(&node, &e.value) {
            Ok(rec) => r.record = Some(rec),
            Err(why) => r.record_error = Some(why),
        }
        rows.insert(node, r);
    }
    v.nodes = rows.into_values().collect();
    let rq_prefix = keys.request_prefix();
    v.requests = kv
        .range(&rq_prefix, all)
        .await?
        .kvs
        .iter()
        .map(|e| suffix(&e.key, &rq_prefix))
        .collect();
    // A record the daemons cannot read blocks every reboot (they fail closed), so it is shown
    // as corrupt, never as "none" (issue #20). Same rules as the daemon's `read_cooldown`.
    if let Some(e) = kv.get(&keys.cooldown()).await?.0 {
        match serde_json::from_slice::<CooldownRecord>(&e.value) {
            Ok(c) => {
                let ttl = if e.lease != 0 {
                    kv.lease_ttl(e.lease).await?
                } else {
                    None
                };
                match crate::coord::etcd::cooldown_until(&c, now.as_millisecond(), ttl) {
                    Ok(until) => {
                        let remaining = (until - now.as_millisecond() + 999) / 1000;
                        if remaining > 0 {
                            v.cooldown = Some(Cooldown {
                                node: cap(c.node, 256),
                                remaining_sec: remaining,
                            });
                        }
                    }
                    Err(why) => v.cooldown_corrupt = Some(format!("{}: {why}", e.key)),
                }
            }
            Err(err) => {
                v.cooldown_corrupt = Some(format!(
                    "{}: not a cooldown record ({err}): {}",
                    e.key,
                    cap_bytes(&e.value, 80)
                ))
            }
        }
    }
    v.pause = kv.get(&keys.pause()).await?.0.map(|e| {
        match serde_json::from_slice::<PauseRecord>(&e.value) {
            Ok(p) => Pause {
                reason: cap(p.reason, MAX_COPIED_TEXT),
                by: cap(p.by, 256),
                at: cap(p.at, 64),
            },
            // The daemons treat any value as a pause (fail closed): show its text.
            Err(_) => Pause {
                reason: cap_bytes(&e.value, MAX_COPIED_TEXT),
                by: String::new(),
                at: String::new(),
            },
        }
    });
    Ok(v)
}
