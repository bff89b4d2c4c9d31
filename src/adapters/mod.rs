//! Adapters: the code that touches the local machine on the driver's behalf.
//!
//! The machine (`crate::fsm`) decides; these modules do. Each turns one kind of local I/O into
//! the plain values the machine consumes ([`crate::fsm::DetectorResult`],
//! [`crate::fsm::HealthResult`], …), so the driver only wires effects to adapters and results
//! back into events:
//! - [`process`]: the single way to run an external command (process group, timeout, bounded
//!   output). Every other adapter that runs something goes through it.
//! - [`detectors`]: reboot-required detectors and distribution presets (SPEC §4).
//! - [`env`]: the Go-compatible `RC_*` environment handed to scripts and commands (SPEC §6.1).
//! - [`health`]: the operator health script, never run twice at once (SPEC §6.1).
//! - [`reboot`]: `$VAR` expansion, reboot hooks and the reboot command itself (SPEC §8).
//! - [`boot`]: boot identity and the post-reboot marker (SPEC §8).
//! - [`window`]: maintenance-window verdicts with the instants the machine needs (SPEC §5).

use std::time::Duration;

pub mod boot;
pub mod detectors;
pub mod env;
pub mod health;
pub mod process;
pub mod reboot;
pub mod window;

/// Formats a duration the way the Go daemon printed them (`d.Round(time.Millisecond).String()`),
/// so operators' log greps and the `simulate` text keep working: `0s`, `12ms`, `1.5s`,
/// `2m3.004s`, `1h0m0s`. Halves round up, as Go's `Duration.Round` does.
pub fn go_duration(d: Duration) -> String {
    const MS: u128 = 1_000_000;
    let nanos = d.as_nanos();
    let rem = nanos % MS;
    let rounded = if rem * 2 < MS {
        nanos - rem
    } else {
        nanos + MS - rem
    };
    let ms = rounded / MS;
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total_secs = ms / 1000;
    let frac_ms = ms % 1000;
    let hours = total_secs / 3600;
    let minutes = (total_secs / 60) % 60;
    let secs = total_secs % 60;
    let mut sec_text = secs.to_string();
    if frac_ms != 0 {
        let frac = format!("{frac_ms:03}");
        sec_text.push('.');
        sec_text.push_str(frac.trim_end_matches('0'));
    }
    if hours > 0 {
        format!("{hours}h{minutes}m{sec_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{sec_text}s")
    } else {
        format!("{sec_text}s")
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_duration_matches_go_round_then_string() {
        let table: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_micros(499), "0s"),
            (Duration::from_micros(500), "1ms"),
            (Duration::from_micros(12_400), "12ms"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(1050), "1.05s"),
            (Duration::from_millis(123_004), "2m3.004s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3600 * 26 + 61), "26h1m1s"),
            (Duration::from_secs(30), "30s"),
        ];
        for (d, want) in table {
            assert_eq!(go_duration(*d), *want, "duration {d:?}");
        }
    }
}
