//! `cluster status|pause|resume|forget NODE|request-reboot NODE`: the operator's view of and
//! controls over the etcd coordination state (SPEC §7, §9).

use std::io::IsTerminal;
use std::path::Path;

use crate::config::{LockBackend, Settings};
use crate::coord::etcd::PauseRecord;
use crate::coord::etcd_kv::{EtcdKv, EtcdOptions};
use crate::coord::keys::Keys;
use crate::coord::kv::{Kv, KvError, RangeOpts};
use crate::coord::slots::SlotValue;
use crate::exit::Exit;

/// What `cluster` should do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// The fleet table (every node's state, since when, whether it needs a reboot, what it
    /// waits for, its last reboot), then holders, queue, in-progress reboots, unhealthy/stale
    /// nodes, reboot requests, cooldown, pause.
    Status {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Pause reboots cluster-wide (acts like the kill switch on every node); replaces an
    /// existing pause (and says so).
    Pause {
        /// Why (shown in every node's status); must not be empty.
        #[arg(long)]
        reason: String,
    },
    /// Lift the cluster pause.
    Resume,
    /// Remove every trace of NODE (queue entries, in-progress marker, health record, request,
    /// fleet-view record):
    /// for a node that will never come back. With `--key ENTRY` instead: remove one queue entry
    /// that belongs to no node (not our JSON), as `status --explain` names it.
    Forget {
        /// The node.
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        node: Option<String>,
        /// One queue entry under the lock key: its last path segment (as in
        /// `unknown (0bad)`) or the full key.
        #[arg(long, value_name = "ENTRY")]
        key: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Ask NODE to reboot (counts as "reboot required" on that node until it has rebooted).
    RequestReboot {
        /// The node.
        node: String,
    },
    /// Accept the etcd store as it is now as this cluster's (after restoring etcd from a backup
    /// or replacing it): every daemon re-pins its identity. Check first that no node is down in
    /// a reboot: the restored store does not know its slot.
    AcceptStore,
}

fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host}")
}

/// Runs a `cluster` subcommand.
pub fn run(config: &Path, cmd: ClusterCommand) -> Exit {
    let s = match super::run::settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if s.lock_backend != LockBackend::Etcd {
        eprintln!(
            "clusterrebootd cluster: needs lock_backend: etcd (this node uses the local backend)"
        );
        return Exit::Config;
    }
    if let ClusterCommand::Forget {
        node,
        key,
        yes: false,
    } = &cmd
    {
        let (what, question) = match (node, key) {
            (Some(node), _) => (
                node.clone(),
                format!(
                    "forget node {node}: remove its slot entries, in-progress marker, health record, reboot request and node_state record?"
                ),
            ),
            (None, Some(key)) => (
                format!("--key {key}"),
                format!("remove the queue entry {key}?"),
            ),
            (None, None) => (String::new(), String::new()),
        };
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "clusterrebootd cluster forget {what}: pass --yes to confirm (no terminal to ask)"
            );
            return Exit::Usage;
        }
        eprint!("{question} [y/N] ");
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err()
            || !answer.trim().eq_ignore_ascii_case("y")
        {
            eprintln!("not confirmed; nothing changed");
            return Exit::Usage;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clusterrebootd: cannot start the async runtime: {e}");
            return Exit::Runtime;
        }
    };
    rt.block_on(async {
        let kv = match EtcdKv::connect(&s.etcd, &EtcdOptions::default()).await {
            Ok(kv) => kv,
            Err(e) => {
                eprintln!("clusterrebootd cluster: {e}");
                return Exit::Config;
            }
        };
        let keys = Keys::new(&s.etcd.namespace, &s.lock_key);
        match execute(&kv, &keys, &s, cmd).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("clusterrebootd cluster: {e}");
                Exit::Runtime
            }
        }
    })
}

