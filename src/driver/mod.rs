//! The driver (tokio): connects the pure machine to the adapters.
//!
//! One loop selects over adapter results, the machine's next timer, signals, the kill-switch
//! watcher and the heartbeat. For every input it: stamps `now` and jitter, calls the machine,
//! appends the record to the journal **with fsync before any effect runs**, rewrites
//! `state.json`, then executes the effects in order. Slow effects run as tasks whose results
//! come back as events; quick bookkeeping effects (release, markers) are awaited in place so
//! they complete before a following `Exit`.
//!
//! The driver makes no decisions, with one safety net: if the journal could not be written,
//! the two effects that start a reboot (`MoveSlotToRebootLease`, real `ExecuteReboot`) are
//! answered with a failure instead of being executed — no reboot without a durable record.

pub mod answers;
pub mod chores;
pub mod notify;
pub mod report;
pub mod spawn;
pub mod state_file;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::adapters::detectors::{self, DetectorReport, PresetPaths};
use crate::adapters::env::{CallEnv, EnvExtras, base_env};
use crate::adapters::health::{HealthConfig, HealthReport, HealthRunner};
use crate::adapters::{boot, reboot, window};
use crate::config::Settings;
use crate::coord::Coordinator;
use crate::exit::Exit;
use crate::fsm::record::{Record, fmt_ts};
use crate::fsm::*;
use crate::journal::{JournalError, JournalOptions};
use crate::replay::DaemonJournal;

use self::chores::{Chore, Chores};
use self::notify::Notifier;
use self::report::PassReport;
use self::state_file::{SlotInfo, StateFile};
use crate::metrics::Metrics;

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Validated configuration.
    pub settings: Settings,
    /// Flags that change decisions.
    pub mode: RunMode,
    /// Journal, state file and heartbeat (the daemon and `run --once`); off for `status`.
    pub persist: bool,
    /// Print the Go pass report when the machine exits (`--once`, `status`).
    pub print_report: bool,
    /// Boot id of this process.
    pub boot_id: String,
    /// Where detector presets look (the real system by default; tests point elsewhere).
    pub presets: PresetPaths,
    /// The configuration file, re-read on SIGHUP (`None`: no reload).
    pub config_path: Option<PathBuf>,
}

/// Messages from adapter tasks to the loop.
enum Msg {
    Event(Event),
    Detectors(Phase, Vec<DetectorReport>),
    Health(Phase, HealthReport),
}

/// Current wall-clock time in ms since the epoch (adapters may read the clock; the machine not).
pub fn now_ms() -> Millis {
    crate::clock::Clock::System.now_ms()
}

/// Records kept for compaction (snapshot before the oldest + the records).
const TAIL: usize = 20;

struct Driver<C: Coordinator> {
    opts: Options,
    settings: Arc<Settings>,
    coord: Arc<C>,
    machine: Machine,
    journal: Option<DaemonJournal>,
    tail: VecDeque<(Snapshot, Record)>,
    tx: mpsc::UnboundedSender<Msg>,
    next_tick: Option<Millis>,
    join_task: Option<JoinHandle<()>>,
    /// The pending `AwaitClusterChange` (a newer one replaces it).
    cluster_task: Option<JoinHandle<()>>,
    /// The test hook's misbehaving adapters (none in production).
    faults: spawn::AdapterFaults,
    health: Arc<HealthRunner>,
    rc_env: Arc<Vec<(String, String)>>,
    since: Millis,
    last_outcome: Option<String>,
    report: PassReport,
    jitter: std::collections::hash_map::RandomState,
    counter: u64,
    kill_switch_seen: bool,
    lock_attempts: u32,
    metrics: Arc<Metrics>,
    chores: Chores,
    notifier: Notifier,
    join_started: Option<std::time::Instant>,
    /// The last health-script run failed because this daemon ran out of resources
    /// ([`HealthReport::daemon_fault`]): the machine's unhealthy publish for it is withheld.
    withhold_unhealthy: bool,
    fleet: crate::fleet::Fleet,
}

