//! Reboot groups (issue #16): a group pool per group plus the cluster-wide cap, taken group
//! first, held and released together — the same bodies on the in-memory model and real etcd.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clusterrebootd::coord::Coordinator;
use clusterrebootd::coord::etcd::{EtcdBackend, GroupPool, RebootLease};
use clusterrebootd::coord::keys::Keys;
use clusterrebootd::coord::kv::*;
use clusterrebootd::coord::memkv::MemKv;

use super::{LOCK, NS, TTL, acquired, config, etcd, join, next_update, real, still_waiting};

fn keys() -> Keys {
    Keys::new(NS, LOCK)
}

/// A node in `group` (K_group `kg`) with `total` cluster slots.
fn member<K: Kv + Clone>(
    kv: &K,
    node: &str,
    group: &str,
    kg: u32,
    total: u32,
    dir: &Path,
) -> Arc<EtcdBackend<K>> {
    let mut cfg = config(node, total, TTL, dir);
    cfg.group = Some(GroupPool {
        name: group.into(),
        capacity: kg,
    });
    Arc::new(EtcdBackend::new(kv.clone(), cfg))
}

async fn entries<K: Kv>(kv: &K, prefix: &str) -> Vec<KeyValue> {
    kv.range(
        prefix,
        RangeOpts {
            by_create_revision: true,
            ..RangeOpts::default()
        },
    )
    .await
    .expect("range")
    .kvs
}

fn node_of(kv: &KeyValue) -> String {
    clusterrebootd::coord::slots::holder_of(kv).node
}

/// Nodes owning an entry under `prefix`, in queue order.
async fn owners<K: Kv>(kv: &K, prefix: &str) -> Vec<String> {
    entries(kv, prefix).await.iter().map(node_of).collect()
}

/// K_total = 2, groups a, b, c with one slot each. A second node of group a waits for the
/// group, **without** a cluster entry (it takes no cluster slot and no cluster place); a node
/// of group c waits for the cluster pool while a and b hold it.
async fn both_caps_are_respected<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let a2 = member(&kv, "a2", "a", 1, 2, dir.path());
    let b1 = member(&kv, "b1", "b", 1, 2, dir.path());
    let c1 = member(&kv, "c1", "c", 1, 2, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    let (h_a2, mut u_a2) = join(&a2);
    let q = next_update(&mut u_a2).await;
    assert_eq!(q.pool.as_deref(), Some("a"), "{q:?}");
    assert_eq!((q.position, q.holders[0].node.as_str()), (1, "a1"));
    let (h, _) = join(&b1);
    acquired(h).await;
    let (h_c1, mut u_c1) = join(&c1);
    let q = next_update(&mut u_c1).await;
    assert_eq!(
        q.pool, None,
        "c1 holds its group slot and waits for the cluster: {q:?}"
    );
    assert_eq!(q.position, 1);
    still_waiting(&h_a2).await;
    assert_eq!(
        owners(&kv, &keys().slot_prefix()).await,
        ["a1", "b1", "c1"],
        "a2 has no cluster entry while it waits for its group"
    );
    assert_eq!(owners(&kv, &keys().group_prefix("a")).await, ["a1", "a2"]);
    // a1 is done: both its entries go in one release; c1 (first in the cluster queue) gets
    // the cluster slot, a2 its group slot and then queues for the cluster behind c1.
    a1.release_slot().await.expect("release");
    acquired(h_c1).await;
    let q = loop {
        let q = next_update(&mut u_a2).await;
        if q.pool.is_none() {
            break q;
        }
    };
    assert_eq!(q.position, 1, "{q:?}");
    assert_eq!(owners(&kv, &keys().group_prefix("a")).await, ["a2"]);
    still_waiting(&h_a2).await;
    b1.release_slot().await.expect("release");
    acquired(h_a2).await;
    assert_eq!(owners(&kv, &keys().slot_prefix()).await, ["c1", "a2"]);
}

