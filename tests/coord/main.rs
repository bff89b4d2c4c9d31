//! The etcd coordination protocol against the deterministic in-memory model AND a real etcd,
//! with the same test bodies (SPEC §7, issue #5).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../support/etcd.rs"]
mod etcd;
mod groups;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clusterrebootd::config::EtcdSettings;
use clusterrebootd::coord::etcd::{EtcdBackend, EtcdConfig};
use clusterrebootd::coord::etcd_kv::{EtcdKv, EtcdOptions};
use clusterrebootd::coord::keys::Keys;
use clusterrebootd::coord::kv::*;
use clusterrebootd::coord::memkv::MemKv;
use clusterrebootd::coord::{Coordinator, HealthRecord, Notice, QueueUpdate, Reattach};
use clusterrebootd::fsm::{CooldownStatus, PolicyVerdict, SlotLossKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const NS: &str = "/test";
const LOCK: &str = "/cluster/clusterrebootd/lock";

fn config(node: &str, cap: u32, ttl: Duration, dir: &Path) -> EtcdConfig {
    EtcdConfig::new(
        node,
        &format!("{node}-boot"),
        Keys::new(NS, LOCK),
        cap,
        ttl,
        clusterrebootd::coord::etcd::LeaseStore::in_dir(&dir.join(node)),
    )
}

type Joined = (JoinHandle<Result<(), String>>, mpsc::Receiver<QueueUpdate>);

fn join<K: Kv + Clone>(b: &Arc<EtcdBackend<K>>) -> Joined {
    let (tx, rx) = mpsc::channel(16);
    let b = b.clone();
    let h = tokio::spawn(async move { b.join_queue(tx).await.map_err(|e| e.to_string()) });
    (h, rx)
}

async fn next_update(rx: &mut mpsc::Receiver<QueueUpdate>) -> QueueUpdate {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a queue update in time")
        .expect("channel open")
}

async fn acquired(h: JoinHandle<Result<(), String>>) {
    tokio::time::timeout(Duration::from_secs(20), h)
        .await
        .expect("slot acquired in time")
        .expect("task")
        .expect("join ok");
}

async fn still_waiting(h: &JoinHandle<Result<(), String>>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !h.is_finished(),
        "acquired a slot that should still be held by someone else"
    );
}

fn backend<K: Kv + Clone>(
    kv: &K,
    node: &str,
    cap: u32,
    ttl: Duration,
    dir: &Path,
) -> Arc<EtcdBackend<K>> {
    Arc::new(EtcdBackend::new(kv.clone(), config(node, cap, ttl, dir)))
}

const TTL: Duration = Duration::from_secs(2);

// ------------------------------------------------------------------ test bodies

async fn fifo_hand_off<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2, n3, n4) = (
        backend(&kv, "n1", 1, TTL, dir.path()),
        backend(&kv, "n2", 1, TTL, dir.path()),
        backend(&kv, "n3", 1, TTL, dir.path()),
        backend(&kv, "n4", 1, TTL, dir.path()),
    );
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let (h2, mut u2) = join(&n2);
    let q = next_update(&mut u2).await;
    assert_eq!((q.position, q.holders[0].node.as_str()), (1, "n1"));
    let (h3, mut u3) = join(&n3);
    assert_eq!(next_update(&mut u3).await.position, 2);
    let (h4, mut u4) = join(&n4);
    assert_eq!(next_update(&mut u4).await.position, 3);
    n1.release_slot().await.expect("release");
    acquired(h2).await;
    // With one slot a waiter watches only the entry just ahead of it: n1's release wakes n2
    // alone, so a hand-off costs O(K), not one wake-up per waiter (issue #18).
    still_waiting(&h3).await;
    assert!(
        u3.try_recv().is_err(),
        "n3 was woken by a release two places ahead"
    );
    assert!(
        u4.try_recv().is_err(),
        "n4 was woken by a release three places ahead"
    );
    // The entry just ahead of n4 leaves: n4 wakes and reads where it stands now.
    h3.abort();
    n3.leave_queue().await.expect("leave");
    let q = next_update(&mut u4).await;
    assert_eq!(
        (q.position, q.holders[0].node.as_str()),
        (1, "n2"),
        "n4 moved up"
    );
    n2.release_slot().await.expect("release");
    acquired(h4).await;
}

