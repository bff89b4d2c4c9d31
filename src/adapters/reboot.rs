//! The reboot itself (SPEC §8): `$VAR` expansion of the reboot argv, the pre/post-reboot hooks
//! and the reboot command.
//!
//! Expansion follows Go's `os.Expand` exactly, per argument, because operators' configs were
//! written against it (docs/GO-COMPAT.md §9):
//!
//! | input | result |
//! |---|---|
//! | `$NAME` | NAME = the longest run of `[A-Za-z0-9_]` (`$HOST-x` → value of HOST, then `-x`) |
//! | `${NAME}` | anything up to the next `}` is the name (`${A B}` looks up `A B`) |
//! | `$1`, `$$`, `$*`, `$#`, `$@`, `$!`, `$?`, `$-` | that single character is the name (`$12` → value of `1`, then `2`); usually unset, so `$$` becomes empty |
//! | `${x}` with x one of those characters | the same single-character name |
//! | `${}` | removed |
//! | `${` without a closing `}` | the two characters `${` are removed, the rest kept |
//! | `$` followed by any other character (space, `%`, `/`, …) | the `$` is kept |
//! | a trailing `$` | kept |
//!
//! Values come from the `RC_*` environment first (the last entry of a name wins, as for the
//! process environment), then the daemon's own environment; unknown names become empty.
//!
//! Unlike the Go daemon, the reboot command and the hooks get the `RC_*` variables in their
//! environment (SPEC §8). Dry-run never executes the reboot command (SPEC §2.2 invariant 6).

use std::time::Duration;

use super::go_duration;
use super::process::{self, CommandSpec, Termination};

fn is_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || c.is_ascii_digit()
}

fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// What follows a `$` (the text after it, non-empty): the name to look up, if any, and how many
/// bytes after the `$` the reference spans.
enum Reference<'a> {
    /// Look `name` up; skip `len` bytes.
    Name(&'a str, usize),
    /// Bad syntax (`${}` or an unclosed `${`): drop the `$` and `len` bytes.
    Invalid(usize),
    /// Not a reference: keep the `$`.
    Literal,
}

fn reference(rest: &str) -> Reference<'_> {
    let b = rest.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return Reference::Name(&rest[1..2], 3);
        }
        return match rest[1..].find('}') {
            Some(0) => Reference::Invalid(2),
            Some(i) => Reference::Name(&rest[1..=i], i + 2),
            None => Reference::Invalid(1),
        };
    }
    if is_special(b[0]) {
        return Reference::Name(&rest[..1], 1);
    }
    let n = b.iter().take_while(|c| is_name_char(**c)).count();
    if n == 0 {
        Reference::Literal
    } else {
        Reference::Name(&rest[..n], n)
    }
}

/// Go `os.Expand` of one string with `lookup`.
fn expand_one(s: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            // Trailing `$`: kept.
            out.push('$');
            rest = after;
            break;
        }
        match reference(after) {
            Reference::Name(name, len) => {
                out.push_str(&lookup(name));
                rest = &after[len..];
            }
            Reference::Invalid(len) => rest = &after[len..],
            Reference::Literal => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands `$VAR`/`${VAR}` in each argument (Go `os.Expand`, see the module doc): `rc_env`
/// first (last entry wins), then `lookup_process_env`, unknown names → empty.
pub fn expand_argv(
    argv: &[String],
    rc_env: &[(String, String)],
    lookup_process_env: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let lookup = |name: &str| -> String {
        rc_env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| lookup_process_env(name))
            .unwrap_or_default()
    };
    argv.iter().map(|a| expand_one(a, &lookup)).collect()
}

/// `"a b c"`: how commands are named in errors and logs (Go's `run reboot command "<joined>"`).
fn shown(argv: &[String]) -> String {
    format!("\"{}\"", argv.join(" "))
}

