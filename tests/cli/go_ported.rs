//! The Go project's own test cases (ActiDoo/clusterrebootd `*_test.go`), ported 1:1 where they
//! exercise the command line, the configuration or the windows, and run through this binary.
//! Which Go test maps to which Rust test (or why none applies) is the table in
//! `docs/GO-COMPAT.md` §13. Each case keeps the Go test's name, its configuration and its
//! assertions; where this daemon deliberately differs the case says so and checks our answer.

use std::path::Path;
use std::process::Command;

use super::{outcome, write};

#[path = "../support/etcd.rs"]
mod etcd;

// ------------------------------------------------------------------ pkg/config/config_test.go

/// One `validate-config` case: the Go test, its YAML, the exit code and what stderr names.
struct ConfigCase {
    go_test: &'static str,
    yaml: &'static str,
    code: i32,
    stderr_has: &'static [&'static str],
}

#[test]
fn go_config_test_cases() {
    let cases = [
        ConfigCase {
            go_test: "TestDecodeValidConfig",
            yaml: "node_name: node-1
reboot_required_detectors:
  - type: file
    path: /var/run/reboot-required
health_script: /usr/local/bin/health.sh
health_timeout_sec: 45
check_interval_sec: 75
lock_ttl_sec: 120
etcd_endpoints: [\"https://127.0.0.1:2379\"]
reboot_command: [\"/sbin/shutdown\",\"-r\",\"now\"]
",
            code: 0,
            stderr_has: &[],
        },
        // Go: node_name is also required; here it falls back to the host name (deliberate,
        // GO-COMPAT §11), so three problems are named, all in one pass.
        ConfigCase {
            go_test: "TestValidateDetectsMissingFields",
            yaml: "node_name: \"\"
reboot_required_detectors: []
health_script: \"\"
etcd_endpoints: []
",
            code: 2,
            stderr_has: &[
                "reboot_required_detectors",
                "health_script",
                "etcd_endpoints",
            ],
        },
        ConfigCase {
            go_test: "TestDetectorValidation",
            yaml: "node_name: node-1
reboot_required_detectors: [{type: command}]
health_script: /bin/true
etcd_endpoints: [\"https://127.0.0.1:2379\"]
reboot_command: [/sbin/shutdown, -r, now]
lock_ttl_sec: 120
health_timeout_sec: 30
check_interval_sec: 30
backoff_min_sec: 5
backoff_max_sec: 60
lock_key: /cluster/clusterrebootd/lock
",
            code: 2,
            stderr_has: &["reboot_required_detectors[0]"],
        },
        ConfigCase {
            go_test: "TestValidateRejectsInvalidHealthPublishInterval",
            yaml: "node_name: node-1
reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]
health_script: /bin/true
etcd_endpoints: [\"https://127.0.0.1:2379\"]
reboot_command: [/sbin/shutdown, -r, now]
lock_ttl_sec: 120
health_timeout_sec: 30
health_publish_interval_sec: -5
check_interval_sec: 30
backoff_min_sec: 5
backoff_max_sec: 60
lock_key: /cluster/clusterrebootd/lock
",
            code: 2,
            stderr_has: &["health_publish_interval_sec"],
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for case in cases {
        let c = write(dir.path(), "config.yaml", case.yaml.as_bytes());
        let (code, out, err) = outcome(&["validate-config", "--config", &c]);
        assert_eq!(code, case.code, "{}: {out}{err}", case.go_test);
        for needle in case.stderr_has {
            assert!(
                err.contains(needle),
                "{}: {needle:?} not in {err}",
                case.go_test
            );
        }
        if case.code == 0 {
            assert!(
                out.contains(&format!("configuration at {c} is valid")),
                "{}: {out}",
                case.go_test
            );
        }
    }
}

// ---------------------------------------------------------------- pkg/windows/windows_test.go

/// One `windows --at` case: the Go test, the allow and deny lists, the instant (UTC, as the
/// Go test's `time.Date(..., time.UTC)`) and the verdict with the rule Go matched.
struct WindowCase {
    go_test: &'static str,
    allow: &'static [&'static str],
    deny: &'static [&'static str],
    at: &'static str,
    allowed: bool,
    rule: Option<&'static str>,
}

fn yaml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

#[test]
fn go_windows_test_cases() {
    let cases = [
        WindowCase {
            go_test: "TestEvaluatorMatchesDenyWindow",
            allow: &[],
            deny: &["Mon 00:00-Tue 00:00"],
            at: "2024-03-04T12:00:00Z", // Monday
            allowed: false,
            rule: Some("Mon 00:00-Tue 00:00"),
        },
        WindowCase {
            go_test: "TestEvaluatorRequiresAllowMatch",
            allow: &["Tue 22:00-23:00"],
            deny: &[],
            at: "2024-03-04T10:00:00Z", // Monday
            allowed: false,
            rule: None,
        },
        WindowCase {
            go_test: "TestEvaluatorMatchesAllowWindow",
            allow: &["Tue 22:00-23:00"],
            deny: &[],
            at: "2024-03-05T22:30:00Z", // Tuesday
            allowed: true,
            rule: Some("Tue 22:00-23:00"),
        },
        WindowCase {
            go_test: "TestEvaluatorCrossMidnight (Sunday 23:30)",
            allow: &[],
            deny: &["* 23:00-06:00"],
            at: "2024-03-03T23:30:00Z", // Sunday
            allowed: false,
            rule: Some("* 23:00-06:00"),
        },
        WindowCase {
            go_test: "TestEvaluatorCrossMidnight (Monday 07:00)",
            allow: &[],
            deny: &["* 23:00-06:00"],
            at: "2024-03-04T07:00:00Z", // Monday 07:00
            allowed: true,
            rule: None,
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for case in cases {
        // A Go configuration: no `timezone` key; the process's local zone is UTC (`TZ`), as
        // the Go daemon evaluates in local time.
        let c = write(
            dir.path(),
            "config.yaml",
            format!(
                "{}windows:\n  allow: {}\n  deny: {}\n",
                super::VALID,
                yaml_list(case.allow),
                yaml_list(case.deny)
            )
            .as_bytes(),
        );
        let o = Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
            .args(["windows", "--config", &c, "--at", case.at, "--json"])
            .env("TZ", "UTC")
            .output()
            .expect("spawn");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}: {out}", case.go_test);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["allowed"], case.allowed, "{}: {v}", case.go_test);
        if !case.allowed && case.rule.is_none() {
            assert_eq!(
                v["reason"], "outside configured allow windows",
                "{}: {v}",
                case.go_test
            );
        }
        if let Some(rule) = case.rule {
            let named = if case.allowed {
                v["rule"].clone()
            } else {
                v["reason"].clone()
            };
            assert!(
                named.as_str().is_some_and(|s| s.contains(rule)),
                "{}: {rule:?} not named in {v}",
                case.go_test
            );
        }
    }

    // TestEvaluatorRejectsInvalidExpressions: Go fails when the runner is built (exit 1 at
    // start); here already `validate-config` says so (exit 2, deliberate, GO-COMPAT §11).
    let c = write(
        dir.path(),
        "config.yaml",
        format!("{}windows: {{allow: ['not-a-window']}}\n", super::VALID).as_bytes(),
    );
    let (code, _, err) = outcome(&["validate-config", "--config", &c]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("windows.allow[0]"), "{err}");
}

// ------------------------------------------------------- cmd/clusterrebootd/main_test.go

/// The Go tests' node: `node-a`, a file detector, `/bin/true` as health script (or a script
/// that exits 1), a kill-switch path, the default lock key with TTL 120. Only `state_dir` and
/// `run_dir` are added (this daemon keeps a journal; the defaults are under `/var`).
fn go_main_config(dir: &Path, endpoint: &str, health: &str, extra: &str) -> String {
    format!(
        "
node_name: node-a
reboot_required_detectors:
  - type: file
    path: {marker}
health_script: {health}
etcd_endpoints:
  - {endpoint}
kill_switch_file: {kill}
lock_key: /cluster/clusterrebootd/lock
lock_ttl_sec: 120
state_dir: {state}
run_dir: {run}
{extra}",
        marker = dir.join("reboot-required").display(),
        kill = dir.join("kill-switch").display(),
        state = dir.join("state").display(),
        run = dir.join("run").display(),
    )
}

/// One `cmd/clusterrebootd` case.
struct MainCase {
    go_test: &'static str,
    args: &'static [&'static str],
    /// The reboot-required marker exists.
    marker: bool,
    /// The health script exits 1 instead of `/bin/true`.
    unhealthy: bool,
    /// The kill-switch file exists.
    kill_switch: bool,
    /// Another node holds the lock (the key a Go daemon's mutex writes).
    lock_held: bool,
    /// Further config lines.
    extra: &'static str,
    code: i32,
    stdout_has: &'static [&'static str],
    stdout_lacks: &'static [&'static str],
    stderr_has: &'static [&'static str],
}

