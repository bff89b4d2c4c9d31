//! `validate-config`: load, merge and validate the configuration; print every problem.

use std::path::Path;

use crate::config::{ValidateEnv, load_settings};
use crate::exit::Exit;

/// Prints `configuration at <path> is valid` (exit 0) or each problem on its own line (exit 2).
pub fn run(path: &Path) -> Exit {
    match load_settings(path, &ValidateEnv::system()) {
        Ok(v) => {
            for w in &v.warnings {
                eprintln!("warning: {}: {w}", path.display());
            }
            crate::cli::outln!("configuration at {} is valid", path.display());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("configuration at {} is invalid:", path.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            Exit::Config
        }
    }
}
