//! The one way the daemon runs an external command.
//!
//! Detectors, the health script, hooks and the reboot command are all operator-supplied
//! programs; any of them may hang, fork helpers, print megabytes or emit invalid UTF-8. Running
//! them in one place makes the safety rules hold everywhere:
//! - argv is executed directly, never through a shell;
//! - stdin is `/dev/null`, the environment is inherited plus [`CommandSpec::env`];
//! - the child leads its own process group, so a timeout (or dropping the future) kills the
//!   **whole group** with SIGKILL, grandchildren included;
//! - when the command finishes, whatever it left running in its group is killed too: a run
//!   leaves nothing behind (a command that must start something long-lived should hand it to
//!   the service manager, e.g. `systemd-run`);
//! - each output stream keeps at most [`OUTPUT_LIMIT`] bytes; the rest is read and discarded so
//!   the child never blocks on a full pipe, and the cut is flagged;
//! - after the command has ended, the pipe readers get [`READ_GRACE`] to reach end-of-file, so a
//!   process that escaped the group (`setsid`) and kept the pipes open cannot hang the daemon.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Bytes kept per output stream: enough for any diagnostic, bounded so a runaway script cannot
/// exhaust the daemon's memory (SPEC §6.1, §12.5).
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// How long the pipe readers may still run once the command has ended or been killed.
pub const READ_GRACE: Duration = Duration::from_millis(100);

/// Longest [`CommandOutput::first_line`], in characters: it ends up in one-line status reasons.
pub const FIRST_LINE_MAX: usize = 200;

/// What to run; built by each adapter from validated settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Variables added on top of the inherited environment (later entries win).
    pub env: Vec<(String, String)>,
    /// Kill the process group after this long (`None` = wait forever).
    pub timeout: Option<Duration>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// A signal (not ours) killed it.
    Signaled(i32),
    /// It outlived its timeout; its process group was killed.
    TimedOut,
}

/// Everything observed about one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// How it ended.
    pub termination: Termination,
    /// The first [`OUTPUT_LIMIT`] bytes of stdout.
    pub stdout: Vec<u8>,
    /// The first [`OUTPUT_LIMIT`] bytes of stderr.
    pub stderr: Vec<u8>,
    /// stdout had more than [`OUTPUT_LIMIT`] bytes.
    pub stdout_truncated: bool,
    /// stderr had more than [`OUTPUT_LIMIT`] bytes.
    pub stderr_truncated: bool,
    /// From spawn to return.
    pub duration: Duration,
}

impl CommandOutput {
    /// stdout as text for logs and reports: lossy UTF-8, trimmed, never fails.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }

    /// stderr as text for logs and reports: lossy UTF-8, trimmed, never fails.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    /// The line that best explains the result in one status line: the first non-empty line of
    /// stdout, else of stderr, at most [`FIRST_LINE_MAX`] characters.
    pub fn first_line(&self) -> String {
        let pick = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(FIRST_LINE_MAX).collect::<String>())
        };
        pick(&self.stdout)
            .or_else(|| pick(&self.stderr))
            .unwrap_or_default()
    }
}

/// Why a command could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The argv was empty: nothing to execute.
    #[error("empty command")]
    EmptyArgv,
    /// The program could not be started (missing, not executable, …).
    #[error("start {argv0}: {source}")]
    Spawn {
        /// The program.
        argv0: String,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting for the child or reading its output failed.
    #[error("{argv0}: {source}")]
    Io {
        /// The program.
        argv0: String,
        /// The OS error.
        source: io::Error,
    },
}

impl ProcessError {
    /// Whether the command could not be started because this process ran out of a resource
    /// (file descriptors, processes, memory): a fault of the daemon, not of the command.
    pub fn is_resource_exhaustion(&self) -> bool {
        match self {
            ProcessError::Spawn { source, .. } | ProcessError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::EAGAIN | nix::libc::ENOMEM)
            ),
            ProcessError::EmptyArgv => false,
        }
    }

    /// Short stable label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::EmptyArgv => "empty_argv",
            ProcessError::Spawn { .. } => "spawn",
            ProcessError::Io { .. } => "io",
        }
    }
}

