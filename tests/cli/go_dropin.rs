//! A Go deployment's files and command lines work unchanged (issue 14): the packaged template,
//! yaml.v3 decoding rules, Go `flag` syntax, and one-pass reporting of every problem.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{VALID, outcome, write};

const TEMPLATE: &str = include_str!("../fixtures/go-packaging-config.yaml");

fn filled_template() -> String {
    TEMPLATE
        .replace("node_name: \"\"", "node_name: \"n1\"")
        .replace(
            "reboot_required_detectors: []",
            "reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]",
        )
        .replace(
            "health_script: \"\"",
            "health_script: /usr/local/bin/health",
        )
        .replace(
            "etcd_endpoints: []",
            "etcd_endpoints: [\"http://127.0.0.1:2379/\"]",
        )
}

#[test]
fn the_go_package_template_validates_once_filled_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", filled_template().as_bytes());
    let (code, out, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn the_unfilled_go_template_names_the_missing_fields_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", TEMPLATE.as_bytes());
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 2, "{err}");
    for field in [
        "reboot_required_detectors: at least one",
        "health_script: must not be empty",
        "etcd_endpoints: at least one endpoint",
    ] {
        assert!(err.contains(field), "missing {field:?} in:\n{err}");
    }
    // node_name falls back to the host name here (a deliberate difference, docs/GO-COMPAT.md).
    assert!(!err.contains("node_name"), "{err}");
}

#[test]
fn yaml_v3_scalars_windows_and_detector_leftovers_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{VALID}dry_run: yes
health_timeout_sec: 30.0
lock_key: cluster/lock/
reboot_command: [/bin/echo, +5, on]
windows: {{allow: ['Mon - Fri 09:00-17:00', 'Sat -Sun 10:00-12:00']}}
metrics: {{enabled: off, listen: ':9090'}}
reboot_required_detectors:
  - {{type: file, path: /var/run/reboot-required, timeout_sec: 10}}
---
node_name: ignored
"
    )
    .replace(
        "reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]\n",
        "",
    );
    let p = write(dir.path(), "config.yaml", text.as_bytes());
    let (code, out, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains(
            "reboot_required_detectors[0].timeout_sec: is not used by a \"file\" detector"
        ),
        "{err}"
    );
    assert!(err.contains("only the first is used"), "{err}");
}

#[test]
fn validate_config_reports_every_kind_of_problem_in_one_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "config.yaml",
        format!("{VALID}nodename: x\nhealth_timeout_sec: soon\ncheck_interval_sec: 30.5\nmax_concurrent_reboots: 0\nlog: {{level: debug}}\nlog: {{format: text}}\n")
            .as_bytes(),
    );
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 2, "{err}");
    for want in [
        "nodename: unknown field (line 5); did you mean `node_name`?",
        "health_timeout_sec: must be a whole number ≥ 1 (0 or null means the default, 30), got \"soon\" (line 6)",
        "check_interval_sec: must be a whole number ≥ 1 (0 or null means the default, 60), got \"30.5\" (line 7)",
        "max_concurrent_reboots: must be between 1",
        "log: set twice (lines 9 and 10)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn a_drop_in_beside_a_go_config_gets_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", filled_template().as_bytes());
    write(
        dir.path(),
        "config.d/10-a.yaml",
        b"check_interval_sec: 60\n",
    );
    write(dir.path(), "config.d/20-b.yaml", b"dry_run: false\n");
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.matches("looks like a Go daemon configuration").count(),
        1,
        "{err}"
    );
}

#[test]
fn go_flag_syntax_works_for_validate_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", VALID.as_bytes());
    for args in [
        vec!["validate-config", "-config", &p],
        vec!["validate-config", &format!("-config={p}")],
        vec!["validate-config", &format!("--config={p}")],
        vec!["-config", &p, "validate-config"],
    ] {
        let (code, out, err) = outcome(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(out.contains(&p), "{args:?}: {out}");
    }
    assert_eq!(outcome(&["validate-config", "-no-such-flag"]).0, 64);
}

/// A config whose one pass ends at `no_action` without touching the real system.
fn local_config(dir: &std::path::Path) -> String {
    let boot = write(dir, "boot_id", b"b1\n");
    let text = format!(
        "node_name: n1
reboot_required_detectors: [{{type: file, path: {d}/reboot-required}}]
health_script: /bin/true
lock_backend: local
state_dir: {d}/state
run_dir: {d}/run
boot_id_path: {boot}
kill_switch_file: {d}/disable
log: {{format: text, level: error}}
",
        d = dir.display()
    );
    write(dir, "config.yaml", text.as_bytes())
}

#[test]
fn go_flag_syntax_works_for_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = local_config(dir.path());
    for (args, dry) in [
        (vec!["run", "-config", &p, "-once", "-dry-run"], true),
        (
            vec!["run", "--config", &p, "--once=true", "--dry-run=false"],
            false,
        ),
        (
            vec!["run", &format!("-config={p}"), "-once=1", "-dry-run=true"],
            true,
        ),
    ] {
        let (code, out, err) = outcome(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(
            out.contains(&format!("(dry-run={dry})")),
            "{args:?}: {out}{err}"
        );
    }
}

#[test]
fn once_false_keeps_the_daemon_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = local_config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
        .args(["run", "-config", &p, "--once=false", "-dry-run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "--once=false must not stop after one pass");
}

/// Issue #14: with etcd unreachable, `status --skip-lock` reports the etcd problem; it never
/// claims a pause or the kill switch (exit 5), and an unreadable reboot request is not a
/// detector error when the node's own detector decides.
#[test]
fn an_unreachable_etcd_is_not_reported_as_a_kill_switch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "reboot-required", b"");
    let boot = write(d, "boot_id", b"b1\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port"); // closed again: connections are refused
    let text = format!(
        "node_name: n1
reboot_required_detectors: [{{type: file, path: {d}/reboot-required}}]
health_script: /bin/true
etcd_endpoints: [\"http://127.0.0.1:{port}\"]
state_dir: {d}/state
run_dir: {d}/run
boot_id_path: {boot}
kill_switch_file: {d}/disable
log: {{format: text, level: error}}
",
        d = d.display()
    );
    let p = write(d, "config.yaml", text.as_bytes());
    let (code, out, err) = outcome(&["status", "--config", &p, "--skip-lock"]);
    assert_ne!(code, 5, "{out}{err}");
    assert!(!out.contains("kill_switch_active"), "{out}{err}");
    assert!(!out.contains("paused"), "{out}{err}");
    assert!(out.contains("etcd unavailable"), "{out}{err}");
    assert!(
        out.contains("file:") && out.contains("=> reboot-required"),
        "{out}{err}"
    );
    assert!(!out.contains("detector error"), "{out}{err}");
}
