//! Maintenance windows: when a node may (allow) or must not (deny) reboot.
//!
//! A window is written as `[DAYSPEC ]H:MM-[DAYSPEC ]H:MM`, the same grammar
//! the Go daemon accepts, e.g. `Fri 18:00-Mon 08:00`, `* 23:00-06:00` or
//! `Tue-Thu 22:00-04:00`. [`parse`] turns one expression into a [`Window`];
//! [`Windows`] combines deny and allow lists and evaluates them in the civil
//! local time of a time zone.

mod eval;
mod parse;

use std::fmt;

use jiff::civil::DateTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use eval::{SEARCH_HORIZON_DAYS, Verdict, Windows};

/// Minutes in one day; window arithmetic is done in whole minutes.
const MINUTES_PER_DAY: u32 = 24 * 60;
/// Minutes in one week; every window repeats weekly.
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;

/// One weekly recurring half-open interval `[start, start + len)`.
///
/// `start` counts minutes from Sunday 00:00 (civil time) and `len` is in
/// `1..=MINUTES_PER_WEEK`, so an interval may wrap past Saturday midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: u32,
    len: u32,
}

impl Interval {
    /// Whether minute-of-week `m` (floor of a civil time) lies inside.
    fn contains(self, m: u32) -> bool {
        (m + MINUTES_PER_WEEK - self.start) % MINUTES_PER_WEEK < self.len
    }

    /// Minute-of-week at which the interval ends (exclusive).
    fn end(self) -> u32 {
        (self.start + self.len) % MINUTES_PER_WEEK
    }
}

/// A parsed window expression, kept together with its source text so that
/// verdicts and logs can name the expression that decided them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    expr: String,
    intervals: Vec<Interval>,
}

impl Window {
    /// The expression as written (surrounding whitespace trimmed), used to
    /// explain which window matched.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Whether a civil (wall-clock) datetime falls inside this window; this
    /// is the primitive that all time-zone aware evaluation builds on.
    pub fn contains(&self, dt: DateTime) -> bool {
        let m = minute_of_week(dt);
        self.intervals.iter().any(|iv| iv.contains(m))
    }

    /// Minute-of-week values where membership can change.
    fn boundaries(&self) -> impl Iterator<Item = u32> + '_ {
        self.intervals.iter().flat_map(|iv| [iv.start, iv.end()])
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl std::str::FromStr for Window {
    type Err = WindowParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expr)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Minute of the week (Sunday 00:00 = 0) of a civil datetime, seconds
/// truncated. Window bounds are whole minutes, so truncation is exact for
/// half-open membership tests.
fn minute_of_week(dt: DateTime) -> u32 {
    let day = u32::from(dt.weekday().to_sunday_zero_offset().unsigned_abs());
    let hour = u32::from(dt.hour().unsigned_abs());
    let minute = u32::from(dt.minute().unsigned_abs());
    day * MINUTES_PER_DAY + hour * 60 + minute
}

/// A malformed window expression, pointing at the offending column so an
/// operator can fix the config quickly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window {expr:?} at column {position}: {message}")]
pub struct WindowParseError {
    /// The expression exactly as given (untrimmed).
    pub expr: String,
    /// 1-based character column in `expr` where the problem is.
    pub position: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// A parse error tagged with where in the configuration it came from, so
/// that all bad entries can be reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}[{index}]: {error}")]
pub struct WindowsConfigError {
    /// Which list the expression was in: `"deny"` or `"allow"`.
    pub list: &'static str,
    /// 0-based index of the expression within that list.
    pub index: usize,
    /// The underlying parse error.
    #[source]
    pub error: WindowParseError,
}

/// Parses one window expression; exposed so config validation and tools can
/// check a single expression without building a [`Windows`].
pub fn parse(expr: &str) -> Result<Window, WindowParseError> {
    parse::parse_window(expr)
}
