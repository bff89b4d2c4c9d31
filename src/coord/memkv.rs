//! A deterministic in-memory model of etcd v3 behind the [`Kv`] trait, so the coordination
//! protocol (slots, cooldown, health registry) runs unchanged in unit tests and in the cluster
//! simulator (SPEC §2, §11, §12.2).
//!
//! # The model
//! - One global revision: 1 for the empty store, +1 for every write transaction that changed
//!   something (a put, a delete of an existing key, a transaction, a lease expiry or revoke that
//!   deleted keys). Each key keeps `create_revision`, `mod_revision`, `version` and its lease.
//! - Transactions evaluate their compares and apply the chosen branch under one lock, at one new
//!   revision; `Get` ops see the writes made earlier in the same branch (as in etcd).
//! - Leases expire on tokio's clock (`tokio::time::Instant`), so tests and the simulator run with
//!   paused time. Each lease has a timer task that deletes its keys at the deadline even if
//!   nobody calls the store; every call also first expires overdue leases, so the result is the
//!   same whichever runs first. Lease ids are 1, 2, 3… and never reused.
//! - Watches replay the event history from their start revision (one batch per revision), then
//!   deliver live changes. History older than the compaction point is gone.
//! - Faults are injected through inherent methods ([`MemKv::set_available`],
//!   [`MemKv::expire_lease`], [`MemKv::drop_watches`], [`MemKv::delay_watch_events`],
//!   [`MemKv::compact`]); [`MemKv::dump`] exposes the keys for invariant checks, and
//!   [`MemKv::load`] counts the requests made (the etcd load of a simulated fleet).
//! - Deterministic: no randomness, no wall clock, `BTreeMap` iteration everywhere. Clones share
//!   one store, like several clients of one cluster.
//!
//! # What it does not model
//! - Multiple members, raft, leader election, and the lease extension etcd grants after a leader
//!   change: the store is one linearizable member. While "unavailable" the clock keeps running
//!   and leases keep expiring (clients are cut off from a live cluster).
//! - Per-client partitions: availability is one switch for every clone.
//! - Reads at a past revision, sorting other than by key or create revision, range `count`/`more`,
//!   `NotEqual` compares, prefix deletes, watch progress notifications, previous-kv in events.
//! - TTL granularity (etcd rounds to seconds and enforces a minimum TTL), request size limits,
//!   automatic compaction: history grows until [`MemKv::compact`] is called.
//!
//! The timer and watch tasks are spawned with `tokio::spawn`, so the `Kv` methods must run inside
//! a tokio runtime (the inherent fault-injection methods need not).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::kv::{
    CmpOp, Compare, KeyValue, Kv, KvError, LeaseId, RangeOpts, RangeResult, Revision,
    StoreIdentity, TxnOp, TxnResult, WatchEvent, WatchStream,
};

/// Capacity of the channel handed to a watcher; the store never blocks on it (a per-watch task
/// buffers without bound and forwards).
const WATCH_CHANNEL_CAPACITY: usize = 64;

/// The in-memory etcd. Cheap to clone; clones share the same store.
#[derive(Debug, Clone, Default)]
pub struct MemKv {
    inner: Arc<Mutex<State>>,
}

/// One lease.
#[derive(Debug)]
struct Lease {
    /// Granted TTL (what keep-alive returns).
    ttl: Duration,
    /// When it expires unless kept alive.
    deadline: Instant,
    /// Keys attached to it.
    keys: BTreeSet<String>,
}

/// Sizes of the store's collections ([`MemKv::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemKvStats {
    /// Live keys.
    pub keys: usize,
    /// Live leases.
    pub leases: usize,
    /// Open watches (the store's side; a dropped stream is noticed at its next event).
    pub watchers: usize,
    /// Revisions of history kept for watches.
    pub history: usize,
}

/// What clients asked of the store since it was created ([`MemKv::load`]): the etcd load a
/// simulated fleet causes, per kind of request (issue #18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemKvLoad {
    /// Range reads (prefix reads).
    pub ranges: u64,
    /// Single-key reads.
    pub gets: u64,
    /// Requests that wrote (put, delete, transactions whose branch wrote something).
    pub writes: u64,
    /// Transactions, whatever their branch did (a put is one).
    pub txns: u64,
    /// Leases granted.
    pub lease_grants: u64,
    /// Lease keep-alives.
    pub keep_alives: u64,
    /// Lease revokes and TTL lookups.
    pub lease_other: u64,
    /// Watches opened.
    pub watches: u64,
    /// Watch events queued to watchers (each event counted once per watcher that gets it).
    pub watch_events: u64,
}

/// One batch queued for a watcher: when to deliver it, and the events.
type Batch = (Instant, Vec<WatchEvent>);

/// The store's side of one open watch (the prefix is its key in `State::watchers`).
#[derive(Debug)]
struct Watcher {
    /// Only the key itself, not every key that starts with it ([`Kv::watch_keys`]).
    exact: bool,
    /// Unbounded queue to the watch's forwarding task (shared by the keys of one `watch_keys`).
    queue: mpsc::UnboundedSender<Batch>,
    /// Ends the stream with this error (held by the first key of a `watch_keys` only).
    cancel: Option<oneshot::Sender<KvError>>,
}

/// Everything behind the mutex.
#[derive(Debug)]
struct State {
    /// Current store revision.
    revision: Revision,
    /// Live keys.
    keys: BTreeMap<String, KeyValue>,
    /// Live leases.
    leases: BTreeMap<LeaseId, Lease>,
    /// Every live lease by (deadline, id): expiring overdue leases, which every call does,
    /// looks at the overdue ones only instead of scanning every lease (a 1 000-node simulation
    /// spent a sixth of its time in that scan, issue #18).
    deadlines: BTreeSet<(Instant, LeaseId)>,
    /// Next lease id to hand out.
    next_lease: LeaseId,
    /// Events of every revision ≥ `compacted`, one entry per revision, oldest first.
    history: Vec<(Revision, Vec<WatchEvent>)>,
    /// Oldest revision a watch may start from.
    compacted: Revision,
    /// Revisions of history kept at most (0 = all): etcd's revision-based auto-compaction.
    history_limit: usize,
    /// Open watches by the prefix they watch: a write finds its watchers by looking up the
    /// prefixes of its keys instead of testing every watch (with a watch per waiter and per key
    /// ahead, testing them all was a quarter of a 1 000-node plan, issue #18).
    watchers: BTreeMap<String, Vec<Watcher>>,
    /// Open watches in `watchers`.
    watcher_count: usize,
    /// Watches whose forwarding task ended since the last sweep (their streams were dropped).
    ended: Arc<std::sync::atomic::AtomicUsize>,
    /// Fault switch: false makes every call fail.
    available: bool,
    /// Extra latency added to watch deliveries.
    watch_delay: Duration,
    /// The cluster id every response carries (a replaced store has another one).
    cluster_id: u64,
    /// Requests counted so far.
    load: MemKvLoad,
}

