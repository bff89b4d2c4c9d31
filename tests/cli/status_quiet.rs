//! `status` and the `status --explain` fallback print their report on stdout and no log lines on
//! stderr, unless asked with `-v` (issue #19; Go's `status` wrote none).

use super::{VALID, outcome, write};

/// A configuration whose evaluation runs the whole pass (a reboot is required, the health
/// script passes) in a directory of its own.
fn config(dir: &std::path::Path) -> String {
    let d = dir.display();
    std::fs::write(dir.join("reboot-required"), "").expect("flag");
    let text = VALID
        .replace("/var/run/reboot-required", &format!("{d}/reboot-required"))
        .replace("/usr/local/bin/health", "/bin/true");
    write(
        dir,
        "config.yaml",
        format!("{text}state_dir: {d}/state\nrun_dir: {d}/run\n").as_bytes(),
    )
}

#[test]
fn status_writes_its_report_and_no_log_lines_unless_verbose() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    for args in [
        vec!["status", "--config", &cfg],
        vec!["status", "--explain", "--config", &cfg],
    ] {
        let (code, out, err) = outcome(&args);
        assert_eq!(code, 0, "{args:?}\n{out}\n{err}");
        assert!(
            out.contains("outcome: ready"),
            "{args:?}: the report\n{out}"
        );
        assert_eq!(err, "", "{args:?}: log lines on stderr");
        let mut verbose = args.clone();
        verbose.push("-v");
        let (code, out, err) = outcome(&verbose);
        assert_eq!(code, 0, "{verbose:?}\n{out}\n{err}");
        assert!(
            err.contains("\"event\":\"transition\""),
            "{verbose:?}: -v brings the log lines back\n{err}"
        );
    }
}
