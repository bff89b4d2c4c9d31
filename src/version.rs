//! Build identity: what `version` prints and what metrics and logs label builds with.

/// Crate version from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("CLUSTERREBOOTD_GIT_REVISION");

/// One line: `clusterrebootd <version> (revision <rev>)`.
pub fn line() -> String {
    format!("clusterrebootd {VERSION} (revision {REVISION})")
}