/// Sends a pause/resume notification to the configured webhooks (if any) and says on stderr
/// which ones failed; the pause itself is already in place either way.
async fn notify(
    s: &Settings,
    event: crate::fleet::webhook::Kind,
    summary: String,
    detail: serde_json::Value,
) {
    if s.webhooks.targets.is_empty() {
        return;
    }
    let n = crate::fleet::webhook::Notification::new(event, &s.node_name, None, summary, detail);
    for (url, r) in crate::fleet::webhook::deliver_all(&s.webhooks, &n).await {
        if let Err(e) = r {
            eprintln!(
                "{}",
                crate::text::for_terminal(&format!(
                    "clusterrebootd cluster: warning: webhook {url} not notified: {e}"
                ))
            );
        }
    }
}

async fn execute<K: Kv>(
    kv: &K,
    keys: &Keys,
    s: &Settings,
    cmd: ClusterCommand,
) -> Result<Exit, KvError> {
    let now = jiff::Timestamp::now().to_string();
    match cmd {
        ClusterCommand::Status { json } => {
            let own = s
                .group
                .as_ref()
                .map(|g| (g.name.as_str(), g.max_concurrent_reboots));
            let v = crate::coord::fleet_view::read_with_group(
                kv,
                keys,
                s.max_concurrent_reboots,
                own,
                s.health_stale_after,
            )
            .await?;
            if json {
                crate::cli::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let now = jiff::Timestamp::now();
                crate::cli::out!(
                    "{}",
                    crate::text::for_terminal(&crate::fleet::table::render(&v, now))
                );
            }
        }
        ClusterCommand::Pause { reason } => {
            let reason = reason.trim().to_string();
            if reason.is_empty() {
                eprintln!(
                    "clusterrebootd cluster pause: --reason must say why (it is shown on every node and in `cluster status`), e.g. --reason \"kernel CVE rollout on hold until 14:00\""
                );
                return Ok(Exit::Usage);
            }
            let p = PauseRecord {
                reason,
                by: who(),
                at: now,
            };
            let (old, _) = kv.get(&keys.pause()).await?;
            kv.put(&keys.pause(), serde_json::to_vec(&p).unwrap_or_default(), 0)
                .await?;
            if let Some(old) = old {
                let before = match serde_json::from_slice::<PauseRecord>(&old.value) {
                    Ok(o) if o.by.is_empty() => crate::text::cap(o.reason, 512),
                    Ok(o) => format!(
                        "{} (by {} at {})",
                        crate::text::cap(o.reason, 512),
                        crate::text::cap(o.by, 256),
                        crate::text::cap(o.at, 64)
                    ),
                    Err(_) => crate::text::cap_bytes(&old.value, 512),
                };
                crate::cli::outln!(
                    "{}",
                    crate::text::for_terminal(&format!(
                        "the cluster was already paused: replaced the pause \"{}\"",
                        crate::text::one_line(&before)
                    ))
                );
            }
            crate::cli::outln!(
                "cluster paused: no node starts a reboot until `clusterrebootd cluster resume`"
            );
            notify(
                s,
                crate::fleet::webhook::Kind::Pause,
                format!("cluster paused by {}: {}", p.by, p.reason),
                serde_json::json!({"reason": p.reason, "by": p.by, "at": p.at}),
            )
            .await;
        }
        ClusterCommand::AcceptStore => {
            let id = kv.identity(&keys.pause()).await?;
            let rec = crate::coord::etcd::StoreAccepted {
                cluster_id: format!("{:x}", id.cluster_id),
                by: who(),
                at: now,
            };
            kv.put(
                &keys.store_accepted(),
                serde_json::to_vec(&rec).unwrap_or_default(),
                0,
            )
            .await?;
            crate::cli::outln!(
                "etcd store accepted (cluster id {:x}, revision {}): daemons pin it at their next check",
                id.cluster_id,
                id.revision
            );
        }
        ClusterCommand::Resume => {
            let (_, existed) = kv.delete(&keys.pause()).await?;
            crate::cli::outln!(
                "{}",
                if existed {
                    "cluster resumed"
                } else {
                    "cluster was not paused"
                }
            );
            if existed {
                let by = who();
                notify(
                    s,
                    crate::fleet::webhook::Kind::Resume,
                    format!("cluster resumed by {by}"),
                    serde_json::json!({"by": by, "at": now}),
                )
                .await;
            }
        }
        ClusterCommand::Forget { key: Some(key), .. } => {
            // Only a queue entry: the key is resolved under the slot prefix (or, for a reboot
            // group's entry, the group root) and never outside.
            // `reboot_group/<group>/<entry>` names a group entry below the namespace (what
            // `status --explain` prints for an entry there that is no node's record).
            let relative_group = key
                .trim_start_matches('/')
                .strip_prefix("reboot_group/")
                .filter(|_| !key.starts_with(&keys.group_root()));
            let prefix = if key.starts_with(&keys.group_root()) || relative_group.is_some() {
                keys.group_root()
            } else {
                keys.slot_prefix()
            };
            let full = if key.starts_with(&prefix) {
                key.clone()
            } else if let Some(rest) = relative_group {
                format!("{prefix}{rest}")
            } else {
                format!("{prefix}{}", key.trim_start_matches('/'))
            };
            // A nested entry (`<lock_key>/a/b`) holds a slot too and can be removed; a
            // segment that is empty, `.` or `..` is refused (it names no entry of ours).
            let rest = full.get(prefix.len()..).unwrap_or_default();
            if rest.is_empty() || rest.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
                eprintln!(
                    "clusterrebootd cluster forget --key: {key:?} is not a queue entry under {prefix}"
                );
                return Ok(Exit::Usage);
            }
            if kv.delete(&full).await?.1 {
                crate::cli::outln!("removed queue entry {full}");
            } else {
                crate::cli::outln!("nothing stored at {full}");
            }
        }
        ClusterCommand::Forget { node: None, .. } => return Ok(Exit::Usage),
        ClusterCommand::Forget {
            node: Some(node), ..
        } => {
            let mut removed = Vec::new();
            let mut queue = kv.range(&keys.slot_prefix(), RangeOpts::default()).await?;
            // Its entries in every reboot group's pool go too (issue #16).
            queue.kvs.extend(
                kv.range(&keys.group_root(), RangeOpts::default())
                    .await?
                    .kvs,
            );
            for e in queue.kvs {
                let mine =
                    serde_json::from_slice::<SlotValue>(&e.value).is_ok_and(|v| v.node == node);
                if mine {
                    kv.delete(&e.key).await?;
                    if e.lease != 0 {
                        kv.lease_revoke(e.lease).await?;
                    }
                    removed.push(e.key);
                }
            }
            for key in [
                keys.in_progress(&node),
                keys.health(&node),
                keys.request(&node),
                keys.node_state(&node),
            ] {
                if kv.delete(&key).await?.1 {
                    removed.push(key);
                }
            }
            if removed.is_empty() {
                crate::cli::outln!("nothing stored for node {node}");
            } else {
                crate::cli::outln!(
                    "forgot node {node}: removed {}",
                    crate::text::one_line(&removed.join(", "))
                );
            }
        }
        ClusterCommand::RequestReboot { node } => {
            // A typo would wait forever for a node that does not exist: say so (but do it;
            // the node may simply not have started yet).
            let known = kv.get(&keys.node_state(&node)).await?.0.is_some()
                || kv.get(&keys.health(&node)).await?.0.is_some();
            if !known {
                eprintln!(
                    "{}",
                    crate::text::for_terminal(&format!(
                        "clusterrebootd cluster request-reboot: warning: no node named {:?} has published a node_state or cluster_health record under {}; check the name (`clusterrebootd cluster status` lists the nodes). The request is stored anyway and is picked up if such a node starts",
                        node,
                        if keys.namespace().is_empty() {
                            "/"
                        } else {
                            keys.namespace()
                        }
                    ))
                );
            }
            let body = serde_json::json!({"by": who(), "at": now});
            kv.put(&keys.request(&node), body.to_string().into_bytes(), 0)
                .await?;
            crate::cli::outln!(
                "reboot requested for {node}: it counts as \"reboot required\" there until the node has rebooted"
            );
        }
    }
    Ok(Exit::Ok)
}
