//! The decision machine as a small SVG for the web page, rendered on the server: one box per
//! state of `fsm-spec/machine.yaml` (the lifecycle laid out as a U: the pass along the top,
//! the reboot along the bottom), an arrow per (from, to) pair of its transition table, and in
//! every box the nodes that are in that state now; a box with nodes in it is highlighted.
//! The page's script updates only the classes and the counts (ids `st-<State>`,
//! `cnt-<State>`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fsm::StateName;
use crate::text::html;

const BOX_W: f64 = 150.0;
const BOX_H: f64 = 58.0;

/// Centre of a state's box.
fn position(s: StateName) -> (f64, f64) {
    match s {
        StateName::Idle => (95.0, 165.0),
        StateName::Detecting => (275.0, 60.0),
        StateName::WindowCheck => (455.0, 60.0),
        StateName::HealthPre => (635.0, 60.0),
        StateName::Locking => (815.0, 60.0),
        StateName::HealthPost => (815.0, 270.0),
        StateName::Cooldown => (635.0, 270.0),
        StateName::Rebooting => (455.0, 270.0),
        StateName::Recovering => (275.0, 270.0),
    }
}

/// Where the line from `from` towards the centre of `to` leaves `to`'s box.
fn clip(from: (f64, f64), to: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    let tx = if dx == 0.0 {
        f64::INFINITY
    } else {
        (BOX_W / 2.0 + 4.0) / dx.abs()
    };
    let ty = if dy == 0.0 {
        f64::INFINITY
    } else {
        (BOX_H / 2.0 + 4.0) / dy.abs()
    };
    let t = tx.min(ty).min(1.0);
    (to.0 - dx * t, to.1 - dy * t)
}

/// The distinct (from, to) pairs of the shipped transition table between two different
/// states; empty when the spec cannot be loaded (the boxes are still drawn).
pub fn edges() -> Vec<(StateName, StateName)> {
    let Ok(spec) = crate::fsm_spec::Spec::load() else {
        return Vec::new();
    };
    let name = |n: &str| StateName::ALL.into_iter().find(|s| s.as_str() == n);
    let mut out = Vec::new();
    for row in &spec.transitions {
        let Some(to) = name(&row.to) else { continue };
        for from in row.from.names() {
            if let Some(from) = name(from)
                && from != to
                && !out.contains(&(from, to))
            {
                out.push((from, to));
            }
        }
    }
    out
}

/// The count line of a box: `2: node-a, node-b` (shortened; the full list is the tooltip).
pub fn count_text(nodes: &[String]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let all = nodes.join(", ");
    let shown: String = all.chars().take(20).collect();
    let ellipsis = if shown.len() < all.len() { "…" } else { "" };
    format!("{}: {shown}{ellipsis}", nodes.len())
}

/// The diagram with `nodes` (state name → nodes in it) highlighted.
pub fn render(nodes: &BTreeMap<String, Vec<String>>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="fsm" viewBox="0 0 910 330" role="img" aria-label="decision machine with each node's current state"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"##
    );
    s.push_str(r#"<rect x="190" y="205" width="710" height="115" rx="10" class="slot-area"/><text x="200" y="222" class="slot-label">slot held (Locking waits for it; released after recovery)</text>"#);
    for (from, to) in edges() {
        let (a, b) = (position(from), position(to));
        let start = clip(b, a);
        let end = clip(a, b);
        let _ = write!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="edge" marker-end="url(#arrow)"><title>{} → {}</title></line>"#,
            start.0,
            start.1,
            end.0,
            end.1,
            from.as_str(),
            to.as_str()
        );
    }
    for st in StateName::ALL {
        let (x, y) = position(st);
        let here = nodes.get(st.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let class = if here.is_empty() { "state" } else { "state on" };
        let _ = write!(
            s,
            r#"<g id="st-{name}" class="{class}"><title id="tip-{name}">{tip}</title><rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="8"/><text x="{x:.1}" y="{:.1}" class="name">{name}</text><text x="{x:.1}" y="{:.1}" class="count" id="cnt-{name}">{count}</text></g>"#,
            x - BOX_W / 2.0,
            y - BOX_H / 2.0,
            y - 4.0,
            y + 16.0,
            name = st.as_str(),
            tip = html(&format!("{}: {}", st.as_str(), here.join(", "))),
            count = html(&count_text(here)),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_drawn_and_occupied_ones_are_highlighted() {
        let mut nodes = BTreeMap::new();
        nodes.insert("Locking".to_string(), vec!["<b>evil</b>".to_string()]);
        let svg = render(&nodes);
        for st in StateName::ALL {
            assert!(
                svg.contains(&format!(r#"id="st-{}""#, st.as_str())),
                "{st:?}"
            );
        }
        assert!(
            svg.contains(r#"<g id="st-Locking" class="state on">"#),
            "{svg}"
        );
        assert!(svg.contains(r#"<g id="st-Idle" class="state">"#), "{svg}");
        assert!(svg.contains("1: &lt;b&gt;evil&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>evil"), "{svg}");
        // The arrows come from the spec: the main path is there.
        let e = edges();
        assert!(
            e.contains(&(StateName::Locking, StateName::HealthPost)),
            "{e:?}"
        );
        assert!(
            e.contains(&(StateName::Recovering, StateName::Idle)),
            "{e:?}"
        );
        assert!(svg.matches("<line ").count() >= 10, "{svg}");
    }
}