/// Runs `argv` once; `Err` describes a start failure, timeout, signal or non-zero exit.
async fn run_checked(
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    timeout: Option<Duration>,
) -> Result<(), String> {
    let spec = CommandSpec {
        argv: argv.to_vec(),
        env: env.to_vec(),
        timeout,
    };
    let name = shown(argv);
    let out = process::run(&spec)
        .await
        .map_err(|e| format!("{what} {name}: {e}"))?;
    tracing::info!(
        event = "command_finished",
        command = %name,
        termination = ?out.termination,
        stdout = %out.stdout_text(),
        stderr = %out.stderr_text(),
        duration_ms = u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
        "{what} finished"
    );
    let evidence = match out.first_line() {
        l if l.is_empty() => String::new(),
        l => format!(": {l}"),
    };
    match out.termination {
        Termination::Exited(0) => Ok(()),
        Termination::Exited(code) => Err(format!("{what} {name}: exit status {code}{evidence}")),
        Termination::Signaled(sig) => Err(format!("{what} {name}: killed by signal {sig}")),
        Termination::TimedOut => Err(format!(
            "{what} {name}: timed out after {}",
            go_duration(timeout.unwrap_or_default())
        )),
    }
}

/// Runs `hooks` in order, each with `env` (the `RC_*` variables) and `timeout`. The first
/// failure (start failure, timeout, signal, non-zero exit) stops the sequence and is returned,
/// naming the hook's argv; a failing pre-reboot hook thereby aborts the reboot.
pub async fn run_hooks(
    hooks: &[Vec<String>],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    for hook in hooks {
        run_checked("hook", hook, env, Some(timeout)).await?;
    }
    Ok(())
}

