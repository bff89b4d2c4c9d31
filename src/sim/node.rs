//! One simulated daemon process: the production machine, the production etcd protocol over
//! the shared in-memory store, the production bookkeeping queue, and simulated adapters
//! (detectors read the node's pending update, the health script follows the fault schedule,
//! hooks succeed, the reboot command power-cycles the simulated node).
//!
//! It mirrors the real driver's loop ([`crate::driver`]): inputs are stamped with the node's
//! clock and a seeded jitter, each step is recorded (the journal) before its effects run, and
//! every effect is executed by the daemon's own [`Executor`]; only the node's adapters
//! ([`SimAdapters`]) are simulated.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Broken;
use super::state::{Ctl, Shared};
use crate::adapters::boot::PostRebootMarker;
use crate::clock::Clock;
use crate::coord::HealthRecord;
use crate::coord::etcd::{AcquireOrder, EtcdBackend, EtcdConfig, GroupPool, LeaseStore};
use crate::coord::memkv::MemKv;
use crate::coord::{Coordinator, Notice};
use crate::driver::answers;
use crate::driver::chores::{Chore, Chores};
use crate::driver::executor::{Adapters, Answer, AnswerTx, Executor};
use crate::fsm::*;

type Coord = EtcdBackend<MemKv>;

struct Daemon {
    exec: Executor<Coord>,
    adapters: SimAdapters,
    machine: Arc<std::sync::Mutex<Machine>>,
    config: FsmConfig,
}

