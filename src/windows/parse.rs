//! Parser for window expressions `[DAYSPEC ]H:MM-[DAYSPEC ]H:MM`.
//!
//! The `-` is ambiguous (day ranges use it too), so the parser is positional:
//! an optional day list token, whitespace, the start time, then the `-` that
//! follows the start time, then an optional end day token and the end time.
//! Columns in errors are 1-based character positions in the untrimmed input.

use super::{Interval, MINUTES_PER_DAY, MINUTES_PER_WEEK, Window, WindowParseError};

/// Bit mask with one bit per weekday, Sunday = bit 0.
type DayMask = u8;

/// Every day of the week.
const ALL_DAYS: DayMask = 0x7f;

/// Character cursor over the trimmed part of the expression.
struct Cursor<'a> {
    expr: &'a str,
    chars: Vec<char>,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        if self.pos < self.end {
            self.chars.get(self.pos).copied()
        } else {
            None
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn skip_ws(&mut self) -> bool {
        let before = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        self.pos > before
    }

    /// Error at 0-based char index `idx`.
    fn err(&self, idx: usize, message: impl Into<String>) -> WindowParseError {
        WindowParseError {
            expr: self.expr.to_string(),
            position: idx + 1,
            message: message.into(),
        }
    }

    /// Reads a whitespace-delimited token; returns its start index and text.
    fn token(&mut self) -> (usize, String) {
        let start = self.pos;
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| !c.is_whitespace()) {
            s.push(c);
            self.pos += 1;
        }
        (start, s)
    }

    /// Reads consecutive ASCII digits; returns (start index, count, value).
    fn digits(&mut self) -> (usize, usize, u32) {
        let start = self.pos;
        let mut value: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(d);
            self.pos += 1;
        }
        (start, self.pos - start, value)
    }

    /// Parses `H:MM` / `HH:MM`, returning minutes since midnight.
    fn time(&mut self, what: &str) -> Result<u32, WindowParseError> {
        let (hstart, hlen, hour) = self.digits();
        if hlen == 0 {
            return Err(match self.peek() {
                Some(c) => self.err(hstart, format!("expected {what} time H:MM, found {c:?}")),
                None => self.err(hstart, format!("missing {what} time")),
            });
        }
        if hlen > 2 || hour > 23 {
            return Err(self.err(hstart, "hour must be 0-23"));
        }
        if self.peek() != Some(':') {
            return Err(self.err(self.pos, "expected ':' after hour"));
        }
        self.pos += 1;
        let (mstart, mlen, minute) = self.digits();
        if mlen != 2 {
            return Err(self.err(mstart, "minute must be two digits 00-59"));
        }
        if minute > 59 {
            return Err(self.err(mstart, "minute must be 00-59"));
        }
        Ok(hour * 60 + minute)
    }
}

/// Maps a day name or alias (any case) to its Sunday-based index.
fn day_index(name: &str) -> Option<u32> {
    let day = match name.to_lowercase().as_str() {
        "sun" | "sunday" => 0,
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "weds" | "wednesday" => 3,
        "thu" | "thur" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        _ => return None,
    };
    Some(day)
}

/// Looks up one day name located at char index `idx`.
fn day_at(cur: &Cursor<'_>, name: &str, idx: usize) -> Result<u32, WindowParseError> {
    if name.is_empty() {
        return Err(cur.err(idx, "missing day name"));
    }
    if name == "*" {
        return Err(cur.err(idx, "'*' cannot be combined with other days"));
    }
    day_index(name).ok_or_else(|| cur.err(idx, format!("unknown day name {name:?}")))
}

