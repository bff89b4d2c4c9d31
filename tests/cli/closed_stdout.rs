//! No command panics when its stdout is a closed pipe (issue #19): `clusterrebootd fsm | head
//! -1`, `man | head`, a daemon whose stdout went away. Every report goes through `cli::emit`.

use super::{VALID, with_closed_stdout, write};

fn quiet(args: &[&str]) {
    let (code, err) = with_closed_stdout(args);
    assert!(
        !err.contains("panicked") && code != 101,
        "{args:?} on a closed stdout: exit {code}\n{err}"
    );
}

#[test]
fn reports_on_a_closed_stdout_end_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let text = format!("{VALID}state_dir: {d}/state\nrun_dir: {d}/run\n");
    let cfg = write(dir.path(), "config.yaml", text.as_bytes());
    for args in [
        vec!["fsm", "--format", "mermaid"],
        vec!["fsm", "--format", "json"],
        vec!["man"],
        vec!["completions", "bash"],
        vec!["version"],
        vec!["--config", &cfg, "validate-config"],
        vec!["--config", &cfg, "windows"],
        vec!["--config", &cfg, "status"],
        vec!["--config", &cfg, "status", "--explain"],
        vec!["--config", &cfg, "run", "--once", "--dry-run"],
    ] {
        quiet(&args);
    }
}
