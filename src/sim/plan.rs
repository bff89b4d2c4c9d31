//! The rollout planner (`simulate --cluster N`): "will my rollout fit the window?"
//!
//! It simulates N nodes that all need a reboot, with the configuration's windows, time zone,
//! cooldown, intervals, lease TTLs and policies, the production machine and the production slot
//! protocol, and reports a per-node timeline, the makespan, how many reboots start inside each
//! maintenance window and when the last node is done. No etcd and no root needed.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::report::{Activity, SimReport};
use super::{SimSpec, run};
use crate::config::Settings;
use crate::fsm::{FsmConfig, Millis, RunMode, StateName};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Cluster size.
    pub nodes: usize,
    /// `max_concurrent_reboots` override.
    pub concurrency: Option<u32>,
    /// How long one node is down for its reboot.
    pub reboot: Duration,
    /// How long one health-script run takes.
    pub health: Duration,
    /// Wall-clock start (ms since the epoch).
    pub start_ms: Millis,
    /// Seed (jitter, arrival times).
    pub seed: u64,
    /// Updates land uniformly over this span (seeded) instead of all at the start: each node's
    /// daemon notices its update when it lands.
    pub arrivals: Duration,
    /// Reboot groups (`--groups db=3x1,web=10x2`, [`parse_groups`]): the first nodes in the
    /// order given; nodes beyond them are in no group.
    pub groups: Vec<super::SimGroup>,
}

/// Parses `--groups NAME=COUNTxK[,…]` for a cluster of `nodes`: group NAME has COUNT members
/// (the next COUNT nodes, in the order written) and K slots. Errors name the item.
pub fn parse_groups(text: &str, nodes: usize) -> Result<Vec<super::SimGroup>, String> {
    let mut groups: Vec<super::SimGroup> = Vec::new();
    let mut next = 0usize;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad =
            |why: &str| format!("--groups: {item:?}: {why} (expected NAME=COUNTxK, e.g. db=3x1)");
        let (name, size) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > crate::config::MAX_GROUP_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad("the name must be A-Z, a-z, 0-9, '.', '_' or '-'"));
        }
        if groups.iter().any(|g| g.name == name) {
            return Err(bad("the group is named twice"));
        }
        let (count, k) = size
            .trim()
            .split_once(['x', 'X'])
            .ok_or_else(|| bad("no 'x' between COUNT and K"))?;
        let count: usize = count
            .trim()
            .parse()
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| bad("COUNT must be a whole number ≥ 1"))?;
        let k: u32 = k
            .trim()
            .parse()
            .ok()
            .filter(|k| *k >= 1)
            .ok_or_else(|| bad("K must be a whole number ≥ 1"))?;
        if next + count > nodes {
            return Err(bad(&format!(
                "the groups have more members than the {nodes} nodes of --cluster"
            )));
        }
        groups.push(super::SimGroup {
            name: name.to_string(),
            capacity: k,
            members: (next..next + count).collect(),
        });
        next += count;
    }
    Ok(groups)
}

/// One occurrence of the maintenance window and the reboots that started inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowUse {
    /// Opens (ms after the start; 0 when open at the start).
    pub opens_ms: u64,
    /// Closes (ms after the start), `None` when it never closes.
    pub closes_ms: Option<u64>,
    /// Reboot commands issued inside it.
    pub reboots: usize,
}

/// The planner's result.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The options.
    pub opts: PlanOptions,
    /// The capacity used.
    pub capacity: u32,
    /// The simulated run.
    pub report: SimReport,
    /// Window occurrences from the start to the end of the rollout.
    pub windows: Vec<WindowUse>,
    /// When the last node had recovered (ms after the start), if all did.
    pub last_done_ms: Option<u64>,
    /// The cluster cooldown after each recovery (`min_reboot_interval_sec`), drawn on the chart.
    pub cooldown_ms: u64,
    /// The windows' time zone (`windows.timezone`): human times and the chart's axis are wall
    /// clock in it, as the operator wrote the windows (issue #19); JSON stays RFC 3339 UTC.
    pub tz: jiff::tz::TimeZone,
}

