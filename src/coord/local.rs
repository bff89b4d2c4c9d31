//! `lock_backend: local`: coordination for a single machine, in files under `state_dir`.
//!
//! - `daemon.lock`: `flock`ed by the running daemon for its whole life, so two daemons never share
//!   a `state_dir` (the kernel drops the lock when the process dies).
//! - `slot.json`: the reboot slot. It exists from "slot acquired" until "released after
//!   recovery" and survives the reboot, exactly like the etcd slot on its reboot lease. While the
//!   node is down the "lease" is the `lease_expires_at` time written when the slot was moved.
//! - `reboot-in-progress.json`, `cooldown.json` (Go cooldown format), `health.json` (Go health
//!   record format).
//!
//! There is no one to wait for on a single machine, so joining the queue succeeds at once; a
//! `slot.json` left by an earlier process of this daemon is taken over (and logged). Cluster
//! policies do not apply to one machine and always pass; there is no cluster pause (the kill
//! switch file is the local brake).
//!
//! A read-only instance (for `status`) never writes: it reports a slot held by the running
//! daemon as unavailable and otherwise pretends to acquire.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{CoordError, Coordinator, HealthRecord, QueueUpdate, Reattach};
use crate::fsm::{CooldownStatus, PolicyVerdict};
use crate::fsutil::{read_json, remove_if_exists, write_atomic};

/// The slot record (`slot.json`): the etcd slot value format plus the local lease expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Holder.
    pub node: String,
    /// Daemon process that took it.
    pub pid: u32,
    /// RFC 3339.
    pub acquired_at: String,
    /// Boot id when it was taken.
    pub boot_id: String,
    /// `held`, `rebooting` or `recovering`.
    pub state: String,
    /// While rebooting: when the slot frees itself if the node does not come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
}

/// Go cooldown format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CooldownRecord {
    /// Node whose recovery started it.
    pub node: String,
    /// RFC 3339.
    pub started_at: String,
    /// Length.
    pub duration_sec: u64,
}

/// The single-host backend.
#[derive(Debug)]
pub struct LocalBackend {
    dir: PathBuf,
    node: String,
    boot_id: String,
    read_only: bool,
    /// Nothing is ever sent: a single machine has no one else to lose the slot to.
    notices: tokio::sync::broadcast::Sender<super::Notice>,
    /// The last `node_state.json` written (a repeat of the same record writes nothing).
    node_state: std::sync::Mutex<Option<Vec<u8>>>,
}

/// Holds `daemon.lock` while alive.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl DaemonLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CoordError {
    let what = what.into();
    move |source| CoordError::Io { what, source }
}

impl LocalBackend {
    /// A backend for the daemon (`read_only = false`) or for `status` (`true`).
    pub fn new(state_dir: &Path, node: &str, boot_id: &str, read_only: bool) -> Self {
        LocalBackend {
            dir: state_dir.to_path_buf(),
            node: node.to_string(),
            boot_id: boot_id.to_string(),
            read_only,
            notices: tokio::sync::broadcast::channel(1).0,
            node_state: std::sync::Mutex::new(None),
        }
    }

    /// Takes `daemon.lock` (non-blocking): fails if another daemon uses this `state_dir`.
    pub fn lock_daemon(state_dir: &Path) -> Result<DaemonLock, CoordError> {
        std::fs::create_dir_all(state_dir)
            .map_err(io(format!("create state_dir {}", state_dir.display())))?;
        let path = state_dir.join("daemon.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DaemonLock { _lock: lock, path }),
            Err((_, errno)) => Err(CoordError::Busy(format!(
                "another clusterrebootd holds {} ({errno}); only one daemon may use a state_dir",
                path.display()
            ))),
        }
    }

    fn slot_path(&self) -> PathBuf {
        self.dir.join("slot.json")
    }
    fn in_progress_path(&self) -> PathBuf {
        self.dir.join("reboot-in-progress.json")
    }
    fn cooldown_path(&self) -> PathBuf {
        self.dir.join("cooldown.json")
    }
    /// Where this node's fleet-view record goes (the local backend's `node_state`).
    pub fn node_state_path(&self) -> PathBuf {
        self.dir.join("node_state.json")
    }
    /// Where the heartbeat record goes.
    pub fn health_path(&self) -> PathBuf {
        self.dir.join("health.json")
    }

