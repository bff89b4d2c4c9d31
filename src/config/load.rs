//! Reading the configuration files: the main file, then `config.d/*.yaml` beside it merged in
//! lexical order, then one typed parse that reports every unknown key.
//!
//! Reads are capped ([`MAX_CONFIG_BYTES`]) so a wrong path pointing at a huge file cannot hang
//! the daemon or exhaust memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::decode;
use super::error::{ConfigError, Problem};
use super::raw::RawConfig;
use super::yaml::{self, Kind, Node};

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

/// Parses one file: its first document (an empty file is an empty mapping), the keys it sets
/// twice (as problems) and a warning when it holds more than one document.
fn parse_file(
    path: &Path,
    text: &str,
    index: usize,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Result<Node, ConfigError> {
    let parsed = yaml::parse(text, index).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: Some(e.line),
        column: Some(e.column),
        message: e.message,
    })?;
    let where_ = if index == 0 {
        String::new()
    } else {
        format!("{} ", path.display())
    };
    for d in parsed.duplicates {
        problems.push(Problem::new(
            d.path,
            format!(
                "set twice ({where_}lines {} and {}); keep one of them",
                d.first, d.again
            ),
        ));
    }
    if parsed.documents > 1 {
        warnings.push(Problem::new(
            "",
            format!(
                "{} holds {} YAML documents; only the first is used, as the Go daemon does (the second starts at line {})",
                path.display(),
                parsed.documents,
                parsed.second_doc_line.unwrap_or(0)
            ),
        ));
    }
    let doc = parsed.doc.unwrap_or_else(|| {
        Node::empty_map(yaml::Mark {
            file: index,
            line: 1,
        })
    });
    match &doc.kind {
        Kind::Map(_) => Ok(doc),
        _ if doc.is_null() => Ok(Node::empty_map(doc.mark)),
        _ => Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            line: Some(doc.mark.line),
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

/// The merged document and which files it came from (for messages).
#[derive(Debug)]
pub struct Loaded {
    /// The typed configuration, not validated yet (defaults applied where a field was missing,
    /// null, or a Go zero value that `applyDefaults` replaces).
    pub raw: RawConfig,
    /// Main file first, then drop-ins in merge order.
    pub files: Vec<PathBuf>,
    /// Unknown keys, type errors and keys set twice: the configuration is invalid if any.
    pub problems: Vec<Problem>,
    /// Field paths with a decoding problem (validation findings below them are not repeated).
    pub errored: Vec<String>,
    /// Things to tell the operator that do not make the configuration invalid.
    pub warnings: Vec<Problem>,
}

/// Loads the main file and its drop-ins and decodes them into [`RawConfig`].
///
/// Syntax errors fail at once (with file, line and column); every other problem is collected
/// in [`Loaded::problems`] so that validation can add its own and report them all together.
pub fn load(main: &Path) -> Result<Loaded, ConfigError> {
    let text = read_capped(main)?;
    let drop_ins = drop_in_files(main)?;
    let mut texts = vec![(main.to_path_buf(), text)];
    for f in drop_ins {
        let t = read_capped(&f)?;
        texts.push((f, t));
    }
    from_texts(texts)
}

/// [`load`] on texts already read: the first is the main file, the rest drop-ins in order.
pub fn from_texts(texts: Vec<(PathBuf, String)>) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let mut doc: Option<Node> = None;
    for (i, (path, text)) in texts.iter().enumerate() {
        let d = parse_file(path, text, i, &mut problems, &mut warnings)?;
        if i == 1
            && let Some(main) = &doc
            && looks_like_go(main)
        {
            let names: Vec<String> = texts[1..]
                .iter()
                .filter_map(|(p, _)| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .collect();
            warnings.push(Problem::new(
                "",
                format!(
                    "{} looks like a Go daemon configuration, and config.d/ beside it holds {} that this daemon merges over it ({}); the Go daemon ignored config.d/, so check these files are meant",
                    texts[0].0.display(),
                    if names.len() == 1 { "a file".to_string() } else { format!("{} files", names.len()) },
                    names.join(", ")
                ),
            ));
        }
        match &mut doc {
            None => doc = Some(d),
            Some(base) => yaml::merge(base, d),
        }
        files.push(path.clone());
    }
    let doc = doc.unwrap_or_else(|| Node::empty_map(yaml::Mark::default()));
    let (raw, decoded) = decode::decode(&doc, &files);
    problems.extend(decoded.problems);
    Ok(Loaded {
        raw,
        files,
        problems,
        errored: decoded.errored,
        warnings,
    })
}

/// A main file that only uses the Go daemon's fields.
fn looks_like_go(doc: &Node) -> bool {
    match &doc.kind {
        Kind::Map(entries) => {
            !entries.is_empty()
                && entries.iter().all(|(k, _)| {
                    k.scalar()
                        .is_some_and(|s| decode::GO_FIELDS.contains(&s.text.as_str()))
                })
        }
        _ => false,
    }
}

/// Parses configuration text held in memory (tests, tools): `texts[0]` is the main file.
pub fn from_strs(texts: &[&str]) -> Result<Loaded, ConfigError> {
    from_texts(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = if i == 0 {
                    PathBuf::from("config.yaml")
                } else {
                    PathBuf::from(format!("config.d/{i:02}.yaml"))
                };
                (name, (*t).to_string())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(texts: &[&str]) -> Vec<String> {
        let l = from_strs(texts).expect("parses");
        l.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn drop_ins_replace_lists_and_merge_maps() {
        let l = from_strs(&[
            "etcd_endpoints: [a, b]\nwindows: {deny: ['* 01:00-02:00'], allow: ['* 03:00-04:00']}\n",
            "etcd_endpoints: [c]\nwindows: {allow: []}\n",
        ])
        .expect("parses");
        assert_eq!(l.raw.etcd_endpoints, ["c"]);
        assert_eq!(l.raw.windows.deny, ["* 01:00-02:00"]);
        assert!(l.raw.windows.allow.is_empty());
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path_line_and_a_hint() {
        let got = problems(&[
            "nodename: x\nwindows: {allw: []}\nreboot_required_detectors: [{type: file, pth: /x}]\n",
        ]);
        assert_eq!(
            got,
            [
                "nodename: unknown field (line 1); did you mean `node_name`?",
                "windows.allw: unknown field (line 2); did you mean `allow`?",
                "reboot_required_detectors[0].pth: unknown field (line 3); did you mean `path`?",
            ]
        );
    }

    #[test]
    fn every_type_error_is_reported_in_plain_words() {
        let got = problems(&[
            "health_timeout_sec: soon\ncheck_interval_sec: 30.5\ndry_run: maybe\nnode_name: [a]\nbackoff_min_sec: -1\nbogus: 1\n",
        ]);
        assert_eq!(
            got,
            [
                "health_timeout_sec: must be a whole number ≥ 1 (0 or null means the default, 30), got \"soon\" (line 1)",
                "check_interval_sec: must be a whole number ≥ 1 (0 or null means the default, 60), got \"30.5\" (line 2)",
                "dry_run: must be true or false (yes/no, on/off also work), got \"maybe\" (line 3)",
                "node_name: must be a text value, got a list (line 4)",
                "backoff_min_sec: must be a whole number ≥ 1 (0 or null means the default, 5), got \"-1\" (line 5)",
                "bogus: unknown field (line 6)",
            ]
        );
    }

    #[test]
    fn a_duplicate_key_names_both_lines_and_the_drop_in() {
        assert_eq!(
            problems(&["node_name: a\ndry_run: true\nnode_name: b\n"]),
            ["node_name: set twice (lines 1 and 3); keep one of them"]
        );
        assert_eq!(
            problems(&[
                "node_name: a\n",
                "x: {}\nlog: {level: info,\n  level: debug}\n"
            ]),
            [
                "log.level: set twice (config.d/01.yaml lines 2 and 3); keep one of them",
                "x: unknown field (config.d/01.yaml line 1)",
            ]
        );
    }

    #[test]
    fn several_documents_use_the_first_and_warn() {
        let l = from_strs(&["node_name: first\n---\nnode_name: second\n"]).expect("parses");
        assert_eq!(l.raw.node_name, "first");
        assert!(l.problems.is_empty());
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.warnings[0]
                .message
                .contains("holds 2 YAML documents; only the first is used"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn drop_ins_beside_a_go_config_warn_once() {
        let go = "node_name: a\ncheck_interval_sec: 30\n";
        let l = from_strs(&[go, "dry_run: true\n", "dry_run: false\n"]).expect("parses");
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(
            l.warnings[0]
                .message
                .contains("looks like a Go daemon configuration")
        );
        assert!(l.warnings[0].message.contains("2 files"));
        let ours = "node_name: a\nlock_backend: local\n";
        assert!(
            from_strs(&[ours, "dry_run: true\n"])
                .expect("parses")
                .warnings
                .is_empty()
        );
        assert!(from_strs(&[go]).expect("parses").warnings.is_empty());
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        match from_strs(&["a: [1, 2\n"]) {
            Err(ConfigError::Syntax { line, column, .. }) => {
                assert!(line.is_some() && column.is_some())
            }
            other => panic!("{other:?}"),
        }
        match from_strs(&["- a\n"]) {
            Err(ConfigError::Syntax { message, .. }) => {
                assert!(message.contains("top level must be a mapping"))
            }
            other => panic!("{other:?}"),
        }
    }
}
