//! Policies within a reboot group (issue #16): `group_policies` are the thresholds of
//! `cluster_policies`, evaluated among the members of the node's own group, **in addition** to
//! the cluster-wide ones.
//!
//! Pure, like [`super::policy`], and built on it: the same facts (read once), filtered to the
//! group, go through the same threshold rules, so a group member that holds a slot ahead of
//! this node counts as down exactly as it does cluster-wide (planned downtime, `HeldBack`),
//! and the wait stays acyclic for the same reason (only holders ahead are counted).
//!
//! Who is a member: every peer whose health record names the group (`group` field, published
//! by each daemon with its record), every node with an entry in the group's pool, and this
//! node. A peer whose record cannot be read may be a member: it is counted in every group as a
//! member that is not healthy (fail closed: it can only raise the fraction's requirement).
//! Unplanned trouble (an unhealthy peer, a marker without a slot) is left to the cluster-wide
//! evaluation, which blocks on it and names it; the group adds only its thresholds.

use std::collections::BTreeSet;
use std::time::Duration;

use super::policy::{self, ClusterFacts};
use crate::config::Policies;
use crate::fsm::{BlockReason, PolicyVerdict};

/// What a group evaluation needs besides the cluster facts.
#[derive(Debug, Clone, Copy)]
pub struct GroupScope<'a> {
    /// The node's group.
    pub name: &'a str,
    /// Nodes with an entry in the group's pool (waiting or holding), in any order.
    pub pool_members: &'a [String],
    /// The group's thresholds (`group_policies`).
    pub policies: &'a Policies,
}

/// Whether `p` asks for anything: without a threshold or a fallback rule a group evaluation
/// cannot block, so the backend skips it (and the read of the group's pool).
pub fn has_thresholds(p: &Policies) -> bool {
    p.min_healthy_absolute > 0
        || p.min_healthy_fraction > 0.0
        || (p.forbid_if_only_fallback_left && !p.fallback_nodes.is_empty())
}

/// The members of `scope`'s group that `facts` know of (this node included).
pub fn members(me: &str, facts: &ClusterFacts, scope: &GroupScope<'_>) -> BTreeSet<String> {
    let mut m: BTreeSet<String> = facts
        .records
        .iter()
        .filter(|r| r.group.as_deref() == Some(scope.name))
        .map(|r| r.node.clone())
        .collect();
    m.extend(scope.pool_members.iter().cloned());
    m.insert(me.to_string());
    m
}

/// `facts` restricted to `members` (unreadable records are all kept: see the module doc).
pub fn in_group(facts: &ClusterFacts, members: &BTreeSet<String>) -> ClusterFacts {
    let of = |n: &String| members.contains(n);
    ClusterFacts {
        records: facts
            .records
            .iter()
            .filter(|r| of(&r.node))
            .cloned()
            .collect(),
        unreadable: facts.unreadable.clone(),
        in_progress: facts
            .in_progress
            .iter()
            .filter(|p| of(&p.node))
            .cloned()
            .collect(),
        holders: facts.holders.iter().filter(|n| of(n)).cloned().collect(),
        ahead: facts.ahead.iter().filter(|n| of(n)).cloned().collect(),
    }
}

/// The group's thresholds for `me`, every reason prefixed with the group's name.
pub fn evaluate(
    me: &str,
    facts: &ClusterFacts,
    scope: &GroupScope<'_>,
    stale_after: Duration,
    now: jiff::Timestamp,
) -> PolicyVerdict {
    let group_facts = in_group(facts, &members(me, facts, scope));
    let named = |reasons: Vec<BlockReason>| -> Vec<BlockReason> {
        reasons
            .into_iter()
            .map(|r| BlockReason::within_group(scope.name, r))
            .collect()
    };
    match policy::evaluate_thresholds(me, &group_facts, scope.policies, stale_after, now) {
        v @ (PolicyVerdict::Pass | PolicyVerdict::Error { .. }) => v,
        PolicyVerdict::HeldBack { reasons } => PolicyVerdict::HeldBack {
            reasons: named(reasons),
        },
        PolicyVerdict::Blocked { reasons } => PolicyVerdict::Blocked {
            reasons: named(reasons),
        },
    }
}

