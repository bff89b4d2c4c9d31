//! `simulate --cluster N`: the rollout planner through the real binary, checked against
//! hand-computed rollouts.

use super::{VALID, outcome, write};

/// 4 nodes, one slot, 10 min reboots, 10 s health checks, a daily 01:00-02:00 UTC window, the
/// rollout starting at 00:30 (window closed) with the given cooldown.
fn plan(cooldown_sec: u64, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{VALID}max_concurrent_reboots: 1\nmin_reboot_interval_sec: {cooldown_sec}\ncheck_interval_sec: 60\nwindows:\n  timezone: UTC\n  allow: [\"* 01:00-02:00\"]\n"
    );
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let mut args = vec![
        "simulate",
        "--cluster",
        "4",
        "--config",
        &path,
        "--reboot-duration",
        "10m",
        "--health-duration",
        "10s",
        "--start",
        "2026-12-01T00:30:00Z",
    ];
    args.extend_from_slice(extra);
    outcome(&args)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn four_ten_minute_reboots_fit_a_one_hour_window() {
    // Hand-computed: the window opens 01:00; each node needs 10 s (pre-lock health) + 10 s
    // (health under the slot) before its reboot, 10 min down, 10 s post-reboot health, and
    // the next node's 10 s check under the slot: reboots start at about 01:00:20, 01:10:40,
    // 01:21:00, 01:31:20, all inside 01:00-02:00.
    let (code, out, err) = plan(0, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["windows"][0]["opens"], "2026-12-01T01:00:00Z");
    assert_eq!(v["windows"][0]["closes"], "2026-12-01T02:00:00Z");
    assert_eq!(v["windows"][0]["reboots"], 4, "{out}");
    assert_eq!(v["finished"], true);
    let makespan = v["makespan_sec"].as_u64().expect("makespan");
    // Last node back at about 01:41:40 + 10 s, i.e. ~72 min after the 00:30 start.
    assert!((4_250..=4_400).contains(&makespan), "makespan {makespan}");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_fifteen_minute_cooldown_leaves_room_for_three() {
    // Hand-computed: after each recovery the cluster waits 15 min, so reboots start at about
    // 01:00:20, 01:25:40, 01:51:00 and the fourth (~02:16) misses the window; it runs in the
    // next day's window.
    let (code, out, err) = plan(900, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["windows"][0]["reboots"], 3, "{out}");
    assert_eq!(v["windows"][1]["opens"], "2026-12-02T01:00:00Z");
    assert_eq!(v["windows"][1]["reboots"], 1, "{out}");
    let issued: Vec<&str> = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|n| n["reboots"][0]["issued"].as_str())
        .collect();
    assert!(
        issued.iter().all(
            |t| ("2026-12-01T01:00:00Z".."2026-12-01T02:00:00Z").contains(t)
                || ("2026-12-02T01:00:00Z".."2026-12-02T02:00:00Z").contains(t)
        ),
        "every reboot inside a window: {issued:?}"
    );
}

#[test]
fn text_gantt_and_svg_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("plan.svg");
    let svg_arg = svg.display().to_string();
    let (code, out, err) = plan(0, &["--svg", &svg_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("rollout plan: 4 nodes, max_concurrent_reboots 1"),
        "{out}"
    );
    // One duration formatter, spaced, and instants to the second (issue #19).
    assert!(out.contains("reboot 10m each, health check 10s"), "{out}");
    assert!(out.lines().any(|l| l == "reboots:"), "{out}");
    assert!(!out.contains(".000Z") && !out.contains("days"), "{out}");
    assert!(
        out.contains(
            "#1: Tue 2026-12-01 01:00:00 UTC until Tue 2026-12-01 02:00:00 UTC: 4 reboot(s) fit"
        ),
        "{out}"
    );
    for n in 1..=4 {
        let row = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("node-{n} ")) && l.contains('|'))
            .unwrap_or_else(|| panic!("no Gantt row for node-{n}: {out}"));
        assert!(
            row.contains('R') || row.contains('#'),
            "node-{n} reboots on the chart: {row}"
        );
    }
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg"), "{chart}");
    assert!(chart.contains("node-4") && chart.contains("maintenance window"));
    assert!(chart.trim_end().ends_with("</svg>"));
}

#[test]
fn same_seed_same_bytes_and_seeds_differ() {
    let a = plan(0, &["--json", "--seed", "7"]);
    let b = plan(0, &["--json", "--seed", "7"]);
    assert_eq!(a.0, 0, "{}{}", a.1, a.2);
    assert_eq!(a.1, b.1, "same seed, same output");
    let c = plan(0, &["--json", "--seed", "8"]);
    assert_ne!(a.1, c.1, "the seed changes the jitter, so the exact times");
}

