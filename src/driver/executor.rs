//! The one effect executor, shared by the daemon ([`crate::driver`]) and the simulator
//! ([`crate::sim`]): TigerBeetle's rule — the simulator runs the daemon's own code, not a copy.
//!
//! Everything about coordination lives here: which effects go to etcd and how their answers
//! come back ([`super::answers`]), the bookkeeping queue ([`Chores`]), the join-task rules ("no
//! join while a leave or release of the same key is pending", "a leave or release aborts the
//! join"), the cluster-change watch, the next tick, and the safety net "no reboot unless the
//! step's journal record is durable". What differs between a real node and a simulated one —
//! processes, files, the clock, the kill switch — is behind the [`Adapters`] trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

use super::answers;
use super::chores::{Chore, Chores};
use crate::adapters::boot::PostRebootMarker;
use crate::coord::{Coordinator, HealthRecord};
use crate::exit::Exit;
use crate::fsm::*;
use crate::metrics::Metrics;

/// Adapter work that produces the answer to one request.
pub type Answer = Pin<Box<dyn Future<Output = Event> + Send + 'static>>;

/// Where answers go: into the loop's queue (owned, so tasks can keep one).
pub type AnswerTx = Arc<dyn Fn(Event) + Send + Sync>;

/// A node's own adapters: what the executor cannot do the same way for a real and a
/// simulated node. A new node-local effect adds a method here, so neither side can forget it.
pub trait Adapters {
    /// The loop's answer queue.
    fn answer_tx(&self) -> AnswerTx;
    /// Hands an answer to the loop (it becomes the machine's next input).
    fn send(&self, event: Event) {
        (self.answer_tx())(event)
    }
    /// Runs `work` off the loop and sends its answer to request `id` (of kind `effect`, for
    /// fault injection and logs). The daemon turns a panic into `EffectTimedOut`.
    fn spawn_answering(&mut self, effect: &'static str, id: EffectId, work: Answer);
    /// Starts the reboot-required detectors; their `DetectorsEvaluated` answers `id`.
    fn run_detectors(&mut self, id: EffectId, phase: Phase);
    /// The maintenance windows' verdict now.
    fn evaluate_window(&mut self) -> WindowVerdict;
    /// Starts the health script; its `HealthChecked` answers `id`.
    fn run_health_script(&mut self, id: EffectId, phase: Phase);
    /// The record to publish for `PublishHealth`, or `None` when it must not be published.
    fn health_record(
        &mut self,
        healthy: bool,
        stage: Phase,
        reason: String,
    ) -> Option<HealthRecord>;
    /// Whether the kill-switch file is present (fail closed when it cannot be read).
    fn kill_switch(&self) -> bool;
    /// Called with the gates a `CheckGates` observed (metrics, simulator samples).
    fn gates_checked(&mut self, gates: &Gates);
    /// Called when a queue join starts (attempt counters, lock-wait timing).
    fn joining(&mut self);
    /// Starts the reboot hooks of `stage`; their `HooksRan` answers `id`.
    fn run_hooks(&mut self, id: EffectId, stage: HookStage);
    /// Starts the reboot command (the executor has checked that the step is durable); its
    /// `RebootCommandFinished` answers `id`.
    fn execute_reboot(&mut self, id: EffectId, argv: Vec<String>, dry_run: bool);
    /// Writes the marker post-reboot tooling reads.
    fn write_post_reboot_marker(&mut self, marker: PostRebootMarker);
    /// Whether `AwaitClusterChange` is served (false only in the simulator's "timer hand-off"
    /// regression model, which must wait for its timer like the old code did).
    fn watches_cluster(&self) -> bool {
        true
    }
}

/// Coordination state of one daemon process, and the one place effects are executed.
pub struct Executor<C: Coordinator> {
    coord: Arc<C>,
    /// Coordination bookkeeping applied in order in the background (see [`Chores`]).
    pub chores: Chores,
    join_task: Option<JoinHandle<()>>,
    /// The pending `AwaitClusterChange` (a newer one replaces it).
    cluster_task: Option<JoinHandle<()>>,
    /// When the machine wants its next `Tick` (wall-clock ms).
    pub next_tick: Option<Millis>,
    /// Health records on their way to the store: awaited (bounded) before the process ends,
    /// so `run --once` leaves its record as the Go daemon does.
    publishes: JoinSet<()>,
    metrics: Arc<Metrics>,
}

impl<C: Coordinator> Executor<C> {
    /// An executor over `coord` with its bookkeeping queue.
    pub fn new(coord: Arc<C>, chores: Chores, metrics: Arc<Metrics>) -> Executor<C> {
        Executor {
            coord,
            chores,
            join_task: None,
            cluster_task: None,
            next_tick: None,
            publishes: JoinSet::new(),
            metrics,
        }
    }

    /// The coordination backend (for the loop's own reads: notices, reconcile).
    pub fn coord(&self) -> &Arc<C> {
        &self.coord
    }

    /// The gates now: the kill switch from the adapters, the pause from coordination.
    pub async fn gates(&self, adapters: &impl Adapters) -> Gates {
        answers::gates(self.coord.as_ref(), adapters.kill_switch()).await
    }

