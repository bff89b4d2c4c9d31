//! The real node's [`Adapters`]: detector processes, the health script, hooks and the reboot
//! command, the kill-switch file, the post-reboot marker — with their metrics, logs and the
//! pass report. Coordination is not here: it is the shared [`super::executor`]'s.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Msg;
use super::answers;
use super::executor::{Adapters, Answer, AnswerTx};
use super::report::PassReport;
use super::spawn::{self, AdapterFaults};
use crate::adapters::boot::{self, PostRebootMarker};
use crate::adapters::detectors::{self, DetectorReport, PresetPaths};
use crate::adapters::env::CallEnv;
use crate::adapters::health::HealthRunner;
use crate::adapters::{reboot, window};
use crate::config::Settings;
use crate::coord::{Coordinator, HealthRecord};
use crate::fsm::*;
use crate::metrics::Metrics;

/// The reboot-request read fails at every check while etcd is down: said once per outage.
static REQUEST_UNREADABLE: crate::logging::Streak = crate::logging::Streak::new();
/// The heartbeat fails at every interval while etcd is down: said once per outage.
static HEARTBEAT_FAILING: crate::logging::Streak = crate::logging::Streak::new();

/// The daemon's adapters and what they need to know of the run.
pub(super) struct NodeAdapters<C: Coordinator> {
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) faults: AdapterFaults,
    pub(super) settings: Arc<Settings>,
    pub(super) presets: PresetPaths,
    pub(super) mode: RunMode,
    pub(super) persist: bool,
    /// Read for the operator's `cluster request-reboot` next to the detectors.
    pub(super) coord: Arc<C>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<HealthRunner>,
    /// The fixed part of the `RC_*` environment.
    pub(super) rc_env: Arc<Vec<(String, String)>>,
    /// The machine's state while the current step's effects run (for `RC_STATE`).
    pub(super) state: StateName,
    pub(super) lock_attempts: u32,
    pub(super) join_started: Option<std::time::Instant>,
    /// The current queue join already counted its wait as a `contended` lock attempt.
    pub(super) join_contended: bool,
    /// The last kill-switch check could not stat the file (counted as Go's `error` result;
    /// the gate itself fails closed).
    pub(super) kill_switch_error: std::sync::atomic::AtomicBool,
    /// The last health-script run failed because this daemon ran out of resources
    /// ([`crate::adapters::health::HealthReport::daemon_fault`]): the machine's unhealthy publish for it is withheld.
    pub(super) withhold_unhealthy: bool,
    pub(super) report: PassReport,
}

impl<C: Coordinator> NodeAdapters<C> {
    /// The per-call part of the `RC_*` environment for a run in `phase`.
    pub(super) fn call(&self, phase: Phase) -> CallEnv {
        CallEnv {
            phase,
            lock_enabled: !self.mode.skip_lock,
            lock_held: phase == Phase::PostLock,
            lock_attempts: if phase == Phase::PostLock {
                self.lock_attempts
            } else {
                0
            },
            state: self.state.as_str().to_string(),
        }
    }

    /// The whole `RC_*` environment for hooks and the reboot command.
    pub(super) fn call_env(&self, phase: Phase) -> Vec<(String, String)> {
        let mut env = self.rc_env.as_ref().clone();
        env.extend(self.call(phase).to_env());
        env
    }

