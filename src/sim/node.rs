//! One simulated daemon process: the production machine, the production etcd protocol over
//! the shared in-memory store, the production bookkeeping queue, and simulated adapters
//! (detectors read the node's pending update, the health script follows the fault schedule,
//! hooks succeed, the reboot command power-cycles the simulated node).
//!
//! It mirrors the real driver's loop ([`crate::driver`]): inputs are stamped with the node's
//! clock and a seeded jitter, each step is recorded (the journal) before its effects run, and
//! coordination effects are answered by the same functions ([`crate::driver::answers`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::Broken;
use super::world::{Ctl, Shared};
use crate::clock::Clock;
use crate::coord::etcd::{EtcdBackend, EtcdConfig, LeaseStore};
use crate::coord::memkv::MemKv;
use crate::coord::{Coordinator, Notice};
use crate::driver::answers;
use crate::driver::chores::{Chore, Chores};
use crate::fsm::*;

type Coord = EtcdBackend<MemKv>;

struct Daemon {
    sh: Arc<Shared>,
    i: usize,
    coord: Arc<Coord>,
    chores: Chores,
    machine: Arc<std::sync::Mutex<Machine>>,
    clock: Clock,
    config: FsmConfig,
    tx: mpsc::UnboundedSender<Event>,
    tasks: JoinSet<()>,
    join_task: Option<JoinHandle<()>>,
    cluster_task: Option<JoinHandle<()>>,
    next_tick: Option<Millis>,
}