    /// Executes one effect of a step whose journal record is `durable`; returns the exit code
    /// for `Exit`.
    pub async fn execute(
        &mut self,
        a: &mut impl Adapters,
        effect: Effect,
        durable: bool,
    ) -> Option<Exit> {
        let coord = self.coord.clone();
        match effect {
            Effect::ScheduleTick { at } => self.next_tick = Some(at),
            Effect::RunDetectors { id, phase } => a.run_detectors(id, phase),
            Effect::EvaluateWindow { id } => {
                let verdict = a.evaluate_window();
                a.send(Event::WindowEvaluated { id, verdict });
            }
            Effect::ReadClusterHealth { id } => a.spawn_answering(
                "ReadClusterHealth",
                id,
                Box::pin(async move { answers::cluster_health(coord.as_ref(), id).await }),
            ),
            Effect::RunHealthScript { id, phase } => a.run_health_script(id, phase),
            Effect::PublishHealth {
                healthy,
                stage,
                reason,
            } => {
                while self.publishes.try_join_next().is_some() {}
                if let Some(record) = a.health_record(healthy, stage, reason) {
                    let metrics = self.metrics.clone();
                    self.publishes.spawn(async move {
                        let status = if healthy { "healthy" } else { "unhealthy" };
                        match coord.publish_health(record).await {
                            Ok(()) => {
                                metrics.cluster_health_update(stage.as_str(), status, "success")
                            }
                            Err(e) => {
                                metrics.cluster_health_update(stage.as_str(), status, "error");
                                tracing::warn!(event = "health_publish_failed", error = %e, "cannot publish this node's health record ({})", stage.as_str());
                            }
                        }
                    });
                }
            }
            Effect::CheckGates { id } => {
                let gates = self.gates(a).await;
                a.gates_checked(&gates);
                a.send(Event::GatesObserved {
                    id: Some(id),
                    gates,
                });
            }
            Effect::JoinQueue { id } => {
                a.joining();
                // The entry's key is the session's: a leave or release still pending would
                // delete the new entry when it lands (see `chores`). Fail closed; retry later.
                if let Some(detail) = self.chores.join_blocked() {
                    a.send(Event::SlotUnavailable { id, detail });
                    return None;
                }
                // Answered more than once (queued, then acquired), and cancelled by a leave.
                let tx = a.answer_tx();
                self.join_task = Some(tokio::spawn(async move {
                    answers::join_queue(coord.as_ref(), id, |e| tx(e)).await;
                }));
            }
            Effect::LeaveQueue => {
                self.abort_join();
                self.chores.push(Chore::LeaveQueue);
            }
            Effect::ReleaseSlot => {
                self.abort_join();
                self.chores.push(Chore::ReleaseSlot);
            }
            Effect::MoveSlotToRebootLease { id, ttl_sec } => {
                let answer = answers::move_lease(coord.as_ref(), id, ttl_sec, durable).await;
                a.send(answer);
            }
            Effect::ReattachRebootLease { id } => a.spawn_answering(
                "ReattachRebootLease",
                id,
                Box::pin(async move { answers::reattach(coord.as_ref(), id).await }),
            ),
            Effect::ClearInProgress => self.chores.push(Chore::ClearInProgress),
            Effect::CompleteRecovery { cooldown_sec } => {
                self.abort_join();
                self.chores
                    .push(Chore::CompleteRecovery(Duration::from_secs(cooldown_sec)));
            }
            Effect::AwaitClusterChange { id } => {
                if !a.watches_cluster() {
                    return None;
                }
                if let Some(t) = self.cluster_task.take() {
                    t.abort();
                }
                let tx = a.answer_tx();
                self.cluster_task = Some(tokio::spawn(async move {
                    coord.await_cluster_change().await;
                    tx(Event::ClusterChanged { id });
                }));
            }
            Effect::ReadCooldown { id } => a.spawn_answering(
                "ReadCooldown",
                id,
                Box::pin(async move { answers::cooldown(coord.as_ref(), id).await }),
            ),
            Effect::StartCooldown { duration_sec } => self
                .chores
                .push(Chore::StartCooldown(Duration::from_secs(duration_sec))),
            Effect::RunHooks { id, stage } => a.run_hooks(id, stage),
            Effect::ExecuteReboot { id, argv, dry_run } => {
                if !dry_run && !durable {
                    // No reboot without a durable record of the decision (SPEC §8).
                    a.send(Event::RebootCommandFinished {
                        id,
                        result: StepResult::Failed {
                            detail: "the journal is not writable; refusing to reboot".into(),
                        },
                    });
                    return None;
                }
                a.execute_reboot(id, argv, dry_run);
            }
            Effect::WritePostRebootMarker {
                previous_boot_id,
                boot_id,
                issued_at,
                returned_at,
            } => a.write_post_reboot_marker(PostRebootMarker::new(
                previous_boot_id,
                boot_id,
                issued_at,
                returned_at,
            )),
            Effect::Exit { code } => return Some(code),
        }
        None
    }

    /// Waits up to `limit` for health records still being published (then drops them).
    pub async fn settle_publishes(&mut self, limit: Duration) {
        let all = async { while self.publishes.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                event = "health_publish_abandoned",
                "exiting with a health record not yet published"
            );
            self.publishes.abort_all();
        }
    }

    fn abort_join(&mut self) {
        if let Some(t) = self.join_task.take() {
            t.abort();
        }
    }

    /// Ends the process's coordination: bookkeeping gets `limit` to land, tasks are stopped.
    /// Returns how many chores were left undone.
    pub async fn shutdown(&mut self, limit: Duration) -> usize {
        self.settle_publishes(limit).await;
        let left = self.chores.drain(limit).await;
        self.abort_join();
        if let Some(t) = self.cluster_task.take() {
            t.abort();
        }
        left
    }
}
