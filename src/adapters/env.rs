//! The `RC_*` environment given to the health script, hooks and the reboot command.
//!
//! Operators' scripts written for the Go daemon read these variables, so names and value
//! formats are the Go ones (docs/GO-COMPAT.md §6, SPEC §6.1): booleans are `true`/`false`,
//! lists are joined with `,`, the fraction uses the shortest decimal form (Go
//! `FormatFloat(f, 'f', -1, 64)`: `0.6`, `1`). Variables Go set only conditionally are still
//! only set under the same condition, so a script's `${RC_X:-default}` keeps working.
//!
//! Two layers: [`base_env`] is fixed for a configuration (rebuild it on reload); [`CallEnv`] is
//! per script run. Callers pass `base` then `call` to [`super::process::CommandSpec::env`],
//! where later entries win.

use crate::config::Settings;
use crate::fsm::Phase;

/// Run-time facts that are not in [`Settings`] but go into the base environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvExtras {
    /// `--dry-run` was given (or forced by `status`); OR-ed with `Settings::dry_run`.
    pub dry_run: bool,
    /// The metrics listener's actual bound address (`RC_METRICS_ENDPOINT`), when serving.
    pub metrics_endpoint: Option<String>,
    /// `status --skip-health` (`RC_SKIP_HEALTH=true`).
    pub skip_health: bool,
    /// `status --skip-lock` (`RC_SKIP_LOCK=true`).
    pub skip_lock: bool,
}

fn flag(b: bool) -> String {
    if b { "true" } else { "false" }.to_owned()
}

/// The base environment (Go `BaseEnvironment` plus run-time additions and the new
/// `RC_MAX_CONCURRENT_REBOOTS`), in a fixed order:
///
/// | variable | value, condition |
/// |---|---|
/// | `RC_NODE_NAME` | node name, always |
/// | `RC_DRY_RUN` | `true`/`false`, always |
/// | `RC_LOCK_KEY` | raw lock key (not namespaced), if non-blank |
/// | `RC_ETCD_ENDPOINTS` | endpoints joined by `,`, always (empty with the local backend) |
/// | `RC_KILL_SWITCH_FILE` | path, if non-blank |
/// | `RC_CLUSTER_MIN_HEALTHY_FRACTION` | shortest decimal, if > 0 |
/// | `RC_CLUSTER_MIN_HEALTHY_ABSOLUTE` | integer, if > 0 |
/// | `RC_CLUSTER_FORBID_IF_ONLY_FALLBACK_LEFT` | `true`/`false`, always |
/// | `RC_CLUSTER_FALLBACK_NODES` | joined by `,`, if any |
/// | `RC_WINDOWS_ALLOW` / `RC_WINDOWS_DENY` | expressions joined by `,`, if any |
/// | `RC_METRICS_ENDPOINT` | bound address, if serving |
/// | `RC_SKIP_HEALTH` / `RC_SKIP_LOCK` | `true`, only when set |
/// | `RC_MAX_CONCURRENT_REBOOTS` | integer, always |
pub fn base_env(s: &Settings, x: &EnvExtras) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| env.push((k.to_owned(), v));
    put("RC_NODE_NAME", s.node_name.clone());
    put("RC_DRY_RUN", flag(s.dry_run || x.dry_run));
    if !s.lock_key.trim().is_empty() {
        put("RC_LOCK_KEY", s.lock_key.clone());
    }
    put("RC_ETCD_ENDPOINTS", s.etcd.endpoints.join(","));
    let kill_switch = s.kill_switch_file.to_string_lossy();
    if !kill_switch.trim().is_empty() {
        put("RC_KILL_SWITCH_FILE", kill_switch.into_owned());
    }
    let p = &s.policies;
    if p.min_healthy_fraction > 0.0 {
        // Rust's `Display` for f64 is the shortest round-trip form without an exponent, which is
        // exactly Go's `FormatFloat(f, 'f', -1, 64)`.
        put(
            "RC_CLUSTER_MIN_HEALTHY_FRACTION",
            p.min_healthy_fraction.to_string(),
        );
    }
    if p.min_healthy_absolute > 0 {
        put(
            "RC_CLUSTER_MIN_HEALTHY_ABSOLUTE",
            p.min_healthy_absolute.to_string(),
        );
    }
    put(
        "RC_CLUSTER_FORBID_IF_ONLY_FALLBACK_LEFT",
        flag(p.forbid_if_only_fallback_left),
    );
    if !p.fallback_nodes.is_empty() {
        put("RC_CLUSTER_FALLBACK_NODES", p.fallback_nodes.join(","));
    }
    if !s.windows_text.allow.is_empty() {
        put("RC_WINDOWS_ALLOW", s.windows_text.allow.join(","));
    }
    if !s.windows_text.deny.is_empty() {
        put("RC_WINDOWS_DENY", s.windows_text.deny.join(","));
    }
    if let Some(m) = &x.metrics_endpoint {
        put("RC_METRICS_ENDPOINT", m.clone());
    }
    if x.skip_health {
        put("RC_SKIP_HEALTH", flag(true));
    }
    if x.skip_lock {
        put("RC_SKIP_LOCK", flag(true));
    }
    put(
        "RC_MAX_CONCURRENT_REBOOTS",
        s.max_concurrent_reboots.to_string(),
    );
    env
}

