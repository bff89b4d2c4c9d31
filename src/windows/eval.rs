//! Evaluation of deny/allow window lists at an instant, in the civil local
//! time of a time zone, and search for the next allowed instant.
//!
//! Membership is decided on the civil datetime the instant maps to, so a
//! repeated (fall-back) local hour is inside a window both times and a
//! skipped (spring-forward) hour simply never occurs. The verdict, seen as a
//! function of instants, can only change where the civil time crosses a
//! window boundary or where the time zone's offset changes; the searches
//! check exactly those instants in ascending order.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::{MINUTES_PER_DAY, Window, WindowsConfigError, parse};

/// How far ahead [`Windows::next_allowed`] and [`Windows::allowed_until`]
/// look before giving up; a weekly schedule repeats within 7 days, the
/// extra day covers windows straddling the week boundary and DST shifts.
pub const SEARCH_HORIZON_DAYS: i64 = 8;

/// Outcome of evaluating the windows at one instant, carrying the
/// expression responsible so the daemon can explain a skipped reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Rebooting is permitted now.
    Allowed {
        /// The first allow expression that matched; `None` when no allow
        /// windows are configured.
        by: Option<String>,
    },
    /// A deny window is active; deny always wins over allow.
    Denied {
        /// The first deny expression that matched.
        by: String,
    },
    /// Allow windows are configured but none is active.
    OutsideAllow,
}

impl Verdict {
    /// Whether a reboot may proceed.
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }

    /// Human-readable reason why a reboot is blocked, for logs and status.
    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Allowed { .. } => None,
            Verdict::Denied { by } => Some(format!("blocked by deny window \"{by}\"")),
            Verdict::OutsideAllow => Some("outside configured allow windows".to_string()),
        }
    }

    /// Stable machine-readable outcome label (for metrics/events) when
    /// blocked.
    pub fn outcome(&self) -> Option<&'static str> {
        match self {
            Verdict::Allowed { .. } => None,
            Verdict::Denied { .. } => Some("window_denied"),
            Verdict::OutsideAllow => Some("window_outside_allow"),
        }
    }
}

/// The configured deny and allow windows bound to a time zone: the single
/// object the coordinator asks "may this node reboot now, and if not, when".
#[derive(Debug, Clone)]
pub struct Windows {
    deny: Vec<Window>,
    allow: Vec<Window>,
    tz: TimeZone,
    /// Sorted, deduplicated minute-of-week values where any window starts
    /// or ends.
    boundaries: Vec<u32>,
}