#[test]
fn bad_planner_arguments_are_usage_errors() {
    let (code, _, err) = plan(0, &["--start", "yesterday"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--start"), "{err}");
    let (code, _, err) = super::outcome(&["simulate", "--concurrency", "2"]);
    assert_eq!(code, 64, "planner flags need --cluster: {err}");
}

#[test]
fn windows_that_never_open_are_said_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{VALID}windows:\n  timezone: UTC\n  deny: [\"* 00:00-23:59\", \"* 23:59-00:00\"]\n"
    );
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "3",
        "--config",
        &path,
        "--start",
        "2026-12-01T00:30:00Z",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("none: the windows never allow a reboot"),
        "{out}"
    );
    assert!(out.contains("not finished: 0 of 3 nodes done"), "{out}");
    assert!(
        !out.lines().any(|l| l == "reboots:"),
        "no empty section header (issue #19): {out}"
    );
}

/// 4 nodes, 10 min reboots, 10 s health checks, no window, no cooldown, updates landing over
/// one minute, with `--concurrency K`.
fn spread_plan(k: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!("{VALID}check_interval_sec: 60\nmin_reboot_interval_sec: 0\n");
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "4",
        "--config",
        &path,
        "--concurrency",
        k,
        "--reboot-duration",
        "10m",
        "--health-duration",
        "10s",
        "--arrivals",
        "1m",
        "--start",
        "2026-12-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    json(&out)
}

#[test]
fn two_slots_halve_the_rollout_with_spread_arrivals() {
    // Hand-computed: every update lands within the first minute. With one slot the four
    // reboots run one after another: 4 × (10 min down + 10 s post-reboot health) plus the
    // first node's 20 s of checks and 10 s under the slot per hand-off: about 41.2 min, at
    // most 41.2 + 1 min if the first arrival is late in the minute. With two slots the second
    // node arrives while the first reboots and goes down at once (planned downtime does not
    // block); the last two queue behind them and start as the first two recover: two rounds,
    // about 20.7 min plus at most the minute of arrivals. (The previous version blocked every
    // node behind a peer's reboot and never ran two together: same makespan for K=2 as K=1.)
    let one = spread_plan("1");
    let two = spread_plan("2");
    let m1 = one["makespan_sec"].as_u64().expect("makespan");
    let m2 = two["makespan_sec"].as_u64().expect("makespan");
    assert!((2_440..=2_540).contains(&m1), "K=1 makespan {m1}: {one}");
    assert!((1_220..=1_330).contains(&m2), "K=2 makespan {m2}: {two}");
    let ratio = m2 as f64 / m1 as f64;
    assert!((0.45..=0.55).contains(&ratio), "K=2/K=1 = {ratio:.2}");
}

/// `simulate --cluster 6 --concurrency 3` with or without `--groups db=4x1,web=2x2`.
fn grouped_plan(groups: Option<&str>) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!("{VALID}min_reboot_interval_sec: 0\ncheck_interval_sec: 60\n");
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let mut args = vec![
        "simulate",
        "--cluster",
        "6",
        "--config",
        &path,
        "--concurrency",
        "3",
        "--reboot-duration",
        "10m",
        "--health-duration",
        "10s",
        "--start",
        "2026-12-01T00:00:00Z",
        "--json",
    ];
    if let Some(g) = groups {
        args.extend_from_slice(&["--groups", g]);
    }
    let (code, out, err) = outcome(&args);
    assert_eq!(code, 0, "{out}{err}");
    json(&out)
}