const BASE: MainCase = MainCase {
    go_test: "",
    args: &[],
    marker: false,
    unhealthy: false,
    kill_switch: false,
    lock_held: false,
    extra: "",
    code: 0,
    stdout_has: &[],
    stdout_lacks: &[],
    stderr_has: &[],
};

#[test]
fn go_main_test_cases() {
    let cases = [
        MainCase {
            go_test: "TestCommandRunWithoutReboot",
            args: &["run", "--once"],
            stdout_has: &["outcome: no_action - no detectors require a reboot"],
            stdout_lacks: &["planned reboot command"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandRunDryRunReady",
            args: &["run", "--dry-run", "--once"],
            marker: true,
            stdout_has: &[
                "outcome: ready",
                "dry-run enabled",
                "planned reboot command",
            ],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandRunOnceHealthBlockedExitCode",
            args: &["run", "--once"],
            marker: true,
            unhealthy: true,
            code: 3,
            stdout_has: &[
                "outcome: health_blocked - health script blocked reboot before lock (exit 1)",
            ],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandRunOnceKillSwitchExitCode",
            args: &["run", "--once"],
            marker: true,
            kill_switch: true,
            code: 5,
            stdout_has: &["outcome: kill_switch_active"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandRunOnceLockUnavailableExitCode",
            args: &["run", "--once"],
            marker: true,
            lock_held: true,
            extra: "backoff_min_sec: 1\nbackoff_max_sec: 1\n",
            code: 4,
            stdout_has: &["outcome: lock_unavailable - failed to acquire lock after 5 attempts\n"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandRunWithMetricsEnabled",
            args: &["run", "--dry-run", "--once"],
            extra: "metrics:\n  enabled: true\n  listen: 127.0.0.1:0\n",
            stderr_has: &["metrics server listening on"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusNoReboot",
            args: &["status"],
            stdout_has: &["status evaluation for node node-a", "outcome: no_action"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusReady",
            args: &["status"],
            marker: true,
            stdout_has: &["outcome: ready", "dry-run enabled"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusLockUnavailable",
            args: &["status"],
            marker: true,
            lock_held: true,
            code: 4,
            // Go: "failed to acquire lock after 1 attempts"; ours names the holder (§11).
            stdout_has: &[
                "outcome: lock_unavailable - cannot join the slot queue: all 1 reboot slot(s) held by lock-holder\n",
            ],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusHealthBlockedExitCode",
            args: &["status"],
            marker: true,
            unhealthy: true,
            code: 3,
            stdout_has: &["outcome: health_blocked"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusKillSwitchExitCode",
            args: &["status"],
            marker: true,
            kill_switch: true,
            code: 5,
            stdout_has: &["outcome: kill_switch_active"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusSkipHealth",
            args: &["status", "--skip-health"],
            marker: true,
            unhealthy: true,
            stdout_has: &["outcome: ready", "health script skipped"],
            stderr_has: &["skipping health script execution (--skip-health)"],
            ..BASE
        },
        MainCase {
            go_test: "TestCommandStatusSkipLock",
            args: &["status", "--skip-lock"],
            marker: true,
            lock_held: true,
            stdout_has: &[
                "outcome: lock_skipped",
                "lock acquisition skipped",
                "planned reboot command",
            ],
            stderr_has: &["skipping lock acquisition (--skip-lock)"],
            ..BASE
        },
    ];
    let e = etcd::Etcd::start(1);
    let endpoint = e.endpoints()[0].clone();
    let holder = "/cluster/clusterrebootd/lock/694d77b8e4a3c40b";
    for case in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let health = if case.unhealthy {
            let p = write(d, "health.sh", b"#!/bin/sh\nexit 1\n");
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            p
        } else {
            "/bin/true".to_string()
        };
        let c = write(
            d,
            "config.yaml",
            go_main_config(d, &endpoint, &health, case.extra).as_bytes(),
        );
        if case.marker {
            write(d, "reboot-required", b"1");
        }
        if case.kill_switch {
            write(d, "kill-switch", b"");
        }
        if case.lock_held {
            let (ok, out) = e.etcdctl(
                None,
                &[
                    "put",
                    holder,
                    r#"{"node":"lock-holder","pid":1,"acquired_at":"2024-03-04T10:00:00Z"}"#,
                ],
            );
            assert!(ok, "etcdctl put: {out}");
        }
        let mut args: Vec<&str> = case.args.to_vec();
        args.extend(["--config", c.as_str()]);
        let (code, out, err) = outcome(&args);
        let what = format!("{}\n--- stdout\n{out}\n--- stderr\n{err}", case.go_test);
        assert_eq!(code, case.code, "{what}");
        for needle in case.stdout_has {
            assert!(out.contains(needle), "{needle:?} missing: {what}");
        }
        for needle in case.stdout_lacks {
            assert!(!out.contains(needle), "{needle:?} unexpected: {what}");
        }
        for needle in case.stderr_has {
            assert!(err.contains(needle), "{needle:?} missing: {what}");
        }
        // Clean slate for the next case: the holder's key and every record this one left.
        let (ok, out) = e.etcdctl(None, &["del", "--prefix", "/"]);
        assert!(ok, "etcdctl del: {out}");
    }
}

/// TestCommandSimulateWithFileDetector: `simulate` without etcd, before and after the marker.
#[test]
fn go_simulate_with_file_detector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let marker = d.join("reboot-required");
    let c = write(
        d,
        "config.yaml",
        format!(
            "
node_name: node-a
reboot_required_detectors:
  - type: file
    path: {}
health_script: /bin/true
etcd_endpoints:
  - 127.0.0.1:2379
",
            marker.display()
        )
        .as_bytes(),
    );
    let (code, out, err) = outcome(&["simulate", "--config", &c]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "detector evaluations:",
        "clear",
        "overall reboot required: false",
    ] {
        assert!(out.contains(needle), "{needle:?}: {out}");
    }
    std::fs::write(&marker, "1").expect("marker");
    let (code, out, err) = outcome(&["simulate", "--config", &c]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in ["reboot-required", "overall reboot required: true"] {
        assert!(out.contains(needle), "{needle:?}: {out}");
    }
}

// ------------------------------------------------- pkg/orchestrator/runner_test.go (binary)

/// One `pkg/orchestrator` runner case, through `run --once` against a real etcd. Go's runner
/// tests use fakes for the detectors, the health script and the locker; here they are real
/// files and scripts that behave like those fakes (`D` in a script is the node's directory).
struct RunnerCase {
    go_test: &'static str,
    args: &'static [&'static str],
    /// The reboot-required detectors (YAML list); `{D}` is the node's directory.
    detectors: &'static str,
    /// The health script's body after `#!/bin/sh`.
    health: &'static str,
    /// Further config lines (`{D}` is the node's directory, `{WINDOW}` a window that is closed
    /// now).
    extra: &'static str,
    /// Keys written before the run (`{NOW}` is the current time, RFC 3339).
    puts: &'static [(&'static str, &'static str)],
    code: i32,
    stdout_has: &'static [&'static str],
    stdout_lacks: &'static [&'static str],
    /// `(file in D, text)` that must be in that file after the run.
    file_has: &'static [(&'static str, &'static str)],
    /// Files in D that must not exist after the run.
    files_absent: &'static [&'static str],
}

const FILE_DETECTOR: &str = "[{type: file, path: '{D}/reboot-required'}]";
const LOGGING_HEALTH: &str = "echo \"$RC_PHASE held=$RC_LOCK_HELD attempts=$RC_LOCK_ATTEMPTS enabled=$RC_LOCK_ENABLED\" >> {D}/health.log\nexit 0\n";
/// Passes on its first run, fails on the second: the fake whose pre-lock step passes and whose
/// post-lock step blocks.
const HEALTH_FAILS_SECOND: &str = "n=$(cat {D}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {D}/count\n[ $n -ge 2 ] && exit 1\nexit 0\n";

const RUNNER: RunnerCase = RunnerCase {
    go_test: "",
    args: &["run", "--once"],
    detectors: FILE_DETECTOR,
    health: LOGGING_HEALTH,
    extra: "",
    puts: &[],
    code: 0,
    stdout_has: &[],
    stdout_lacks: &[],
    file_has: &[],
    files_absent: &[],
};

/// A window of one minute twelve hours from now (UTC): closed now, whatever the time.
fn closed_window() -> String {
    let start = jiff::Timestamp::now().as_second() + 12 * 3600;
    let hm = |secs: i64| format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60);
    format!("* {}-{}", hm(start), hm(start + 60))
}

#[test]
fn go_runner_test_cases() {
    let cases = [
        RunnerCase {
            go_test: "TestRunnerBlockedByDenyWindow",
            extra: "windows: {deny: ['* 0:00-0:00']}\n",
            stdout_has: &["outcome: window_denied - blocked by deny window \"* 0:00-0:00\""],
            stdout_lacks: &["lock acquired"],
            files_absent: &["health.log"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerOutsideAllowWindow",
            extra: "windows: {allow: ['{WINDOW}']}\n",
            stdout_has: &["outcome: window_outside_allow - outside configured allow windows"],
            stdout_lacks: &["lock acquired"],
            files_absent: &["health.log"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerWithinAllowWindow",
            extra: "windows: {allow: ['* 0:00-0:00']}\n",
            stdout_has: &[
                "lock acquired",
                "outcome: ready - reboot prerequisites satisfied",
                "ready outcome reached; run without --once to execute the reboot command",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerHealthEnvironmentIncludesLockContext",
            file_has: &[
                ("health.log", "pre-lock held=false attempts=0 enabled=true"),
                ("health.log", "post-lock held=true attempts=1 enabled=true"),
            ],
            stdout_has: &["outcome: ready"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerExpandsRebootCommandPlaceholders",
            args: &["run", "--once", "--dry-run"],
            extra: "reboot_command: [/sbin/shutdown, -r, now, 'coordinated reboot for ${RC_NODE_NAME}']\n",
            stdout_has: &[
                "planned reboot command: /sbin/shutdown -r now coordinated reboot for node-a",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerBlocksWhenClusterHealthReportsOthersUnhealthy",
            puts: &[(
                "/cluster_health/node-b",
                r#"{"node":"node-b","healthy":false,"stage":"pre-lock","reason":"pre-lock exit 1","reported_at":"{NOW}"}"#,
            )],
            code: 3,
            stdout_has: &[
                "cluster health blockers:\n  - node-b (stage=pre-lock, reason=pre-lock exit 1, reported_at=",
                "outcome: health_blocked - cluster health blocked by unhealthy nodes: node-b (pre-lock, pre-lock exit 1)\n",
            ],
            stdout_lacks: &["lock acquired"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerBlocksWhenMinHealthyAbsoluteViolated",
            extra: "cluster_policies: {min_healthy_absolute: 3}\n",
            puts: &[
                (
                    "/cluster_health/node-b",
                    r#"{"node":"node-b","healthy":true,"reported_at":"{NOW}"}"#,
                ),
                (
                    "/cluster_health/node-c",
                    r#"{"node":"node-c","healthy":false,"stage":"heartbeat","reason":"heartbeat exit 1","reported_at":"{NOW}"}"#,
                ),
            ],
            code: 3,
            // Go: "healthy nodes 2 below minimum 3" — it counted the node about to reboot as
            // healthy; here it counts as down (deliberate, §11).
            stdout_has: &[
                "outcome: health_blocked",
                "healthy nodes 1 below minimum 3 (this node counts as down)",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerBlocksWhenMinHealthyFractionViolated",
            extra: "cluster_policies: {min_healthy_fraction: 0.75}\n",
            puts: &[
                (
                    "/cluster_health/node-b",
                    r#"{"node":"node-b","healthy":true,"reported_at":"{NOW}"}"#,
                ),
                (
                    "/cluster_health/node-c",
                    r#"{"node":"node-c","healthy":false,"stage":"heartbeat","reason":"heartbeat exit 1","reported_at":"{NOW}"}"#,
                ),
                (
                    "/cluster_health/node-d",
                    r#"{"node":"node-d","healthy":false,"stage":"heartbeat","reason":"heartbeat exit 1","reported_at":"{NOW}"}"#,
                ),
            ],
            code: 3,
            stdout_has: &["outcome: health_blocked", "0.75"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerBlocksWhenOnlyFallbackNodesRemainHealthy",
            extra: "cluster_policies: {forbid_if_only_fallback_left: true, fallback_nodes: [node-a, node-b]}\n",
            puts: &[(
                "/cluster_health/node-b",
                r#"{"node":"node-b","healthy":true,"reported_at":"{NOW}"}"#,
            )],
            code: 3,
            // Go: "only fallback nodes remain healthy" (wording, §11 open).
            stdout_has: &[
                "outcome: health_blocked",
                "only fallback nodes would remain healthy",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerIgnoresOwnClusterHealthRecord",
            puts: &[(
                "/cluster_health/node-a",
                r#"{"node":"node-a","healthy":false,"stage":"pre-lock","reason":"pre-lock exit 1","reported_at":"{NOW}"}"#,
            )],
            stdout_has: &["outcome: ready"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerCooldownBlocksReboot",
            extra: "min_reboot_interval_sec: 600\n",
            puts: &[(
                "/reboot_cooldown",
                r#"{"node":"node-b","started_at":"{NOW}","duration_sec":600}"#,
            )],
            stdout_has: &[
                "outcome: cooldown_active - reboot cooldown active (remaining 9m",
                "s, started by node-b)\n",
            ],
            stdout_lacks: &["lock acquired"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerRecheckCleared",
            // Requires a reboot on its first run (any non-zero exit), not on the second.
            detectors: "[{type: command, cmd: ['{D}/detector.sh']}]",
            stdout_has: &["lock acquired", "outcome: recheck_cleared"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerHealthBlocksAfterLock",
            health: HEALTH_FAILS_SECOND,
            code: 3,
            stdout_has: &[
                "lock acquired",
                "outcome: health_blocked - health script blocked reboot under lock (exit 1)",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerKillSwitchAfterLock",
            // The kill switch appears while the node takes the lock (here: its pre-lock
            // health run creates it).
            health: "touch {D}/kill-switch\nexit 0\n",
            code: 5,
            stdout_has: &[
                "outcome: kill_switch_active - kill switch {D}/kill-switch present after lock\n",
            ],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerHealthError (deliberate: exit 3, Go 1)",
            health: "sleep 5\nexit 0\n",
            extra: "health_timeout_sec: 1\n",
            code: 3,
            stdout_has: &["outcome: health_blocked"],
            ..RUNNER
        },
        RunnerCase {
            go_test: "TestRunnerDetectorError (deliberate: exit 6, Go 1)",
            detectors: "[{type: command, cmd: ['{D}/no-such-detector']}]",
            code: 6,
            ..RUNNER
        },
    ];
    let e = etcd::Etcd::start(1);
    let endpoint = e.endpoints()[0].clone();
    let window = closed_window();
    let mut failures = Vec::new();
    for case in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ds = d.display().to_string();
        let exe = |name: &str, body: &str| {
            let p = write(d, name, format!("#!/bin/sh\n{body}").as_bytes());
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            p
        };
        let health = exe("health.sh", &case.health.replace("{D}", &ds));
        exe(
            "detector.sh",
            &"n=$(cat {D}/dcount 2>/dev/null || echo 0); n=$((n+1)); echo $n > {D}/dcount\n[ $n -ge 2 ] && exit 0\nexit 1\n"
                .replace("{D}", &ds),
        );
        write(d, "reboot-required", b"1");
        let config = format!(
            "
node_name: node-a
reboot_required_detectors: {detectors}
health_script: {health}
etcd_endpoints:
  - {endpoint}
kill_switch_file: {ds}/kill-switch
lock_key: /cluster/clusterrebootd/lock
lock_ttl_sec: 120
state_dir: {ds}/state
run_dir: {ds}/run
{extra}",
            detectors = case.detectors.replace("{D}", &ds),
            extra = case.extra.replace("{D}", &ds).replace("{WINDOW}", &window),
        );
        let c = write(d, "config.yaml", config.as_bytes());
        let now = jiff::Timestamp::now().to_string();
        for (key, value) in case.puts {
            let (ok, out) = e.etcdctl(None, &["put", key, &value.replace("{NOW}", &now)]);
            assert!(ok, "etcdctl put: {out}");
        }
        let mut args: Vec<&str> = case.args.to_vec();
        args.extend(["--config", c.as_str()]);
        let o = Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
            .args(&args)
            .env("TZ", "UTC")
            .output()
            .expect("spawn");
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        let what = format!("{}\n--- stdout\n{out}\n--- stderr\n{err}", case.go_test);
        let mut wrong = Vec::new();
        if o.status.code() != Some(case.code) {
            wrong.push(format!("exit {:?}, want {}", o.status.code(), case.code));
        }
        for needle in case.stdout_has {
            if !out.contains(&needle.replace("{D}", &ds)) {
                wrong.push(format!("{needle:?} missing"));
            }
        }
        for needle in case.stdout_lacks {
            if out.contains(needle) {
                wrong.push(format!("{needle:?} unexpected"));
            }
        }
        for (file, needle) in case.file_has {
            let text = std::fs::read_to_string(d.join(file)).unwrap_or_default();
            if !text.contains(needle) {
                wrong.push(format!("{needle:?} not in {file}: {text}"));
            }
        }
        for file in case.files_absent {
            if d.join(file).exists() {
                wrong.push(format!("{file} exists"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n{what}", case.go_test, wrong.join("; ")));
        }
        let (ok, out) = e.etcdctl(None, &["del", "--prefix", "/"]);
        assert!(ok, "etcdctl del: {out}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