impl Default for State {
    fn default() -> Self {
        State {
            revision: 1,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_lease: 1,
            history: Vec::new(),
            compacted: 1,
            history_limit: 0,
            watchers: BTreeMap::new(),
            watcher_count: 0,
            ended: Arc::default(),
            available: true,
            watch_delay: Duration::ZERO,
            cluster_id: 0x00c1_5e7e_0001,
            load: MemKvLoad::default(),
        }
    }
}

/// Locks the state; a panic elsewhere while holding the lock leaves data that is still
/// consistent per operation (every mutation completes before unlocking), so poison is ignored.
fn lock(inner: &Mutex<State>) -> MutexGuard<'_, State> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Fails if the fault switch says the store is unreachable.
    fn check_available(&self) -> Result<(), KvError> {
        if self.available {
            Ok(())
        } else {
            Err(KvError::Unavailable("injected outage (memkv)".into()))
        }
    }

    /// Expires every lease whose deadline has passed, oldest deadline first (ties by id), each
    /// at its own revision.
    fn expire_overdue(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                return;
            }
            if !self.remove_lease(id, now) {
                // Not a live lease (cannot happen: both collections change together); drop
                // the entry so the loop ends.
                self.deadlines.remove(&(deadline, id));
            }
        }
    }

    /// Moves lease `id`'s deadline (grant, keep-alive), keeping [`State::deadlines`] in step.
    fn set_deadline(&mut self, id: LeaseId, deadline: Instant) {
        if let Some(l) = self.leases.get_mut(&id) {
            self.deadlines.remove(&(l.deadline, id));
            l.deadline = deadline;
            self.deadlines.insert((deadline, id));
        }
    }

    /// Removes a lease and deletes its keys at one new revision; false if it did not exist.
    fn remove_lease(&mut self, id: LeaseId, now: Instant) -> bool {
        let Some(lease) = self.leases.remove(&id) else {
            return false;
        };
        self.deadlines.remove(&(lease.deadline, id));
        let rev = self.revision + 1;
        let events: Vec<WatchEvent> = lease
            .keys
            .into_iter()
            .filter_map(|key| self.keys.remove(&key).map(|_| key))
            .map(|key| WatchEvent::Delete {
                key,
                mod_revision: rev,
            })
            .collect();
        self.commit(rev, events, now);
        true
    }

    /// Records the events of a write at `rev` (nothing if no event: the revision stays), and
    /// queues them to the matching watchers.
    fn commit(&mut self, rev: Revision, events: Vec<WatchEvent>, now: Instant) {
        if events.is_empty() {
            return;
        }
        self.revision = rev;
        let deliver_at = now + self.watch_delay;
        let mut delivered = 0;
        let mut prefixes = BTreeSet::new();
        for e in &events {
            let key = e.key();
            for end in key.char_indices().map(|(i, _)| i).chain([key.len()]) {
                if self.watchers.contains_key(&key[..end]) {
                    prefixes.insert(key[..end].to_owned());
                }
            }
        }
        for prefix in prefixes {
            let under = matching(&events, &prefix, false);
            let exact = matching(&events, &prefix, true);
            let Some(bucket) = self.watchers.get_mut(&prefix) else {
                continue;
            };
            let before = bucket.len();
            bucket.retain(|w| {
                if w.queue.is_closed() {
                    return false;
                }
                let batch = if w.exact { &exact } else { &under };
                if batch.is_empty() {
                    return true;
                }
                delivered += batch.len() as u64;
                w.queue.send((deliver_at, batch.clone())).is_ok()
            });
            self.watcher_count -= before - bucket.len();
            if bucket.is_empty() {
                self.watchers.remove(&prefix);
            }
        }
        self.load.watch_events += delivered;
        // A watch whose stream was dropped goes soon, whatever its prefix: pruning only those
        // that failed a send kept every dead watch on a key that never changes (the soak found
        // one per daemon incarnation, issue #20). Sweep everything once the ended ones are an
        // eighth of all, so the sweeps cost O(1) per ended watch.
        let ended = self.ended.load(std::sync::atomic::Ordering::Relaxed);
        if ended > 0 && ended * 8 >= self.watcher_count {
            self.ended.store(0, std::sync::atomic::Ordering::Relaxed);
            for bucket in self.watchers.values_mut() {
                bucket.retain(|w| !w.queue.is_closed());
            }
            self.watchers.retain(|_, bucket| !bucket.is_empty());
            self.watcher_count = self.watchers.values().map(Vec::len).sum();
        }
        self.history.push((rev, events));
        // Compact in steps of half the limit, so the history is shifted once per limit/2 writes.
        let limit = self.history_limit;
        if limit > 0 && self.history.len() >= limit + limit / 2 {
            let drop = self.history.len() - limit;
            self.history.drain(..drop);
            self.compacted = self.history.first().map_or(rev, |(r, _)| *r);
        }
    }

    /// Ends every open watch stream with `error`.
    fn cancel_watches(&mut self, error: &KvError) {
        self.watcher_count = 0;
        for w in std::mem::take(&mut self.watchers).into_values().flatten() {
            // The forwarding task may already be gone (receiver dropped): nothing to tell.
            if let Some(cancel) = w.cancel {
                let _ = cancel.send(error.clone());
            }
        }
    }

    /// Reads one key.
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key).cloned()
    }

    /// Evaluates one compare (a missing key has create revision and version 0; a value compare
    /// on a missing key fails, as in etcd).
    fn compare(&self, cmp: &Compare) -> bool {
        fn holds<T: Ord>(lhs: &T, op: CmpOp, rhs: &T) -> bool {
            match op {
                CmpOp::Equal => lhs == rhs,
                CmpOp::Greater => lhs > rhs,
                CmpOp::Less => lhs < rhs,
            }
        }
        match cmp {
            Compare::CreateRevision(key, op, rhs) => {
                let lhs = self.keys.get(key).map_or(0, |kv| kv.create_revision);
                holds(&lhs, *op, rhs)
            }
            Compare::Version(key, op, rhs) => {
                let lhs = self.keys.get(key).map_or(0, |kv| kv.version);
                holds(&lhs, *op, rhs)
            }
            Compare::Value(key, op, rhs) => self
                .keys
                .get(key)
                .is_some_and(|kv| holds(&kv.value, *op, rhs)),
        }
    }

    /// Checks a branch before applying anything, so a failing branch writes nothing.
    fn validate(&self, ops: &[TxnOp]) -> Result<(), KvError> {
        let mut written = BTreeSet::new();
        for op in ops {
            let key = match op {
                TxnOp::Put { key, lease, .. } => {
                    if *lease != 0 && !self.leases.contains_key(lease) {
                        return Err(KvError::LeaseNotFound(*lease));
                    }
                    key
                }
                TxnOp::Delete(key) => key,
                TxnOp::Get(_) => continue,
            };
            if !written.insert(key.as_str()) {
                return Err(KvError::Other(format!(
                    "duplicate key given in txn request: {key}"
                )));
            }
        }
        Ok(())
    }

    /// Applies a validated branch at one new revision; returns the `Get` results.
    fn apply(&mut self, ops: Vec<TxnOp>, now: Instant) -> Vec<Option<KeyValue>> {
        let rev = self.revision + 1;
        let mut events = Vec::new();
        let mut gets = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    events.push(WatchEvent::Put(self.put_at(rev, key, value, lease)));
                }
                TxnOp::Delete(key) => {
                    if let Some(old) = self.keys.remove(&key) {
                        self.detach(&key, old.lease);
                        events.push(WatchEvent::Delete {
                            key,
                            mod_revision: rev,
                        });
                    }
                }
                TxnOp::Get(key) => gets.push(self.get(&key)),
            }
        }
        self.commit(rev, events, now);
        gets
    }

    /// Writes one key at `rev` (the lease was validated) and returns it.
    fn put_at(&mut self, rev: Revision, key: String, value: Vec<u8>, lease: LeaseId) -> KeyValue {
        let (create_revision, version, old_lease) = match self.keys.get(&key) {
            Some(old) => (old.create_revision, old.version + 1, old.lease),
            None => (rev, 1, 0),
        };
        if old_lease != lease {
            self.detach(&key, old_lease);
        }
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(key.clone());
        }
        let kv = KeyValue {
            key: key.clone(),
            value,
            create_revision,
            mod_revision: rev,
            version,
            lease,
        };
        self.keys.insert(key, kv.clone());
        kv
    }

    /// Forgets that `key` is attached to `lease`.
    fn detach(&mut self, key: &str, lease: LeaseId) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }
}