#[test]
fn a_one_slot_group_serialises_its_members_under_a_larger_cluster_cap() {
    // Hand-computed (issue #16): 6 nodes, K_total 3, all updates at the start, every window
    // open. Without groups: two rounds of three, each 10 s pre-lock health + 10 s under the
    // slot + 10 min down + 10 s post-reboot health (the second round's 10 s under the slot
    // follows the first's recovery): ~630 s + ~620 s ≈ 1 250 s.
    // With db=4x1 (node-1..4, one slot) and web=2x2 (node-5, node-6): round one is node-1,
    // node-5 and node-6 (3 cluster slots); the other db nodes wait in their group's pool,
    // holding no cluster slot, and follow one at a time: node-1 down at 20 s, recovered 630 s;
    // node-2 down 640 s, recovered 1 250 s; node-3 down 1 260 s, recovered 1 870 s; node-4 down
    // 1 880 s, recovered 2 490 s — the makespan of a four-node one-slot rollout.
    let plain = grouped_plan(None);
    let grouped = grouped_plan(Some("db=4x1,web=2x2"));
    let m0 = plain["makespan_sec"].as_u64().expect("makespan");
    let m = grouped["makespan_sec"].as_u64().expect("makespan");
    assert!((1_220..=1_300).contains(&m0), "no groups: {m0}: {plain}");
    assert!((2_460..=2_540).contains(&m), "grouped: {m}: {grouped}");
    let issued = |v: &serde_json::Value, node: usize| -> u64 {
        let at = v["timeline"][node]["reboots"][0]["issued"]
            .as_str()
            .expect("issued");
        let t: jiff::Timestamp = at.parse().expect("time");
        let start: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("start");
        t.duration_since(start).as_secs() as u64
    };
    // The web pair and the first db node go in the first round; db nodes ~620 s apart.
    for node in [0, 4, 5] {
        assert!(issued(&grouped, node) < 60, "node-{}: {grouped}", node + 1);
    }
    for node in 1..4 {
        let gap = issued(&grouped, node) - issued(&grouped, node - 1);
        assert!((615..=640).contains(&gap), "db gap {gap}: {grouped}");
    }
    assert_eq!(grouped["groups"][0]["group"], "db");
    assert_eq!(grouped["groups"][1]["nodes"][1], "node-6");
    assert_eq!(grouped["violations"].as_array().map(Vec::len), Some(0));
}

#[test]
fn bad_groups_are_usage_errors_naming_the_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yaml", VALID.as_bytes());
    for (groups, says) in [
        ("db=3", "no 'x'"),
        ("db=0x1", "COUNT must be"),
        ("db=2x0", "K must be"),
        ("db/x=1x1", "the name must be"),
        ("db=3x1,web=2x1", "more members than the 4 nodes"),
    ] {
        let (code, out, err) = outcome(&[
            "simulate",
            "--cluster",
            "4",
            "--config",
            &path,
            "--groups",
            groups,
        ]);
        assert_eq!(code, 64, "{groups}: {out}{err}");
        assert!(
            err.contains(says) && err.contains(groups.split(',').next_back().unwrap_or_default()),
            "{groups}: {err}"
        );
    }
}

/// Windows written in Europe/Berlin: the plan's times and the chart's axis are Berlin wall
/// clock, and a node still queued when the window closes is listed with the reason (issue
/// #19). Hand-computed: start 00:30Z = 01:30 CET; window 02:00-03:00 CET; 25-minute reboots
/// one at a time, ~20 s of checks each: reboots at ~02:00:20, ~02:26, ~02:51 CET; node-4 is
/// still queued at 03:00 and leaves the queue then.
#[test]
fn times_are_in_the_windows_zone_and_a_node_that_left_the_queue_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{VALID}max_concurrent_reboots: 1\ncheck_interval_sec: 60\nwindows:\n  timezone: Europe/Berlin\n  allow: [\"* 02:00-03:00\"]\n"
    );
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let svg = dir.path().join("plan.svg");
    let svg_arg = svg.display().to_string();
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "4",
        "--config",
        &path,
        "--reboot-duration",
        "25m",
        "--health-duration",
        "10s",
        "--start",
        "2026-12-01T00:30:00Z",
        "--svg",
        &svg_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("start:     Tue 2026-12-01 01:30:00 CET"),
        "{out}"
    );
    assert!(
        out.contains(
            "#1: Tue 2026-12-01 02:00:00 CET until Tue 2026-12-01 03:00:00 CET: 3 reboot(s) fit"
        ),
        "{out}"
    );
    let exits: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "left the queue without rebooting:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        exits.iter().any(|l| l.trim_start().starts_with("node-4 ")
            && l.contains("Tue 2026-12-01 03:00")
            && l.contains("maintenance window closed while waiting for a slot")),
        "node-4 leaves the queue when the window closes: {out}"
    );
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.contains("(Europe/Berlin)"), "{chart}");
    assert!(chart.contains(">Tue 01:"), "axis in Berlin time: {chart}");
    assert!(
        chart.contains("node-4 left the queue at"),
        "the chart marks the exit: {chart}"
    );
}

/// `simulate --cluster 40 --json | head -1`: the reader goes away after one line; the planner ends
/// quietly instead of panicking in `println!` on the closed pipe.
#[test]
fn a_closed_stdout_ends_the_planner_quietly() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yaml", VALID.as_bytes());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clusterrebootd"))
        // --json: megabytes, far more than a pipe holds, so the planner is still writing
        // when the reader goes away.
        .args(["simulate", "--cluster", "40", "--json", "--config", &path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read one line");
    assert_eq!(first.trim_end(), "{", "{first}");
    // The pipe is closed here (the reader is dropped); the rest of the plan cannot be written.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