    /// Go's `kill_switch_checks_total` result for `gates` as just sampled: `error` when the
    /// file could not be checked, else `active`/`inactive` (the pause is not a kill-switch
    /// file, Go has none).
    pub(super) fn kill_switch_result(&self, gates: &Gates) -> &'static str {
        if self
            .kill_switch_error
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "error"
        } else if gates.kill_switch {
            "active"
        } else {
            "inactive"
        }
    }

    /// Heartbeat (SPEC §6.2): the health script outside the machine, result published.
    pub(super) fn heartbeat(&self) {
        let health = self.health.clone();
        let coord = self.coord.clone();
        let node = self.settings.node_name.clone();
        let call = self.call(Phase::Heartbeat);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let report = health.run(&call).await;
            metrics.health_check(
                "heartbeat",
                health_label(&report.result),
                report.duration.as_secs_f64(),
            );
            if report.daemon_fault {
                // Not a verdict on the node: publish nothing, so peers are not blocked by
                // this daemon's own resource exhaustion (issue #20).
                tracing::error!(event = "health_publish_withheld", error = ?report.result, "the heartbeat's health script could not be started for lack of resources in this daemon; not publishing unhealthy to peers");
                return;
            }
            let record = answers::heartbeat_record(&node, &report.result, jiff::Timestamp::now());
            let status = if record.healthy {
                "healthy"
            } else {
                "unhealthy"
            };
            match coord.publish_health(record).await {
                Ok(()) => {
                    metrics.cluster_health_update("heartbeat", status, "success");
                    if HEARTBEAT_FAILING.succeeded() {
                        tracing::info!(
                            event = "health_published",
                            "the health record is published again"
                        );
                    }
                }
                Err(e) => {
                    metrics.cluster_health_update("heartbeat", status, "error");
                    if HEARTBEAT_FAILING.failed() {
                        tracing::warn!(event = "health_publish_failed", error = %e, "cannot publish this node's health record (heartbeat); retried every heartbeat, said once until it works again");
                    }
                }
            }
        });
    }
}

impl<C: Coordinator> Adapters for NodeAdapters<C> {
    fn answer_tx(&self) -> AnswerTx {
        let tx = self.tx.clone();
        Arc::new(move |e| {
            let _ = tx.send(Msg::Event(e));
        })
    }

    fn spawn_answering(&mut self, effect: &'static str, id: EffectId, work: Answer) {
        let (tx, on_panic) = (self.tx.clone(), self.tx.clone());
        spawn::spawn_answering(
            &self.faults,
            effect,
            id,
            move |id| {
                let _ = on_panic.send(Msg::Event(Event::EffectTimedOut { id }));
            },
            async move {
                let _ = tx.send(Msg::Event(work.await));
            },
        );
    }

    fn run_detectors(&mut self, id: EffectId, phase: Phase) {
        let specs = self.settings.detectors.clone();
        let presets = self.presets.clone();
        let metrics = self.metrics.clone();
        let coord = self.coord.clone();
        let tx = self.tx.clone();
        self.spawn_answering(
            "RunDetectors",
            id,
            Box::pin(async move {
                let started = std::time::Instant::now();
                let mut reports = detectors::evaluate(&specs, &presets).await;
                // An operator's `cluster request-reboot` counts as "reboot required". A request
                // that cannot be read (etcd down) is not one: no reboot is the safe side, and the
                // node's own detectors decide as in a Go deployment (issue #14).
                let outcome = match coord.reboot_requested().await {
                    Ok(requested) => {
                        if REQUEST_UNREADABLE.succeeded() {
                            tracing::info!(event = "reboot_request_readable", "this node's reboot request can be read again");
                        }
                        requested.then_some(detectors::DetectorOutcome::Required)
                    }
                    Err(e) => {
                        if REQUEST_UNREADABLE.failed() {
                            tracing::warn!(event = "reboot_request_unreadable", error = %e, "cannot read this node's reboot request; counting it as not requested until it can be read (said once)");
                        }
                        None
                    }
                };
                if let Some(outcome) = outcome {
                    reports.push(DetectorReport {
                        name: "reboot-request".into(),
                        outcome,
                        exit_code: None,
                        stdout: String::new(),
                        stderr: String::new(),
                        duration: std::time::Duration::ZERO,
                    });
                }
                let result = detectors::combine(&reports);
                metrics.detector_evaluation(
                    phase.as_str(),
                    match &result {
                        DetectorResult::Required { .. } => "requires",
                        DetectorResult::NotRequired => "clear",
                        DetectorResult::Error { .. } => "error",
                    },
                    started.elapsed().as_secs_f64(),
                );
                let _ = tx.send(Msg::Detectors(phase, reports));
                Event::DetectorsEvaluated { id, result }
            }),
        );
    }

    fn evaluate_window(&mut self) -> WindowVerdict {
        window::evaluate(&self.settings.windows, super::now_ms())
    }

