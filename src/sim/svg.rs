//! The plan as an SVG chart: one row per node, time left to right, a colour per activity and
//! the maintenance windows shaded behind. Plain SVG text, viewable in any browser.

use std::fmt::Write as _;

use super::plan::Plan;
use super::report::Activity;
use crate::fsm::StateName;

/// The fill of an open maintenance window: a yellow no node activity uses, so the window bar
/// cannot be mistaken for `Recovering` (green) on the chart (issue #19).
pub const WINDOW_COLOUR: &str = "#ffe119";

/// The fill of the cluster cooldown band (under the window bar), distinct from every state.
pub const COOLDOWN_COLOUR: &str = "#984ea3";

/// The mark where a node left the queue without rebooting (black: it is an event, not a state).
pub const EXIT_COLOUR: &str = "#000000";

/// The time span the chart shows, as offsets from the start: from shortly before the first
/// window when the rollout starts long before it (else from the start), to the end of the
/// window the last node finished in (the whole window, not only up to the makespan).
pub fn span(plan: &Plan) -> (u64, u64) {
    let done = plan.last_done_ms.unwrap_or(plan.report.end_ms).max(1);
    let end = plan
        .windows
        .iter()
        .filter(|w| w.opens_ms < done)
        .filter_map(|w| w.closes_ms)
        .filter(|&c| c > done)
        .fold(done, u64::max);
    let begin = match plan.windows.first() {
        Some(w) => {
            let margin = ((end - w.opens_ms.min(end)) / 20).max(60_000);
            if w.opens_ms > 2 * margin && w.opens_ms < end {
                w.opens_ms - margin
            } else {
                0
            }
        }
        None => 0,
    };
    (begin, end.max(begin + 1))
}