/// Liveness and safety under contention: 3 groups × 3 nodes, K_group 1, K_total 2, everyone
/// joins at once; each holder keeps its slots a moment, checks both caps, releases. Everyone
/// gets through (no deadlock) and the caps hold at every grant.
async fn nine_nodes_all_get_through<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<_> = (0..9)
        .map(|i| {
            let g = ["a", "b", "c"][i % 3];
            (g, member(&kv, &format!("{g}{i}"), g, 1, 2, dir.path()))
        })
        .collect();
    let holding = Arc::new(std::sync::Mutex::new(BTreeMap::<&str, u32>::new()));
    let mut tasks = Vec::new();
    for (g, n) in nodes {
        let holding = holding.clone();
        tasks.push(tokio::spawn(async move {
            let (h, _) = join(&n);
            acquired(h).await;
            {
                let mut m = holding.lock().expect("lock");
                *m.entry(g).or_default() += 1;
                let total: u32 = m.values().sum();
                assert!(m[g] <= 1, "two holders in group {g}: {m:?}");
                assert!(total <= 2, "{total} holders with K_total 2: {m:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            *holding.lock().expect("lock").get_mut(g).expect("held") -= 1;
            n.release_slot().await.expect("release");
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("everyone gets both slots: no deadlock")
            .expect("task");
    }
    assert!(entries(&kv, &keys().slot_prefix()).await.is_empty());
    assert!(entries(&kv, &keys().group_root()).await.is_empty());
}

/// Both entries move onto the reboot lease in one transaction, survive the reboot, are found
/// again after boot and go in the one recovery transaction.
async fn both_entries_held_through_the_reboot<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    a1.move_to_reboot_lease(Duration::from_secs(600))
        .await
        .expect("move");
    let (cluster, group) = (
        entries(&kv, &keys().slot_prefix()).await,
        entries(&kv, &keys().group_prefix("a")).await,
    );
    assert_eq!((cluster.len(), group.len()), (1, 1));
    assert_eq!(cluster[0].lease, group[0].lease, "both on the reboot lease");
    let file: RebootLease = serde_json::from_slice(
        &std::fs::read(dir.path().join("a1/reboot-lease.json")).expect("lease file"),
    )
    .expect("lease json");
    assert_eq!(file.group_key.as_deref(), Some(group[0].key.as_str()));
    drop(a1); // the reboot: the session lease expires, both entries stay
    let a2 = member(&kv, "a2", "a", 1, 2, dir.path());
    let (h_a2, _) = join(&a2);
    tokio::time::sleep(TTL * 2).await;
    still_waiting(&h_a2).await;
    let back = member(&kv, "a1", "a", 1, 2, dir.path());
    assert_eq!(
        back.reattach_reboot_lease().await.expect("reattach"),
        clusterrebootd::coord::Reattach::Attached
    );
    still_waiting(&h_a2).await;
    back.complete_recovery(Duration::ZERO)
        .await
        .expect("recovery");
    acquired(h_a2).await;
    assert_eq!(owners(&kv, &keys().slot_prefix()).await, ["a2"]);
    assert_eq!(owners(&kv, &keys().group_prefix("a")).await, ["a2"]);
}

/// A group entry deleted under the slot (an operator, `cluster forget --key`) fails the move
/// closed: no marker, no reboot. The same for a lowered group K.
async fn a_lost_group_entry_fails_closed<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    let g = entries(&kv, &keys().group_prefix("a")).await;
    kv.delete(&g[0].key).await.expect("delete");
    let err = a1
        .move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), "lost", "{err}");
    assert!(
        kv.get(&keys().in_progress("a1"))
            .await
            .expect("get")
            .0
            .is_none(),
        "no in-progress marker without both slots"
    );
    a1.release_slot().await.expect("release");
    // Two group slots, then K lowered to 1: the second holder may not move.
    let b1 = member(&kv, "b1", "b", 2, 3, dir.path());
    let b2 = member(&kv, "b2", "b", 2, 3, dir.path());
    for n in [&b1, &b2] {
        let (h, _) = join(n);
        acquired(h).await;
    }
    b2.set_group_capacity(1);
    let err = b2
        .move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect_err("position 2 of a 1-slot group")
        .to_string();
    assert!(
        err.contains("group_max_concurrent_reboots is now 1"),
        "{err}"
    );
}

