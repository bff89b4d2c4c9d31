//! Prometheus metrics: one registry with every family the daemon exports, and the HTTP endpoint.
//!
//! Why this module exists: operators of the Go daemon have dashboards and alerts on its metric
//! names (`docs/GO-COMPAT.md` §7), and SPEC §10 adds metrics about the state machine, the reboot
//! slot and reboots. [`Metrics`] owns the registry; the driver calls one method per observation
//! (plain `&self` calls, no locking in the caller) and [`serve`] exposes [`Metrics::render`] on
//! `GET /metrics`. The list of metrics, their labels and meaning is in `docs/OPERATIONS.md`
//! ("Metrics").
//!
//! # Where we differ from the Go daemon, and why
//! - **Exposition format.** We serve OpenMetrics text (`prometheus-client` only writes that),
//!   Go served the Prometheus text format. Prometheus negotiates either. Sample names are the
//!   same (`clusterrebootd_kill_switch_checks_total{…}`), but OpenMetrics names a counter *family*
//!   without `_total`, so the `# HELP`/`# TYPE` lines read `clusterrebootd_kill_switch_checks`.
//!   An old-format linter (`promtool check metrics`) therefore reports "no help text" for the
//!   `_total` samples; that is expected, and the test accepts exactly those lint lines.
//! - **Registration.** Go registered each metric on first observation; we register every family
//!   up front. The visible result is the same: a labelled family (and its `# HELP`/`# TYPE`)
//!   appears with its first observation, since we do not invent zero series for label values
//!   that never occurred. Exceptions, present from the start: `build_info`, `fsm_state` (all
//!   nine states, exactly one at 1, in lifecycle order) and the unlabelled gauges `lock_held`,
//!   `lock_queue_position` and `lock_waiting_for_group`.
//! - **Histogram buckets.** Go used the client default buckets (5 ms … 10 s). Detectors, the
//!   health script and etcd calls can take minutes before their timeout, so the operation
//!   histograms use the Go buckets plus 30 s, 1 min, 2 min, 5 min and 10 min: every `le` value a
//!   Go dashboard queries still exists. `lock_wait_seconds` and `reboot_duration_seconds` measure
//!   minutes to hours and have their own buckets ([`LOCK_WAIT_BUCKETS`], [`REBOOT_BUCKETS`]).
//! - **Units.** Every histogram keeps Go's constant label `unit="seconds"` (the new ones too, so
//!   one rule holds for all), and additionally carries the OpenMetrics `# UNIT … seconds` line.
//! - **Serving.** Go answered every path with the metrics; we answer `GET /metrics` (and `HEAD`)
//!   and return 404 elsewhere, as SPEC §10 asks.
//! - **New metrics.** `build_info` (a gauge with value 1, as client libraries conventionally do;
//!   an OpenMetrics `info` type would be rejected by `promtool`), `fsm_state`,
//!   `fsm_transitions_total`, `reboots_total`, `reboot_blocked_total`, `lock_held`,
//!   `lock_queue_position`, `lock_waiting_for_group` (reboot groups), `lock_wait_seconds`,
//!   `reboot_duration_seconds` and
//!   `config_reloads_total`. The PRD named `reboots_total`/`reboot_blocked_total`; Go never
//!   implemented them.
//!
//! - **Lock attempts.** Go polled a mutex (`TryLock` up to 5 times); we wait in a FIFO queue
//!   woken by a watch. The Go label values keep their meaning: a join that has to wait counts
//!   one `contended` attempt, the hand-off one `success`, a failed join `error`, a wait that
//!   ended without the slot `canceled` (Go: its context ended). `--once` therefore shows one
//!   `contended` where Go showed five.
//!
//! # Label values
//! Label names are written in sorted order, like Go. Label values come from the driver's fixed
//! vocabularies (outcome names, phases, results, state names). As a guard against secrets or
//! unbounded cardinality (an error message, a path, a token passed by mistake), every value is
//! checked by [`label_value`]: anything that is not a short identifier is exported as `invalid`.