    fn run_health_script(&mut self, id: EffectId, phase: Phase) {
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        let call = self.call(phase);
        let tx = self.tx.clone();
        self.spawn_answering(
            "RunHealthScript",
            id,
            Box::pin(async move {
                let report = health.run(&call).await;
                let result = report.result.clone();
                metrics.health_check(
                    phase.as_str(),
                    health_label(&result),
                    report.duration.as_secs_f64(),
                );
                let _ = tx.send(Msg::Health(phase, report));
                Event::HealthChecked { id, result }
            }),
        );
    }

    fn health_record(
        &mut self,
        healthy: bool,
        stage: Phase,
        reason: String,
    ) -> Option<HealthRecord> {
        if !healthy && std::mem::take(&mut self.withhold_unhealthy) {
            // Our own resource exhaustion is no verdict on the node (issue #20): peers keep
            // the last real record (stale after health_stale_after_sec).
            tracing::error!(event = "health_publish_withheld", reason = %reason, "the health script could not be started for lack of resources in this daemon; not publishing unhealthy to peers");
            return None;
        }
        self.persist.then(|| {
            answers::health_record(
                &self.settings.node_name,
                healthy,
                stage.as_str().into(),
                reason,
                jiff::Timestamp::now(),
            )
        })
    }

    fn kill_switch(&self) -> bool {
        let seen = std::fs::metadata(&self.settings.kill_switch_file);
        self.kill_switch_error.store(
            matches!(&seen, Err(e) if e.kind() != std::io::ErrorKind::NotFound),
            std::sync::atomic::Ordering::Relaxed,
        );
        match seen {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                // Cannot tell: fail closed.
                tracing::warn!(event = "kill_switch_error", error = %e, "cannot check the kill switch; treating it as present");
                true
            }
        }
    }

    fn gates_checked(&mut self, gates: &Gates) {
        self.metrics
            .kill_switch_check("post-lock", self.kill_switch_result(gates));
    }

    fn joining(&mut self) {
        self.lock_attempts += 1;
        self.join_started = Some(std::time::Instant::now());
        self.join_contended = false;
    }

    fn run_hooks(&mut self, id: EffectId, stage: HookStage) {
        let hooks = match stage {
            HookStage::PreReboot => self.settings.hooks.pre_reboot.clone(),
            HookStage::PostReboot => self.settings.hooks.post_reboot.clone(),
        };
        let env = self.call_env(Phase::PostLock);
        let timeout = self.settings.hooks.timeout;
        self.spawn_answering(
            "RunHooks",
            id,
            Box::pin(async move {
                let result = match reboot::run_hooks(&hooks, &env, timeout).await {
                    Ok(()) => StepResult::Ok,
                    Err(detail) => StepResult::Failed { detail },
                };
                Event::HooksRan { id, result }
            }),
        );
    }

    fn execute_reboot(&mut self, id: EffectId, argv: Vec<String>, dry_run: bool) {
        let env = self.call_env(Phase::PostLock);
        let expanded = reboot::expand_argv(&argv, &env, |k| std::env::var(k).ok());
        self.report.planned_command = Some(expanded.join(" "));
        self.report.dry_run = dry_run;
        self.metrics
            .reboot(if dry_run { "dry_run" } else { "executed" });
        // A dry run is logged once, by the adapter ("would reboot: …").
        if !dry_run {
            tracing::warn!(event = "reboot", argv = ?expanded, "executing the reboot command");
        }
        self.spawn_answering(
            "ExecuteReboot",
            id,
            Box::pin(async move {
                let result = match reboot::execute_reboot(&expanded, &env, dry_run).await {
                    Ok(()) => StepResult::Ok,
                    Err(detail) => StepResult::Failed { detail },
                };
                Event::RebootCommandFinished { id, result }
            }),
        );
    }

    fn write_post_reboot_marker(&mut self, marker: PostRebootMarker) {
        if let Err(e) = boot::write_post_reboot_marker(&self.settings.run_dir, &marker) {
            tracing::warn!(event = "post_reboot_marker_failed", error = %e);
        }
    }
}

/// Metrics label of a health-script result (Go: pass/blocked/error).
pub(super) fn health_label(r: &HealthResult) -> &'static str {
    match r {
        HealthResult::Passed => "pass",
        HealthResult::Blocked { .. } => "blocked",
        HealthResult::Error { .. } => "error",
    }
}