/// The events of `events` under `prefix` (or of exactly that key).
fn matching(events: &[WatchEvent], prefix: &str, exact: bool) -> Vec<WatchEvent> {
    events
        .iter()
        .filter(|e| {
            if exact {
                e.key() == prefix
            } else {
                e.key().starts_with(prefix)
            }
        })
        .cloned()
        .collect()
}

impl MemKv {
    /// An empty, available store at revision 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state after expiring overdue leases (every operation sees expiries on time).
    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = lock(&self.inner);
        state.expire_overdue(Instant::now());
        state
    }

    /// Like [`Self::state`], but fails while the store is unavailable.
    fn available_state(&self) -> Result<MutexGuard<'_, State>, KvError> {
        let state = self.state();
        state.check_available()?;
        Ok(state)
    }

    /// Fault injection: while false every [`Kv`] call fails with [`KvError::Unavailable`], and
    /// switching it off ends every open watch stream with that error (an etcd outage). Leases
    /// keep expiring meanwhile.
    pub fn set_available(&self, available: bool) {
        let mut state = self.state();
        state.available = available;
        if !available {
            state.cancel_watches(&KvError::Unavailable("injected outage (memkv)".into()));
        }
    }

    /// Fault injection: the store is replaced by an empty one (disaster recovery from nothing,
    /// or a new etcd cluster at the same address): every key, lease and the history are gone,
    /// the revision starts again at 1, open watches end, and the cluster id is `cluster_id`.
    pub fn replace_with_empty(&self, cluster_id: u64) {
        let mut state = self.state();
        state.cancel_watches(&KvError::Unavailable("store replaced (memkv)".into()));
        state.keys.clear();
        state.leases.clear();
        state.deadlines.clear();
        state.history.clear();
        state.revision = 1;
        state.compacted = 1;
        state.cluster_id = cluster_id;
    }

    /// Fault injection: expires lease `id` now, deleting its keys, as if its holder had stopped
    /// keeping it alive long ago. Returns whether the lease existed.
    pub fn expire_lease(&self, id: LeaseId) -> bool {
        self.state().remove_lease(id, Instant::now())
    }

    /// Fault injection: ends every open watch stream with an `Err`, as a network blip does, so
    /// the protocol's re-read-and-re-watch path runs. The store itself is unaffected.
    pub fn drop_watches(&self) {
        self.state()
            .cancel_watches(&KvError::Unavailable("watch stream dropped (memkv)".into()));
    }

    /// Fault injection: delivers watch events written from now on `delay` late (a slow
    /// network); `Duration::ZERO` restores immediate delivery. Order is always kept.
    pub fn delay_watch_events(&self, delay: Duration) {
        self.state().watch_delay = delay;
    }

    /// Fault injection: forgets the history before `revision` (clamped to the current
    /// revision), so a watch starting earlier fails with [`KvError::Compacted`].
    pub fn compact(&self, revision: Revision) {
        let mut state = self.state();
        let revision = revision.min(state.revision);
        if revision > state.compacted {
            state.compacted = revision;
            state.history.retain(|(rev, _)| *rev >= revision);
        }
    }

    /// Keeps at most the last `revisions` revisions of history (between `revisions` and 1.5 ×
    /// that), like etcd's `--auto-compaction-mode=revision`: without it a long simulation keeps
    /// every heartbeat it ever wrote (a 1 000-node plan held ~300 MiB of history, issue #18).
    /// A watch that starts before the kept history fails with [`KvError::Compacted`], as on etcd.
    pub fn auto_compact(&self, revisions: usize) {
        self.state().history_limit = revisions;
    }

    /// Every live key in key order, for invariant checks (works while unavailable).
    pub fn dump(&self) -> Vec<KeyValue> {
        self.state().keys.values().cloned().collect()
    }

    /// The current store revision, for invariant checks and determinism comparisons.
    pub fn revision(&self) -> Revision {
        self.state().revision
    }

    /// How much the store holds, so a long simulation (the soak) can show it stays bounded.
    pub fn stats(&self) -> MemKvStats {
        let state = self.state();
        MemKvStats {
            keys: state.keys.len(),
            leases: state.leases.len(),
            watchers: state.watcher_count,
            history: state.history.len(),
        }
    }

    /// Every request counted since the store was created (not reset by
    /// [`MemKv::replace_with_empty`]): what the fleet would ask of etcd.
    pub fn load(&self) -> MemKvLoad {
        lock(&self.inner).load
    }

    /// Grants a lease (synchronous part of [`Kv::lease_grant`]); the caller spawns its timer.
    fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let mut state = self.available_state()?;
        state.load.lease_grants += 1;
        let id = state.next_lease;
        state.next_lease += 1;
        let deadline = Instant::now() + ttl;
        state.leases.insert(
            id,
            Lease {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        state.deadlines.insert((deadline, id));
        Ok(id)
    }

    /// Registers a watch of `targets` (a prefix, or exact keys) on one queue and queues the
    /// replayed history (synchronous part of [`Kv::watch`] and [`Kv::watch_keys`]).
    fn open_watch(
        &self,
        targets: &[String],
        exact: bool,
        start_revision: Revision,
    ) -> Result<(mpsc::UnboundedReceiver<Batch>, oneshot::Receiver<KvError>), KvError> {
        let mut state = self.available_state()?;
        // etcd treats a start revision of 0 as "from the next revision".
        let start = if start_revision <= 0 {
            state.revision + 1
        } else {
            start_revision
        };
        if start < state.compacted {
            return Err(KvError::Compacted(start_revision));
        }
        let (queue, queue_rx) = mpsc::unbounded_channel();
        let (cancel, cancel_rx) = oneshot::channel();
        let deliver_at = Instant::now() + state.watch_delay;
        // The history is in revision order: find the start instead of scanning it all.
        let from = state.history.partition_point(|(rev, _)| *rev < start);
        let mut replayed = 0;
        for (_, events) in &state.history[from..] {
            let batch: Vec<WatchEvent> = targets
                .iter()
                .flat_map(|t| matching(events, t, exact))
                .collect();
            replayed += batch.len() as u64;
            if !batch.is_empty() {
                // The receiver is alive: it was created above.
                let _ = queue.send((deliver_at, batch));
            }
        }
        state.load.watches += targets.len() as u64;
        state.load.watch_events += replayed;
        let mut cancel = Some(cancel);
        for t in targets {
            state.watchers.entry(t.clone()).or_default().push(Watcher {
                exact,
                queue: queue.clone(),
                cancel: cancel.take(),
            });
        }
        state.watcher_count += targets.len();
        Ok((queue_rx, cancel_rx))
    }
}