mod http;
#[cfg(test)]
mod tests;

pub use http::{CONTENT_TYPE, Limits, listen_addr, serve, serve_extra, serve_with};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every metric name (the Go daemon's Prometheus namespace).
pub const PREFIX: &str = "clusterrebootd";

/// Every state-machine state, the values of the `fsm_state{state}` label (the names of
/// [`crate::fsm::StateName`], lifecycle order).
pub const STATES: [&str; 9] = [
    "Idle",
    "Detecting",
    "WindowCheck",
    "HealthPre",
    "Locking",
    "HealthPost",
    "Cooldown",
    "Rebooting",
    "Recovering",
];

/// Buckets (seconds) of the operation histograms: Go's defaults plus minutes, for commands and
/// etcd calls that may run until their timeout.
pub const OPERATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Buckets (seconds) of `lock_wait_seconds`: from a free slot (seconds) to a long queue (a day).
pub const LOCK_WAIT_BUCKETS: [f64; 13] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Buckets (seconds) of `reboot_duration_seconds`: a VM reboots in seconds, bare metal in minutes.
pub const REBOOT_BUCKETS: [f64; 11] = [
    10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

/// Longest label value exported as given; longer values become `invalid`.
pub const MAX_LABEL_VALUE_LEN: usize = 64;

/// Value of Go's constant histogram label `unit`.
const UNIT_SECONDS: &str = "seconds";

/// The value a label gets when the caller passed something that is not a short identifier.
pub const INVALID_LABEL_VALUE: &str = "invalid";

/// `value` if it is a short identifier (`[A-Za-z0-9_.:-]`, 1 to [`MAX_LABEL_VALUE_LEN`] bytes),
/// else [`INVALID_LABEL_VALUE`]. Keeps free text (and so any secret) out of label values.
pub fn label_value(value: &str) -> String {
    let ok = !value.is_empty()
        && value.len() <= MAX_LABEL_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        value.to_owned()
    } else {
        INVALID_LABEL_VALUE.to_owned()
    }
}

// ------------------------------------------------------------------------------- label sets
// Field order is the exported label order: alphabetical, like Go.

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// `{result, stage}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultStageLabels {
    result: String,
    stage: String,
}

/// `{phase, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseResultLabels {
    phase: String,
    result: String,
}

/// `{phase, result, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseResultStatusLabels {
    phase: String,
    result: String,
    status: String,
}

/// `{status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// `{state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// `{from, to}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

/// `{revision, version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    revision: String,
    version: String,
}

/// Histogram `{phase, result, unit="seconds"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseResultUnitLabels {
    phase: String,
    result: String,
    unit: &'static str,
}

/// Histogram `{result, unit="seconds"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultUnitLabels {
    result: String,
    unit: &'static str,
}

/// Histogram `{unit="seconds"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    unit: &'static str,
}

/// A histogram family whose histograms share one bucket layout.
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn operation_histogram() -> Histogram {
    Histogram::new(OPERATION_BUCKETS)
}

fn lock_wait_histogram() -> Histogram {
    Histogram::new(LOCK_WAIT_BUCKETS)
}

fn reboot_histogram() -> Histogram {
    Histogram::new(REBOOT_BUCKETS)
}

