//! The configuration file exactly as written: field names, types and defaults of the Go daemon,
//! plus the new optional fields of SPEC §3.
//!
//! These types only describe the YAML shape. Nothing here is trusted yet: [`super::validate`]
//! checks every field and builds the [`super::Settings`] the rest of the daemon uses. Keeping
//! the two apart means a config the Go daemon accepted is parsed unchanged, while rules the Go
//! daemon only enforced at run time are reported up front by `validate-config`.

use serde::{Deserialize, Serialize};

/// Default path of the main configuration file (Go daemon compatible).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/clusterrebootd/config.yaml";

/// Top level of `config.yaml`. Unknown keys are rejected by the loader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    /// Name of this node in etcd keys and logs; empty means the host name.
    pub node_name: String,
    /// How this node finds out that it needs a reboot (SPEC §4).
    pub reboot_required_detectors: Vec<RawDetector>,
    /// Operator health script, absolute path, run without arguments (SPEC §6.1).
    pub health_script: String,
    /// Seconds before the health script is killed.
    pub health_timeout_sec: u64,
    /// Heartbeat period of the health script (SPEC §6.2).
    pub health_publish_interval_sec: u64,
    /// Seconds between two detector passes in Idle.
    pub check_interval_sec: u64,
    /// Lower bound of the retry backoff.
    pub backoff_min_sec: u64,
    /// Upper bound of the retry backoff.
    pub backoff_max_sec: u64,
    /// Cluster-wide cooldown between one node's recovery and the next reboot.
    pub min_reboot_interval_sec: u64,
    /// etcd key prefix of the reboot slots (the Go mutex key).
    pub lock_key: String,
    /// TTL of the daemon's session lease in etcd.
    pub lock_ttl_sec: u64,
    /// etcd client URLs.
    pub etcd_endpoints: Vec<String>,
    /// Prefix of every etcd key the daemon touches.
    pub etcd_namespace: String,
    /// TLS towards etcd.
    pub etcd_tls: RawTls,
    /// Argument vector of the reboot command (no shell).
    pub reboot_command: Vec<String>,
    /// Cluster-level health thresholds (SPEC §6.3).
    pub cluster_policies: RawPolicies,
    /// Maintenance windows (SPEC §5).
    pub windows: RawWindows,
    /// While this file exists nothing reboots.
    pub kill_switch_file: String,
    /// Prometheus endpoint.
    pub metrics: RawMetrics,
    /// Log the reboot command instead of running it.
    pub dry_run: bool,
    /// New: how many nodes may be between "slot acquired" and "recovered" at once.
    pub max_concurrent_reboots: u64,
    /// New (issue #16): the reboot group this node belongs to (empty = none): it then also
    /// needs a slot in the group's own pool.
    pub group: String,
    /// New (issue #16): slots in this node's group pool.
    pub group_max_concurrent_reboots: u64,
    /// New (issue #16): the `cluster_policies` thresholds, evaluated among the members of this
    /// node's group (in addition to the cluster-wide ones).
    pub group_policies: RawPolicies,
    /// New: how long the slot survives while the node is down.
    pub reboot_lease_ttl_sec: u64,
    /// New: seconds of failing post-reboot health before the status escalates to error.
    pub post_reboot_health_timeout_sec: u64,
    /// New: give up waiting in the queue after this many seconds (0 = while the window is open).
    pub lock_wait_timeout_sec: u64,
    /// New: `etcd` (cluster) or `local` (a file lock for a single machine).
    pub lock_backend: String,
    /// New: etcd user name and password file.
    pub etcd_auth: RawAuth,
    /// New: durable state (journal, reboot lease id).
    pub state_dir: String,
    /// New: volatile state (state.json, last-reboot.json).
    pub run_dir: String,
    /// New: where the kernel publishes the boot id (tests point it at a file).
    pub boot_id_path: String,
    /// New: commands around the reboot.
    pub hooks: RawHooks,
    /// Notifications (issue #17): webhook targets and when a rollout counts as stuck.
    pub webhooks: RawWebhooks,
    /// New: a peer's health record older than this is not counted healthy (0 = 4 × publish interval).
    pub health_stale_after_sec: u64,
    /// New: log level and format.
    pub log: RawLog,
    /// Only warn (instead of refusing to start) when config.d/, a drop-in, a script or command
    /// the config runs, or state_dir/run_dir can be written by another user (issue #20).
    /// Honoured only in the main file.
    pub insecure_allow_writable_files: bool,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            node_name: String::new(),
            reboot_required_detectors: Vec::new(),
            health_script: String::new(),
            health_timeout_sec: 30,
            health_publish_interval_sec: 15,
            check_interval_sec: 60,
            backoff_min_sec: 5,
            backoff_max_sec: 60,
            min_reboot_interval_sec: 0,
            lock_key: "/cluster/clusterrebootd/lock".into(),
            lock_ttl_sec: 90,
            etcd_endpoints: Vec::new(),
            etcd_namespace: String::new(),
            etcd_tls: RawTls::default(),
            reboot_command: vec![
                "/sbin/shutdown".into(),
                "-r".into(),
                "now".into(),
                "coordinated kernel reboot".into(),
            ],
            cluster_policies: RawPolicies::default(),
            windows: RawWindows::default(),
            kill_switch_file: "/etc/clusterrebootd/disable".into(),
            metrics: RawMetrics::default(),
            dry_run: false,
            max_concurrent_reboots: 1,
            group: String::new(),
            group_max_concurrent_reboots: 1,
            group_policies: RawPolicies::default(),
            reboot_lease_ttl_sec: 1800,
            post_reboot_health_timeout_sec: 600,
            lock_wait_timeout_sec: 0,
            lock_backend: "etcd".into(),
            etcd_auth: RawAuth::default(),
            state_dir: "/var/lib/clusterrebootd".into(),
            run_dir: "/run/clusterrebootd".into(),
            boot_id_path: "/proc/sys/kernel/random/boot_id".into(),
            hooks: RawHooks::default(),
            webhooks: RawWebhooks::default(),
            health_stale_after_sec: 0,
            log: RawLog::default(),
            insecure_allow_writable_files: false,
        }
    }
}