/// An operator deletes a waiting node's entry (`cluster forget --key`): the waiter learns at
/// once that it is gone (it watches its own entry besides the K just ahead of it), instead of
/// waiting on, entry-less, until the queue ahead of it moves.
async fn a_deleted_waiting_entry_is_lost_at_once<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, n2) = (
        backend(&kv, "n1", 1, TTL, dir.path()),
        backend(&kv, "n2", 1, TTL, dir.path()),
    );
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let (h2, mut u2) = join(&n2);
    assert_eq!(next_update(&mut u2).await.position, 1);
    let entries = kv
        .range(&Keys::new(NS, LOCK).slot_prefix(), RangeOpts::default())
        .await
        .expect("range");
    let n2_entry = entries
        .kvs
        .iter()
        .find(|e| String::from_utf8_lossy(&e.value).contains("\"n2\""))
        .expect("n2's entry");
    kv.delete(&n2_entry.key).await.expect("delete");
    let r = tokio::time::timeout(Duration::from_secs(5), h2)
        .await
        .expect("the waiter noticed its entry is gone")
        .expect("task");
    assert!(
        r.is_err(),
        "a waiter without an entry must not get a slot: {r:?}"
    );
    n1.release_slot().await.expect("release");
}

async fn two_slots<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<_> = (1..=3)
        .map(|i| backend(&kv, &format!("n{i}"), 2, TTL, dir.path()))
        .collect();
    let (h1, _) = join(&nodes[0]);
    acquired(h1).await;
    let (h2, _) = join(&nodes[1]);
    acquired(h2).await;
    let (h3, mut u3) = join(&nodes[2]);
    let q = next_update(&mut u3).await;
    assert_eq!(q.position, 1);
    assert_eq!(q.holders.len(), 2);
    nodes[1].leave_queue().await.expect("leave");
    acquired(h3).await;
}

/// A reload lowers `max_concurrent_reboots` while two nodes hold slots: the second may not
/// move its slot onto a reboot lease any more (fail closed), the first still may.
async fn lowered_capacity_refuses_the_extra_holder<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 2, TTL, dir.path());
    let n2 = backend(&kv, "n2", 2, TTL, dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let (h2, _) = join(&n2);
    acquired(h2).await;
    n1.set_capacity(1);
    n2.set_capacity(1);
    let err = n2
        .move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect_err("position 2 with one slot must not reboot")
        .to_string();
    assert!(err.contains("max_concurrent_reboots is now 1"), "{err}");
    n1.move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect("the first holder keeps its slot");
    n1.release_slot().await.expect("release");
    n2.release_slot().await.expect("release");
}

/// A reload that raises `max_concurrent_reboots` reaches a node already waiting: it takes the
/// new slot at once, without any entry being deleted (it used to keep the K it joined with
/// until it left the queue, so a rollout stayed one at a time after the raise).
async fn raised_capacity_reaches_a_waiter<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<_> = (1..=3)
        .map(|i| backend(&kv, &format!("n{i}"), 1, TTL, dir.path()))
        .collect();
    let (h1, _) = join(&nodes[0]);
    acquired(h1).await;
    let (h2, mut u2) = join(&nodes[1]);
    assert_eq!(next_update(&mut u2).await.position, 1);
    let (h3, mut u3) = join(&nodes[2]);
    assert_eq!(next_update(&mut u3).await.position, 2);
    for n in &nodes {
        n.set_capacity(2);
    }
    acquired(h2).await;
    // n3 moved up but two slots are held.
    assert_eq!(next_update(&mut u3).await.position, 1);
    still_waiting(&h3).await;
    // Lowering it again takes no slot away, and gives none out.
    for n in &nodes {
        n.set_capacity(1);
    }
    nodes[0].release_slot().await.expect("release");
    still_waiting(&h3).await;
    nodes[1].release_slot().await.expect("release");
    acquired(h3).await;
}