/// The daemon's metrics: a private registry (no process or runtime collectors, like Go) and a
/// handle on every family.
///
/// All methods take `&self` and are cheap; share it as `Arc<Metrics>`. Label values pass
/// through [`label_value`]. Method names follow the observation, not the metric: each method's
/// doc names the metric(s) it feeds (all prefixed `clusterrebootd_`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,

    // Go metrics (GO-COMPAT §7).
    kill_switch_checks: Family<ResultStageLabels, Counter>,
    window_evaluations: Family<ResultLabels, Counter>,
    detector_evaluations: Family<PhaseResultLabels, Counter>,
    detector_evaluation_seconds: HistogramFamily<PhaseResultUnitLabels>,
    health_checks: Family<PhaseResultLabels, Counter>,
    health_check_seconds: HistogramFamily<PhaseResultUnitLabels>,
    cluster_health_checks: Family<PhaseResultLabels, Counter>,
    cluster_health_updates: Family<PhaseResultStatusLabels, Counter>,
    cooldown_checks: Family<PhaseResultLabels, Counter>,
    cooldown_activations: Family<ResultLabels, Counter>,
    cooldown_clears: Family<ResultLabels, Counter>,
    lock_attempts: Family<ResultLabels, Counter>,
    lock_acquire_seconds: HistogramFamily<ResultUnitLabels>,
    lock_release_seconds: HistogramFamily<ResultUnitLabels>,
    orchestration_outcomes: Family<StatusLabels, Counter>,

    // New (SPEC §10).
    fsm_state: StateGauge,
    fsm_transitions: Family<TransitionLabels, Counter>,
    reboots: Family<ResultLabels, Counter>,
    reboot_blocked: Family<ReasonLabels, Counter>,
    lock_held_gauge: Gauge,
    lock_queue_position_gauge: Gauge,
    lock_waiting_for_group_gauge: Gauge,
    lock_wait_seconds: HistogramFamily<UnitLabels>,
    reboot_duration_seconds: HistogramFamily<UnitLabels>,
    config_reloads: Family<ResultLabels, Counter>,
    node_state_publishes: Family<ResultLabels, Counter>,
    webhooks: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Registers every family; `build_info{revision,version}` is 1 and `fsm_state` starts at
    /// `Idle` (the machine's initial state; the driver calls [`Metrics::set_state`] once it knows
    /// better, e.g. after replaying the journal).
    pub fn new(version: &str, revision: &str) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);

        // Helps are registered without the final period: prometheus-client appends one, which
        // makes them byte-for-byte Go's Description strings.
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Build information of the running daemon (the value is always 1)",
            build_info.clone(),
        );
        // Build identity comes from the build, not from users; it still goes through the
        // label guard, which here also allows `+` (semver build metadata).
        build_info
            .get_or_create(&BuildLabels {
                revision: build_value(revision),
                version: build_value(version),
            })
            .set(1);

        let kill_switch_checks = Family::default();
        registry.register(
            "kill_switch_checks",
            "Number of kill switch evaluations grouped by stage and result",
            kill_switch_checks.clone(),
        );
        let window_evaluations = Family::default();
        registry.register(
            "window_evaluations",
            "Number of maintenance window evaluations grouped by result",
            window_evaluations.clone(),
        );
        let detector_evaluations = Family::default();
        registry.register(
            "detector_evaluations",
            "Number of detector evaluations grouped by phase and result",
            detector_evaluations.clone(),
        );
        let detector_evaluation_seconds: HistogramFamily<_> =
            Family::new_with_constructor(operation_histogram);
        registry.register_with_unit(
            "detector_evaluation",
            "Latency of detector evaluations",
            Unit::Seconds,
            detector_evaluation_seconds.clone(),
        );
        let health_checks = Family::default();
        registry.register(
            "health_checks",
            "Number of health script executions grouped by phase and result",
            health_checks.clone(),
        );
        let health_check_seconds: HistogramFamily<_> =
            Family::new_with_constructor(operation_histogram);
        registry.register_with_unit(
            "health_check",
            "Execution time of the health script",
            Unit::Seconds,
            health_check_seconds.clone(),
        );
        let cluster_health_checks = Family::default();
        registry.register(
            "cluster_health_checks",
            "Number of cluster health inspections grouped by phase and result",
            cluster_health_checks.clone(),
        );
        let cluster_health_updates = Family::default();
        registry.register(
            "cluster_health_updates",
            "Number of cluster health update attempts grouped by phase, status, and result",
            cluster_health_updates.clone(),
        );
        let cooldown_checks = Family::default();
        registry.register(
            "cooldown_checks",
            "Number of reboot cooldown inspections grouped by phase and result",
            cooldown_checks.clone(),
        );
        let cooldown_activations = Family::default();
        registry.register(
            "cooldown_activations",
            "Number of reboot cooldown activations grouped by result",
            cooldown_activations.clone(),
        );
        let cooldown_clears = Family::default();
        registry.register(
            "cooldown_clears",
            "Number of reboot cooldown clear attempts grouped by result",
            cooldown_clears.clone(),
        );
        let lock_attempts = Family::default();
        registry.register(
            "lock_attempts",
            "Number of lock acquisition attempts grouped by result",
            lock_attempts.clone(),
        );
        let lock_acquire_seconds: HistogramFamily<_> =
            Family::new_with_constructor(operation_histogram);
        registry.register_with_unit(
            "lock_acquire",
            "Duration of individual lock acquisition attempts",
            Unit::Seconds,
            lock_acquire_seconds.clone(),
        );
        let lock_release_seconds: HistogramFamily<_> =
            Family::new_with_constructor(operation_histogram);
        registry.register_with_unit(
            "lock_release",
            "Duration of lock release operations",
            Unit::Seconds,
            lock_release_seconds.clone(),
        );
        let orchestration_outcomes = Family::default();
        registry.register(
            "orchestration_outcomes",
            "Number of orchestration passes grouped by outcome status",
            orchestration_outcomes.clone(),
        );

        let fsm_state = StateGauge::default();
        registry.register(
            "fsm_state",
            "Current state of the reboot state machine (1 for the current state, 0 for the others)",
            fsm_state.clone(),
        );
        let fsm_transitions = Family::default();
        registry.register(
            "fsm_transitions",
            "Number of state machine transitions grouped by source and target state",
            fsm_transitions.clone(),
        );
        let reboots = Family::default();
        registry.register(
            "reboots",
            "Number of reboot attempts grouped by result (executed, dry_run, failed, aborted)",
            reboots.clone(),
        );
        let reboot_blocked = Family::default();
        registry.register(
            "reboot_blocked",
            "Number of orchestration passes with a required reboot that did not proceed, grouped by reason",
            reboot_blocked.clone(),
        );
        let lock_held_gauge = Gauge::default();
        registry.register(
            "lock_held",
            "Whether this node holds the cluster reboot slot (1) or not (0)",
            lock_held_gauge.clone(),
        );
        let lock_waiting_for_group_gauge = Gauge::default();
        registry.register(
            "lock_waiting_for_group",
            "Whether this node waits in its reboot group's pool (1; it holds no slot yet) rather than in the cluster pool or not at all (0)",
            lock_waiting_for_group_gauge.clone(),
        );
        let lock_queue_position_gauge = Gauge::default();
        registry.register(
            "lock_queue_position",
            "Position of this node in the reboot slot queue (1 is next, 0 when not queued)",
            lock_queue_position_gauge.clone(),
        );
        let lock_wait_seconds: HistogramFamily<_> =
            Family::new_with_constructor(lock_wait_histogram);
        registry.register_with_unit(
            "lock_wait",
            "Time from joining the reboot slot queue until the slot was acquired",
            Unit::Seconds,
            lock_wait_seconds.clone(),
        );
        let reboot_duration_seconds: HistogramFamily<_> =
            Family::new_with_constructor(reboot_histogram);
        registry.register_with_unit(
            "reboot_duration",
            "Time from issuing the reboot command until the node was back with a new boot id",
            Unit::Seconds,
            reboot_duration_seconds.clone(),
        );
        let config_reloads = Family::default();
        registry.register(
            "config_reloads",
            "Number of configuration reloads grouped by result (applied, invalid)",
            config_reloads.clone(),
        );
        let node_state_publishes = Family::default();
        registry.register(
            "node_state_publishes",
            "Number of writes of this node's fleet-view record grouped by result (written, error)",
            node_state_publishes.clone(),
        );
        let webhooks = Family::default();
        registry.register(
            "webhooks",
            "Number of webhook deliveries grouped by result (sent, failed)",
            webhooks.clone(),
        );

        Metrics {
            registry,
            kill_switch_checks,
            window_evaluations,
            detector_evaluations,
            detector_evaluation_seconds,
            health_checks,
            health_check_seconds,
            cluster_health_checks,
            cluster_health_updates,
            cooldown_checks,
            cooldown_activations,
            cooldown_clears,
            lock_attempts,
            lock_acquire_seconds,
            lock_release_seconds,
            orchestration_outcomes,
            fsm_state,
            fsm_transitions,
            reboots,
            reboot_blocked,
            lock_held_gauge,
            lock_queue_position_gauge,
            lock_waiting_for_group_gauge,
            lock_wait_seconds,
            reboot_duration_seconds,
            config_reloads,
            node_state_publishes,
            webhooks,
        }
    }

    /// The whole exposition in the OpenMetrics text format, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a label set.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(event = "metrics_encode_failed", error = %err, "encoding metrics failed");
        }
        out
    }

    // ------------------------------------------------------------------------- Go metrics

    /// `kill_switch_checks_total{result,stage}` += 1. stage: `pre-lock`/`post-lock`; result:
    /// `inactive`/`active`/`error`.
    pub fn kill_switch_check(&self, stage: &str, result: &str) {
        self.kill_switch_checks
            .get_or_create(&ResultStageLabels {
                result: label_value(result),
                stage: label_value(stage),
            })
            .inc();
    }

    /// `window_evaluations_total{result}` += 1. result: `allowed`/`deny`/`outside_allow`.
    pub fn window_evaluation(&self, result: &str) {
        self.window_evaluations
            .get_or_create(&result_labels(result))
            .inc();
    }

    /// `detector_evaluations_total{phase,result}` += 1 and
    /// `detector_evaluation_seconds{phase,result,unit}` observes `seconds`. result:
    /// `clear`/`requires`/`error`.
    pub fn detector_evaluation(&self, phase: &str, result: &str, seconds: f64) {
        let labels = phase_result_labels(phase, result);
        self.detector_evaluation_seconds
            .get_or_create(&phase_result_unit_labels(&labels))
            .observe(seconds);
        self.detector_evaluations.get_or_create(&labels).inc();
    }

    /// `health_checks_total{phase,result}` += 1 and `health_check_seconds{phase,result,unit}`
    /// observes `seconds`. phase: `pre-lock`/`post-lock`/`heartbeat` and the new
    /// `post-reboot` (Go's `monitor` does not occur: no health run in a pass without a
    /// required reboot); result: `pass`/`blocked`/`error`.
    pub fn health_check(&self, phase: &str, result: &str, seconds: f64) {
        let labels = phase_result_labels(phase, result);
        self.health_check_seconds
            .get_or_create(&phase_result_unit_labels(&labels))
            .observe(seconds);
        self.health_checks.get_or_create(&labels).inc();
    }

    /// `cluster_health_checks_total{phase,result}` += 1. result:
    /// `healthy`/`unhealthy`/`skipped`/`error`.
    pub fn cluster_health_check(&self, phase: &str, result: &str) {
        self.cluster_health_checks
            .get_or_create(&phase_result_labels(phase, result))
            .inc();
    }

    /// `cluster_health_updates_total{phase,result,status}` += 1. status: `healthy`/`unhealthy`;
    /// result: `success`/`skipped`/`error`.
    pub fn cluster_health_update(&self, phase: &str, status: &str, result: &str) {
        self.cluster_health_updates
            .get_or_create(&PhaseResultStatusLabels {
                phase: label_value(phase),
                result: label_value(result),
                status: label_value(status),
            })
            .inc();
    }

    /// `cooldown_checks_total{phase,result}` += 1. result: `inactive`/`active`/`error`.
    pub fn cooldown_check(&self, phase: &str, result: &str) {
        self.cooldown_checks
            .get_or_create(&phase_result_labels(phase, result))
            .inc();
    }

    /// `cooldown_activations_total{result}` += 1. result: `success`/`error`.
    pub fn cooldown_activation(&self, result: &str) {
        self.cooldown_activations
            .get_or_create(&result_labels(result))
            .inc();
    }

    /// `cooldown_clears_total{result}` += 1.
    pub fn cooldown_clear(&self, result: &str) {
        self.cooldown_clears
            .get_or_create(&result_labels(result))
            .inc();
    }

    /// `lock_attempts_total{result}` += 1 and `lock_acquire_seconds{result,unit}` observes
    /// `seconds` (the duration of this one attempt). result, Go's words for our queue:
    /// `contended` (a join had to wait, once per join), `success` (the slot was ours),
    /// `error` (the join failed), `canceled` (the wait ended without the slot: shutdown, kill
    /// switch or pause, window closing, time limit).
    pub fn lock_attempt(&self, result: &str, seconds: f64) {
        let labels = result_labels(result);
        self.lock_acquire_seconds
            .get_or_create(&result_unit_labels(&labels))
            .observe(seconds);
        self.lock_attempts.get_or_create(&labels).inc();
    }

    /// `lock_release_seconds{result,unit}` observes `seconds`, one per try of a slot release
    /// (also the release after a reboot, by the restarted process). result: `success`/`error`.
    pub fn lock_release(&self, result: &str, seconds: f64) {
        self.lock_release_seconds
            .get_or_create(&result_unit_labels(&result_labels(result)))
            .observe(seconds);
    }

    /// `orchestration_outcomes_total{status}` += 1, status being a Go `OutcomeStatus`
    /// (`no_action`, `kill_switch_active`, …, `ready`; GO-COMPAT §3).
    pub fn orchestration_outcome(&self, status: &str) {
        self.orchestration_outcomes
            .get_or_create(&StatusLabels {
                status: label_value(status),
            })
            .inc();
    }

    // ------------------------------------------------------------------------ new metrics

    /// `fsm_transitions_total{from,to}` += 1, and `fsm_state` moves to `to` (see
    /// [`Metrics::set_state`]).
    pub fn transition(&self, from: &str, to: &str) {
        self.fsm_transitions
            .get_or_create(&TransitionLabels {
                from: label_value(from),
                to: label_value(to),
            })
            .inc();
        self.set_state(to);
    }

    /// `fsm_state{state}`: 1 for `state`, 0 for every other state of [`STATES`]. A name outside
    /// [`STATES`] is a caller bug: it is logged and `fsm_state` is left unchanged, so the gauge
    /// keeps exactly one state at 1.
    pub fn set_state(&self, state: &str) {
        match STATES.iter().position(|s| *s == state) {
            Some(index) => self.fsm_state.current.store(index, Ordering::Relaxed),
            None => tracing::warn!(
                event = "metrics_unknown_state",
                state = %label_value(state),
                "fsm_state not updated: unknown state name"
            ),
        }
    }

    /// `reboots_total{result}` += 1. result: `executed` (the reboot command was issued),
    /// `dry_run`, `failed` (the command failed) or `aborted` (stopped before the command, e.g.
    /// by the kill switch or a failing hook).
    pub fn reboot(&self, result: &str) {
        self.reboots.get_or_create(&result_labels(result)).inc();
    }

    /// `reboot_blocked_total{reason}` += 1: a pass found a reboot required but stopped; reason
    /// is the Go outcome name (`kill_switch_active`, `health_blocked`, `window_denied`,
    /// `window_outside_allow`, `lock_unavailable`, `cooldown_active`, …).
    pub fn reboot_blocked(&self, reason: &str) {
        self.reboot_blocked
            .get_or_create(&ReasonLabels {
                reason: label_value(reason),
            })
            .inc();
    }

    /// `lock_held` = 1 while this node holds the reboot slot, else 0.
    pub fn lock_held(&self, held: bool) {
        self.lock_held_gauge.set(i64::from(held));
    }

    /// `lock_waiting_for_group` = 1 while the node queues in its reboot group's pool (issue
    /// #16), 0 in the cluster pool or when not queued.
    pub fn lock_waiting_for_group(&self, waiting: bool) {
        self.lock_waiting_for_group_gauge.set(i64::from(waiting));
    }

    /// `lock_queue_position` = `pos` (1 = next in line); 0 when not queued.
    pub fn lock_queue_position(&self, pos: i64) {
        self.lock_queue_position_gauge.set(pos);
    }

    /// `lock_wait_seconds{unit}` observes the time from joining the queue to holding the slot.
    pub fn lock_wait(&self, seconds: f64) {
        self.lock_wait_seconds
            .get_or_create(&UnitLabels { unit: UNIT_SECONDS })
            .observe(seconds);
    }

    /// `reboot_duration_seconds{unit}` observes the time from the reboot command to the node
    /// being back (new boot id).
    pub fn reboot_duration(&self, seconds: f64) {
        self.reboot_duration_seconds
            .get_or_create(&UnitLabels { unit: UNIT_SECONDS })
            .observe(seconds);
    }

    /// `node_state_publishes_total{result}` += 1. result: `written` (the fleet-view record was
    /// stored) or `error` (it was not; retried, decisions are not affected).
    pub fn node_state_publish(&self, result: &str) {
        self.node_state_publishes
            .get_or_create(&result_labels(result))
            .inc();
    }

    /// `webhooks_total{result}` += 1 per notification. result: `sent` or `failed` (after
    /// every retry; decisions are not affected).
    pub fn webhook(&self, result: &str) {
        self.webhooks.get_or_create(&result_labels(result)).inc();
    }

    /// `config_reloads_total{result}` += 1. result: `applied` or `invalid` (the old
    /// configuration stays).
    pub fn config_reload(&self, result: &str) {
        self.config_reloads
            .get_or_create(&result_labels(result))
            .inc();
    }
}