/// The simulated node's adapters (see the module doc).
struct SimAdapters {
    sh: Arc<Shared>,
    i: usize,
    clock: Clock,
    tx: mpsc::UnboundedSender<Event>,
    tasks: JoinSet<()>,
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
    let group = sh.spec.group_of(i).map(|g| GroupPool {
        name: g.name.clone(),
        capacity: match sh.spec.broken {
            Some(Broken::IgnoreGroupCapacity) => u32::try_from(sh.spec.nodes).unwrap_or(u32::MAX),
            _ => g.capacity,
        },
    });
    let acquire_order = match sh.spec.broken {
        Some(Broken::MixedAcquireOrder) if i.is_multiple_of(2) => AcquireOrder::ClusterFirst,
        _ => AcquireOrder::GroupFirst,
    };
    let cfg = EtcdConfig {
        clock: clock.clone(),
        policies: sh.spec.policies.clone(),
        stale_after: sh.spec.stale_after,
        group,
        acquire_order,
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
        exec: Executor::new(coord, chores, sh.metrics.clone()),
        adapters: SimAdapters {
            sh,
            i,
            clock,
            tx,
            tasks: JoinSet::new(),
        },
        config,
    };
    let rebooted = {
        // Like the daemon reading its journal: continue from the recorded state.
        let mut m = d.lock_machine();
        *m = Machine::restore(m.snapshot());
        matches!(m.state(), State::Rebooting { .. })
    };
    if d.adapters.sh.spec.broken == Some(Broken::ReleaseOnBoot) && rebooted {
        d.exec.chores.push(Chore::ReleaseSlot);
        d.exec.chores.push(Chore::ClearInProgress);
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
    let mut notices = d.exec.coord().notices();
    let (sh, i, tx) = (d.adapters.sh.clone(), d.adapters.i, d.adapters.tx.clone());
    d.adapters.tasks.spawn(async move {
        loop {
            let event = match notices.recv().await {
                Ok(Notice::SlotLost(detail)) => Event::SlotLost { detail },
                Ok(Notice::PauseChanged(pause)) => Event::GatesObserved {
                    id: None,
                    gates: Gates {
                        kill_switch: sh.kill_switch(i),
                        pause,
                        unknown: None,
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
    let p = &d.adapters.sh.spec.policies;
    let policies_active = p.min_healthy_fraction > 0.0
        || p.min_healthy_absolute > 0
        || p.forbid_if_only_fallback_left;
    let mut heartbeat = tokio::time::interval(d.adapters.sh.spec.heartbeat);
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
                    + Duration::from_millis(p.deadline.saturating_sub(d.adapters.clock.now_ms())),
            )
        });
        if want_deadline != armed_deadline {
            if let Some((_, at)) = want_deadline {
                overdue.as_mut().reset(at);
            }
            armed_deadline = want_deadline;
        }
        let want = d.exec.next_tick.map(|at| {
            tokio::time::Instant::now()
                + Duration::from_millis(at.saturating_sub(d.adapters.clock.now_ms()))
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
                    d.exec.coord().set_capacity(k);
                    let config = d.config.clone();
                    d.handle(Event::ConfigReloaded { config }).await
                }
            },
            Some(e) = rx.recv() => d.handle(e).await,
            () = &mut tick, if armed.is_some() => {
                d.exec.next_tick = None;
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
        while d.adapters.tasks.try_join_next().is_some() {}
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
        self.exec.gates(&self.adapters).await
    }

    /// One input: stamp, machine, record (journal + checks), effects. True when it exits.
    async fn handle(&mut self, event: Event) -> bool {
        let sh = self.adapters.sh.clone();
        let event = review(&sh, self.adapters.i, event);
        let jitter = sh.world().rng.u32(..);
        let input = Input {
            now: self.adapters.clock.now_ms(),
            jitter,
            event,
        };
        let step = self.lock_machine().handle(&input);
        sh.after_step(self.adapters.i, &input, &step);
        let mut exit = false;
        for effect in step.effects {
            // The simulated journal is always durable.
            exit |= self
                .exec
                .execute(&mut self.adapters, effect, true)
                .await
                .is_some();
        }
        exit
    }

    async fn exit(mut self) {
        // Like the daemon: give the bookkeeping a bounded time to land, then stop.
        self.exec.shutdown(Duration::from_secs(5)).await;
        self.adapters.tasks.abort_all();
    }

    fn heartbeat(&mut self) {
        let a = &mut self.adapters;
        let result = a.health_result();
        let coord = self.exec.coord().clone();
        let record = answers::heartbeat_record(&super::node_name(a.i), &result, a.clock.now());
        a.tasks.spawn(async move {
            let _ = coord.publish_health(record).await;
        });
    }
}

/// Applies the simulator's regression models and liveness checks to an answer before the
/// machine sees it (the adapters' own answers are not otherwise altered).
fn review(sh: &Shared, i: usize, event: Event) -> Event {
    let Event::ClusterHealthEvaluated { id, verdict } = event else {
        return event;
    };
    let mut verdict = verdict;
    if sh.spec.broken == Some(Broken::TimerHandoff) {
        // As before: any peer's in-progress marker blocks.
        let ip = sh.keys.in_progress_prefix();
        let me = super::node_name(i);
        let marked: Vec<String> = sh
            .kv
            .dump()
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&ip).map(str::to_string))
            .filter(|n| *n != me)
            .collect();
        if matches!(verdict, PolicyVerdict::HeldBack { .. }) || !marked.is_empty() {
            verdict = PolicyVerdict::Blocked {
                reasons: vec![BlockReason::new(
                    BlockKind::RebootInProgress,
                    format!("reboot in progress on {}", marked.join(", ")),
                )],
            };
        }
    }
    if let PolicyVerdict::Blocked { reasons } = &verdict
        && sh.spec.check_liveness
    {
        sh.policy_blocked(i, reasons);
    }
    Event::ClusterHealthEvaluated { id, verdict }
}

impl SimAdapters {
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

    /// The fault "adapters stall": detectors and the health script never answer; the
    /// machine's deadline must.
    fn stalled(&self) -> bool {
        self.sh.world().nodes[self.i].adapters_stalled
    }
}

impl Adapters for SimAdapters {
    fn answer_tx(&self) -> AnswerTx {
        let tx = self.tx.clone();
        Arc::new(move |e| {
            let _ = tx.send(e);
        })
    }

    fn spawn_answering(&mut self, _effect: &'static str, _id: EffectId, work: Answer) {
        let tx = self.tx.clone();
        self.tasks.spawn(async move {
            let _ = tx.send(work.await);
        });
    }

    fn run_detectors(&mut self, id: EffectId, _phase: Phase) {
        if self.stalled() {
            return;
        }
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

    fn evaluate_window(&mut self) -> WindowVerdict {
        if self.sh.spec.broken == Some(Broken::IgnoreWindows) {
            WindowVerdict::Open {
                closes_at: None,
                closes_by: None,
            }
        } else {
            crate::adapters::window::evaluate(&self.sh.spec.windows, self.clock.now_ms())
        }
    }

    fn run_health_script(&mut self, id: EffectId, _phase: Phase) {
        if self.stalled() {
            return;
        }
        let result = self.health_result();
        let after = match result {
            HealthResult::Error { .. } => self.sh.spec.health_timeout,
            _ => self.sh.spec.health_latency,
        };
        self.send_later(after, Event::HealthChecked { id, result });
    }

    fn health_record(
        &mut self,
        healthy: bool,
        stage: Phase,
        reason: String,
    ) -> Option<HealthRecord> {
        let name = super::node_name(self.i);
        Some(answers::health_record(
            &name,
            healthy,
            stage.as_str().into(),
            reason,
            self.clock.now(),
        ))
    }

    fn kill_switch(&self) -> bool {
        self.sh.kill_switch(self.i) && self.sh.spec.broken != Some(Broken::IgnoreKillSwitch)
    }

    fn gates_checked(&mut self, _gates: &Gates) {
        let now = self.sh.elapsed_ms();
        self.sh.world().nodes[self.i].last_gate_sample = Some(now);
    }

    fn joining(&mut self) {}

    fn run_hooks(&mut self, id: EffectId, _stage: HookStage) {
        let _ = self.tx.send(Event::HooksRan {
            id,
            result: StepResult::Ok,
        });
    }

    fn execute_reboot(&mut self, id: EffectId, _argv: Vec<String>, dry_run: bool) {
        if !dry_run {
            self.sh.reboot(self.i);
        }
        let _ = self.tx.send(Event::RebootCommandFinished {
            id,
            result: StepResult::Ok,
        });
    }

    fn write_post_reboot_marker(&mut self, _marker: PostRebootMarker) {}

    fn watches_cluster(&self) -> bool {
        self.sh.spec.broken != Some(Broken::TimerHandoff)
    }
}
