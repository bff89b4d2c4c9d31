//! Configuration: YAML shape ([`raw`]), reading and drop-in merge ([`load`]), validation
//! ([`validate`]) into the [`Settings`] the daemon runs with.
//!
//! The pipeline is always file(s) → merged document → [`RawConfig`] → [`Settings`]; nothing
//! past this module sees unvalidated values.

pub mod decode;
pub mod error;
pub mod fsm;
pub mod load;
pub mod raw;
pub mod settings;
pub mod trust;
pub mod validate;
pub mod webhook_url;
pub mod yaml;

use std::path::Path;

pub use error::{ConfigError, Problem};
pub use raw::{DEFAULT_CONFIG_PATH, RawConfig};
pub use settings::*;
pub use validate::{ValidateEnv, Validated, validate};

/// Loads `path` plus `config.d/*.yaml` beside it and validates the result, refusing files,
/// scripts and directories other users can write ([`trust`]).
pub fn load_settings(path: &Path, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    let mut loaded = load::load(path)?;
    // The opt-out counts only in the main file: a drop-in that others could write must not be
    // able to excuse itself.
    let allow = if loaded.raw.insecure_allow_writable_files {
        let main_only = load::from_texts(vec![(path.to_path_buf(), load::read_capped(path)?)])?;
        if !main_only.raw.insecure_allow_writable_files {
            loaded.problems.push(Problem::new(
                "insecure_allow_writable_files",
                "set in a config.d/ drop-in: only the main configuration file can set it",
            ));
        }
        main_only.raw.insecure_allow_writable_files
    } else {
        false
    };
    let found = trust::check(path, &loaded.files, &loaded.raw);
    loaded.problems.extend(found.always);
    if allow {
        loaded
            .warnings
            .extend(found.excusable.into_iter().map(|p| Problem {
                message: format!("{} (allowed by insecure_allow_writable_files)", p.message),
                ..p
            }));
    } else {
        loaded
            .problems
            .extend(found.excusable.into_iter().map(|p| Problem {
                message: format!(
                    "{} (or set insecure_allow_writable_files: true in the main file to only warn)",
                    p.message
                ),
                ..p
            }));
    }
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