impl Windows {
    /// Parses both lists. Errors are returned for every bad expression,
    /// each tagged with list name ("deny"/"allow") and index.
    pub fn new(
        deny: &[String],
        allow: &[String],
        tz: TimeZone,
    ) -> Result<Self, Vec<WindowsConfigError>> {
        let mut errors = Vec::new();
        let mut parse_list = |list: &'static str, exprs: &[String]| -> Vec<Window> {
            exprs
                .iter()
                .enumerate()
                .filter_map(|(index, e)| {
                    parse(e)
                        .map_err(|error| errors.push(WindowsConfigError { list, index, error }))
                        .ok()
                })
                .collect()
        };
        let deny = parse_list("deny", deny);
        let allow = parse_list("allow", allow);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut boundaries: Vec<u32> = deny
            .iter()
            .chain(&allow)
            .flat_map(Window::boundaries)
            .collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        Ok(Windows {
            deny,
            allow,
            tz,
            boundaries,
        })
    }

    /// No windows at all: reboots are never restricted by time (infallible, unlike parsing).
    pub fn unrestricted(tz: TimeZone) -> Self {
        Windows {
            deny: Vec::new(),
            allow: Vec::new(),
            tz,
            boundaries: Vec::new(),
        }
    }

    /// True when no windows are configured, i.e. reboots are never
    /// restricted by time.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// The time zone whose civil time the windows are evaluated in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Decides whether a reboot at `at` is permitted: deny wins over allow;
    /// if there is at least one allow window, one must match.
    pub fn verdict(&self, at: Timestamp) -> Verdict {
        let dt = self.tz.to_datetime(at);
        if let Some(w) = self.deny.iter().find(|w| w.contains(dt)) {
            return Verdict::Denied {
                by: w.expr().to_string(),
            };
        }
        if self.allow.is_empty() {
            return Verdict::Allowed { by: None };
        }
        match self.allow.iter().find(|w| w.contains(dt)) {
            Some(w) => Verdict::Allowed {
                by: Some(w.expr().to_string()),
            },
            None => Verdict::OutsideAllow,
        }
    }

    /// Allocation-free form of `verdict(at).allowed()` for the searches.
    fn is_allowed(&self, at: Timestamp) -> bool {
        let dt = self.tz.to_datetime(at);
        !self.deny.iter().any(|w| w.contains(dt))
            && (self.allow.is_empty() || self.allow.iter().any(|w| w.contains(dt)))
    }

    /// The earliest instant >= `at` when the verdict is Allowed, so the
    /// coordinator can sleep until then; `None` if there is none within
    /// [`SEARCH_HORIZON_DAYS`] (e.g. deny `* 0:00-0:00`).
    pub fn next_allowed(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_allowed(at) {
            return Some(at);
        }
        self.candidates(at)
            .into_iter()
            .find(|&t| self.is_allowed(t))
    }

    /// When the current allowed period ends (earliest instant > `at` that
    /// is not allowed), so a started reboot can be bounded; `None` if `at`
    /// is not allowed or the period does not end within
    /// [`SEARCH_HORIZON_DAYS`].
    pub fn allowed_until(&self, at: Timestamp) -> Option<Timestamp> {
        if !self.is_allowed(at) {
            return None;
        }
        self.candidates(at)
            .into_iter()
            .find(|&t| !self.is_allowed(t))
    }

    /// All instants in `(at, at + horizon]` where the verdict may change,
    /// ascending: every instant whose civil time is a window boundary (both
    /// instants in a fold; the "compatible" instant in a gap) plus every
    /// offset transition of the time zone. Between two consecutive
    /// candidates civil time advances continuously without crossing a
    /// boundary, so the verdict is constant there.
    fn candidates(&self, at: Timestamp) -> Vec<Timestamp> {
        let horizon = at
            .checked_add(SignedDuration::from_hours(SEARCH_HORIZON_DAYS * 24))
            .unwrap_or(Timestamp::MAX);
        let in_range = |t: &Timestamp| *t > at && *t <= horizon;

        let mut out: Vec<Timestamp> = self
            .tz
            .following(at)
            .map(|tr| tr.timestamp())
            .take_while(|t| *t <= horizon)
            .collect();

        if !self.boundaries.is_empty() {
            // Offsets move civil time by at most ~a day; pad by two days.
            let first = shift_days(self.tz.to_datetime(at).date(), -2);
            let last = shift_days(self.tz.to_datetime(horizon).date(), 2);
            let mut day = first;
            while day <= last {
                let weekday = u32::from(day.weekday().to_sunday_zero_offset().unsigned_abs());
                for &b in &self.boundaries {
                    if b / MINUTES_PER_DAY != weekday {
                        continue;
                    }
                    if let Some(dt) = civil_at(day, b % MINUTES_PER_DAY) {
                        self.push_instants(dt, &mut out);
                    }
                }
                match day.tomorrow() {
                    Ok(next) => day = next,
                    Err(_) => break,
                }
            }
        }

        out.retain(in_range);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Pushes the instants at which civil time equals `dt`.
    fn push_instants(&self, dt: DateTime, out: &mut Vec<Timestamp>) {
        let amb = self.tz.to_ambiguous_timestamp(dt);
        let fold = matches!(amb.offset(), AmbiguousOffset::Fold { .. });
        if fold && let Ok(t) = amb.later() {
            out.push(t);
        }
        // Earlier instant of a fold, the unique instant, or for a gap the
        // "compatible" instant (the transition itself is pushed separately).
        if let Ok(t) = amb.compatible() {
            out.push(t);
        }
    }
}

/// `date` moved by `days`, clamped at the ends of the supported range.
fn shift_days(date: Date, days: i64) -> Date {
    date.checked_add(jiff::Span::new().days(days))
        .unwrap_or(date)
}