/// The per-call variables: which gate is asking and what the node holds at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnv {
    /// `RC_PHASE`: `pre-lock`, `post-lock`, `heartbeat`, `post-reboot` or `monitor` (a one-shot pass with nothing required).
    pub phase: Phase,
    /// `RC_LOCK_ENABLED`: false only when locking is skipped (`status --skip-lock`).
    pub lock_enabled: bool,
    /// `RC_LOCK_HELD`: the node holds a reboot slot.
    pub lock_held: bool,
    /// `RC_LOCK_ATTEMPTS`: acquire attempts in this cycle (Go: non-zero only post-lock).
    pub lock_attempts: u32,
    /// `RC_STATE`: the machine's state name (new).
    pub state: String,
}

impl CallEnv {
    /// The variables, in a fixed order.
    pub fn to_env(&self) -> Vec<(String, String)> {
        vec![
            ("RC_PHASE".to_owned(), self.phase.as_str().to_owned()),
            ("RC_LOCK_ENABLED".to_owned(), flag(self.lock_enabled)),
            ("RC_LOCK_HELD".to_owned(), flag(self.lock_held)),
            (
                "RC_LOCK_ATTEMPTS".to_owned(),
                self.lock_attempts.to_string(),
            ),
            ("RC_STATE".to_owned(), self.state.clone()),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::load::from_strs;
    use crate::config::{ValidateEnv, validate_loaded};

    const BASE: &str = r#"
node_name: n1
reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]
health_script: /usr/local/bin/health
etcd_endpoints: ["http://127.0.0.1:2379"]
"#;

    /// Settings produced by the real loader from `BASE` plus `overlay`.
    pub(crate) fn settings(overlay: &str) -> Settings {
        let env = ValidateEnv {
            hostname: Some("host-a".into()),
        };
        validate_loaded(from_strs(&[BASE, overlay]).expect("parses"), &env)
            .expect("valid")
            .settings
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn full_sample() {
        let s = settings(
            r#"
node_name: db-1
dry_run: false
lock_key: /cluster/custom/lock
etcd_endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
kill_switch_file: /etc/clusterrebootd/off
max_concurrent_reboots: 2
cluster_policies:
  min_healthy_fraction: 0.6
  min_healthy_absolute: 3
  forbid_if_only_fallback_left: true
  fallback_nodes: [db-9, db-8]
windows:
  allow: ["Mon-Fri 02:00-04:00", "Sat 01:00-05:00"]
  deny: ["Fri 18:00-Mon 08:00"]
"#,
        );
        let x = EnvExtras {
            dry_run: true,
            metrics_endpoint: Some("127.0.0.1:9090".into()),
            skip_health: true,
            skip_lock: true,
        };
        let want = pairs(&[
            ("RC_NODE_NAME", "db-1"),
            ("RC_DRY_RUN", "true"),
            ("RC_LOCK_KEY", "/cluster/custom/lock"),
            (
                "RC_ETCD_ENDPOINTS",
                "http://10.0.0.1:2379,http://10.0.0.2:2379",
            ),
            ("RC_KILL_SWITCH_FILE", "/etc/clusterrebootd/off"),
            ("RC_CLUSTER_MIN_HEALTHY_FRACTION", "0.6"),
            ("RC_CLUSTER_MIN_HEALTHY_ABSOLUTE", "3"),
            ("RC_CLUSTER_FORBID_IF_ONLY_FALLBACK_LEFT", "true"),
            ("RC_CLUSTER_FALLBACK_NODES", "db-9,db-8"),
            ("RC_WINDOWS_ALLOW", "Mon-Fri 02:00-04:00,Sat 01:00-05:00"),
            ("RC_WINDOWS_DENY", "Fri 18:00-Mon 08:00"),
            ("RC_METRICS_ENDPOINT", "127.0.0.1:9090"),
            ("RC_SKIP_HEALTH", "true"),
            ("RC_SKIP_LOCK", "true"),
            ("RC_MAX_CONCURRENT_REBOOTS", "2"),
        ]);
        assert_eq!(base_env(&s, &x), want);
    }

    #[test]
    fn minimal_sample_omits_conditional_variables() {
        let s = settings("");
        let want = pairs(&[
            ("RC_NODE_NAME", "n1"),
            ("RC_DRY_RUN", "false"),
            ("RC_LOCK_KEY", "/cluster/clusterrebootd/lock"),
            ("RC_ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("RC_KILL_SWITCH_FILE", "/etc/clusterrebootd/disable"),
            ("RC_CLUSTER_FORBID_IF_ONLY_FALLBACK_LEFT", "false"),
            ("RC_MAX_CONCURRENT_REBOOTS", "1"),
        ]);
        assert_eq!(base_env(&s, &EnvExtras::default()), want);
    }

    #[test]
    fn dry_run_from_config_and_fraction_formats() {
        let s = settings("dry_run: true\ncluster_policies: {min_healthy_fraction: 1}");
        let env = base_env(&s, &EnvExtras::default());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RC_DRY_RUN"), Some("true"));
        assert_eq!(get("RC_CLUSTER_MIN_HEALTHY_FRACTION"), Some("1"));
        let s = settings("cluster_policies: {min_healthy_fraction: 0.3333333333333333}");
        let env = base_env(&s, &EnvExtras::default());
        let got = env
            .iter()
            .find(|(n, _)| n == "RC_CLUSTER_MIN_HEALTHY_FRACTION")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some("0.3333333333333333"));
    }

    #[test]
    fn call_env_values() {
        let c = CallEnv {
            phase: Phase::PostLock,
            lock_enabled: true,
            lock_held: true,
            lock_attempts: 3,
            state: "HealthPost".into(),
        };
        assert_eq!(
            c.to_env(),
            pairs(&[
                ("RC_PHASE", "post-lock"),
                ("RC_LOCK_ENABLED", "true"),
                ("RC_LOCK_HELD", "true"),
                ("RC_LOCK_ATTEMPTS", "3"),
                ("RC_STATE", "HealthPost"),
            ])
        );
        let c = CallEnv {
            phase: Phase::Heartbeat,
            lock_enabled: false,
            lock_held: false,
            lock_attempts: 0,
            state: "Idle".into(),
        };
        assert_eq!(c.to_env()[0].1, "heartbeat");
        assert_eq!(c.to_env()[1].1, "false");
        assert_eq!(c.to_env()[3].1, "0");
    }
}
