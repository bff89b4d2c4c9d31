//! Every decoder of values read from etcd, through the real etcd backend (`EtcdBackend` over the
//! in-memory model `MemKv`) and `cluster status`.
//!
//! Input: the first byte picks the key family, the rest is split at NUL bytes into values (or
//! name/value pairs). Properties (fail closed: nothing others write unlocks a reboot):
//! - 0 cooldown: a record that does not decode is corrupt for the daemon, never "clear"; "clear"
//!   means a sane record that really ended; the daemon and `cluster status` agree on "corrupt";
//! - 1 health records: only a decodable, fresh, healthy record whose key names the node counts
//!   as healthy (a threshold one above that count never passes; at that count it passes unless a
//!   peer is unhealthy); a readable unhealthy peer always blocks;
//! - 2 queue entries: decoding holders never panics; reconciling deletes only this node's own
//!   stale entries (this boot, our JSON), never another node's or an undecodable one;
//! - 3 in-progress markers: any marker of another node blocks the cluster policy; a marker of this
//!   node, readable or not, is an unfinished reboot;
//! - 4 pause: any value pauses, and what is copied locally is bounded;
//! - 5 reboot requests: a key for this node is a request whatever its value, another node's is not;
//! - 6 store acceptance: after the store is replaced only a record naming the new cluster id
//!   accepts it;
//! - 7 `reboot-lease.json` (a local file, the lease carried through the reboot): any content is
//!   survived by reconcile and release.
//!
//! Every family also renders `cluster status`, which must escape every control character.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use clusterrebootd::clock::Clock;
use clusterrebootd::config::load::from_strs;
use clusterrebootd::config::{Policies, Settings, ValidateEnv, validate_loaded};
use clusterrebootd::coord::etcd::{
    CooldownRecord, EtcdBackend, EtcdConfig, LeaseStore, MAX_COOLDOWN_SEC, StoreAccepted,
    decode_request,
};
use clusterrebootd::coord::keys::Keys;
use clusterrebootd::coord::kv::{Kv, RangeOpts};
use clusterrebootd::coord::memkv::MemKv;
use clusterrebootd::coord::slots::{SlotValue, holder_of};
use clusterrebootd::coord::{CoordError, Coordinator, HealthRecord};
use clusterrebootd::fsm::{CooldownStatus, PolicyVerdict};
use libfuzzer_sys::fuzz_target;

const ME: &str = "me";
const BOOT: &str = "boot-me";
/// 2026-11-24T22:00:00Z.
const ORIGIN_MS: u64 = 1_795_903_200_000;
const STALE_AFTER: Duration = Duration::from_secs(60);

const CONFIG: &str = "node_name: me\nlock_backend: etcd\netcd_namespace: /prod\n\
etcd_endpoints: ['http://127.0.0.1:2379']\n\
reboot_required_detectors: [{type: file, name: f, path: /run/reboot-required}]\n\
health_script: /bin/true\nreboot_command: [/bin/true]\nmax_concurrent_reboots: 2\n";

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        let env = ValidateEnv { hostname: None };
        let loaded = from_strs(&[CONFIG]).expect("fuzz configuration parses");
        validate_loaded(loaded, &env)
            .expect("fuzz configuration validates")
            .settings
    })
}

fn keys() -> Keys {
    Keys::new("/prod", "/clusterrebootd/lock")
}

/// Where `reboot-lease.json` lives for family 7 (tmpfs when there is one).
fn lease_file() -> &'static std::path::PathBuf {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let base = std::path::PathBuf::from("/dev/shm");
        let base = if base.is_dir() {
            base
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("clusterrebootd-fuzz-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("work directory");
        dir.join("reboot-lease.json")
    })
}

fn backend(
    kv: &MemKv,
    clock: &Clock,
    lease_store: LeaseStore,
    capacity: u32,
) -> EtcdBackend<MemKv> {
    let mut cfg = EtcdConfig::new(
        ME,
        BOOT,
        keys(),
        capacity,
        Duration::from_secs(30),
        lease_store,
    );
    cfg.clock = clock.clone();
    cfg.stale_after = STALE_AFTER;
    EtcdBackend::new(kv.clone(), cfg)
}

fn memory() -> LeaseStore {
    LeaseStore::Memory(Default::default())
}

