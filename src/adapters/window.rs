//! Maintenance windows as the machine sees them: a verdict at `now` with the instants that
//! matter (when it closes, when it next opens), so Idle can sleep until the opening and a node
//! waiting in the queue leaves it when the window closes.

use crate::fsm::{Millis, Outcome, WindowVerdict};
use crate::windows::{Verdict, Windows};

fn to_ms(t: jiff::Timestamp) -> Millis {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

fn outcome_of(v: &Verdict) -> Option<Outcome> {
    match v {
        Verdict::Allowed { .. } => None,
        Verdict::Denied { .. } => Some(Outcome::WindowDenied),
        Verdict::OutsideAllow => Some(Outcome::WindowOutsideAllow),
    }
}

/// Evaluates `windows` at `now` (ms since the epoch) for the machine.
pub fn evaluate(windows: &Windows, now: Millis) -> WindowVerdict {
    let at = jiff::Timestamp::from_millisecond(i64::try_from(now).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX);
    let verdict = windows.verdict(at);
    match outcome_of(&verdict) {
        None => {
            let closes_at = windows.allowed_until(at);
            WindowVerdict::Open {
                closes_at: closes_at.map(to_ms),
                closes_by: closes_at.and_then(|t| outcome_of(&windows.verdict(t))),
            }
        }
        Some(outcome) => WindowVerdict::Closed {
            outcome,
            reason: verdict.reason().unwrap_or_default(),
            next_open: windows.next_allowed(at).map(to_ms),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        to_ms(s.parse::<jiff::Timestamp>().expect("timestamp"))
    }

    #[test]
    fn closed_and_open_verdicts_carry_the_instants() {
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("tz");
        let w = Windows::new(
            &["Fri 18:00-Mon 08:00".into()],
            &["* 22:00-04:00".into()],
            tz,
        )
        .expect("windows");
        // Tuesday 2026-11-24 12:00 Berlin (11:00Z): outside allow, opens 22:00 Berlin.
        match evaluate(&w, ms("2026-11-24T11:00:00Z")) {
            WindowVerdict::Closed {
                outcome,
                reason,
                next_open,
            } => {
                assert_eq!(outcome, Outcome::WindowOutsideAllow);
                assert_eq!(reason, "outside configured allow windows");
                assert_eq!(next_open, Some(ms("2026-11-24T21:00:00Z")));
            }
            other => panic!("{other:?}"),
        }
        // Tuesday 23:00 Berlin: open until 04:00 Berlin, then outside allow.
        assert_eq!(
            evaluate(&w, ms("2026-11-24T22:00:00Z")),
            WindowVerdict::Open {
                closes_at: Some(ms("2026-11-25T03:00:00Z")),
                closes_by: Some(Outcome::WindowOutsideAllow),
            }
        );
        // Friday 23:00 Berlin: denied (deny wins); next opening Monday 08:00 is outside the
        // allow window, so the next permitted instant is Monday 22:00 Berlin.
        match evaluate(&w, ms("2026-11-27T22:00:00Z")) {
            WindowVerdict::Closed {
                outcome,
                reason,
                next_open,
            } => {
                assert_eq!(outcome, Outcome::WindowDenied);
                assert_eq!(reason, "blocked by deny window \"Fri 18:00-Mon 08:00\"");
                assert_eq!(next_open, Some(ms("2026-11-30T21:00:00Z")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_windows_is_always_open() {
        let w = Windows::new(&[], &[], jiff::tz::TimeZone::UTC).expect("windows");
        assert_eq!(
            evaluate(&w, ms("2026-11-24T11:00:00Z")),
            WindowVerdict::Open {
                closes_at: None,
                closes_by: None
            }
        );
    }
}
