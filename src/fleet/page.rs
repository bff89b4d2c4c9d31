//! The read-only web page on the metrics listener (`/`): the fleet table, slot holders and
//! queue, the reboot groups' pools, pause and cooldown, and the decision machine with every
//! node's state highlighted.
//!
//! Everything is rendered on the server ([`PageData`] from a [`FleetView`]), so the table works
//! without JavaScript; every value is HTML-escaped. The page's script (`/page.js`, embedded
//! like the style sheet, no external assets) polls `/api/fleet` every second and puts the
//! same server-formatted cells in place with `textContent`, never as markup. There are no
//! write actions. Reads of the fleet are shared: one etcd read serves every request within
//! [`CACHE_FOR`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::table::{age_of, cells, short_age};
use super::view::FleetView;
use crate::coord::Coordinator;
use crate::text::html;

/// The page's script and style sheet, served as `/page.js` and `/page.css`.
pub const SCRIPT: &str = include_str!("page.js");
/// See [`SCRIPT`].
pub const STYLE: &str = include_str!("page.css");

/// How long one read of the fleet serves further requests.
pub const CACHE_FOR: Duration = Duration::from_millis(500);
/// How long one read of the fleet may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

type ReadFuture = Pin<Box<dyn Future<Output = Result<FleetView, String>> + Send>>;
/// The last read and when it was made.
type Cached = Option<(Instant, Result<FleetView, String>)>;

/// Where the page gets the fleet from (the daemon's coordination backend), with the cache.
#[derive(Clone)]
pub struct Source {
    node: String,
    read: Arc<dyn Fn() -> ReadFuture + Send + Sync>,
    cache: Arc<tokio::sync::Mutex<Cached>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("node", &self.node).finish()
    }
}

impl Source {
    /// The page of the daemon `node`, reading through `coord`.
    pub fn new<C: Coordinator>(coord: Arc<C>, node: &str) -> Self {
        Source {
            node: node.to_string(),
            read: Arc::new(move || {
                let coord = coord.clone();
                Box::pin(async move {
                    match tokio::time::timeout(READ_TIMEOUT, coord.fleet_view()).await {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!(
                            "no answer from the coordination store within {} s",
                            READ_TIMEOUT.as_secs()
                        )),
                    }
                })
            }),
            cache: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The node whose daemon serves the page.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The fleet now (or at most [`CACHE_FOR`] ago); concurrent requests share one read.
    pub async fn view(&self) -> Result<FleetView, String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, v)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return v.clone();
        }
        let v = (self.read)().await;
        *cache = Some((Instant::now(), v.clone()));
        v
    }
}

/// One row of the page's table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Node name.
    pub node: String,
    /// Its FSM state (`?` when unknown), for the row's class.
    pub state: String,
    /// Node, state, since, needs reboot, last reboot, waiting for (as `cluster status`).
    pub cells: [String; 6],
}

/// One reboot group's pool on the page (issue #16): who holds its slots and who waits for one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    /// Group name.
    pub group: String,
    /// Group, slots (`1 of 1 held`; the count alone for a group other than the serving
    /// node's, whose size it does not know), holders, queue.
    pub cells: [String; 4],
}

/// What the page shows, formatted; also the `/api/fleet` answer (with the raw view).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageData {
    /// The serving node.
    pub served_by: String,
    /// When the fleet was read (RFC 3339).
    pub generated_at: String,
    /// Why the fleet cannot be read, when it cannot.
    pub error: Option<String>,
    /// The table.
    pub rows: Vec<Row>,
    /// State name → nodes in it (the diagram).
    pub states: BTreeMap<String, Vec<String>>,
    /// State name → the count line of its box (`2: node-a, node-b`).
    pub state_counts: BTreeMap<String, String>,
    /// Label → text lines: slots, holders, queue, in progress, pause, cooldown, unhealthy, ….
    pub facts: Vec<(String, String)>,
    /// The reboot groups' pools with at least one entry, by name.
    pub groups: Vec<GroupRow>,
    /// The raw view (`cluster status --json` schema), when read.
    pub fleet: Option<FleetView>,
}

