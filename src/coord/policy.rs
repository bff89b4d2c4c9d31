//! Cluster-health policies (SPEC §6.3): may the cluster afford to lose this node now?
//!
//! Pure: records in, verdict out. Go semantics with the Go daemon's known mistakes fixed:
//! - the node about to reboot counts as **not** healthy when thresholds are evaluated (Go
//!   counted it healthy, so `min_healthy_absolute: 3` on a 3-node cluster let a node go);
//! - a stale record (older than `health_stale_after_sec`) is not counted healthy;
//! - a peer with a reboot in progress blocks, and counts as not healthy;
//! - every blocking reason is named.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Policies;
use crate::coord::HealthRecord;
use crate::fsm::PolicyVerdict;

/// A peer's reboot-in-progress marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    /// The rebooting node.
    pub node: String,
    /// Since when (RFC 3339), if recorded.
    pub since: Option<String>,
}

/// Evaluates the policies for `me` at `now` over the registry records and in-progress markers.
pub fn evaluate(
    me: &str,
    records: &[HealthRecord],
    in_progress: &[InProgress],
    policies: &Policies,
    stale_after: Duration,
    now: jiff::Timestamp,
) -> PolicyVerdict {
    let mut reasons = Vec::new();
    let rebooting: Vec<&InProgress> = in_progress.iter().filter(|p| p.node != me).collect();
    for p in &rebooting {
        reasons.push(match &p.since {
            Some(s) => format!("reboot in progress on {} (since {s})", p.node),
            None => format!("reboot in progress on {}", p.node),
        });
    }

    // One record per peer (the last one wins if a node appears twice).
    let mut peers: BTreeMap<&str, &HealthRecord> = BTreeMap::new();
    for r in records {
        if r.node != me && !r.node.is_empty() {
            peers.insert(r.node.as_str(), r);
        }
    }
    let mut unhealthy = Vec::new();
    let mut stale = Vec::new();
    let mut healthy = 0u64;
    let mut healthy_non_fallback = 0u64;
    for (node, r) in &peers {
        let fresh = r
            .reported_at
            .parse::<jiff::Timestamp>()
            .ok()
            .is_some_and(|t| now.duration_since(t).unsigned_abs().le(&stale_after));
        let marked = rebooting.iter().any(|p| p.node == *node);
        if !r.healthy {
            let detail = match (r.stage.is_empty(), r.reason.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!(" ({})", r.stage),
                (true, false) => format!(" ({})", r.reason),
                (false, false) => format!(" ({}, {})", r.stage, r.reason),
            };
            unhealthy.push(format!("{node}{detail}"));
        } else if !fresh {
            stale.push(format!("{node} (last report {})", r.reported_at));
        } else if !marked {
            healthy += 1;
            if !policies.fallback_nodes.iter().any(|f| f == node) {
                healthy_non_fallback += 1;
            }
        }
    }
    // Nodes that only have an in-progress marker are part of the cluster too.
    let extra = rebooting
        .iter()
        .filter(|p| !peers.contains_key(p.node.as_str()))
        .count() as u64;
    let total = 1 + peers.len() as u64 + extra;

    if !unhealthy.is_empty() {
        reasons.push(format!(
            "cluster health blocked by unhealthy nodes: {}",
            unhealthy.join(", ")
        ));
    }
    let thresholds = policies.min_healthy_absolute > 0 || policies.min_healthy_fraction > 0.0;
    if thresholds && !stale.is_empty() {
        reasons.push(format!(
            "stale health records not counted healthy: {}",
            stale.join(", ")
        ));
    }
    if healthy < policies.min_healthy_absolute {
        reasons.push(format!(
            "healthy nodes {healthy} below minimum {} (this node counts as down)",
            policies.min_healthy_absolute
        ));
    }
    if policies.min_healthy_fraction > 0.0 {
        let required = (policies.min_healthy_fraction * total as f64).ceil() as u64;
        if healthy < required {
            reasons.push(format!(
                "healthy nodes {healthy} below {:.2} requirement ({required} of {total}; this node counts as down)",
                policies.min_healthy_fraction
            ));
        }
    }
    if policies.forbid_if_only_fallback_left
        && !policies.fallback_nodes.is_empty()
        && healthy > 0
        && healthy_non_fallback == 0
    {
        reasons.push("only fallback nodes would remain healthy".to_string());
    }
    if reasons.is_empty() {
        PolicyVerdict::Pass
    } else {
        PolicyVerdict::Blocked { reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-27T12:00:00Z".parse().expect("ts")
    }

    fn rec(node: &str, healthy: bool, age_s: i64) -> HealthRecord {
        let at = now()
            .checked_sub(jiff::SignedDuration::from_secs(age_s))
            .expect("ts");
        HealthRecord {
            node: node.into(),
            healthy,
            stage: if healthy {
                String::new()
            } else {
                "heartbeat".into()
            },
            reason: if healthy {
                String::new()
            } else {
                "heartbeat exit 1".into()
            },
            reported_at: at.to_string(),
        }
    }

    fn pol(abs: u64, frac: f64, fallback: &[&str]) -> Policies {
        Policies {
            min_healthy_fraction: frac,
            min_healthy_absolute: abs,
            forbid_if_only_fallback_left: !fallback.is_empty(),
            fallback_nodes: fallback.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn reasons(v: PolicyVerdict) -> Vec<String> {
        match v {
            PolicyVerdict::Blocked { reasons } => reasons,
            other => panic!("expected blocked, got {other:?}"),
        }
    }

    const STALE: Duration = Duration::from_secs(60);

    #[test]
    fn all_healthy_passes() {
        let recs = [rec("a", true, 5), rec("b", true, 5), rec("me", true, 5)];
        assert_eq!(
            evaluate("me", &recs, &[], &pol(2, 0.5, &[]), STALE, now()),
            PolicyVerdict::Pass
        );
    }

    #[test]
    fn the_rebooting_node_counts_as_down() {
        // 3 nodes, min 3 healthy: Go let a node go (it counted itself); we do not.
        let recs = [rec("a", true, 5), rec("b", true, 5), rec("me", true, 5)];
        let r = reasons(evaluate("me", &recs, &[], &pol(3, 0.0, &[]), STALE, now()));
        assert_eq!(
            r,
            ["healthy nodes 2 below minimum 3 (this node counts as down)"]
        );
    }

    #[test]
    fn fraction_uses_ceil_of_the_total() {
        // 5 nodes, f = 0.6 → 3 required; 4 healthy peers pass, 2 do not.
        let ok = [
            rec("a", true, 1),
            rec("b", true, 1),
            rec("c", true, 1),
            rec("d", true, 1),
        ];
        assert_eq!(
            evaluate("me", &ok, &[], &pol(0, 0.6, &[]), STALE, now()),
            PolicyVerdict::Pass
        );
        let few = [
            rec("a", true, 1),
            rec("b", true, 1),
            rec("c", false, 1),
            rec("d", true, 500),
        ];
        let r = reasons(evaluate("me", &few, &[], &pol(0, 0.6, &[]), STALE, now()));
        assert!(
            r.iter().any(|s| s
                == "healthy nodes 2 below 0.60 requirement (3 of 5; this node counts as down)"),
            "{r:?}"
        );
        assert!(
            r.iter().any(|s| s.starts_with(
                "cluster health blocked by unhealthy nodes: c (heartbeat, heartbeat exit 1)"
            )),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|s| s.starts_with("stale health records not counted healthy: d (last report")),
            "{r:?}"
        );
    }

    #[test]
    fn unhealthy_peers_block_even_without_thresholds() {
        let recs = [rec("a", false, 1), rec("b", true, 1)];
        let r = reasons(evaluate("me", &recs, &[], &pol(0, 0.0, &[]), STALE, now()));
        assert_eq!(
            r,
            ["cluster health blocked by unhealthy nodes: a (heartbeat, heartbeat exit 1)"]
        );
        // Our own unhealthy record does not block ourselves.
        let mine = [rec("me", false, 1), rec("b", true, 1)];
        assert_eq!(
            evaluate("me", &mine, &[], &pol(0, 0.0, &[]), STALE, now()),
            PolicyVerdict::Pass
        );
    }

    #[test]
    fn in_progress_markers_block_and_count_as_down() {
        let recs = [rec("a", true, 1), rec("b", true, 1)];
        let ip = [InProgress {
            node: "a".into(),
            since: Some("2026-11-27T11:50:00Z".into()),
        }];
        let r = reasons(evaluate("me", &recs, &ip, &pol(2, 0.0, &[]), STALE, now()));
        assert_eq!(
            r,
            [
                "reboot in progress on a (since 2026-11-27T11:50:00Z)",
                "healthy nodes 1 below minimum 2 (this node counts as down)"
            ]
        );
        // A node that never came back (no record at all) still blocks through its marker.
        let ghost = [InProgress {
            node: "z".into(),
            since: None,
        }];
        let r = reasons(evaluate(
            "me",
            &recs,
            &ghost,
            &pol(0, 0.0, &[]),
            STALE,
            now(),
        ));
        assert_eq!(r, ["reboot in progress on z"]);
        // Our own marker (during recovery) does not block us.
        let own = [InProgress {
            node: "me".into(),
            since: None,
        }];
        assert_eq!(
            evaluate("me", &recs, &own, &pol(0, 0.0, &[]), STALE, now()),
            PolicyVerdict::Pass
        );
    }

    #[test]
    fn only_fallback_left_blocks() {
        let recs = [rec("fb1", true, 1), rec("b", false, 1)];
        let r = reasons(evaluate(
            "me",
            &recs,
            &[],
            &pol(0, 0.0, &["fb1"]),
            STALE,
            now(),
        ));
        assert!(
            r.contains(&"only fallback nodes would remain healthy".to_string()),
            "{r:?}"
        );
        let mixed = [rec("fb1", true, 1), rec("b", true, 1)];
        assert_eq!(
            evaluate("me", &mixed, &[], &pol(0, 0.0, &["fb1"]), STALE, now()),
            PolicyVerdict::Pass
        );
    }
}