/// A daemon killed while holding both: both free after the session TTL, the next member of
/// its group gets through.
async fn a_killed_holder_frees_both<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 1, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    let a2 = member(&kv, "a2", "a", 1, 1, dir.path());
    let (h_a2, _) = join(&a2);
    still_waiting(&h_a2).await;
    drop(a1);
    acquired(h_a2).await;
    assert_eq!(owners(&kv, &keys().group_prefix("a")).await, ["a2"]);
    assert_eq!(owners(&kv, &keys().slot_prefix()).await, ["a2"]);
}

/// A lost journal and a lost lease file: reconcile finds the node's entries on the reboot
/// lease in both pools, rebuilds the lease file with both, and removes the entries an earlier
/// process left on this boot in both pools (never a second slot).
async fn reconcile_finds_both<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    a1.move_to_reboot_lease(Duration::from_secs(600))
        .await
        .expect("move");
    drop(a1);
    std::fs::remove_file(dir.path().join("a1/reboot-lease.json")).expect("lose the file");
    let back = member(&kv, "a1", "a", 1, 2, dir.path());
    let found = back.reconcile().await.expect("reconcile");
    assert!(found.is_some(), "the unfinished reboot is found");
    let file: RebootLease = serde_json::from_slice(
        &std::fs::read(dir.path().join("a1/reboot-lease.json")).expect("rebuilt"),
    )
    .expect("lease json");
    assert!(file.group_key.is_some(), "{file:?}");
    back.release_slot().await.expect("release");
    assert!(entries(&kv, &keys().slot_prefix()).await.is_empty());
    assert!(entries(&kv, &keys().group_root()).await.is_empty());
    // A process of this boot left a waiting entry in each pool (it held the group slot and
    // waited for the cluster behind b1): a restart removes both.
    let b1 = member(&kv, "b1", "b", 1, 1, dir.path());
    let (h, _) = join(&b1);
    acquired(h).await;
    let c1 = member(&kv, "c1", "c", 1, 1, dir.path());
    let (h_c1, _) = join(&c1);
    still_waiting(&h_c1).await;
    h_c1.abort();
    drop(c1);
    assert_eq!(owners(&kv, &keys().group_prefix("c")).await, ["c1"]);
    let again = member(&kv, "c1", "c", 1, 1, dir.path());
    assert_eq!(again.reconcile().await.expect("reconcile"), None);
    assert!(entries(&kv, &keys().group_prefix("c")).await.is_empty());
    assert_eq!(owners(&kv, &keys().slot_prefix()).await, ["b1"]);
}

/// Without a group nothing is written under the group root, and the entry is the Go mutex key.
async fn no_group_no_group_keys<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = super::backend(&kv, "n1", 1, TTL, dir.path());
    let (h, _) = join(&n);
    acquired(h).await;
    n.move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect("move");
    assert!(entries(&kv, &keys().group_root()).await.is_empty());
    let e = entries(&kv, &keys().slot_prefix()).await;
    assert_eq!(e.len(), 1);
    let hex = e[0]
        .key
        .strip_prefix(&keys().slot_prefix())
        .expect("under the lock");
    assert!(
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{}",
        e[0].key
    );
    let text = std::fs::read_to_string(dir.path().join("n1/reboot-lease.json")).expect("file");
    assert!(!text.contains("group_key"), "{text}");
    n.release_slot().await.expect("release");
}