impl PageData {
    /// Formats `view` (or its error) at `now`.
    pub fn new(served_by: &str, view: Result<FleetView, String>, now: jiff::Timestamp) -> Self {
        let mut d = PageData {
            served_by: served_by.to_string(),
            generated_at: now.to_string(),
            error: None,
            rows: Vec::new(),
            states: BTreeMap::new(),
            state_counts: BTreeMap::new(),
            facts: Vec::new(),
            groups: Vec::new(),
            fleet: None,
        };
        let v = match view {
            Ok(v) => v,
            Err(e) => {
                d.error = Some(format!("cannot read the fleet: {e}"));
                return d;
            }
        };
        for r in &v.nodes {
            let state = r
                .record
                .as_ref()
                .map_or("?".to_string(), |x| x.state.clone());
            d.states
                .entry(state.clone())
                .or_default()
                .push(r.node.clone());
            d.rows.push(Row {
                node: r.node.clone(),
                state,
                cells: cells(r, now),
            });
        }
        d.state_counts = d
            .states
            .iter()
            .map(|(k, v)| (k.clone(), super::svg::count_text(v)))
            .collect();
        let entry = |e: &super::view::Entry| {
            let since = if e.since.is_empty() {
                String::new()
            } else {
                format!(" for {}", age_of(&e.since, now))
            };
            let state = if e.state.is_empty() {
                String::new()
            } else {
                format!(" [{}]", e.state)
            };
            format!("{}{since}{state}", e.node)
        };
        let list = |l: Vec<String>| {
            if l.is_empty() {
                "none".to_string()
            } else {
                l.join(", ")
            }
        };
        d.facts.push((
            "Slots".into(),
            format!("{} of {} held", v.holders.len(), v.max_concurrent_reboots),
        ));
        d.facts.push((
            "Holders".into(),
            list(v.holders.iter().map(entry).collect()),
        ));
        d.facts.push((
            "Queue".into(),
            list(
                v.queue
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("#{} {}", i + 1, entry(e)))
                    .collect(),
            ),
        ));
        d.facts.push((
            "Reboots in progress".into(),
            list(
                v.in_progress
                    .iter()
                    .map(|p| match p.age_sec {
                        Some(a) => format!("{} ({} ago)", p.node, short_age(a)),
                        None => p.node.clone(),
                    })
                    .collect(),
            ),
        ));
        d.facts.push((
            "Pause".into(),
            match &v.pause {
                None => "no".into(),
                Some(p) if p.by.is_empty() => format!("PAUSED: {}", p.reason),
                Some(p) => format!("PAUSED: {} (by {} at {})", p.reason, p.by, p.at),
            },
        ));
        d.facts.push((
            "Cooldown".into(),
            match (&v.cooldown, &v.cooldown_corrupt) {
                (_, Some(why)) => format!("CORRUPT (no node starts a reboot): {why}"),
                (Some(c), None) => format!(
                    "{} remaining (started by {})",
                    short_age(c.remaining_sec),
                    c.node
                ),
                (None, None) => "none".into(),
            },
        ));
        d.facts
            .push(("Unhealthy".into(), list(v.unhealthy.clone())));
        d.facts
            .push(("Stale health records".into(), list(v.stale.clone())));
        d.facts
            .push(("Reboot requests".into(), list(v.requests.clone())));
        for g in &v.groups {
            let (held, queued) = v.group_split(g);
            let slots = match g.max_concurrent_reboots {
                Some(k) => format!("{} of {k} held", held.len()),
                None => format!("{} held", held.len()),
            };
            let holder = |e: &&super::view::Entry| {
                // Holding the group slot, not yet the cluster slot: say what it waits for.
                if e.state == "waiting" {
                    format!("{}, waiting for a cluster slot", entry(e))
                } else {
                    entry(e)
                }
            };
            d.groups.push(GroupRow {
                group: g.group.clone(),
                cells: [
                    g.group.clone(),
                    slots,
                    list(held.iter().map(holder).collect()),
                    list(
                        queued
                            .iter()
                            .enumerate()
                            .map(|(i, e)| format!("#{} {}", i + 1, entry(e)))
                            .collect(),
                    ),
                ],
            });
        }
        d.fleet = Some(v);
        d
    }
}