/// Runs the machine until it emits `Exit`. Returns the exit code.
pub async fn run<C: Coordinator>(opts: Options, coord: Arc<C>) -> Exit {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Arc::new(opts.settings.clone());
    let metrics = Arc::new(Metrics::new(
        crate::version::VERSION,
        crate::version::REVISION,
    ));
    let mut metrics_endpoint = None;
    let mut _metrics_server = None;
    if let (Some(addr), true) = (settings.metrics_listen, opts.persist) {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(event = "metrics_listening", address = %bound, "metrics server listening on {bound}");
                metrics_endpoint = Some(bound);
                _metrics_server = Some(AbortOnDrop(tokio::spawn(crate::metrics::serve_page(
                    metrics.clone(),
                    listener,
                    crate::fleet::page::Source::new(coord.clone(), &settings.node_name),
                ))));
            }
            Err(e) => {
                eprintln!("clusterrebootd: cannot listen on metrics.listen {addr}: {e}");
                return Exit::Runtime;
            }
        }
    }
    let extras = EnvExtras {
        dry_run: opts.settings.dry_run || opts.mode.dry_run,
        metrics_endpoint,
        skip_health: opts.mode.skip_health,
        skip_lock: opts.mode.skip_lock,
    };
    let rc_env = Arc::new(base_env(&settings, &extras));
    let health = Arc::new(HealthRunner::new(HealthConfig {
        script: settings.health_script.clone(),
        timeout: settings.health_timeout,
        base_env: rc_env.as_ref().clone(),
    }));
    let chores = Chores::start(coord.clone(), metrics.clone());
    let fleet = crate::fleet::Fleet::start(&settings, coord.clone(), metrics.clone());
    let mut d = Driver {
        settings: settings.clone(),
        coord,
        machine: Machine::new(),
        journal: None,
        tail: VecDeque::new(),
        tx,
        next_tick: None,
        join_task: None,
        cluster_task: None,
        faults: spawn::AdapterFaults::from_env(),
        health,
        rc_env,
        since: now_ms(),
        last_outcome: None,
        report: PassReport::default(),
        jitter: std::collections::hash_map::RandomState::new(),
        counter: 0,
        kill_switch_seen: false,
        lock_attempts: 0,
        chores,
        metrics,
        notifier: Notifier::from_env(),
        join_started: None,
        withhold_unhealthy: false,
        fleet,
        opts,
    };
    if d.opts.persist
        && let Err(e) = d.open_journal()
    {
        tracing::error!(event = "journal_error", error = %e, "cannot open the journal");
        eprintln!("clusterrebootd: {e}");
        return Exit::Runtime;
    }
    let config = FsmConfig::from_settings(&d.settings, d.opts.mode);
    d.kill_switch_seen = d.kill_switch();
    d.metrics.set_state(d.machine.state().name().as_str());
    if let Some(code) = d
        .handle(Event::Started {
            boot_id: d.opts.boot_id.clone(),
            config,
        })
        .await
    {
        return d.finish(code).await;
    }
    if d.opts.persist
        && let Some(found) = d.reconcile().await
        && let Some(code) = d
            .handle(Event::UnfinishedRebootFound {
                from_boot: found.from_boot,
                since: found.since,
                rebooted: found.rebooted,
            })
            .await
    {
        return d.finish(code).await;
    }

    let daemon = !d.opts.mode.once;
    let mut notices = d.coord.notices();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut heartbeat = tokio::time::interval(d.settings.health_publish_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sighup = signal(SignalKind::hangup()).ok();
    let watchdog_every = d.notifier.watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    d.notifier
        .ready(&format!("{}: {}", d.machine.state().name(), "started"));

    loop {
        let sleep = d.next_tick.map(|at| {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait))
        });
        let overdue = d.machine.deadline().map(|p| {
            let wait = p.deadline.saturating_sub(now_ms());
            (p.id, tokio::time::sleep(Duration::from_millis(wait)))
        });
        let code = tokio::select! {
            Some(msg) = rx.recv() => match msg {
                Msg::Event(e) => d.handle(e).await,
                Msg::Detectors(phase, reports) => { d.report.detectors(phase, reports); None }
                Msg::Health(phase, report) => {
                    d.withhold_unhealthy = report.daemon_fault;
                    d.report.health(phase, report);
                    None
                }
            },
            () = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {
                d.next_tick = None;
                let gates = d.gates().await;
                d.handle(Event::Tick { gates }).await
            }
            id = async { match overdue { Some((id, s)) => { s.await; id } None => std::future::pending().await } } => {
                tracing::warn!(event = "request_timed_out", request = id, "an adapter did not answer in time; treating the request as failed");
                d.handle(Event::EffectTimedOut { id }).await
            }
            notice = notices.recv() => match notice {
                Ok(crate::coord::Notice::SlotLost(detail)) => d.handle(Event::SlotLost { detail }).await,
                Ok(crate::coord::Notice::PauseChanged(pause)) => {
                    let gates = Gates { kill_switch: d.kill_switch(), pause };
                    d.handle(Event::GatesObserved { id: None, gates }).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    notices = tokio::sync::broadcast::channel(1).1;
                    None
                }
            },
            Some(()) = recv_signal(&mut sigterm) => d.handle(Event::ShutdownRequested).await,
            Some(()) = recv_signal(&mut sigint) => d.handle(Event::ShutdownRequested).await,
            _ = watch.tick() => {
                let now = d.kill_switch();
                if now != d.kill_switch_seen {
                    d.kill_switch_seen = now;
                    let gates = d.gates().await;
                    d.handle(Event::GatesObserved { id: None, gates }).await
                } else {
                    None
                }
            }
            _ = heartbeat.tick(), if daemon && d.opts.persist => { d.heartbeat(); None }
            Some(()) = recv_signal(&mut sighup) => d.reload().await,
            _ = watchdog.tick(), if watchdog_every.is_some() => { d.notifier.watchdog(); None }
        };
        if let Some(code) = code {
            return d.finish(code).await;
        }
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl<C: Coordinator> Driver<C> {
    /// What coordination knows of this node, before anything else (SPEC §8): retried for a
    /// while when the store cannot be read and there are no local facts either; after that the
    /// daemon goes on (every step that needs the store fails closed until it is back).
    async fn reconcile(&self) -> Option<crate::coord::UnfinishedReboot> {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=6 {
            match self.coord.reconcile().await {
                Ok(found) => {
                    if let Some(f) = &found {
                        tracing::warn!(event = "unfinished_reboot_found", from_boot = ?f.from_boot, since = ?f.since, rebooted = f.rebooted, "coordination shows an unfinished reboot of this node");
                    }
                    return found;
                }
                Err(e) => {
                    tracing::warn!(event = "reconcile_failed", attempt, error = %e, "cannot read this node's coordination state yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(
            event = "reconcile_gave_up",
            "could not reconcile with the coordination store at start; going on without it"
        );
        None
    }

    fn journal_path(&self) -> PathBuf {
        self.settings.state_dir.join("journal.jsonl")
    }

    /// Opens the journal and rebuilds the machine from it without executing anything. A journal
    /// damaged in the middle is renamed aside (never deleted) and a fresh one started.
    fn open_journal(&mut self) -> Result<(), JournalError> {
        let path = self.journal_path();
        let opened = match DaemonJournal::open(&path, JournalOptions::default()) {
            Err(JournalError::Corrupt { line, message, .. }) => {
                let moved = crate::journal::Journal::quarantine(&path)?;
                tracing::error!(
                    event = "journal_corrupt",
                    line,
                    message = %message,
                    moved_to = %moved.display(),
                    "journal damaged; kept it aside and starting a new one"
                );
                eprintln!(
                    "clusterrebootd: journal {} line {line}: {message}; moved to {} and starting a new journal",
                    path.display(),
                    moved.display()
                );
                DaemonJournal::open(&path, JournalOptions::default())?
            }
            other => other?,
        };
        let (journal, loaded) = opened;
        for w in &loaded.warnings {
            tracing::warn!(event = "journal_warning", "{w}");
        }
        let mut m = match loaded.snapshot {
            Some(s) => Machine::restore(s),
            None => Machine::new(),
        };
        let mut diverged = 0usize;
        for (_, rec) in &loaded.records {
            let step = m.handle(&rec.input());
            if !rec.same_decision(&step) {
                diverged += 1;
            }
        }
        if diverged > 0 {
            tracing::warn!(
                event = "journal_replay_diverged",
                records = diverged,
                "this version decides differently on some recorded inputs; continuing from the replayed state"
            );
        }
        tracing::info!(
            event = "journal_restored",
            records = loaded.records.len(),
            state = %m.state().name(),
            "restored the machine from the journal"
        );
        self.machine = m;
        self.journal = Some(journal);
        Ok(())
    }

    fn kill_switch(&self) -> bool {
        match std::fs::metadata(&self.settings.kill_switch_file) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                // Cannot tell: fail closed.
                tracing::warn!(event = "kill_switch_error", error = %e, "cannot check the kill switch; treating it as present");
                true
            }
        }
    }

    async fn gates(&self) -> Gates {
        answers::gates(self.coord.as_ref(), self.kill_switch()).await
    }

    fn next_jitter(&mut self) -> u32 {
        self.counter += 1;
        let mut h = self.jitter.build_hasher();
        h.write_u64(self.counter);
        (h.finish() >> 32) as u32
    }

    fn send(&self, e: Event) {
        // The receiver lives as long as the loop; a failed send means we are exiting anyway.
        let _ = self.tx.send(Msg::Event(e));
    }

    /// One input through the machine, journal, state file, effects.
    async fn handle(&mut self, event: Event) -> Option<Exit> {
        let now = now_ms();
        let input = Input {
            now,
            jitter: self.next_jitter(),
            event,
        };
        let before = self.machine.snapshot();
        let step = self.machine.handle(&input);
        let record = Record::new(&self.opts.boot_id, &input, &step);
        let durable = self.append(before, record);
        self.observe(&input, &step, now);
        for effect in step.effects.clone() {
            if let Some(code) = self.execute(effect, durable).await {
                return Some(code);
            }
        }
        None
    }

    /// Appends to the journal; returns whether the record is durable (always true without one).
    fn append(&mut self, before: Snapshot, record: Record) -> bool {
        let Some(journal) = self.journal.as_mut() else {
            return !self.opts.persist;
        };
        if let Err(e) = journal.append(&record) {
            tracing::error!(event = "journal_error", kind = e.kind(), error = %e, "cannot append to the journal; no reboot will start until it works");
            return false;
        }
        self.tail.push_back((before, record));
        if self.tail.len() > TAIL {
            self.tail.pop_front();
        }
        if journal.needs_compaction()
            && let Some((snap, _)) = self.tail.front()
        {
            let keep: Vec<Record> = self.tail.iter().map(|(_, r)| r.clone()).collect();
            if let Err(e) = journal.compact(snap, &keep) {
                tracing::warn!(event = "journal_compaction_failed", error = %e, "journal compaction failed; will retry");
            }
        }
        true
    }

    /// Logs, pass report and state file after a step.
    fn observe(&mut self, input: &Input, step: &Step, now: Millis) {
        if step.from != step.to {
            self.since = now;
            self.metrics
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
            self.report = PassReport::default();
            self.lock_attempts = 0;
        }
        let held = matches!(
            step.to,
            StateName::HealthPost
                | StateName::Cooldown
                | StateName::Rebooting
                | StateName::Recovering
        );
        self.metrics.lock_held(held);
        self.metrics.lock_queue_position(
            self.machine
                .core()
                .queue
                .as_ref()
                .map_or(0, |q| i64::from(q.position)),
        );
        match &input.event {
            Event::WindowEvaluated { verdict, .. } => {
                self.metrics.window_evaluation(match verdict {
                    WindowVerdict::Open { .. } => "allowed",
                    WindowVerdict::Closed {
                        outcome: Outcome::WindowDenied,
                        ..
                    } => "deny",
                    WindowVerdict::Closed { .. } => "outside_allow",
                })
            }
            Event::CooldownRead { status, .. } => self.metrics.cooldown_check(
                "post-lock",
                match status {
                    CooldownStatus::Clear => "inactive",
                    CooldownStatus::Active { .. } => "active",
                    CooldownStatus::Error { .. } => "error",
                },
            ),
            Event::ClusterHealthEvaluated { verdict, .. } => self.metrics.cluster_health_check(
                if step.from == StateName::HealthPost {
                    "post-lock"
                } else {
                    "pre-lock"
                },
                match verdict {
                    PolicyVerdict::Pass => "healthy",
                    // Go has no such value; the thresholds failed, so Go's word is "unhealthy".
                    PolicyVerdict::HeldBack { .. } => "unhealthy",
                    PolicyVerdict::Blocked { .. } => "unhealthy",
                    PolicyVerdict::Error { .. } => "error",
                },
            ),
            Event::SlotAcquired { .. } if step.to == StateName::HealthPost => {
                if let Some(t) = self.join_started.take() {
                    self.metrics.lock_wait(t.elapsed().as_secs_f64());
                    self.metrics
                        .lock_attempt("success", t.elapsed().as_secs_f64());
                }
            }
            Event::SlotUnavailable { .. } => self.metrics.lock_attempt("error", 0.0),
            Event::RebootCommandFinished {
                result: StepResult::Failed { .. },
                ..
            } => self.metrics.reboot("failed"),
            _ => {}
        }
        if step.from == StateName::Recovering
            && step.to == StateName::Idle
            && let State::Idle {} = self.machine.state()
            && let Some(Event::HealthChecked { .. }) = Some(&input.event)
            && let Some(issued) = self.tail.iter().rev().find_map(|(_, r)| {
                r.effects.iter().find_map(|e| match e {
                    Effect::ExecuteReboot { dry_run: false, .. } => Some(r.now),
                    _ => None,
                })
            })
        {
            self.metrics
                .reboot_duration(now.saturating_sub(issued) as f64 / 1000.0);
        }
        match (&input.event, step.to) {
            (Event::SlotAcquired { .. }, StateName::HealthPost) => self.report.lock_acquired = true,
            (
                Event::ClusterHealthEvaluated {
                    verdict: PolicyVerdict::Blocked { reasons },
                    ..
                },
                _,
            ) => self.report.blockers = reasons.clone(),
            _ => {}
        }
        if step.outcome.is_some() || step.exit.is_some() {
            self.report.outcome = step.outcome;
            self.report.message = step.reason.clone();
            if let Some(o) = step.outcome {
                let repeated = self.last_outcome.as_deref() == Some(o.as_str());
                self.last_outcome = Some(o.as_str().to_string());
                self.metrics.orchestration_outcome(o.as_str());
                if !matches!(
                    o,
                    Outcome::NoAction | Outcome::Ready | Outcome::RecheckCleared
                ) {
                    self.metrics.reboot_blocked(o.as_str());
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
                held: matches!(
                    step.to,
                    StateName::HealthPost
                        | StateName::Cooldown
                        | StateName::Rebooting
                        | StateName::Recovering
                ),
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
                .or(self.next_tick);
            let file = StateFile::after(
                &self.settings.node_name,
                &self.opts.boot_id,
                step,
                self.since,
                now,
                self.last_outcome.clone(),
                next,
                slot,
                self.machine.core().config.dry_run,
            );
            if let Err(e) = file.write(&self.settings.run_dir) {
                tracing::warn!(event = "state_file_error", error = %e, "cannot write state.json");
            }
            (self.fleet).observe(&input.event, step, &file, self.tail.iter().map(|(_, r)| r));
        }
    }

    /// The per-call part of the `RC_*` environment for a run in `phase`.
    fn call(&self, phase: Phase) -> CallEnv {
        CallEnv {
            phase,
            lock_enabled: !self.opts.mode.skip_lock,
            lock_held: phase == Phase::PostLock,
            lock_attempts: if phase == Phase::PostLock {
                self.lock_attempts
            } else {
                0
            },
            state: self.machine.state().name().as_str().to_string(),
        }
    }

    /// The whole `RC_*` environment for hooks and the reboot command.
    fn call_env(&self, phase: Phase) -> Vec<(String, String)> {
        let mut env = self.rc_env.as_ref().clone();
        env.extend(self.call(phase).to_env());
        env
    }

    /// Spawns the adapter work answering request `id` (see [`spawn`]).
    fn spawn_answering(
        &self,
        effect: &'static str,
        id: EffectId,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let tx = self.tx.clone();
        spawn::spawn_answering(
            &self.faults,
            effect,
            id,
            move |id| {
                let _ = tx.send(Msg::Event(Event::EffectTimedOut { id }));
            },
            work,
        );
    }

    /// Executes one effect; returns the exit code for `Exit`.
    async fn execute(&mut self, effect: Effect, durable: bool) -> Option<Exit> {
        let tx = self.tx.clone();
        let coord = self.coord.clone();
        match effect {
            Effect::ScheduleTick { at } => self.next_tick = Some(at),
            Effect::RunDetectors { id, phase } => {
                let specs = self.settings.detectors.clone();
                let presets = self.opts.presets.clone();
                let metrics = self.metrics.clone();
                self.spawn_answering("RunDetectors", id, async move {
                    let started = std::time::Instant::now();
                    let mut reports = detectors::evaluate(&specs, &presets).await;
                    // An operator's `cluster request-reboot` counts as "reboot required".
                    let outcome = match coord.reboot_requested().await {
                        Ok(true) => Some(detectors::DetectorOutcome::Required),
                        Ok(false) => None,
                        Err(e) => Some(detectors::DetectorOutcome::Error(format!(
                            "read reboot request: {e}"
                        ))),
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
                    let _ = tx.send(Msg::Event(Event::DetectorsEvaluated { id, result }));
                });
            }
            Effect::EvaluateWindow { id } => {
                let verdict = window::evaluate(&self.settings.windows, now_ms());
                self.send(Event::WindowEvaluated { id, verdict });
            }
            Effect::ReadClusterHealth { id } => {
                self.spawn_answering("ReadClusterHealth", id, async move {
                    let _ = tx.send(Msg::Event(
                        answers::cluster_health(coord.as_ref(), id).await,
                    ));
                });
            }
            Effect::RunHealthScript { id, phase } => {
                let health = self.health.clone();
                let metrics = self.metrics.clone();
                let call = self.call(phase);
                self.spawn_answering("RunHealthScript", id, async move {
                    let report = health.run(&call).await;
                    let result = report.result.clone();
                    metrics.health_check(
                        phase.as_str(),
                        health_label(&result),
                        report.duration.as_secs_f64(),
                    );
                    let _ = tx.send(Msg::Health(phase, report));
                    let _ = tx.send(Msg::Event(Event::HealthChecked { id, result }));
                });
            }
            Effect::PublishHealth {
                healthy,
                stage,
                reason,
            } => {
                if !healthy && std::mem::take(&mut self.withhold_unhealthy) {
                    // Our own resource exhaustion is no verdict on the node (issue #20): peers
                    // keep the last real record (stale after health_stale_after_sec).
                    tracing::error!(event = "health_publish_withheld", reason = %reason, "the health script could not be started for lack of resources in this daemon; not publishing unhealthy to peers");
                } else if self.opts.persist {
                    let record = answers::health_record(
                        &self.settings.node_name,
                        healthy,
                        stage,
                        reason,
                        jiff::Timestamp::now(),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = coord.publish_health(record).await {
                            tracing::warn!(event = "health_publish_failed", error = %e);
                        }
                    });
                }
            }
            Effect::CheckGates { id } => {
                let gates = self.gates().await;
                self.metrics.kill_switch_check(
                    "post-lock",
                    if gates.active() { "active" } else { "inactive" },
                );
                self.send(Event::GatesObserved {
                    id: Some(id),
                    gates,
                });
            }
            Effect::JoinQueue { id } => {
                self.lock_attempts += 1;
                self.join_started = Some(std::time::Instant::now());
                // The entry's key is the session's: a leave or release still pending would
                // delete the new entry when it lands (see `chores`). Fail closed; retry later.
                if let Some(detail) = self.chores.join_blocked() {
                    self.send(Event::SlotUnavailable { id, detail });
                    return None;
                }
                self.join_task = Some(tokio::spawn(async move {
                    answers::join_queue(coord.as_ref(), id, |e| {
                        let _ = tx.send(Msg::Event(e));
                    })
                    .await;
                }));
            }
            Effect::LeaveQueue => {
                if let Some(t) = self.join_task.take() {
                    t.abort();
                }
                self.chores.push(Chore::LeaveQueue);
            }
            Effect::ReleaseSlot => {
                if let Some(t) = self.join_task.take() {
                    t.abort();
                }
                self.chores.push(Chore::ReleaseSlot);
            }
            Effect::MoveSlotToRebootLease { id, ttl_sec } => {
                let answer = answers::move_lease(self.coord.as_ref(), id, ttl_sec, durable).await;
                self.send(answer);
            }
            Effect::ReattachRebootLease { id } => {
                self.spawn_answering("ReattachRebootLease", id, async move {
                    let _ = tx.send(Msg::Event(answers::reattach(coord.as_ref(), id).await));
                });
            }
            Effect::ClearInProgress => self.chores.push(Chore::ClearInProgress),
            Effect::CompleteRecovery { cooldown_sec } => {
                if let Some(t) = self.join_task.take() {
                    t.abort();
                }
                self.chores
                    .push(Chore::CompleteRecovery(Duration::from_secs(cooldown_sec)));
            }
            Effect::AwaitClusterChange { id } => {
                if let Some(t) = self.cluster_task.take() {
                    t.abort();
                }
                self.cluster_task = Some(tokio::spawn(async move {
                    coord.await_cluster_change().await;
                    let _ = tx.send(Msg::Event(Event::ClusterChanged { id }));
                }));
            }
            Effect::ReadCooldown { id } => {
                self.spawn_answering("ReadCooldown", id, async move {
                    let _ = tx.send(Msg::Event(answers::cooldown(coord.as_ref(), id).await));
                });
            }
            Effect::StartCooldown { duration_sec } => {
                self.chores
                    .push(Chore::StartCooldown(Duration::from_secs(duration_sec)));
            }
            Effect::RunHooks { id, stage } => {
                let hooks = match stage {
                    HookStage::PreReboot => self.settings.hooks.pre_reboot.clone(),
                    HookStage::PostReboot => self.settings.hooks.post_reboot.clone(),
                };
                let env = self.call_env(Phase::PostLock);
                let timeout = self.settings.hooks.timeout;
                self.spawn_answering("RunHooks", id, async move {
                    let result = match reboot::run_hooks(&hooks, &env, timeout).await {
                        Ok(()) => StepResult::Ok,
                        Err(detail) => StepResult::Failed { detail },
                    };
                    let _ = tx.send(Msg::Event(Event::HooksRan { id, result }));
                });
            }
            Effect::ExecuteReboot { id, argv, dry_run } => {
                let env = self.call_env(Phase::PostLock);
                let expanded = reboot::expand_argv(&argv, &env, |k| std::env::var(k).ok());
                self.report.planned_command = Some(expanded.join(" "));
                self.report.dry_run = dry_run;
                if !dry_run && !durable {
                    self.send(Event::RebootCommandFinished {
                        id,
                        result: StepResult::Failed {
                            detail: "the journal is not writable; refusing to reboot".into(),
                        },
                    });
                    return None;
                }
                self.metrics
                    .reboot(if dry_run { "dry_run" } else { "executed" });
                if dry_run {
                    tracing::info!(event = "dry_run_reboot", argv = ?expanded, "dry run: would reboot now with {}", expanded.join(" "));
                } else {
                    tracing::warn!(event = "reboot", argv = ?expanded, "executing the reboot command");
                }
                self.spawn_answering("ExecuteReboot", id, async move {
                    let result = match reboot::execute_reboot(&expanded, &env, dry_run).await {
                        Ok(()) => StepResult::Ok,
                        Err(detail) => StepResult::Failed { detail },
                    };
                    let _ = tx.send(Msg::Event(Event::RebootCommandFinished { id, result }));
                });
            }
            Effect::WritePostRebootMarker {
                previous_boot_id,
                boot_id,
                issued_at,
                returned_at,
            } => {
                let marker =
                    boot::PostRebootMarker::new(previous_boot_id, boot_id, issued_at, returned_at);
                if let Err(e) = boot::write_post_reboot_marker(&self.settings.run_dir, &marker) {
                    tracing::warn!(event = "post_reboot_marker_failed", error = %e);
                }
            }
            Effect::Exit { code } => return Some(code),
        }
        None
    }

    /// Heartbeat (SPEC §6.2): the health script outside the machine, result published.
    fn heartbeat(&self) {
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
                Ok(()) => metrics.cluster_health_update("heartbeat", status, "success"),
                Err(e) => {
                    metrics.cluster_health_update("heartbeat", status, "error");
                    tracing::warn!(event = "health_publish_failed", error = %e);
                }
            }
        });
    }

    /// SIGHUP: re-read and validate the configuration; keep the old one if it is invalid; apply
    /// the hot fields at once and name the restart-only fields that changed but were not applied.
    async fn reload(&mut self) -> Option<Exit> {
        let path = self.opts.config_path.clone()?;
        self.notifier.reloading();
        let status = format!("{}: reloaded configuration", self.machine.state().name());
        let new = match crate::config::load_settings(&path, &crate::config::ValidateEnv::system()) {
            Ok(v) => v.settings,
            Err(e) => {
                self.metrics.config_reload("invalid");
                tracing::error!(event = "config_reload_failed", path = %path.display(), problems = %e.problems().join("; "), "configuration reload rejected; keeping the running configuration");
                self.notifier.reloaded(&format!(
                    "{}: reload rejected (invalid configuration)",
                    self.machine.state().name()
                ));
                return None;
            }
        };
        let (applied, ignored) = hot_reload(&self.settings, new);
        if !ignored.is_empty() {
            tracing::warn!(event = "config_reload_restart_needed", fields = %ignored.join(", "), "these fields changed but need a restart: {}", ignored.join(", "));
        }
        let extras = EnvExtras {
            dry_run: applied.dry_run || self.opts.mode.dry_run,
            metrics_endpoint: self
                .rc_env
                .iter()
                .find(|(k, _)| k == "RC_METRICS_ENDPOINT")
                .map(|(_, v)| v.clone()),
            skip_health: self.opts.mode.skip_health,
            skip_lock: self.opts.mode.skip_lock,
        };
        self.rc_env = Arc::new(base_env(&applied, &extras));
        self.health
            .reconfigure(HealthConfig {
                script: applied.health_script.clone(),
                timeout: applied.health_timeout,
                base_env: self.rc_env.as_ref().clone(),
            })
            .await;
        self.coord.set_capacity(applied.max_concurrent_reboots);
        self.coord
            .set_policies(applied.policies.clone(), applied.health_stale_after);
        crate::logging::set_level(&applied.log.level);
        self.settings = Arc::new(applied);
        self.opts.settings = self.settings.as_ref().clone();
        self.metrics.config_reload("applied");
        tracing::info!(event = "config_reloaded", path = %path.display(), "configuration reloaded");
        let config = FsmConfig::from_settings(&self.settings, self.opts.mode);
        let code = self.handle(Event::ConfigReloaded { config }).await;
        self.notifier.reloaded(&status);
        code
    }

    /// Ends the run: lets pending coordination updates finish (bounded), prints the pass report
    /// when asked, syncs, returns the code.
    async fn finish(&mut self, code: Exit) -> Exit {
        let left = self.chores.drain(Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(
                event = "coordination_update_abandoned",
                left,
                "exiting with coordination updates not applied; the leases involved will expire"
            );
        }
        if let Some(j) = self.journal.as_mut()
            && let Err(e) = j.sync()
        {
            tracing::warn!(event = "journal_error", error = %e);
        }
        if self.opts.print_report {
            if matches!(
                self.report.outcome,
                Some(Outcome::Ready | Outcome::LockSkipped)
            ) && self.report.planned_command.is_none()
            {
                let env = self.call_env(Phase::PostLock);
                let argv = reboot::expand_argv(&self.settings.reboot_command, &env, |k| {
                    std::env::var(k).ok()
                });
                self.report.planned_command = Some(argv.join(" "));
                self.report.dry_run = self.machine.core().config.dry_run;
            }
            self.report.skip_health = self.opts.mode.skip_health;
            self.report.once_run = self.opts.persist && self.opts.mode.once;
            print!("{}", crate::text::for_terminal(&self.report.render()));
        }
        code
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
        _ => Level::INFO,
    }
}