/// `fsm_state`: one index into [`STATES`], encoded as nine gauge series in lifecycle order.
///
/// A single atomic instead of nine gauges: a scrape can never see two states at 1 (or none),
/// without a lock between the driver and the scrape. Starts at `Idle` (index 0), the machine's
/// initial state.
#[derive(Debug, Clone, Default)]
struct StateGauge {
    current: Arc<AtomicUsize>,
}

impl TypedMetric for StateGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for StateGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let current = self.current.load(Ordering::Relaxed);
        for (index, state) in STATES.iter().enumerate() {
            encoder
                .encode_family(&StateLabels {
                    state: (*state).to_owned(),
                })?
                .encode_gauge(&i64::from(index == current))?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn result_labels(result: &str) -> ResultLabels {
    ResultLabels {
        result: label_value(result),
    }
}

fn phase_result_labels(phase: &str, result: &str) -> PhaseResultLabels {
    PhaseResultLabels {
        phase: label_value(phase),
        result: label_value(result),
    }
}

fn phase_result_unit_labels(labels: &PhaseResultLabels) -> PhaseResultUnitLabels {
    PhaseResultUnitLabels {
        phase: labels.phase.clone(),
        result: labels.result.clone(),
        unit: UNIT_SECONDS,
    }
}

fn result_unit_labels(labels: &ResultLabels) -> ResultUnitLabels {
    ResultUnitLabels {
        result: labels.result.clone(),
        unit: UNIT_SECONDS,
    }
}

/// [`label_value`] for build identity, which may also contain `+` (semver build metadata).
fn build_value(value: &str) -> String {
    let checked = label_value(&value.replace('+', "_"));
    if checked == INVALID_LABEL_VALUE {
        checked
    } else {
        value.to_owned()
    }
}
