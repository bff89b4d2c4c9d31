//! The explanation as text for a terminal and as JSON.

use serde_json::Value;

use crate::fsm::types::Millis;

use super::*;

/// The text answer.
pub fn render_text(e: &Explanation, now: Millis) -> String {
    let mut s = format!(
        "node {}: {} since {} ({})\n",
        e.node,
        e.state,
        short(&e.since),
        ago(&e.since, now)
    );
    s.push_str(&format!("last reason: {}\n", e.reason));
    match &e.blocked_by {
        Some(b) => {
            if let Some(n) = &e.note {
                s.push_str(&format!("note: {n}\n"));
            }
            s.push_str(&format!("blocked by {}: {}\n", gate_name(b.gate), b.detail));
            for l in &b.evidence_lines {
                s.push_str(&format!("  {l}\n"));
            }
            s.push_str(&format!("to unblock: {}\n", b.unblock));
        }
        None => s.push_str(&format!("not blocked: {}\n", not_blocked_words(e))),
    }
    match &e.next_check_at {
        Some(t) => s.push_str(&format!("next check: {} ({})\n", short(t), ago(t, now))),
        None => s.push_str("next check: none scheduled\n"),
    }
    if e.transitions.is_empty() && e.idle_checks.is_some() {
        s.push_str("last transitions: idle checks only\n");
    } else {
        s.push_str(&format!("last {} transitions:\n", e.transitions.len()));
    }
    if e.transitions.is_empty() && e.idle_checks.is_none() {
        s.push_str("  (none in the journal)\n");
    }
    for t in &e.transitions {
        s.push_str(&format!(
            "  {}  {} → {}  {}\n",
            short(&t.at),
            t.from,
            t.to,
            t.reason
        ));
    }
    if let Some(i) = &e.idle_checks {
        s.push_str(&format!(
            "  {}  idle: {} {} found nothing to do (the last ended {})\n",
            short(&i.since),
            i.count,
            if i.count == 1 { "check" } else { "checks" },
            short(&i.last)
        ));
    }
    for w in &e.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

pub(super) fn gate_name(g: Gate) -> &'static str {
    match g {
        Gate::HealthScript => "the health script",
        Gate::ClusterPolicy => "the cluster-health policy",
        Gate::Slot => "the reboot slot",
        Gate::Window => "the maintenance window",
        Gate::Cooldown => "the cluster cooldown",
        Gate::KillSwitch => "the kill switch",
        Gate::Pause => "the cluster pause",
        Gate::DetectorError => "a detector error",
        Gate::PostRebootHealth => "post-reboot health",
        Gate::EtcdUnavailable => "etcd being unavailable",
    }
}

pub(super) fn not_blocked_words(e: &Explanation) -> String {
    match (e.state.as_str(), e.outcome.as_deref()) {
        ("Idle", Some("no_action")) => "no reboot is required".into(),
        ("Idle", Some("recheck_cleared")) => {
            "the reboot is no longer required (detectors cleared under the slot)".into()
        }
        ("Idle", Some("ready")) => {
            "the last check passed every gate (dry run: reboot only logged)".into()
        }
        ("Idle", _) => "nothing blocks; waiting for the next check".into(),
        ("Rebooting", _) => "the reboot is in progress".into(),
        ("Recovering", _) => "recovering after the reboot".into(),
        (st, _) => format!("a check is in progress ({st})"),
    }
}

/// Version of the `--json` answer's schema (`docs/explain.schema.json`, docs/OPERATIONS.md):
/// raised when a key is removed or changes meaning, not when one is added.
pub const JSON_SCHEMA_VERSION: u64 = 1;

/// The `--json` answer: the explanation plus `version` and `hint` (null here; the answer
/// without a running daemon has the same keys, see [`no_daemon_json`]).
pub fn render_json(e: &Explanation) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("version".into(), JSON_SCHEMA_VERSION.into());
        m.insert("hint".into(), Value::Null);
    }
    v
}

/// The `--json` answer when there is no running daemon to explain (`why`): the same keys as
/// [`render_json`], unknown ones null, so a consumer needs one schema for every case.
pub fn no_daemon_json(node: &str, why: &str) -> Value {
    serde_json::json!({
        "version": JSON_SCHEMA_VERSION,
        "daemon_running": false,
        "node": node,
        "state": null,
        "since": null,
        "reason": why,
        "outcome": null,
        "blocked_by": null,
        "note": null,
        "next_check_at": null,
        "transitions": [],
        "idle_checks": null,
        "warnings": [],
        "hint": "run `clusterrebootd status` for a dry-run evaluation",
    })
}

// ------------------------------------------------------------------------------- files