/// The simulation spec for a plan: the configuration's rules, N nodes that all need a reboot,
/// no faults. `dry_run` in the file is ignored (the plan is about real reboots).
pub fn spec(s: &Settings, o: &PlanOptions) -> SimSpec {
    let mut fsm = FsmConfig::from_settings(s, RunMode::default());
    fsm.dry_run = false;
    SimSpec {
        nodes: o.nodes,
        capacity: o.concurrency.unwrap_or(s.max_concurrent_reboots).max(1),
        fsm,
        windows: Arc::new(s.windows.clone()),
        policies: s.policies.clone(),
        stale_after: s.health_stale_after,
        lock_ttl: s.lock_ttl,
        heartbeat: s.health_publish_interval,
        start_ms: o.start_ms,
        seed: o.seed,
        reboot_down: (o.reboot, o.reboot),
        health_latency: o.health,
        boot_settle: Duration::ZERO,
        detector_latency: Duration::ZERO,
        health_timeout: s.health_timeout,
        needs_reboot: (0..o.nodes).collect(),
        arrivals: arrivals(o),
        never_return: Vec::new(),
        faults: Vec::new(),
        horizon: Duration::from_secs(120 * 86_400),
        record_journal: false,
        check_liveness: false,
        broken: None,
        soak: None,
        groups: o.groups.clone(),
    }
}

/// When each node's update lands: uniformly over `o.arrivals` from the seed (the first node at
/// the start, so the plan starts when the rollout does), or all at the start.
fn arrivals(o: &PlanOptions) -> Vec<(usize, Duration)> {
    if o.arrivals.is_zero() {
        return Vec::new();
    }
    let mut r = fastrand::Rng::with_seed(o.seed ^ 0xa77_1a15);
    let span = u64::try_from(o.arrivals.as_millis()).unwrap_or(u64::MAX);
    (0..o.nodes)
        .map(|i| {
            let at = if i == 0 { 0 } else { r.u64(0..=span) };
            (i, Duration::from_millis(at))
        })
        .collect()
}

/// Runs the plan.
pub fn plan(s: &Settings, o: &PlanOptions) -> Plan {
    let mut spec = spec(s, o);
    let start = ts(o.start_ms);
    if !s.windows.verdict(start).allowed() && s.windows.next_allowed(start).is_none() {
        // Nothing can ever reboot: show one day of waiting instead of simulating months.
        spec.horizon = Duration::from_secs(86_400);
    }
    let report = run(&spec);
    let last_done_ms = report
        .nodes
        .iter()
        .map(|n| n.reboots.iter().find_map(|r| r.recovered_ms))
        .collect::<Option<Vec<u64>>>()
        .map(|v| v.into_iter().max().unwrap_or(0));
    let until = last_done_ms.unwrap_or(report.end_ms);
    let windows = window_uses(&spec, &report, until);
    Plan {
        opts: o.clone(),
        capacity: spec.capacity,
        report,
        windows,
        last_done_ms,
        cooldown_ms: u64::try_from(s.min_reboot_interval.as_millis()).unwrap_or(u64::MAX),
        tz: s.windows.time_zone().clone(),
    }
}

fn ts(ms: Millis) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX)
}

