//! What a step means to people and tools outside the machine: logs at the right level,
//! metrics, the Go pass report and `state.json`. Nothing here decides.

use super::Driver;
use super::state_file::{SlotInfo, StateFile};
use crate::coord::Coordinator;
use crate::driver::report::PassReport;
use crate::fsm::record::fmt_ts;
use crate::fsm::*;

impl<C: Coordinator> Driver<C> {
    /// Logs, pass report and state file after a step.
    /// `issued_at`: when the reboot was issued, if the step leaves `Recovering`.
    pub(super) fn observe(
        &mut self,
        input: &Input,
        step: &Step,
        now: Millis,
        issued_at: Option<Millis>,
    ) {
        if step.from != step.to {
            self.since = now;
            self.node
                .metrics
                .transition(step.from.as_str(), step.to.as_str());
            self.notifier
                .status(&format!("{}: {}", step.to, step.reason));
            match log_level(&input.event, step) {
                tracing::Level::ERROR => {
                    tracing::error!(event = "transition", from = %step.from, to = %step.to, reason = %step.reason, "{} -> {}: {}", step.from, step.to, step.reason)
                }
                tracing::Level::WARN => {
                    tracing::warn!(event = "transition", from = %step.from, to = %step.to, reason = %step.reason, "{} -> {}: {}", step.from, step.to, step.reason)
                }
                tracing::Level::DEBUG => {
                    tracing::debug!(event = "transition", from = %step.from, to = %step.to, reason = %step.reason, "{} -> {}: {}", step.from, step.to, step.reason)
                }
                _ => {
                    tracing::info!(event = "transition", from = %step.from, to = %step.to, reason = %step.reason, "{} -> {}: {}", step.from, step.to, step.reason)
                }
            }
        } else {
            match log_level(&input.event, step) {
                tracing::Level::ERROR => {
                    tracing::error!(event = "input", input = input.event.name(), state = %step.to, reason = %step.reason)
                }
                tracing::Level::WARN => {
                    tracing::warn!(event = "input", input = input.event.name(), state = %step.to, reason = %step.reason)
                }
                _ => {
                    tracing::debug!(event = "input", input = input.event.name(), state = %step.to, reason = %step.reason)
                }
            }
        }
        if step.from == StateName::Idle && step.to == StateName::Detecting {
            self.node.report = PassReport::default();
            self.node.lock_attempts = 0;
        }
        let held = step.to.holds_slot();
        self.node.metrics.lock_held(held);
        self.node.metrics.lock_waiting_for_group(
            self.machine
                .core()
                .queue
                .as_ref()
                .is_some_and(|q| q.pool.is_some()),
        );
        self.node.metrics.lock_queue_position(
            self.machine
                .core()
                .queue
                .as_ref()
                .map_or(0, |q| i64::from(q.position)),
        );
        match &input.event {
            // The Tick that starts a pass carries Go's pre-lock kill-switch check.
            Event::Tick { gates } if step.from == StateName::Idle => {
                let result = self.node.kill_switch_result(gates);
                self.node.metrics.kill_switch_check("pre-lock", result);
            }
            Event::WindowEvaluated { verdict, .. } => {
                self.node.metrics.window_evaluation(match verdict {
                    WindowVerdict::Open { .. } => "allowed",
                    WindowVerdict::Closed {
                        outcome: Outcome::WindowDenied,
                        ..
                    } => "deny",
                    WindowVerdict::Closed { .. } => "outside_allow",
                })
            }
            Event::CooldownRead { status, .. } => self.node.metrics.cooldown_check(
                // Go reads it before the lock; we read it there too, and again under the slot.
                if step.from == StateName::HealthPre {
                    "pre-lock"
                } else {
                    "post-lock"
                },
                match status {
                    CooldownStatus::Clear => "inactive",
                    CooldownStatus::Active { .. } => "active",
                    CooldownStatus::Error { .. } => "error",
                },
            ),
            Event::ClusterHealthEvaluated { verdict, .. } => {
                self.node.metrics.cluster_health_check(
                    if step.from == StateName::HealthPost {
                        "post-lock"
                    } else {
                        "pre-lock"
                    },
                    cluster_check_result(verdict),
                )
            }
            Event::SlotAcquired { .. } if step.to == StateName::HealthPost => {
                if let Some(t) = self.node.join_started.take() {
                    self.node.metrics.lock_wait(t.elapsed().as_secs_f64());
                    self.node
                        .metrics
                        .lock_attempt("success", t.elapsed().as_secs_f64());
                }
            }
            // A join that has to wait is Go's `contended` attempt (counted once per join; the
            // watch, not a retry, then hands the slot over and counts the `success`).
            Event::SlotQueued { .. } if !self.node.join_contended => {
                self.node.join_contended = true;
                let waited = self
                    .node
                    .join_started
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                self.node.metrics.lock_attempt("contended", waited);
            }
            Event::SlotUnavailable { .. } => {
                let took = self
                    .node
                    .join_started
                    .take()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                self.node.metrics.lock_attempt("error", took);
            }
            Event::RebootCommandFinished {
                result: StepResult::Failed { .. },
                ..
            } => self.node.metrics.reboot("failed"),
            _ => {}
        }
        // The wait for the slot ended without it and without an error (shutdown, kill switch
        // or pause, the window closing, the wait's time limit): Go's `canceled` attempt.
        if step.from == StateName::Locking
            && step.to != StateName::Locking
            && let Some(t) = self.node.join_started.take()
        {
            self.node
                .metrics
                .lock_attempt("canceled", t.elapsed().as_secs_f64());
        }
        if step.from == StateName::Recovering
            && step.to == StateName::Idle
            && let State::Idle {} = self.machine.state()
            && let Event::HealthChecked { .. } = &input.event
            && let Some(issued) = issued_at
        {
            self.node
                .metrics
                .reboot_duration(now.saturating_sub(issued) as f64 / 1000.0);
        }
        match (&input.event, step.to) {
            (Event::SlotAcquired { .. }, StateName::HealthPost) => {
                self.node.report.lock_acquired = true
            }
            (
                Event::ClusterHealthEvaluated {
                    verdict: PolicyVerdict::Blocked { reasons },
                    ..
                },
                _,
            ) => {
                self.node.report.blockers = BlockReason::texts(reasons);
                self.node.report.unhealthy = self.exec.coord().unhealthy_records();
            }
            (
                Event::CooldownRead {
                    status: CooldownStatus::Active { until, by },
                    ..
                },
                _,
            ) => self.node.report.cooldown = Some((until.saturating_sub(now), by.clone())),
            _ => {}
        }
        if step.outcome.is_some() || step.exit.is_some() {
            self.node.report.outcome = step.outcome;
            self.node.report.message = step.reason.clone();
            if let Some(o) = step.outcome {
                let repeated = self.last_outcome.as_deref() == Some(o.as_str());
                self.last_outcome = Some(o.as_str().to_string());
                self.node.metrics.orchestration_outcome(o.as_str());
                if !matches!(
                    o,
                    Outcome::NoAction | Outcome::Ready | Outcome::RecheckCleared
                ) {
                    self.node.metrics.reboot_blocked(o.as_str());
                }
                // Identical consecutive outcomes are not re-logged every pass.
                if repeated {
                    tracing::debug!(event = "outcome", outcome = o.as_str(), message = %step.reason);
                } else {
                    tracing::info!(event = "outcome", outcome = o.as_str(), message = %step.reason);
                }
            }
        }
        if self.opts.persist {
            let slot = SlotInfo {
                held: step.to.holds_slot(),
                queue_position: self.machine.core().queue.as_ref().map(|q| q.position),
                holders: self
                    .machine
                    .core()
                    .queue
                    .as_ref()
                    .map(|q| {
                        q.holders
                            .iter()
                            .map(|h| match h.since {
                                Some(t) => format!("{} since {}", h.node, fmt_ts(t)),
                                None => h.node.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let next = step
                .effects
                .iter()
                .rev()
                .find_map(|e| match e {
                    Effect::ScheduleTick { at } => Some(*at),
                    _ => None,
                })
                .or(self.exec.next_tick);
            let file = StateFile::after(
                &self.node.settings.node_name,
                &self.opts.boot_id,
                step,
                self.since,
                now,
                self.last_outcome.clone(),
                next,
                slot,
                self.machine.core().config.dry_run,
            );
            if let Err(e) = file.write(&self.node.settings.run_dir) {
                tracing::warn!(event = "state_file_error", error = %e, "cannot write state.json");
            }
            (self.fleet).observe(&input.event, step, &file, self.tail.iter().map(|(_, r)| r));
        }
    }
}

/// How loudly a step is logged (issue #20): a failed or refused reboot is an error an operator
/// must see, trouble the daemon works around (lost slot, etcd or script errors, a reboot that
/// was called off) a warning; everything else is the ordinary info/debug trail.
fn log_level(event: &Event, step: &Step) -> tracing::Level {
    use tracing::Level;
    let failed = |r: &StepResult| matches!(r, StepResult::Failed { .. });
    match event {
        Event::RebootCommandFinished { result, .. }
        | Event::HooksRan { result, .. }
        | Event::RebootLeaseMoved { result, .. }
            if failed(result) =>
        {
            Level::ERROR
        }
        Event::RebootLeaseReattached {
            result: ReattachResult::Failed { .. } | ReattachResult::Expired,
            ..
        } => Level::WARN,
        Event::SlotLost { .. } | Event::SlotUnavailable { .. } | Event::EffectTimedOut { .. } => {
            Level::WARN
        }
        Event::DetectorsEvaluated {
            result: DetectorResult::Error { .. },
            ..
        }
        | Event::HealthChecked {
            result: HealthResult::Error { .. },
            ..
        }
        | Event::ClusterHealthEvaluated {
            verdict: PolicyVerdict::Error { .. },
            ..
        }
        | Event::CooldownRead {
            status: CooldownStatus::Error { .. },
            ..
        } => Level::WARN,
        // Called off after the decision to reboot (window closed at the last moment, …).
        _ if step.from == StateName::Rebooting && step.to != StateName::Rebooting => Level::WARN,
        // An idle check (issue #19): a check starting, and one that found nothing to do, are
        // most of an idle node's lines (one pair per interval). Debug; what it found once is
        // logged by the outcome line, and a finding (`Detecting -> WindowCheck`) at info.
        _ if is_idle_check(step.from, step.to, step.outcome) => Level::DEBUG,
        _ => Level::INFO,
    }
}

/// Go's `cluster_health_checks_total` result: it looked at the records, not at the policy —
/// `unhealthy` when some record is not healthy, `error` when they could not be read, else
/// `healthy` (also when only the thresholds, the fallback rule or a slot holder's planned
/// downtime hold the node back).
fn cluster_check_result(verdict: &PolicyVerdict) -> &'static str {
    let reasons = match verdict {
        PolicyVerdict::Pass => return "healthy",
        PolicyVerdict::Error { .. } => return "error",
        PolicyVerdict::Blocked { reasons } | PolicyVerdict::HeldBack { reasons } => reasons,
    };
    if reasons
        .iter()
        .any(|r| r.kind == BlockKind::UnreadableRecords)
    {
        "error"
    } else if reasons.iter().any(|r| {
        matches!(
            r.kind,
            BlockKind::UnhealthyPeers
                | BlockKind::RebootInProgress
                | BlockKind::StaleRecords
                | BlockKind::Other
        )
    }) {
        "unhealthy"
    } else {
        "healthy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_check_results_are_go_s_record_verdicts() {
        let blocked = |kinds: &[BlockKind]| PolicyVerdict::Blocked {
            reasons: kinds.iter().map(|k| BlockReason::new(*k, "x")).collect(),
        };
        let cases = [
            (PolicyVerdict::Pass, "healthy"),
            (PolicyVerdict::Error { detail: "x".into() }, "error"),
            (blocked(&[BlockKind::UnhealthyPeers]), "unhealthy"),
            (blocked(&[BlockKind::StaleRecords]), "unhealthy"),
            (blocked(&[BlockKind::RebootInProgress]), "unhealthy"),
            // Only the thresholds fail: every record Go read was healthy.
            (blocked(&[BlockKind::TooFewHealthy]), "healthy"),
            (blocked(&[BlockKind::OnlyFallbackLeft]), "healthy"),
            (
                blocked(&[BlockKind::TooFewHealthy, BlockKind::UnhealthyPeers]),
                "unhealthy",
            ),
            (blocked(&[BlockKind::UnreadableRecords]), "error"),
            (
                PolicyVerdict::HeldBack {
                    reasons: vec![BlockReason::new(BlockKind::PlannedDowntime, "x")],
                },
                "healthy",
            ),
        ];
        for (verdict, want) in cases {
            assert_eq!(cluster_check_result(&verdict), want, "{verdict:?}");
        }
    }
}
