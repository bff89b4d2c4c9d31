//! Exit codes of the CLI itself: usage errors map to 64, help/version to 0.

use super::outcome;

#[test]
fn unknown_command_is_a_usage_error() {
    let (code, _, err) = outcome(&["frobnicate"]);
    assert_eq!(code, 64, "stderr: {err}");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let (code, _, err) = outcome(&["validate-config", "--no-such-flag"]);
    assert_eq!(code, 64, "stderr: {err}");
}

#[test]
fn missing_subcommand_is_a_usage_error() {
    let (code, _, err) = outcome(&[]);
    assert_eq!(code, 64, "stderr: {err}");
}

#[test]
fn help_and_version_flags_exit_zero() {
    assert_eq!(outcome(&["--help"]).0, 0);
    assert_eq!(outcome(&["run", "--help"]).0, 0);
    assert_eq!(outcome(&["--version"]).0, 0);
}

/// Issue #19: `--version` prints the revision too, exactly like `version`.
#[test]
fn the_version_flag_prints_what_version_prints() {
    let (_, flag, _) = outcome(&["--version"]);
    let (_, cmd, _) = outcome(&["version"]);
    assert_eq!(flag, cmd);
    assert!(flag.contains("(revision "), "{flag}");
}

#[test]
fn version_prints_version_and_revision() {
    let (code, out, _) = outcome(&["version"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!(
            "clusterrebootd {} (revision ",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
}
