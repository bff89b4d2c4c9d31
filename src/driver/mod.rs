//! The driver (tokio): connects the pure machine to the adapters.
//!
//! One loop selects over adapter results, the machine's next timer, signals, the kill-switch
//! watcher and the heartbeat. For every input it: stamps `now` and jitter, calls the machine,
//! appends the record to the journal **with fsync before any effect that acts runs**
//! ([`persist`]; a step whose effects only read or wait is written at once and made durable by
//! the next step's fsync, see [`Effect::only_observes`]),
//! logs it and rewrites `state.json` ([`observe`]), then hands the effects in order to the one
//! [`executor`] it shares with the simulator, over the real node's adapters. Slow effects run as
//! tasks whose results come back as events; bookkeeping goes through the ordered [`chores`].
//!
//! The driver makes no decisions, with one safety net: if the journal could not be written,
//! the two effects that start a reboot (`MoveSlotToRebootLease`, real `ExecuteReboot`) are
//! answered with a failure instead of being executed — no reboot without a durable record.

pub mod answers;
pub mod chores;
pub mod executor;
mod node_adapters;
pub mod notify;
mod observe;
mod persist;
mod reload;
pub mod report;
pub mod spawn;
pub mod state_file;

pub use self::reload::hot_reload;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::adapters::detectors::{DetectorReport, PresetPaths};
use crate::adapters::env::{EnvExtras, base_env};
use crate::adapters::health::{HealthConfig, HealthReport, HealthRunner};
use crate::adapters::reboot;
use crate::config::Settings;
use crate::coord::Coordinator;
use crate::exit::Exit;
use crate::fsm::record::Record;
use crate::fsm::*;
use crate::replay::DaemonJournal;

use self::chores::Chores;
use self::executor::{Adapters, Executor};
use self::node_adapters::NodeAdapters;
use self::notify::Notifier;
use self::report::PassReport;
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
    /// Coordination and the execution of every effect (shared with the simulator).
    exec: Executor<C>,
    /// This node's processes and files.
    node: NodeAdapters<C>,
    machine: Machine,
    journal: Option<DaemonJournal>,
    tail: VecDeque<(Snapshot, Record)>,
    since: Millis,
    last_outcome: Option<String>,
    jitter: std::collections::hash_map::RandomState,
    counter: u64,
    kill_switch_seen: bool,
    notifier: Notifier,
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
                _metrics_server = Some(AbortOnDrop(tokio::spawn(crate::metrics::serve_extra(
                    metrics.clone(),
                    listener,
                    crate::fleet::routes::router(crate::fleet::page::Source::new(
                        coord.clone(),
                        &settings.node_name,
                    )),
                ))));
            }
            Err(e) => {
                tracing::error!(event = "metrics_listen_failed", address = %addr, error = %e, "cannot listen on metrics.listen {addr}: {e}");
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
        exec: Executor::new(coord.clone(), chores, metrics.clone()),
        node: NodeAdapters {
            tx,
            faults: spawn::AdapterFaults::from_env(),
            settings,
            presets: opts.presets.clone(),
            mode: opts.mode,
            persist: opts.persist,
            coord,
            metrics,
            health,
            rc_env,
            state: StateName::Idle,
            lock_attempts: 0,
            join_started: None,
            join_contended: false,
            kill_switch_error: std::sync::atomic::AtomicBool::new(false),
            withhold_unhealthy: false,
            report: PassReport::default(),
        },
        machine: Machine::new(),
        journal: None,
        tail: VecDeque::new(),
        since: now_ms(),
        last_outcome: None,
        jitter: std::collections::hash_map::RandomState::new(),
        counter: 0,
        kill_switch_seen: false,
        notifier: Notifier::from_env(),
        fleet,
        opts,
    };
    if d.opts.persist
        && let Err(e) = d.open_journal()
    {
        tracing::error!(event = "journal_error", error = %e, "cannot open the journal: {e}");
        return Exit::Runtime;
    }
    let config = FsmConfig::from_settings(&d.node.settings, d.opts.mode);
    d.kill_switch_seen = d.node.kill_switch();
    d.node.metrics.set_state(d.machine.state().name().as_str());
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
    let mut notices = d.node.coord.notices();
    let mut sigterm = listen(SignalKind::terminate(), "SIGTERM");
    let mut sigint = listen(SignalKind::interrupt(), "SIGINT");
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut heartbeat = tokio::time::interval(d.node.settings.health_publish_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sighup = listen(SignalKind::hangup(), "SIGHUP");
    let watchdog_every = d.notifier.watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    d.notifier
        .ready(&format!("{}: {}", d.machine.state().name(), "started"));

    loop {
        let sleep = d.exec.next_tick.map(|at| {
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
                Msg::Detectors(phase, reports) => { d.node.report.detectors(phase, reports); None }
                Msg::Health(phase, report) => {
                    d.node.withhold_unhealthy = report.daemon_fault;
                    d.node.report.health(phase, report);
                    None
                }
            },
            () = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {
                d.exec.next_tick = None;
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
                    let gates = Gates { kill_switch: d.node.kill_switch(), pause, unknown: None };
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
                let now = d.node.kill_switch();
                if now != d.kill_switch_seen {
                    d.kill_switch_seen = now;
                    let gates = d.gates().await;
                    d.handle(Event::GatesObserved { id: None, gates }).await
                } else {
                    None
                }
            }
            _ = heartbeat.tick(), if daemon && d.opts.persist => { d.node.heartbeat(); None }
            Some(()) = recv_signal(&mut sighup) => d.reload().await,
            _ = watchdog.tick(), if watchdog_every.is_some() => { d.notifier.watchdog(); None }
        };
        if let Some(code) = code {
            return d.finish(code).await;
        }
    }
}

