//! Build identity: what `version` prints and what metrics and logs label builds with.

/// Crate version from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("CLUSTERREBOOTD_GIT_REVISION");

/// `<version> (revision <rev>)`: what `--version` prints after the name, the same as `version`
/// (issue #19: the flag used to leave the revision out).
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CLUSTERREBOOTD_GIT_REVISION"),
    ")"
);

/// One line: `clusterrebootd <version> (revision <rev>)`.
pub fn line() -> String {
    format!("clusterrebootd {VERSION} (revision {REVISION})")
}
