//! The reboot-slot protocol (SPEC §7), written once against [`Kv`].
//!
//! A queue entry is `<slot prefix><lease-id-hex>` on the daemon's session lease; entries are
//! ordered by create revision and the first `capacity` hold a slot. With capacity 1 this is
//! exactly etcd's mutex recipe, so Go daemons (which use `concurrency.Mutex` on the same prefix)
//! and this daemon exclude each other. The entry is created with its JSON value in one
//! transaction (no empty-value window) and a waiter is woken by a watch on the K entries just
//! ahead of it ([`wait_for_slot`]) — no polling, no new lease per attempt.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::QueueUpdate;
use super::kv::*;
use crate::fsm::SlotHolder;

/// The value of a queue entry (Go: `{"node","pid","acquired_at"}`; new: `boot_id`, `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotValue {
    /// Node name.
    pub node: String,
    /// Daemon pid.
    #[serde(default)]
    pub pid: u32,
    /// RFC 3339: when the entry was created (Go: when the lock was acquired).
    #[serde(default)]
    pub acquired_at: String,
    /// Boot id of the daemon that created it.
    #[serde(default)]
    pub boot_id: String,
    /// `waiting`, `held`, `rebooting`, `recovering`.
    #[serde(default)]
    pub state: String,
}

impl SlotValue {
    /// JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The longest node name copied from a queue entry (longer ones are cut with a marker).
pub const MAX_NODE_NAME: usize = 256;

/// A daemon's entry value, or `None` for anything else: not JSON, not the shape, or a node
/// name longer than [`MAX_NODE_NAME`] (the name is copied into every journal record and
/// state.json; a value in etcd must not push those over their limits, issue #20).
pub fn decode(v: &[u8]) -> Option<SlotValue> {
    serde_json::from_slice::<SlotValue>(v)
        .ok()
        .filter(|s| s.node.len() <= MAX_NODE_NAME)
}

/// Who an entry belongs to, as far as its value tells (Go entries may have an empty value
/// until the Go daemon writes its JSON).
pub fn holder_of(kv: &KeyValue) -> SlotHolder {
    match decode(&kv.value) {
        Some(v) => SlotHolder {
            node: v.node,
            since: v
                .acquired_at
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| u64::try_from(t.as_millisecond()).ok()),
        },
        None => SlotHolder {
            node: format!(
                "unknown ({})",
                crate::text::cap(
                    kv.key
                        .rsplit('/')
                        .next()
                        .unwrap_or(kv.key.as_str())
                        .to_string(),
                    MAX_NODE_NAME
                )
            ),
            since: None,
        },
    }
}

/// [`holder_of`], with an entry that is not a daemon's record named by its key below `prefix`
/// (`unknown (a/b)` for `<prefix>a/b`): the name `status --explain` hands to `cluster forget
/// --key`, so an entry under a nested key is named so that the command finds it.
pub fn holder_under(prefix: &str, kv: &KeyValue) -> SlotHolder {
    let h = holder_of(kv);
    match kv.key.strip_prefix(prefix) {
        Some(rest) if rest.contains('/') && decode(&kv.value).is_none() => SlotHolder {
            node: format!(
                "unknown ({})",
                crate::text::cap(rest.to_string(), MAX_NODE_NAME)
            ),
            ..h
        },
        _ => h,
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// It holds a slot.
    pub held: bool,
    /// 1-based position among waiters (0 when held).
    pub position: u32,
    /// The current holders.
    pub holders: Vec<SlotHolder>,
    /// Store revision of the read.
    pub revision: Revision,
    /// Keys of the holders whose value is not a daemon's record (named in a warning).
    pub foreign: Vec<String>,
}

/// Why waiting for a slot ended without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The store failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// Our entry is gone (lease expired, deleted by an operator).
    #[error("queue entry {0} vanished")]
    Lost(String),
}

/// Creates `key` with `value` on `lease` unless it exists (then reads it); returns the entry.
/// Idempotent: a retry after a lost response finds the entry created by the first attempt.
pub async fn create_entry<K: Kv>(
    kv: &K,
    key: &str,
    value: &SlotValue,
    lease: LeaseId,
) -> Result<KeyValue, SlotError> {
    let r = kv
        .txn(
            vec![Compare::CreateRevision(key.into(), CmpOp::Equal, 0)],
            vec![
                TxnOp::Put {
                    key: key.into(),
                    value: value.to_bytes(),
                    lease,
                },
                TxnOp::Get(key.into()),
            ],
            vec![TxnOp::Get(key.into())],
        )
        .await?;
    r.gets
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| SlotError::Lost(key.into()))
}

