//! Tests of the exposition: exact lines per family, the Go names and helps (read from
//! `docs/GO-COMPAT.md` §7, so the table and the code cannot drift), a strict OpenMetrics line
//! checker, `promtool check metrics`, and the HTTP endpoint over a raw TCP client.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Calls every observation method at least once, with values whose sums print exactly.
fn scripted(m: &Metrics) {
    m.kill_switch_check("pre-lock", "inactive");
    m.kill_switch_check("pre-lock", "inactive");
    m.kill_switch_check("post-lock", "active");
    m.window_evaluation("allowed");
    m.detector_evaluation("initial", "requires", 0.25);
    m.detector_evaluation("initial", "requires", 1.5);
    m.health_check("pre-lock", "pass", 0.5);
    m.health_check("post-lock", "blocked", 20.0);
    m.cluster_health_check("pre-lock", "healthy");
    m.cluster_health_update("pre-lock", "unhealthy", "success");
    m.cooldown_check("post-lock", "inactive");
    m.cooldown_activation("success");
    m.cooldown_clear("success");
    m.lock_attempt("contended", 0.02);
    m.lock_attempt("success", 0.02);
    m.lock_release("success", 0.01);
    m.orchestration_outcome("ready");
    m.orchestration_outcome("window_denied");
    m.transition("Idle", "Detecting");
    m.transition("Detecting", "WindowCheck");
    m.transition("WindowCheck", "Idle");
    m.transition("Idle", "Detecting");
    m.reboot("dry_run");
    m.reboot_blocked("window_denied");
    m.lock_held(true);
    m.lock_queue_position(3);
    m.lock_wait(45.0);
    m.reboot_duration(75.0);
    m.config_reload("applied");
    m.config_reload("invalid");
}

fn rendered() -> String {
    let m = Metrics::new("0.1.0", "abc1234");
    scripted(&m);
    m.render()
}

