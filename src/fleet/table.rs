//! The text form of `cluster status`: the fleet table (one line per node: what it does, since
//! when, whether it needs a reboot, its last reboot, what it waits for), then the slots,
//! markers, requests, cooldown and pause. Written for a person at 3 a.m.: ages rather than
//! timestamps, "none" rather than empty, what is unknown said as unknown. The caller escapes
//! control characters of the whole output ([`crate::text::for_terminal`]); every cell is
//! also made one line here.

use super::view::{FleetView, NodeRow};
use crate::text::one_line;

/// `12s`, `4m 10s`, `3h 5m`, `2d 4h`: the two largest units of a duration in seconds.
pub fn short_age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The age of an RFC 3339 instant at `now`, or the text itself when it does not parse.
pub fn age_of(ts: &str, now: jiff::Timestamp) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => short_age(now.duration_since(t).as_secs()),
        Err(_) => format!("? ({ts})"),
    }
}

/// One node's cells: node, state, since, needs reboot, last reboot, waiting for.
pub fn cells(r: &NodeRow, now: jiff::Timestamp) -> [String; 6] {
    let node = one_line(&r.node).into_owned();
    let Some(rec) = &r.record else {
        let why = match &r.record_error {
            Some(e) => format!("unreadable node_state record: {e}"),
            None => "no node_state record (daemon not running, or an older version)".into(),
        };
        return [
            node,
            "?".into(),
            "-".into(),
            "?".into(),
            "?".into(),
            one_line(&why).into_owned(),
        ];
    };
    let mut state = rec.state.clone();
    if rec.version != super::SCHEMA_VERSION {
        state.push_str(&format!(" (schema v{})", rec.version));
    }
    if rec.dry_run {
        state.push_str(" (dry run)");
    }
    let needs = match rec.reboot_required {
        Some(true) if rec.required_by.is_empty() => "yes".to_string(),
        Some(true) => format!("yes ({})", rec.required_by.join(", ")),
        Some(false) => "no".into(),
        None => "unknown".into(),
    };
    let last = match &rec.last_reboot {
        None => "never".into(),
        Some(l) => match l.down_seconds {
            Some(d) => format!("{} ago, down {}", age_of(&l.at, now), short_age(d as i64)),
            None => format!("{} ago", age_of(&l.at, now)),
        },
    };
    let mut waiting = match &rec.waiting_for {
        Some(w) => format!("{}: {}", w.gate, w.detail),
        None if rec.state == "Idle" && rec.reboot_required == Some(false) => {
            "nothing (no reboot needed)".into()
        }
        None => rec.reason.clone().unwrap_or_else(|| "-".into()),
    };
    if let Some(p) = rec.queue_position {
        waiting = format!("queue #{p}; {waiting}");
    }
    if let (Some(_), Some(next)) = (&rec.waiting_for, &rec.next_check_at) {
        waiting.push_str(&match next.parse::<jiff::Timestamp>() {
            Ok(t) => format!(
                " (next check in {})",
                short_age(t.duration_since(now).as_secs())
            ),
            Err(_) => format!(" (next check {next})"),
        });
    }
    [
        node,
        one_line(&state).into_owned(),
        age_of(&rec.since, now),
        one_line(&needs).into_owned(),
        one_line(&last).into_owned(),
        one_line(&waiting).into_owned(),
    ]
}

/// The fleet table with a header, columns padded to their widest cell (the last, long
/// column is not padded).
pub fn fleet_table(v: &FleetView, now: jiff::Timestamp) -> String {
    let header = [
        "NODE",
        "STATE",
        "SINCE",
        "NEEDS REBOOT",
        "LAST REBOOT",
        "WAITING FOR",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(v.nodes.iter().map(|r| cells(r, now)))
        .collect();
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if v.nodes.is_empty() {
        out.push_str("(no node has published a node_state or cluster_health record yet)\n");
    }
    out
}

/// The whole `cluster status` text.
pub fn render(v: &FleetView, now: jiff::Timestamp) -> String {
    let mut out = fleet_table(v, now);
    out.push('\n');
    let entry = |e: &super::view::Entry| {
        let since = match e.since.as_str() {
            "" => String::new(),
            s => format!(
                " since {} ({} ago)",
                crate::human::instant(s),
                age_of(s, now)
            ),
        };
        let state = if e.state.is_empty() {
            String::new()
        } else {
            format!(" [{}]", e.state)
        };
        format!("{}{since}{state}", e.node)
    };
    out.push_str(&format!(
        "slots: {} of {} held\n",
        v.holders.len(),
        v.max_concurrent_reboots
    ));
    for e in &v.holders {
        out.push_str(&format!("  held: {}\n", entry(e)));
    }
    for (i, e) in v.queue.iter().enumerate() {
        out.push_str(&format!("  queued #{}: {}\n", i + 1, entry(e)));
    }
    // Reboot groups (issue #16): each pool's entries in queue order.
    for g in &v.groups {
        let (held, queued) = v.group_split(g);
        let of = g
            .max_concurrent_reboots
            .map_or_else(String::new, |k| format!(" of {k}"));
        out.push_str(&format!("group {}: {}{of} held\n", g.group, held.len()));
        for e in held {
            out.push_str(&format!("  held: {}\n", entry(e)));
        }
        for (i, e) in queued.iter().enumerate() {
            out.push_str(&format!("  queued #{}: {}\n", i + 1, entry(e)));
        }
    }
    let list = |l: &[String]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    let ip: Vec<String> = v
        .in_progress
        .iter()
        .map(|p| match p.age_sec {
            Some(a) => format!("{} ({} ago)", p.node, short_age(a)),
            None => p.node.clone(),
        })
        .collect();
    out.push_str(&format!("reboots in progress: {}\n", list(&ip)));
    out.push_str(&format!("unhealthy: {}\n", list(&v.unhealthy)));
    out.push_str(&format!("stale health records: {}\n", list(&v.stale)));
    out.push_str(&format!("reboot requests: {}\n", list(&v.requests)));
    out.push_str(&match (&v.cooldown, &v.cooldown_corrupt) {
        (_, Some(why)) => format!(
            "cooldown: CORRUPT, no node starts a reboot until it is fixed or deleted: {why}\n"
        ),
        (Some(c), None) => format!(
            "cooldown: {} remaining (started by {})\n",
            crate::human::duration_ms(
                u64::try_from(c.remaining_sec)
                    .unwrap_or(0)
                    .saturating_mul(1000)
            ),
            c.node
        ),
        (None, None) => "cooldown: none\n".to_string(),
    });
    out.push_str(&match &v.pause {
        Some(p) if p.by.is_empty() => format!("paused: {}\n", one_line(&p.reason)),
        Some(p) => format!(
            "paused: {} (by {} at {})\n",
            one_line(&p.reason),
            one_line(&p.by),
            one_line(&crate::human::instant(&p.at))
        ),
        None => "paused: no\n".to_string(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_two_largest_units() {
        assert_eq!(short_age(0), "0s");
        assert_eq!(short_age(59), "59s");
        assert_eq!(short_age(60), "1m");
        assert_eq!(short_age(250), "4m 10s");
        assert_eq!(short_age(3 * 3600 + 5 * 60 + 7), "3h 5m");
        assert_eq!(short_age(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(short_age(-5), "0s");
    }
}
