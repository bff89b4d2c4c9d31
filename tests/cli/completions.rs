//! `completions SHELL` and `man` through the real binary.

use super::outcome;

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = outcome(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("validate-config"), "{shell}: {out}");
    }
    let (code, _, err) = outcome(&["completions", "tcsh"]);
    assert_eq!(code, 64, "an unknown shell is a usage error: {err}");
}

#[test]
fn man_page_and_help_list_the_exit_codes() {
    let (code, out, err) = outcome(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(".TH"), "{out}");
    assert!(out.contains(".SH \"EXIT STATUS\""), "{out}");
    assert!(out.contains("usage error"), "{out}");
    let (code, out, _) = outcome(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Exit codes:") && out.contains("64  usage error"),
        "{out}"
    );
}