/// A leave or release that fails (etcd unreachable) is retried by the driver: the retry must
/// still delete the entry. They used to forget it on the first attempt, so the retry did nothing
/// and the entry stayed on the live session lease, holding the slot for a node that had moved on.
#[tokio::test(start_paused = true)]
async fn a_failed_leave_or_release_is_retried() {
    let kv = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<_> = (1..=3)
        .map(|i| backend(&kv, &format!("n{i}"), 1, TTL, dir.path()))
        .collect();
    let (h1, _) = join(&nodes[0]);
    acquired(h1).await;
    let (h2, mut u2) = join(&nodes[1]);
    assert_eq!(next_update(&mut u2).await.position, 1);
    let (h3, mut u3) = join(&nodes[2]);
    assert_eq!(next_update(&mut u3).await.position, 2);
    h2.abort();
    kv.set_available(false);
    assert!(nodes[1].leave_queue().await.is_err());
    assert!(nodes[0].release_slot().await.is_err());
    kv.set_available(true);
    nodes[1].leave_queue().await.expect("leave, retried");
    nodes[0].release_slot().await.expect("release, retried");
    acquired(h3).await;
}

async fn crashed_holder_frees_after_ttl<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let n2 = backend(&kv, "n2", 1, TTL, dir.path());
    let (h2, _) = join(&n2);
    still_waiting(&h2).await;
    drop(n1); // the process dies: nobody keeps its session lease alive
    acquired(h2).await;
}

async fn slot_survives_the_reboot<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    n1.move_to_reboot_lease(Duration::from_secs(600))
        .await
        .expect("move");
    let marker = kv
        .get(&Keys::new(NS, LOCK).in_progress("n1"))
        .await
        .expect("get")
        .0;
    assert!(marker.is_some(), "in-progress marker written with the move");
    drop(n1); // reboot: the session lease expires, the entry is on the reboot lease
    let n2 = backend(&kv, "n2", 1, TTL, dir.path());
    let (h2, _) = join(&n2);
    tokio::time::sleep(TTL * 2).await;
    still_waiting(&h2).await;
    // After boot: a new process re-attaches with the persisted lease id.
    let back = backend(&kv, "n1", 1, TTL, dir.path());
    assert_eq!(
        back.reattach_reboot_lease().await.expect("reattach"),
        Reattach::Attached
    );
    still_waiting(&h2).await;
    back.release_slot().await.expect("release");
    back.clear_in_progress().await.expect("clear");
    acquired(h2).await;
    let marker = kv
        .get(&Keys::new(NS, LOCK).in_progress("n1"))
        .await
        .expect("get")
        .0;
    assert!(marker.is_none());
}

async fn expired_reboot_lease<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    n1.move_to_reboot_lease(TTL).await.expect("move");
    drop(n1);
    let n2 = backend(&kv, "n2", 1, TTL, dir.path());
    let (h2, _) = join(&n2);
    acquired(h2).await; // the node stayed down longer than the reboot lease
    let back = backend(&kv, "n1", 1, TTL, dir.path());
    assert_eq!(
        back.reattach_reboot_lease().await.expect("reattach"),
        Reattach::Expired
    );
}

async fn moving_a_lost_entry_fails_closed<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    // An operator deletes the entry (or its lease expired) between the checks and the reboot.
    let entries = kv
        .range(&Keys::new(NS, LOCK).slot_prefix(), RangeOpts::default())
        .await
        .expect("range");
    kv.delete(&entries.kvs[0].key).await.expect("delete");
    let err = n1
        .move_to_reboot_lease(Duration::from_secs(60))
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), "lost", "{err}");
    let marker = kv
        .get(&Keys::new(NS, LOCK).in_progress("n1"))
        .await
        .expect("get")
        .0;
    assert!(marker.is_none(), "no in-progress marker without the slot");
}

async fn go_mutex_key_blocks<K: Kv + Clone>(kv: K) {
    // What the Go daemon's concurrency.Mutex does: create <prefix><lease hex> if absent, then
    // overwrite the value with its JSON.
    let dir = tempfile::tempdir().expect("tempdir");
    let lease = kv
        .lease_grant(Duration::from_secs(30))
        .await
        .expect("lease");
    let key = Keys::new(NS, LOCK).slot_entry(lease);
    kv.txn(
        vec![Compare::CreateRevision(key.clone(), CmpOp::Equal, 0)],
        vec![TxnOp::Put {
            key: key.clone(),
            value: vec![],
            lease,
        }],
        vec![TxnOp::Get(key.clone())],
    )
    .await
    .expect("go lock");
    kv.put(
        &key,
        br#"{"node":"go-node","pid":4242,"acquired_at":"2026-11-27T10:00:00Z"}"#.to_vec(),
        lease,
    )
    .await
    .expect("go value");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let (h1, mut u1) = join(&n1);
    let q = next_update(&mut u1).await;
    assert_eq!(q.holders[0].node, "go-node");
    still_waiting(&h1).await;
    kv.delete(&key).await.expect("go unlock");
    acquired(h1).await;
}

