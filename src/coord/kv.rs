//! The small key-value interface the etcd coordination protocol is written against (SPEC §2,
//! §7). Production implements it with `etcd-client` (`etcd_kv`); tests and the simulator
//! implement it with a deterministic in-memory model (`memkv`). The protocol code (`slots` and
//! friends) is the same for both.
//!
//! The semantics are etcd v3's: a global revision that grows with every write, per-key
//! create/mod revisions and version, leases with TTLs that delete their keys when they expire,
//! transactions with compares, and watches that deliver every change after a start revision.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

/// etcd revision.
pub type Revision = i64;
/// etcd lease id.
pub type LeaseId = i64;

/// One key with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty for keys-only reads).
    pub value: Vec<u8>,
    /// Revision of the key's creation (queue order).
    pub create_revision: Revision,
    /// Revision of the last change.
    pub mod_revision: Revision,
    /// Number of changes since creation (1 after create).
    pub version: i64,
    /// Attached lease, 0 if none.
    pub lease: LeaseId,
}

/// How to read a prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOpts {
    /// Sort ascending by create revision (queue order); otherwise by key.
    pub by_create_revision: bool,
    /// At most this many keys (0 = all).
    pub limit: i64,
    /// Values are not needed.
    pub keys_only: bool,
    /// Only keys created at or before this revision (0 = no bound): a waiter reads just the
    /// entries ahead of its own, so a read costs what is ahead of it, not the whole queue.
    pub max_create_revision: Revision,
}

/// A read and the store revision it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys.
    pub kvs: Vec<KeyValue>,
    /// Store revision at the time of the read (watch from `revision + 1` to miss nothing).
    pub revision: Revision,
}

/// Comparison operators of transaction guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// A transaction guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// Compare the key's create revision (0 = the key does not exist).
    CreateRevision(String, CmpOp, Revision),
    /// Compare the key's version (0 = the key does not exist).
    Version(String, CmpOp, i64),
    /// Compare the key's value bytes.
    Value(String, CmpOp, Vec<u8>),
}

/// A transaction operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a key, optionally attached to a lease.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease (0 = none).
        lease: LeaseId,
    },
    /// Delete one key.
    Delete(String),
    /// Read one key.
    Get(String),
}

/// A transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether all compares held (the success branch ran).
    pub succeeded: bool,
    /// Store revision after the transaction.
    pub revision: Revision,
    /// One entry per `Get` op of the branch that ran, in order.
    pub gets: Vec<Option<KeyValue>>,
}

/// Which store answered: etcd's cluster id and its current revision. A different cluster id, or
/// a revision below one seen before, means the store was replaced or restored (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreIdentity {
    /// The etcd cluster id (response header).
    pub cluster_id: u64,
    /// The store revision at the read.
    pub revision: Revision,
}

/// One change delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or changed.
    Put(KeyValue),
    /// A key was deleted (explicitly or by lease expiry).
    Delete {
        /// The key.
        key: String,
        /// Revision of the deletion.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// A stream of watch event batches; an `Err` ends the stream (re-read and re-watch).
pub type WatchStream = mpsc::Receiver<Result<Vec<WatchEvent>, KvError>>;

/// Why a KV call failed. Every failure fails closed in the protocol.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// The store cannot be reached (all endpoints down, timeout, no leader).
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The lease does not exist (expired or revoked).
    #[error("lease {0:x} not found")]
    LeaseNotFound(LeaseId),
    /// The watch start revision was compacted away: re-read and re-watch.
    #[error("watch revision {0} compacted")]
    Compacted(Revision),
    /// Authentication or permission failure.
    #[error("etcd permission denied: {0}")]
    Denied(String),
    /// Anything else the store reported.
    #[error("etcd error: {0}")]
    Other(String),
}

impl KvError {
    /// Label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            KvError::Unavailable(_) => "unavailable",
            KvError::LeaseNotFound(_) => "lease_not_found",
            KvError::Compacted(_) => "compacted",
            KvError::Denied(_) => "denied",
            KvError::Other(_) => "other",
        }
    }
}

/// The operations the coordination protocol needs from etcd.
pub trait Kv: Send + Sync + 'static {
    /// Reads every key under `prefix`.
    fn range(
        &self,
        prefix: &str,
        opts: RangeOpts,
    ) -> impl Future<Output = Result<RangeResult, KvError>> + Send;
    /// Reads one key.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(Option<KeyValue>, Revision), KvError>> + Send;
    /// Writes one key (lease 0 = none); returns the new revision.
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Revision, KvError>> + Send;
    /// Deletes one key; returns the revision and whether it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(Revision, bool), KvError>> + Send;
    /// Atomic compare-and-act.
    fn txn(
        &self,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    ) -> impl Future<Output = Result<TxnResult, KvError>> + Send;
    /// Grants a lease of `ttl`.
    fn lease_grant(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, KvError>> + Send;
    /// Refreshes a lease once; returns the remaining TTL or `LeaseNotFound`.
    fn lease_keep_alive(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<Duration, KvError>> + Send;
    /// Revokes a lease (its keys are deleted); revoking a missing lease is not an error.
    fn lease_revoke(&self, id: LeaseId) -> impl Future<Output = Result<(), KvError>> + Send;
    /// Remaining TTL of a lease, `None` if it does not exist.
    fn lease_ttl(
        &self,
        id: LeaseId,
    ) -> impl Future<Output = Result<Option<Duration>, KvError>> + Send;
    /// Who the store is, read with a get of `probe_key` (a key the caller may read).
    fn identity(
        &self,
        probe_key: &str,
    ) -> impl Future<Output = Result<StoreIdentity, KvError>> + Send;
    /// Watches every change under `prefix` from `start_revision` (inclusive).
    fn watch(
        &self,
        prefix: &str,
        start_revision: Revision,
    ) -> impl Future<Output = Result<WatchStream, KvError>> + Send;
    /// Watches every change of exactly the keys in `keys` from `start_revision` (inclusive), as
    /// one stream: a slot waiter watches the K entries just ahead of it and its own.
    fn watch_keys(
        &self,
        keys: &[String],
        start_revision: Revision,
    ) -> impl Future<Output = Result<WatchStream, KvError>> + Send;
}