/// Fails with an "expected"/"got" block listing the lines that are missing.
fn assert_lines(text: &str, expected: &[&str]) {
    let lines: HashSet<&str> = text.lines().collect();
    let missing: Vec<&&str> = expected.iter().filter(|l| !lines.contains(**l)).collect();
    assert!(
        missing.is_empty(),
        "missing lines:\n{}\n--- got ---\n{text}",
        missing
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The sample lines (not comments) whose metric name is exactly `name`.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .collect()
}

#[test]
fn scripted_sequence_renders_the_expected_lines() {
    let text = rendered();
    let p = "clusterrebootd";
    let expected: Vec<String> = [
        "build_info{revision=\"abc1234\",version=\"0.1.0\"} 1",
        "kill_switch_checks_total{result=\"inactive\",stage=\"pre-lock\"} 2",
        "kill_switch_checks_total{result=\"active\",stage=\"post-lock\"} 1",
        "window_evaluations_total{result=\"allowed\"} 1",
        "detector_evaluations_total{phase=\"initial\",result=\"requires\"} 2",
        "detector_evaluation_seconds_sum{phase=\"initial\",result=\"requires\",unit=\"seconds\"} 1.75",
        "detector_evaluation_seconds_count{phase=\"initial\",result=\"requires\",unit=\"seconds\"} 2",
        "detector_evaluation_seconds_bucket{le=\"0.1\",phase=\"initial\",result=\"requires\",unit=\"seconds\"} 0",
        "detector_evaluation_seconds_bucket{le=\"0.25\",phase=\"initial\",result=\"requires\",unit=\"seconds\"} 1",
        "detector_evaluation_seconds_bucket{le=\"1.0\",phase=\"initial\",result=\"requires\",unit=\"seconds\"} 1",
        "detector_evaluation_seconds_bucket{le=\"2.5\",phase=\"initial\",result=\"requires\",unit=\"seconds\"} 2",
        "detector_evaluation_seconds_bucket{le=\"+Inf\",phase=\"initial\",result=\"requires\",unit=\"seconds\"} 2",
        "health_checks_total{phase=\"pre-lock\",result=\"pass\"} 1",
        "health_checks_total{phase=\"post-lock\",result=\"blocked\"} 1",
        "health_check_seconds_sum{phase=\"post-lock\",result=\"blocked\",unit=\"seconds\"} 20.0",
        "health_check_seconds_bucket{le=\"10.0\",phase=\"post-lock\",result=\"blocked\",unit=\"seconds\"} 0",
        "health_check_seconds_bucket{le=\"30.0\",phase=\"post-lock\",result=\"blocked\",unit=\"seconds\"} 1",
        "health_check_seconds_count{phase=\"pre-lock\",result=\"pass\",unit=\"seconds\"} 1",
        "cluster_health_checks_total{phase=\"pre-lock\",result=\"healthy\"} 1",
        "cluster_health_updates_total{phase=\"pre-lock\",result=\"success\",status=\"unhealthy\"} 1",
        "cooldown_checks_total{phase=\"post-lock\",result=\"inactive\"} 1",
        "cooldown_activations_total{result=\"success\"} 1",
        "cooldown_clears_total{result=\"success\"} 1",
        "lock_attempts_total{result=\"contended\"} 1",
        "lock_attempts_total{result=\"success\"} 1",
        "lock_acquire_seconds_count{result=\"success\",unit=\"seconds\"} 1",
        "lock_acquire_seconds_bucket{le=\"0.025\",result=\"contended\",unit=\"seconds\"} 1",
        "lock_release_seconds_sum{result=\"success\",unit=\"seconds\"} 0.01",
        "lock_release_seconds_bucket{le=\"0.005\",result=\"success\",unit=\"seconds\"} 0",
        "lock_release_seconds_bucket{le=\"0.01\",result=\"success\",unit=\"seconds\"} 1",
        "orchestration_outcomes_total{status=\"ready\"} 1",
        "orchestration_outcomes_total{status=\"window_denied\"} 1",
        "fsm_transitions_total{from=\"Idle\",to=\"Detecting\"} 2",
        "fsm_transitions_total{from=\"Detecting\",to=\"WindowCheck\"} 1",
        "fsm_transitions_total{from=\"WindowCheck\",to=\"Idle\"} 1",
        "fsm_state{state=\"Detecting\"} 1",
        "fsm_state{state=\"Idle\"} 0",
        "reboots_total{result=\"dry_run\"} 1",
        "reboot_blocked_total{reason=\"window_denied\"} 1",
        "lock_held 1",
        "lock_queue_position 3",
        "lock_wait_seconds_sum{unit=\"seconds\"} 45.0",
        "lock_wait_seconds_count{unit=\"seconds\"} 1",
        "lock_wait_seconds_bucket{le=\"30.0\",unit=\"seconds\"} 0",
        "lock_wait_seconds_bucket{le=\"60.0\",unit=\"seconds\"} 1",
        "reboot_duration_seconds_sum{unit=\"seconds\"} 75.0",
        "reboot_duration_seconds_bucket{le=\"60.0\",unit=\"seconds\"} 0",
        "reboot_duration_seconds_bucket{le=\"120.0\",unit=\"seconds\"} 1",
        "reboot_duration_seconds_bucket{le=\"+Inf\",unit=\"seconds\"} 1",
        "config_reloads_total{result=\"applied\"} 1",
        "config_reloads_total{result=\"invalid\"} 1",
    ]
    .iter()
    .map(|l| format!("{p}_{l}"))
    .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&text, &expected);

    // Series that were never observed do not exist (no invented zeros).
    assert_eq!(
        samples(&text, "clusterrebootd_window_evaluations_total").len(),
        1
    );
    assert_eq!(samples(&text, "clusterrebootd_reboots_total").len(), 1);
    // Every histogram series has all its buckets plus +Inf.
    assert_eq!(
        samples(&text, "clusterrebootd_lock_release_seconds_bucket").len(),
        OPERATION_BUCKETS.len() + 1
    );
    assert_eq!(
        samples(&text, "clusterrebootd_lock_wait_seconds_bucket").len(),
        LOCK_WAIT_BUCKETS.len() + 1
    );
    assert_eq!(
        samples(&text, "clusterrebootd_reboot_duration_seconds_bucket").len(),
        REBOOT_BUCKETS.len() + 1
    );
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
}