async fn pause_cooldown_and_health<K: Kv + Clone>(kv: K) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let mut notices = n1.notices();
    let keys = Keys::new(NS, LOCK);
    kv.put(
        &keys.pause(),
        br#"{"reason":"quarterly audit","by":"ops","at":"2026-11-27T10:00:00Z"}"#.to_vec(),
        0,
    )
    .await
    .expect("pause");
    let paused = n1.pause().await.expect("pause read");
    assert_eq!(
        paused.as_deref(),
        Some("quarterly audit (by ops at 2026-11-27T10:00:00Z)")
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Notice::PauseChanged(Some(r))) = notices.recv().await {
                return r;
            }
        }
    })
    .await
    .expect("pause notice");
    assert!(seen.starts_with("quarterly audit"));
    kv.delete(&keys.pause()).await.expect("resume");
    assert_eq!(n1.pause().await.expect("read"), None);

    assert_eq!(
        n1.read_cooldown().await.expect("cooldown"),
        CooldownStatus::Clear
    );
    n1.start_cooldown(Duration::from_secs(3))
        .await
        .expect("start");
    match n1.read_cooldown().await.expect("cooldown") {
        CooldownStatus::Active { by, .. } => assert_eq!(by, "n1"),
        other => panic!("{other:?}"),
    }
    let raw = kv.get(&keys.cooldown()).await.expect("get").0.expect("key");
    let v: serde_json::Value = serde_json::from_slice(&raw.value).expect("json");
    assert_eq!(v["duration_sec"], 3, "Go cooldown format");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        n1.read_cooldown().await.expect("cooldown"),
        CooldownStatus::Clear
    );

    let n2 = backend(&kv, "n2", 1, TTL, dir.path());
    let now = jiff::Timestamp::now().to_string();
    n1.publish_health(HealthRecord {
        node: "n1".into(),
        healthy: true,
        stage: String::new(),
        reason: String::new(),
        reported_at: now.clone(),
        group: None,
    })
    .await
    .expect("publish");
    n2.publish_health(HealthRecord {
        node: "n2".into(),
        healthy: false,
        stage: "heartbeat".into(),
        reason: "heartbeat exit 2".into(),
        reported_at: now,
        group: None,
    })
    .await
    .expect("publish");
    match n1.cluster_health().await.expect("health") {
        PolicyVerdict::Blocked { reasons } => {
            assert_eq!(
                reasons,
                [clusterrebootd::fsm::BlockReason::new(
                    clusterrebootd::fsm::BlockKind::UnhealthyPeers,
                    "cluster health blocked by unhealthy nodes: n2 (heartbeat, heartbeat exit 2)"
                )]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        n2.cluster_health().await.expect("health"),
        PolicyVerdict::Pass
    );
}

async fn session_loss_is_reported<K: Kv + Clone>(kv: K, expire: impl Fn(LeaseId)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    let mut notices = n1.notices();
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let entry = kv
        .range(&Keys::new(NS, LOCK).slot_prefix(), RangeOpts::default())
        .await
        .expect("range")
        .kvs[0]
        .clone();
    expire(entry.lease);
    let lost = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Notice::SlotLost(d)) = notices.recv().await {
                return d;
            }
        }
    })
    .await
    .expect("slot-lost notice");
    assert_eq!(lost.kind, SlotLossKind::SessionExpired, "{lost}");
    assert!(lost.text.contains("session lease"), "{lost}");
    // A new join starts a new session.
    let (h1, _) = join(&n1);
    acquired(h1).await;
}

// ------------------------------------------------------------------ on the in-memory model

