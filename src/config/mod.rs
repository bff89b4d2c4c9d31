//! Configuration: YAML shape ([`raw`]), reading and drop-in merge ([`load`]), validation
//! ([`validate`]) into the [`Settings`] the daemon runs with.
//!
//! The pipeline is always file(s) → merged document → [`RawConfig`] → [`Settings`]; nothing
//! past this module sees unvalidated values.

pub mod decode;
pub mod error;
pub mod load;
pub mod raw;
pub mod settings;
pub mod validate;
pub mod yaml;

use std::path::Path;

pub use error::{ConfigError, Problem};
pub use raw::{DEFAULT_CONFIG_PATH, RawConfig};
pub use settings::*;
pub use validate::{ValidateEnv, Validated, validate};

/// Loads `path` plus `config.d/*.yaml` beside it and validates the result.
pub fn load_settings(path: &Path, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    let loaded = load::load(path)?;
    validate_loaded(loaded, env)
}

/// Validates what [`load::load`] produced and reports decoding and validation problems
/// together: a field that could not be decoded is not reported a second time by validation.
pub fn validate_loaded(loaded: load::Loaded, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    let mut problems = loaded.problems;
    let errored = loaded.errored;
    let below = |field: &str| {
        errored.iter().any(|e| {
            field == e
                || field
                    .strip_prefix(e.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    };
    match validate(&loaded.raw, env) {
        Ok(mut v) if problems.is_empty() => {
            let mut warnings = loaded.warnings;
            warnings.append(&mut v.warnings);
            v.warnings = warnings;
            Ok(v)
        }
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(ConfigError::Invalid(more)) => {
            problems.extend(more.into_iter().filter(|p| !below(&p.field)));
            Err(ConfigError::Invalid(problems))
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests;