/// Deletes a lease's keys at its deadline even if nobody calls the store; re-reads the deadline
/// after every sleep (keep-alives move it) and stops when the lease or the store is gone.
async fn lease_timer(store: Weak<Mutex<State>>, id: LeaseId) {
    loop {
        let deadline = {
            let Some(inner) = store.upgrade() else {
                return;
            };
            let mut state = lock(&inner);
            let now = Instant::now();
            match state.leases.get(&id) {
                None => return,
                Some(lease) if lease.deadline <= now => {
                    state.expire_overdue(now);
                    return;
                }
                Some(lease) => lease.deadline,
            }
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// Runs `fut` unless the watch is cancelled or its receiver dropped first. On cancellation the
/// error is sent (the stream's last item) and `None` returned.
async fn unless_cancelled<F: Future>(
    fut: F,
    cancel: &mut oneshot::Receiver<KvError>,
    out: &mpsc::Sender<Result<Vec<WatchEvent>, KvError>>,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        err = cancel => {
            let err = err.unwrap_or_else(|_| KvError::Unavailable("memkv store dropped".into()));
            // If the receiver is gone there is nobody to tell.
            let _ = out.send(Err(err)).await;
            None
        }
        () = out.closed() => None,
        value = fut => Some(value),
    }
}

impl MemKv {
    /// One watch stream of `targets`: one queue, one forwarding task, however many keys (a
    /// waiter watches K + 1 keys; a task and two channels per key were most of a 10 000-node
    /// plan's memory, issue #18).
    fn open_stream(
        &self,
        targets: &[String],
        exact: bool,
        start_revision: Revision,
    ) -> Result<WatchStream, KvError> {
        let (queue, cancel) = self.open_watch(targets, exact, start_revision)?;
        let (out, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        let ended = EndedWatch(self.state().ended.clone(), targets.len());
        tokio::spawn(async move {
            let _ended = ended;
            forward_watch(queue, cancel, out).await;
        });
        Ok(rx)
    }
}

/// Counts a watch whose forwarding task ended (dropped with the task), so the store knows when
/// sweeping its dead watches is worth it.
struct EndedWatch(Arc<std::sync::atomic::AtomicUsize>, usize);

impl Drop for EndedWatch {
    fn drop(&mut self) {
        self.0
            .fetch_add(self.1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Moves batches from the store's unbounded queue to the watcher's bounded channel, honouring
/// delivery delays; a cancellation overtakes pending batches, like a broken stream.
async fn forward_watch(
    mut queue: mpsc::UnboundedReceiver<Batch>,
    mut cancel: oneshot::Receiver<KvError>,
    out: mpsc::Sender<Result<Vec<WatchEvent>, KvError>>,
) {
    loop {
        let Some(Some((deliver_at, events))) =
            unless_cancelled(queue.recv(), &mut cancel, &out).await
        else {
            return;
        };
        if deliver_at > Instant::now()
            && unless_cancelled(tokio::time::sleep_until(deliver_at), &mut cancel, &out)
                .await
                .is_none()
        {
            return;
        }
        match unless_cancelled(out.reserve(), &mut cancel, &out).await {
            Some(Ok(permit)) => permit.send(Ok(events)),
            _ => return,
        }
    }
}

impl Kv for MemKv {
    async fn range(&self, prefix: &str, opts: RangeOpts) -> Result<RangeResult, KvError> {
        let mut state = self.available_state()?;
        state.load.ranges += 1;
        let mut kvs: Vec<KeyValue> = state
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, kv)| {
                opts.max_create_revision == 0 || kv.create_revision <= opts.max_create_revision
            })
            .map(|(_, kv)| {
                if opts.keys_only {
                    KeyValue {
                        value: Vec::new(),
                        key: kv.key.clone(),
                        ..*kv
                    }
                } else {
                    kv.clone()
                }
            })
            .collect();
        if opts.by_create_revision {
            // Stable: keys created in one transaction stay in key order.
            kvs.sort_by_key(|kv| kv.create_revision);
        }
        if let Ok(limit) = usize::try_from(opts.limit)
            && limit > 0
        {
            kvs.truncate(limit);
        }
        Ok(RangeResult {
            kvs,
            revision: state.revision,
        })
    }

    async fn identity(&self, _probe_key: &str) -> Result<StoreIdentity, KvError> {
        let state = self.available_state()?;
        Ok(StoreIdentity {
            cluster_id: state.cluster_id,
            revision: state.revision,
        })
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), KvError> {
        let mut state = self.available_state()?;
        state.load.gets += 1;
        Ok((state.get(key), state.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Revision, KvError> {
        let result = self
            .txn(
                Vec::new(),
                vec![TxnOp::Put {
                    key: key.to_owned(),
                    value,
                    lease,
                }],
                Vec::new(),
            )
            .await?;
        Ok(result.revision)
    }

    async fn delete(&self, key: &str) -> Result<(Revision, bool), KvError> {
        let mut state = self.available_state()?;
        let existed = state.keys.contains_key(key);
        state.load.writes += 1;
        state.apply(vec![TxnOp::Delete(key.to_owned())], Instant::now());
        Ok((state.revision, existed))
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> Result<TxnResult, KvError> {
        let mut state = self.available_state()?;
        let succeeded = compares.iter().all(|c| state.compare(c));
        let ops = if succeeded { success } else { failure };
        state.validate(&ops)?;
        state.load.txns += 1;
        if ops.iter().any(|op| !matches!(op, TxnOp::Get(_))) {
            state.load.writes += 1;
        }
        let gets = state.apply(ops, Instant::now());
        Ok(TxnResult {
            succeeded,
            revision: state.revision,
            gets,
        })
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let id = self.grant(ttl)?;
        tokio::spawn(lease_timer(Arc::downgrade(&self.inner), id));
        Ok(id)
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, KvError> {
        let mut state = self.available_state()?;
        state.load.keep_alives += 1;
        let ttl = state.leases.get(&id).ok_or(KvError::LeaseNotFound(id))?.ttl;
        state.set_deadline(id, Instant::now() + ttl);
        Ok(ttl)
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), KvError> {
        let mut state = self.available_state()?;
        state.load.lease_other += 1;
        state.remove_lease(id, Instant::now());
        Ok(())
    }

    async fn lease_ttl(&self, id: LeaseId) -> Result<Option<Duration>, KvError> {
        let mut state = self.available_state()?;
        state.load.lease_other += 1;
        let now = Instant::now();
        Ok(state
            .leases
            .get(&id)
            .map(|l| l.deadline.saturating_duration_since(now)))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream, KvError> {
        self.open_stream(&[prefix.to_owned()], false, start_revision)
    }

    async fn watch_keys(
        &self,
        keys: &[String],
        start_revision: Revision,
    ) -> Result<WatchStream, KvError> {
        self.open_stream(keys, true, start_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn put_op(key: &str, value: &str, lease: LeaseId) -> TxnOp {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    fn keys(kvs: &[KeyValue]) -> Vec<&str> {
        kvs.iter().map(|kv| kv.key.as_str()).collect()
    }

    /// The next batch, failing (instead of hanging) if none arrives within `within` of
    /// virtual time.
    async fn next(
        rx: &mut WatchStream,
        within: Duration,
    ) -> Option<Result<Vec<WatchEvent>, KvError>> {
        match tokio::time::timeout(within, rx.recv()).await {
            Ok(item) => item,
            Err(_) => panic!("no watch batch within {within:?}"),
        }
    }

    /// Asserts nothing arrives within `within` of virtual time.
    async fn nothing(rx: &mut WatchStream, within: Duration) {
        if let Ok(item) = tokio::time::timeout(within, rx.recv()).await {
            panic!("expected no watch item, got {item:?}");
        }
    }

    fn deleted(key: &str, rev: Revision) -> WatchEvent {
        WatchEvent::Delete {
            key: key.into(),
            mod_revision: rev,
        }
    }

    #[tokio::test]
    async fn revisions_and_versions_follow_etcd() {
        let kv = MemKv::new();
        assert_eq!(kv.get("a").await, Ok((None, 1)));
        assert_eq!(kv.put("a", b"1".to_vec(), 0).await, Ok(2));
        assert_eq!(kv.put("a", b"2".to_vec(), 0).await, Ok(3));
        let (a, rev) = kv.get("a").await.unwrap();
        let a = a.unwrap();
        assert_eq!(
            (a.create_revision, a.mod_revision, a.version, rev),
            (2, 3, 2, 3)
        );
        assert_eq!(a.value, b"2");
        assert_eq!(kv.delete("a").await, Ok((4, true)));
        assert_eq!(kv.delete("a").await, Ok((4, false)), "no-op delete");
        assert_eq!(kv.put("a", b"3".to_vec(), 0).await, Ok(5));
        let a = kv.get("a").await.unwrap().0.unwrap();
        assert_eq!((a.create_revision, a.version), (5, 1), "recreated");

        // A transaction writing two keys counts once.
        let r = kv
            .txn(vec![], vec![put_op("b", "", 0), put_op("c", "", 0)], vec![])
            .await
            .unwrap();
        assert_eq!((r.succeeded, r.revision), (true, 6));
        let dump = kv.dump();
        assert_eq!(keys(&dump), ["a", "b", "c"]);
        assert!(dump[1..].iter().all(|kv| kv.mod_revision == 6));
        // Read-only or no-op transactions do not.
        let r = kv
            .txn(
                vec![Compare::Version("a".into(), CmpOp::Greater, 5)],
                vec![put_op("a", "x", 0)],
                vec![TxnOp::Get("a".into()), TxnOp::Delete("zz".into())],
            )
            .await
            .unwrap();
        assert_eq!((r.succeeded, r.revision), (false, 6));
        assert_eq!(r.gets.len(), 1);
        assert_eq!(kv.revision(), 6);
        // Gets see earlier writes of the same transaction.
        let r = kv
            .txn(
                vec![Compare::Value("a".into(), CmpOp::Equal, b"3".to_vec())],
                vec![put_op("a", "4", 0), TxnOp::Get("a".into())],
                vec![],
            )
            .await
            .unwrap();
        let a = r.gets[0].clone().unwrap();
        assert_eq!((a.value, a.mod_revision, a.version), (b"4".to_vec(), 7, 2));
        // Duplicate writes in one transaction are rejected like etcd does.
        let dup = kv
            .txn(
                vec![],
                vec![put_op("d", "", 0), TxnOp::Delete("d".into())],
                vec![],
            )
            .await;
        assert!(matches!(dup, Err(KvError::Other(_))), "{dup:?}");
        assert_eq!(kv.revision(), 7);
    }

    #[tokio::test]
    async fn compares_on_missing_keys() {
        let kv = MemKv::new();
        let state = lock(&kv.inner);
        assert!(state.compare(&Compare::CreateRevision("x".into(), CmpOp::Equal, 0)));
        assert!(state.compare(&Compare::Version("x".into(), CmpOp::Less, 1)));
        assert!(!state.compare(&Compare::Value("x".into(), CmpOp::Equal, vec![])));
        assert!(!state.compare(&Compare::Value("x".into(), CmpOp::Less, b"z".to_vec())));
    }

    #[tokio::test]
    async fn range_by_create_revision_with_limit_is_the_semaphore_read() {
        let kv = MemKv::new();
        for key in ["q/c", "q/a", "q/b", "qq", "r/x"] {
            kv.put(key, key.into(), 0).await.unwrap();
        }
        kv.put("q/c", b"again".to_vec(), 0).await.unwrap(); // mod revision changes, not order
        let opts = RangeOpts {
            by_create_revision: true,
            limit: 2,
            keys_only: false,
            max_create_revision: 0,
        };
        let r = kv.range("q/", opts).await.unwrap();
        assert_eq!(keys(&r.kvs), ["q/c", "q/a"]);
        assert_eq!(r.kvs[0].value, b"again");
        assert_eq!(r.revision, 7);

        let r = kv.range("q/", RangeOpts::default()).await.unwrap();
        assert_eq!(keys(&r.kvs), ["q/a", "q/b", "q/c"]);
        // A waiter's read: only the keys created at or before its own (q/a, created at 3).
        let ahead = RangeOpts {
            by_create_revision: true,
            keys_only: true,
            max_create_revision: 3,
            ..RangeOpts::default()
        };
        let r = kv.range("q/", ahead).await.unwrap();
        assert_eq!(keys(&r.kvs), ["q/c", "q/a"]);
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        let r = kv
            .range(
                "q",
                RangeOpts {
                    keys_only: true,
                    ..RangeOpts::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(keys(&r.kvs), ["q/a", "q/b", "q/c", "qq"]);
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        assert_eq!(
            kv.range("", RangeOpts::default()).await.unwrap().kvs.len(),
            5
        );
    }

    /// The etcd mutex/semaphore recipe: create the entry if absent, else read who has it.
    #[tokio::test]
    async fn txn_create_if_absent() {
        let kv = MemKv::new();
        let acquire = |lease: LeaseId| {
            let kv = kv.clone();
            async move {
                kv.txn(
                    vec![Compare::CreateRevision("lock".into(), CmpOp::Equal, 0)],
                    vec![put_op("lock", &format!("holder {lease}"), lease)],
                    vec![TxnOp::Get("lock".into())],
                )
                .await
            }
        };
        let l1 = kv.lease_grant(10 * S).await.unwrap();
        let l2 = kv.lease_grant(10 * S).await.unwrap();
        assert_eq!((l1, l2), (1, 2));
        let first = acquire(l1).await.unwrap();
        assert_eq!((first.succeeded, first.revision), (true, 2));
        assert!(first.gets.is_empty());
        let second = acquire(l2).await.unwrap();
        assert!(!second.succeeded);
        assert_eq!(second.revision, 2, "the failure branch only read");
        let holder = second.gets[0].clone().unwrap();
        assert_eq!(
            (holder.value, holder.lease, holder.create_revision),
            (b"holder 1".to_vec(), l1, 2)
        );
        // Once the holder's lease is gone, the next one gets it.
        kv.lease_revoke(l1).await.unwrap();
        assert!(acquire(l2).await.unwrap().succeeded);
        assert_eq!(kv.dump()[0].lease, l2);
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expiry_deletes_keys_on_time_without_calls() {
        let kv = MemKv::new();
        let t0 = Instant::now();
        let lease = kv.lease_grant(10 * S).await.unwrap();
        kv.put("s/a", vec![], lease).await.unwrap();
        kv.put("s/b", vec![], lease).await.unwrap();
        kv.put("s/keep", vec![], 0).await.unwrap();
        let mut rx = kv.watch("s/", 5).await.unwrap();

        tokio::time::advance(10 * S - Duration::from_millis(1)).await;
        nothing(&mut rx, Duration::from_micros(500)).await;
        assert_eq!(lock(&kv.inner).keys.len(), 3, "not expired early");

        // Nobody calls the store: the timer alone must delete the keys at t0 + 10 s.
        let batch = next(&mut rx, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Instant::now() - t0, 10 * S, "expired at the deadline");
        assert_eq!(batch, [deleted("s/a", 5), deleted("s/b", 5)]);
        assert_eq!(lock(&kv.inner).revision, 5, "one revision for the expiry");
        let r = kv.range("s/", RangeOpts::default()).await.unwrap();
        assert_eq!((keys(&r.kvs), r.revision), (vec!["s/keep"], 5));
        assert_eq!(kv.lease_ttl(lease).await, Ok(None));
        assert_eq!(
            kv.lease_keep_alive(lease).await,
            Err(KvError::LeaseNotFound(lease))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_postpones_expiry() {
        let kv = MemKv::new();
        let lease = kv.lease_grant(10 * S).await.unwrap();
        kv.put("k", vec![], lease).await.unwrap();
        let mut rx = kv.watch("k", 0).await.unwrap();
        tokio::time::sleep(8 * S).await;
        assert_eq!(kv.lease_keep_alive(lease).await, Ok(10 * S));
        tokio::time::sleep(8 * S).await;
        assert_eq!(kv.lease_ttl(lease).await, Ok(Some(2 * S)));
        assert_eq!(kv.dump().len(), 1, "still alive at 16 s");
        nothing(&mut rx, 2 * S - Duration::from_millis(1)).await;
        let batch = next(&mut rx, S).await.unwrap().unwrap();
        assert_eq!(batch, [deleted("k", 3)]);
        assert!(kv.dump().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn revoke_deletes_keys_at_one_revision() {
        let kv = MemKv::new();
        let lease = kv.lease_grant(10 * S).await.unwrap();
        kv.put("a", vec![], lease).await.unwrap();
        kv.put("b", vec![], lease).await.unwrap();
        kv.put("c", vec![], 0).await.unwrap();
        let mut rx = kv.watch("", 0).await.unwrap();
        kv.lease_revoke(lease).await.unwrap();
        let batch = next(&mut rx, S).await.unwrap().unwrap();
        assert_eq!(batch, [deleted("a", 5), deleted("b", 5)]);
        assert_eq!(keys(&kv.dump()), ["c"]);
        assert_eq!(kv.revision(), 5);
        assert_eq!(
            kv.lease_revoke(lease).await,
            Ok(()),
            "revoking twice is fine"
        );
        assert_eq!(kv.lease_revoke(99).await, Ok(()));
        assert_eq!(kv.revision(), 5, "an empty revoke writes nothing");
        assert_eq!(
            kv.lease_keep_alive(lease).await,
            Err(KvError::LeaseNotFound(lease))
        );
        assert_eq!(kv.lease_ttl(lease).await, Ok(None));
        // Ids are never reused.
        assert_eq!(kv.lease_grant(S).await, Ok(2));
    }

    /// The reboot-lease move: a key put on a new lease no longer dies with the old one.
    #[tokio::test(start_paused = true)]
    async fn moving_a_key_to_another_lease_detaches_it() {
        let kv = MemKv::new();
        let old = kv.lease_grant(10 * S).await.unwrap();
        let new = kv.lease_grant(100 * S).await.unwrap();
        kv.put("slot", b"held".to_vec(), old).await.unwrap();
        let r = kv
            .txn(
                vec![Compare::CreateRevision("slot".into(), CmpOp::Greater, 0)],
                vec![put_op("slot", "rebooting", new)],
                vec![],
            )
            .await
            .unwrap();
        assert!(r.succeeded);
        kv.lease_revoke(old).await.unwrap();
        let slot = kv.dump();
        assert_eq!((slot[0].lease, slot[0].version), (new, 2));
        tokio::time::sleep(100 * S).await;
        assert!(kv.dump().is_empty(), "dies with the new lease");
    }

    #[tokio::test(start_paused = true)]
    async fn put_with_dead_lease_fails_whole_txn() {
        let kv = MemKv::new();
        assert_eq!(
            kv.put("a", vec![], 99).await,
            Err(KvError::LeaseNotFound(99))
        );
        let lease = kv.lease_grant(S).await.unwrap();
        tokio::time::sleep(S).await;
        assert_eq!(
            kv.put("a", vec![], lease).await,
            Err(KvError::LeaseNotFound(lease))
        );
        let r = kv
            .txn(
                vec![],
                vec![put_op("b", "", 0), put_op("c", "", lease)],
                vec![],
            )
            .await;
        assert_eq!(r, Err(KvError::LeaseNotFound(lease)));
        // Only the branch that runs is checked.
        let r = kv
            .txn(
                vec![Compare::Version("b".into(), CmpOp::Greater, 0)],
                vec![put_op("c", "", lease)],
                vec![put_op("b", "", 0)],
            )
            .await
            .unwrap();
        assert!(!r.succeeded);
        assert_eq!(keys(&kv.dump()), ["b"], "the failed txn wrote nothing");
        assert_eq!(kv.revision(), 2);
    }

    #[tokio::test]
    async fn a_dropped_watch_leaves_the_store_at_the_next_write() {
        let kv = MemKv::new();
        let quiet = kv.watch("never-written/", 0).await.unwrap();
        let busy = kv.watch("p/", 0).await.unwrap();
        assert_eq!(kv.stats().watchers, 2);
        drop(quiet);
        drop(busy);
        // Let the forwarding tasks notice their receivers are gone.
        tokio::task::yield_now().await;
        kv.put("other", vec![], 0).await.unwrap();
        assert_eq!(kv.stats().watchers, 0, "dead watches kept");
    }

    #[tokio::test]
    async fn watch_replays_history_then_live_events() {
        let kv = MemKv::new();
        kv.put("p/a", b"1".to_vec(), 0).await.unwrap(); // 2
        kv.put("p/b", b"2".to_vec(), 0).await.unwrap(); // 3
        kv.put("other", vec![], 0).await.unwrap(); // 4
        kv.delete("p/a").await.unwrap(); // 5
        let mut rx = kv.watch("p/", 3).await.unwrap();
        let b = next(&mut rx, S).await.unwrap().unwrap();
        assert!(matches!(&b[..], [WatchEvent::Put(kv)] if kv.key == "p/b" && kv.mod_revision == 3));
        assert_eq!(next(&mut rx, S).await, Some(Ok(vec![deleted("p/a", 5)])));
        kv.put("other", vec![], 0).await.unwrap(); // 6: not under the prefix
        kv.txn(
            vec![],
            vec![put_op("p/c", "", 0), put_op("p/d", "", 0)],
            vec![],
        )
        .await
        .unwrap(); // 7
        let live = next(&mut rx, S).await.unwrap().unwrap();
        let revs: Vec<_> = live
            .iter()
            .map(|e| match e {
                WatchEvent::Put(kv) => (kv.key.as_str(), kv.mod_revision),
                WatchEvent::Delete { key, mod_revision } => (key.as_str(), *mod_revision),
            })
            .collect();
        assert_eq!(revs, [("p/c", 7), ("p/d", 7)], "one batch per revision");
        // A watch from "now" sees only what comes next.
        let mut fresh = kv.watch("p/", 0).await.unwrap();
        kv.delete("p/c").await.unwrap();
        assert_eq!(next(&mut fresh, S).await, Some(Ok(vec![deleted("p/c", 8)])));
        assert_eq!(next(&mut rx, S).await, Some(Ok(vec![deleted("p/c", 8)])));
    }

    #[tokio::test]
    async fn a_key_watch_sees_exactly_its_keys_on_one_stream() {
        let kv = MemKv::new();
        kv.put("q/1", b"a".to_vec(), 0).await.unwrap(); // rev 2
        let mut w = kv
            .watch_keys(&["q/1".into(), "q/2".into()], 2)
            .await
            .unwrap();
        assert_eq!(kv.stats().watchers, 2);
        kv.put("q/10", b"not ours".to_vec(), 0).await.unwrap(); // rev 3: q/1 is only its prefix
        kv.put("q/2", b"b".to_vec(), 0).await.unwrap(); // rev 4
        kv.delete("q/1").await.unwrap(); // rev 5
        let mut seen = Vec::new();
        for _ in 0..3 {
            for e in next(&mut w, S).await.unwrap().unwrap() {
                let rev = match &e {
                    WatchEvent::Put(kv) => kv.mod_revision,
                    WatchEvent::Delete { mod_revision, .. } => *mod_revision,
                };
                seen.push(format!("{}@{rev}", e.key()));
            }
        }
        assert_eq!(seen, ["q/1@2", "q/2@4", "q/1@5"]);
        nothing(&mut w, S).await;
        drop(w);
        tokio::task::yield_now().await;
        kv.put("x", vec![], 0).await.unwrap();
        assert_eq!(
            kv.stats().watchers,
            0,
            "both keys' watchers went with the stream"
        );
    }

    #[tokio::test]
    async fn auto_compaction_keeps_a_bounded_history() {
        let kv = MemKv::new();
        kv.auto_compact(10);
        for i in 0..100 {
            kv.put("k", vec![i], 0).await.unwrap();
        }
        let kept = kv.stats().history;
        assert!((10..15).contains(&kept), "history of {kept} revisions");
        assert!(matches!(kv.watch("k", 2).await, Err(KvError::Compacted(_))));
        let mut w = kv.watch("k", kv.revision()).await.unwrap();
        let batch = next(&mut w, S).await.unwrap().unwrap();
        assert!(matches!(&batch[0], WatchEvent::Put(kv) if kv.value == [99]));
    }

    #[tokio::test]
    async fn watch_from_compacted_revision_fails() {
        let kv = MemKv::new();
        for i in 0..4 {
            kv.put("k", vec![i], 0).await.unwrap(); // 2..=5
        }
        kv.compact(4);
        assert_eq!(kv.watch("k", 3).await.err(), Some(KvError::Compacted(3)));
        let mut rx = kv.watch("k", 4).await.unwrap();
        let first = next(&mut rx, S).await.unwrap().unwrap();
        assert!(matches!(&first[..], [WatchEvent::Put(kv)] if kv.mod_revision == 4));
        kv.compact(1000); // clamped to the current revision
        assert!(kv.watch("k", 5).await.is_ok());
        assert_eq!(kv.watch("k", 4).await.err(), Some(KvError::Compacted(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_fails_every_call_and_ends_watches() {
        let kv = MemKv::new();
        let lease = kv.lease_grant(10 * S).await.unwrap();
        kv.put("k", vec![], lease).await.unwrap();
        let mut rx = kv.watch("", 0).await.unwrap();
        kv.set_available(false);
        assert!(matches!(
            next(&mut rx, S).await,
            Some(Err(KvError::Unavailable(_)))
        ));
        assert!(next(&mut rx, S).await.is_none(), "the stream ends");

        fn down<T: std::fmt::Debug>(r: Result<T, KvError>) {
            assert!(matches!(r, Err(KvError::Unavailable(_))), "{r:?}");
        }
        down(kv.range("", RangeOpts::default()).await);
        down(kv.get("k").await);
        down(kv.put("k", vec![], 0).await);
        down(kv.delete("k").await);
        down(kv.txn(vec![], vec![], vec![]).await);
        down(kv.lease_grant(S).await);
        down(kv.lease_keep_alive(lease).await);
        down(kv.lease_revoke(lease).await);
        down(kv.lease_ttl(lease).await);
        down(kv.watch("", 0).await);
        assert_eq!(kv.dump().len(), 1, "nothing was changed");

        // Time keeps running: the lease expires during the outage.
        tokio::time::sleep(10 * S).await;
        kv.set_available(true);
        assert!(kv.dump().is_empty());
        assert_eq!(kv.put("k", vec![], 0).await, Ok(4));
    }

    #[tokio::test]
    async fn drop_watches_ends_streams_but_not_the_store() {
        let kv = MemKv::new();
        let mut a = kv.watch("a", 0).await.unwrap();
        let mut b = kv.watch("", 0).await.unwrap();
        kv.drop_watches();
        for rx in [&mut a, &mut b] {
            assert!(matches!(
                next(rx, S).await,
                Some(Err(KvError::Unavailable(_)))
            ));
            assert!(next(rx, S).await.is_none());
        }
        assert_eq!(kv.put("a", vec![], 0).await, Ok(2));
        let mut again = kv.watch("a", 1).await.unwrap();
        assert!(
            next(&mut again, S).await.unwrap().is_ok(),
            "re-watch replays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_watch_events_arrive_late_and_in_order() {
        let kv = MemKv::new();
        let mut rx = kv.watch("", 0).await.unwrap();
        kv.delay_watch_events(5 * S);
        kv.put("a", vec![], 0).await.unwrap();
        kv.delay_watch_events(Duration::ZERO);
        kv.put("b", vec![], 0).await.unwrap();
        nothing(&mut rx, 5 * S - Duration::from_millis(1)).await;
        let first = next(&mut rx, S).await.unwrap().unwrap();
        assert!(matches!(&first[..], [WatchEvent::Put(kv)] if kv.key == "a"));
        let second = next(&mut rx, S).await.unwrap().unwrap();
        assert!(matches!(&second[..], [WatchEvent::Put(kv)] if kv.key == "b"));
    }

    #[tokio::test]
    async fn clones_share_the_store() {
        let a = MemKv::new();
        let b = a.clone();
        let mut rx = b.watch("", 0).await.unwrap();
        a.put("k", b"v".to_vec(), 0).await.unwrap();
        assert_eq!(b.get("k").await.unwrap().0.unwrap().value, b"v");
        assert!(next(&mut rx, S).await.unwrap().is_ok());
        let lease = b.lease_grant(S).await.unwrap();
        assert_eq!(a.lease_grant(S).await, Ok(lease + 1), "one id sequence");
        b.set_available(false);
        assert!(a.get("k").await.is_err());
        // An independent store is not affected.
        assert_eq!(MemKv::new().get("k").await, Ok((None, 1)));
    }

    /// A scripted run of puts, transactions, leases, keep-alives and expiries; returns every
    /// observation.
    async fn scenario(kv: &MemKv) -> (Vec<KeyValue>, Revision, Vec<String>) {
        let mut log = Vec::new();
        let mut rx = kv.watch("", 0).await.unwrap();
        let mut leases = Vec::new();
        for i in 0..6u32 {
            leases.push(kv.lease_grant((i % 3 + 1) * 5 * S).await.unwrap());
        }
        for (i, lease) in leases.iter().enumerate() {
            let key = format!("q/{:x}", 100 - i);
            let r = kv
                .txn(
                    vec![Compare::CreateRevision(key.clone(), CmpOp::Equal, 0)],
                    vec![put_op(&key, &format!("{i}"), *lease)],
                    vec![TxnOp::Get(key.clone())],
                )
                .await
                .unwrap();
            log.push(format!("{r:?}"));
            kv.put(&format!("h/{i}"), vec![i as u8], 0).await.unwrap();
        }
        for step in 0..8 {
            tokio::time::sleep(2 * S).await;
            if step % 2 == 0 {
                log.push(format!("{:?}", kv.lease_keep_alive(leases[2]).await));
            }
            let r = kv
                .range(
                    "q/",
                    RangeOpts {
                        by_create_revision: true,
                        limit: 2,
                        keys_only: true,
                        ..RangeOpts::default()
                    },
                )
                .await
                .unwrap();
            log.push(format!("{r:?}"));
        }
        kv.expire_lease(leases[2]);
        while let Ok(batch) = rx.try_recv() {
            log.push(format!("{batch:?}"));
        }
        (kv.dump(), kv.revision(), log)
    }

    #[tokio::test(start_paused = true)]
    async fn same_operations_give_identical_results() {
        let first = scenario(&MemKv::new()).await;
        let second = scenario(&MemKv::new()).await;
        assert!(first.1 > 15, "the scenario wrote: {}", first.1);
        assert!(first.0.len() >= 6, "keys remain: {:?}", first.0);
        assert_eq!(first, second);
    }
}
