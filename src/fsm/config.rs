//! The machine's view of the configuration: only what decisions need, in plain units.
//!
//! It travels inside `Started` / `ConfigReloaded` events, so a journal replays without the
//! config file and a reload is just another journaled input.

use serde::{Deserialize, Serialize};

use crate::config::Settings;

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

impl FsmConfig {
    /// Builds the machine configuration from validated settings and the run mode.
    pub fn from_settings(s: &Settings, mode: RunMode) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        FsmConfig {
            check_interval_ms: ms(s.check_interval),
            backoff_min_ms: ms(s.backoff.min),
            backoff_max_ms: ms(s.backoff.max),
            min_reboot_interval_sec: s.min_reboot_interval.as_secs(),
            reboot_lease_ttl_sec: s.reboot_lease_ttl.as_secs(),
            lock_wait_timeout_ms: s.lock_wait_timeout.map(ms),
            post_reboot_health_timeout_ms: ms(s.post_reboot_health_timeout),
            reboot_grace_ms: DEFAULT_REBOOT_GRACE_MS,
            reboot_command: s.reboot_command.clone(),
            dry_run: s.dry_run || mode.dry_run,
            once: mode.once,
            skip_health: mode.skip_health,
            skip_lock: mode.skip_lock,
            kill_switch_file: s.kill_switch_file.display().to_string(),
            budgets: budgets(s),
        }
    }
}

/// The deadline table from the configuration: each adapter's own timeout plus a margin.
fn budgets(s: &Settings) -> super::deadline::Budgets {
    use super::deadline::{Budgets, MARGIN_MS};
    use crate::config::DetectorKind;
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // A command detector without a timeout is capped here (the adapter has no timeout to hit).
    const UNBOUNDED_DETECTOR_MS: u64 = 10 * 60_000;
    const PRESET_MS: u64 = 60_000;
    let detectors = s
        .detectors
        .iter()
        .map(|d| match &d.kind {
            DetectorKind::File { .. } => 0,
            DetectorKind::Command { timeout, .. } => timeout.map_or(UNBOUNDED_DETECTOR_MS, ms),
            DetectorKind::Preset { .. } => PRESET_MS,
        })
        .fold(0u64, u64::saturating_add);
    let hooks = s.hooks.pre_reboot.len().max(s.hooks.post_reboot.len()) as u64;
    Budgets {
        detectors_ms: detectors.saturating_add(MARGIN_MS),
        health_ms: ms(s.health_timeout).saturating_add(MARGIN_MS),
        hooks_ms: hooks
            .saturating_mul(ms(s.hooks.timeout))
            .saturating_add(MARGIN_MS),
        ..Budgets::default()
    }
}