/// Both verdicts at once: an error if either is one (fail closed), blocked if either blocks,
/// held back if either holds back (each would pass once the planned downtime it counts is
/// over, and the group's is part of the cluster's), else a pass. The cluster's reasons come
/// first.
pub fn combine(cluster: PolicyVerdict, group: PolicyVerdict) -> PolicyVerdict {
    use PolicyVerdict::*;
    if let Error { .. } = cluster {
        return cluster;
    }
    if let Error { .. } = group {
        return group;
    }
    let reasons_of = |v: PolicyVerdict| match v {
        Pass | Error { .. } => Vec::new(),
        HeldBack { reasons } | Blocked { reasons } => reasons,
    };
    let blocked = matches!(cluster, Blocked { .. }) || matches!(group, Blocked { .. });
    let held = matches!(cluster, HeldBack { .. }) || matches!(group, HeldBack { .. });
    let mut reasons = reasons_of(cluster);
    reasons.extend(reasons_of(group));
    if blocked {
        Blocked { reasons }
    } else if held {
        HeldBack { reasons }
    } else {
        Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::HealthRecord;
    use crate::coord::policy::InProgress;
    use crate::fsm::BlockKind;

    const STALE: Duration = Duration::from_secs(60);

    fn now() -> jiff::Timestamp {
        "2026-12-07T12:00:00Z".parse().expect("ts")
    }

    fn rec(node: &str, group: Option<&str>, healthy: bool) -> HealthRecord {
        HealthRecord {
            node: node.into(),
            healthy,
            stage: String::new(),
            reason: String::new(),
            reported_at: now().to_string(),
            group: group.map(str::to_string),
        }
    }

    fn abs(n: u64) -> Policies {
        Policies {
            min_healthy_absolute: n,
            ..Policies::default()
        }
    }

    /// db: me, db-2; web: web-1, web-2 (all healthy).
    fn fleet() -> ClusterFacts {
        ClusterFacts {
            records: vec![
                rec("me", Some("db"), true),
                rec("db-2", Some("db"), true),
                rec("web-1", Some("web"), true),
                rec("web-2", None, true),
            ],
            ..ClusterFacts::default()
        }
    }

    fn both(facts: &ClusterFacts, cluster: &Policies, group: &Policies) -> PolicyVerdict {
        let scope = GroupScope {
            name: "db",
            pool_members: &[],
            policies: group,
        };
        combine(
            policy::evaluate("me", facts, cluster, STALE, now()),
            evaluate("me", facts, &scope, STALE, now()),
        )
    }

    fn texts(v: &PolicyVerdict) -> Vec<String> {
        match v {
            PolicyVerdict::Blocked { reasons } | PolicyVerdict::HeldBack { reasons } => {
                BlockReason::texts(reasons)
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn the_group_blocks_where_the_cluster_alone_would_pass() {
        let f = fleet();
        // Cluster-wide three healthy peers meet 3; the group has one healthy peer.
        assert_eq!(
            policy::evaluate("me", &f, &abs(3), STALE, now()),
            PolicyVerdict::Pass
        );
        assert_eq!(both(&f, &abs(3), &abs(1)), PolicyVerdict::Pass);
        let v = both(&f, &abs(3), &abs(2));
        assert!(matches!(v, PolicyVerdict::Blocked { .. }), "{v:?}");
        assert_eq!(
            texts(&v),
            ["in reboot group db: healthy nodes 1 below minimum 2 (this node counts as down)"]
        );
        // The fraction counts the group's members only: 1 healthy of 2 meets 0.5, not 0.6.
        let frac = |f: f64| Policies {
            min_healthy_fraction: f,
            ..Policies::default()
        };
        assert_eq!(both(&f, &abs(0), &frac(0.5)), PolicyVerdict::Pass);
        assert_eq!(
            texts(&both(&f, &abs(0), &frac(0.6))),
            [
                "in reboot group db: healthy nodes 1 below 0.60 requirement (2 of 2; this node counts as down)"
            ]
        );
    }

    #[test]
    fn a_pool_member_without_a_record_is_a_member_that_is_not_healthy() {
        let f = fleet();
        let pool = ["db-3".to_string()];
        let p = Policies {
            min_healthy_fraction: 0.6,
            ..Policies::default()
        };
        let scope = GroupScope {
            name: "db",
            pool_members: &pool,
            policies: &p,
        };
        assert_eq!(
            members("me", &f, &scope).into_iter().collect::<Vec<_>>(),
            ["db-2", "db-3", "me"]
        );
        // 1 healthy (db-2) of 3: below ceil(0.6 × 3) = 2.
        assert!(matches!(
            evaluate("me", &f, &scope, STALE, now()),
            PolicyVerdict::Blocked { .. }
        ));
    }

    #[test]
    fn a_group_holder_ahead_holds_back_and_a_holder_of_another_group_does_not_count() {
        let mut f = fleet();
        f.records.push(rec("db-3", Some("db"), true));
        // web-1 holds a slot ahead: the group (db-2, db-3 healthy) does not care.
        f.holders = vec!["web-1".into()];
        f.ahead = vec!["web-1".into()];
        assert_eq!(both(&f, &abs(0), &abs(2)), PolicyVerdict::Pass);
        // db-2 holds a slot ahead: down in the group → held back, named with the group.
        f.holders = vec!["db-2".into()];
        f.ahead = vec!["db-2".into()];
        let v = both(&f, &abs(0), &abs(2));
        assert!(matches!(v, PolicyVerdict::HeldBack { .. }), "{v:?}");
        assert_eq!(
            texts(&v),
            [
                "in reboot group db: db-2 holds a slot ahead of this node (counted as down)",
                "in reboot group db: healthy nodes 1 below minimum 2 (this node counts as down)"
            ]
        );
        // ... behind this node and not rebooting, it counts healthy; rebooting, it does not.
        f.ahead = vec![];
        assert_eq!(both(&f, &abs(0), &abs(2)), PolicyVerdict::Pass);
        f.in_progress = vec![InProgress {
            node: "db-2".into(),
            since: None,
        }];
        assert!(matches!(
            both(&f, &abs(0), &abs(2)),
            PolicyVerdict::HeldBack { .. }
        ));
    }

    #[test]
    fn unplanned_trouble_is_named_once_by_the_cluster_evaluation() {
        let mut f = fleet();
        f.records[1] = rec("db-2", Some("db"), false);
        let v = both(&f, &abs(0), &abs(1));
        let t = texts(&v);
        assert!(matches!(v, PolicyVerdict::Blocked { .. }), "{v:?}");
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].starts_with("cluster health blocked by unhealthy nodes: db-2"));
        assert_eq!(
            t[1],
            "in reboot group db: healthy nodes 0 below minimum 1 (this node counts as down)"
        );
    }

    #[test]
    fn an_unreadable_record_counts_in_the_group_as_not_healthy() {
        let mut f = fleet();
        f.unreadable = vec![("x".into(), "not JSON".into())];
        let p = Policies {
            min_healthy_fraction: 0.5,
            ..Policies::default()
        };
        let scope = GroupScope {
            name: "db",
            pool_members: &[],
            policies: &p,
        };
        // me, db-2 and x: 1 healthy of 3 is below ceil(1.5) = 2.
        let t = texts(&evaluate("me", &f, &scope, STALE, now()));
        assert!(
            t.iter()
                .any(|s| s == "in reboot group db: unreadable health records not counted healthy: x (not JSON)"),
            "{t:?}"
        );
    }

    #[test]
    fn only_fallback_left_within_the_group() {
        let f = fleet();
        let p = Policies {
            forbid_if_only_fallback_left: true,
            fallback_nodes: vec!["db-2".into()],
            ..Policies::default()
        };
        let v = both(&f, &abs(0), &p);
        assert_eq!(
            texts(&v),
            ["in reboot group db: only fallback nodes would remain healthy"]
        );
        match v {
            PolicyVerdict::Blocked { reasons } => {
                assert_eq!(reasons[0].kind, BlockKind::OnlyFallbackLeft)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn combine_keeps_the_strongest_verdict() {
        let r = |t: &str| vec![BlockReason::new(BlockKind::TooFewHealthy, t)];
        let held = |t: &str| PolicyVerdict::HeldBack { reasons: r(t) };
        let blocked = |t: &str| PolicyVerdict::Blocked { reasons: r(t) };
        let err = PolicyVerdict::Error {
            detail: "etcd".into(),
        };
        use PolicyVerdict::Pass;
        assert_eq!(combine(Pass, Pass), Pass);
        assert_eq!(combine(Pass, held("g")), held("g"));
        assert_eq!(combine(held("c"), Pass), held("c"));
        assert_eq!(
            texts(&combine(held("c"), blocked("g"))),
            ["c", "g"],
            "the cluster's reasons first"
        );
        assert!(matches!(
            combine(held("c"), blocked("g")),
            PolicyVerdict::Blocked { .. }
        ));
        assert!(matches!(
            combine(blocked("c"), held("g")),
            PolicyVerdict::Blocked { .. }
        ));
        assert_eq!(combine(Pass, err.clone()), err);
        assert_eq!(combine(err.clone(), blocked("g")), err);
    }

    #[test]
    fn without_a_threshold_nothing_is_evaluated() {
        assert!(!has_thresholds(&Policies::default()));
        assert!(!has_thresholds(&Policies {
            forbid_if_only_fallback_left: true,
            ..Policies::default()
        }));
        assert!(has_thresholds(&abs(1)));
        assert!(has_thresholds(&Policies {
            min_healthy_fraction: 0.1,
            ..Policies::default()
        }));
    }
}