/// Parses a start DAYSPEC token beginning at char index `start`.
fn day_spec(cur: &Cursor<'_>, start: usize, token: &str) -> Result<DayMask, WindowParseError> {
    if token == "*" {
        return Ok(ALL_DAYS);
    }
    let mut mask: DayMask = 0;
    let mut idx = start;
    for item in token.split(',') {
        let item_len = item.chars().count();
        if item.is_empty() {
            return Err(cur.err(idx, "empty item in day list"));
        }
        if let Some((a, b)) = item.split_once('-') {
            let a_len = a.chars().count();
            let first = day_at(cur, a, idx)?;
            let last = day_at(cur, b, idx + a_len + 1)?;
            let mut d = first;
            loop {
                mask |= 1 << d;
                if d == last {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << day_at(cur, item, idx)?;
        }
        idx += item_len + 1;
    }
    Ok(mask)
}

/// Parses the end day token, which must be exactly one day name.
fn end_day(cur: &Cursor<'_>, start: usize, token: &str) -> Result<u32, WindowParseError> {
    for (i, c) in token.chars().enumerate() {
        let kind = match c {
            ',' => "a list",
            '-' => "a range",
            '*' => "'*'",
            _ => continue,
        };
        return Err(cur.err(
            start + i,
            format!("end day must be a single day name, not {kind}"),
        ));
    }
    day_at(cur, token, start)
}

/// Parses one window expression into its weekly intervals.
pub(super) fn parse_window(expr: &str) -> Result<Window, WindowParseError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut end = chars.len();
    while end > 0 && chars.get(end - 1).is_some_and(|c| c.is_whitespace()) {
        end -= 1;
    }
    let mut cur = Cursor {
        expr,
        chars,
        pos: 0,
        end,
    };
    cur.skip_ws();
    let first = cur.pos;
    if cur.at_end() {
        return Err(cur.err(first, "empty window expression"));
    }

    // Optional start day list, then mandatory whitespace.
    let days = if cur.peek().is_some_and(|c| c.is_ascii_digit()) {
        ALL_DAYS
    } else {
        let (start, token) = cur.token();
        let mask = day_spec(&cur, start, &token)?;
        cur.skip_ws();
        mask
    };
    let start_min = cur.time("start")?;

    // The separator is the first '-' after the start time.
    cur.skip_ws();
    match cur.peek() {
        Some('-') => cur.pos += 1,
        Some(c) => {
            return Err(cur.err(
                cur.pos,
                format!("expected '-' after start time, found {c:?}"),
            ));
        }
        None => return Err(cur.err(cur.pos, "missing '-' between start and end time")),
    }
    cur.skip_ws();

    // Optional end day, then the end time.
    let end_day = if cur.at_end() || cur.peek().is_some_and(|c| c.is_ascii_digit()) {
        None
    } else {
        let (start, token) = cur.token();
        let day = end_day(&cur, start, &token)?;
        cur.skip_ws();
        Some(day)
    };
    let end_min = cur.time("end")?;
    cur.skip_ws();
    if !cur.at_end() {
        let rest: String = cur
            .chars
            .get(cur.pos..cur.end)
            .unwrap_or_default()
            .iter()
            .collect();
        return Err(cur.err(cur.pos, format!("unexpected trailing text {rest:?}")));
    }

    let intervals = (0..7u32)
        .filter(|d| days & (1 << d) != 0)
        .map(|d| {
            let start = d * MINUTES_PER_DAY + start_min;
            let len = match end_day {
                None if end_min > start_min => end_min - start_min,
                None => end_min + MINUTES_PER_DAY - start_min,
                Some(e) => {
                    let target = e * MINUTES_PER_DAY + end_min;
                    match (target + MINUTES_PER_WEEK - start) % MINUTES_PER_WEEK {
                        0 => MINUTES_PER_WEEK,
                        len => len,
                    }
                }
            };
            Interval { start, len }
        })
        .collect();
    let text: String = cur
        .chars
        .get(first..end)
        .unwrap_or_default()
        .iter()
        .collect();
    Ok(Window {
        expr: text,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn iv(day: u32, h: u32, m: u32, len_min: u32) -> Interval {
        Interval {
            start: day * MINUTES_PER_DAY + h * 60 + m,
            len: len_min,
        }
    }

    fn err(expr: &str) -> (usize, String) {
        match parse(expr) {
            Ok(w) => panic!("{expr:?} parsed unexpectedly: {w:?}"),
            Err(e) => (e.position, e.message),
        }
    }

    #[test]
    fn simple_every_day() {
        let w = parse("23:00-06:00").unwrap();
        assert_eq!(w.intervals.len(), 7);
        assert_eq!(w.intervals[0], iv(0, 23, 0, 7 * 60));
        assert_eq!(
            w,
            Window {
                expr: "23:00-06:00".into(),
                ..parse("* 23:00-06:00").unwrap()
            }
        );
    }

    #[test]
    fn end_day_intervals() {
        let w = parse("Fri 18:00-Mon 08:00").unwrap();
        assert_eq!(w.intervals, vec![iv(5, 18, 0, 2 * 1440 + 14 * 60)]);
        // Same day, end before start: wraps a whole week minus the difference.
        let w = parse("Mon 10:00-Mon 08:00").unwrap();
        assert_eq!(w.intervals, vec![iv(1, 10, 0, MINUTES_PER_WEEK - 120)]);
        let w = parse("Mon 10:00-Mon 10:00").unwrap();
        assert_eq!(w.intervals, vec![iv(1, 10, 0, MINUTES_PER_WEEK)]);
        let w = parse("Sat 22:00-Sun 02:00").unwrap();
        assert_eq!(w.intervals, vec![iv(6, 22, 0, 240)]);
    }

    #[test]
    fn equal_times_are_a_full_day() {
        let w = parse("Wed 9:00-9:00").unwrap();
        assert_eq!(w.intervals, vec![iv(3, 9, 0, 1440)]);
    }

    #[test]
    fn ranges_wrap_and_lists_combine() {
        let w = parse("Fri-Mon 1:00-2:00").unwrap();
        let days: Vec<u32> = w
            .intervals
            .iter()
            .map(|i| i.start / MINUTES_PER_DAY)
            .collect();
        assert_eq!(days, vec![0, 1, 5, 6]);
        let w = parse("Sun-Mon 1:00-2:00").unwrap();
        let days: Vec<u32> = w
            .intervals
            .iter()
            .map(|i| i.start / MINUTES_PER_DAY)
            .collect();
        assert_eq!(days, vec![0, 1]);
        let w = parse("mon,WED,Fri-sat 1:00-2:00").unwrap();
        let days: Vec<u32> = w
            .intervals
            .iter()
            .map(|i| i.start / MINUTES_PER_DAY)
            .collect();
        assert_eq!(days, vec![1, 3, 5, 6]);
        // A single-day range is just that day.
        let w = parse("Tue-Tue 1:00-2:00").unwrap();
        assert_eq!(w.intervals.len(), 1);
    }

    #[test]
    fn every_alias() {
        let aliases = [
            (0, &["sun", "sunday", "SUN", "Sunday"][..]),
            (1, &["mon", "monday", "MoNdAy"]),
            (2, &["tue", "tues", "tuesday", "TUES"]),
            (3, &["wed", "weds", "wednesday", "Weds"]),
            (4, &["thu", "thur", "thurs", "thursday", "THURS"]),
            (5, &["fri", "friday", "FRI"]),
            (6, &["sat", "saturday", "Saturday"]),
        ];
        for (day, names) in aliases {
            for name in names {
                let w = parse(&format!("{name} 10:00-11:00")).unwrap();
                assert_eq!(w.intervals, vec![iv(day, 10, 0, 60)], "{name}");
                let w = parse(&format!("Sun 10:00-{name} 10:00")).unwrap();
                let expected = if day == 0 {
                    MINUTES_PER_WEEK
                } else {
                    day * 1440
                };
                assert_eq!(w.intervals[0].len, expected, "{name}");
            }
        }
    }

    #[test]
    fn whitespace_tolerated() {
        let w = parse("  Fri 18:00 - Mon 08:00 \t").unwrap();
        assert_eq!(w.expr(), "Fri 18:00 - Mon 08:00");
        assert_eq!(w.intervals, parse("Fri 18:00-Mon 08:00").unwrap().intervals);
        assert!(parse("Tue-Thu   22:00 -04:00").is_ok());
    }

    #[test]
    fn display_round_trips() {
        for e in ["Fri 18:00-Mon 08:00", "* 23:00-06:00", "7:05-7:05"] {
            assert_eq!(parse(e).unwrap().to_string(), e);
        }
    }

    #[test]
    fn errors_with_columns() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty window expression"),
            ("   ", 1, "empty window expression"),
            ("10:00", 6, "missing '-' between start and end time"),
            ("10:00 11:00", 7, "expected '-' after start time, found '1'"),
            ("Mon", 4, "missing start time"),
            ("Mon -10:00", 5, "expected start time H:MM, found '-'"),
            ("10:00-", 7, "missing end time"),
            ("10:00-Mon", 10, "missing end time"),
            ("Fri 25:00-Mon 08:00", 5, "hour must be 0-23"),
            ("24:00-01:00", 1, "hour must be 0-23"),
            ("100:00-01:00", 1, "hour must be 0-23"),
            ("10-12:00", 3, "expected ':' after hour"),
            ("10:5-12:00", 4, "minute must be two digits 00-59"),
            ("10:000-12:00", 4, "minute must be two digits 00-59"),
            ("10:00-12:60", 10, "minute must be 00-59"),
            ("Fir 10:00-11:00", 1, "unknown day name \"Fir\""),
            ("Mon,Frday 10:00-11:00", 5, "unknown day name \"Frday\""),
            ("Mon-Fry 10:00-11:00", 5, "unknown day name \"Fry\""),
            ("Mon,,Tue 10:00-11:00", 5, "empty item in day list"),
            ("Mon, 10:00-11:00", 5, "empty item in day list"),
            (",Mon 10:00-11:00", 1, "empty item in day list"),
            ("Mon- 10:00-11:00", 5, "missing day name"),
            (
                "Mon,* 10:00-11:00",
                5,
                "'*' cannot be combined with other days",
            ),
            (
                "Fri 18:00-Sat,Sun 08:00",
                14,
                "end day must be a single day name, not a list",
            ),
            (
                "Fri 18:00-Sat-Sun 08:00",
                14,
                "end day must be a single day name, not a range",
            ),
            (
                "Fri 18:00-* 08:00",
                11,
                "end day must be a single day name, not '*'",
            ),
            ("Fri 18:00-Sot 08:00", 11, "unknown day name \"Sot\""),
            ("10:00-11:00 x", 13, "unexpected trailing text \"x\""),
            ("10:00-11:00Mon", 12, "unexpected trailing text \"Mon\""),
            ("10:00-11:00:00", 12, "unexpected trailing text \":00\""),
        ];
        for (expr, col, msg) in cases {
            assert_eq!(err(expr), (*col, msg.to_string()), "{expr:?}");
        }
    }

    #[test]
    fn error_display() {
        let e = parse("Fri 25:00-Mon 08:00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid window \"Fri 25:00-Mon 08:00\" at column 5: hour must be 0-23"
        );
        // Columns count characters, not bytes.
        assert_eq!(
            err("Mön 10:00-11:00"),
            (1, "unknown day name \"Mön\"".to_string())
        );
        assert_eq!(
            err("Mön,x 10:00-11:00"),
            (1, "unknown day name \"Mön\"".to_string())
        );
        assert_eq!(
            err("Mon,Tüe,x 10:00-11:00"),
            (5, "unknown day name \"Tüe\"".to_string())
        );
        assert_eq!(
            err("Mon,Tue,ü 10:00-11:00"),
            (9, "unknown day name \"ü\"".to_string())
        );
    }
}