/// `cluster status` (and the page's JSON) show each group's pool: who holds, who waits, and
/// the slot count of the reader's own group; `cluster forget` semantics are in tests/daemon.
async fn the_fleet_view_shows_the_group_pools<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let a2 = member(&kv, "a2", "a", 1, 2, dir.path());
    let (h, _) = join(&a1);
    acquired(h).await;
    let (h_a2, _) = join(&a2);
    still_waiting(&h_a2).await;
    let v = a2.fleet_view().await.expect("view");
    assert_eq!(v.groups.len(), 1, "{:?}", v.groups);
    let g = &v.groups[0];
    assert_eq!((g.group.as_str(), g.max_concurrent_reboots), ("a", Some(1)));
    let states: Vec<(&str, &str)> = g
        .entries
        .iter()
        .map(|e| (e.node.as_str(), e.state.as_str()))
        .collect();
    assert_eq!(states, [("a1", "held"), ("a2", "waiting")]);
    let text = clusterrebootd::fleet::table::render(&v, jiff::Timestamp::now());
    assert!(text.contains("group a: 1 of 1 held\n  held: a1"), "{text}");
    assert!(text.contains("  queued #1: a2"), "{text}");
    let json = serde_json::to_value(&v).expect("json");
    assert_eq!(json["groups"][0]["entries"][1]["node"], "a2");
    // Without group entries the JSON has no `groups` member (schema unchanged).
    a1.release_slot().await.expect("release");
    a2.leave_queue().await.expect("leave");
    h_a2.abort();
    let json = serde_json::to_value(a1.fleet_view().await.expect("view")).expect("json");
    assert!(json.get("groups").is_none(), "{json}");
}

/// Hostile etcd (issue #20's rules, for the group pools): an entry that is no daemon's record
/// holds a group slot — it blocks (fail closed) and is named by its key below the group — and
/// the node gets through once it is removed.
async fn a_foreign_group_entry_blocks_and_is_named<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = format!("{}ff", keys().group_prefix("a"));
    kv.put(&foreign, b"garbage".to_vec(), 0).await.expect("put");
    let a1 = member(&kv, "a1", "a", 1, 2, dir.path());
    let (h, mut u) = join(&a1);
    let q = next_update(&mut u).await;
    assert_eq!(q.pool.as_deref(), Some("a"));
    assert_eq!(q.holders[0].node, "unknown (ff)", "{q:?}");
    still_waiting(&h).await;
    assert!(entries(&kv, &keys().slot_prefix()).await.is_empty());
    kv.delete(&foreign).await.expect("delete");
    acquired(h).await;
}

