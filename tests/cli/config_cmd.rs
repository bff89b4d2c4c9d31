//! `validate-config` on real files: valid, invalid, missing, drop-ins, the shipped examples.

use super::{VALID, outcome, write};

#[test]
fn valid_config_exits_zero_with_the_go_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", VALID.as_bytes());
    let (code, out, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim(), format!("configuration at {p} is valid"));
}

#[test]
fn invalid_config_exits_two_and_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "config.yaml",
        format!("{VALID}health_timeout_sec: 40\nlock_ttl_sec: 40\nbackoff_max_sec: 1\n").as_bytes(),
    );
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("lock_ttl_sec: must be greater than health_timeout_sec"),
        "{err}"
    );
    assert!(err.contains("backoff_max_sec: must be at least"), "{err}");
}

#[test]
fn missing_file_exits_two_naming_the_path() {
    let (code, _, err) = outcome(&["validate-config", "--config", "/nonexistent/c.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/c.yaml"), "{err}");
}

#[test]
fn config_flag_works_before_the_subcommand_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", VALID.as_bytes());
    assert_eq!(outcome(&["--config", &p, "validate-config"]).0, 0);
}

#[test]
fn drop_ins_merge_in_lexical_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", VALID.as_bytes());
    // 10-* breaks the config, 20-* repairs it: only lexical order makes the result valid.
    write(
        dir.path(),
        "config.d/20-fix.yaml",
        b"check_interval_sec: 30\n",
    );
    write(
        dir.path(),
        "config.d/10-break.yaml",
        b"check_interval_sec: -5\n",
    );
    write(dir.path(), "config.d/99-ignored.txt", b"garbage: [\n");
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 0, "stderr: {err}");

    std::fs::rename(
        dir.path().join("config.d/10-break.yaml"),
        dir.path().join("config.d/30-break.yaml"),
    )
    .expect("rename");
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 2);
    assert!(err.contains("check_interval_sec"), "{err}");
}

#[test]
fn drop_in_replaces_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "config.yaml", VALID.as_bytes());
    write(
        dir.path(),
        "config.d/10-detectors.yaml",
        b"reboot_required_detectors: [{type: file, path: relative}]\n",
    );
    let (code, _, err) = outcome(&["validate-config", "--config", &p]);
    assert_eq!(code, 2);
    assert!(err.contains("reboot_required_detectors[0].path"), "{err}");
}

#[test]
fn shipped_examples_validate() {
    for f in ["examples/config.yaml", "examples/go-compat.yaml"] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        let (code, out, err) = outcome(&["validate-config", "--config", &path]);
        assert_eq!(code, 0, "{f}: {out}{err}");
    }
}
