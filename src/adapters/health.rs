//! The operator health script (SPEC §6.1): "can the cluster afford to lose this node now?"
//!
//! Contract: the executable at an absolute path runs with **no arguments**, the daemon's
//! environment plus the base `RC_*` variables plus the per-call ones
//! ([`super::env::CallEnv`]), stdin `/dev/null`, output captured (bounded). Exit 0 → passed;
//! any other exit → blocked (with the exit code and the first output line as evidence); a
//! timeout (the whole process group is killed), a start failure or death by a signal → error,
//! which blocks too and is published as unhealthy.
//!
//! Runs never overlap: the heartbeat and the machine share one [`HealthRunner`], whose mutex
//! serialises them (as the Go daemon's did), because operators' scripts are rarely written to
//! run twice at once. The same mutex guards the configuration, so a reload
//! ([`HealthRunner::reconfigure`]) waits for the run in progress instead of racing it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Mutex;

use super::env::CallEnv;
use super::go_duration;
use super::process::{self, CommandSpec, Termination};
use crate::fsm::HealthResult;

/// What the runner needs to run the script; hot-reloadable as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Absolute path of the script.
    pub script: PathBuf,
    /// Kill the script's process group after this long.
    pub timeout: Duration,
    /// The base `RC_*` environment ([`super::env::base_env`]).
    pub base_env: Vec<(String, String)>,
}

/// Runs the health script, one run at a time. Share it (e.g. in an `Arc`) between the
/// heartbeat and the driver.
#[derive(Debug)]
pub struct HealthRunner {
    config: Mutex<HealthConfig>,
}

/// One run's result and evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The verdict handed to the machine.
    pub result: HealthResult,
    /// The exit code, when the script exited on its own.
    pub exit_code: Option<i32>,
    /// Trimmed, lossy-UTF-8 stdout (bounded).
    pub stdout: String,
    /// Trimmed, lossy-UTF-8 stderr (bounded).
    pub stderr: String,
    /// How long the run took (not counting the wait for a concurrent run).
    pub duration: Duration,
    /// The script could not be started because this daemon ran out of file descriptors,
    /// processes or memory (issue #20: 1100 idle metrics connections under a 1024-fd limit).
    /// That says nothing about the node's health: the result is still an error (this node
    /// does not reboot on it), but the driver does not publish it to peers as unhealthy.
    pub daemon_fault: bool,
}

impl HealthRunner {
    /// A runner for `config`.
    pub fn new(config: HealthConfig) -> Self {
        HealthRunner {
            config: Mutex::new(config),
        }
    }

    /// Replaces the configuration (SIGHUP reload); waits for a run in progress to finish.
    pub async fn reconfigure(&self, config: HealthConfig) {
        *self.config.lock().await = config;
    }

    /// Runs the script once for `call`, waiting first for any run in progress.
    pub async fn run(&self, call: &CallEnv) -> HealthReport {
        let config = self.config.lock().await;
        run_script(&config, call).await
    }
}

fn error_report(detail: String) -> HealthReport {
    HealthReport {
        result: HealthResult::Error { detail },
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
        daemon_fault: false,
    }
}

async fn run_script(config: &HealthConfig, call: &CallEnv) -> HealthReport {
    if !config.script.is_absolute() {
        return error_report(format!(
            "health script path must be absolute: {}",
            config.script.display()
        ));
    }
    let mut env = config.base_env.clone();
    env.extend(call.to_env());
    let spec = CommandSpec {
        argv: vec![config.script.to_string_lossy().into_owned()],
        env,
        timeout: Some(config.timeout),
    };
    let out = match process::run(&spec).await {
        Ok(out) => out,
        Err(e) if e.is_resource_exhaustion() => {
            return HealthReport {
                daemon_fault: true,
                ..error_report(format!(
                    "health script execution failed: {e} (this daemon is out of file descriptors, processes or memory; not a verdict on the node's health)"
                ))
            };
        }
        Err(e) => return error_report(format!("health script execution failed: {e}")),
    };
    let (result, exit_code) = match out.termination {
        Termination::Exited(0) => (HealthResult::Passed, Some(0)),
        Termination::Exited(code) => (
            HealthResult::Blocked {
                exit_code: code,
                first_line: out.first_line(),
            },
            Some(code),
        ),
        Termination::Signaled(sig) => (
            HealthResult::Error {
                detail: format!("health script killed by signal {sig}"),
            },
            None,
        ),
        Termination::TimedOut => (
            HealthResult::Error {
                detail: format!(
                    "health script timed out after {}",
                    go_duration(config.timeout)
                ),
            },
            None,
        ),
    };
    let note = |text: String, truncated: bool| {
        if truncated {
            format!(
                "{text} [output truncated at {} bytes]",
                process::OUTPUT_LIMIT
            )
        } else {
            text
        }
    };
    HealthReport {
        result,
        exit_code,
        stdout: note(out.stdout_text(), out.stdout_truncated),
        stderr: note(out.stderr_text(), out.stderr_truncated),
        duration: out.duration,
        daemon_fault: false,
    }
}