fn to_ms(t: jiff::Timestamp) -> Millis {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// The window occurrences between the start and `until` (ms after the start), each with the
/// number of reboot commands issued inside it.
fn window_uses(spec: &SimSpec, report: &SimReport, until: u64) -> Vec<WindowUse> {
    let w = &spec.windows;
    let start = spec.start_ms;
    let issued: Vec<u64> = report
        .nodes
        .iter()
        .flat_map(|n| n.reboots.iter().map(|r| r.issued_ms))
        .collect();
    let mut out = Vec::new();
    let mut at = start;
    while out.len() < 1000 {
        let open = if w.verdict(ts(at)).allowed() {
            at
        } else {
            match w.next_allowed(ts(at)) {
                Some(t) => to_ms(t),
                None => break,
            }
        };
        let opens_ms = open.saturating_sub(start);
        if opens_ms > until && !out.is_empty() {
            break;
        }
        let closes_ms = w
            .allowed_until(ts(open))
            .map(|t| to_ms(t).saturating_sub(start));
        let reboots = issued
            .iter()
            .filter(|&&t| t >= opens_ms && closes_ms.is_none_or(|c| t < c))
            .count();
        out.push(WindowUse {
            opens_ms,
            closes_ms,
            reboots,
        });
        match closes_ms {
            Some(c) => at = start + c.max(opens_ms + 1),
            None => break,
        }
    }
    out
}

/// One character per activity in the text Gantt chart.
pub fn glyph(a: Activity) -> char {
    match a {
        Activity::State(s) => match s {
            StateName::Idle => '.',
            StateName::Detecting | StateName::WindowCheck | StateName::HealthPre => 'p',
            StateName::Locking => 'q',
            StateName::HealthPost => 'c',
            StateName::Cooldown => 'w',
            StateName::Rebooting => 'R',
            StateName::Recovering => 'r',
        },
        Activity::Down => '#',
        Activity::Crashed => 'x',
    }
}

fn fmt_dur(ms: u64) -> String {
    crate::human::duration_ms(ms)
}

/// An offset from the rollout's start for people (`+30m 20s`): whole seconds, no
/// milliseconds, unlike the simulator's event-log [`super::report::fmt_offset`] (issue #19).
pub fn plan_offset(ms: u64) -> String {
    format!("+{}", crate::human::duration_ms(ms / 1000 * 1000))
}

/// The start for people (chart titles): wall clock in the windows' time zone, with its name.
pub fn start_text(plan: &Plan) -> String {
    let zone = plan.tz.iana_name().unwrap_or("UTC");
    format!("{} ({zone})", fmt_at(plan, 0))
}

/// An instant for people: wall clock to the second in the windows' time zone, with the
/// weekday (windows are written per weekday) and the zone's abbreviation:
/// `Tue 2026-12-01 02:00:00 CET`.
fn fmt_at(plan: &Plan, offset_ms: u64) -> String {
    zoned(plan, offset_ms)
        .strftime("%a %Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// The chart's axis label for an instant: `Tue 02:00` in the windows' time zone.
pub fn axis_label(plan: &Plan, offset_ms: u64) -> String {
    zoned(plan, offset_ms).strftime("%a %H:%M").to_string()
}

fn zoned(plan: &Plan, offset_ms: u64) -> jiff::ZonedDateTime {
    let t = ts(plan.report.start_ms + offset_ms);
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .to_zoned_datetime(plan.tz.clone())
}

/// An instant for machines (JSON): RFC 3339 in UTC, to the second.
fn rfc3339_at(plan: &Plan, offset_ms: u64) -> String {
    let t = ts(plan.report.start_ms + offset_ms);
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// Which activity covers most of `[from, to)` on a node's timeline (the Gantt cell).
fn dominant(segments: &[super::report::Segment], from: u64, to: u64) -> Option<Activity> {
    let mut best: Option<(u64, Activity)> = None;
    for s in segments {
        let overlap = s.to_ms.min(to).saturating_sub(s.from_ms.max(from));
        // A reboot is short on a long chart but is what the chart is about: it wins any cell
        // it touches.
        let weight = match s.activity {
            Activity::State(StateName::Rebooting) | Activity::Down if overlap > 0 => u64::MAX,
            _ => overlap,
        };
        if weight > 0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, s.activity));
        }
    }
    best.map(|(_, a)| a)
}

/// Width of the text chart in cells.
const COLUMNS: u64 = 64;

/// The plan as text: summary, windows, a Gantt chart and per-node reboot times.
pub fn text(plan: &Plan) -> String {
    let r = &plan.report;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout plan: {} nodes, max_concurrent_reboots {}, reboot {} each, health check {}",
        plan.opts.nodes,
        plan.capacity,
        crate::human::duration(plan.opts.reboot),
        crate::human::duration(plan.opts.health)
    );
    for g in &plan.opts.groups {
        let _ = writeln!(
            out,
            "group {}: {} nodes ({}), group_max_concurrent_reboots {}",
            g.name,
            g.members.len(),
            g.members
                .iter()
                .map(|&i| super::node_name(i))
                .collect::<Vec<_>>()
                .join(", "),
            g.capacity
        );
    }
    let _ = writeln!(out, "start:     {}", fmt_at(plan, 0));
    match plan.last_done_ms {
        Some(t) => {
            let _ = writeln!(
                out,
                "makespan:  {} (last node done at {})",
                fmt_dur(t),
                fmt_at(plan, t)
            );
        }
        None => {
            let done = r
                .nodes
                .iter()
                .filter(|n| n.reboots.iter().any(|x| x.recovered_ms.is_some()))
                .count();
            let _ = writeln!(
                out,
                "makespan:  not finished: {done} of {} nodes done when the simulation stopped at {}",
                plan.opts.nodes,
                fmt_at(plan, r.end_ms)
            );
        }
    }
    out.push_str("windows:\n");
    if plan.windows.is_empty() {
        out.push_str("  none: the windows never allow a reboot from this start\n");
    }
    for (k, w) in plan.windows.iter().enumerate() {
        let closes = w.closes_ms.map_or("never closes".to_string(), |c| {
            format!("until {}", fmt_at(plan, c))
        });
        let _ = writeln!(
            out,
            "  #{}: {} {closes}: {} reboot(s) fit",
            k + 1,
            fmt_at(plan, w.opens_ms),
            w.reboots
        );
    }
    let end = plan.last_done_ms.unwrap_or(r.end_ms).max(1);
    let cell = end.div_ceil(COLUMNS).max(1);
    let _ = writeln!(
        out,
        "timeline (one cell = {}; '=' window open):",
        fmt_dur(cell)
    );
    let label = r
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut row = String::new();
    for c in 0..COLUMNS {
        let mid = c * cell + cell / 2;
        let open = plan
            .windows
            .iter()
            .any(|w| mid >= w.opens_ms && w.closes_ms.is_none_or(|e| mid < e));
        row.push(if open { '=' } else { ' ' });
    }
    let _ = writeln!(out, "  {:<label$} |{row}|", "window");
    for n in &r.nodes {
        let row: String = (0..COLUMNS)
            .map(|c| dominant(&n.segments, c * cell, (c + 1) * cell).map_or(' ', glyph))
            .collect();
        let _ = writeln!(out, "  {:<label$} |{row}|", n.name);
    }
    out.push_str("  legend: . idle  p pre-checks  q queued  c checks under the slot  w cooldown  R rebooting  # down  r recovering\n");
    // No empty section header: without a reboot the section is left out.
    if r.nodes.iter().any(|n| !n.reboots.is_empty()) {
        out.push_str("reboots:\n");
    }
    for n in &r.nodes {
        for x in &n.reboots {
            let back = x.recovered_ms.map_or("not recovered".into(), |t| {
                format!("done {} ({})", plan_offset(t), fmt_at(plan, t))
            });
            let _ = writeln!(
                out,
                "  {:<label$} reboot {} ({}), {back}",
                n.name,
                plan_offset(x.issued_ms),
                fmt_at(plan, x.issued_ms)
            );
        }
    }
    // Why a node left the queue (or gave its slot back) without rebooting, e.g. the window
    // closed while it waited (issue #19). No header without an entry.
    if r.nodes.iter().any(|n| !n.queue_exits.is_empty()) {
        out.push_str("left the queue without rebooting:\n");
    }
    for n in &r.nodes {
        for e in &n.queue_exits {
            let _ = writeln!(
                out,
                "  {:<label$} {} ({}): {}{}",
                n.name,
                plan_offset(e.at_ms),
                fmt_at(plan, e.at_ms),
                if e.held { "gave the slot back: " } else { "" },
                e.reason
            );
        }
    }
    for v in &r.violations {
        let _ = writeln!(out, "INVARIANT VIOLATION: {v}");
    }
    out
}