/// A signal stream, or `None` with an error logged (a daemon that cannot hear SIGTERM must
/// say so: systemd would have to kill it).
fn listen(kind: SignalKind, name: &str) -> Option<tokio::signal::unix::Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(event = "signal_handler_failed", signal = name, error = %e, "cannot install the {name} handler: {e}");
            None
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
            match self.node.coord.reconcile().await {
                Ok(found) => {
                    if let Some(f) = &found {
                        // The ordinary start after a reboot: the journal knows it already.
                        if matches!(
                            self.machine.state().name(),
                            StateName::Rebooting | StateName::Recovering
                        ) {
                            tracing::info!(event = "unfinished_reboot_found", from_boot = ?f.from_boot, since = ?f.since, rebooted = f.rebooted, "coordination shows this node's reboot, as the journal does");
                        } else {
                            tracing::warn!(event = "unfinished_reboot_found", from_boot = ?f.from_boot, since = ?f.since, rebooted = f.rebooted, "coordination shows an unfinished reboot of this node that the journal does not know");
                        }
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

    async fn gates(&self) -> Gates {
        self.exec.gates(&self.node).await
    }

    fn next_jitter(&mut self) -> u32 {
        self.counter += 1;
        let mut h = self.jitter.build_hasher();
        h.write_u64(self.counter);
        (h.finish() >> 32) as u32
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
        // When the reboot being recovered from was issued (for the reboot_duration metric).
        let issued_at = match self.machine.state() {
            State::Recovering { rec, .. } => rec.issued_at,
            _ => None,
        };
        let step = self.machine.handle(&input);
        let record = Record::new(&self.opts.boot_id, &input, &step);
        // Only a step that acts waits for the disk (group commit: its fsync also makes the
        // observing steps before it durable).
        let sync = !step.effects.iter().all(Effect::only_observes);
        let durable = self.append(before, record, sync);
        self.observe(&input, &step, now, issued_at);
        self.node.state = step.to;
        for effect in step.effects.clone() {
            if let Some(code) = self.exec.execute(&mut self.node, effect, durable).await {
                return Some(code);
            }
        }
        None
    }

    /// Ends the run: lets pending coordination updates finish (bounded), prints the pass report
    /// when asked, syncs, returns the code.
    async fn finish(&mut self, code: Exit) -> Exit {
        self.fleet.flush(Duration::from_secs(2)).await;
        self.exec.settle_publishes(Duration::from_secs(5)).await;
        let left = self.exec.chores.drain(Duration::from_secs(10)).await;
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
                self.node.report.outcome,
                Some(Outcome::Ready | Outcome::LockSkipped)
            ) && self.node.report.planned_command.is_none()
            {
                let env = self.node.call_env(Phase::PostLock);
                let argv = reboot::expand_argv(&self.node.settings.reboot_command, &env, |k| {
                    std::env::var(k).ok()
                });
                self.node.report.planned_command = Some(argv.join(" "));
                self.node.report.dry_run = self.machine.core().config.dry_run;
            }
            self.node.report.skip_health = self.opts.mode.skip_health;
            self.node.report.once_run = self.opts.persist && self.opts.mode.once;
            let gates = &self.machine.core().gates;
            self.node.report.kill_switch = (gates.kill_switch && gates.pause.is_none())
                .then(|| self.node.settings.kill_switch_file.display().to_string());
            let _ = crate::text::emit(&crate::text::for_terminal(&self.node.report.render()));
        }
        code
    }
}

/// Aborts a task when dropped (the metrics server lives as long as the driver).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