/// The Go health block (`writeHealthResult`, docs/GO-COMPAT.md §4), every line ending in `\n`:
/// ```text
/// <label>: exit=<code> duration=<D>
///   stdout: <trimmed>     (if non-empty)
///   stderr: <trimmed>     (if non-empty)
/// ```
/// `label` is e.g. `pre-lock health`. Without an exit code (timeout, signal, start failure)
/// `exit=-1` is printed, Go's `ExitCode()` for a process that did not exit.
pub fn format_report(label: &str, r: &HealthReport) -> String {
    let mut s = format!(
        "{label}: exit={} duration={}\n",
        r.exit_code.unwrap_or(-1),
        go_duration(r.duration)
    );
    if !r.stdout.trim().is_empty() {
        s.push_str(&format!("  stdout: {}\n", r.stdout.trim()));
    }
    if !r.stderr.trim().is_empty() {
        s.push_str(&format!("  stderr: {}\n", r.stderr.trim()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::process::tests::write_script;
    use crate::fsm::Phase;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Instant;

    fn call() -> CallEnv {
        CallEnv {
            phase: Phase::PreLock,
            lock_enabled: true,
            lock_held: false,
            lock_attempts: 0,
            state: "HealthPre".into(),
        }
    }

    fn runner(script: &Path, timeout: Duration) -> HealthRunner {
        HealthRunner::new(HealthConfig {
            script: script.into(),
            timeout,
            base_env: vec![
                ("RC_NODE_NAME".into(), "n1".into()),
                ("RC_DRY_RUN".into(), "false".into()),
            ],
        })
    }

    #[tokio::test]
    async fn pass_and_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = write_script(dir.path(), "ok", "echo all good; exit 0");
        let r = runner(&ok, Duration::from_secs(10)).run(&call()).await;
        assert_eq!(r.result, HealthResult::Passed);
        assert_eq!((r.exit_code, r.stdout.as_str()), (Some(0), "all good"));

        let block = write_script(
            dir.path(),
            "block",
            "echo 'replica lag 30s' >&2; echo; echo '  quorum would break  '; exit 3",
        );
        let r = runner(&block, Duration::from_secs(10)).run(&call()).await;
        assert_eq!(
            r.result,
            HealthResult::Blocked {
                exit_code: 3,
                first_line: "quorum would break".into()
            }
        );
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.stderr, "replica lag 30s");
    }

    #[tokio::test]
    async fn timeout_is_an_error_and_kills_the_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slow = write_script(dir.path(), "slow", "sleep 1000 & sleep 1000");
        let t0 = Instant::now();
        let r = runner(&slow, Duration::from_millis(300)).run(&call()).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!(
            r.result,
            HealthResult::Error {
                detail: "health script timed out after 300ms".into()
            }
        );
        assert_eq!(r.exit_code, None);
    }

    #[tokio::test]
    async fn exec_failures_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = runner(&dir.path().join("missing"), Duration::from_secs(5))
            .run(&call())
            .await;
        match r.result {
            HealthResult::Error { detail } => {
                assert!(
                    detail.starts_with("health script execution failed: "),
                    "{detail}"
                )
            }
            other => panic!("expected an error, got {other:?}"),
        }
        // Present but not executable.
        let noexec = dir.path().join("noexec");
        std::fs::write(&noexec, "#!/bin/sh\nexit 0\n").expect("write");
        let r = runner(&noexec, Duration::from_secs(5)).run(&call()).await;
        assert!(
            matches!(&r.result, HealthResult::Error { detail } if detail.starts_with("health script execution failed: ")),
            "{:?}",
            r.result
        );
        // Relative path: refused without running anything.
        let r = runner(Path::new("health.sh"), Duration::from_secs(5))
            .run(&call())
            .await;
        assert_eq!(
            r.result,
            HealthResult::Error {
                detail: "health script path must be absolute: health.sh".into()
            }
        );
    }

    #[tokio::test]
    async fn the_script_sees_daemon_env_base_env_and_call_env_and_no_args() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("env");
        let script = write_script(
            dir.path(),
            "dump",
            &format!("env > {0}; echo \"ARGC=$#\" >> {0}", dump.display()),
        );
        let r = runner(&script, Duration::from_secs(10))
            .run(&CallEnv {
                phase: Phase::PostLock,
                lock_enabled: true,
                lock_held: true,
                lock_attempts: 2,
                state: "HealthPost".into(),
            })
            .await;
        assert_eq!(r.result, HealthResult::Passed);
        let text = std::fs::read_to_string(&dump).expect("env dump");
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "RC_NODE_NAME=n1",
            "RC_DRY_RUN=false",
            "RC_PHASE=post-lock",
            "RC_LOCK_ENABLED=true",
            "RC_LOCK_HELD=true",
            "RC_LOCK_ATTEMPTS=2",
            "RC_STATE=HealthPost",
            "ARGC=0",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        assert!(
            lines.iter().any(|l| l.starts_with("PATH=")),
            "daemon environment not inherited:\n{text}"
        );
    }

    #[tokio::test]
    async fn concurrent_runs_never_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let script = write_script(
            dir.path(),
            "serial",
            &format!(
                "echo \"start $RC_PHASE\" >> {0}; sleep 0.2; echo \"end $RC_PHASE\" >> {0}",
                log.display()
            ),
        );
        let r = Arc::new(runner(&script, Duration::from_secs(10)));
        let mut heartbeat = call();
        heartbeat.phase = Phase::Heartbeat;
        let (a, b, c) = tokio::join!(
            tokio::spawn({
                let r = Arc::clone(&r);
                async move { r.run(&call()).await }
            }),
            tokio::spawn({
                let r = Arc::clone(&r);
                async move { r.run(&heartbeat).await }
            }),
            tokio::spawn({
                let r = Arc::clone(&r);
                let mut c = call();
                c.phase = Phase::PostLock;
                async move { r.run(&c).await }
            }),
        );
        for res in [a, b, c] {
            assert_eq!(res.expect("join").result, HealthResult::Passed);
        }
        let text = std::fs::read_to_string(&log).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        for pair in lines.chunks(2) {
            let (s, e) = (pair[0], pair[1]);
            assert!(s.starts_with("start "), "interleaved:\n{text}");
            assert_eq!(e, s.replacen("start", "end", 1), "interleaved:\n{text}");
        }
    }

    #[tokio::test]
    async fn reconfigure_swaps_the_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = write_script(dir.path(), "ok", "exit 0");
        let bad = write_script(dir.path(), "bad", "exit 4");
        let r = runner(&ok, Duration::from_secs(5));
        assert_eq!(r.run(&call()).await.result, HealthResult::Passed);
        r.reconfigure(HealthConfig {
            script: bad,
            timeout: Duration::from_secs(5),
            base_env: vec![],
        })
        .await;
        assert!(matches!(
            r.run(&call()).await.result,
            HealthResult::Blocked { exit_code: 4, .. }
        ));
    }

    #[test]
    fn format_report_is_the_go_block() {
        let r = HealthReport {
            result: HealthResult::Blocked {
                exit_code: 2,
                first_line: "no".into(),
            },
            exit_code: Some(2),
            stdout: "no\nreally not".into(),
            stderr: String::new(),
            duration: Duration::from_millis(1234),
            daemon_fault: false,
        };
        assert_eq!(
            format_report("pre-lock health", &r),
            "pre-lock health: exit=2 duration=1.234s\n  stdout: no\nreally not\n"
        );
        let r = HealthReport {
            result: HealthResult::Error {
                detail: "health script timed out after 30s".into(),
            },
            exit_code: None,
            stdout: String::new(),
            stderr: " partial ".into(),
            duration: Duration::from_secs(30),
            daemon_fault: false,
        };
        assert_eq!(
            format_report("post-lock health", &r),
            "post-lock health: exit=-1 duration=30s\n  stderr: partial\n"
        );
    }
}