/// Runs one daemon incarnation of node `i` until it exits or is aborted (a crash).
pub async fn daemon(sh: Arc<Shared>, i: usize, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
    let (boot_id, machine, clock, store, capacity) = {
        let w = sh.world();
        let n = &w.nodes[i];
        (
            n.boot_id(),
            n.machine.clone(),
            n.clock.clone(),
            n.lease_store.clone(),
            w.capacity,
        )
    };
    let cfg = EtcdConfig {
        clock: clock.clone(),
        policies: sh.spec.policies.clone(),
        stale_after: sh.spec.stale_after,
        ..EtcdConfig::new(
            &super::node_name(i),
            &boot_id,
            sh.keys.clone(),
            capacity,
            sh.spec.lock_ttl,
            LeaseStore::Memory(store),
        )
    };
    let coord = Arc::new(EtcdBackend::new(sh.kv.clone(), cfg));
    let chores = Chores::start(coord.clone(), sh.metrics.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut config = sh.spec.fsm.clone();
    config.reboot_command = vec!["sim-reboot".into()];
    let mut d = Daemon {
        machine,
        sh,
        i,
        coord,
        chores,
        clock,
        config,
        tx,
        tasks: JoinSet::new(),
        join_task: None,
        cluster_task: None,
        next_tick: None,
    };
    let rebooted = {
        // Like the daemon reading its journal: continue from the recorded state.
        let mut m = d.lock_machine();
        *m = Machine::restore(m.snapshot());
        matches!(m.state(), State::Rebooting { .. })
    };
    if d.sh.spec.broken == Some(Broken::ReleaseOnBoot) && rebooted {
        d.chores.push(Chore::ReleaseSlot);
        d.chores.push(Chore::ClearInProgress);
    }
    let started = Event::Started {
        boot_id,
        config: d.config.clone(),
    };
    if d.handle(started).await {
        return d.exit().await;
    }
    // Notices reach the loop through the same queue as adapter answers (a forwarding task:
    // polling a fresh broadcast receiver on every loop turn was a visible cost).
    let mut notices = d.coord.notices();
    let (sh, i, tx) = (d.sh.clone(), d.i, d.tx.clone());
    d.tasks.spawn(async move {
        loop {
            let event = match notices.recv().await {
                Ok(Notice::SlotLost(detail)) => Event::SlotLost { detail },
                Ok(Notice::PauseChanged(pause)) => Event::GatesObserved {
                    id: None,
                    gates: Gates {
                        kill_switch: sh.kill_switch(i),
                        pause,
                    },
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    // Records only matter to the cluster-health policies; without any, skip the heartbeat
    // (a planner run over weeks of windows would spend its time publishing them).
    let p = &d.sh.spec.policies;
    let policies_active = p.min_healthy_fraction > 0.0
        || p.min_healthy_absolute > 0
        || p.forbid_if_only_fallback_left;
    let mut heartbeat = tokio::time::interval(d.sh.spec.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer, moved only when the wanted instant changes (re-registering a timer on every
    // loop turn dominated the simulator's profile). The instant is recomputed from the node's
    // wall clock each turn, like the driver does, so a clock step moves it.
    let tick = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(tick);
    let mut armed: Option<tokio::time::Instant> = None;
    // The machine's deadline for its pending request, on a second timer (same discipline).
    let overdue = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(overdue);
    let mut armed_deadline: Option<(EffectId, tokio::time::Instant)> = None;
    loop {
        let want_deadline = d.lock_machine().deadline().map(|p| {
            (
                p.id,
                tokio::time::Instant::now()
                    + Duration::from_millis(p.deadline.saturating_sub(d.clock.now_ms())),
            )
        });
        if want_deadline != armed_deadline {
            if let Some((_, at)) = want_deadline {
                overdue.as_mut().reset(at);
            }
            armed_deadline = want_deadline;
        }
        let want = d.next_tick.map(|at| {
            tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(d.clock.now_ms()))
        });
        if want != armed {
            if let Some(at) = want {
                tick.as_mut().reset(at);
            }
            armed = want;
        }
        let exit = tokio::select! {
            biased;
            Some(c) = ctl.recv() => match c {
                Ctl::Shutdown => d.handle(Event::ShutdownRequested).await,
                Ctl::GatesChanged => {
                    let gates = d.gates().await;
                    d.handle(Event::GatesObserved { id: None, gates }).await
                }
                Ctl::Reload(k) => {
                    d.coord.set_capacity(k);
                    let config = d.config.clone();
                    d.handle(Event::ConfigReloaded { config }).await
                }
            },
            Some(e) = rx.recv() => d.handle(e).await,
            () = &mut tick, if armed.is_some() => {
                d.next_tick = None;
                armed = None;
                let gates = d.gates().await;
                d.handle(Event::Tick { gates }).await
            }
            () = &mut overdue, if armed_deadline.is_some() => {
                let id = armed_deadline.map_or(0, |a| a.0);
                armed_deadline = None;
                d.handle(Event::EffectTimedOut { id }).await
            }
            _ = heartbeat.tick(), if policies_active => { d.heartbeat(); false }
        };
        while d.tasks.try_join_next().is_some() {}
        if exit {
            return d.exit().await;
        }
    }
}

impl Daemon {
    fn lock_machine(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn gates(&self) -> Gates {
        let kill_switch =
            self.sh.kill_switch(self.i) && self.sh.spec.broken != Some(Broken::IgnoreKillSwitch);
        answers::gates(self.coord.as_ref(), kill_switch).await
    }

    fn send_later(&mut self, after: Duration, event: Event) {
        if after.is_zero() {
            let _ = self.tx.send(event);
            return;
        }
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(event);
        });
    }

    /// One input: stamp, machine, record (journal + checks), effects. True when it exits.
    async fn handle(&mut self, event: Event) -> bool {
        let jitter = self.sh.world().rng.u32(..);
        let input = Input {
            now: self.clock.now_ms(),
            jitter,
            event,
        };
        let step = self.lock_machine().handle(&input);
        self.sh.after_step(self.i, &input, &step);
        let mut exit = false;
        for effect in step.effects {
            exit |= self.execute(effect).await;
        }
        exit
    }

    async fn exit(mut self) {
        // Like the daemon: give the bookkeeping a bounded time to land, then stop.
        self.chores.drain(Duration::from_secs(5)).await;
        if let Some(t) = self.join_task.take() {
            t.abort();
        }
        self.tasks.abort_all();
    }

    fn heartbeat(&mut self) {
        let result = self.health_result();
        let coord = self.coord.clone();
        let record =
            answers::heartbeat_record(&super::node_name(self.i), &result, self.clock.now());
        self.tasks.spawn(async move {
            let _ = coord.publish_health(record).await;
        });
    }

    /// What the simulated health script answers now, and how long it takes.
    fn health_result(&self) -> HealthResult {
        let now = self.sh.elapsed_ms();
        match self.sh.world().nodes[self.i].health_fails_until {
            Some((until, false)) if now < until => HealthResult::Blocked {
                exit_code: 1,
                first_line: "simulated failure".into(),
            },
            Some((until, true)) if now < until => HealthResult::Error {
                detail: "health script timed out (simulated)".into(),
            },
            _ => HealthResult::Passed,
        }
    }

    async fn execute(&mut self, effect: Effect) -> bool {
        let spec_latency = self.sh.spec.health_latency;
        match effect {
            Effect::ScheduleTick { at } => self.next_tick = Some(at),
            Effect::RunDetectors { .. } | Effect::RunHealthScript { .. }
                if self.sh.world().nodes[self.i].adapters_stalled =>
            {
                // The fault: this adapter never answers; the machine's deadline must.
            }
            Effect::RunDetectors { id, .. } => {
                let needs = self.sh.world().nodes[self.i].needs_reboot;
                let result = if needs {
                    DetectorResult::Required {
                        by: vec!["sim:update-installed".into()],
                    }
                } else {
                    DetectorResult::NotRequired
                };
                let after = self.sh.spec.detector_latency;
                self.send_later(after, Event::DetectorsEvaluated { id, result });
            }
            Effect::EvaluateWindow { id } => {
                let verdict = if self.sh.spec.broken == Some(Broken::IgnoreWindows) {
                    WindowVerdict::Open {
                        closes_at: None,
                        closes_by: None,
                    }
                } else {
                    crate::adapters::window::evaluate(&self.sh.spec.windows, self.clock.now_ms())
                };
                let _ = self.tx.send(Event::WindowEvaluated { id, verdict });
            }
            Effect::ReadClusterHealth { id } => {
                // The in-memory store answers at once, so reads are awaited in place (the
                // answer still arrives as the next input, as from a task).
                let mut answer = answers::cluster_health(self.coord.as_ref(), id).await;
                if self.sh.spec.broken == Some(Broken::TimerHandoff) {
                    // As before: any peer's in-progress marker blocks.
                    let ip = self.sh.keys.in_progress_prefix();
                    let me = super::node_name(self.i);
                    let marked: Vec<String> = self
                        .sh
                        .kv
                        .dump()
                        .iter()
                        .filter_map(|kv| kv.key.strip_prefix(&ip).map(str::to_string))
                        .filter(|n| *n != me)
                        .collect();
                    let held_back = matches!(
                        &answer,
                        Event::ClusterHealthEvaluated {
                            verdict: PolicyVerdict::HeldBack { .. },
                            ..
                        }
                    );
                    if held_back || !marked.is_empty() {
                        answer = Event::ClusterHealthEvaluated {
                            id,
                            verdict: PolicyVerdict::Blocked {
                                reasons: vec![format!(
                                    "reboot in progress on {}",
                                    marked.join(", ")
                                )],
                            },
                        };
                    }
                }
                if let Event::ClusterHealthEvaluated {
                    verdict: PolicyVerdict::Blocked { reasons },
                    ..
                } = &answer
                    && self.sh.spec.check_liveness
                {
                    super::check::blocked_only_by_holders(&self.sh, self.i, reasons);
                }
                let _ = self.tx.send(answer);
            }
            Effect::RunHealthScript { id, .. } => {
                let result = self.health_result();
                let after = match result {
                    HealthResult::Error { .. } => self.sh.spec.health_timeout,
                    _ => spec_latency,
                };
                self.send_later(after, Event::HealthChecked { id, result });
            }
            Effect::PublishHealth {
                healthy,
                stage,
                reason,
            } => {
                let name = super::node_name(self.i);
                let record =
                    answers::health_record(&name, healthy, stage, reason, self.clock.now());
                let _ = self.coord.publish_health(record).await;
            }
            Effect::CheckGates { id } => {
                let now = self.sh.elapsed_ms();
                self.sh.world().nodes[self.i].last_gate_sample = Some(now);
                let gates = self.gates().await;
                let _ = self.tx.send(Event::GatesObserved {
                    id: Some(id),
                    gates,
                });
            }
            Effect::JoinQueue { id } => {
                // As the driver: no join while a leave/release of the same key is pending.
                if let Some(detail) = self.chores.join_blocked() {
                    let _ = self.tx.send(Event::SlotUnavailable { id, detail });
                    return false;
                }
                let (coord, tx) = (self.coord.clone(), self.tx.clone());
                self.join_task = Some(tokio::spawn(async move {
                    answers::join_queue(coord.as_ref(), id, |e| {
                        let _ = tx.send(e);
                    })
                    .await;
                }));
            }
            Effect::LeaveQueue | Effect::ReleaseSlot => {
                if let Some(t) = self.join_task.take() {
                    t.abort();
                }
                self.chores.push(if effect == Effect::LeaveQueue {
                    Chore::LeaveQueue
                } else {
                    Chore::ReleaseSlot
                });
            }
            Effect::MoveSlotToRebootLease { id, ttl_sec } => {
                let answer = answers::move_lease(self.coord.as_ref(), id, ttl_sec, true).await;
                let _ = self.tx.send(answer);
            }
            Effect::ReattachRebootLease { id } => {
                let answer = answers::reattach(self.coord.as_ref(), id).await;
                let _ = self.tx.send(answer);
            }
            Effect::ClearInProgress => self.chores.push(Chore::ClearInProgress),
            Effect::CompleteRecovery { cooldown_sec } => {
                if let Some(t) = self.join_task.take() {
                    t.abort();
                }
                self.chores
                    .push(Chore::CompleteRecovery(Duration::from_secs(cooldown_sec)));
            }
            Effect::AwaitClusterChange { .. }
                if self.sh.spec.broken == Some(Broken::TimerHandoff) => {}
            Effect::AwaitClusterChange { id } => {
                if let Some(t) = self.cluster_task.take() {
                    t.abort();
                }
                let (coord, tx) = (self.coord.clone(), self.tx.clone());
                self.cluster_task = Some(tokio::spawn(async move {
                    coord.await_cluster_change().await;
                    let _ = tx.send(Event::ClusterChanged { id });
                }));
            }
            Effect::ReadCooldown { id } => {
                let answer = answers::cooldown(self.coord.as_ref(), id).await;
                let _ = self.tx.send(answer);
            }
            Effect::StartCooldown { duration_sec } => self
                .chores
                .push(Chore::StartCooldown(Duration::from_secs(duration_sec))),
            Effect::RunHooks { id, .. } => {
                let _ = self.tx.send(Event::HooksRan {
                    id,
                    result: StepResult::Ok,
                });
            }
            Effect::ExecuteReboot { id, dry_run, .. } => {
                if !dry_run {
                    self.sh.reboot(self.i);
                }
                let _ = self.tx.send(Event::RebootCommandFinished {
                    id,
                    result: StepResult::Ok,
                });
            }
            Effect::WritePostRebootMarker { .. } => {}
            Effect::Exit { .. } => return true,
        }
        false
    }
}
