//! The machine's view of the settings ([`FsmConfig`]): the translation lives here, in the
//! configuration layer, so the pure core does not depend on the configuration file's types.

use super::{DetectorKind, Settings};
use crate::fsm::config::DEFAULT_REBOOT_GRACE_MS;
use crate::fsm::deadline::{Budgets, MARGIN_MS};
use crate::fsm::{FsmConfig, RunMode};

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
fn budgets(s: &Settings) -> Budgets {
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