/// Kills the child's process group when dropped (unless already done), so a cancelled run
/// leaves nothing behind. `kill_on_drop` alone would only reach the direct child.
struct GroupKiller {
    pgid: Option<Pid>,
}

impl GroupKiller {
    /// SIGKILLs the group once; later calls and the drop do nothing.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (group already gone) is the normal case after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One output stream as read so far.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Reads `reader` to end-of-file, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn drain<R: AsyncRead + Unpin>(reader: Option<R>, cap: &mut Capture) -> io::Result<()> {
    let Some(mut reader) = reader else {
        return Ok(());
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let room = OUTPUT_LIMIT.saturating_sub(cap.bytes.len());
        if n > room {
            cap.truncated = true;
        }
        cap.bytes.extend_from_slice(&buf[..n.min(room)]);
    }
}

fn termination(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(sig)) => Termination::Signaled(sig),
        // `wait` only reports terminated children, which have one or the other.
        (None, None) => Termination::Exited(-1),
    }
}

/// Runs `spec` to completion (or its timeout) and reports how it ended.
///
/// A non-zero exit, a signal or a timeout is a normal [`CommandOutput`]; only "could not run it
/// at all" is an error. Dropping the returned future kills the whole process group.
pub async fn run(spec: &CommandSpec) -> Result<CommandOutput, ProcessError> {
    let (program, args) = spec.argv.split_first().ok_or(ProcessError::EmptyArgv)?;
    let io_err = |source| ProcessError::Io {
        argv0: program.clone(),
        source,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        argv0: program.clone(),
        source,
    })?;
    // With process_group(0) the child's pid is its process group id.
    let mut killer = GroupKiller {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out = Capture::default();
    let mut err = Capture::default();

    let (status, read_result) = {
        let reading = async {
            let (a, b) = tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err));
            a.and(b)
        };
        tokio::pin!(reading);
        let waiting = async {
            match spec.timeout {
                Some(limit) => tokio::time::timeout(limit, child.wait()).await.ok(),
                None => Some(child.wait().await),
            }
        };
        tokio::pin!(waiting);

        // Read while waiting, so a chatty child never blocks on a full pipe.
        let mut read_result = None;
        let waited = loop {
            tokio::select! {
                r = &mut reading, if read_result.is_none() => read_result = Some(r),
                w = &mut waiting => break w,
            }
        };
        let status = match waited {
            Some(Ok(status)) => {
                killer.kill();
                Some(termination(status))
            }
            Some(Err(e)) => return Err(io_err(e)),
            None => {
                killer.kill();
                None
            }
        };
        if read_result.is_none() {
            read_result = tokio::time::timeout(READ_GRACE, &mut reading).await.ok();
        }
        (status, read_result)
    };

    let termination = match status {
        Some(t) => t,
        None => {
            // Timed out: the group is dead; reap the leader so no zombie is left.
            child.wait().await.map_err(io_err)?;
            Termination::TimedOut
        }
    };
    if let Some(Err(e)) = read_result {
        // A read error after a clean run would hide output; report it. After a timeout the
        // timeout is the more useful answer.
        if termination != Termination::TimedOut {
            return Err(io_err(e));
        }
    }
    Ok(CommandOutput {
        termination,
        stdout: out.bytes,
        stderr: err.bytes,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

    pub(crate) fn sh(script: &str) -> CommandSpec {
        CommandSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            timeout: Some(Duration::from_secs(20)),
        }
    }

    /// Writes an executable script without this process ever holding a write descriptor on it:
    /// a descriptor inherited by a concurrently forked child would make exec fail with ETXTBSY.
    pub(crate) fn write_script(
        dir: &std::path::Path,
        name: &str,
        body: &str,
    ) -> std::path::PathBuf {
        use std::io::Write;
        let path = dir.join(name);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&path)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
            .expect("write script");
        assert!(child.wait().expect("wait").success());
        path
    }

    /// Reaps every member of process group `pgid` (our children once orphaned, since the tests
    /// make this process a subreaper) and reports whether the group is gone within `limit`.
    /// A member still alive keeps the loop going until the deadline, so a leak fails the test.
    fn group_gone_within(pgid: i32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => continue,
                Err(Errno::ECHILD) => return kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH),
                Err(_) => return false,
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process group id a test script wrote (`echo $$`), waiting for the write.
    async fn pgid_from(path: &std::path::Path) -> i32 {
        loop {
            if let Ok(t) = std::fs::read_to_string(path)
                && t.ends_with('\n')
            {
                return t.trim().parse().expect("pid");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group_and_returns_promptly() {
        // Orphans must come back to us so we can reap them: PID 1 of a container may not, and a
        // zombie still counts as a group member for kill(-pgid, 0).
        nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pgid");
        let mut spec = sh(&format!(
            "sleep 1000 & echo $$ > {}; sleep 1000",
            pids.display()
        ));
        spec.timeout = Some(Duration::from_millis(300));
        let t0 = Instant::now();
        let out = run(&spec).await.expect("run");
        let took = t0.elapsed();
        assert_eq!(out.termination, Termination::TimedOut);
        assert!(took < Duration::from_secs(1), "took {took:?}");
        let pgid = pgid_from(&pids).await;
        assert!(
            group_gone_within(pgid, Duration::from_secs(2)),
            "process group {pgid} still has live members after the timeout"
        );
        assert_eq!(kill(Pid::from_raw(-pgid), None), Err(Errno::ESRCH));
    }

    #[tokio::test]
    async fn timeout_returns_even_if_an_escaped_process_holds_the_pipes() {
        // setsid moves the sleeper out of our group: we cannot kill it, but must not wait for
        // its EOF either. Give it a short life so the test leaves nothing behind for long.
        let mut spec = sh("setsid sleep 3 & sleep 1000");
        spec.timeout = Some(Duration::from_millis(200));
        let t0 = Instant::now();
        let out = run(&spec).await.expect("run");
        assert_eq!(out.termination, Termination::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn leftovers_in_the_group_are_killed_after_a_clean_exit() {
        nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pgid");
        let spec = sh(&format!(
            "sleep 1000 & echo $$ > {}; exit 0",
            pids.display()
        ));
        let t0 = Instant::now();
        let out = run(&spec).await.expect("run");
        assert_eq!(out.termination, Termination::Exited(0));
        assert!(t0.elapsed() < Duration::from_secs(1));
        let pgid = pgid_from(&pids).await;
        assert!(group_gone_within(pgid, Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pgid");
        let spec = sh(&format!(
            "sleep 1000 & echo $$ > {}; sleep 1000",
            pids.display()
        ));
        let pgid = tokio::select! {
            _ = run(&spec) => panic!("run finished on its own"),
            pgid = pgid_from(&pids) => pgid,
        };
        // `run` was dropped when select! returned; tokio reaps the leader in the background,
        // the orphaned sleeper is ours.
        assert!(group_gone_within(pgid, Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn huge_output_is_bounded_and_flagged() {
        let spec = sh("head -c 10000000 /dev/zero; head -c 100 /dev/zero >&2");
        let out = run(&spec).await.expect("run");
        assert_eq!(out.termination, Termination::Exited(0));
        assert_eq!(out.stdout.len(), OUTPUT_LIMIT);
        assert!(out.stdout_truncated);
        assert_eq!(out.stderr.len(), 100);
        assert!(!out.stderr_truncated);
    }

    #[tokio::test]
    async fn exactly_the_limit_is_not_truncated() {
        let spec = sh(&format!("head -c {OUTPUT_LIMIT} /dev/zero"));
        let out = run(&spec).await.expect("run");
        assert_eq!(out.stdout.len(), OUTPUT_LIMIT);
        assert!(!out.stdout_truncated);
    }

    #[tokio::test]
    async fn non_utf8_output_is_tolerated() {
        let out = run(&sh("printf 'ok \\377\\376 end\\n'; printf '\\200' >&2"))
            .await
            .expect("run");
        assert_eq!(out.stdout, b"ok \xff\xfe end\n");
        assert_eq!(out.stdout_text(), "ok \u{fffd}\u{fffd} end");
        assert_eq!(out.stderr_text(), "\u{fffd}");
        assert_eq!(out.first_line(), "ok \u{fffd}\u{fffd} end");
    }

    #[tokio::test]
    async fn exit_codes_and_signals_are_mapped() {
        let out = run(&sh("exit 0")).await.expect("run");
        assert_eq!(out.termination, Termination::Exited(0));
        let out = run(&sh("exit 7")).await.expect("run");
        assert_eq!(out.termination, Termination::Exited(7));
        let out = run(&sh("kill -TERM $$")).await.expect("run");
        assert_eq!(out.termination, Termination::Signaled(15));
    }

    /// Issue #20: running out of descriptors is this daemon's fault, a missing program is not.
    #[test]
    fn resource_exhaustion_is_told_apart() {
        let spawn = |errno| ProcessError::Spawn {
            argv0: "/x".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        for errno in [
            nix::libc::EMFILE,
            nix::libc::ENFILE,
            nix::libc::EAGAIN,
            nix::libc::ENOMEM,
        ] {
            assert!(spawn(errno).is_resource_exhaustion(), "{errno}");
        }
        assert!(!spawn(nix::libc::ENOENT).is_resource_exhaustion());
        assert!(!spawn(nix::libc::EACCES).is_resource_exhaustion());
        assert!(!ProcessError::EmptyArgv.is_resource_exhaustion());
    }

    #[tokio::test]
    async fn missing_binary_is_a_spawn_error() {
        let spec = CommandSpec {
            argv: vec!["/nonexistent/definitely-not-here".into()],
            ..CommandSpec::default()
        };
        match run(&spec).await {
            Err(e @ ProcessError::Spawn { .. }) => {
                assert_eq!(e.kind(), "spawn");
                assert!(e.to_string().contains("definitely-not-here"), "{e}");
            }
            other => panic!("expected a spawn error, got {other:?}"),
        }
        let empty = CommandSpec::default();
        assert!(matches!(run(&empty).await, Err(ProcessError::EmptyArgv)));
    }

    #[tokio::test]
    async fn stdin_is_null_and_env_is_added() {
        let mut spec = sh("cat; echo \"[$EXTRA_VAR]\"; test -n \"$PATH\" && echo path-inherited");
        spec.env = vec![
            ("EXTRA_VAR".into(), "first".into()),
            ("EXTRA_VAR".into(), "x y".into()),
        ];
        let out = run(&spec).await.expect("run");
        assert_eq!(out.stdout_text(), "[x y]\npath-inherited");
    }

    #[test]
    fn first_line_prefers_stdout_then_stderr_and_is_capped() {
        let mk = |o: &[u8], e: &[u8]| CommandOutput {
            termination: Termination::Exited(1),
            stdout: o.to_vec(),
            stderr: e.to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration: Duration::ZERO,
        };
        assert_eq!(mk(b"\n  \n  two\nthree", b"err").first_line(), "two");
        assert_eq!(mk(b" \n", b"\nerr line\n").first_line(), "err line");
        assert_eq!(mk(b"", b"").first_line(), "");
        let long = "é".repeat(500);
        assert_eq!(
            mk(long.as_bytes(), b"").first_line().chars().count(),
            FIRST_LINE_MAX
        );
    }
}