/// The plan as JSON (times in RFC 3339 and seconds after the start); with `--groups`, a
/// `groups` member lists each group's members and slots.
pub fn json(plan: &Plan) -> serde_json::Value {
    let mut v = json_without_groups(plan);
    if !plan.opts.groups.is_empty()
        && let Some(m) = v.as_object_mut()
    {
        m.insert(
            "groups".into(),
            plan.opts
                .groups
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "group": g.name,
                        "group_max_concurrent_reboots": g.capacity,
                        "nodes": g.members.iter().map(|&i| super::node_name(i)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
    }
    v
}

fn json_without_groups(plan: &Plan) -> serde_json::Value {
    let r = &plan.report;
    let at = |ms: u64| rfc3339_at(plan, ms);
    serde_json::json!({
        "nodes": plan.opts.nodes,
        "max_concurrent_reboots": plan.capacity,
        "reboot_duration_sec": plan.opts.reboot.as_secs(),
        "health_duration_sec": plan.opts.health.as_secs(),
        "seed": plan.opts.seed,
        "start": at(0),
        "finished": plan.last_done_ms.is_some(),
        "makespan_sec": plan.last_done_ms.map(|t| t / 1000),
        "last_done": plan.last_done_ms.map(at),
        "windows": plan.windows.iter().map(|w| serde_json::json!({
            "opens": at(w.opens_ms),
            "closes": w.closes_ms.map(at),
            "reboots": w.reboots,
        })).collect::<Vec<_>>(),
        "timeline": r.nodes.iter().map(|n| serde_json::json!({
            "node": n.name,
            "reboots": n.reboots.iter().map(|x| serde_json::json!({
                "issued": at(x.issued_ms),
                "back": x.back_ms.map(at),
                "recovered": x.recovered_ms.map(at),
            })).collect::<Vec<_>>(),
            "left_queue": n.queue_exits.iter().map(|e| serde_json::json!({
                "at": at(e.at_ms),
                "held_slot": e.held,
                "reason": e.reason,
            })).collect::<Vec<_>>(),
            "segments": n.segments.iter().map(|s| serde_json::json!({
                "state": s.activity.label(),
                "from_sec": s.from_ms as f64 / 1000.0,
                "to_sec": s.to_ms as f64 / 1000.0,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "violations": r.violations,
    })
}
