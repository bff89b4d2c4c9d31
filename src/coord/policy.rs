//! Cluster-health policies (SPEC §6.3): may the cluster afford to lose this node now?
//!
//! Pure: facts in, verdict out. Go semantics with the Go daemon's known mistakes fixed:
//! - the node about to reboot counts as **not** healthy when thresholds are evaluated (Go
//!   counted it healthy, so `min_healthy_absolute: 3` on a 3-node cluster let a node go);
//! - a stale or unreadable record is not counted healthy;
//! - every blocking reason is named.
//!
//! Peers fall in three kinds:
//! - **planned downtime**: slot holders. Those ahead of this node in the queue (every holder,
//!   for a node that is not queued yet) count as down whatever their record says, because they
//!   may go down at any moment; a holder behind it counts as down once it is rebooting (marker)
//!   or unhealthy. Planned downtime never blocks by itself: when the thresholds fail only because
//!   of it the verdict is [`PolicyVerdict::HeldBack`], and the node queues (or, under the slot,
//!   keeps its entry) and waits for a release instead of going back to its timer.
//! - **unplanned trouble**: an unhealthy peer that holds no slot, or an in-progress marker whose
//!   node holds no slot (its reboot lease expired, it never came back). It blocks, also with no
//!   threshold configured (Go behaviour), until it is healthy, returns, or is forgotten.
//! - **stale / unreadable**: not counted healthy; matters only for the thresholds.
//!
//! Why "ahead" and not "every other holder": two holders that each counted the other as down
//! could both wait for the other's release for ever. Counting only the holders ahead keeps the
//! wait acyclic, and it is still safe: whichever node of a set that ends up down together was
//! last in the queue counted all the others (ahead of it) as down when it passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::Policies;
use crate::coord::HealthRecord;
use crate::fsm::BlockKind::*;
use crate::fsm::{BlockReason, PolicyVerdict};

/// A peer's reboot-in-progress marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    /// The rebooting node.
    pub node: String,
    /// Since when (RFC 3339), if recorded.
    pub since: Option<String>,
}

/// Everything the policies look at, as read from the coordination store in one pass.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Health records, keyed by the node their key names.
    pub records: Vec<HealthRecord>,
    /// Nodes whose record could not be read, with why (counted as not healthy).
    pub unreadable: Vec<(String, String)>,
    /// In-progress markers.
    pub in_progress: Vec<InProgress>,
    /// Every node that holds a slot now (first K queue entries), this node excluded.
    pub holders: Vec<String>,
    /// The holders this node must count as down whatever their record says: those ahead of
    /// it in the queue (all of them while it is not queued).
    pub ahead: Vec<String>,
}

/// Evaluates the policies for `me` at `now`.
pub fn evaluate(
    me: &str,
    facts: &ClusterFacts,
    policies: &Policies,
    stale_after: Duration,
    now: jiff::Timestamp,
) -> PolicyVerdict {
    assess(me, facts, policies, stale_after, now, true)
}

/// The thresholds of `policies` only (no reason for unplanned trouble, which the cluster-wide
/// evaluation of the same facts already names and blocks on): what `group_policies` adds
/// within a group (`coord::group_policy`).
pub fn evaluate_thresholds(
    me: &str,
    facts: &ClusterFacts,
    policies: &Policies,
    stale_after: Duration,
    now: jiff::Timestamp,
) -> PolicyVerdict {
    assess(me, facts, policies, stale_after, now, false)
}

