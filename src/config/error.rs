//! Configuration errors: why a file could not be read or parsed, or every validation problem
//! with the path of the field it is about.

use std::fmt;
use std::path::PathBuf;

/// One validation problem, tied to a field path such as `reboot_required_detectors[1].cmd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path in `a.b[i].c` form; empty for the document as a whole.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Problem {
    /// Builds a problem for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why a configuration could not be used. Every variant names the file or the fields.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// The path is a directory or another non-regular file.
    #[error("cannot read {}: it is {what}, not a file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The file is larger than any sane configuration.
    #[error("cannot read {}: larger than {limit} bytes, refusing to load it", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("cannot read {}: not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// First invalid byte.
        offset: usize,
    },
    /// The YAML does not parse.
    #[error("{}{}: YAML syntax error: {message}", path.display(), fmt_loc(*line, *column))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// 1-based column, when the parser knows it.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The document parsed but fields are wrong; all problems are listed.
    #[error("{}", fmt_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems (one for non-validation errors), for tests and JSON output.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(ps) => ps.iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn fmt_loc(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" line {l} column {c}"),
        (Some(l), None) => format!(" line {l}"),
        _ => String::new(),
    }
}

fn fmt_problems(ps: &[Problem]) -> String {
    let lines: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    lines.join("\n")
}
