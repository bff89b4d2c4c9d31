//! Parser for window expressions `[DAYSPEC ]H:MM-[DAYSPEC ]H:MM`, accepting
//! exactly what the Go daemon accepts (docs/GO-COMPAT.md, section 2).
//!
//! The `-` is ambiguous (day ranges use it too), so the Go rule applies: the
//! separator is the first `-` after the first `:`. Each side is split on
//! whitespace; its last token is the time and any earlier tokens, joined with
//! single spaces, form a day specification. Columns in errors are 1-based
//! character positions in the untrimmed input.

use super::{Interval, MINUTES_PER_DAY, MINUTES_PER_WEEK, Window, WindowParseError};

/// Bit mask with one bit per weekday, Sunday = bit 0.
type DayMask = u8;

/// Every day of the week.
const ALL_DAYS: DayMask = 0x7f;

/// The expression being parsed, for building errors.
struct Ctx<'a> {
    expr: &'a str,
}

impl Ctx<'_> {
    /// Error at byte offset `at` of the untrimmed expression.
    fn err(&self, at: usize, message: impl Into<String>) -> WindowParseError {
        let before = self
            .expr
            .char_indices()
            .take_while(|&(i, _)| i < at)
            .count();
        WindowParseError {
            expr: self.expr.to_string(),
            position: before + 1,
            message: message.into(),
        }
    }
}

/// A whitespace-delimited token and its byte offset in the untrimmed input.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    at: usize,
    text: &'a str,
}

impl Tok<'_> {
    fn end(self) -> usize {
        self.at + self.text.len()
    }
}