/// Civil datetime at `minute` minutes past midnight of `date`.
fn civil_at(date: Date, minute: u32) -> Option<DateTime> {
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    Time::new(hour, min, 0, 0).ok().map(|t| date.to_datetime(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Weekday;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn w(deny: &[&str], allow: &[&str], zone: &str) -> Windows {
        let d: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
        let a: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        Windows::new(&d, &a, tz(zone)).unwrap()
    }

    #[test]
    fn unrestricted_is_what_no_expressions_parse_to() {
        let u = Windows::unrestricted(tz("UTC"));
        assert!(u.is_empty());
        let at: Timestamp = "2026-11-27T03:00:00Z".parse().unwrap();
        assert_eq!(u.verdict(at), w(&[], &[], "UTC").verdict(at));
        assert!(u.verdict(at).allowed());
        assert_eq!(u.allowed_until(at), None);
    }

    fn allow1(expr: &str) -> Windows {
        w(&[], &[expr], "UTC")
    }

    /// Civil time in `zone`, "compatible" disambiguation.
    fn at(zone: &str, s: &str) -> Timestamp {
        let dt: DateTime = s.parse().unwrap();
        tz(zone).to_ambiguous_timestamp(dt).compatible().unwrap()
    }

    fn utc(s: &str) -> Timestamp {
        at("UTC", s)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn calendar_assumptions() {
        let d = |s: &str| s.parse::<Date>().unwrap().weekday();
        assert_eq!(d("2026-03-06"), Weekday::Friday);
        assert_eq!(d("2026-03-08"), Weekday::Sunday);
        assert_eq!(d("2026-03-29"), Weekday::Sunday);
        assert_eq!(d("2026-10-25"), Weekday::Sunday);
        assert_eq!(d("2026-11-01"), Weekday::Sunday);
    }

    #[test]
    fn fri_to_mon() {
        let ws = allow1("Fri 18:00-Mon 08:00");
        assert!(ws.verdict(utc("2026-03-07T12:00")).allowed()); // Sat noon
        assert!(ws.verdict(utc("2026-03-09T07:59")).allowed()); // Mon
        assert!(ws.verdict(utc("2026-03-09T07:59:59.999")).allowed());
        assert!(!ws.verdict(utc("2026-03-09T08:00")).allowed());
        assert!(!ws.verdict(utc("2026-03-06T17:59")).allowed()); // Fri
        assert!(ws.verdict(utc("2026-03-06T18:00")).allowed());
        assert!(!ws.verdict(utc("2026-03-11T12:00")).allowed()); // Wed
        assert_eq!(
            ws.verdict(utc("2026-03-07T12:00")),
            Verdict::Allowed {
                by: Some("Fri 18:00-Mon 08:00".into())
            }
        );
    }

    #[test]
    fn every_night() {
        let ws = allow1("* 23:00-06:00");
        for day in 1..=14 {
            let d = format!("2026-03-{day:02}");
            assert!(ws.verdict(utc(&format!("{d}T23:00"))).allowed());
            assert!(ws.verdict(utc(&format!("{d}T05:59"))).allowed());
            assert!(!ws.verdict(utc(&format!("{d}T06:00"))).allowed());
            assert!(!ws.verdict(utc(&format!("{d}T22:59"))).allowed());
            assert!(!ws.verdict(utc(&format!("{d}T12:00"))).allowed());
        }
    }

    #[test]
    fn day_range_overnight() {
        let ws = allow1("Tue-Thu 22:00-04:00");
        assert!(ws.verdict(utc("2026-03-13T03:00")).allowed()); // Fri, from Thu 22:00
        assert!(!ws.verdict(utc("2026-03-13T22:00")).allowed()); // Fri 22:00
        assert!(ws.verdict(utc("2026-03-10T22:00")).allowed()); // Tue
        assert!(!ws.verdict(utc("2026-03-10T03:00")).allowed()); // Tue early: Mon not in range
        assert!(!ws.verdict(utc("2026-03-09T22:00")).allowed()); // Mon
    }

    #[test]
    fn week_wrap() {
        let ws = allow1("Sat 22:00-Sun 02:00");
        assert!(ws.verdict(utc("2026-03-07T23:00")).allowed());
        assert!(ws.verdict(utc("2026-03-08T01:59")).allowed());
        assert!(!ws.verdict(utc("2026-03-08T02:00")).allowed());
        assert!(!ws.verdict(utc("2026-03-07T21:59")).allowed());

        let ws = allow1("Sun-Mon 10:00-11:00");
        assert!(ws.verdict(utc("2026-03-08T10:30")).allowed());
        assert!(ws.verdict(utc("2026-03-09T10:30")).allowed());
        assert!(!ws.verdict(utc("2026-03-07T10:30")).allowed());
        let ws = allow1("Sat-Mon 10:00-11:00");
        assert!(ws.verdict(utc("2026-03-07T10:30")).allowed());
        assert!(ws.verdict(utc("2026-03-08T10:30")).allowed());
        assert!(!ws.verdict(utc("2026-03-10T10:30")).allowed());

        let ws = allow1("Sat 23:00-02:00");
        assert!(ws.verdict(utc("2026-03-08T01:30")).allowed()); // Sunday
        assert!(!ws.verdict(utc("2026-03-08T02:00")).allowed());
        assert!(!ws.verdict(utc("2026-03-07T01:30")).allowed()); // Sat early: Fri not listed
    }

    #[test]
    fn equal_start_end_is_24h() {
        let ws = allow1("Wed 9:00-9:00");
        assert!(ws.verdict(utc("2026-03-11T09:00")).allowed());
        assert!(ws.verdict(utc("2026-03-12T08:59")).allowed());
        assert!(!ws.verdict(utc("2026-03-12T09:00")).allowed());
        assert!(!ws.verdict(utc("2026-03-11T08:59")).allowed());
    }

    #[test]
    fn half_open_boundaries() {
        let ws = allow1("Mon 10:00-11:00");
        assert!(!ws.verdict(ts("2026-03-09T09:59:59.999999999Z")).allowed());
        assert!(ws.verdict(ts("2026-03-09T10:00:00Z")).allowed());
        assert!(ws.verdict(ts("2026-03-09T10:59:59.999999999Z")).allowed());
        assert!(!ws.verdict(ts("2026-03-09T11:00:00Z")).allowed());
    }

    #[test]
    fn deny_beats_allow_and_verdict_texts() {
        let ws = w(&["Sat 12:00-13:00"], &["Fri 18:00-Mon 08:00"], "UTC");
        let v = ws.verdict(utc("2026-03-07T12:30"));
        assert_eq!(
            v,
            Verdict::Denied {
                by: "Sat 12:00-13:00".into()
            }
        );
        assert_eq!(
            v.reason().as_deref(),
            Some("blocked by deny window \"Sat 12:00-13:00\"")
        );
        assert_eq!(v.outcome(), Some("window_denied"));
        assert!(!v.allowed());

        let v = ws.verdict(utc("2026-03-11T12:00"));
        assert_eq!(v, Verdict::OutsideAllow);
        assert_eq!(
            v.reason().as_deref(),
            Some("outside configured allow windows")
        );
        assert_eq!(v.outcome(), Some("window_outside_allow"));

        let v = ws.verdict(utc("2026-03-07T13:00"));
        assert!(v.allowed());
        assert_eq!(v.reason(), None);
        assert_eq!(v.outcome(), None);
    }

    #[test]
    fn no_allow_windows() {
        let ws = w(&["* 08:00-18:00"], &[], "UTC");
        assert!(!ws.is_empty());
        assert_eq!(
            ws.verdict(utc("2026-03-11T20:00")),
            Verdict::Allowed { by: None }
        );
        assert!(!ws.verdict(utc("2026-03-11T12:00")).allowed());

        let none = w(&[], &[], "Europe/Berlin");
        assert!(none.is_empty());
        assert_eq!(
            none.verdict(utc("2026-03-11T20:00")),
            Verdict::Allowed { by: None }
        );
        let t = utc("2026-03-11T20:00");
        assert_eq!(none.next_allowed(t), Some(t));
        assert_eq!(none.allowed_until(t), None);
    }

    #[test]
    fn first_matching_expression_is_reported() {
        let ws = w(&[], &["Mon 9:00-17:00", "* 10:00-11:00"], "UTC");
        assert_eq!(
            ws.verdict(utc("2026-03-09T10:30")),
            Verdict::Allowed {
                by: Some("Mon 9:00-17:00".into())
            }
        );
        assert_eq!(
            ws.verdict(utc("2026-03-10T10:30")),
            Verdict::Allowed {
                by: Some("* 10:00-11:00".into())
            }
        );
    }

    #[test]
    fn config_errors_are_all_reported() {
        let deny = vec![
            "Mon 9:00-10:00".to_string(),
            "Fri 25:00-Mon 08:00".to_string(),
        ];
        let allow = vec!["x".to_string(), "10:00-11:00".to_string(), "".to_string()];
        let errs = Windows::new(&deny, &allow, TimeZone::UTC).unwrap_err();
        let tags: Vec<(&str, usize)> = errs.iter().map(|e| (e.list, e.index)).collect();
        assert_eq!(tags, vec![("deny", 1), ("allow", 0), ("allow", 2)]);
        assert_eq!(
            errs[0].to_string(),
            "deny[1]: invalid window \"Fri 25:00-Mon 08:00\" at column 5: hour out of range in \"25:00\""
        );
    }

    #[test]
    fn case_insensitive_and_lists_evaluate() {
        let ws = allow1("MON,wed,FrI 10:00-11:00");
        assert!(ws.verdict(utc("2026-03-09T10:30")).allowed());
        assert!(!ws.verdict(utc("2026-03-10T10:30")).allowed());
        assert!(ws.verdict(utc("2026-03-11T10:30")).allowed());
        assert!(ws.verdict(utc("2026-03-13T10:30")).allowed());
    }

    #[test]
    fn next_allowed_cases() {
        let ws = w(&[], &["* 22:00-04:00"], "UTC");
        // Inside: returns at.
        let t = utc("2026-03-10T23:15:07");
        assert_eq!(ws.next_allowed(t), Some(t));
        // Before the opening today.
        assert_eq!(
            ws.next_allowed(utc("2026-03-10T12:34:56")),
            Some(utc("2026-03-10T22:00"))
        );
        // Over a weekend.
        let ws = w(&[], &["Mon-Fri 9:00-17:00"], "UTC");
        assert_eq!(
            ws.next_allowed(utc("2026-03-06T17:00")),
            Some(utc("2026-03-09T09:00"))
        );
        // After a deny window ends.
        let ws = w(&["Tue 10:00-12:30"], &[], "UTC");
        assert_eq!(
            ws.next_allowed(utc("2026-03-10T11:00")),
            Some(utc("2026-03-10T12:30"))
        );
        // Deny overlapping the start of an allow window.
        let ws = w(&["* 21:00-22:30"], &["* 22:00-04:00"], "UTC");
        assert_eq!(
            ws.next_allowed(utc("2026-03-10T12:00")),
            Some(utc("2026-03-10T22:30"))
        );
        // Always denied.
        let ws = w(&["* 0:00-0:00"], &[], "Europe/Berlin");
        assert_eq!(ws.next_allowed(utc("2026-03-10T12:00")), None);
        // Allow window that never matches because deny covers it.
        let ws = w(&["Mon 0:00-Mon 0:00"], &["Sun 1:00-2:00"], "UTC");
        assert_eq!(ws.next_allowed(utc("2026-03-10T12:00")), None);
    }

    #[test]
    fn allowed_until_cases() {
        let ws = w(&["Sat 12:00-13:00"], &["Fri 18:00-Mon 08:00"], "UTC");
        assert_eq!(
            ws.allowed_until(utc("2026-03-06T19:00")),
            Some(utc("2026-03-07T12:00"))
        );
        assert_eq!(
            ws.allowed_until(utc("2026-03-07T13:00")),
            Some(utc("2026-03-09T08:00"))
        );
        assert_eq!(ws.allowed_until(utc("2026-03-07T12:00")), None);
        assert_eq!(ws.allowed_until(utc("2026-03-11T12:00")), None);
        // Never ends.
        let ws = w(&[], &["* 0:00-0:00"], "UTC");
        assert_eq!(ws.allowed_until(utc("2026-03-11T12:00")), None);
    }

    #[test]
    fn berlin_spring_forward() {
        // 2026-03-29 02:00 CET -> 03:00 CEST; 02:xx does not exist.
        let z = "Europe/Berlin";
        let ws = w(&[], &["* 02:30-03:30"], z);
        assert!(!ws.verdict(ts("2026-03-29T00:59:59Z")).allowed()); // 01:59:59 CET
        assert!(ws.verdict(ts("2026-03-29T01:00:00Z")).allowed()); // 03:00 CEST
        assert!(ws.verdict(ts("2026-03-29T01:29:00Z")).allowed()); // 03:29 CEST
        assert!(!ws.verdict(ts("2026-03-29T01:30:00Z")).allowed()); // 03:30 CEST
        // The window opens at the transition, 03:00 local, not at the
        // "compatible" 03:30 (which is when it closes).
        assert_eq!(
            ws.next_allowed(ts("2026-03-28T23:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            ws.allowed_until(ts("2026-03-29T01:00:00Z")),
            Some(ts("2026-03-29T01:30:00Z"))
        );
        // Normal day before: 02:30 CET.
        assert_eq!(
            ws.next_allowed(ts("2026-03-27T23:00:00Z")),
            Some(ts("2026-03-28T01:30:00Z"))
        );

        // A window entirely inside the gap never matches that day.
        let ws = w(&[], &["Sun 02:10-02:50"], z);
        assert_eq!(
            ws.next_allowed(ts("2026-03-28T12:00:00Z")),
            Some(at(z, "2026-04-05T02:10"))
        );
        // Deny that ends inside the gap releases at the transition.
        let ws = w(&["Sun 01:00-02:30"], &[], z);
        assert!(!ws.verdict(ts("2026-03-29T00:30:00Z")).allowed());
        assert_eq!(
            ws.next_allowed(ts("2026-03-29T00:30:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn berlin_fall_back() {
        // 2026-10-25 03:00 CEST -> 02:00 CET; 02:xx happens twice.
        let z = "Europe/Berlin";
        let ws = w(&[], &["* 02:00-03:00"], z);
        assert!(!ws.verdict(ts("2026-10-24T23:59:59Z")).allowed()); // 01:59:59 CEST
        assert!(ws.verdict(ts("2026-10-25T00:00:00Z")).allowed()); // 02:00 CEST
        assert!(ws.verdict(ts("2026-10-25T01:30:00Z")).allowed()); // 02:30 CET
        assert!(!ws.verdict(ts("2026-10-25T02:00:00Z")).allowed()); // 03:00 CET
        assert_eq!(
            ws.allowed_until(ts("2026-10-25T00:00:00Z")),
            Some(ts("2026-10-25T02:00:00Z"))
        );
        // A deny window on the repeated half hour blocks twice.
        let ws = w(&["Sun 02:30-03:00"], &[], z);
        assert!(!ws.verdict(ts("2026-10-25T00:45:00Z")).allowed()); // 02:45 CEST
        assert!(ws.verdict(ts("2026-10-25T01:00:00Z")).allowed()); // 02:00 CET
        assert!(!ws.verdict(ts("2026-10-25T01:45:00Z")).allowed()); // 02:45 CET
        assert_eq!(
            ws.next_allowed(ts("2026-10-25T00:45:00Z")),
            Some(ts("2026-10-25T01:00:00Z"))
        );
        assert_eq!(
            ws.allowed_until(ts("2026-10-25T01:00:00Z")),
            Some(ts("2026-10-25T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08 02:00 EST -> 03:00 EDT.
        let z = "America/New_York";
        let ws = w(&[], &["* 02:30-03:30"], z);
        assert!(!ws.verdict(ts("2026-03-08T06:59:00Z")).allowed()); // 01:59 EST
        assert!(ws.verdict(ts("2026-03-08T07:00:00Z")).allowed()); // 03:00 EDT
        assert_eq!(
            ws.next_allowed(ts("2026-03-08T05:00:00Z")),
            Some(ts("2026-03-08T07:00:00Z"))
        );
        // Real-time length of the window on the gap day is 30 minutes.
        assert_eq!(
            ws.allowed_until(ts("2026-03-08T07:00:00Z")),
            Some(ts("2026-03-08T07:30:00Z"))
        );
        // Deny across the gap; next allowed right when it ends.
        let ws = w(&["Sun 01:00-04:00"], &[], z);
        assert_eq!(
            ws.next_allowed(ts("2026-03-08T06:30:00Z")),
            Some(at(z, "2026-03-08T04:00"))
        );
        assert_eq!(at(z, "2026-03-08T04:00"), ts("2026-03-08T08:00:00Z"));
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01 02:00 EDT -> 01:00 EST; 01:xx happens twice.
        let z = "America/New_York";
        let ws = w(&[], &["* 01:00-02:00"], z);
        let open = ts("2026-11-01T05:00:00Z"); // 01:00 EDT
        assert!(!ws.verdict(ts("2026-11-01T04:59:59Z")).allowed());
        assert!(ws.verdict(open).allowed());
        assert!(ws.verdict(ts("2026-11-01T06:30:00Z")).allowed()); // 01:30 EST
        assert_eq!(ws.next_allowed(ts("2026-11-01T03:00:00Z")), Some(open));
        // Both 01:xx hours: 2 h of real time.
        let until = ws.allowed_until(open).unwrap();
        assert_eq!(until, ts("2026-11-01T07:00:00Z")); // 02:00 EST
        assert_eq!(until.duration_since(open), SignedDuration::from_hours(2));

        // Allow only on the half hour: two separate periods that morning.
        let ws = w(&[], &["Sun 01:00-01:30"], z);
        assert_eq!(ws.allowed_until(open), Some(ts("2026-11-01T05:30:00Z")));
        assert_eq!(
            ws.next_allowed(ts("2026-11-01T05:30:00Z")),
            Some(ts("2026-11-01T06:00:00Z"))
        );
        assert_eq!(
            ws.allowed_until(ts("2026-11-01T06:00:00Z")),
            Some(ts("2026-11-01T06:30:00Z"))
        );
    }

    /// Property tests: random valid expressions, random instants in 2026,
    /// several zones (including DST and a 30-minute DST shift).
    mod props {
        use super::*;
        use proptest::prelude::*;

        const ZONES: &[&str] = &[
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ];
        const NAMES: &[&str] = &[
            "sun",
            "sunday",
            "mon",
            "monday",
            "tue",
            "tues",
            "tuesday",
            "wed",
            "weds",
            "wednesday",
            "thu",
            "thur",
            "thurs",
            "thursday",
            "fri",
            "friday",
            "sat",
            "saturday",
        ];
        /// 2026-01-01T00:00:00Z and the length of 2026 in seconds.
        const YEAR_START: i64 = 1_767_225_600;
        const YEAR_SECS: i64 = 365 * 86_400;

        fn day_name() -> impl Strategy<Value = String> {
            (0..NAMES.len(), 0..3u8).prop_map(|(i, case)| {
                let n = NAMES[i];
                match case {
                    0 => n.to_string(),
                    1 => n.to_uppercase(),
                    _ => {
                        let mut c = n.chars();
                        c.next()
                            .map(|f| f.to_uppercase().chain(c).collect())
                            .unwrap_or_default()
                    }
                }
            })
        }

        fn day_item() -> impl Strategy<Value = String> {
            prop_oneof![
                day_name(),
                (day_name(), day_name()).prop_map(|(a, b)| format!("{a}-{b}")),
            ]
        }

        fn start_spec() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just("* ".to_string()),
                (
                    prop::collection::vec(day_item(), 1..4),
                    prop_oneof![Just(","), Just(", "), Just(" ,"), Just(" , ")],
                )
                    .prop_map(|(v, sep)| format!("{} ", v.join(sep))),
            ]
        }

        /// Start specs that resolve to exactly one day, as required when
        /// the end names a day.
        fn single_day_spec() -> impl Strategy<Value = String> {
            (day_name(), 0..3u8).prop_map(|(n, form)| match form {
                0 => format!("{n} "),
                1 => format!("{n}-{n} "),
                _ => format!("{n}, {n} "),
            })
        }

        fn time() -> impl Strategy<Value = String> {
            // Bias towards a few hours so windows overlap and touch.
            (prop_oneof![0..24u32, 0..4u32], 0..60u32, 0..4u8).prop_map(|(h, m, form)| {
                let m = if m % 2 == 0 { (m / 15) * 15 } else { m };
                match form {
                    0 => format!("{h:02}:{m:02}"),
                    1 => format!("{h}:{m:02}"),
                    2 => format!("+{h}:{m:02}"),
                    _ => format!("{h}:{m}"),
                }
            })
        }

        fn sep() -> impl Strategy<Value = &'static str> {
            prop_oneof![Just("-"), Just(" - "), Just(" -")]
        }

        fn expr() -> impl Strategy<Value = String> {
            prop_oneof![
                (start_spec(), time(), sep(), time())
                    .prop_map(|(days, start, sep, end)| format!("{days}{start}{sep}{end}")),
                (single_day_spec(), time(), sep(), day_name(), time())
                    .prop_map(|(days, start, sep, d, end)| format!("{days}{start}{sep}{d} {end}")),
            ]
        }

        fn instant(
            tz: &TimeZone,
            near: bool,
            k: usize,
            off: i64,
            secs: i64,
            round: bool,
        ) -> Timestamp {
            let year_start = Timestamp::from_second(YEAR_START).unwrap();
            let trans: Vec<Timestamp> = tz
                .following(year_start)
                .map(|t| t.timestamp())
                .take_while(|t| t.as_second() < YEAR_START + YEAR_SECS)
                .collect();
            let mut s = if near && !trans.is_empty() {
                trans[k % trans.len()].as_second() + off
            } else {
                YEAR_START + secs
            };
            if round {
                s -= s.rem_euclid(60);
            }
            Timestamp::from_second(s).unwrap()
        }

        /// Independent oracle: offsets and transitions fall on whole UTC
        /// minutes, so the verdict is constant within each UTC minute; scan
        /// minute by minute for the first instant where `pred` holds.
        fn scan(ws: &Windows, t: Timestamp, pred: impl Fn(bool) -> bool) -> Option<Timestamp> {
            if pred(ws.verdict(t).allowed()) {
                return Some(t);
            }
            let horizon = t.as_second() + SEARCH_HORIZON_DAYS * 86_400;
            let mut m = t.as_second().div_euclid(60) * 60 + 60;
            while m <= horizon {
                let ts = Timestamp::from_second(m).unwrap();
                if pred(ws.verdict(ts).allowed()) {
                    return Some(ts);
                }
                m += 60;
            }
            None
        }

        fn point(t: Timestamp, end: Timestamp, frac: u32) -> Timestamp {
            let span = end.as_nanosecond() - t.as_nanosecond();
            Timestamp::from_nanosecond(t.as_nanosecond() + span * i128::from(frac) / (1i128 << 32))
                .unwrap()
        }

        /// Checks next_allowed/allowed_until at `t` against the oracle and
        /// against random sample points.
        fn check(
            deny: &[String],
            allow: &[String],
            tz: TimeZone,
            t: Timestamp,
            fracs: &[u32],
        ) -> Result<(), TestCaseError> {
            let ws = Windows::new(deny, allow, tz).unwrap();
            let horizon = t + SignedDuration::from_hours(SEARCH_HORIZON_DAYS * 24);

            let next = ws.next_allowed(t);
            prop_assert_eq!(next, scan(&ws, t, |a| a));
            match next {
                Some(n) => {
                    prop_assert!(n >= t);
                    prop_assert!(ws.verdict(n).allowed());
                    if n > t {
                        prop_assert!(!ws.verdict(n - SignedDuration::from_nanos(1)).allowed());
                        for &f in fracs {
                            let p = point(t, n, f);
                            prop_assert!(!ws.verdict(p).allowed(), "allowed at {} before {}", p, n);
                        }
                    }
                }
                None => {
                    for &f in fracs {
                        prop_assert!(!ws.verdict(point(t, horizon, f)).allowed());
                    }
                }
            }

            let start = next.unwrap_or(t);
            let until = ws.allowed_until(start);
            if next.is_none() {
                prop_assert_eq!(until, None);
            } else {
                let expected = scan(&ws, start, |a| !a).filter(|&u| u > start);
                prop_assert_eq!(until, expected);
                let end =
                    until.unwrap_or(start + SignedDuration::from_hours(SEARCH_HORIZON_DAYS * 24));
                if let Some(u) = until {
                    prop_assert!(u > start);
                    prop_assert!(!ws.verdict(u).allowed());
                    prop_assert!(ws.verdict(u - SignedDuration::from_nanos(1)).allowed());
                }
                for &f in fracs {
                    let p = point(start, end, f);
                    prop_assert!(
                        ws.verdict(p).allowed(),
                        "not allowed at {} before {:?}",
                        p,
                        until
                    );
                }
            }
            Ok(())
        }

        /// Expressions crowded around the small hours of Sundays, where the
        /// 2026 DST transitions of the test zones happen.
        fn dst_expr() -> impl Strategy<Value = String> {
            let t = || (0..4u32, 0..4u32).prop_map(|(h, q)| format!("{h}:{:02}", q * 15));
            prop_oneof![
                (
                    prop_oneof![Just("* "), Just("Sun "), Just(""), Just("Sat-Sun ")],
                    t(),
                    t(),
                )
                    .prop_map(|(d, s, en)| format!("{d}{s}-{en}")),
                (
                    prop_oneof![Just("Sun "), Just("Sat "), Just("Sun-Sun ")],
                    t(),
                    prop_oneof![Just("Sun "), Just("Mon "), Just("Sat ")],
                    t(),
                )
                    .prop_map(|(d, s, e, en)| format!("{d}{s}-{e}{en}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn next_allowed_and_allowed_until_are_consistent(
                deny in prop::collection::vec(expr(), 0..3),
                allow in prop::collection::vec(expr(), 0..3),
                zone in 0..ZONES.len(),
                near in any::<bool>(),
                k in 0..8usize,
                off in prop_oneof![-2 * 86_400i64..2 * 86_400, -3 * 3_600i64..3 * 3_600],
                secs in 0..YEAR_SECS,
                round in any::<bool>(),
                fracs in prop::collection::vec(any::<u32>(), 10),
            ) {
                let tz = TimeZone::get(ZONES[zone]).unwrap();
                let t = instant(&tz, near, k, off, secs, round);
                check(&deny, &allow, tz, t, &fracs)?;
            }

            #[test]
            fn dst_transitions(
                deny in prop::collection::vec(dst_expr(), 0..3),
                allow in prop::collection::vec(dst_expr(), 0..3),
                zone in 1..4usize,
                k in 0..8usize,
                off in -3 * 3_600i64..3 * 3_600,
                round in any::<bool>(),
                fracs in prop::collection::vec(any::<u32>(), 10),
            ) {
                let tz = TimeZone::get(ZONES[zone]).unwrap();
                let t = instant(&tz, true, k, off, 0, round);
                check(&deny, &allow, tz, t, &fracs)?;
            }

            #[test]
            fn generated_expressions_parse_and_round_trip(e in expr()) {
                let w = parse(&e);
                prop_assert!(w.is_ok(), "{:?}: {:?}", e, w);
                if let Ok(w) = w {
                    prop_assert_eq!(w.to_string(), e.trim());
                }
            }
        }
    }
}