/// `cluster status` over the same store: never fails on values, and escapes control characters.
async fn status(kv: &MemKv) -> bool {
    let (text, corrupt) = clusterrebootd::fuzzing::cluster_status(kv, &keys(), settings())
        .await
        .expect("memkv is available");
    assert!(
        !text.chars().any(|c| (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
        "cluster status prints a control character raw: {text:?}"
    );
    corrupt
}

async fn put(kv: &MemKv, key: &str, value: &[u8]) {
    kv.put(key, value.to_vec(), 0).await.expect("memkv put");
}

fn pairs(segs: &[&[u8]]) -> Vec<(String, Vec<u8>)> {
    segs.chunks(2)
        .map(|p| {
            (
                String::from_utf8_lossy(p[0]).into_owned(),
                p.get(1).map(|v| v.to_vec()).unwrap_or_default(),
            )
        })
        .collect()
}

async fn cooldown(kv: &MemKv, clock: &Clock, flags: u8, value: &[u8]) {
    let lease = if flags & 0x80 != 0 {
        kv.lease_grant(Duration::from_secs(1 + u64::from(flags & 0x3f)))
            .await
            .expect("lease")
    } else {
        0
    };
    kv.put(&keys().cooldown(), value.to_vec(), lease)
        .await
        .expect("put");
    let b = backend(kv, clock, memory(), 1);
    let daemon = b.read_cooldown().await;
    let decoded = serde_json::from_slice::<CooldownRecord>(value);
    match (&daemon, &decoded) {
        (Err(CoordError::Corrupt { .. }), _) => {}
        (Err(e), _) => panic!("unexpected cooldown error: {e}"),
        (Ok(_), Err(e)) => panic!("an undecodable cooldown record ({e}) was read as {daemon:?}"),
        (Ok(CooldownStatus::Clear), Ok(rec)) => {
            assert!(
                rec.duration_sec <= MAX_COOLDOWN_SEC,
                "absurd duration read as clear"
            );
            let started: jiff::Timestamp = rec.started_at.parse().expect("clear needs a start");
            let now = clock.now().as_millisecond();
            let end = started.as_millisecond().min(now) + rec.duration_sec as i64 * 1000;
            assert!(end <= now, "cooldown {rec:?} read as clear at {now}");
        }
        (Ok(CooldownStatus::Active { .. }), Ok(_)) => {}
        (Ok(other), Ok(_)) => panic!("read_cooldown answers {other:?}"),
    }
    let corrupt = status(kv).await;
    assert_eq!(
        corrupt,
        daemon.is_err(),
        "cluster status and the daemon disagree on the cooldown record: {daemon:?}"
    );
}

async fn health(kv: &MemKv, clock: &Clock, segs: &[&[u8]]) {
    let prefix = keys().health_prefix();
    let now = clock.now();
    let (mut counted, mut unhealthy) = (0u64, false);
    for (name, value) in pairs(segs) {
        put(kv, &format!("{prefix}{name}"), &value).await;
    }
    // The reference: what the daemon may count, from the store's contents.
    for kv in kv
        .range(&prefix, RangeOpts::default())
        .await
        .expect("range")
        .kvs
    {
        let name = &kv.key[prefix.len()..];
        if name.is_empty() || name.contains('/') || name == ME {
            continue;
        }
        let Ok(r) = serde_json::from_slice::<HealthRecord>(&kv.value) else {
            continue;
        };
        if !r.node.is_empty() && r.node != name {
            continue;
        }
        if !r.healthy {
            unhealthy = true;
        } else if r
            .reported_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|t| now.duration_since(t).unsigned_abs() <= STALE_AFTER)
        {
            counted += 1;
        }
    }
    let b = backend(kv, clock, memory(), 1);
    let verdict = b.cluster_health().await.expect("memkv is available");
    assert!(
        !unhealthy || matches!(verdict, PolicyVerdict::Blocked { .. }),
        "an unhealthy peer did not block: {verdict:?}"
    );
    let at_least = |n: u64| Policies {
        min_healthy_absolute: n,
        ..Policies::default()
    };
    b.set_policies(at_least(counted + 1), STALE_AFTER);
    let above = b.cluster_health().await.expect("memkv is available");
    assert!(
        !matches!(above, PolicyVerdict::Pass),
        "{} healthy peers at most, yet a minimum of {} passes",
        counted,
        counted + 1
    );
    if counted > 0 {
        b.set_policies(at_least(counted), STALE_AFTER);
        let exact = b.cluster_health().await.expect("memkv is available");
        assert_eq!(
            matches!(exact, PolicyVerdict::Pass),
            !unhealthy,
            "{counted} healthy peers, a minimum of {counted}: {exact:?}"
        );
    }
    status(kv).await;
}

async fn queue(kv: &MemKv, clock: &Clock, flags: u8, segs: &[&[u8]]) {
    let prefix = keys().slot_prefix();
    for (i, v) in segs.iter().enumerate() {
        put(kv, &format!("{prefix}{:x}", 0x1000 + i), v).await;
    }
    let before = kv
        .range(&prefix, RangeOpts::default())
        .await
        .expect("range")
        .kvs;
    for e in &before {
        let h = holder_of(e);
        assert!(!h.node.is_empty() || serde_json::from_slice::<SlotValue>(&e.value).is_ok());
    }
    let capacity = u32::from(flags % 4) + 1;
    let ro = {
        let mut cfg = EtcdConfig::new(
            ME,
            BOOT,
            keys(),
            capacity,
            Duration::from_secs(30),
            memory(),
        );
        cfg.clock = clock.clone();
        cfg.read_only = true;
        EtcdBackend::new(kv.clone(), cfg)
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    match ro.join_queue(tx).await {
        Ok(()) | Err(CoordError::Busy(_)) => {}
        Err(e) => panic!("read-only join: {e}"),
    }
    let b = backend(kv, clock, memory(), capacity);
    let _ = b.cluster_health().await.expect("memkv is available");
    status(kv).await;
    let _ = b.reconcile().await.expect("memkv is available");
    let after = kv
        .range(&prefix, RangeOpts::default())
        .await
        .expect("range")
        .kvs;
    for e in &before {
        let ours_stale = serde_json::from_slice::<SlotValue>(&e.value)
            .is_ok_and(|v| v.node == ME && v.boot_id == BOOT);
        if !ours_stale {
            assert!(
                after.iter().any(|a| a.key == e.key),
                "reconcile deleted {} (value {:?}), which is not this node's stale entry",
                e.key,
                String::from_utf8_lossy(&e.value)
            );
        }
    }
}

async fn markers(kv: &MemKv, clock: &Clock, segs: &[&[u8]]) {
    let prefix = keys().in_progress_prefix();
    for (name, value) in pairs(segs) {
        put(kv, &format!("{prefix}{name}"), &value).await;
    }
    let stored = kv
        .range(&prefix, RangeOpts::default())
        .await
        .expect("range")
        .kvs;
    let b = backend(kv, clock, memory(), 1);
    let verdict = b.cluster_health().await.expect("memkv is available");
    if stored.iter().any(|e| &e.key[prefix.len()..] != ME) {
        assert!(
            matches!(verdict, PolicyVerdict::Blocked { .. }),
            "another node's in-progress marker without a slot did not block: {verdict:?}"
        );
    }
    let mine = stored.iter().any(|e| &e.key[prefix.len()..] == ME);
    let unfinished = b.reconcile().await.expect("memkv is available");
    assert_eq!(
        unfinished.is_some(),
        mine,
        "this node's in-progress marker and reconcile disagree: {unfinished:?}"
    );
    status(kv).await;
}

async fn pause(kv: &MemKv, clock: &Clock, value: &[u8]) {
    put(kv, &keys().pause(), value).await;
    let b = backend(kv, clock, memory(), 1);
    let reason = b.pause().await.expect("memkv is available");
    let reason = reason.expect("any value under the pause key pauses");
    let bound = clusterrebootd::text::MAX_COPIED_TEXT + 256 + 64 + 200;
    assert!(
        reason.len() <= bound,
        "a pause reason of {} bytes is copied",
        reason.len()
    );
    status(kv).await;
}

async fn request(kv: &MemKv, clock: &Clock, flags: u8, value: &[u8]) {
    let for_me = flags & 1 == 0;
    let node = if for_me { ME } else { "other" };
    put(kv, &keys().request(node), value).await;
    let b = backend(kv, clock, memory(), 1);
    // Only `cluster request-reboot`'s record is a request (fail closed).
    assert_eq!(
        b.reboot_requested().await.expect("memkv is available"),
        for_me && decode_request(value).is_ok()
    );
    status(kv).await;
}

async fn store(kv: &MemKv, clock: &Clock, value: &[u8]) {
    let b = backend(kv, clock, memory(), 1);
    b.check_store()
        .await
        .expect("the first check pins the store");
    kv.replace_with_empty(0xbeef);
    put(kv, &keys().store_accepted(), value).await;
    let accepts =
        serde_json::from_slice::<StoreAccepted>(value).is_ok_and(|a| a.cluster_id == "beef");
    match b.check_store().await {
        Ok(()) => assert!(
            accepts,
            "a replaced store was accepted by {:?}",
            String::from_utf8_lossy(value)
        ),
        Err(CoordError::StoreChanged(_)) => assert!(!accepts, "a valid acceptance was refused"),
        Err(e) => panic!("check_store: {e}"),
    }
}

async fn lease_json(kv: &MemKv, clock: &Clock, value: &[u8]) {
    let path = lease_file();
    std::fs::write(path, value).expect("write reboot-lease.json");
    let b = backend(kv, clock, LeaseStore::File(path.clone()), 1);
    let _ = b.reconcile().await;
    let _ = b.release_slot().await;
    let _ = std::fs::remove_file(path);
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let segs: Vec<&[u8]> = rest.split(|&b| b == 0).take(16).collect();
    let value = rest;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kv = MemKv::new();
        let clock = Clock::simulated(ORIGIN_MS);
        match flags % 8 {
            0 => cooldown(&kv, &clock, flags, value).await,
            1 => health(&kv, &clock, &segs).await,
            2 => queue(&kv, &clock, flags / 8, &segs).await,
            3 => markers(&kv, &clock, &segs).await,
            4 => pause(&kv, &clock, value).await,
            5 => request(&kv, &clock, flags / 8, value).await,
            6 => store(&kv, &clock, value).await,
            _ => lease_json(&kv, &clock, value).await,
        }
    });
});