/// Splits `s` on whitespace like Go `strings.Fields`; `base` is the byte
/// offset of `s` in the untrimmed input.
fn fields(s: &str, base: usize) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        match (start, c.is_whitespace()) {
            (None, false) => start = Some(i),
            (Some(st), true) => {
                if let Some(text) = s.get(st..i) {
                    out.push(Tok {
                        at: base + st,
                        text,
                    });
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Go `strconv.Atoi`: optional `+`/`-`, then one or more ASCII digits, the
/// value fitting in 64 bits.
fn atoi(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(b - b'0'))?;
    }
    let value = i128::from(magnitude);
    i64::try_from(if negative { -value } else { value }).ok()
}

/// Parses the time token `H:MM`, returning minutes since midnight.
fn time(cx: &Ctx<'_>, tok: Tok<'_>) -> Result<u32, WindowParseError> {
    let v = tok.text;
    let mut parts = v.split(':');
    let (Some(h), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(cx.err(tok.at, format!("invalid time {v:?} (expected HH:MM)")));
    };
    let minute_at = tok.at + h.len() + 1;
    let hour = atoi(h).ok_or_else(|| cx.err(tok.at, format!("invalid hour in {v:?}")))?;
    let minute = atoi(m).ok_or_else(|| cx.err(minute_at, format!("invalid minute in {v:?}")))?;
    let hour = u32::try_from(hour)
        .ok()
        .filter(|h| *h < 24)
        .ok_or_else(|| cx.err(tok.at, format!("hour out of range in {v:?}")))?;
    let minute = u32::try_from(minute)
        .ok()
        .filter(|m| *m < 60)
        .ok_or_else(|| cx.err(minute_at, format!("minute out of range in {v:?}")))?;
    Ok(hour * 60 + minute)
}

/// Go `strings.ToLower` for one name. Rust's `to_lowercase` agrees except
/// for U+0130 (capital I with dot above), which Go maps to a plain `i`.
fn go_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Maps a lowercased day name or alias to its Sunday-based index.
fn day_index(name: &str) -> Option<u32> {
    let day = match name {
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

/// A day specification: the day tokens joined with single spaces, with the
/// untrimmed-input offset of every byte so errors can point into the input.
struct Spec {
    text: String,
    offsets: Vec<usize>,
    end: usize,
}

impl Spec {
    fn new(toks: &[Tok<'_>]) -> Self {
        let mut text = String::new();
        let mut offsets = Vec::new();
        let mut end = 0;
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                text.push(' ');
                offsets.push(end);
            }
            text.push_str(t.text);
            offsets.extend((0..t.text.len()).map(|k| t.at + k));
            end = t.end();
        }
        Spec { text, offsets, end }
    }

    /// Input offset of byte `i` of the joined text.
    fn at(&self, i: usize) -> usize {
        self.offsets.get(i).copied().unwrap_or(self.end)
    }
}

/// Looks up one day name starting at byte `i` of the spec text.
/// Like Go's `dayName`, the name is trimmed first, so `Mon - Fri` and `Mon -Fri` are ranges.
fn day_at(cx: &Ctx<'_>, spec: &Spec, name: &str, i: usize) -> Result<u32, WindowParseError> {
    let i = i + (name.len() - name.trim_start().len());
    let lower = go_lower(name.trim());
    day_index(&lower).ok_or_else(|| cx.err(spec.at(i), format!("unknown day {lower:?}")))
}

/// Parses a day specification: `*`, or a comma list of names and
/// (week-wrapping) ranges.
fn day_spec(cx: &Ctx<'_>, toks: &[Tok<'_>]) -> Result<DayMask, WindowParseError> {
    let spec = Spec::new(toks);
    if spec.text == "*" {
        return Ok(ALL_DAYS);
    }
    let mut mask: DayMask = 0;
    let mut off = 0;
    for raw in spec.text.split(',') {
        let raw_off = off;
        let item_off = off + (raw.len() - raw.trim_start().len());
        let item = raw.trim();
        off += raw.len() + 1;
        if item.is_empty() {
            return Err(cx.err(
                spec.at(raw_off),
                format!("invalid day specification {:?}: empty item", spec.text),
            ));
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let first = day_at(cx, &spec, a, item_off)?;
                let last = day_at(cx, &spec, b, item_off + a.len() + 1)?;
                let mut d = first;
                loop {
                    mask |= 1 << d;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day_at(cx, &spec, item, item_off)?,
        }
    }
    Ok(mask)
}

/// The single day of a mask with exactly one bit set.
fn single_day(mask: DayMask) -> Option<u32> {
    (mask.count_ones() == 1).then(|| mask.trailing_zeros())
}

/// Parses one window expression into its weekly intervals.
pub(super) fn parse_window(expr: &str) -> Result<Window, WindowParseError> {
    let cx = Ctx { expr };
    let lead = expr.len() - expr.trim_start().len();
    let text = expr.trim();
    let text_end = lead + text.len();
    if text.is_empty() {
        return Err(cx.err(0, "expression must not be empty"));
    }
    let Some(colon) = text.find(':') else {
        return Err(cx.err(text_end, format!("missing time component in {text:?}")));
    };
    let Some(dash) = text
        .get(colon..)
        .and_then(|rest| rest.find('-'))
        .map(|d| colon + d)
    else {
        return Err(cx.err(text_end, format!("missing '-' in time range {text:?}")));
    };
    let start_part = text.get(..dash).unwrap_or_default();
    let end_part = text.get(dash + 1..).unwrap_or_default();
    let start_fields = fields(start_part, lead);
    let end_fields = fields(end_part, lead + dash + 1);
    let Some((&start_tok, start_days)) = start_fields.split_last() else {
        return Err(cx.err(lead + dash, "missing start time before '-'"));
    };
    let Some((&end_tok, end_days)) = end_fields.split_last() else {
        return Err(cx.err(text_end, "missing end time after '-'"));
    };

    let start_min = time(&cx, start_tok)?;
    let days = if start_days.is_empty() {
        ALL_DAYS
    } else {
        day_spec(&cx, start_days)?
    };
    let end_min = time(&cx, end_tok)?;
    let end_day = match end_days.first() {
        None => None,
        Some(first) => Some((first.at, day_spec(&cx, end_days)?)),
    };

    let intervals = match end_day {
        None => (0..7u32)
            .filter(|d| days & (1 << d) != 0)
            .map(|d| Interval {
                start: d * MINUTES_PER_DAY + start_min,
                len: if end_min > start_min {
                    end_min - start_min
                } else {
                    end_min + MINUTES_PER_DAY - start_min
                },
            })
            .collect(),
        Some((end_at, end_mask)) => {
            let Some(d) = single_day(days) else {
                let at = start_days.first().map_or(start_tok.at, |t| t.at);
                return Err(cx.err(
                    at,
                    "window specifies an end day but start matches multiple days",
                ));
            };
            let Some(e) = single_day(end_mask) else {
                return Err(cx.err(end_at, "end day must resolve to a single day"));
            };
            let start = d * MINUTES_PER_DAY + start_min;
            let mut end = e * MINUTES_PER_DAY + end_min;
            while end <= start {
                end += MINUTES_PER_WEEK;
            }
            vec![Interval {
                start,
                len: end - start,
            }]
        }
    };
    Ok(Window {
        expr: text.to_string(),
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

    fn ok(expr: &str) -> Vec<Interval> {
        match parse(expr) {
            Ok(w) => w.intervals,
            Err(e) => panic!("{expr:?} failed: {e}"),
        }
    }

    /// Start days (Sunday = 0) of the intervals, in order.
    fn days(expr: &str) -> Vec<u32> {
        ok(expr).iter().map(|i| i.start / MINUTES_PER_DAY).collect()
    }

    fn err(expr: &str) -> (usize, String) {
        match parse(expr) {
            Ok(w) => panic!("{expr:?} parsed unexpectedly: {w:?}"),
            Err(e) => (e.position, e.message),
        }
    }

    fn check_errors(cases: &[(&str, usize, &str)]) {
        for (expr, col, msg) in cases {
            assert_eq!(err(expr), (*col, msg.to_string()), "{expr:?}");
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

    // Rule 1: the separator is the first '-' after the first ':'.
    #[test]
    fn split_at_first_dash_after_first_colon() {
        assert_eq!(ok("Mon-Fri 09:00-17:00").len(), 5);
        assert_eq!(days("Mon-Fri 09:00-17:00"), vec![1, 2, 3, 4, 5]);
        assert_eq!(ok("Mon-Fri 09:00-17:00")[0], iv(1, 9, 0, 8 * 60));
        assert_eq!(ok("Mon-Fri 09:00 - 17:00"), ok("Mon-Fri 09:00-17:00"));
        assert_eq!(ok("Mon-Fri 09:00 -17:00"), ok("Mon-Fri 09:00-17:00"));
        // Go trims each side of a day range (`dayName` calls TrimSpace).
        for spaced in [
            "Mon - Fri 09:00-17:00",
            "Mon -Fri 09:00-17:00",
            "Mon- Fri 09:00-17:00",
        ] {
            assert_eq!(ok(spaced), ok("Mon-Fri 09:00-17:00"), "{spaced}");
        }
        assert_eq!(days("Sat - Mon 09:00-17:00"), vec![0, 1, 6]);
        // Everything after the separator belongs to the end part.
        assert_eq!(
            ok("Fri 18:00-Mon 08:00"),
            vec![iv(5, 18, 0, 2 * 1440 + 14 * 60)]
        );
        check_errors(&[
            ("Mon", 4, "missing time component in \"Mon\""),
            ("Mon-Fri", 8, "missing time component in \"Mon-Fri\""),
            ("x", 2, "missing time component in \"x\""),
            ("10:00", 6, "missing '-' in time range \"10:00\""),
            (
                "Mon-Fri 10:00",
                14,
                "missing '-' in time range \"Mon-Fri 10:00\"",
            ),
            (
                "10:00 11:00",
                12,
                "missing '-' in time range \"10:00 11:00\"",
            ),
            ("Mon -10:00", 11, "missing '-' in time range \"Mon -10:00\""),
            ("10-12:00", 9, "missing '-' in time range \"10-12:00\""),
            (" 10:00- ", 8, "missing end time after '-'"),
            ("10:00-   ", 7, "missing end time after '-'"),
        ]);
    }

    // Rule 2: last token is the time, earlier tokens joined by one space
    // are the day spec.
    #[test]
    fn part_tokens() {
        assert_eq!(days("Mon, Tue 10:00-11:00"), vec![1, 2]);
        assert_eq!(days("mon ,tue 10:00-11:00"), vec![1, 2]);
        assert_eq!(days("Mon , Tue-Wed\t10:00-11:00"), vec![1, 2, 3]);
        assert_eq!(days("Mon,\t \tFri 10:00-11:00"), vec![1, 5]);
        assert_eq!(days("10:00-11:00"), vec![0, 1, 2, 3, 4, 5, 6]);
        // End part: time alone = no end day; a day spec before it = end day.
        assert_eq!(ok("Fri 18:00 - 08:00"), vec![iv(5, 18, 0, 14 * 60)]);
        assert_eq!(ok("Fri 18:00 - Sat 08:00"), vec![iv(5, 18, 0, 14 * 60)]);
        assert_eq!(ok("Fri 18:00 - Sun 08:00"), vec![iv(5, 18, 0, 38 * 60)]);
        check_errors(&[
            ("Mon Tue 10:00-11:00", 1, "unknown day \"mon tue\""),
            (
                "10:00 Mon-Fri 11:00",
                7,
                "invalid time \"Mon\" (expected HH:MM)",
            ),
            ("10:00-Mon", 7, "invalid time \"Mon\" (expected HH:MM)"),
            ("10:00-11:00 x", 13, "invalid time \"x\" (expected HH:MM)"),
            (
                "10:00-11:00 Mon",
                13,
                "invalid time \"Mon\" (expected HH:MM)",
            ),
            ("Fri 18:00-Mon Tue 08:00", 11, "unknown day \"mon tue\""),
        ]);
    }

    // Rule 3: H:MM, each part like Go strconv.Atoi, hour 0..23, minute 0..59.
    #[test]
    fn times() {
        assert_eq!(ok("Mon 7:05-8:00"), vec![iv(1, 7, 5, 55)]);
        assert_eq!(ok("Mon 07:05-08:00"), vec![iv(1, 7, 5, 55)]);
        assert_eq!(ok("Mon +7:05-+08:+00"), vec![iv(1, 7, 5, 55)]);
        assert_eq!(ok("Mon 10:5-11:00"), vec![iv(1, 10, 5, 55)]);
        assert_eq!(ok("Mon 10:000-12:00"), vec![iv(1, 10, 0, 120)]);
        assert_eq!(
            ok("Mon 0000000000000000000007:05-8:00"),
            vec![iv(1, 7, 5, 55)]
        );
        assert_eq!(ok("Mon -0:00-1:-0"), vec![iv(1, 0, 0, 60)]);
        assert_eq!(ok("Mon 0:00-23:59"), vec![iv(1, 0, 0, 1439)]);
        check_errors(&[
            ("Fri 25:00-Mon 08:00", 5, "hour out of range in \"25:00\""),
            ("24:00-01:00", 1, "hour out of range in \"24:00\""),
            ("100:00-01:00", 1, "hour out of range in \"100:00\""),
            ("Mon -1:00-2:00", 5, "hour out of range in \"-1:00\""),
            (
                "9999999999:00-1:00",
                1,
                "hour out of range in \"9999999999:00\"",
            ),
            (
                "99999999999999999999:00-1:00",
                1,
                "invalid hour in \"99999999999999999999:00\"",
            ),
            (":30-11:00", 1, "invalid hour in \":30\""),
            ("+:30-11:00", 1, "invalid hour in \"+:30\""),
            ("++1:30-11:00", 1, "invalid hour in \"++1:30\""),
            ("1a:30-11:00", 1, "invalid hour in \"1a:30\""),
            ("1_0:30-11:00", 1, "invalid hour in \"1_0:30\""),
            ("\u{661}0:30-11:00", 1, "invalid hour in \"\u{661}0:30\""),
            ("10:-11:00", 4, "invalid minute in \"10:\""),
            ("10:0x-11:00", 4, "invalid minute in \"10:0x\""),
            ("10:00-11:00Mon", 10, "invalid minute in \"11:00Mon\""),
            ("10:60-11:00", 4, "minute out of range in \"10:60\""),
            ("10:00-12:60", 10, "minute out of range in \"12:60\""),
            ("10:00-12:-1", 10, "minute out of range in \"12:-1\""),
            (
                "10:00-11:00:00",
                7,
                "invalid time \"11:00:00\" (expected HH:MM)",
            ),
            (
                "Mon 1:2:3-4:00",
                5,
                "invalid time \"1:2:3\" (expected HH:MM)",
            ),
        ]);
    }

    // Rule 4: day specifications.
    #[test]
    fn day_specs() {
        assert_eq!(days("* 1:00-2:00"), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(days("Fri-Mon 1:00-2:00"), vec![0, 1, 5, 6]);
        assert_eq!(days("Sat-Sun 1:00-2:00"), vec![0, 6]);
        assert_eq!(days("Sun-Sat 1:00-2:00"), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(days("Mon-Sun 1:00-2:00"), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(days("mon,WED,Fri-sat 1:00-2:00"), vec![1, 3, 5, 6]);
        // X-X is just day X, not the whole week.
        assert_eq!(days("Tue-Tue 1:00-2:00"), vec![2]);
        // Duplicates are dropped.
        assert_eq!(days("Mon,mon,Mon-Tue,tues 1:00-2:00"), vec![1, 2]);
        assert_eq!(ok("Mon,Monday 1:00-2:00"), vec![iv(1, 1, 0, 60)]);
        check_errors(&[
            ("Caturday 10:00-11:00", 1, "unknown day \"caturday\""),
            ("Mon,Frday 10:00-11:00", 5, "unknown day \"frday\""),
            ("Mon-Fry 10:00-11:00", 5, "unknown day \"fry\""),
            (
                "Mon,,Tue 10:00-11:00",
                5,
                "invalid day specification \"Mon,,Tue\": empty item",
            ),
            (
                "Mon, 10:00-11:00",
                5,
                "invalid day specification \"Mon,\": empty item",
            ),
            (
                ",Mon 10:00-11:00",
                1,
                "invalid day specification \",Mon\": empty item",
            ),
            (
                "Mon, , Tue 10:00-11:00",
                5,
                "invalid day specification \"Mon, , Tue\": empty item",
            ),
            ("Mon- 10:00-11:00", 5, "unknown day \"\""),
            ("-Mon 10:00-11:00", 1, "unknown day \"\""),
            ("Mon-Tue-Wed 10:00-11:00", 5, "unknown day \"tue-wed\""),
            ("Mon - Xyz 10:00-11:00", 7, "unknown day \"xyz\""),
            ("Mon,* 10:00-11:00", 5, "unknown day \"*\""),
            ("*,Mon 10:00-11:00", 1, "unknown day \"*\""),
            ("*-Mon 10:00-11:00", 1, "unknown day \"*\""),
            ("* * 10:00-11:00", 1, "unknown day \"* *\""),
            ("**", 3, "missing time component in \"**\""),
        ]);
    }

    #[test]
    fn every_alias() {
        let aliases = [
            (0, &["sun", "sunday", "SUN", "Sunday"][..]),
            (1, &["mon", "monday", "MoNdAy"]),
            (2, &["tue", "tues", "tuesday", "TUES"]),
            (3, &["wed", "weds", "wednesday", "Weds"]),
            (4, &["thu", "thur", "thurs", "thursday", "THURS"]),
            (5, &["fri", "friday", "FRI", "FR\u{130}DAY"]),
            (6, &["sat", "saturday", "Saturday"]),
        ];
        for (day, names) in aliases {
            for name in names {
                assert_eq!(ok(&format!("{name} 10:00-11:00")), vec![iv(day, 10, 0, 60)]);
                let w = ok(&format!("Sun 10:00-{name} 10:00"));
                let expected = if day == 0 {
                    MINUTES_PER_WEEK
                } else {
                    day * 1440
                };
                assert_eq!(w[0].len, expected, "{name}");
            }
        }
        for bad in ["mo", "mond", "tu", "we", "th", "fr", "sa", "su", "sundays"] {
            let (_, msg) = err(&format!("{bad} 10:00-11:00"));
            assert_eq!(msg, format!("unknown day {bad:?}"));
        }
    }

    // Rule 5: with an end day, both sides must be a single day.
    #[test]
    fn end_day_intervals() {
        assert_eq!(
            ok("Fri 18:00-Mon 08:00"),
            vec![iv(5, 18, 0, 2 * 1440 + 14 * 60)]
        );
        // Same day, end before start: wraps a whole week minus the difference.
        assert_eq!(
            ok("Mon 10:00-Mon 08:00"),
            vec![iv(1, 10, 0, MINUTES_PER_WEEK - 120)]
        );
        assert_eq!(
            ok("Mon 10:00-Mon 10:00"),
            vec![iv(1, 10, 0, MINUTES_PER_WEEK)]
        );
        assert_eq!(ok("Mon 10:00-Mon 10:01"), vec![iv(1, 10, 0, 1)]);
        assert_eq!(ok("Sat 22:00-Sun 02:00"), vec![iv(6, 22, 0, 240)]);
        // Start or end specs that resolve to one day are fine.
        assert_eq!(ok("Mon-Mon 10:00-Tue 10:00"), vec![iv(1, 10, 0, 1440)]);
        assert_eq!(ok("Mon,mon 10:00-Tue 10:00"), vec![iv(1, 10, 0, 1440)]);
        assert_eq!(ok("Mon 10:00-Tue-Tue 10:00"), vec![iv(1, 10, 0, 1440)]);
        assert_eq!(ok("Mon 10:00-tue, TUES 10:00"), vec![iv(1, 10, 0, 1440)]);
        let multi = "window specifies an end day but start matches multiple days";
        let end = "end day must resolve to a single day";
        check_errors(&[
            ("Mon,Tue 10:00-Fri 08:00", 1, multi),
            ("Mon-Tue 10:00-Fri 08:00", 1, multi),
            ("* 10:00-Fri 08:00", 1, multi),
            (" 10:00-Fri 08:00", 2, multi),
            ("Fri 18:00-Sat,Sun 08:00", 11, end),
            ("Fri 18:00-Sat-Sun 08:00", 11, end),
            ("Fri 18:00 -  * 08:00", 14, end),
            ("Fri 18:00-Sot 08:00", 11, "unknown day \"sot\""),
            (
                "Fri 18:00-Sat, 08:00",
                15,
                "invalid day specification \"Sat,\": empty item",
            ),
        ]);
    }

    // Rule 6: without an end day, each start day ends the same or next day.
    #[test]
    fn no_end_day_intervals() {
        assert_eq!(ok("Wed 9:00-9:00"), vec![iv(3, 9, 0, 1440)]);
        assert_eq!(ok("Wed 9:00-8:59"), vec![iv(3, 9, 0, 1439)]);
        assert_eq!(ok("Wed 9:00-9:01"), vec![iv(3, 9, 0, 1)]);
        assert_eq!(ok("Sat 23:00-02:00"), vec![iv(6, 23, 0, 180)]);
        let w = ok("* 10:00-10:00");
        assert_eq!(w.len(), 7);
        assert!(
            w.iter()
                .enumerate()
                .all(|(d, i)| *i == iv(d as u32, 10, 0, 1440))
        );
        assert_eq!(
            ok("Mon,Thu 23:00-06:00"),
            vec![iv(1, 23, 0, 420), iv(4, 23, 0, 420)]
        );
    }

    #[test]
    fn whitespace_tolerated() {
        let w = parse("  Fri 18:00 - Mon 08:00 \t").unwrap();
        assert_eq!(w.expr(), "Fri 18:00 - Mon 08:00");
        assert_eq!(w.intervals, ok("Fri 18:00-Mon 08:00"));
        assert_eq!(ok("Tue-Thu   22:00 -04:00"), ok("Tue-Thu 22:00-04:00"));
        assert_eq!(
            ok("\u{a0}Fri\u{3000}18:00-\nMon 08:00"),
            ok("Fri 18:00-Mon 08:00")
        );
    }

    #[test]
    fn display_round_trips() {
        for e in [
            "Fri 18:00-Mon 08:00",
            "* 23:00-06:00",
            "7:05-7:05",
            "Mon, Tue 1:5-+2:00",
        ] {
            assert_eq!(parse(e).unwrap().to_string(), e);
        }
    }

    #[test]
    fn empty_expression() {
        check_errors(&[
            ("", 1, "expression must not be empty"),
            ("   ", 1, "expression must not be empty"),
        ]);
    }

    #[test]
    fn error_display_and_columns() {
        let e = parse("Fri 25:00-Mon 08:00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid window \"Fri 25:00-Mon 08:00\" at column 5: hour out of range in \"25:00\""
        );
        assert_eq!(e.expr, "Fri 25:00-Mon 08:00");
        // Columns count characters, not bytes, in the untrimmed input.
        check_errors(&[
            ("Mön 10:00-11:00", 1, "unknown day \"mön\""),
            ("Mön,x 10:00-11:00", 1, "unknown day \"mön\""),
            ("Mon,Tüe,x 10:00-11:00", 5, "unknown day \"tüe\""),
            ("Mon,Tue,ü 10:00-11:00", 9, "unknown day \"ü\""),
            ("Tüe 25:00-11:00", 5, "hour out of range in \"25:00\""),
            ("Tue ü25:00-11:00", 5, "invalid hour in \"ü25:00\""),
            ("  Fry 10:00-11:00", 3, "unknown day \"fry\""),
            ("\u{3000}Fry 10:00-11:00", 2, "unknown day \"fry\""),
            // Columns survive joining tokens with a single space.
            ("Mon,  Tue,Fry 10:00-11:00", 11, "unknown day \"fry\""),
            (
                "Mon,\t\t,Tue 10:00-11:00",
                5,
                "invalid day specification \"Mon, ,Tue\": empty item",
            ),
            ("Mon,   Tue-Fry 10:00-11:00", 12, "unknown day \"fry\""),
            ("Mön - Fri 10:00-11:00", 1, "unknown day \"mön\""),
            ("Mon-ü - Fri 10:00-11:00", 5, "unknown day \"ü - fri\""),
        ]);
    }

    /// Property tests of the grammar against a small independent model.
    mod props {
        use super::*;
        use proptest::prelude::*;

        const NAMES: [&[&str]; 7] = [
            &["sun", "sunday"],
            &["mon", "monday"],
            &["tue", "tues", "tuesday"],
            &["wed", "weds", "wednesday"],
            &["thu", "thur", "thurs", "thursday"],
            &["fri", "friday"],
            &["sat", "saturday"],
        ];

        /// Some spelling of day `d`, in some case.
        fn name(d: usize) -> impl Strategy<Value = String> {
            (0..4usize, any::<bool>()).prop_map(move |(i, upper)| {
                let n = NAMES[d][i % NAMES[d].len()];
                if upper {
                    n.to_uppercase()
                } else {
                    n.to_string()
                }
            })
        }

        /// A list item (single day or range) with its day mask.
        fn item() -> impl Strategy<Value = (String, u8)> {
            (0..7usize, 0..7usize, any::<bool>()).prop_flat_map(|(a, b, range)| {
                (name(a), name(b)).prop_map(move |(na, nb)| {
                    if !range {
                        return (na, 1u8 << a);
                    }
                    let mask = if a <= b {
                        (a..=b).fold(0u8, |m, d| m | 1 << d)
                    } else {
                        (a..7).chain(0..=b).fold(0u8, |m, d| m | 1 << d)
                    };
                    (format!("{na}-{nb}"), mask)
                })
            })
        }

        fn list_sep() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just(","),
                Just(", "),
                Just(" ,"),
                Just(" ,\t "),
                Just("  ,  ")
            ]
        }

        fn mask_of(intervals: &[Interval]) -> u8 {
            intervals
                .iter()
                .fold(0u8, |m, i| m | 1 << (i.start / MINUTES_PER_DAY))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn day_lists_and_daily_lengths(
                items in prop::collection::vec(item(), 1..5),
                sep in list_sep(),
                s in 0..1440u32,
                e in 0..1440u32,
            ) {
                let spec: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
                let expected = items.iter().fold(0u8, |m, (_, k)| m | k);
                let expr = format!(
                    "{} {}:{:02}-{}:{:02}",
                    spec.join(sep), s / 60, s % 60, e / 60, e % 60
                );
                let w = parse(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(mask_of(&w.intervals), expected);
                prop_assert_eq!(w.intervals.len() as u32, expected.count_ones());
                let len = (i64::from(e) - i64::from(s) - 1).rem_euclid(1440) + 1;
                for i in &w.intervals {
                    prop_assert_eq!(i.start % MINUTES_PER_DAY, s);
                    prop_assert_eq!(i64::from(i.len), len);
                }
            }

            #[test]
            fn end_day_needs_single_days(
                (start, smask) in item(),
                (end, emask) in item(),
                s in 0..1440u32,
                e in 0..1440u32,
            ) {
                let expr = format!(
                    "{start} {}:{:02} - {end} {}:{:02}",
                    s / 60, s % 60, e / 60, e % 60
                );
                let got = parse(&expr);
                match (smask.count_ones(), emask.count_ones()) {
                    (1, 1) => {
                        let w = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let sd = smask.trailing_zeros();
                        let ed = emask.trailing_zeros();
                        let a = i64::from(sd * MINUTES_PER_DAY + s);
                        let b = i64::from(ed * MINUTES_PER_DAY + e);
                        let len = (b - a - 1).rem_euclid(i64::from(MINUTES_PER_WEEK)) + 1;
                        prop_assert_eq!(w.intervals.len(), 1);
                        prop_assert_eq!(i64::from(w.intervals[0].start), a);
                        prop_assert_eq!(i64::from(w.intervals[0].len), len);
                    }
                    (1, _) => {
                        let err = got.err().map(|e| (e.position, e.message));
                        let col = start.chars().count() + 1 + format!("{}:{:02}", s / 60, s % 60).len() + 4;
                        prop_assert_eq!(err, Some((col, "end day must resolve to a single day".to_string())));
                    }
                    _ => {
                        let err = got.err().map(|e| (e.position, e.message));
                        prop_assert_eq!(err, Some((
                            1,
                            "window specifies an end day but start matches multiple days".to_string(),
                        )));
                    }
                }
            }

            #[test]
            fn never_panics_and_columns_are_in_range(
                s in "[-:, +*0-9a-zA-Z\t\u{fc}\u{130}\u{3000}]{0,24}"
            ) {
                match parse(&s) {
                    Ok(w) => prop_assert_eq!(w.expr(), s.trim()),
                    Err(e) => {
                        prop_assert_eq!(&e.expr, &s);
                        prop_assert!(e.position >= 1 && e.position <= s.chars().count() + 1, "{:?}", e);
                    }
                }
            }
        }
    }
}
