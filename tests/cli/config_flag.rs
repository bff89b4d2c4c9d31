//! `--config` is offered only by the commands that read the configuration, never shown as
//! required, and taken in both orders: the Go daemon's `clusterrebootd --config P run` and
//! `run --config P` (issue #19).

use super::outcome;

const READS_CONFIG: &[&[&str]] = &[
    &["run"],
    &["validate-config"],
    &["simulate"],
    &["status"],
    &["windows"],
    &["cluster", "status"],
    &["cluster", "pause"],
    &["cluster", "resume"],
    &["cluster", "forget"],
    &["cluster", "request-reboot"],
    &["cluster", "accept-store"],
];

const NO_CONFIG: &[&[&str]] = &[&["version"], &["man"], &["completions", "bash"], &["fsm"]];

#[test]
fn only_commands_that_read_the_configuration_offer_config() {
    for cmd in READS_CONFIG {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, _) = outcome(&args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(out.contains("--config <PATH>"), "{args:?}: {out}");
        assert!(
            out.contains("/etc/clusterrebootd/config.yaml"),
            "{args:?} names the default: {out}"
        );
        let usage = out.lines().find(|l| l.starts_with("Usage:")).unwrap();
        assert!(!usage.contains("--config"), "{args:?}: {usage}");
    }
    for cmd in NO_CONFIG {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, _) = outcome(&args);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(!out.contains("--config"), "{args:?}: {out}");
        let mut args = cmd.to_vec();
        args.extend(["--config", "/etc/x.yaml"]);
        let (code, _, err) = outcome(&args);
        assert_eq!(code, 64, "{args:?} refuses --config: {err}");
    }
    let (_, out, _) = outcome(&["--help"]);
    let usage = out.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(!usage.contains("--config"), "{usage}");
}

#[test]
fn config_is_taken_before_or_after_the_command_and_the_command_s_own_wins() {
    for (args, named) in [
        (
            &["--config", "/nonexistent/a.yaml", "validate-config"][..],
            "/nonexistent/a.yaml",
        ),
        (
            &["validate-config", "--config", "/nonexistent/b.yaml"][..],
            "/nonexistent/b.yaml",
        ),
        (
            &["-config=/nonexistent/c.yaml", "windows"][..],
            "/nonexistent/c.yaml",
        ),
        (
            &["cluster", "--config", "/nonexistent/d.yaml", "status"][..],
            "/nonexistent/d.yaml",
        ),
        (
            &["cluster", "status", "--config", "/nonexistent/e.yaml"][..],
            "/nonexistent/e.yaml",
        ),
        (
            &[
                "--config",
                "/nonexistent/top.yaml",
                "run",
                "--once",
                "--config",
                "/nonexistent/f.yaml",
            ][..],
            "/nonexistent/f.yaml",
        ),
    ] {
        let (code, _, err) = outcome(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("configuration at {named} is invalid")),
            "{args:?}: {err}"
        );
    }
    let (code, _, err) = outcome(&["validate-config"]);
    if !std::path::Path::new("/etc/clusterrebootd/config.yaml").exists() {
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("/etc/clusterrebootd/config.yaml"),
            "the default: {err}"
        );
    }
}
