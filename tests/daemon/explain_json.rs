//! `status --explain --json` has the documented schema (docs/explain.schema.json) in every
//! case: a running daemon, a stopped one, no state file, a damaged state file, a damaged
//! journal, and a daemon whose etcd is unreachable (issue #19).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use serde_json::Value;

use crate::node;

use node::*;

const SCHEMA: &str = include_str!("../../docs/explain.schema.json");

/// Checks `v` against the subset of JSON Schema the document uses (`type`, `enum`,
/// `required`, `properties`, `additionalProperties: false`, `items`); returns every mismatch.
fn check(schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            out.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let Value::Object(obj) = v {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or("");
            if !obj.contains_key(r) {
                out.push(format!("{at}: required key {r:?} missing"));
            }
        }
        for (k, sub) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, sub, &format!("{at}.{k}"), out),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at}: key {k:?} is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(s, item, &format!("{at}[{i}]"), out);
        }
    }
}

/// `status --explain --json` of `n`, checked against the schema; returns the object.
fn explain_json(n: &Node, case: &str) -> Value {
    let (code, out, err) = n.once(&["status", "--explain", "--json"]);
    assert_eq!(code, 0, "{case}: stdout:\n{out}\nstderr:\n{err}");
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{case}: not one JSON object ({e}):\n{out}"));
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema parses");
    let mut problems = Vec::new();
    check(&schema, &v, "$", &mut problems);
    assert!(problems.is_empty(), "{case}: {problems:#?}\n{v:#}");
    v
}

#[test]
fn the_checker_finds_a_missing_key_a_stray_key_and_a_wrong_type() {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema parses");
    let mut p = Vec::new();
    check(
        &schema,
        &serde_json::json!({"version": 2, "daemon_running": "no", "extra": 1}),
        "$",
        &mut p,
    );
    let text = p.join("\n");
    for want in [
        "required key \"node\" missing",
        "key \"extra\" is not in the schema",
        "$.daemon_running: \"no\" is not of type",
        "$.version: 2 is not one of",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

#[test]
fn every_case_has_the_documented_schema() {
    // No state file: the daemon never ran.
    let n = Node::new("");
    std::fs::write(n.path("block"), "").expect("block file");
    let v = explain_json(&n, "no state file");
    assert_eq!(v["daemon_running"], false, "{v:#}");
    assert_eq!(v["node"], "node-1", "{v:#}");
    assert_eq!(v["version"], 1, "{v:#}");

    // A running daemon, health-blocked.
    let mut daemon = n.start();
    n.wait_for("a health-blocked pass", 30, |n| {
        n.state()["outcome"] == "health_blocked"
    });
    let v = explain_json(&n, "running daemon");
    assert_eq!(v["daemon_running"], true, "{v:#}");
    assert_eq!(v["blocked_by"]["gate"], "health_script", "{v:#}");
    assert_eq!(v["hint"], Value::Null, "{v:#}");

    // A damaged journal while it runs: the damage is named in `reason`.
    let journal = n.path("state/journal.jsonl");
    let mut text = std::fs::read(&journal).expect("journal");
    text.extend_from_slice(b"{\"torn\": \n\x00garbage\n");
    std::fs::write(&journal, &text).expect("damage the journal");
    let v = explain_json(&n, "damaged journal");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("journal")),
        "{v:#}"
    );

    // No journal at all.
    std::fs::remove_file(&journal).expect("remove the journal");
    explain_json(&n, "no journal");

    // The daemon stopped.
    sigterm(&mut daemon);
    let v = explain_json(&n, "stopped daemon");
    assert_eq!(v["daemon_running"], false, "{v:#}");

    // A damaged state file.
    std::fs::write(n.path("run/state.json"), "{not json").expect("damage the state file");
    let v = explain_json(&n, "damaged state file");
    assert_eq!(v["daemon_running"], false, "{v:#}");
}

#[test]
fn a_daemon_whose_etcd_is_unreachable_has_the_documented_schema() {
    // Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    let n = Node::named(
        "node-1",
        "lock_backend: etcd\netcd_endpoints: [http://127.0.0.1:9]\n",
    );
    let mut daemon = n.start();
    n.wait_for("the etcd gate", 30, |n| {
        n.path("run/state.json").exists()
            && explain_json(n, "etcd unreachable")["blocked_by"]["gate"] == "etcd_unavailable"
    });
    let v = explain_json(&n, "etcd unreachable");
    assert_eq!(v["daemon_running"], true, "{v:#}");
    sigterm(&mut daemon);
}
