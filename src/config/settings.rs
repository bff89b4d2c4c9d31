//! Validated configuration: the only configuration type the daemon uses after start-up.
//!
//! Durations are [`Duration`]s (never zero where zero makes no sense), paths are absolute,
//! windows are parsed, optional features are `Option`s. If a value of this type exists, every
//! rule of SPEC §3 held when it was built.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::windows::Windows;

/// Timeout of a command detector whose `timeout_sec` is 0 (the Go daemon: no timeout at all).
/// Ten minutes: longer than any sane package-manager query, short enough that a hung command
/// is reported as a detector error the same morning.
pub const DEFAULT_DETECTOR_TIMEOUT: Duration = Duration::from_secs(600);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name (host name when the file left it empty).
    pub node_name: String,
    /// Reboot-required detectors, names unique.
    pub detectors: Vec<DetectorSpec>,
    /// Absolute path of the operator health script.
    pub health_script: PathBuf,
    /// Health script timeout (> 0).
    pub health_timeout: Duration,
    /// Heartbeat period (> 0).
    pub health_publish_interval: Duration,
    /// Idle period between detector passes (> 0).
    pub check_interval: Duration,
    /// Retry backoff bounds.
    pub backoff: BackoffBounds,
    /// Cluster cooldown after a recovery (zero = none).
    pub min_reboot_interval: Duration,
    /// etcd prefix of the slots, starts with `/`.
    pub lock_key: String,
    /// Session lease TTL (> health timeout).
    pub lock_ttl: Duration,
    /// etcd connection settings (endpoints may be empty with the local backend).
    pub etcd: EtcdSettings,
    /// Reboot argv, first element non-empty.
    pub reboot_command: Vec<String>,
    /// Cluster health thresholds.
    pub policies: Policies,
    /// Parsed maintenance windows with their time zone.
    pub windows: Windows,
    /// The windows as written, for RC_WINDOWS_* and messages.
    pub windows_text: WindowsText,
    /// Kill switch path (absolute).
    pub kill_switch_file: PathBuf,
    /// Prometheus listener, `None` when disabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Log instead of rebooting.
    pub dry_run: bool,
    /// Slots in the cluster pool (≥ 1).
    pub max_concurrent_reboots: u32,
    /// The reboot group (issue #16), `None` = the node needs a cluster slot only.
    pub group: Option<RebootGroup>,
    /// Thresholds among the members of `group`, in addition to `policies` (issue #16); unused
    /// without a group.
    pub group_policies: Policies,
    /// Lease TTL that carries the slot through the reboot.
    pub reboot_lease_ttl: Duration,
    /// Failing post-reboot health escalates to error status after this long.
    pub post_reboot_health_timeout: Duration,
    /// Give up waiting for a slot after this long (`None` = while the window is open).
    pub lock_wait_timeout: Option<Duration>,
    /// Which coordination backend to use.
    pub lock_backend: LockBackend,
    /// Durable state directory.
    pub state_dir: PathBuf,
    /// Volatile state directory.
    pub run_dir: PathBuf,
    /// Boot id source.
    pub boot_id_path: PathBuf,
    /// Commands around the reboot.
    pub hooks: Hooks,
    /// Webhook notifications (none configured: nothing is sent).
    pub webhooks: Webhooks,
    /// Age after which a peer's health record is not counted healthy.
    pub health_stale_after: Duration,
    /// Logging.
    pub log: LogSettings,
}

/// One validated detector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectorSpec {
    /// Unique name used in logs, metrics and the journal.
    pub name: String,
    /// What it checks.
    pub kind: DetectorKind,
}

/// The kinds of reboot-required detection (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum DetectorKind {
    /// The path exists → reboot required.
    File {
        /// Absolute path.
        path: PathBuf,
    },
    /// Run argv; `success_exit_codes` are the codes meaning "required" (empty: any non-zero).
    Command {
        /// Argument vector, no shell.
        argv: Vec<String>,
        /// Exit codes that mean "reboot required".
        success_exit_codes: Vec<i32>,
        /// Kill after this long. Validation always sets it: `timeout_sec: 0` means
        /// [`DEFAULT_DETECTOR_TIMEOUT`], so a hanging detector cannot keep the node in
        /// `Detecting` forever (issue #20). `None` (never) is left to hand-built specs.
        timeout: Option<Duration>,
    },
    /// A distribution preset.
    Preset {
        /// Which one.
        preset: Preset,
    },
}

