//! How durations read in human output (`status`, `status --explain`, `cluster status`, the
//! pass report, the planner): one formatter everywhere, so an operator sees `3d 16h 25m 35s`
//! and `7 ms` in every command instead of `3days 16h` in one and a rounded-up `1s` in another
//! (issue #19). JSON output keeps numbers; the Go daemon's own wordings (the cooldown message,
//! `go_duration`) are a contract and stay as they are.

use std::time::Duration;

/// `ms` as words: `0s`; below a second the real milliseconds (`7 ms`); from a second on the
/// whole seconds, rounded up so that a wait is never understated, as days, hours, minutes and
/// seconds with a space between them, zero parts left out (`1m 30s`, `3d 16h 25m 35s`, `2h`).
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        1..=999 => format!("{ms} ms"),
        _ => {
            let s = ms.div_ceil(1000);
            let parts = [
                (s / 86_400, "d"),
                (s % 86_400 / 3600, "h"),
                (s % 3600 / 60, "m"),
                (s % 60, "s"),
            ];
            parts
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, unit)| format!("{n}{unit}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// [`duration_ms`] of a [`Duration`] (saturating at `u64::MAX` ms).
pub fn duration(d: Duration) -> String {
    duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An RFC 3339 instant read back from a record, shown to the second in UTC
/// (`2026-12-07T07:09:14Z`, not `…:14.181925494Z`); text that does not parse is returned as is.
pub fn instant(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => match jiff::Timestamp::from_second(t.as_second()) {
            Ok(t) => t.to_string(),
            Err(_) => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words_with_spaces_and_real_milliseconds() {
        for (ms, want) in [
            (0, "0s"),
            (7, "7 ms"),
            (999, "999 ms"),
            (1000, "1s"),
            (1001, "2s"),
            (90_000, "1m 30s"),
            (7_200_000, "2h"),
            (
                ((3 * 24 + 16) * 3600 + 25 * 60 + 35) * 1000,
                "3d 16h 25m 35s",
            ),
            (40 * 86_400_000, "40d"),
        ] {
            assert_eq!(duration_ms(ms), want, "{ms} ms");
        }
        assert_eq!(duration(Duration::from_micros(7_400)), "7 ms");
        assert!(duration(Duration::MAX).starts_with("213503982334d "));
    }

    #[test]
    fn instants_are_shown_to_the_second() {
        assert_eq!(
            instant("2026-12-07T07:09:14.181925494Z"),
            "2026-12-07T07:09:14Z"
        );
        assert_eq!(instant("2026-12-07T08:09:14+01:00"), "2026-12-07T07:09:14Z");
        assert_eq!(instant("yesterday"), "yesterday");
    }
}