#[test]
fn a_fresh_registry_exposes_build_info_state_and_lock_gauges() {
    let text = Metrics::new("0.1.0", "abc1234").render();
    let mut expected = vec![
        "clusterrebootd_build_info{revision=\"abc1234\",version=\"0.1.0\"} 1".to_owned(),
        "clusterrebootd_lock_held 0".to_owned(),
        "clusterrebootd_lock_queue_position 0".to_owned(),
        "clusterrebootd_lock_waiting_for_group 0".to_owned(),
        "clusterrebootd_fsm_state{state=\"Idle\"} 1".to_owned(),
    ];
    expected.extend(
        STATES[1..]
            .iter()
            .map(|s| format!("clusterrebootd_fsm_state{{state=\"{s}\"}} 0")),
    );
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&text, &expected);
    // Labelled Go families appear with their first observation, as in Go.
    assert!(!text.contains("kill_switch_checks"), "got:\n{text}");
}

/// `fsm_state` values by state, asserting all nine states are present.
fn fsm_state(m: &Metrics) -> BTreeMap<String, String> {
    let text = m.render();
    let got: BTreeMap<String, String> = samples(&text, "clusterrebootd_fsm_state")
        .iter()
        .filter_map(|l| {
            let state = l.split('"').nth(1)?;
            let value = l.rsplit(' ').next()?;
            Some((state.to_owned(), value.to_owned()))
        })
        .collect();
    let names: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(names, STATES.into_iter().collect(), "got:\n{text}");
    got
}

fn states_at_one(m: &Metrics) -> Vec<String> {
    fsm_state(m)
        .into_iter()
        .filter(|(_, v)| v == "1")
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn fsm_state_has_exactly_one_state_at_one() {
    let m = Metrics::new("v", "r");
    assert_eq!(states_at_one(&m), ["Idle"]);
    for (from, to) in STATES.iter().zip(STATES.iter().skip(1)) {
        m.transition(from, to);
        assert_eq!(states_at_one(&m), [*to]);
    }
    m.set_state("Locking");
    assert_eq!(states_at_one(&m), ["Locking"]);
    // An unknown name is a caller bug: the gauge stays consistent.
    m.set_state("Nonsense");
    assert_eq!(states_at_one(&m), ["Locking"]);
    let text = m.render();
    assert_eq!(
        samples(&text, "clusterrebootd_fsm_transitions_total").len(),
        8
    );
}

#[test]
fn states_are_the_state_machine_names() {
    let fsm: Vec<&str> = crate::fsm::StateName::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(fsm, STATES);
}

/// `(name, type, help)` rows of the GO-COMPAT §7 table (names without the prefix).
fn go_table() -> Vec<(String, String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/GO-COMPAT.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc
        .split("\n## 7. Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let rows: Vec<(String, String, String)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].to_owned(),
                cells[4].to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 15, "GO-COMPAT §7 table changed: {rows:?}");
    rows
}

/// Family name (as in `# TYPE`) and type of every metric we export, new ones included.
fn all_families() -> Vec<(String, String)> {
    let mut families: Vec<(String, String)> = go_table()
        .into_iter()
        .map(|(name, ty, _)| (name, ty))
        .collect();
    for (name, ty) in [
        ("build_info", "gauge"),
        ("fsm_state", "gauge"),
        ("fsm_transitions_total", "counter"),
        ("reboots_total", "counter"),
        ("reboot_blocked_total", "counter"),
        ("lock_held", "gauge"),
        ("lock_queue_position", "gauge"),
        ("lock_waiting_for_group", "gauge"),
        ("lock_wait_seconds", "histogram"),
        ("reboot_duration_seconds", "histogram"),
        ("config_reloads_total", "counter"),
    ] {
        families.push((name.to_owned(), ty.to_owned()));
    }
    families
        .into_iter()
        .map(|(name, ty)| {
            // OpenMetrics names a counter family without `_total`.
            let family = match (ty.as_str(), name.strip_suffix("_total")) {
                ("counter", Some(base)) => base.to_owned(),
                _ => name,
            };
            (format!("{PREFIX}_{family}"), ty)
        })
        .collect()
}

#[test]
fn every_metric_has_help_and_type_and_go_helps_match() {
    let text = rendered();
    let mut missing = Vec::new();
    for (family, ty) in all_families() {
        for line in [format!("# TYPE {family} {ty}"), format!("# HELP {family} ")] {
            if !text.lines().any(|l| l.starts_with(&line)) {
                missing.push(line);
            }
        }
    }
    for (name, ty, help) in go_table() {
        let family = match ty.as_str() {
            "counter" => name.trim_end_matches("_total").to_owned(),
            _ => name,
        };
        let line = format!("# HELP {PREFIX}_{family} {help}");
        if !text.lines().any(|l| l == line) {
            missing.push(line);
        }
    }
    assert!(
        missing.is_empty(),
        "expected:\n{}\n--- got ---\n{text}",
        missing.join("\n")
    );
    let declared = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(declared, all_families().len(), "got:\n{text}");
}

#[test]
fn operations_doc_lists_every_metric() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc.split("\n## Metrics").nth(1).unwrap_or("");
    let missing: Vec<String> = all_families()
        .into_iter()
        .map(|(family, ty)| match ty.as_str() {
            "counter" => format!("`{family}_total`"),
            _ => format!("`{family}`"),
        })
        .filter(|name| !section.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/OPERATIONS.md \"Metrics\" does not mention: {missing:?}"
    );
}