/// Distribution presets so operators need not know each distro's quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// `/var/run/reboot-required`.
    Debian,
    /// `needs-restarting -r`, exit 1 = required.
    Rhel,
    /// `/var/run/reboot-needed` and `zypper needs-rebooting`.
    Suse,
    /// Running kernel older than the newest installed one.
    Kernel,
}

impl Preset {
    /// Parses the preset name used in the config file.
    pub fn from_name(s: &str) -> Option<Preset> {
        match s {
            "debian" => Some(Preset::Debian),
            "rhel" => Some(Preset::Rhel),
            "suse" => Some(Preset::Suse),
            "kernel" => Some(Preset::Kernel),
            _ => None,
        }
    }

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Debian => "debian",
            Preset::Rhel => "rhel",
            Preset::Suse => "suse",
            Preset::Kernel => "kernel",
        }
    }
}

/// A node's reboot group (issue #16): it reboots only while it holds a slot in the group's
/// pool **and** one in the cluster pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebootGroup {
    /// Group name (`[A-Za-z0-9._-]`, at most [`MAX_GROUP_NAME`] bytes: it is part of a key).
    pub name: String,
    /// Slots in the group's pool (≥ 1).
    pub max_concurrent_reboots: u32,
}

/// The longest group name (it is part of every entry key of the group's pool).
pub const MAX_GROUP_NAME: usize = 64;

/// Retry backoff bounds; the machine computes exponential steps with jitter between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackoffBounds {
    /// First retry delay.
    pub min: Duration,
    /// Largest retry delay.
    pub max: Duration,
}

/// etcd connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Normalised key prefix: empty, or starts with `/` and has no trailing `/`.
    pub namespace: String,
    /// TLS, when enabled.
    pub tls: Option<TlsSettings>,
    /// User/password auth, when configured.
    pub auth: Option<AuthSettings>,
}

/// TLS files towards etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA bundle that signed the etcd server certificates (required in practice: this build
    /// does not use the system trust store).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, both or neither.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Accepted for Go compatibility but not honoured: servers are always verified.
    pub insecure_skip_verify: bool,
}

/// etcd user and the file holding its password. The password itself is read only when
/// connecting, so it never sits in a struct that might be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// User name.
    pub username: String,
    /// Password file.
    pub password_file: PathBuf,
}

/// Cluster health thresholds (SPEC §6.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Policies {
    /// Required healthy share, 0..=1.
    pub min_healthy_fraction: f64,
    /// Required healthy count.
    pub min_healthy_absolute: u64,
    /// Refuse when only fallback nodes would stay healthy.
    pub forbid_if_only_fallback_left: bool,
    /// The fallback nodes.
    pub fallback_nodes: Vec<String>,
}

/// The window expressions as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsText {
    /// Deny expressions.
    pub deny: Vec<String>,
    /// Allow expressions.
    pub allow: Vec<String>,
    /// Zone name as configured (empty = system).
    pub timezone: String,
}

/// Coordination backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockBackend {
    /// Slots in etcd v3 (the cluster case).
    Etcd,
    /// A file lock in `state_dir` (a single machine).
    Local,
}

/// Validated webhook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhooks {
    /// Where to send, with the body format of each.
    pub targets: Vec<super::webhook_url::Target>,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
    /// `Locking`/`Recovering` longer than this is reported as stuck.
    pub stuck_after: Duration,
    /// CA certificates for `https://` receivers (`None`: the system bundle).
    pub ca_file: Option<PathBuf>,
}

/// Hooks around the reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hooks {
    /// Before the reboot command.
    pub pre_reboot: Vec<Vec<String>>,
    /// After the node is back.
    pub post_reboot: Vec<Vec<String>>,
    /// Per-hook timeout.
    pub timeout: Duration,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSettings {
    /// tracing level name.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// JSON lines (journald, log shippers).
    Json,
    /// Human-readable text.
    Text,
}
