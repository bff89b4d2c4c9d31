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
    /// Health script of a one-shot pass that found nothing required (Go's `monitor` phase).
    pub monitor_health: Option<HealthReport>,
    /// Whether the slot was acquired.
    pub lock_acquired: bool,
    /// Detector results under the lock.
    pub post_detectors: Vec<DetectorReport>,
    /// Health script under the lock.
    pub post_health: Option<HealthReport>,
    /// Cluster policy blockers (the reasons).
    pub blockers: Vec<String>,
    /// The unhealthy peers' records behind a policy block (Go's `ClusterUnhealthy`).
    pub unhealthy: Vec<crate::coord::HealthRecord>,
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
    /// An active cooldown read in this pass: ms remaining when read, and who started it.
    pub cooldown: Option<(u64, String)>,
    /// The kill-switch file, when the pass ended on it (and not on a pause, which Go has not).
    pub kill_switch: Option<String>,
}

/// Go's `formatDuration` for the cooldown message: `Xm`/`XmYs` from a minute, `Xs` from a
/// second, else Go's `Duration.String()`.
fn go_cooldown_duration(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        60_000.. => {
            let (m, s) = (ms / 60_000, (ms % 60_000) / 1000);
            if s == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{s}s")
            }
        }
        1000.. => format!("{}s", ms / 1000),
        _ => crate::adapters::go_duration(std::time::Duration::from_millis(ms)),
    }
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
            Phase::Monitor => self.monitor_health = Some(report),
            _ => {}
        }
    }

    /// The outcome message in the Go daemon's words where its wording is known from the
    /// evidence of the pass (`docs/GO-COMPAT.md` §3, §6), else the machine's reason. The
    /// machine's reasons say more (and stay in the journal and logs); this report is the Go
    /// contract, which operators' scripts may grep.
    fn go_message(&self) -> String {
        let blocked_exit = |h: &Option<HealthReport>| match h.as_ref().map(|h| &h.result) {
            Some(crate::fsm::HealthResult::Blocked { exit_code, .. }) => Some(*exit_code),
            _ => None,
        };
        let no_detector_requires = !self.pre_detectors.is_empty()
            && self
                .pre_detectors
                .iter()
                .all(|d| d.outcome == crate::adapters::detectors::DetectorOutcome::Clear);
        match self.outcome {
            Some(Outcome::NoAction) if no_detector_requires => {
                "no detectors require a reboot".into()
            }
            Some(Outcome::Ready) => "reboot prerequisites satisfied".into(),
            Some(Outcome::RecheckCleared) => "detectors cleared after lock acquisition".into(),
            Some(Outcome::KillSwitchActive) => match &self.kill_switch {
                Some(path) if self.lock_acquired => {
                    format!("kill switch {path} present after lock")
                }
                Some(path) => format!("kill switch {path} present"),
                None => self.message.clone(),
            },
            Some(Outcome::CooldownActive) => match &self.cooldown {
                Some((remaining, by)) => {
                    let mut details = Vec::new();
                    if *remaining > 0 {
                        details.push(format!("remaining {}", go_cooldown_duration(*remaining)));
                    }
                    if !by.is_empty() {
                        details.push(format!("started by {by}"));
                    }
                    if details.is_empty() {
                        "reboot cooldown active".into()
                    } else {
                        format!("reboot cooldown active ({})", details.join(", "))
                    }
                }
                None => self.message.clone(),
            },
            Some(Outcome::HealthBlocked) => {
                if let Some(code) = blocked_exit(&self.monitor_health) {
                    format!("health script reported unhealthy during monitoring (exit {code})")
                } else if let (true, Some(code)) =
                    (self.lock_acquired, blocked_exit(&self.post_health))
                {
                    format!("health script blocked reboot under lock (exit {code})")
                } else if let (false, Some(code)) =
                    (self.lock_acquired, blocked_exit(&self.pre_health))
                {
                    format!("health script blocked reboot before lock (exit {code})")
                } else if !self.blockers.is_empty() {
                    self.blockers.join("; ")
                } else {
                    self.message.clone()
                }
            }
            _ => self.message.clone(),
        }
    }

    /// The Go `reportOutcome` text.
    pub fn render(&self) -> String {
        let mut s = String::from("pre-lock detector evaluations:\n");
        s.push_str(&format_reports(&self.pre_detectors));
        if let Some(h) = &self.pre_health {
            s.push_str(&format_report("pre-lock health", h));
        } else if let Some(h) = &self.monitor_health {
            s.push_str(&format_report("monitor health", h));
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
        if !self.unhealthy.is_empty() {
            s.push_str("cluster health blockers:\n");
            for r in &self.unhealthy {
                let details: Vec<String> = [
                    ("stage", &r.stage),
                    ("reason", &r.reason),
                    ("reported_at", &r.reported_at),
                ]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
                if details.is_empty() {
                    s.push_str(&format!("  - {}\n", r.node));
                } else {
                    s.push_str(&format!("  - {} ({})\n", r.node, details.join(", ")));
                }
            }
        }
        let status = self.outcome.map_or("error", Outcome::as_str);
        s.push_str(&format!("outcome: {status} - {}\n", self.go_message()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::detectors::DetectorOutcome;
    use crate::fsm::HealthResult;

    fn detector(outcome: DetectorOutcome) -> DetectorReport {
        DetectorReport {
            name: "file:/run/reboot-required".into(),
            outcome,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            duration: std::time::Duration::ZERO,
        }
    }

    fn health(result: HealthResult) -> Option<HealthReport> {
        Some(HealthReport {
            exit_code: match &result {
                HealthResult::Blocked { exit_code, .. } => Some(*exit_code),
                _ => Some(0),
            },
            result,
            stdout: String::new(),
            stderr: String::new(),
            duration: std::time::Duration::ZERO,
            daemon_fault: false,
        })
    }

    fn blocked(code: i32) -> HealthResult {
        HealthResult::Blocked {
            exit_code: code,
            first_line: String::new(),
        }
    }

    /// Go's `cluster health blockers:` block: one line per unhealthy record, details only
    /// when present; no block without such a record (a threshold alone).
    #[test]
    fn cluster_health_blockers_list_the_unhealthy_records_as_go_does() {
        let rec = |node: &str, stage: &str, reason: &str| crate::coord::HealthRecord {
            node: node.into(),
            healthy: false,
            stage: stage.into(),
            reason: reason.into(),
            reported_at: if stage.is_empty() {
                String::new()
            } else {
                "2026-11-27T10:00:00Z".into()
            },
            group: None,
        };
        let report = PassReport {
            outcome: Some(Outcome::HealthBlocked),
            blockers: vec![
                "cluster health blocked by unhealthy nodes: b (heartbeat, heartbeat exit 1), c"
                    .into(),
            ],
            unhealthy: vec![rec("b", "heartbeat", "heartbeat exit 1"), rec("c", "", "")],
            ..PassReport::default()
        };
        assert!(
            report.render().contains(
                "cluster health blockers:\n  - b (stage=heartbeat, reason=heartbeat exit 1, reported_at=2026-11-27T10:00:00Z)\n  - c\noutcome: health_blocked - cluster health blocked by unhealthy nodes: b (heartbeat, heartbeat exit 1), c\n"
            ),
            "{}",
            report.render()
        );
        let threshold_only = PassReport {
            outcome: Some(Outcome::HealthBlocked),
            blockers: vec!["healthy nodes 1 below minimum 3".into()],
            ..PassReport::default()
        };
        assert!(!threshold_only.render().contains("cluster health blockers:"));
    }

    /// The `outcome:` line carries Go's wording (`pkg/orchestrator/runner.go`) whenever the
    /// pass's evidence determines it, and the machine's reason otherwise.
    #[test]
    fn the_outcome_line_uses_go_s_words() {
        let base = PassReport {
            message: "the machine's reason".into(),
            ..PassReport::default()
        };
        let cases = [
            (
                PassReport {
                    outcome: Some(Outcome::NoAction),
                    pre_detectors: vec![detector(DetectorOutcome::Clear)],
                    ..base.clone()
                },
                "no detectors require a reboot",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::Ready),
                    ..base.clone()
                },
                "reboot prerequisites satisfied",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::RecheckCleared),
                    ..base.clone()
                },
                "detectors cleared after lock acquisition",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::HealthBlocked),
                    pre_health: health(blocked(3)),
                    ..base.clone()
                },
                "health script blocked reboot before lock (exit 3)",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::HealthBlocked),
                    pre_health: health(HealthResult::Passed),
                    lock_acquired: true,
                    post_health: health(blocked(1)),
                    ..base.clone()
                },
                "health script blocked reboot under lock (exit 1)",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::HealthBlocked),
                    blockers: vec!["a".into(), "b".into()],
                    ..base.clone()
                },
                "a; b",
            ),
            // A timeout is no exit code: Go had no message for it (an error), ours stays.
            (
                PassReport {
                    outcome: Some(Outcome::HealthBlocked),
                    pre_health: health(HealthResult::Error {
                        detail: "timed out".into(),
                    }),
                    ..base.clone()
                },
                "the machine's reason",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::CooldownActive),
                    cooldown: Some((599_400, "node-b".into())),
                    ..base.clone()
                },
                "reboot cooldown active (remaining 9m59s, started by node-b)",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::CooldownActive),
                    cooldown: Some((120_000, String::new())),
                    ..base.clone()
                },
                "reboot cooldown active (remaining 2m)",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::CooldownActive),
                    cooldown: Some((0, String::new())),
                    ..base.clone()
                },
                "reboot cooldown active",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::KillSwitchActive),
                    kill_switch: Some("/etc/clusterrebootd/disable".into()),
                    lock_acquired: true,
                    ..base.clone()
                },
                "kill switch /etc/clusterrebootd/disable present after lock",
            ),
            // A pause (no kill switch): Go has none, the machine's words stay.
            (
                PassReport {
                    outcome: Some(Outcome::KillSwitchActive),
                    lock_acquired: true,
                    ..base.clone()
                },
                "the machine's reason",
            ),
            (
                PassReport {
                    outcome: Some(Outcome::WindowDenied),
                    ..base.clone()
                },
                "the machine's reason",
            ),
        ];
        for (ms, want) in [(500, "500ms"), (1500, "1s"), (61_000, "1m1s")] {
            assert_eq!(go_cooldown_duration(ms), want);
        }
        for (report, want) in cases {
            let status = report.outcome.map_or("error", Outcome::as_str);
            let line = format!("outcome: {status} - {want}\n");
            assert!(
                report.render().contains(&line),
                "{line:?} not in\n{}",
                report.render()
            );
        }
    }
}