#[test]
fn label_values_that_are_not_identifiers_are_not_exported() {
    assert_eq!(label_value("pre-lock"), "pre-lock");
    assert_eq!(label_value("kill_switch_active"), "kill_switch_active");
    for bad in [
        "",
        "password=hunter2 token",
        "a\"b",
        "x\ny",
        "/etc/secret",
        &"a".repeat(MAX_LABEL_VALUE_LEN + 1),
    ] {
        assert_eq!(label_value(bad), INVALID_LABEL_VALUE, "{bad:?}");
    }
    let m = Metrics::new("0.1.0+dirty", "abc");
    m.reboot_blocked("etcd: auth failed for user root password s3cret");
    let text = m.render();
    assert!(!text.contains("s3cret"), "got:\n{text}");
    assert_lines(
        &text,
        &[
            "clusterrebootd_reboot_blocked_total{reason=\"invalid\"} 1",
            "clusterrebootd_build_info{revision=\"abc\",version=\"0.1.0+dirty\"} 1",
        ],
    );
}

// ----------------------------------------------------------------- strict OpenMetrics checker

/// Checks the OpenMetrics text grammar strictly enough to catch what Prometheus would reject:
/// metadata lines, names, label sets, values, family grouping, type suffixes, duplicates,
/// histogram `le` buckets and the final `# EOF`. Returns every problem with its line number.
fn check_openmetrics(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(body) = text.strip_suffix("# EOF\n") else {
        return vec!["does not end with \"# EOF\\n\"".to_owned()];
    };
    // family -> (type, has help, unit)
    let mut families: BTreeMap<String, (Option<String>, bool, Option<String>)> = BTreeMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut inf_buckets: HashSet<String> = HashSet::new();
    let mut counts: HashSet<String> = HashSet::new();

    let mut enter = |name: &str, current: &mut Option<String>, errors: &mut Vec<String>, n| {
        if current.as_deref() != Some(name) {
            if let Some(prev) = current.take() {
                closed.insert(prev);
            }
            if closed.contains(name) {
                errors.push(format!("line {n}: family {name} is not contiguous"));
            }
            *current = Some(name.to_owned());
        }
    };

    if !body.is_empty() && !body.ends_with('\n') {
        return vec!["\"# EOF\" is not on a line of its own".to_owned()];
    }
    for (i, line) in body.split_terminator('\n').enumerate() {
        let n = i + 1;
        if line.is_empty() {
            errors.push(format!("line {n}: empty line"));
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let (Some(kind), Some(name)) = (kind, name) else {
                errors.push(format!("line {n}: bad comment {line:?}"));
                continue;
            };
            if !is_metric_name(name) {
                errors.push(format!("line {n}: bad family name {name:?}"));
            }
            enter(name, &mut current, &mut errors, n);
            let entry = families.entry(name.to_owned()).or_default();
            match (kind, rest) {
                ("TYPE", Some(ty)) => {
                    const TYPES: [&str; 8] = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ];
                    if !TYPES.contains(&ty) {
                        errors.push(format!("line {n}: unknown type {ty:?}"));
                    }
                    if entry.0.replace(ty.to_owned()).is_some() {
                        errors.push(format!("line {n}: second TYPE for {name}"));
                    }
                }
                ("HELP", Some(help)) => {
                    if entry.1 {
                        errors.push(format!("line {n}: second HELP for {name}"));
                    }
                    if !escapes_ok(help, false) {
                        errors.push(format!("line {n}: bad escape in HELP"));
                    }
                    entry.1 = true;
                }
                ("UNIT", Some(unit)) => {
                    if !name.ends_with(&format!("_{unit}")) {
                        errors.push(format!("line {n}: {name} does not end with _{unit}"));
                    }
                    entry.2 = Some(unit.to_owned());
                }
                _ => errors.push(format!("line {n}: unknown comment {line:?}")),
            }
            continue;
        }
        if line.starts_with('#') {
            errors.push(format!("line {n}: bad comment {line:?}"));
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("line {n}: {e}: {line:?}"));
                continue;
            }
        };
        let Some(family) = current.clone() else {
            errors.push(format!("line {n}: sample before any family"));
            continue;
        };
        let ty = families
            .get(&family)
            .and_then(|f| f.0.clone())
            .unwrap_or_default();
        let suffix = sample.name.strip_prefix(family.as_str());
        let allowed: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[],
        };
        let Some(suffix) = suffix.filter(|s| allowed.contains(s)) else {
            errors.push(format!(
                "line {n}: sample {} does not belong to family {family} ({ty:?})",
                sample.name
            ));
            continue;
        };
        let mut labels = sample.labels.clone();
        if !series.insert(format!("{}{:?}", sample.name, labels)) {
            errors.push(format!("line {n}: duplicate series"));
        }
        if ty == "counter" && suffix == "_total" && (sample.value.is_nan() || sample.value < 0.0) {
            errors.push(format!("line {n}: counter below zero"));
        }
        if ty == "histogram" {
            let le = labels.remove("le");
            let key = format!("{family}{labels:?}");
            match (suffix, le) {
                ("_bucket", Some(le)) => {
                    if le == "+Inf" {
                        inf_buckets.insert(key);
                    } else if le.parse::<f64>().is_err() {
                        errors.push(format!("line {n}: bad le {le:?}"));
                    }
                }
                ("_bucket", None) => errors.push(format!("line {n}: bucket without le")),
                (_, Some(_)) => errors.push(format!("line {n}: le outside a bucket")),
                ("_count", None) => {
                    counts.insert(key);
                }
                _ => {}
            }
        }
    }
    for (name, (ty, help, _)) in &families {
        if ty.is_none() {
            errors.push(format!("family {name} has no TYPE"));
        }
        if !help {
            errors.push(format!("family {name} has no HELP"));
        }
    }
    if counts != inf_buckets {
        errors.push(format!(
            "histogram series without both _count and le=\"+Inf\": {:?}",
            counts
                .symmetric_difference(&inf_buckets)
                .collect::<Vec<_>>()
        ));
    }
    errors
}

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Only `\\`, `\n` (and in label values `\"`) escapes; no raw newline.
fn escapes_ok(s: &str, quotes: bool) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') | Some('n') => {}
                Some('"') if quotes => {}
                _ => return false,
            },
            '"' if quotes => return false,
            '\n' => return false,
            _ => {}
        }
    }
    true
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut s = inner;
        loop {
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = s.find('=').ok_or("label without =")?;
            let key = &s[..eq];
            if !is_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            let v = s[eq + 1..]
                .strip_prefix('"')
                .ok_or("unquoted label value")?;
            let mut end = None;
            let mut escaped = false;
            for (i, c) in v.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label value")?;
            if !escapes_ok(&v[..end], true) {
                return Err("bad escape in label value".to_owned());
            }
            if labels.insert(key.to_owned(), v[..end].to_owned()).is_some() {
                return Err(format!("duplicate label {key}"));
            }
            s = &v[end + 1..];
            if let Some(after) = s.strip_prefix(',') {
                s = after;
                if s.starts_with('}') {
                    return Err("trailing comma".to_owned());
                }
            } else if !s.starts_with('}') {
                return Err("labels not separated by ','".to_owned());
            }
        }
    }
    let value_text = rest.strip_prefix(' ').ok_or("no space before value")?;
    let mut parts = value_text.split(' ');
    let value = parse_number(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        parse_number(ts).map_err(|e| format!("timestamp: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text (exemplars are not expected)".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) =>
        {
            s.parse().map_err(|_| format!("bad number {s:?}"))
        }
        _ => Err(format!("bad number {s:?}")),
    }
}