/// One reboot-required detector. `type` selects which of the other fields apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDetector {
    /// `file`, `command` or (new) `preset`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique name; defaults to `file:<path>`, `command:<argv0>` or `preset:<name>`.
    pub name: String,
    /// `file`: the path whose existence means "reboot required".
    pub path: String,
    /// `command`: the argument vector to run.
    pub cmd: Vec<String>,
    /// `command`: exit codes that mean "reboot required" (empty = any non-zero).
    pub success_exit_codes: Vec<i32>,
    /// `command`: seconds before the command is killed (0 = no timeout).
    pub timeout_sec: u64,
    /// `preset`: `debian`, `rhel`, `suse` or `kernel`.
    pub preset: String,
}

/// TLS settings towards etcd (client certificate optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawTls {
    /// Use TLS at all.
    pub enabled: bool,
    /// CA bundle that signed the etcd server certificates.
    pub ca_file: String,
    /// Client certificate (optional, with `key_file`).
    pub cert_file: String,
    /// Client key (optional, with `cert_file`).
    pub key_file: String,
    /// Skip server certificate verification (testing only).
    pub insecure_skip_verify: bool,
}

/// Cluster health thresholds (Go names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawPolicies {
    /// Required healthy share of the cluster: ceil(f × total).
    pub min_healthy_fraction: f64,
    /// Required number of healthy nodes.
    pub min_healthy_absolute: u64,
    /// Refuse when only fallback nodes would stay healthy.
    pub forbid_if_only_fallback_left: bool,
    /// The fallback nodes for the rule above.
    pub fallback_nodes: Vec<String>,
}

/// Maintenance windows (Go grammar) and the new time zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawWindows {
    /// Windows in which no reboot may start; they win over `allow`.
    pub deny: Vec<String>,
    /// If any is given, a reboot may only start inside one of them.
    pub allow: Vec<String>,
    /// New: IANA zone the windows are written in; empty = the system zone.
    pub timezone: String,
}

/// Prometheus endpoint settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawMetrics {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            enabled: false,
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// etcd user/password authentication; the password is read from a file, never from YAML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAuth {
    /// etcd user name.
    pub username: String,
    /// File holding the password (first line).
    pub password_file: String,
}

/// Commands run around the reboot (SPEC §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawHooks {
    /// Run in order before the reboot command; a failure aborts the reboot.
    pub pre_reboot: Vec<Vec<String>>,
    /// Run in order after the node is back, before the post-reboot health check.
    pub post_reboot: Vec<Vec<String>>,
    /// Seconds before one hook is killed.
    pub timeout_sec: u64,
}

impl Default for RawHooks {
    fn default() -> Self {
        RawHooks {
            pre_reboot: Vec::new(),
            post_reboot: Vec::new(),
            timeout_sec: 60,
        }
    }
}

/// Webhook notifications (new): where to send them and how hard to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawWebhooks {
    /// `http://` or `https://` URLs that get the plain JSON body.
    pub urls: Vec<String>,
    /// `http://` or `https://` URLs that get a Slack-compatible body (`{"text": …}`).
    pub slack_urls: Vec<String>,
    /// Seconds one delivery attempt may take.
    pub timeout_sec: u64,
    /// Further attempts after a failed one.
    pub retries: u64,
    /// A node in `Locking` or `Recovering` longer than this sends `rollout_stuck`.
    pub stuck_after_sec: u64,
    /// PEM CA certificates for `https://` receivers (empty: the system bundle).
    pub ca_file: String,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        RawWebhooks {
            urls: Vec::new(),
            slack_urls: Vec::new(),
            timeout_sec: 5,
            retries: 3,
            stuck_after_sec: 3600,
            ca_file: String::new(),
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawLog {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `json` (default, for journald) or `text` (for humans).
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "json".into(),
        }
    }
}
