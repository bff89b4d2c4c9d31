//! The Go daemon's text report of one pass (`run --once`, `status`): detector blocks, health
//! blocks, lock, outcome, planned command. Filled from adapter results while the pass runs.

use crate::adapters::detectors::{DetectorReport, format_reports};
use crate::adapters::health::{HealthReport, format_report};
use crate::fsm::{Outcome, Phase};

/// The health block Go prints for a phase under `--skip-health` (exit 0, nothing run).
fn skipped_health(phase: &str) -> HealthReport {
    HealthReport {
        result: crate::fsm::HealthResult::Passed,
        exit_code: Some(0),
        stdout: format!("health script skipped during {phase} (--skip-health)"),
        stderr: String::new(),
        duration: std::time::Duration::ZERO,
        daemon_fault: false,
    }
}

/// Evidence gathered during one pass.
#[derive(Debug, Default, Clone)]
pub struct PassReport {
    /// Detector results before the lock.
    pub pre_detectors: Vec<DetectorReport>,
    /// Health script before the lock.
    pub pre_health: Option<HealthReport>,
    /// Whether the slot was acquired.
    pub lock_acquired: bool,
    /// Detector results under the lock.
    pub post_detectors: Vec<DetectorReport>,
    /// Health script under the lock.
    pub post_health: Option<HealthReport>,
    /// Cluster policy blockers.
    pub blockers: Vec<String>,
    /// How the pass ended.
    pub outcome: Option<Outcome>,
    /// Why.
    pub message: String,
    /// The expanded reboot command, for `ready` / `lock_skipped`.
    pub planned_command: Option<String>,
    /// Whether the command would only be logged.
    pub dry_run: bool,
    /// `--skip-health`: the Go report still shows a (skipped) health block.
    pub skip_health: bool,
    /// `run --once` (not `status`): a non-dry `ready` gets Go's hint line.
    pub once_run: bool,
}

impl PassReport {
    /// Records detector results of a phase.
    pub fn detectors(&mut self, phase: crate::fsm::Phase, reports: Vec<DetectorReport>) {
        match phase {
            Phase::PostLock => self.post_detectors = reports,
            _ => self.pre_detectors = reports,
        }
    }

    /// Records a health-script result of a phase.
    pub fn health(&mut self, phase: Phase, report: HealthReport) {
        match phase {
            Phase::PostLock => self.post_health = Some(report),
            Phase::PreLock => self.pre_health = Some(report),
            _ => {}
        }
    }

    /// The Go `reportOutcome` text.
    pub fn render(&self) -> String {
        let mut s = String::from("pre-lock detector evaluations:\n");
        s.push_str(&format_reports(&self.pre_detectors));
        if let Some(h) = &self.pre_health {
            s.push_str(&format_report("pre-lock health", h));
        } else if self.skip_health && !self.pre_detectors.is_empty() {
            s.push_str(&format_report(
                "pre-lock health",
                &skipped_health("pre-lock"),
            ));
        }
        if self.lock_acquired {
            s.push_str("lock acquired\n");
        }
        if !self.post_detectors.is_empty() {
            s.push_str("post-lock detector evaluations:\n");
            s.push_str(&format_reports(&self.post_detectors));
        }
        if let Some(h) = &self.post_health {
            s.push_str(&format_report("post-lock health", h));
        } else if self.skip_health && !self.post_detectors.is_empty() {
            s.push_str(&format_report(
                "post-lock health",
                &skipped_health("post-lock"),
            ));
        }
        if !self.blockers.is_empty() {
            s.push_str("cluster health blockers:\n");
            for b in &self.blockers {
                s.push_str(&format!("  - {b}\n"));
            }
        }
        let status = self.outcome.map_or("error", Outcome::as_str);
        s.push_str(&format!("outcome: {status} - {}\n", self.message));
        if let Some(cmd) = &self.planned_command {
            s.push_str(&format!("planned reboot command: {cmd}\n"));
            if self.dry_run {
                s.push_str("dry-run enabled: reboot command not executed\n");
            }
        }
        if self.once_run && !self.dry_run && self.outcome == Some(Outcome::Ready) {
            s.push_str("ready outcome reached; run without --once to execute the reboot command\n");
        }
        s
    }
}