#[test]
fn render_passes_the_strict_openmetrics_checker() {
    for text in [rendered(), Metrics::new("0.1.0", "r").render()] {
        let errors = check_openmetrics(&text);
        assert!(
            errors.is_empty(),
            "errors:\n{}\n--- got ---\n{text}",
            errors.join("\n")
        );
    }
}

#[test]
fn the_checker_rejects_broken_expositions() {
    let good = "# HELP a_x X.\n# TYPE a_x counter\na_x_total{k=\"v\"} 1\n# EOF\n";
    assert_eq!(check_openmetrics(good), Vec::<String>::new());
    for bad in [
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total 1\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_y_total 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total{k=v} 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total{k=\"v\",} 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total{1k=\"v\"} 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total one\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total 1\na_x_total 2\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x counter\na_x_total 1\n# EOF\nmore\n",
        "# TYPE a_x counter\na_x_total 1\n# EOF\n",
        "# HELP a_x X.\n# TYPE a_x weird\na_x 1\n# EOF\n",
        "# HELP a_h H.\n# TYPE a_h histogram\na_h_count 1\na_h_sum 1\n# EOF\n",
        "# HELP a_g G.\n# TYPE a_g gauge\na_g 1\n# HELP a_x X.\n# TYPE a_x gauge\na_x 1\n# HELP a_g G.\n# EOF\n",
    ] {
        assert!(
            !check_openmetrics(bad).is_empty(),
            "checker accepted:\n{bad}"
        );
    }
}

// ------------------------------------------------------------------------------- promtool

#[test]
fn promtool_check_metrics_accepts_render() {
    let text = rendered();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed (Debian package `prometheus`): run scripts/install-deps"
        ),
        Err(e) => panic!("starting promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 3 = lint problems only. The accepted ones come from OpenMetrics naming a counter
    // family without `_total`: the old-format parser sees `…_total` samples without HELP.
    let lint_ok = |l: &str| {
        l.split_once(' ')
            .is_some_and(|(name, problem)| name.ends_with("_total") && problem == "no help text")
    };
    let ok = match out.status.code() {
        Some(0) => true,
        Some(3) => report.lines().all(lint_ok),
        _ => false,
    };
    assert!(
        ok,
        "promtool check metrics: {}\n{report}\n--- input ---\n{text}",
        out.status
    );
}

// ----------------------------------------------------------------------------------- HTTP

/// One HTTP/1.1 request over a raw TCP connection: (status code, headers lower-cased, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut status = status_line.split(' ');
    assert_eq!(status.next(), Some("HTTP/1.1"), "{status_line}");
    let code = status.next().unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (code, headers, body.to_owned())
}

#[tokio::test]
async fn serve_answers_metrics_and_404_elsewhere() {
    let metrics = Arc::new(Metrics::new("0.1.0", "abc1234"));
    metrics.reboot("executed");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(metrics.clone(), listener));

    let (code, headers, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "body:\n{body}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some(CONTENT_TYPE)
    );
    assert!(body.contains("clusterrebootd_build_info{"), "body:\n{body}");
    assert!(
        body.contains("clusterrebootd_reboots_total{result=\"executed\"} 1"),
        "body:\n{body}"
    );
    assert!(body.ends_with("# EOF\n"), "body:\n{body}");

    for path in ["/", "/other", "/metrics/x"] {
        let (code, _, body) = get(addr, path).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert!(!body.contains("clusterrebootd_"), "{path}: {body}");
    }

    assert!(!server.is_finished(), "server ended: {:?}", server.await);
    server.abort();
}
