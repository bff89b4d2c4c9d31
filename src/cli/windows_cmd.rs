//! `windows [--at T] [--json]`: would a reboot be allowed at T, by which rule, and when next.

use std::path::Path;

use serde::Serialize;

use crate::config::{ValidateEnv, load_settings};
use crate::exit::Exit;
use crate::windows::Verdict;

/// The answer, also the `--json` object.
#[derive(Debug, Serialize)]
pub struct WindowsAnswer {
    /// Whether a reboot may start at the instant.
    pub allowed: bool,
    /// Why not (Go reason text), `null` when allowed.
    pub reason: Option<String>,
    /// The rule that decided: the matching allow or deny expression (`null`: no windows).
    pub rule: Option<String>,
    /// The instant asked about (RFC 3339 in the configured zone).
    pub at: String,
    /// The next instant at or after `at` when a reboot is allowed (`null`: none within 8 days).
    pub next_allowed_at: Option<String>,
    /// When the current permission ends (`null` when not allowed or not within 8 days).
    pub allowed_until: Option<String>,
    /// The zone the windows are evaluated in.
    pub timezone: String,
}

/// Runs the command.
pub fn run(config: &Path, at: Option<&str>, json: bool) -> Exit {
    let settings = match load_settings(config, &ValidateEnv::system()) {
        Ok(v) => v.settings,
        Err(e) => {
            eprintln!("configuration at {} is invalid:", config.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            return Exit::Config;
        }
    };
    let instant = match at {
        None => jiff::Timestamp::now(),
        Some(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("--at {s:?}: not an RFC 3339 instant ({e})");
                return Exit::Usage;
            }
        },
    };
    let w = &settings.windows;
    let tz = w.time_zone().clone();
    let show = |t: jiff::Timestamp| {
        t.to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    let verdict = w.verdict(instant);
    let rule = match &verdict {
        Verdict::Allowed { by } => by.clone(),
        Verdict::Denied { by } => Some(by.clone()),
        Verdict::OutsideAllow => None,
    };
    let answer = WindowsAnswer {
        allowed: verdict.allowed(),
        reason: verdict.reason(),
        rule,
        at: show(instant),
        next_allowed_at: w.next_allowed(instant).map(show),
        allowed_until: w.allowed_until(instant).map(show),
        timezone: tz.iana_name().unwrap_or("system").to_string(),
    };
    if json {
        match serde_json::to_string_pretty(&answer) {
            Ok(j) => crate::cli::outln!("{j}"),
            Err(e) => {
                eprintln!("cannot encode the answer: {e}");
                return Exit::Runtime;
            }
        }
        return Exit::Ok;
    }
    let none = "none within the next 8 days".to_string();
    if answer.allowed {
        let by = match &answer.rule {
            Some(r) => format!("allow window \"{r}\""),
            None => "no windows configured".to_string(),
        };
        crate::cli::outln!(
            "at {} ({}): reboot allowed ({by})",
            answer.at,
            answer.timezone
        );
        crate::cli::outln!(
            "allowed until: {}",
            answer.allowed_until.clone().unwrap_or_else(|| none.clone())
        );
    } else {
        crate::cli::outln!(
            "at {} ({}): reboot not allowed: {}",
            answer.at,
            answer.timezone,
            answer.reason.clone().unwrap_or_default()
        );
    }
    crate::cli::outln!(
        "next permitted instant: {}",
        answer.next_allowed_at.unwrap_or(none)
    );
    Exit::Ok
}
