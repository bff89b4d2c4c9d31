//! The planner chart as an operator sees it (issue #19): `simulate --cluster --svg` rendered to
//! pixels by `rsvg-convert` (librsvg, `scripts/install-deps`), and each element's colour is
//! really on the picture (above the axis and the legend): the window bar, idle, queued, down,
//! recovering, the cluster cooldown; the window's yellow is not the Recovering green.

use std::collections::HashSet;

use clusterrebootd::fsm::StateName;
use clusterrebootd::sim::report::Activity;
use clusterrebootd::sim::svg::{COOLDOWN_COLOUR, WINDOW_COLOUR, colour};

use super::{VALID, outcome, write};

fn rgb(hex: &str) -> [u8; 3] {
    let h = hex.trim_start_matches('#');
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).expect("hex colour");
    [byte(0), byte(2), byte(4)]
}

/// Every RGB colour of an 8-bit RGB(A) PNG above row `max_y` (the chart, not the axis and
/// the legend below it), with how many pixels have it.
fn colours(png_bytes: &[u8], below_chart: u32) -> std::collections::HashMap<[u8; 3], usize> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut out = std::collections::HashMap::new();
    let row = info.line_size;
    let rows = info.height.saturating_sub(below_chart) as usize;
    for px in buf[..row * rows].chunks_exact(step) {
        if step == 4 && px[3] < 255 {
            continue;
        }
        *out.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
    }
    out
}

#[test]
fn the_chart_rendered_to_png_shows_every_element_in_its_own_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{VALID}max_concurrent_reboots: 1\nmin_reboot_interval_sec: 600\ncheck_interval_sec: 60\nwindows:\n  timezone: UTC\n  allow: [\"* 01:00-03:00\"]\n"
    );
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let svg = dir.path().join("plan.svg");
    let svg_arg = svg.display().to_string();
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "3",
        "--config",
        &path,
        "--reboot-duration",
        "10m",
        "--health-duration",
        "10s",
        "--start",
        "2026-12-01T00:30:00Z",
        "--svg",
        &svg_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let png_path = dir.path().join("plan.png");
    let status = std::process::Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png_path)
        .arg(&svg)
        .status()
        .expect("rsvg-convert (librsvg2-bin) is needed: run scripts/install-deps");
    assert!(status.success(), "rsvg-convert failed on {}", svg.display());
    // The axis labels and the legend take the bottom 70 px of the chart (src/sim/svg.rs).
    let seen = colours(&std::fs::read(&png_path).expect("png written"), 70);

    let window = rgb(WINDOW_COLOUR);
    let recovering = rgb(colour(Activity::State(StateName::Recovering)));
    let dist = |a: [u8; 3], b: [u8; 3]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (i32::from(*x) - i32::from(y)).abs())
            .sum::<i32>()
    };
    assert!(
        dist(window, recovering) > 150,
        "the window bar and Recovering must look different: {window:?} vs {recovering:?}"
    );
    // With the pixels each must have on the chart itself (a 10 s recovery is a thin line).
    let elements = [
        ("window bar", window, 1000),
        ("Idle", rgb(colour(Activity::State(StateName::Idle))), 1000),
        (
            "queued",
            rgb(colour(Activity::State(StateName::Locking))),
            1000,
        ),
        ("down", rgb(colour(Activity::Down)), 1000),
        ("Recovering", recovering, 20),
        ("cluster cooldown", rgb(COOLDOWN_COLOUR), 500),
    ];
    let distinct: HashSet<[u8; 3]> = elements.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(
        distinct.len(),
        elements.len(),
        "one colour per element: {elements:?}"
    );
    for (what, c, least) in elements {
        let n = seen.get(&c).copied().unwrap_or(0);
        assert!(
            n >= least,
            "{what} ({c:?}) has {n} pixels on the rendered chart, want {least}"
        );
    }
}

#[test]
fn the_chart_starts_shortly_before_a_late_window_and_draws_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{VALID}check_interval_sec: 60\nwindows:\n  timezone: UTC\n  allow: [\"* 01:00-03:00\"]\n"
    );
    let path = write(dir.path(), "config.yaml", cfg.as_bytes());
    let svg = dir.path().join("plan.svg");
    let svg_arg = svg.display().to_string();
    // The rollout starts 4.5 h before the window; 3 × 10 min fit well inside it.
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "3",
        "--config",
        &path,
        "--reboot-duration",
        "10m",
        "--start",
        "2026-11-30T20:30:00Z",
        "--svg",
        &svg_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let chart = std::fs::read_to_string(&svg).expect("svg");
    let labels: Vec<&str> = chart
        .lines()
        .filter(|l| l.contains("text-anchor="))
        .filter_map(|l| l.split('>').nth(1)?.strip_suffix("</text"))
        .collect();
    assert_eq!(labels.len(), 5, "{chart}");
    // From a few minutes before the window (01:00 is +4h 30m) …
    assert!(labels[0].starts_with("Tue 00:"), "{labels:?}");
    assert!(labels[0].contains("(+4h 2"), "{labels:?}");
    // … to its end (03:00 is +6h 30m), not only to the last recovery; wall clock in the
    // windows' zone and whole seconds only.
    assert_eq!(labels[4], "Tue 03:00 (+6h 30m)", "{labels:?}");
    assert!(labels.iter().all(|l| !l.contains('.')), "{labels:?}");
    assert_axis_labels_do_not_overlap(&chart);
}

/// The axis labels, each as wide as its text at ~0.6 em per character (generous for a sans
/// font), do not run into each other (issue #19: with seconds in the offsets they did).
fn assert_axis_labels_do_not_overlap(chart: &str) {
    let mut spans = Vec::new();
    for l in chart.lines().filter(|l| l.contains("text-anchor=")) {
        let attr = |name: &str| {
            l.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let text = l
            .split('>')
            .nth(1)
            .and_then(|t| t.strip_suffix("</text"))
            .unwrap_or_default();
        let x: f64 = attr("x").parse().expect("x");
        let size: f64 = attr("font-size").parse().unwrap_or(12.0);
        let w = text.chars().count() as f64 * 0.6 * size;
        let (a, b) = match attr("text-anchor").as_str() {
            "start" => (x, x + w),
            "end" => (x - w, x),
            _ => (x - w / 2.0, x + w / 2.0),
        };
        spans.push((attr("y"), a, b, text.to_string()));
    }
    // Labels on one line (the axis; node names are each on their own row).
    spans.sort_by(|p, q| p.0.cmp(&q.0).then(p.1.total_cmp(&q.1)));
    for pair in spans.windows(2).filter(|p| p[0].0 == p[1].0) {
        assert!(
            pair[0].2 <= pair[1].1,
            "axis labels overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// The README's own first command: a day-long plan whose offsets run into days.
#[test]
fn the_readme_plan_has_readable_axis_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("plan.svg");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yaml");
    let (code, out, err) = outcome(&[
        "simulate",
        "--cluster",
        "6",
        "--config",
        config,
        "--svg",
        svg.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_axis_labels_do_not_overlap(&std::fs::read_to_string(&svg).expect("svg"));
}