fn assess(
    me: &str,
    facts: &ClusterFacts,
    policies: &Policies,
    stale_after: Duration,
    now: jiff::Timestamp,
    unplanned_blocks: bool,
) -> PolicyVerdict {
    let holds = |n: &str| facts.holders.iter().any(|h| h == n);
    let mut unplanned = Vec::new();
    let mut planned = Vec::new();
    // Nodes a planned-downtime reason already names.
    let mut named_planned: BTreeSet<&str> = BTreeSet::new();
    // Nodes counted down because of planned downtime (slot holders).
    let mut down_planned: BTreeSet<&str> = BTreeSet::new();
    for h in facts.ahead.iter().filter(|h| h.as_str() != me) {
        down_planned.insert(h.as_str());
    }

    let mut marked: BTreeSet<&str> = BTreeSet::new();
    for p in facts.in_progress.iter().filter(|p| p.node != me) {
        marked.insert(p.node.as_str());
        let since = p
            .since
            .as_deref()
            .map(|s| format!(" (since {s})"))
            .unwrap_or_default();
        if holds(&p.node) {
            down_planned.insert(p.node.as_str());
            named_planned.insert(p.node.as_str());
            planned.push(BlockReason::new(
                PlannedDowntime,
                format!("{} is rebooting and holds a slot{since}", p.node),
            ));
        } else {
            unplanned.push(BlockReason::new(RebootInProgress, format!(
                "reboot in progress on {}{since} without a slot: it rebooted and has not come back healthy (run `clusterrebootd cluster forget {}` if it never will)",
                p.node, p.node
            )));
        }
    }

    // One record per peer (the last one wins if a node appears twice).
    let mut peers: BTreeMap<&str, &HealthRecord> = BTreeMap::new();
    for r in &facts.records {
        if r.node != me && !r.node.is_empty() {
            peers.insert(r.node.as_str(), r);
        }
    }
    let mut unhealthy = Vec::new();
    let mut stale = Vec::new();
    let mut healthy = 0u64;
    let mut healthy_non_fallback = 0u64;
    let is_fallback = |n: &str| policies.fallback_nodes.iter().any(|f| f == n);
    for (node, r) in &peers {
        let fresh = r
            .reported_at
            .parse::<jiff::Timestamp>()
            .ok()
            .is_some_and(|t| now.duration_since(t).unsigned_abs().le(&stale_after));
        if !r.healthy {
            if holds(node) {
                // A holder going down or coming back: planned downtime.
                if down_planned.insert(node) {
                    named_planned.insert(node);
                    planned.push(BlockReason::new(
                        PlannedDowntime,
                        format!("{node} holds a slot and reports unhealthy"),
                    ));
                }
                continue;
            }
            if marked.contains(node) {
                continue; // already named through its marker
            }
            let detail = match (r.stage.is_empty(), r.reason.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!(" ({})", r.stage),
                (true, false) => format!(" ({})", r.reason),
                (false, false) => format!(" ({}, {})", r.stage, r.reason),
            };
            unhealthy.push(format!("{node}{detail}"));
        } else if down_planned.contains(node) || marked.contains(node) {
            // counted down above
        } else if !fresh {
            stale.push(format!(
                "{node} (last report {})",
                crate::human::instant(&r.reported_at)
            ));
        } else {
            healthy += 1;
            if !is_fallback(node) {
                healthy_non_fallback += 1;
            }
        }
    }
    let mut unreadable = Vec::new();
    for (node, why) in facts.unreadable.iter().filter(|(n, _)| n != me) {
        if !peers.contains_key(node.as_str()) {
            unreadable.push(format!("{node} ({why})"));
        }
    }
    // Everyone we know of is part of the cluster: records, unreadable records, markers, holders.
    let mut members: BTreeSet<&str> = peers.keys().copied().collect();
    members.extend(facts.unreadable.iter().map(|(n, _)| n.as_str()));
    members.extend(marked.iter().copied());
    members.extend(facts.holders.iter().map(String::as_str));
    members.remove(me);
    let total = 1 + members.len() as u64;

    if !unhealthy.is_empty() {
        unplanned.push(BlockReason::new(
            UnhealthyPeers,
            format!(
                "cluster health blocked by unhealthy nodes: {}",
                unhealthy.join(", ")
            ),
        ));
    }
    let thresholds = policies.min_healthy_absolute > 0 || policies.min_healthy_fraction > 0.0;
    let mut counted = Vec::new();
    if thresholds && !stale.is_empty() {
        counted.push(BlockReason::new(
            StaleRecords,
            format!(
                "stale health records not counted healthy: {}",
                stale.join(", ")
            ),
        ));
    }
    if thresholds && !unreadable.is_empty() {
        counted.push(BlockReason::new(
            UnreadableRecords,
            format!(
                "unreadable health records not counted healthy: {}",
                unreadable.join(", ")
            ),
        ));
    }
    let shortfall = |healthy: u64, healthy_non_fallback: u64| {
        let mut r = Vec::new();
        if healthy < policies.min_healthy_absolute {
            r.push(BlockReason::new(
                TooFewHealthy,
                format!(
                    "healthy nodes {healthy} below minimum {} (this node counts as down)",
                    policies.min_healthy_absolute
                ),
            ));
        }
        if policies.min_healthy_fraction > 0.0 {
            let required = (policies.min_healthy_fraction * total as f64).ceil() as u64;
            if healthy < required {
                r.push(BlockReason::new(TooFewHealthy, format!(
                    "healthy nodes {healthy} below {:.2} requirement ({required} of {total}; this node counts as down)",
                    policies.min_healthy_fraction
                )));
            }
        }
        if policies.forbid_if_only_fallback_left
            && !policies.fallback_nodes.is_empty()
            && healthy > 0
            && healthy_non_fallback == 0
        {
            r.push(BlockReason::new(
                OnlyFallbackLeft,
                "only fallback nodes would remain healthy",
            ));
        }
        r
    };
    let now_short = shortfall(healthy, healthy_non_fallback);
    if unplanned_blocks && !unplanned.is_empty() {
        let mut reasons = unplanned;
        reasons.extend(planned);
        reasons.extend(counted);
        reasons.extend(now_short);
        return PolicyVerdict::Blocked { reasons };
    }
    if now_short.is_empty() {
        return PolicyVerdict::Pass;
    }
    // Would the thresholds pass if the slot holders' planned downtime were over?
    let back = down_planned.len() as u64;
    let back_non_fallback = down_planned.iter().filter(|n| !is_fallback(n)).count() as u64;
    let mut reasons = planned;
    for n in &down_planned {
        if !named_planned.contains(n) {
            reasons.push(BlockReason::new(
                PlannedDowntime,
                format!("{n} holds a slot ahead of this node (counted as down)"),
            ));
        }
    }
    reasons.extend(counted);
    reasons.extend(now_short);
    if back > 0 && shortfall(healthy + back, healthy_non_fallback + back_non_fallback).is_empty() {
        PolicyVerdict::HeldBack { reasons }
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
            group: None,
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

    fn facts(records: &[HealthRecord]) -> ClusterFacts {
        ClusterFacts {
            records: records.to_vec(),
            ..ClusterFacts::default()
        }
    }

    fn marker(node: &str) -> InProgress {
        InProgress {
            node: node.into(),
            since: None,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn eval(f: &ClusterFacts, p: &Policies) -> PolicyVerdict {
        evaluate("me", f, p, STALE, now())
    }

    fn reasons(v: PolicyVerdict) -> Vec<String> {
        match v {
            PolicyVerdict::Blocked { reasons } => BlockReason::texts(&reasons),
            other => panic!("expected blocked, got {other:?}"),
        }
    }

    fn held_back(v: PolicyVerdict) -> Vec<String> {
        match v {
            PolicyVerdict::HeldBack { reasons } => BlockReason::texts(&reasons),
            other => panic!("expected held back, got {other:?}"),
        }
    }

    const STALE: Duration = Duration::from_secs(60);

    /// Every reason carries the kind `status --explain` acts on (issue #12).
    #[test]
    fn every_reason_is_classified() {
        let kinds = |v: PolicyVerdict| -> Vec<crate::fsm::BlockKind> {
            match v {
                PolicyVerdict::Blocked { reasons } | PolicyVerdict::HeldBack { reasons } => {
                    reasons.iter().map(|r| r.kind).collect()
                }
                other => panic!("expected a block, got {other:?}"),
            }
        };
        let mut f = facts(&[rec("a", false, 5), rec("b", true, 500), rec("c", true, 5)]);
        f.in_progress = vec![marker("d")];
        f.unreadable = vec![("e".into(), "not JSON".into())];
        assert_eq!(
            kinds(eval(&f, &pol(3, 0.0, &[]))),
            [
                RebootInProgress,
                UnhealthyPeers,
                StaleRecords,
                UnreadableRecords,
                TooFewHealthy
            ]
        );
        let mut f = facts(&[rec("a", true, 5), rec("b", true, 5)]);
        f.in_progress = vec![marker("b")];
        f.holders = names(&["b"]);
        assert_eq!(
            kinds(eval(&f, &pol(2, 0.0, &[]))),
            [PlannedDowntime, TooFewHealthy]
        );
        let f = facts(&[rec("a", true, 5)]);
        assert_eq!(kinds(eval(&f, &pol(0, 0.0, &["a"]))), [OnlyFallbackLeft]);
    }

    #[test]
    fn all_healthy_passes() {
        let recs = [rec("a", true, 5), rec("b", true, 5), rec("me", true, 5)];
        assert_eq!(eval(&facts(&recs), &pol(2, 0.5, &[])), PolicyVerdict::Pass);
    }

    #[test]
    fn the_rebooting_node_counts_as_down() {
        // 3 nodes, min 3 healthy: Go let a node go (it counted itself); we do not.
        let recs = [rec("a", true, 5), rec("b", true, 5), rec("me", true, 5)];
        let r = reasons(eval(&facts(&recs), &pol(3, 0.0, &[])));
        assert_eq!(
            r,
            ["healthy nodes 2 below minimum 3 (this node counts as down)"]
        );
    }

    /// Issue #19: a stale record's time is shown to the second, not with its nanoseconds.
    #[test]
    fn a_stale_record_is_named_with_its_time_to_the_second() {
        let mut stale = rec("d", true, 500);
        stale.reported_at = "2026-12-07T11:46:01.851901021Z".into();
        let recs = [rec("a", true, 1), stale];
        let r = reasons(eval(&facts(&recs), &pol(2, 0.0, &[])));
        assert!(
            r.iter().any(|s| s.ends_with(
                "stale health records not counted healthy: d (last report 2026-12-07T11:46:01Z)"
            )),
            "{r:?}"
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
        assert_eq!(eval(&facts(&ok), &pol(0, 0.6, &[])), PolicyVerdict::Pass);
        let few = [
            rec("a", true, 1),
            rec("b", true, 1),
            rec("c", false, 1),
            rec("d", true, 500),
        ];
        let r = reasons(eval(&facts(&few), &pol(0, 0.6, &[])));
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
        let r = reasons(eval(&facts(&recs), &pol(0, 0.0, &[])));
        assert_eq!(
            r,
            ["cluster health blocked by unhealthy nodes: a (heartbeat, heartbeat exit 1)"]
        );
        // Our own unhealthy record does not block ourselves.
        let mine = [rec("me", false, 1), rec("b", true, 1)];
        assert_eq!(eval(&facts(&mine), &pol(0, 0.0, &[])), PolicyVerdict::Pass);
    }

    #[test]
    fn an_unreadable_record_is_not_counted_healthy() {
        // Three peers, f = 0.5 of 4 → 2 required. n3's record is garbage: before, it was
        // dropped, the total shrank to 3 and the policy passed with 2 healthy... it must count
        // as a member that is not healthy.
        let mut f = facts(&[rec("a", true, 1), rec("b", false, 1)]);
        f.unreadable = vec![("n3".into(), "not JSON".into())];
        let r = reasons(eval(&f, &pol(0, 0.5, &[])));
        assert!(
            r.iter()
                .any(|s| s
                    .starts_with("unreadable health records not counted healthy: n3 (not JSON)")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|s| s.contains("healthy nodes 1 below 0.50 requirement (2 of 4")),
            "{r:?}"
        );
    }

    #[test]
    fn a_marker_of_a_slot_holder_is_planned_downtime() {
        // a rebooting under its slot, no thresholds: it does not block.
        let mut f = facts(&[rec("a", false, 1), rec("b", true, 1)]);
        f.in_progress = vec![marker("a")];
        f.holders = names(&["a"]);
        f.ahead = names(&["a"]);
        assert_eq!(eval(&f, &pol(0, 0.0, &[])), PolicyVerdict::Pass);
        // With a threshold that the downtime breaks, the node is held back (it queues), not
        // blocked.
        let r = held_back(eval(&f, &pol(2, 0.0, &[])));
        assert_eq!(
            r,
            [
                "a is rebooting and holds a slot",
                "healthy nodes 1 below minimum 2 (this node counts as down)"
            ]
        );
        // A threshold that fails even with every holder back blocks.
        let r = reasons(eval(&f, &pol(3, 0.0, &[])));
        assert!(
            r.contains(&"a is rebooting and holds a slot".to_string()),
            "{r:?}"
        );
    }

    #[test]
    fn a_marker_without_a_slot_blocks() {
        // The node rebooted and never came back; its reboot lease expired (no slot).
        let mut f = facts(&[rec("a", true, 1), rec("b", true, 1)]);
        f.in_progress = vec![InProgress {
            node: "z".into(),
            since: Some("2026-11-27T11:50:00Z".into()),
        }];
        let r = reasons(eval(&f, &pol(0, 0.0, &[])));
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("reboot in progress on z (since 2026-11-27T11:50:00Z) without a slot"),
            "{r:?}"
        );
        // Our own marker (during recovery) does not block us.
        f.in_progress = vec![marker("me")];
        assert_eq!(eval(&f, &pol(0, 0.0, &[])), PolicyVerdict::Pass);
    }

    #[test]
    fn an_unhealthy_holder_does_not_block_an_unhealthy_non_holder_does() {
        let mut f = facts(&[rec("a", false, 1), rec("b", true, 1), rec("c", true, 1)]);
        f.holders = names(&["a"]);
        f.ahead = names(&["a"]);
        assert_eq!(eval(&f, &pol(0, 0.0, &[])), PolicyVerdict::Pass);
        f.holders = vec![];
        f.ahead = vec![];
        assert!(!reasons(eval(&f, &pol(0, 0.0, &[]))).is_empty());
    }

    #[test]
    fn only_holders_ahead_count_as_down_when_healthy() {
        // 5 peers all healthy, min 4. Under the slot with one holder ahead: 3 healthy + me
        // down → held back. With the same holder behind us (not rebooting): it counts healthy.
        let recs = [
            rec("a", true, 1),
            rec("b", true, 1),
            rec("c", true, 1),
            rec("d", true, 1),
        ];
        let mut f = facts(&recs);
        f.holders = names(&["a"]);
        f.ahead = names(&["a"]);
        let r = held_back(eval(&f, &pol(4, 0.0, &[])));
        assert_eq!(
            r,
            [
                "a holds a slot ahead of this node (counted as down)",
                "healthy nodes 3 below minimum 4 (this node counts as down)"
            ]
        );
        f.ahead = vec![];
        assert_eq!(eval(&f, &pol(4, 0.0, &[])), PolicyVerdict::Pass);
        // ... until it starts rebooting.
        f.in_progress = vec![marker("a")];
        held_back(eval(&f, &pol(4, 0.0, &[])));
    }

    #[test]
    fn only_fallback_left_blocks() {
        let recs = [rec("fb1", true, 1), rec("b", false, 1)];
        let r = reasons(eval(&facts(&recs), &pol(0, 0.0, &["fb1"])));
        assert!(
            r.contains(&"only fallback nodes would remain healthy".to_string()),
            "{r:?}"
        );
        let mixed = [rec("fb1", true, 1), rec("b", true, 1)];
        assert_eq!(
            eval(&facts(&mixed), &pol(0, 0.0, &["fb1"])),
            PolicyVerdict::Pass
        );
        // b rebooting under a slot: only the fallback stays healthy → held back, not blocked.
        let mut f = facts(&mixed);
        f.in_progress = vec![marker("b")];
        f.holders = names(&["b"]);
        held_back(eval(&f, &pol(0, 0.0, &["fb1"])));
    }
}