/// `group_policies` (issue #16) at both checks, the members read from the `group` each
/// backend adds to its health record: group db (d1, d2, d3; two slots) needs two healthy
/// members besides the node, and web's w1 does not count there. Under the slot the group's
/// holders ahead count as down exactly as cluster-wide (held back, never blocked), one behind
/// does not; before the queue every holder counts.
async fn group_policies_count_the_group_s_holders_ahead<K: Kv + Clone>(kv: K) {
    use clusterrebootd::fsm::{BlockReason, PolicyVerdict};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = |node: &str| {
        let mut cfg = config(node, 2, TTL, dir.path());
        cfg.group = Some(GroupPool {
            name: "db".into(),
            capacity: 2,
        });
        cfg.group_policies = clusterrebootd::config::Policies {
            min_healthy_absolute: 2,
            ..Default::default()
        };
        Arc::new(EtcdBackend::new(kv.clone(), cfg))
    };
    let (d1, d2, d3) = (db("d1"), db("d2"), db("d3"));
    let w1 = member(&kv, "w1", "web", 1, 2, dir.path());
    for (b, node) in [(&d1, "d1"), (&d2, "d2"), (&d3, "d3"), (&w1, "w1")] {
        b.publish_health(clusterrebootd::coord::HealthRecord {
            node: node.into(),
            healthy: true,
            stage: String::new(),
            reason: String::new(),
            reported_at: jiff::Timestamp::now().to_string(),
            group: None,
        })
        .await
        .expect("publish");
    }
    let (rec, _) = kv.get(&keys().health("d1")).await.expect("get");
    let rec = String::from_utf8(rec.expect("d1's record").value).expect("utf-8");
    assert!(rec.contains(r#""group":"db""#), "{rec}");
    let texts = |v: PolicyVerdict| match v {
        PolicyVerdict::HeldBack { reasons } => BlockReason::texts(&reasons),
        other => panic!("expected held back, got {other:?}"),
    };
    assert_eq!(
        d3.cluster_health().await.expect("policy"),
        PolicyVerdict::Pass
    );
    let (h, _) = join(&d1);
    acquired(h).await;
    let (h, _) = join(&d2);
    acquired(h).await;
    assert_eq!(
        texts(d2.cluster_health().await.expect("policy")),
        [
            "in reboot group db: d1 holds a slot ahead of this node (counted as down)",
            "in reboot group db: healthy nodes 1 below minimum 2 (this node counts as down)"
        ]
    );
    assert_eq!(
        d1.cluster_health().await.expect("policy"),
        PolicyVerdict::Pass,
        "d2 is behind d1 and not rebooting"
    );
    assert_eq!(
        texts(d3.cluster_health().await.expect("policy"))
            .last()
            .map(String::as_str),
        Some("in reboot group db: healthy nodes 0 below minimum 2 (this node counts as down)")
    );
    assert_eq!(
        w1.cluster_health().await.expect("policy"),
        PolicyVerdict::Pass,
        "web has no group_policies; db's holders are planned downtime"
    );
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        pub mod memkv {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::MemKv::new()).await;
                }
            )*
        }
        pub mod real_etcd {
            $(
                #[tokio::test]
                async fn $name() {
                    let e = super::etcd::Etcd::start(1);
                    super::$name(super::real(&e).await).await;
                }
            )*
        }
    };
}

both!(
    both_caps_are_respected,
    nine_nodes_all_get_through,
    both_entries_held_through_the_reboot,
    a_lost_group_entry_fails_closed,
    a_killed_holder_frees_both,
    reconcile_finds_both,
    no_group_no_group_keys,
    the_fleet_view_shows_the_group_pools,
    a_foreign_group_entry_blocks_and_is_named,
    group_policies_count_the_group_s_holders_ahead,
);

/// Why the order is fixed: a node that takes the cluster slot first, mixed with nodes that
/// take the group slot first, deadlocks — A holds the only cluster slot and waits for the
/// group slot that B holds while B waits for the cluster slot. (The daemon has one order,
/// group first; `AcquireOrder::ClusterFirst` exists for this demonstration and the
/// simulator's deadlock check.)
#[tokio::test(start_paused = true)]
async fn mixed_orders_deadlock() {
    let kv = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let c = member(&kv, "c", "c", 1, 1, dir.path());
    let (h, _) = join(&c);
    acquired(h).await;
    let mut cfg = config("a", 1, TTL, dir.path());
    cfg.group = Some(GroupPool {
        name: "g".into(),
        capacity: 1,
    });
    cfg.acquire_order = clusterrebootd::coord::etcd::AcquireOrder::ClusterFirst;
    let a = Arc::new(EtcdBackend::new(kv.clone(), cfg));
    let (h_a, _) = join(&a);
    still_waiting(&h_a).await; // in the cluster queue, no group entry yet
    let b = member(&kv, "b", "g", 1, 1, dir.path());
    let (h_b, _) = join(&b);
    still_waiting(&h_b).await; // holds the group slot, queued for the cluster behind a
    c.release_slot().await.expect("release");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        !h_a.is_finished() && !h_b.is_finished(),
        "mixed orders must deadlock here (else this test shows nothing)"
    );
    assert_eq!(owners(&kv, &keys().slot_prefix()).await, ["a", "b"]);
    assert_eq!(owners(&kv, &keys().group_prefix("g")).await, ["b", "a"]);
}
