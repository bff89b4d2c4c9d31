//! The operator docs name only commands and flags that exist (issue #19): every
//! `clusterrebootd …` in inline code or at the start of a code-block line of README.md and
//! docs/{OPERATIONS,CONFIG,MIGRATION,RUNBOOKS}.md is checked against the binary's `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashMap;
use std::process::Command;

const DOCS: [&str; 5] = [
    "README.md",
    "docs/OPERATIONS.md",
    "docs/CONFIG.md",
    "docs/MIGRATION.md",
    "docs/RUNBOOKS.md",
];

/// The subcommand-like words and `--flags` after `clusterrebootd`, up to a comment, pipe or
/// redirection; arguments (`node-3`, `NODE`, quoted text, paths) are left out.
fn words(rest: &str) -> Vec<String> {
    rest.split_whitespace()
        .take_while(|w| !["#", "|", ">", "&&", ";", "||"].contains(w))
        .filter_map(|w| {
            let w = w.split('=').next().unwrap_or(w);
            let w = w.trim_end_matches(['`', ',', ';', ')', ':']);
            let name = w.strip_prefix("--").unwrap_or(w);
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                && !name.starts_with('-');
            ok.then(|| w.to_string())
        })
        .collect()
}

/// Every command line the docs show: inline `` `clusterrebootd …` `` and code-block lines
/// starting with `clusterrebootd `.
fn commands(doc: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            if let Some(rest) = line.trim_start().strip_prefix("clusterrebootd ") {
                out.push((i + 1, words(rest)));
            }
            continue;
        }
        for (at, _) in line.match_indices("`clusterrebootd ") {
            let rest = &line[at + "`clusterrebootd ".len()..];
            let rest = rest.split('`').next().unwrap_or("");
            out.push((i + 1, words(rest)));
        }
    }
    out
}

#[test]
fn every_command_in_the_operator_docs_exists() {
    let bin = env!("CARGO_BIN_EXE_clusterrebootd");
    let mut help: HashMap<Vec<String>, Option<String>> = HashMap::new();
    let mut help_of = |path: &[String]| -> Option<String> {
        help.entry(path.to_vec())
            .or_insert_with(|| {
                let o = Command::new(bin)
                    .args(path)
                    .arg("--help")
                    .output()
                    .expect("run --help");
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let usage = format!("Usage: clusterrebootd {}", path.join(" "));
                (o.status.success() && text.contains(usage.trim_end())).then_some(text)
            })
            .clone()
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in DOCS {
        let text =
            std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).expect(doc);
        for (line, words) in commands(&text) {
            if words.is_empty() {
                continue; // output shown, e.g. `clusterrebootd <version> (revision …)`
            }
            let (flags, subs): (Vec<&String>, Vec<&String>) =
                words.iter().partition(|w| w.starts_with("--"));
            // The longest prefix of the words that names a subcommand; the rest are arguments.
            let mut path: Vec<String> = Vec::new();
            for w in &subs {
                let mut next = path.clone();
                next.push((*w).clone());
                if help_of(&next).is_some() {
                    path = next;
                } else {
                    break;
                }
            }
            let h = help_of(&path).expect("top-level help");
            // A word after a command that has subcommands must be one of them.
            if let Some(next) = subs.get(path.len())
                && h.contains("\nCommands:\n")
            {
                wrong.push(format!(
                    "{doc}:{line}: `clusterrebootd {}`: `{}` has no subcommand {next}",
                    words.join(" "),
                    path.join(" ")
                ));
                continue;
            }
            for f in flags {
                if !h.contains(&format!("{f} ")) {
                    wrong.push(format!(
                        "{doc}:{line}: `clusterrebootd {}`: {f} is not a flag of `{}`",
                        words.join(" "),
                        path.join(" ")
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        checked > 30,
        "only {checked} commands found: the scan is broken"
    );
}
