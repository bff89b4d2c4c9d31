//! Configuration: YAML shape ([`raw`]), reading and drop-in merge ([`load`]), validation
//! ([`validate`]) into the [`Settings`] the daemon runs with.
//!
//! The pipeline is always file(s) → merged document → [`RawConfig`] → [`Settings`]; nothing
//! past this module sees unvalidated values.

pub mod error;
pub mod load;
pub mod raw;
pub mod settings;
pub mod validate;

use std::path::Path;

pub use error::{ConfigError, Problem};
pub use raw::{DEFAULT_CONFIG_PATH, RawConfig};
pub use settings::*;
pub use validate::{ValidateEnv, Validated, validate};

/// Loads `path` plus `config.d/*.yaml` beside it and validates the result.
pub fn load_settings(path: &Path, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    let loaded = load::load(path)?;
    validate(&loaded.raw, env)
}

#[cfg(test)]
mod tests;
