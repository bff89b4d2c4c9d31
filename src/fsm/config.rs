//! The machine's view of the configuration: only what decisions need, in plain units.
//!
//! It travels inside `Started` / `ConfigReloaded` events, so a journal replays without the
//! config file and a reload is just another journaled input. Built from the settings by
//! `crate::config::fsm` (the core knows nothing of the configuration file).

use serde::{Deserialize, Serialize};

/// Grace period after a successful reboot command before "the node did not reboot" is reported.
pub const DEFAULT_REBOOT_GRACE_MS: u64 = 10 * 60 * 1000;

/// Decision parameters of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FsmConfig {
    /// Idle period between passes.
    pub check_interval_ms: u64,
    /// First retry delay.
    pub backoff_min_ms: u64,
    /// Largest retry delay.
    pub backoff_max_ms: u64,
    /// Cluster cooldown written after a recovery.
    pub min_reboot_interval_sec: u64,
    /// TTL of the lease that carries the slot through the reboot.
    pub reboot_lease_ttl_sec: u64,
    /// Leave the queue after waiting this long (`None` = while the window is open).
    pub lock_wait_timeout_ms: Option<u64>,
    /// Failing post-reboot health escalates after this long.
    pub post_reboot_health_timeout_ms: u64,
    /// Grace after a "successful" reboot command before declaring the reboot failed.
    pub reboot_grace_ms: u64,
    /// Reboot argv.
    pub reboot_command: Vec<String>,
    /// Log the reboot instead of executing it.
    pub dry_run: bool,
    /// One pass, then exit with its outcome's code (`run --once`, `status`).
    pub once: bool,
    /// Skip the health gate (`status --skip-health`).
    pub skip_health: bool,
    /// Stop before the slot (`status --skip-lock`): the pass ends with `lock_skipped`.
    pub skip_lock: bool,
    /// Kill switch path, for reason lines.
    pub kill_switch_file: String,
    /// How long each kind of request may take (the deadline table, [`super::deadline`]).
    pub budgets: super::deadline::Budgets,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            check_interval_ms: 60_000,
            backoff_min_ms: 5_000,
            backoff_max_ms: 60_000,
            min_reboot_interval_sec: 0,
            reboot_lease_ttl_sec: 1800,
            lock_wait_timeout_ms: None,
            post_reboot_health_timeout_ms: 600_000,
            reboot_grace_ms: DEFAULT_REBOOT_GRACE_MS,
            reboot_command: vec!["/sbin/shutdown".into(), "-r".into(), "now".into()],
            dry_run: false,
            once: false,
            skip_health: false,
            skip_lock: false,
            kill_switch_file: "/etc/clusterrebootd/disable".into(),
            budgets: super::deadline::Budgets::default(),
        }
    }
}

/// How the daemon was started (command-line flags that change decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunMode {
    /// `--dry-run` (ORed with the config's `dry_run`).
    pub dry_run: bool,
    /// `--once`.
    pub once: bool,
    /// `--skip-health`.
    pub skip_health: bool,
    /// `--skip-lock`.
    pub skip_lock: bool,
}