/// The groups table's one row when no group pool has an entry (the script shows the same).
const NO_GROUPS: &str = "no reboot group pool has an entry";

/// A CSS-class-safe form of a state name (letters only).
fn class_word(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphabetic).collect()
}

/// The whole page.
pub fn render_html(d: &PageData) -> String {
    let mut s = String::with_capacity(16 * 1024);
    s.push_str(r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>clusterrebootd fleet</title><link rel="stylesheet" href="/page.css"></head><body>"#);
    s.push_str(&format!(
        r#"<header><h1>clusterrebootd fleet</h1><p>served by <b>{}</b> · read at <span id="updated">{}</span> · read-only; <a href="/api/fleet">JSON</a> · <a href="/metrics">metrics</a></p><p id="error" class="error"{}>{}</p></header>"#,
        html(&d.served_by),
        html(&d.generated_at),
        if d.error.is_some() { "" } else { " hidden" },
        html(d.error.as_deref().unwrap_or("")),
    ));
    s.push_str(r#"<section><h2>Nodes</h2><table id="fleet"><thead><tr><th>Node</th><th>State</th><th>Since</th><th>Needs reboot</th><th>Last reboot</th><th>Waiting for</th></tr></thead><tbody id="rows">"#);
    for r in &d.rows {
        s.push_str(&format!(
            r#"<tr data-node="{}" class="st-{}">"#,
            html(&r.node),
            class_word(&r.state)
        ));
        for c in &r.cells {
            s.push_str(&format!("<td>{}</td>", html(c)));
        }
        s.push_str("</tr>");
    }
    if d.rows.is_empty() && d.error.is_none() {
        s.push_str(r#"<tr><td colspan="6">no node has published a node_state or cluster_health record yet</td></tr>"#);
    }
    s.push_str(r#"</tbody></table></section><section><h2>Cluster</h2><dl id="facts">"#);
    for (label, text) in &d.facts {
        s.push_str(&format!(
            r#"<dt>{}</dt><dd data-fact="{}">{}</dd>"#,
            html(label),
            html(label),
            html(text)
        ));
    }
    s.push_str(r#"</dl></section><section><h2>Reboot groups</h2><table id="groups-table"><thead><tr><th>Group</th><th>Slots</th><th>Held by</th><th>Waiting for a group slot</th></tr></thead><tbody id="groups">"#);
    for g in &d.groups {
        s.push_str(&format!(r#"<tr data-group="{}">"#, html(&g.group)));
        for c in &g.cells {
            s.push_str(&format!("<td>{}</td>", html(c)));
        }
        s.push_str("</tr>");
    }
    if d.groups.is_empty() {
        s.push_str(&format!(r#"<tr><td colspan="4">{NO_GROUPS}</td></tr>"#));
    }
    s.push_str(r#"</tbody></table><p class="note">A node in a reboot group takes a slot of its group's pool first and only then queues for the cluster pool (Holders and Queue above); it reboots while it holds both.</p></section><section><h2>Decision machine</h2>"#);
    s.push_str(&super::svg::render(&d.states));
    s.push_str(r#"<p class="note">Nodes rest in Idle during a check pass (Detecting, WindowCheck and HealthPre last well under a second and are not published).</p></section>"#);
    s.push_str(r#"<noscript><p class="note">JavaScript is off: reload the page to refresh it.</p></noscript><script src="/page.js"></script></body></html>"#);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::view::{NodeRow, Pause};
    use crate::fleet::{NodeState, Waiting};

    #[test]
    fn every_value_is_escaped_and_the_table_is_there_without_script() {
        let mut v = FleetView::empty(1);
        v.nodes.push(NodeRow {
            node: "<img src=x onerror=alert(1)>".into(),
            record: Some(NodeState {
                version: 1,
                node: "x".into(),
                state: "Locking\"><script>".into(),
                since: "2026-01-01T00:00:00Z".into(),
                reason: None,
                reboot_required: Some(true),
                required_by: vec!["file:/<x>".into()],
                waiting_for: Some(Waiting {
                    gate: "slot".into(),
                    detail: "held by <b>n2</b> & co".into(),
                    unblock: String::new(),
                }),
                queue_position: Some(1),
                next_check_at: None,
                last_reboot: None,
                daemon_version: "1".into(),
                dry_run: false,
            }),
            record_error: None,
            healthy: Some(true),
        });
        v.pause = Some(Pause {
            reason: "</dd><script>alert(2)</script>".into(),
            by: "a@b".into(),
            at: "now".into(),
        });
        let now = "2026-01-01T00:05:00Z".parse().expect("ts");
        let page = render_html(&PageData::new("n1", Ok(v), now));
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>n2"), "{page}");
        assert!(
            page.contains("held by &lt;b&gt;n2&lt;/b&gt; &amp; co"),
            "{page}"
        );
        assert!(page.contains("PAUSED: &lt;/dd&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains(r#"class="st-Lockingscript""#), "{page}");
        assert!(page.contains("<td>5m</td>"), "{page}");
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the page's own script"
        );
    }

    /// Issue #16: each group pool's holders and waiters; a member holding its group slot and
    /// waiting for the cluster pool is a holder that says so; names are escaped.
    #[test]
    fn the_group_pools_are_shown() {
        use crate::fleet::view::{Entry, GroupPoolView};
        let e = |node: &str, state: &str, key: &str| Entry {
            node: node.into(),
            state: state.into(),
            since: "2026-01-01T00:04:00Z".into(),
            key: key.into(),
        };
        let mut v = FleetView::empty(2);
        v.holders = vec![
            e("db-1", "rebooting", "/l/a1"),
            e("web-1", "waiting", "/l/b2"),
        ];
        v.groups = vec![
            GroupPoolView {
                group: "db".into(),
                max_concurrent_reboots: Some(1),
                entries: vec![
                    e("db-1", "rebooting", "/g/db/a1"),
                    e("db-2", "waiting", "/g/db/c3"),
                ],
            },
            GroupPoolView {
                group: "w<b>".into(),
                max_concurrent_reboots: None,
                entries: vec![
                    e("web-1", "waiting", "/g/w/b2"),
                    e("web-2", "waiting", "/g/w/d4"),
                ],
            },
        ];
        let now = "2026-01-01T00:05:00Z".parse().expect("ts");
        let d = PageData::new("n1", Ok(v), now);
        let cells: Vec<Vec<&str>> = d
            .groups
            .iter()
            .map(|g| g.cells.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            cells,
            [
                vec![
                    "db",
                    "1 of 1 held",
                    "db-1 for 1m [rebooting]",
                    "#1 db-2 for 1m [waiting]"
                ],
                vec![
                    "w<b>",
                    "1 held",
                    "web-1 for 1m [waiting], waiting for a cluster slot",
                    "#1 web-2 for 1m [waiting]"
                ],
            ]
        );
        let page = render_html(&d);
        assert!(
            page.contains("<tr data-group=\"db\"><td>db</td><td>1 of 1 held</td>"),
            "{page}"
        );
        assert!(page.contains("<td>w&lt;b&gt;</td>"), "{page}");
        assert!(!page.contains(NO_GROUPS), "{page}");
        let empty = render_html(&PageData::new("n1", Ok(FleetView::empty(1)), now));
        assert!(empty.contains(NO_GROUPS), "{empty}");
    }

    #[test]
    fn an_unreadable_fleet_is_shown_not_hidden() {
        let now = jiff::Timestamp::now();
        let page = render_html(&PageData::new("n1", Err("etcd unreachable".into()), now));
        assert!(
            page.contains(
                r#"<p id="error" class="error">cannot read the fleet: etcd unreachable</p>"#
            ),
            "{page}"
        );
    }
}