/// Fill colour of an activity.
pub fn colour(a: Activity) -> &'static str {
    match a {
        Activity::State(s) => match s {
            StateName::Idle => "#e8e8e8",
            StateName::Detecting | StateName::WindowCheck | StateName::HealthPre => "#9ecae1",
            StateName::Locking => "#fdd49e",
            StateName::HealthPost => "#6baed6",
            StateName::Cooldown => "#bcbddc",
            StateName::Rebooting => "#e6550d",
            StateName::Recovering => "#74c476",
        },
        Activity::Down => "#a50f15",
        Activity::Crashed => "#000000",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const LEFT: f64 = 90.0;
const WIDTH: f64 = 1000.0;
/// Font size of the axis labels (px).
const AXIS_FONT: u32 = 10;
const ROW: f64 = 22.0;
const TOP: f64 = 62.0;

/// Renders the plan.
pub fn render(plan: &Plan) -> String {
    let r = &plan.report;
    let (begin, end) = span(plan);
    let (begin, end) = (begin as f64, end as f64);
    let x = |ms: u64| {
        LEFT + ((ms as f64).clamp(begin, end) - begin) / (end - begin) * (WIDTH - LEFT - 10.0)
    };
    let rows = r.nodes.len() as f64;
    let height = TOP + rows * ROW + 70.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let title = format!(
        "{} nodes from {}, max_concurrent_reboots {}, makespan {}",
        plan.opts.nodes,
        super::plan::start_text(plan),
        plan.capacity,
        plan.last_done_ms
            .map_or("not finished".into(), |t| { crate::human::duration_ms(t) })
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14">{}</text>"#,
        escape(&title)
    );
    // The windows: their own row on top, and dashed edges down through every node's row.
    let _ = writeln!(
        out,
        r#"<text x="10" y="{:.1}">window</text>"#,
        TOP - ROW + ROW * 0.65
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#f0f0f0"/>"##,
        TOP - ROW,
        x(end as u64) - LEFT,
        ROW - 4.0
    );
    for w in &plan.windows {
        let (a, b) = (x(w.opens_ms), x(w.closes_ms.unwrap_or(end as u64)));
        let _ = writeln!(
            out,
            r##"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{WINDOW_COLOUR}"><title>maintenance window: {} reboot(s) fit</title></rect>"##,
            TOP - ROW,
            (b - a).max(0.5),
            ROW - 4.0,
            w.reboots
        );
        for edge in [a, b] {
            let _ = writeln!(
                out,
                r##"<line x1="{edge:.1}" y1="{:.1}" x2="{edge:.1}" y2="{:.1}" stroke="{WINDOW_COLOUR}" stroke-dasharray="4 3"/>"##,
                TOP - 4.0,
                TOP + rows * ROW
            );
        }
    }
    // The cluster cooldown after each recovery: the lower half of the window row, so a gap
    // between reboots inside an open window reads as the cooldown it is (issue #19).
    if plan.cooldown_ms > 0 {
        for n in &r.nodes {
            for t in n.reboots.iter().filter_map(|x| x.recovered_ms) {
                let (a, b) = (x(t), x(t.saturating_add(plan.cooldown_ms)));
                let _ = writeln!(
                    out,
                    r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>cluster cooldown after {}: {}</title></rect>"#,
                    TOP - ROW / 2.0,
                    (b - a).max(0.5),
                    ROW / 2.0 - 4.0,
                    COOLDOWN_COLOUR,
                    escape(&n.name),
                    crate::human::duration_ms(plan.cooldown_ms)
                );
            }
        }
    }
    for (k, n) in r.nodes.iter().enumerate() {
        let y = TOP + k as f64 * ROW;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + ROW * 0.65,
            escape(&n.name)
        );
        for s in &n.segments {
            let (a, b) = (x(s.from_ms), x(s.to_ms));
            // The reboot and the recovery are what the chart is about: at least 3 px wide, so a
            // 10 s recovery on a night-long chart is still seen (issue #19).
            let least = match s.activity {
                Activity::State(StateName::Rebooting | StateName::Recovering) | Activity::Down => {
                    3.0
                }
                _ => 0.3,
            };
            let _ = writeln!(
                out,
                r#"<rect x="{a:.1}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                (b - a).max(least),
                ROW - 4.0,
                colour(s.activity),
                escape(&n.name),
                s.activity.label(),
                super::plan::plan_offset(s.from_ms)
            );
        }
    }
    // Where a node left the queue (or gave its slot back) without rebooting: a mark on its
    // row whose tooltip says why (issue #19; the text plan lists them too).
    for (k, n) in r.nodes.iter().enumerate() {
        let y = TOP + k as f64 * ROW;
        for e in &n.queue_exits {
            let cx = x(e.at_ms);
            let _ = writeln!(
                out,
                r#"<path d="M{:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z" fill="{EXIT_COLOUR}"><title>{} left the queue at {}: {}</title></path>"#,
                cx - 4.0,
                y,
                cx + 4.0,
                y,
                cx,
                y + 7.0,
                escape(&n.name),
                super::plan::plan_offset(e.at_ms),
                escape(&e.reason)
            );
        }
    }
    let axis = TOP + rows * ROW + 14.0;
    for t in 0..=4u64 {
        let ms = begin as u64 + (end - begin) as u64 * t / 4;
        let anchor = match t {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        // The offset to the minute (the ticks are a quarter of the chart apart): with its
        // seconds a label was wider than the space between two ticks and ran into the next.
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{axis:.1}" font-size="{AXIS_FONT}" text-anchor="{anchor}">{}</text>"#,
            x(ms),
            escape(&format!(
                "{} ({})",
                super::plan::axis_label(plan, ms),
                super::plan::plan_offset((ms + 30_000) / 60_000 * 60_000)
            ))
        );
    }
    let legend = [
        Activity::State(StateName::Idle),
        Activity::State(StateName::HealthPre),
        Activity::State(StateName::Locking),
        Activity::State(StateName::HealthPost),
        Activity::State(StateName::Cooldown),
        Activity::State(StateName::Rebooting),
        Activity::Down,
        Activity::State(StateName::Recovering),
    ];
    for (k, a) in legend.iter().enumerate() {
        let lx = 10.0 + k as f64 * 115.0;
        let ly = axis + 20.0;
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            colour(*a),
            lx + 16.0,
            a.label()
        );
    }
    // The window row's two colours, on a second legend line.
    for (k, (fill, label)) in [
        (WINDOW_COLOUR, "maintenance window open"),
        (COOLDOWN_COLOUR, "cluster cooldown"),
    ]
    .iter()
    .enumerate()
    {
        let lx = 10.0 + k as f64 * 230.0;
        let ly = axis + 38.0;
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{fill}"/><text x="{:.1}" y="{ly:.1}">{label}</text>"#,
            ly - 10.0,
            lx + 16.0,
        );
    }
    out.push_str("</svg>\n");
    out
}