/// How long a waiter keeps re-reading through an unavailable store before it gives up its place
/// (an etcd leader election takes a few seconds; the entry lives on a lease of `lock_ttl_sec`).
pub const ELECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Where a waiter stands, read at a cost that grows with what is ahead of it, not
/// with the whole queue (issue #18): the keys created up to its own (keys only) decide whether it
/// holds a slot and name the `capacity` entries just ahead of it — the only ones it has to
/// watch — and the first `capacity` values name the holders. The decision comes from the first
/// read alone (one revision); the holders' read is for display.
async fn standing_ahead<K: Kv>(
    kv: &K,
    prefix: &str,
    key: &str,
    created: Revision,
    capacity: u32,
) -> Result<(Standing, Vec<String>), SlotError> {
    let ahead = kv
        .range(
            prefix,
            RangeOpts {
                by_create_revision: true,
                keys_only: true,
                max_create_revision: created,
                ..RangeOpts::default()
            },
        )
        .await?;
    let idx = ahead
        .kvs
        .iter()
        .position(|e| e.key == key)
        .ok_or_else(|| SlotError::Lost(key.into()))?;
    let cap = capacity.max(1) as usize;
    if idx < cap {
        let held = Standing {
            held: true,
            position: 0,
            holders: Vec::new(),
            revision: ahead.revision,
            foreign: Vec::new(),
        };
        return Ok((held, Vec::new()));
    }
    let window = ahead.kvs[idx - cap..idx]
        .iter()
        .map(|e| e.key.clone())
        .collect();
    let first = kv
        .range(
            prefix,
            RangeOpts {
                by_create_revision: true,
                limit: i64::from(capacity.max(1)),
                ..RangeOpts::default()
            },
        )
        .await?;
    let standing = Standing {
        held: false,
        position: u32::try_from(idx - cap + 1).unwrap_or(u32::MAX),
        holders: first.kvs.iter().map(|e| holder_under(prefix, e)).collect(),
        foreign: first
            .kvs
            .iter()
            .filter(|e| decode(&e.value).is_none())
            .map(|e| crate::text::cap(e.key.clone(), 512))
            .collect(),
        revision: ahead.revision,
    };
    Ok((standing, window))
}

/// Runs `read` again for up to [`ELECTION_GRACE`] while the store is unavailable, so a waiter
/// keeps its queue position across an etcd leader election instead of failing closed and
/// re-joining at the back. Anything else (entry gone, permission) fails at once.
async fn riding_out_elections<T, F, Fut>(mut read: F) -> Result<T, SlotError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SlotError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match read().await {
            Err(SlotError::Kv(KvError::Unavailable(e))) => {
                if started.elapsed() >= ELECTION_GRACE {
                    return Err(SlotError::Kv(KvError::Unavailable(e)));
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Waits until `key` holds one of `capacity` slots (the current value of the channel).
/// Sends a [`QueueUpdate`] (naming `pool`: `None` = the cluster pool, `Some(group)`) each time it
/// reads the queue, when the position or the holders changed since the last one.
///
/// Cost per hand-off is O(`capacity`), not O(queue) (issue #18): the waiter watches only the
/// `capacity` entries just ahead of it — while all of them exist at least `capacity` entries are
/// ahead, so it cannot hold a slot — and re-reads when one of them goes, or when `capacity`
/// changes (a reload: a raise can free a slot without any deletion). A broken watch only causes
/// a re-read. So the position and holders it reports are those of its last read: a waiter far
/// back reads again when the queue just ahead of it moves (`cluster status` shows the live
/// queue). Whether it holds a slot is decided by a read, never by the watch.
pub async fn wait_for_slot<K: Kv>(
    kv: &K,
    prefix: &str,
    key: &str,
    capacity: &mut watch::Receiver<u32>,
    updates: &mpsc::Sender<QueueUpdate>,
    pool: Option<&str>,
) -> Result<(), SlotError> {
    let created = riding_out_elections(|| async {
        match kv.get(key).await? {
            (Some(kv), _) => Ok(kv.create_revision),
            (None, _) => Err(SlotError::Lost(key.into())),
        }
    })
    .await?;
    let mut last: Option<QueueUpdate> = None;
    // Once the sender is gone the capacity cannot change any more: wait on the watch alone.
    let mut capacity_fixed = false;
    loop {
        let cap = *capacity.borrow_and_update();
        let (s, window) =
            riding_out_elections(|| standing_ahead(kv, prefix, key, created, cap)).await?;
        if s.held {
            return Ok(());
        }
        let update = QueueUpdate {
            position: s.position,
            holders: s.holders,
            pool: pool.map(str::to_string),
        };
        if last.as_ref() != Some(&update) {
            // A holder whose value is not a daemon's record holds its slot until someone
            // removes it: say which key, every time the queue changes (issue #20).
            for key in &s.foreign {
                tracing::warn!(event = "queue_entry_foreign", key = %key, "the queue entry {key} holds a slot but is not a daemon's record; it blocks the queue until it is removed (`clusterrebootd cluster status` shows it, `clusterrebootd cluster forget --key ENTRY` removes it)");
            }
            // Never block the protocol on a slow or gone reader: a dropped update only means a
            // status line is a little behind.
            let _ = updates.try_send(update.clone());
            last = Some(update);
        }
        // Its own entry too: an entry deleted by an operator (`cluster forget`) is noticed
        // at once, as `Lost`, instead of at the next move of the queue ahead.
        let mut watched = window;
        watched.push(key.to_string());
        let mut watch = match kv.watch_keys(&watched, s.revision + 1).await {
            Ok(w) => w,
            // The store is briefly unavailable (a leader election): re-read, which rides it out.
            Err(KvError::Unavailable(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        // Only the deletion of an entry just ahead can free a slot; a broken or ended watch
        // only causes a re-read (which fails there if the store is down).
        loop {
            tokio::select! {
                batch = watch.recv() => match batch {
                    Some(Ok(events)) => {
                        if events.iter().any(|e| matches!(e, WatchEvent::Delete { key, .. } if watched.contains(key))) {
                            break;
                        }
                    }
                    _ => break,
                },
                changed = capacity.changed(), if !capacity_fixed => {
                    if changed.is_ok() {
                        break;
                    }
                    capacity_fixed = true;
                }
            }
        }
    }
}