/// Executes the (already expanded) reboot command with the `RC_*` variables, or in dry-run only
/// logs `would reboot: <argv>`. `Err` on a start failure, a signal or a non-zero exit.
///
/// There is no timeout: a reboot command that "hangs" is usually the reboot in progress, and
/// killing it half-way would be worse; the driver's own timers notice a reboot that never
/// happens (SPEC §2.1).
pub async fn execute_reboot(
    argv_expanded: &[String],
    env: &[(String, String)],
    dry_run: bool,
) -> Result<(), String> {
    if dry_run {
        tracing::info!(
            event = "dry_run_reboot",
            argv = ?argv_expanded,
            "would reboot: {}",
            argv_expanded.join(" ")
        );
        return Ok(());
    }
    if argv_expanded.first().is_none_or(|p| p.is_empty()) {
        return Err("run reboot command: empty command".to_owned());
    }
    tracing::info!(event = "reboot_command", argv = ?argv_expanded, "executing reboot command");
    run_checked("run reboot command", argv_expanded, env, None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::process::tests::write_script;

    fn rc() -> Vec<(String, String)> {
        vec![
            ("RC_NODE_NAME".into(), "db-1".into()),
            ("HOME".into(), "/rc-wins".into()),
            ("1".into(), "one".into()),
            ("$".into(), "dollar".into()),
            ("A B".into(), "spaced".into()),
            ("RC_NODE_NAME".into(), "db-2".into()),
        ]
    }

    fn process_env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "USER" => Some("ops".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let table = [
            ("plain", "plain"),
            ("$RC_NODE_NAME", "db-2"),
            ("${RC_NODE_NAME}", "db-2"),
            ("x-$RC_NODE_NAME-y", "x-db-2-y"),
            ("$RC_NODE_NAMEx", ""),
            ("${RC_NODE_NAME}x", "db-2x"),
            ("$HOME", "/rc-wins"),
            ("$USER@host", "ops@host"),
            ("$UNKNOWN|", "|"),
            ("$1", "one"),
            ("$12", "one2"),
            ("${1}", "one"),
            ("$$", "dollar"),
            ("$$$", "dollar$"),
            ("${A B}", "spaced"),
            ("${}", ""),
            ("a${}b", "ab"),
            ("${RC_NODE_NAME", "RC_NODE_NAME"),
            ("x${", "x"),
            ("$", "$"),
            ("end$", "end$"),
            ("$ x", "$ x"),
            ("100%$%", "100%$%"),
            ("$/path", "$/path"),
            ("${#}", ""),
            ("$-x", "x"),
            ("ünï$USER€", "ünïops€"),
            ("", ""),
        ];
        for (input, want) in table {
            let got = expand_argv(&[input.to_owned()], &rc(), process_env);
            assert_eq!(got, [want.to_owned()], "input {input:?}");
        }
    }

    #[test]
    fn expansion_is_per_argument() {
        let argv: Vec<String> = ["/sbin/shutdown", "-r", "now", "reboot of $RC_NODE_NAME"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            expand_argv(&argv, &rc(), process_env),
            ["/sbin/shutdown", "-r", "now", "reboot of db-2"]
        );
    }

    fn sh(script: String) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script]
    }

    #[tokio::test]
    async fn hooks_run_in_order_and_the_first_failure_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let l = log.display();
        let hooks = vec![
            sh(format!("echo one:$RC_NODE_NAME >> {l}")),
            sh(format!("echo two >> {l}")),
        ];
        run_hooks(&hooks, &rc(), Duration::from_secs(5))
            .await
            .expect("hooks");
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "one:db-2\ntwo\n"
        );

        std::fs::remove_file(&log).expect("rm");
        let hooks = vec![
            sh(format!("echo one >> {l}")),
            sh(format!("echo failing; echo two >> {l}; exit 5")),
            sh(format!("echo three >> {l}")),
        ];
        let err = run_hooks(&hooks, &[], Duration::from_secs(5))
            .await
            .expect_err("must fail");
        assert_eq!(
            err,
            format!(
                "hook \"/bin/sh -c echo failing; echo two >> {l}; exit 5\": exit status 5: failing"
            )
        );
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "one\ntwo\n");
    }

    #[tokio::test]
    async fn hook_timeout_and_spawn_failure_stop_the_sequence() {
        let err = run_hooks(
            &[sh("sleep 30".into()), sh("exit 0".into())],
            &[],
            Duration::from_millis(200),
        )
        .await
        .expect_err("timeout");
        assert_eq!(err, "hook \"/bin/sh -c sleep 30\": timed out after 200ms");

        let err = run_hooks(
            &[vec!["/nonexistent/hook".into(), "x".into()]],
            &[],
            Duration::from_secs(1),
        )
        .await
        .expect_err("spawn");
        assert!(err.starts_with("hook \"/nonexistent/hook x\": "), "{err}");
        assert!(run_hooks(&[], &[], Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn dry_run_executes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("rebooted");
        let argv = vec!["/usr/bin/touch".to_owned(), marker.display().to_string()];
        execute_reboot(&argv, &rc(), true).await.expect("dry run");
        assert!(!marker.exists(), "dry-run executed the reboot command");
        // The same argv really runs when not in dry-run: the test above could fail.
        execute_reboot(&argv, &rc(), false).await.expect("real run");
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn real_execution_exports_rc_variables_and_reports_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("env");
        let fake = write_script(
            dir.path(),
            "fake-reboot",
            &format!(
                "env | grep '^RC_' | sort > {}; echo \"args=$*\" >> {}",
                dump.display(),
                dump.display()
            ),
        );
        let argv = expand_argv(
            &[
                fake.display().to_string(),
                "-r".into(),
                "$RC_NODE_NAME".into(),
            ],
            &rc(),
            |_| None,
        );
        execute_reboot(&argv, &rc(), false).await.expect("reboot");
        let text = std::fs::read_to_string(&dump).expect("dump");
        assert_eq!(text, "RC_NODE_NAME=db-2\nargs=-r db-2\n");

        let failing = write_script(
            dir.path(),
            "fail-reboot",
            "echo 'Failed to talk to init' >&2; exit 1",
        );
        let argv = vec![failing.display().to_string(), "now".into()];
        let err = execute_reboot(&argv, &[], false)
            .await
            .expect_err("must fail");
        assert_eq!(
            err,
            format!(
                "run reboot command \"{} now\": exit status 1: Failed to talk to init",
                failing.display()
            )
        );
        let err = execute_reboot(&["/nonexistent/reboot".into()], &[], false)
            .await
            .expect_err("spawn");
        assert!(
            err.starts_with("run reboot command \"/nonexistent/reboot\": "),
            "{err}"
        );
        assert!(execute_reboot(&[], &[], false).await.is_err());
    }
}
