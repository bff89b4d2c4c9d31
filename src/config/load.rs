//! Reading the configuration files: the main file, then `config.d/*.yaml` beside it merged in
//! lexical order, then one typed parse that reports every unknown key.
//!
//! Reads are capped ([`MAX_CONFIG_BYTES`]) so a wrong path pointing at a huge file cannot hang
//! the daemon or exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::error::{ConfigError, Problem};
use super::raw::RawConfig;

/// Largest configuration file accepted. Real configs are a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads one configuration file as UTF-8 text, refusing directories, huge files and non-UTF-8
/// content.
pub fn read_capped(path: &Path) -> Result<String, ConfigError> {
    read_capped_with(path, MAX_CONFIG_BYTES)
}

/// [`read_capped`] with another size limit (traces, state files).
pub fn read_capped_with(path: &Path, limit: u64) -> Result<String, ConfigError> {
    let io = |err: std::io::Error| ConfigError::Io {
        path: path.to_path_buf(),
        err,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(ConfigError::NotAFile {
            path: path.to_path_buf(),
            what: "a directory",
        });
    }
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    String::from_utf8(buf).map_err(|e| ConfigError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Parses YAML text into a generic value; an empty document is an empty mapping.
fn parse_yaml(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: e.to_string(),
        }
    })?;
    match value {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(value),
        _ => Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: "the top level must be a mapping of field names to values".into(),
        }),
    }
}

/// Drop-in files beside `main`: `<dir>/config.d/*.yaml`, sorted by file name.
pub fn drop_in_files(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = main
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("config.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(ConfigError::Io { path: dir, err }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| ConfigError::Io {
            path: dir.clone(),
            err,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Deep merge: mappings merge key by key, everything else (lists included) is replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The merged document and which files it came from (for messages).
pub struct Loaded {
    /// The typed configuration, not validated yet.
    pub raw: RawConfig,
    /// Main file first, then drop-ins in merge order.
    pub files: Vec<PathBuf>,
}

/// Loads the main file and its drop-ins and parses them into [`RawConfig`].
///
/// Unknown keys are all collected (with their path) before failing; a type mismatch is reported
/// with the path of the offending field.
pub fn load(main: &Path) -> Result<Loaded, ConfigError> {
    let mut files = vec![main.to_path_buf()];
    let mut doc = parse_yaml(main, &read_capped(main)?)?;
    for f in drop_in_files(main)? {
        let v = parse_yaml(&f, &read_capped(&f)?)?;
        merge(&mut doc, v);
        files.push(f);
    }
    let raw = from_value(doc)?;
    Ok(Loaded { raw, files })
}

/// Typed parse of a merged document, rejecting unknown keys with their full path.
pub fn from_value(doc: Value) -> Result<RawConfig, ConfigError> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path_string(&path));
    let de = serde_ignored::Deserializer::new(doc, &mut on_unknown);
    let parsed: Result<RawConfig, _> = serde_path_to_error::deserialize(de);
    let mut problems: Vec<Problem> = unknown
        .into_iter()
        .map(|p| Problem::new(p, "unknown field"))
        .collect();
    match parsed {
        Ok(raw) if problems.is_empty() => Ok(raw),
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(e) => {
            let field = e.path().to_string();
            problems.push(Problem::new(
                if field == "." { String::new() } else { field },
                e.into_inner().to_string(),
            ));
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Renders serde_ignored's path in the same `a.b[1].c` form the validation messages use.
fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        P::Map { parent, key } => {
            let p = path_string(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_string(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).expect("test yaml")
    }

    #[test]
    fn merge_replaces_lists_and_merges_maps() {
        let mut base = yaml("a: 1\nlist: [1, 2]\nm: {x: 1, y: 2}\n");
        merge(&mut base, yaml("list: [3]\nm: {y: 5}\n"));
        assert_eq!(base, yaml("a: 1\nlist: [3]\nm: {x: 1, y: 5}\n"));
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path() {
        let err = from_value(yaml(
            "nodename: x\nwindows: {allw: []}\nreboot_required_detectors: [{type: file, pth: /x}]\n",
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("nodename: unknown field"), "{text}");
        assert!(text.contains("windows.allw: unknown field"), "{text}");
        assert!(
            text.contains("reboot_required_detectors[0].pth: unknown field"),
            "{text}"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = from_value(yaml("health_timeout_sec: soon\n")).unwrap_err();
        assert!(err.to_string().contains("health_timeout_sec:"), "{err}");
    }
}
