//! Command-line contract tests: the real binary, real files, real exit codes (SPEC §9).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod bad_input;
mod closed_stdout;
mod completions;
mod config_cmd;
mod config_flag;
mod exit_codes;
mod go_dropin;
mod go_ported;
mod planner;
mod planner_png;
mod replay;
mod status_quiet;
mod windows_cmd;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
        .args(args)
        .output()
        .expect("spawn clusterrebootd")
}

/// Runs the built binary with `args` and a stdout whose reader is already gone (`… | head`
/// after head exited): every write to it fails with EPIPE. Returns the exit code and stderr.
pub fn with_closed_stdout(args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("spawn clusterrebootd");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Exit code, stdout and stderr of a run, for assertions with readable failures.
pub fn outcome(args: &[&str]) -> (i32, String, String) {
    let o = run(args);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A minimal valid configuration for the local backend.
pub const VALID: &str = "node_name: n1
reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]
health_script: /usr/local/bin/health
lock_backend: local
";

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &[u8]) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}
