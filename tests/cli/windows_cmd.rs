//! `windows [--at T] [--json]` on a real config file, and window syntax errors as config errors.

use super::{VALID, outcome, write};

fn config(dir: &std::path::Path, windows: &str) -> String {
    write(dir, "config.yaml", format!("{VALID}{windows}").as_bytes())
}

#[test]
fn json_answer_for_denied_and_allowed_instants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(
        dir.path(),
        "windows: {timezone: Europe/Berlin, deny: ['Fri 18:00-Mon 08:00'], allow: ['Tue-Thu 22:00-04:00']}\n",
    );
    let (code, out, err) = outcome(&[
        "windows",
        "--config",
        &c,
        "--at",
        "2026-11-27T22:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["reason"],
        "blocked by deny window \"Fri 18:00-Mon 08:00\""
    );
    assert_eq!(v["next_allowed_at"], "2026-12-01T22:00:00+01:00");

    let (code, out, _) = outcome(&[
        "windows",
        "--config",
        &c,
        "--at",
        "2026-11-24T21:30:00Z",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["allowed"], true);
    assert!(v["reason"].is_null());
    assert_eq!(v["rule"], "Tue-Thu 22:00-04:00");
    assert_eq!(v["next_allowed_at"], "2026-11-24T22:30:00+01:00");
    assert_eq!(v["allowed_until"], "2026-11-25T04:00:00+01:00");
}

#[test]
fn text_answer_names_the_rule_and_the_next_instant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(
        dir.path(),
        "windows: {timezone: UTC, allow: ['* 23:00-06:00']}\n",
    );
    let (code, out, _) = outcome(&["windows", "--config", &c, "--at", "2026-11-24T12:00:00Z"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("reboot not allowed: outside configured allow windows"),
        "{out}"
    );
    assert!(
        out.contains("next permitted instant: 2026-11-24T23:00:00+00:00"),
        "{out}"
    );
}

#[test]
fn bad_at_is_a_usage_error_and_bad_config_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), "");
    assert_eq!(
        outcome(&["windows", "--config", &c, "--at", "tomorrow"]).0,
        64
    );
    let bad = config(dir.path(), "windows: {allow: ['Mon 25:00-26:00']}\n");
    let (code, _, err) = outcome(&["windows", "--config", &bad]);
    assert_eq!(code, 2);
    assert!(
        err.contains("windows.allow[0]: invalid window \"Mon 25:00-26:00\" at column 5"),
        "{err}"
    );
    let (code, _, err) = outcome(&["validate-config", "--config", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("windows.allow[0]"), "{err}");
}