#[tokio::test(start_paused = true)]
async fn memkv_fifo_hand_off() {
    fifo_hand_off(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_two_slots() {
    two_slots(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_a_deleted_waiting_entry_is_lost_at_once() {
    a_deleted_waiting_entry_is_lost_at_once(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_lowered_capacity_refuses_the_extra_holder() {
    lowered_capacity_refuses_the_extra_holder(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_raised_capacity_reaches_a_waiter() {
    raised_capacity_reaches_a_waiter(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_crashed_holder_frees_after_ttl() {
    crashed_holder_frees_after_ttl(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_slot_survives_the_reboot() {
    slot_survives_the_reboot(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_expired_reboot_lease() {
    expired_reboot_lease(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_moving_a_lost_entry_fails_closed() {
    moving_a_lost_entry_fails_closed(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_go_mutex_key_blocks() {
    go_mutex_key_blocks(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_pause_cooldown_and_health() {
    pause_cooldown_and_health(MemKv::new()).await;
}
#[tokio::test(start_paused = true)]
async fn memkv_session_loss_is_reported() {
    let kv = MemKv::new();
    let k2 = kv.clone();
    session_loss_is_reported(kv, move |l| {
        k2.expire_lease(l);
    })
    .await;
}
#[tokio::test(start_paused = true)]
async fn memkv_unavailable_fails_closed_and_recovers() {
    let kv = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, TTL, dir.path());
    kv.set_available(false);
    let (h, _) = join(&n1);
    let r = h.await.expect("task");
    assert!(r.expect_err("must fail").contains("unavailable"));
    assert!(n1.read_cooldown().await.is_err());
    assert!(n1.cluster_health().await.is_err());
    kv.set_available(true);
    let (h, _) = join(&n1);
    acquired(h).await;
}

/// Issue #20: etcd restored empty while one node is down in its reboot and another waits. The
/// waiter loses its entry with the old store; it must not take a fresh slot in the new one (two
/// nodes down with K=1), not even after a restart, until an operator accepts the store.
#[tokio::test(start_paused = true)]
async fn memkv_a_replaced_store_fails_closed_until_accepted() {
    let kv = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = |node: &str| EtcdConfig {
        identity_file: Some(dir.path().join(format!("{node}-identity.json"))),
        ..config(node, 1, TTL, dir.path())
    };
    let n1 = Arc::new(EtcdBackend::new(kv.clone(), pinned("n1")));
    let n2 = Arc::new(EtcdBackend::new(kv.clone(), pinned("n2")));
    let (h1, _) = join(&n1);
    acquired(h1).await;
    n1.move_to_reboot_lease(Duration::from_secs(600))
        .await
        .expect("n1 goes down holding its slot");
    let (h2, mut u2) = join(&n2);
    next_update(&mut u2).await;
    // Disaster recovery from nothing: a new, empty store at the same address.
    kv.replace_with_empty(0xfeed);
    let r = tokio::time::timeout(Duration::from_secs(30), h2)
        .await
        .expect("the wait ends")
        .expect("task");
    assert!(
        r.is_err(),
        "the waiter must lose its entry with the old store"
    );
    for attempt in 0..2 {
        let b = if attempt == 0 {
            n2.clone()
        } else {
            // A restarted daemon remembers the pin (state_dir).
            Arc::new(EtcdBackend::new(kv.clone(), pinned("n2")))
        };
        let (h, _) = join(&b);
        let err = h.await.expect("task").expect_err("must fail closed");
        assert!(err.contains("not the one this node knows"), "{err}");
        assert!(err.contains("cluster accept-store"), "{err}");
        assert!(
            b.cluster_health().await.is_err(),
            "the policy fails closed too"
        );
    }
    assert!(
        kv.dump().iter().all(|e| !e.key.contains("/lock/")),
        "no entry in the new store"
    );
    // The operator accepts the new store: the node pins it and proceeds.
    let rec = serde_json::json!({"cluster_id": "feed", "by": "ops", "at": "2026-12-06T00:00:00Z"});
    kv.put(
        &format!("{NS}/store_accepted"),
        rec.to_string().into_bytes(),
        0,
    )
    .await
    .expect("put");
    let (h, _) = join(&n2);
    acquired(h).await;
}

/// The store pin on disk (`etcd-identity.json`) advances at every decision point's check, and
/// before the slot moves onto the reboot lease it takes the move's own revision: the revision
/// on disk when the node goes down covers its own queue entry, so a store restored to a backup
/// taken before that entry existed is refused after the reboot.
#[tokio::test(start_paused = true)]
async fn memkv_the_pin_on_disk_covers_the_slot_before_the_reboot() {
    let kv = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("n1-identity.json");
    let on_disk = || -> i64 {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("pin file")).expect("json");
        v["revision"].as_i64().expect("revision")
    };
    let n1 = Arc::new(EtcdBackend::new(
        kv.clone(),
        EtcdConfig {
            identity_file: Some(file.clone()),
            ..config("n1", 1, TTL, dir.path())
        },
    ));
    n1.cluster_health()
        .await
        .expect("first check pins the store");
    let first = on_disk();
    for i in 0..5 {
        kv.put(&format!("{NS}/other/{i}"), b"x".to_vec(), 0)
            .await
            .expect("put");
    }
    n1.cluster_health().await.expect("check");
    assert!(
        on_disk() > first,
        "a policy read writes the advanced revision"
    );
    let (h, _) = join(&n1);
    acquired(h).await;
    let entry_created = kv.revision();
    n1.move_to_reboot_lease(Duration::from_secs(600))
        .await
        .expect("move");
    assert!(
        on_disk() >= entry_created,
        "pin on disk {} is below the slot's revision {entry_created}",
        on_disk()
    );
}

// ------------------------------------------------------------------ on a real etcd

async fn real(e: &etcd::Etcd) -> EtcdKv {
    let settings = EtcdSettings {
        endpoints: e.endpoints(),
        namespace: NS.into(),
        tls: None,
        auth: None,
    };
    EtcdKv::connect(&settings, &EtcdOptions::default())
        .await
        .expect("connect")
}

#[tokio::test]
async fn etcd_fifo_hand_off() {
    let e = etcd::Etcd::start(1);
    fifo_hand_off(real(&e).await).await;
}
#[tokio::test]
async fn etcd_two_slots() {
    let e = etcd::Etcd::start(1);
    two_slots(real(&e).await).await;
}
#[tokio::test]
async fn etcd_a_deleted_waiting_entry_is_lost_at_once() {
    let e = etcd::Etcd::start(1);
    a_deleted_waiting_entry_is_lost_at_once(real(&e).await).await;
}
#[tokio::test]
async fn etcd_lowered_capacity_refuses_the_extra_holder() {
    let e = etcd::Etcd::start(1);
    lowered_capacity_refuses_the_extra_holder(real(&e).await).await;
}
#[tokio::test]
async fn etcd_raised_capacity_reaches_a_waiter() {
    let e = etcd::Etcd::start(1);
    raised_capacity_reaches_a_waiter(real(&e).await).await;
}
#[tokio::test]
async fn etcd_crashed_holder_frees_after_ttl() {
    let e = etcd::Etcd::start(1);
    crashed_holder_frees_after_ttl(real(&e).await).await;
}
#[tokio::test]
async fn etcd_slot_survives_the_reboot() {
    let e = etcd::Etcd::start(1);
    slot_survives_the_reboot(real(&e).await).await;
}
#[tokio::test]
async fn etcd_expired_reboot_lease() {
    let e = etcd::Etcd::start(1);
    expired_reboot_lease(real(&e).await).await;
}
#[tokio::test]
async fn etcd_moving_a_lost_entry_fails_closed() {
    let e = etcd::Etcd::start(1);
    moving_a_lost_entry_fails_closed(real(&e).await).await;
}
#[tokio::test]
async fn etcd_go_mutex_key_blocks() {
    let e = etcd::Etcd::start(1);
    go_mutex_key_blocks(real(&e).await).await;
}
#[tokio::test]
async fn etcd_pause_cooldown_and_health() {
    let e = etcd::Etcd::start(1);
    pause_cooldown_and_health(real(&e).await).await;
}
#[tokio::test]
async fn etcd_session_loss_is_reported() {
    let e = etcd::Etcd::start(1);
    let kv = real(&e).await;
    let k2 = kv.clone();
    session_loss_is_reported(kv, move |l| {
        let k = k2.clone();
        tokio::spawn(async move { k.lease_revoke(l).await.expect("revoke") });
    })
    .await;
}
#[tokio::test]
async fn etcd_down_fails_closed_and_recovers() {
    let mut e = etcd::Etcd::start(1);
    let kv = real(&e).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, Duration::from_secs(10), dir.path());
    e.members[0].kill();
    let (h, _) = join(&n1);
    let r = tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .expect("fails in time")
        .expect("task");
    assert!(r.is_err(), "joined without etcd");
    e.members[0].restart();
    e.wait_healthy(Duration::from_secs(20));
    let (h, _) = join(&n1);
    acquired(h).await;
}
#[tokio::test]
async fn etcd_three_members_survive_a_killed_member() {
    let mut e = etcd::Etcd::start(3);
    let kv = real(&e).await;
    let dir = tempfile::tempdir().expect("tempdir");
    e.members[0].kill(); // the first endpoint of the list: every call has to fail over
    let n1 = backend(&kv, "n1", 1, Duration::from_secs(5), dir.path());
    let n2 = backend(&kv, "n2", 1, Duration::from_secs(5), dir.path());
    for _ in 0..20 {
        n1.read_cooldown()
            .await
            .expect("no call may fail with one member down");
    }
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let (h2, _) = join(&n2);
    still_waiting(&h2).await;
    n1.release_slot().await.expect("release");
    acquired(h2).await;
}

#[tokio::test]
async fn etcd_leader_killed_while_a_node_waits() {
    let mut e = etcd::Etcd::start(3);
    let kv = real(&e).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&kv, "n1", 1, Duration::from_secs(10), dir.path());
    let n2 = backend(&kv, "n2", 1, Duration::from_secs(10), dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let (mut h2, _) = join(&n2);
    still_waiting(&h2).await;
    let leader = e.leader().expect("a leader");
    e.members[leader].kill();
    // Still exclusive while the cluster elects a new leader: the wait either goes on or, when
    // its watch broke and the re-read met "no leader", fails closed (the machine then backs off
    // and joins again) — never "acquired".
    tokio::time::sleep(Duration::from_millis(300)).await;
    if h2.is_finished() {
        let r = (&mut h2).await.expect("task");
        let err = r.expect_err("n2 must not get the slot n1 holds");
        assert!(
            err.contains("unavailable") || err.contains("leader"),
            "failed for another reason: {err}"
        );
    }
    // … and the hand-off works once it has one (the release retries until it succeeds).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match n1.release_slot().await {
            Ok(()) => break,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "release kept failing: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // A failed wait is joined again, as the driver does after its backoff.
    loop {
        if !h2.is_finished() {
            break;
        }
        match (&mut h2).await.expect("task") {
            Ok(()) => return,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "joining kept failing: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                h2 = join(&n2).0;
            }
        }
    }
    acquired(h2).await;
}

/// Counts reads, to prove that waiting for a slot does not poll.
#[derive(Clone)]
struct CountingKv {
    inner: MemKv,
    ranges: Arc<std::sync::atomic::AtomicUsize>,
}

impl Kv for CountingKv {
    async fn range(&self, prefix: &str, opts: RangeOpts) -> Result<RangeResult, KvError> {
        self.ranges
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.range(prefix, opts).await
    }
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), KvError> {
        self.ranges
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn identity(&self, probe: &str) -> Result<StoreIdentity, KvError> {
        self.inner.identity(probe).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Revision, KvError> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<(Revision, bool), KvError> {
        self.inner.delete(key).await
    }
    async fn txn(
        &self,
        c: Vec<Compare>,
        s: Vec<TxnOp>,
        f: Vec<TxnOp>,
    ) -> Result<TxnResult, KvError> {
        self.inner.txn(c, s, f).await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, KvError> {
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), KvError> {
        self.inner.lease_revoke(id).await
    }
    async fn lease_ttl(&self, id: LeaseId) -> Result<Option<Duration>, KvError> {
        self.inner.lease_ttl(id).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream, KvError> {
        self.inner.watch(prefix, start).await
    }
    async fn watch_keys(&self, keys: &[String], start: Revision) -> Result<WatchStream, KvError> {
        self.inner.watch_keys(keys, start).await
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_does_not_poll() {
    let mem = MemKv::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = backend(&mem, "n1", 1, Duration::from_secs(30), dir.path());
    let (h1, _) = join(&n1);
    acquired(h1).await;
    let counted = CountingKv {
        inner: mem.clone(),
        ranges: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let n2 = backend(&counted, "n2", 1, Duration::from_secs(30), dir.path());
    let (h2, _) = join(&n2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_queueing = counted.ranges.load(std::sync::atomic::Ordering::SeqCst);
    // Ten minutes of waiting (virtual time; keep-alives keep both sessions).
    tokio::time::sleep(Duration::from_secs(600)).await;
    let reads = counted.ranges.load(std::sync::atomic::Ordering::SeqCst) - after_queueing;
    // Only the pause watcher's initial read may happen; the slot wait itself reads nothing.
    assert!(reads <= 1, "{reads} reads while waiting: polling");
    still_waiting(&h2).await;
    n1.release_slot().await.expect("release");
    acquired(h2).await;
}
