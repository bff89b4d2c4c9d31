//! The maintenance-window grammar and its evaluation.
//!
//! Input: 8 bytes of instant, 1 byte of time zone, then one window expression per line (a
//! line starting with `!` is a deny window, the others allow windows).
//! Properties:
//! - parsing never panics; a parsed window keeps its trimmed text and parses again to itself;
//! - the lists build a [`Windows`] exactly when every expression parses;
//! - verdicts at a few instants, `next_allowed` and `allowed_until` never panic and agree with
//!   the verdicts: the next allowed instant is allowed and the second before it (if not before
//!   the start) is not; the end of an allowed period is not allowed and the second before it is;
//!   "none within the horizon" is not contradicted by a sampled instant.
#![no_main]

use std::sync::OnceLock;

use clusterrebootd::windows::{self, SEARCH_HORIZON_DAYS, Windows};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

/// Zones with DST gaps and folds, half-hour and 45-minute offsets, and a half-hour DST shift.
const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "Pacific/Chatham",
    "Africa/Casablanca",
];

fn zones() -> &'static [TimeZone] {
    static Z: OnceLock<Vec<TimeZone>> = OnceLock::new();
    Z.get_or_init(|| {
        let mut v = vec![TimeZone::UTC, TimeZone::fixed(jiff::tz::offset(-11))];
        v.extend(ZONES.iter().filter_map(|n| TimeZone::get(n).ok()));
        v
    })
}

/// 1970 … 2200, where a daemon's clock can be.
fn instant(bytes: [u8; 8]) -> Timestamp {
    let span = 230 * 365 * 86_400_i64;
    let secs = i64::from_le_bytes(bytes).rem_euclid(span);
    Timestamp::from_second(secs).expect("in range")
}

fn check_next_allowed(ws: &Windows, at: Timestamp) {
    let second = SignedDuration::from_secs(1);
    match ws.next_allowed(at) {
        Some(t) => {
            assert!(t >= at, "next_allowed({at}) = {t} is in the past");
            assert!(
                ws.verdict(t).allowed(),
                "next_allowed({at}) = {t} is not allowed"
            );
            let before = t - second;
            if before >= at {
                assert!(
                    !ws.verdict(before).allowed(),
                    "next_allowed({at}) = {t}, but {before} is already allowed"
                );
            }
        }
        None => sample(at, |t| {
            assert!(
                !ws.verdict(t).allowed(),
                "next_allowed({at}) = None, but {t} is allowed"
            )
        }),
    }
}

fn check_allowed_until(ws: &Windows, at: Timestamp) {
    let second = SignedDuration::from_secs(1);
    let allowed = ws.verdict(at).allowed();
    match ws.allowed_until(at) {
        Some(u) => {
            assert!(
                allowed,
                "allowed_until({at}) = {u} while {at} is not allowed"
            );
            assert!(u > at, "allowed_until({at}) = {u} is not later");
            assert!(
                !ws.verdict(u).allowed(),
                "allowed_until({at}) = {u} is allowed"
            );
            let before = u - second;
            if before > at {
                assert!(
                    ws.verdict(before).allowed(),
                    "allowed_until({at}) = {u}, but {before} is not allowed"
                );
            }
        }
        None if allowed => sample(at, |t| {
            assert!(
                ws.verdict(t).allowed(),
                "allowed_until({at}) = None, but {t} is not allowed"
            )
        }),
        None => {}
    }
}

/// Instants in `(at, at + horizon]`, 37 minutes apart.
fn sample(at: Timestamp, mut f: impl FnMut(Timestamp)) {
    let step = SignedDuration::from_mins(37);
    let end = at + SignedDuration::from_hours(24 * SEARCH_HORIZON_DAYS);
    let mut t = at + step;
    while t <= end {
        f(t);
        t += step;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let at = instant(data[..8].try_into().expect("8 bytes"));
    let zones = zones();
    let tz = zones[usize::from(data[8]) % zones.len()].clone();
    let Ok(text) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    let (mut deny, mut allow) = (Vec::new(), Vec::new());
    let mut all_parse = true;
    for line in text.lines().take(16) {
        let (list, expr) = match line.strip_prefix('!') {
            Some(rest) => (&mut deny, rest),
            None => (&mut allow, line),
        };
        match windows::parse(expr) {
            Ok(w) => {
                assert_eq!(w.expr(), expr.trim(), "a window keeps its text");
                assert_eq!(
                    windows::parse(w.expr()).as_ref(),
                    Ok(&w),
                    "re-parse of {expr:?}"
                );
            }
            Err(e) => {
                all_parse = false;
                assert!(e.position >= 1, "columns are 1-based: {e}");
            }
        }
        list.push(expr.to_string());
    }
    let ws = match Windows::new(&deny, &allow, tz) {
        Ok(ws) => ws,
        Err(errors) => {
            assert!(
                !all_parse,
                "every expression parses, yet Windows::new failed: {errors:?}"
            );
            return;
        }
    };
    assert!(
        all_parse,
        "an expression failed to parse, yet Windows::new accepted the lists"
    );
    for at in [
        at,
        at + SignedDuration::from_secs(3 * 3600 + 59),
        at + SignedDuration::from_hours(24 * 3 + 7),
    ] {
        let _ = ws.verdict(at).reason();
        check_next_allowed(&ws, at);
        check_allowed_until(&ws, at);
    }
});
