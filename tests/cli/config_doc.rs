//! docs/CONFIG.md cannot drift from the configuration structs (issue #19): every field the
//! decoder accepts is documented in the field tables, and every documented field exists.
//!
//! The accepted fields are the structs' own (`RawConfig` and `RawDetector` serialised, nested
//! mappings as dotted paths), and the real binary's `validate-config` confirms that it accepts
//! each of them (no "unknown field"), so a field added to the structs but not to the decoder's
//! known keys, or the other way round, fails here too.

use std::collections::BTreeSet;

use clusterrebootd::config::RawConfig;
use clusterrebootd::config::raw::RawDetector;

use super::{outcome, write};

const DOC: &str = include_str!("../../docs/CONFIG.md");

/// Dotted leaf paths of a serialised struct: `etcd_tls.enabled`, `dry_run`, …
fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn struct_fields() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    leaves(
        "",
        &serde_json::to_value(RawConfig::default()).expect("serialise"),
        &mut out,
    );
    out
}

fn detector_fields() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    leaves(
        "",
        &serde_json::to_value(RawDetector::default()).expect("serialise"),
        &mut out,
    );
    out
}

/// The text of the section that starts with heading `title` (up to the next heading of the
/// same or a higher level).
fn section<'d>(title: &str) -> &'d str {
    let start = DOC
        .find(title)
        .unwrap_or_else(|| panic!("docs/CONFIG.md has no heading {title:?}"));
    let level = title.chars().take_while(|c| *c == '#').count();
    let rest = &DOC[start + title.len()..];
    let end = rest
        .lines()
        .scan(0usize, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
        })
        .map_or(rest.len(), |(at, _)| at);
    &rest[..end]
}

/// The backticked names in the first column of the field tables of `text`, up to its first
/// sub-heading (the detector table has its own test).
fn documented(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().take_while(|l| !l.starts_with('#')) {
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let first = format!("`{}", row.split(" |").next().unwrap_or(""));
        for name in first.split('`').skip(1).step_by(2) {
            out.insert(name.to_string());
        }
    }
    out
}

/// YAML that sets every dotted path to null (null means the default for every field).
fn all_null(fields: &BTreeSet<String>) -> String {
    let mut top: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in fields {
        match f.split_once('.') {
            Some((a, b)) => top.entry(a).or_default().push(b),
            None => {
                top.entry(f).or_default();
            }
        }
    }
    let mut y = String::new();
    for (k, subs) in top {
        if subs.is_empty() {
            y.push_str(&format!("{k}: null\n"));
        } else {
            y.push_str(&format!("{k}:\n"));
            for s in subs {
                y.push_str(&format!("  {s}: null\n"));
            }
        }
    }
    y
}

#[test]
fn every_config_field_is_documented_and_every_documented_field_exists() {
    let fields = struct_fields();
    assert!(fields.len() > 40, "{fields:?}");
    let mut doc = documented(section("## Fields of the Go daemon"));
    doc.extend(documented(section("## New fields")));

    let undocumented: Vec<_> = fields.difference(&doc).collect();
    assert!(
        undocumented.is_empty(),
        "fields the configuration accepts but docs/CONFIG.md does not document: {undocumented:?}"
    );
    let unknown: Vec<_> = doc.difference(&fields).collect();
    assert!(
        unknown.is_empty(),
        "fields docs/CONFIG.md documents that the configuration does not have: {unknown:?}"
    );
}

#[test]
fn every_detector_field_is_documented_and_every_documented_one_exists() {
    let text = section("### Detectors");
    let named: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            // Column 2 lists the fields: each is a backticked name (outside parentheses)
            // followed by its explanation in parentheses or after a colon.
            let cols: Vec<&str> = l.split(" | ").collect();
            let mut names = Vec::new();
            let fields = cols.get(1).copied().unwrap_or("");
            let mut depth = 0i32;
            let mut i = 0;
            while i < fields.len() {
                let c = fields[i..].chars().next().unwrap_or(' ');
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    '`' if depth == 0 => {
                        let rest = &fields[i + 1..];
                        let end = rest.find('`').unwrap_or(rest.len());
                        let after = &rest[(end + 1).min(rest.len())..];
                        if after.starts_with(" (") || after.starts_with(':') {
                            names.push(rest[..end].to_string());
                        }
                        i += end + 2;
                        continue;
                    }
                    _ => {}
                }
                i += c.len_utf8();
            }
            names
        })
        .collect();
    let mut expected = detector_fields();
    // `type` is the table's first column, `name` is described below it.
    assert!(
        expected.remove("type") && expected.remove("name"),
        "{expected:?}"
    );
    assert!(text.contains("`name` is optional"), "{text}");
    assert_eq!(
        named, expected,
        "detector fields in docs/CONFIG.md (left) differ from RawDetector's (right)"
    );
}

#[test]
fn the_binary_accepts_every_struct_field_and_rejects_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut fields = struct_fields();
    let yaml = all_null(&fields);
    let det: Vec<String> = detector_fields()
        .into_iter()
        .filter(|f| f != "type" && f != "path")
        .map(|f| format!("{f}: null"))
        .collect();
    let yaml = yaml.replace(
        "reboot_required_detectors: null\n",
        &format!(
            "reboot_required_detectors: [{{type: file, path: /x, {}}}]\n",
            det.join(", ")
        ),
    );
    let p = write(dir.path(), "config.yaml", yaml.as_bytes());
    let (_, _, err) = outcome(&["validate-config", "--config", &p]);
    assert!(!err.contains("unknown field"), "{yaml}\n{err}");

    // The same check can fail: a field the structs do not have is refused by name.
    fields.insert("etcd_tls.frobnicate".into());
    let p = write(dir.path(), "bogus.yaml", all_null(&fields).as_bytes());
    let (_, _, err) = outcome(&["validate-config", "--config", &p]);
    assert!(
        err.contains("etcd_tls.frobnicate") && err.contains("unknown field"),
        "{err}"
    );
}