/// Metrics label of a health-script result (Go: pass/blocked/error).
fn health_label(r: &HealthResult) -> &'static str {
    match r {
        HealthResult::Passed => "pass",
        HealthResult::Blocked { .. } => "blocked",
        HealthResult::Error { .. } => "error",
    }
}

/// Aborts a task when dropped (the metrics server lives as long as the driver).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Splits a reloaded configuration: returns the settings to run with (hot fields from `new`,
/// restart-only fields from `old`) and the names of restart-only fields that changed.
pub fn hot_reload(old: &Settings, new: Settings) -> (Settings, Vec<&'static str>) {
    let mut ignored = Vec::new();
    let mut s = new;
    macro_rules! keep {
        ($field:ident, $name:literal) => {
            if s.$field != old.$field {
                ignored.push($name);
                s.$field = old.$field.clone();
            }
        };
    }
    keep!(node_name, "node_name");
    keep!(etcd, "etcd_endpoints/etcd_tls/etcd_auth/etcd_namespace");
    keep!(lock_key, "lock_key");
    keep!(lock_backend, "lock_backend");
    keep!(state_dir, "state_dir");
    keep!(run_dir, "run_dir");
    keep!(boot_id_path, "boot_id_path");
    keep!(metrics_listen, "metrics.listen");
    keep!(lock_ttl, "lock_ttl_sec");
    keep!(webhooks, "webhooks");
    (s, ignored)
}
