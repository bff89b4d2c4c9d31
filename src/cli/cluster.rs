//! `cluster status|pause|resume|forget NODE|request-reboot NODE`: the operator's view of and
//! controls over the etcd coordination state (SPEC §7, §9).

use std::io::IsTerminal;
use std::path::Path;

use serde::Serialize;

use crate::config::{LockBackend, Settings};
use crate::coord::HealthRecord;
use crate::coord::etcd::{CooldownRecord, PauseRecord};
use crate::coord::etcd_kv::{EtcdKv, EtcdOptions};
use crate::coord::keys::Keys;
use crate::coord::kv::{Kv, KvError, RangeOpts};
use crate::coord::slots::SlotValue;
use crate::exit::Exit;

/// What `cluster` should do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Holders, queue, in-progress reboots, unhealthy/stale nodes, cooldown, pause.
    Status {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Pause reboots cluster-wide (acts like the kill switch on every node).
    Pause {
        /// Why (shown in every node's status).
        #[arg(long)]
        reason: String,
    },
    /// Lift the cluster pause.
    Resume,
    /// Remove every trace of NODE (queue entries, in-progress marker, health record, request):
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

/// One slot entry as shown by `cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Node (or `unknown (<key>)` for an entry without our JSON, e.g. a Go daemon's fresh key).
    pub node: String,
    /// `held` or `waiting` (by position), with the entry's own state word.
    pub state: String,
    /// Since (RFC 3339).
    pub since: String,
    /// The key.
    pub key: String,
}

/// The `cluster status` answer (also the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// Slots in the pool.
    pub max_concurrent_reboots: u32,
    /// Slot holders.
    pub holders: Vec<Entry>,
    /// Waiters, in order.
    pub queue: Vec<Entry>,
    /// Nodes with an in-progress reboot marker, with age in seconds.
    pub in_progress: Vec<(String, Option<i64>)>,
    /// Nodes whose last health record says unhealthy.
    pub unhealthy: Vec<String>,
    /// Nodes whose last health record is older than `health_stale_after_sec`.
    pub stale: Vec<String>,
    /// Nodes with a pending reboot request.
    pub requests: Vec<String>,
    /// `{"node","remaining_sec"}` of an active cooldown.
    pub cooldown: Option<(String, i64)>,
    /// Why the cooldown record cannot be read, when it cannot: the daemons then start no
    /// reboot at all (fail closed).
    pub cooldown_corrupt: Option<String>,
    /// Pause reason.
    pub pause: Option<String>,
}

fn age_secs(ts: &str, now: jiff::Timestamp) -> Option<i64> {
    ts.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| now.duration_since(t).as_secs())
}

/// Reads the whole coordination state.
pub async fn view<K: Kv>(kv: &K, keys: &Keys, s: &Settings) -> Result<ClusterView, KvError> {
    let now = jiff::Timestamp::now();
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
    let cap = s.max_concurrent_reboots as usize;
    let mut holders = Vec::new();
    let mut waiting = Vec::new();
    for (i, e) in queue.kvs.iter().enumerate() {
        let v = serde_json::from_slice::<SlotValue>(&e.value).ok();
        let entry = Entry {
            node: v
                .as_ref()
                .map_or_else(|| format!("unknown ({})", e.key), |v| v.node.clone()),
            state: v.as_ref().map_or_else(String::new, |v| v.state.clone()),
            since: v.map(|v| v.acquired_at).unwrap_or_default(),
            key: e.key.clone(),
        };
        if i < cap {
            holders.push(entry);
        } else {
            waiting.push(entry);
        }
    }
    let ip_prefix = keys.in_progress_prefix();
    let in_progress = kv
        .range(&ip_prefix, all)
        .await?
        .kvs
        .iter()
        .map(|e| {
            let since = serde_json::from_slice::<serde_json::Value>(&e.value)
                .ok()
                .and_then(|v| v["since"].as_str().and_then(|t| age_secs(t, now)));
            (e.key[ip_prefix.len().min(e.key.len())..].to_string(), since)
        })
        .collect();
    let mut unhealthy = Vec::new();
    let mut stale = Vec::new();
    for e in kv.range(&keys.health_prefix(), all).await?.kvs {
        if let Ok(r) = serde_json::from_slice::<HealthRecord>(&e.value) {
            let age = age_secs(&r.reported_at, now);
            if !r.healthy {
                unhealthy.push(
                    format!("{} ({} {})", r.node, r.stage, r.reason)
                        .trim()
                        .to_string(),
                );
            } else if age.is_none_or(|a| a > s.health_stale_after.as_secs() as i64) {
                stale.push(format!("{} (last report {})", r.node, r.reported_at));
            }
        }
    }
    let rq_prefix = keys.request_prefix();
    let requests = kv
        .range(&rq_prefix, all)
        .await?
        .kvs
        .iter()
        .map(|e| e.key[rq_prefix.len().min(e.key.len())..].to_string())
        .collect();
    // A record the daemons cannot read blocks every reboot (they fail closed), so it is shown
    // as corrupt, never as "none" (issue #20). Same rules as the daemon's `read_cooldown`.
    let (cooldown, cooldown_corrupt) = match kv.get(&keys.cooldown()).await?.0 {
        Some(e) => match serde_json::from_slice::<CooldownRecord>(&e.value) {
            Ok(c) => {
                let ttl = if e.lease != 0 {
                    kv.lease_ttl(e.lease).await?
                } else {
                    None
                };
                match crate::coord::etcd::cooldown_until(&c, now.as_millisecond(), ttl) {
                    Ok(until) => {
                        let remaining = (until - now.as_millisecond() + 999) / 1000;
                        ((remaining > 0).then_some((c.node, remaining)), None)
                    }
                    Err(why) => (None, Some(format!("{}: {why}", e.key))),
                }
            }
            Err(err) => (
                None,
                Some(format!(
                    "{}: not a cooldown record ({err}): {}",
                    e.key,
                    crate::text::cap_bytes(&e.value, 80)
                )),
            ),
        },
        None => (None, None),
    };
    let pause = kv.get(&keys.pause()).await?.0.map(|e| {
        match serde_json::from_slice::<PauseRecord>(&e.value) {
            Ok(p) => format!(
                "{} (by {} at {})",
                crate::text::cap(p.reason, crate::text::MAX_COPIED_TEXT),
                crate::text::cap(p.by, 256),
                crate::text::cap(p.at, 64)
            ),
            Err(_) => crate::text::cap_bytes(&e.value, crate::text::MAX_COPIED_TEXT),
        }
    });
    Ok(ClusterView {
        max_concurrent_reboots: s.max_concurrent_reboots,
        holders,
        queue: waiting,
        in_progress,
        unhealthy,
        stale,
        requests,
        cooldown,
        cooldown_corrupt,
        pause,
    })
}