    /// The current slot record, if any.
    pub fn slot(&self) -> Result<Option<SlotRecord>, CoordError> {
        let p = self.slot_path();
        read_json(&p).map_err(|e| CoordError::Corrupt {
            what: p.display().to_string(),
            message: e.to_string(),
        })
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), CoordError> {
        if self.read_only {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| CoordError::Corrupt {
            what: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomic(path, &bytes).map_err(io(format!("write {}", path.display())))
    }

    fn remove(&self, path: &Path) -> Result<(), CoordError> {
        if self.read_only {
            return Ok(());
        }
        remove_if_exists(path).map_err(io(format!("remove {}", path.display())))
    }

    fn record(&self, state: &str, lease_expires_at: Option<String>) -> SlotRecord {
        SlotRecord {
            node: self.node.clone(),
            pid: std::process::id(),
            acquired_at: now().to_string(),
            boot_id: self.boot_id.clone(),
            state: state.into(),
            lease_expires_at,
        }
    }
}

impl Coordinator for LocalBackend {
    async fn join_queue(&self, _updates: mpsc::Sender<QueueUpdate>) -> Result<(), CoordError> {
        if let Some(existing) = self.slot()? {
            if self.read_only {
                return Err(CoordError::Busy(format!(
                    "slot held by {} (pid {}, state {}) since {}",
                    existing.node, existing.pid, existing.state, existing.acquired_at
                )));
            }
            tracing::warn!(
                event = "slot_taken_over",
                previous_pid = existing.pid,
                previous_state = %existing.state,
                "taking over a slot file left by an earlier process of this daemon"
            );
        }
        let rec = self.record("held", None);
        self.write_json(&self.slot_path(), &rec)
    }

    async fn leave_queue(&self) -> Result<(), CoordError> {
        self.remove(&self.slot_path())
    }

    async fn release_slot(&self) -> Result<(), CoordError> {
        self.remove(&self.slot_path())
    }

    async fn move_to_reboot_lease(&self, ttl: Duration) -> Result<(), CoordError> {
        if self.slot()?.is_none() && !self.read_only {
            return Err(CoordError::Lost(
                "slot.json vanished before the reboot".into(),
            ));
        }
        let expires = now()
            .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        // In-progress marker first: if the node dies between the two writes, the marker still
        // blocks (fail safe) and recovery clears it.
        let marker = serde_json::json!({"node": self.node, "since": now().to_string()});
        self.write_json(&self.in_progress_path(), &marker)?;
        let rec = self.record("rebooting", Some(expires.to_string()));
        self.write_json(&self.slot_path(), &rec)
    }

    async fn reattach_reboot_lease(&self) -> Result<Reattach, CoordError> {
        let Some(rec) = self.slot()? else {
            return Ok(Reattach::Expired);
        };
        let expired = rec
            .lease_expires_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t <= now());
        if expired {
            self.remove(&self.slot_path())?;
            return Ok(Reattach::Expired);
        }
        let mut rec = rec;
        rec.state = "recovering".into();
        rec.lease_expires_at = None;
        rec.pid = std::process::id();
        rec.boot_id = self.boot_id.clone();
        self.write_json(&self.slot_path(), &rec)?;
        Ok(Reattach::Attached)
    }

    async fn clear_in_progress(&self) -> Result<(), CoordError> {
        self.remove(&self.in_progress_path())
    }

    async fn read_cooldown(&self) -> Result<CooldownStatus, CoordError> {
        let p = self.cooldown_path();
        let rec: Option<CooldownRecord> = read_json(&p).map_err(|e| CoordError::Corrupt {
            what: p.display().to_string(),
            message: e.to_string(),
        })?;
        let Some(rec) = rec else {
            return Ok(CooldownStatus::Clear);
        };
        let started: jiff::Timestamp = rec.started_at.parse().map_err(|e| CoordError::Corrupt {
            what: p.display().to_string(),
            message: format!("started_at: {e}"),
        })?;
        let until_ms = started.as_millisecond().saturating_add(
            i64::try_from(rec.duration_sec.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        if until_ms <= now().as_millisecond() {
            return Ok(CooldownStatus::Clear);
        }
        Ok(CooldownStatus::Active {
            until: u64::try_from(until_ms).unwrap_or(0),
            by: rec.node,
        })
    }

    async fn start_cooldown(&self, duration: Duration) -> Result<(), CoordError> {
        let rec = CooldownRecord {
            node: self.node.clone(),
            started_at: now().to_string(),
            duration_sec: duration.as_secs(),
        };
        self.write_json(&self.cooldown_path(), &rec)
    }

    async fn cluster_health(&self) -> Result<PolicyVerdict, CoordError> {
        Ok(PolicyVerdict::Pass)
    }

    async fn reconcile(&self) -> Result<Option<super::UnfinishedReboot>, CoordError> {
        if self.read_only {
            return Ok(None);
        }
        let Some(rec) = self.slot()? else {
            return Ok(None);
        };
        if rec.state != "rebooting" && rec.state != "recovering" {
            return Ok(None);
        }
        let marker: Option<serde_json::Value> = read_json(&self.in_progress_path()).unwrap_or(None);
        let since = marker
            .as_ref()
            .and_then(|m| m["since"].as_str().and_then(super::rfc3339_ms))
            .or_else(|| super::rfc3339_ms(&rec.acquired_at));
        let rebooted = rec.state == "recovering";
        Ok(Some(super::UnfinishedReboot {
            from_boot: (!rebooted && !rec.boot_id.is_empty()).then(|| rec.boot_id.clone()),
            since,
            rebooted,
        }))
    }

    async fn await_cluster_change(&self) {
        // One host, no peers: nothing in the cluster can change.
        std::future::pending::<()>().await
    }

    async fn complete_recovery(&self, cooldown: Duration) -> Result<(), CoordError> {
        // Nobody else reads these files while this host holds its slot, so the order (marker,
        // cooldown, then the slot) gives the same guarantee as the etcd transaction.
        self.clear_in_progress().await?;
        if !cooldown.is_zero() {
            self.start_cooldown(cooldown).await?;
        }
        self.release_slot().await
    }

    async fn publish_health(&self, record: HealthRecord) -> Result<(), CoordError> {
        self.write_json(&self.health_path(), &record)
    }

    async fn pause(&self) -> Result<Option<String>, CoordError> {
        Ok(None)
    }

    async fn reboot_requested(&self) -> Result<bool, CoordError> {
        Ok(false)
    }

    fn notices(&self) -> tokio::sync::broadcast::Receiver<super::Notice> {
        self.notices.subscribe()
    }

    async fn publish_node_state(
        &self,
        record: &super::node_state::NodeState,
    ) -> Result<bool, CoordError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| CoordError::Corrupt {
            what: "node state".into(),
            message: e.to_string(),
        })?;
        let mut last = self.node_state.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() == Some(&bytes) || self.read_only {
            return Ok(false);
        }
        self.write_json(&self.node_state_path(), record)?;
        *last = Some(bytes);
        Ok(true)
    }

    async fn fleet_view(&self) -> Result<super::fleet_view::FleetView, CoordError> {
        use super::fleet_view::{Entry, FleetView, NodeRow};
        let mut v = FleetView::empty(1);
        let p = self.node_state_path();
        let read = std::fs::File::open(&p).and_then(|f| {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, super::node_state::MAX_RECORD_BYTES as u64 + 1),
                &mut bytes,
            )
            .map(|_| bytes)
        });
        let (record, record_error) = match read {
            Ok(bytes) => match super::node_state::decode(&self.node, &bytes) {
                Ok(r) => (Some(r), None),
                Err(why) => (None, Some(format!("{}: {why}", p.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (None, Some(format!("{}: {e}", p.display()))),
        };
        v.nodes.push(NodeRow {
            node: self.node.clone(),
            record,
            record_error,
            healthy: None,
        });
        if let Some(slot) = self.slot()? {
            v.holders.push(Entry {
                node: slot.node,
                state: slot.state,
                since: slot.acquired_at,
                key: self.slot_path().display().to_string(),
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> LocalBackend {
        LocalBackend::new(dir, "node-1", "boot-a", false)
    }

    #[tokio::test]
    async fn slot_survives_the_reboot_and_is_released_after_recovery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path());
        let (tx, _rx) = mpsc::channel(4);
        b.join_queue(tx).await.expect("join");
        assert_eq!(b.slot().expect("read").expect("slot").state, "held");
        b.move_to_reboot_lease(Duration::from_secs(600))
            .await
            .expect("move");
        assert!(dir.path().join("reboot-in-progress.json").exists());
        // A new process after boot.
        let after = LocalBackend::new(dir.path(), "node-1", "boot-b", false);
        assert_eq!(
            after.reattach_reboot_lease().await.expect("reattach"),
            Reattach::Attached
        );
        let rec = after.slot().expect("read").expect("slot");
        assert_eq!(
            (rec.state.as_str(), rec.boot_id.as_str()),
            ("recovering", "boot-b")
        );
        after.release_slot().await.expect("release");
        after.clear_in_progress().await.expect("clear");
        assert!(after.slot().expect("read").is_none());
        assert!(!dir.path().join("reboot-in-progress.json").exists());
    }

    #[tokio::test]
    async fn an_expired_reboot_lease_frees_the_slot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path());
        let (tx, _rx) = mpsc::channel(4);
        b.join_queue(tx).await.expect("join");
        b.move_to_reboot_lease(Duration::ZERO).await.expect("move");
        assert_eq!(
            b.reattach_reboot_lease().await.expect("reattach"),
            Reattach::Expired
        );
        assert!(b.slot().expect("read").is_none());
    }

    #[tokio::test]
    async fn moving_a_vanished_slot_fails_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path());
        let err = b
            .move_to_reboot_lease(Duration::from_secs(60))
            .await
            .expect_err("no slot");
        assert_eq!(err.kind(), "lost");
    }

    #[tokio::test]
    async fn cooldown_round_trip_in_go_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path());
        assert_eq!(
            b.read_cooldown().await.expect("read"),
            CooldownStatus::Clear
        );
        b.start_cooldown(Duration::from_secs(600))
            .await
            .expect("start");
        match b.read_cooldown().await.expect("read") {
            CooldownStatus::Active { by, .. } => assert_eq!(by, "node-1"),
            other => panic!("expected active, got {other:?}"),
        }
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("cooldown.json")).expect("read"))
                .expect("json");
        assert_eq!(raw["duration_sec"], 600);
        assert!(raw["started_at"].is_string());
        std::fs::write(dir.path().join("cooldown.json"), b"garbage").expect("write");
        assert_eq!(
            b.read_cooldown().await.expect_err("corrupt").kind(),
            "corrupt"
        );
    }

    #[tokio::test]
    async fn read_only_never_writes_and_reports_a_held_slot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ro = LocalBackend::new(dir.path(), "node-1", "boot-a", true);
        let (tx, _rx) = mpsc::channel(4);
        ro.join_queue(tx.clone()).await.expect("free slot: pretend");
        assert!(!dir.path().join("slot.json").exists());
        backend(dir.path())
            .join_queue(tx.clone())
            .await
            .expect("daemon takes it");
        assert_eq!(ro.join_queue(tx).await.expect_err("held").kind(), "busy");
        ro.release_slot().await.expect("no-op");
        assert!(dir.path().join("slot.json").exists());
    }

    #[test]
    fn only_one_daemon_per_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = LocalBackend::lock_daemon(dir.path()).expect("first");
        let second = LocalBackend::lock_daemon(dir.path()).expect_err("second");
        assert!(second.to_string().contains("only one daemon"), "{second}");
        drop(first);
        LocalBackend::lock_daemon(dir.path()).expect("free again");
    }
}