/// Text rendering of the view.
pub fn render(v: &ClusterView) -> String {
    let mut out = String::new();
    let entry = |e: &Entry| format!("{} since {} ({})", e.node, e.since, e.state);
    out.push_str(&format!(
        "slots: {} of {} held\n",
        v.holders.len(),
        v.max_concurrent_reboots
    ));
    for e in &v.holders {
        out.push_str(&format!("  held: {}\n", entry(e)));
    }
    for (i, e) in v.queue.iter().enumerate() {
        out.push_str(&format!("  queued #{}: {}\n", i + 1, entry(e)));
    }
    let list = |l: &[String]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    let ip: Vec<String> = v
        .in_progress
        .iter()
        .map(|(n, age)| match age {
            Some(a) => format!("{n} ({a}s ago)"),
            None => n.clone(),
        })
        .collect();
    out.push_str(&format!("reboots in progress: {}\n", list(&ip)));
    out.push_str(&format!("unhealthy: {}\n", list(&v.unhealthy)));
    out.push_str(&format!("stale health records: {}\n", list(&v.stale)));
    out.push_str(&format!("reboot requests: {}\n", list(&v.requests)));
    out.push_str(&match (&v.cooldown, &v.cooldown_corrupt) {
        (_, Some(why)) => format!(
            "cooldown: CORRUPT, no node starts a reboot until it is fixed or deleted: {why}\n"
        ),
        (Some((node, secs)), None) => {
            format!("cooldown: {secs}s remaining (started by {node})\n")
        }
        (None, None) => "cooldown: none\n".to_string(),
    });
    out.push_str(&match &v.pause {
        Some(p) => format!("paused: {p}\n"),
        None => "paused: no\n".to_string(),
    });
    out
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
                    "forget node {node}: remove its slot entries, in-progress marker, health record and reboot request?"
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

async fn execute<K: Kv>(
    kv: &K,
    keys: &Keys,
    s: &Settings,
    cmd: ClusterCommand,
) -> Result<Exit, KvError> {
    let now = jiff::Timestamp::now().to_string();
    match cmd {
        ClusterCommand::Status { json } => {
            let v = view(kv, keys, s).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", crate::text::for_terminal(&render(&v)));
            }
        }
        ClusterCommand::Pause { reason } => {
            let p = PauseRecord {
                reason,
                by: who(),
                at: now,
            };
            kv.put(&keys.pause(), serde_json::to_vec(&p).unwrap_or_default(), 0)
                .await?;
            println!(
                "cluster paused: no node starts a reboot until `clusterrebootd cluster resume`"
            );
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
            println!(
                "etcd store accepted (cluster id {:x}, revision {}): daemons pin it at their next check",
                id.cluster_id, id.revision
            );
        }
        ClusterCommand::Resume => {
            let (_, existed) = kv.delete(&keys.pause()).await?;
            println!(
                "{}",
                if existed {
                    "cluster resumed"
                } else {
                    "cluster was not paused"
                }
            );
        }
        ClusterCommand::Forget { key: Some(key), .. } => {
            // Only a queue entry: the key is resolved under the slot prefix and never outside.
            let prefix = keys.slot_prefix();
            let full = if key.starts_with(&prefix) {
                key.clone()
            } else {
                format!("{prefix}{}", key.trim_start_matches('/'))
            };
            if full.len() <= prefix.len() || full[prefix.len()..].contains('/') {
                eprintln!(
                    "clusterrebootd cluster forget --key: {key:?} is not a queue entry under {prefix}"
                );
                return Ok(Exit::Usage);
            }
            if kv.delete(&full).await?.1 {
                println!("removed queue entry {full}");
            } else {
                println!("nothing stored at {full}");
            }
        }
        ClusterCommand::Forget { node: None, .. } => return Ok(Exit::Usage),
        ClusterCommand::Forget {
            node: Some(node), ..
        } => {
            let mut removed = Vec::new();
            let queue = kv.range(&keys.slot_prefix(), RangeOpts::default()).await?;
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
            ] {
                if kv.delete(&key).await?.1 {
                    removed.push(key);
                }
            }
            if removed.is_empty() {
                println!("nothing stored for node {node}");
            } else {
                println!(
                    "forgot node {node}: removed {}",
                    crate::text::one_line(&removed.join(", "))
                );
            }
        }
        ClusterCommand::RequestReboot { node } => {
            let body = serde_json::json!({"by": who(), "at": now});
            kv.put(&keys.request(&node), body.to_string().into_bytes(), 0)
                .await?;
            println!(
                "reboot requested for {node}: it counts as \"reboot required\" there until the node has rebooted"
            );
        }
    }
    Ok(Exit::Ok)
}
