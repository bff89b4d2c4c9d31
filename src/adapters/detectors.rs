//! Reboot-required detectors (SPEC §4) and their Go-compatible report text.
//!
//! Every configured detector runs on each evaluation (concurrently); any error makes the whole
//! evaluation an error ([`combine`]), so a broken detector can never be read as "no reboot
//! needed". Semantics, as in the Go daemon (docs/GO-COMPAT.md §6):
//! - `file`: the path exists (after following symlinks) → required; it does not exist → clear;
//!   any other `stat` error (permission, `ENOTDIR`, …) → error `stat <path>: <err>`.
//! - `command`: argv run directly with the daemon's inherited environment (no `RC_*`).
//!   `success_exit_codes` are the exit codes that **mean** "reboot required"; with an empty list
//!   any non-zero exit means required; with a list, every code not in it means clear. A timeout
//!   is the error `command detector <name> timed out after <d>`, a start failure
//!   `command detector <name> failed: <err>`; death by a signal is an error too (Go would have
//!   read it as exit code -1, i.e. "required" with an empty list).
//!
//! Presets (new; all paths and commands come from [`PresetPaths`], so tests use fixtures):
//! - `debian`: required iff `/var/run/reboot-required` exists (a `file` detector).
//! - `rhel`: run `needs-restarting -r`; exit 1 → required, exit 0 → clear, any other exit, a
//!   signal, a timeout or a missing command → error.
//! - `suse`: required if `/var/run/reboot-needed` exists (then zypper is not run); otherwise run
//!   `zypper needs-rebooting`: exit 102 → required, exit 0 → clear, anything else → error. A
//!   missing `zypper` is an error naming the command, never a silent "clear".
//! - `kernel`: the installed kernel versions are the subdirectories of `/lib/modules` that hold a
//!   `modules.dep` (depmod's index, removed with the kernel package, so a directory left over by
//!   DKMS or an uninstalled kernel does not count — it would otherwise make the node reboot
//!   forever); when there are none, the `vmlinuz-<version>` files in `/boot`. Required iff the
//!   newest installed version is newer than the running one (`/proc/sys/kernel/osrelease`),
//!   versions compared like `sort -V` ([`compare_versions`]). No installed kernel found, or an
//!   unreadable running version → error. Do not use it where the boot loader is pinned to an
//!   older kernel: the node would then always look out of date. Like `sort -V` (and unlike
//!   rpm), letters sort before digits, so `553.el8` counts as newer than `553.1.1.el8`; on
//!   RHEL prefer the `rhel` preset.
//!
//! Commands run by presets get [`PresetPaths::timeout`] (the config has no field for it).

use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::go_duration;
use super::process::{self, CommandOutput, CommandSpec, Termination};
use crate::config::{DetectorKind, DetectorSpec, Preset};
use crate::fsm::DetectorResult;

/// Exit code of `zypper needs-rebooting` meaning "reboot needed" (zypper's documented
/// `ZYPPER_EXIT_INF_REBOOT_NEEDED`).
pub const ZYPPER_REBOOT_NEEDED: i32 = 102;

/// One detector's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorOutcome {
    /// No reboot needed according to this detector.
    Clear,
    /// This detector says the node needs a reboot.
    Required,
    /// The detector could not decide; the text says why.
    Error(String),
}

/// One detector's result with its evidence, for logs, `simulate` and the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorReport {
    /// The detector's configured (unique) name.
    pub name: String,
    /// Its verdict.
    pub outcome: DetectorOutcome,
    /// For detectors that run a command: its exit code. `command` detectors always have one,
    /// `0` when the command produced none (timeout, start failure, signal), as the Go daemon
    /// printed; the outcome's error text says what happened.
    pub exit_code: Option<i32>,
    /// Trimmed, lossy-UTF-8 stdout of the command (empty for file checks).
    pub stdout: String,
    /// Trimmed, lossy-UTF-8 stderr of the command (empty for file checks).
    pub stderr: String,
    /// How long the check took.
    pub duration: Duration,
}

/// Where the presets look. Defaults are the real system; tests point them at fixtures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPaths {
    /// Debian/Ubuntu marker file.
    pub reboot_required: PathBuf,
    /// SUSE marker file.
    pub reboot_needed: PathBuf,
    /// RHEL `needs-restarting` command (looked up in `PATH` unless it contains `/`).
    pub needs_restarting: String,
    /// SUSE `zypper` command.
    pub zypper: String,
    /// Running kernel release.
    pub osrelease: PathBuf,
    /// One directory per installed kernel's modules.
    pub modules_dir: PathBuf,
    /// Kernel images (`vmlinuz-<version>`), the fallback source.
    pub boot_dir: PathBuf,
    /// Timeout of the commands presets run (`needs-restarting` may refresh repo metadata).
    pub timeout: Duration,
}

impl Default for PresetPaths {
    fn default() -> Self {
        PresetPaths {
            reboot_required: PathBuf::from("/var/run/reboot-required"),
            reboot_needed: PathBuf::from("/var/run/reboot-needed"),
            needs_restarting: "needs-restarting".to_owned(),
            zypper: "zypper".to_owned(),
            osrelease: PathBuf::from("/proc/sys/kernel/osrelease"),
            modules_dir: PathBuf::from("/lib/modules"),
            boot_dir: PathBuf::from("/boot"),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Runs every detector (concurrently) and returns one report per spec, in the specs' order.
/// Dropping the future kills every command still running.
pub async fn evaluate(specs: &[DetectorSpec], presets: &PresetPaths) -> Vec<DetectorReport> {
    let presets = Arc::new(presets.clone());
    let mut set = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let spec = spec.clone();
        let presets = Arc::clone(&presets);
        set.spawn(async move { (i, evaluate_one(&spec, &presets).await) });
    }
    let mut slots: Vec<Option<DetectorReport>> = vec![None; specs.len()];
    while let Some(joined) = set.join_next().await {
        // A panicking detector task loses its index; the gap is filled below.
        if let Ok((i, report)) = joined {
            slots[i] = Some(report);
        }
    }
    slots
        .into_iter()
        .zip(specs)
        .map(|(slot, spec)| {
            slot.unwrap_or_else(|| DetectorReport {
                name: spec.name.clone(),
                outcome: DetectorOutcome::Error("detector task failed".to_owned()),
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                duration: Duration::ZERO,
            })
        })
        .collect()
}

/// Runs one detector.
pub async fn evaluate_one(spec: &DetectorSpec, presets: &PresetPaths) -> DetectorReport {
    let started = Instant::now();
    let mut report = match &spec.kind {
        DetectorKind::File { path } => file_report(&spec.name, path).await,
        DetectorKind::Command {
            argv,
            success_exit_codes,
            timeout,
        } => command_report(&spec.name, argv, success_exit_codes, *timeout).await,
        DetectorKind::Preset { preset } => preset_report(&spec.name, *preset, presets).await,
    };
    report.duration = started.elapsed();
    report
}

fn bare(name: &str, outcome: DetectorOutcome) -> DetectorReport {
    DetectorReport {
        name: name.to_owned(),
        outcome,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
    }
}

/// `stat` semantics of the file detector: exists → required, ENOENT → clear, else error.
async fn file_outcome(path: &Path) -> DetectorOutcome {
    match tokio::fs::metadata(path).await {
        Ok(_) => DetectorOutcome::Required,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DetectorOutcome::Clear,
        Err(e) => DetectorOutcome::Error(format!("stat {}: {e}", path.display())),
    }
}

async fn file_report(name: &str, path: &Path) -> DetectorReport {
    bare(name, file_outcome(path).await)
}

/// Output text with a visible note when the stream was cut at the limit.
fn text(bytes_text: String, truncated: bool) -> String {
    if truncated {
        format!(
            "{bytes_text} [output truncated at {} bytes]",
            process::OUTPUT_LIMIT
        )
    } else {
        bytes_text
    }
}

fn with_output(name: &str, outcome: DetectorOutcome, out: &CommandOutput) -> DetectorReport {
    DetectorReport {
        name: name.to_owned(),
        outcome,
        exit_code: match out.termination {
            Termination::Exited(c) => Some(c),
            Termination::Signaled(_) | Termination::TimedOut => Some(0),
        },
        stdout: text(out.stdout_text(), out.stdout_truncated),
        stderr: text(out.stderr_text(), out.stderr_truncated),
        duration: out.duration,
    }
}

async fn command_report(
    name: &str,
    argv: &[String],
    success_exit_codes: &[i32],
    timeout: Option<Duration>,
) -> DetectorReport {
    let spec = CommandSpec {
        argv: argv.to_vec(),
        env: Vec::new(),
        timeout,
    };
    let out = match process::run(&spec).await {
        Ok(out) => out,
        Err(e) => {
            let mut r = bare(
                name,
                DetectorOutcome::Error(format!("command detector {name} failed: {e}")),
            );
            r.exit_code = Some(0);
            return r;
        }
    };
    let outcome = match out.termination {
        Termination::Exited(code) => {
            let required = if success_exit_codes.is_empty() {
                code != 0
            } else {
                success_exit_codes.contains(&code)
            };
            if required {
                DetectorOutcome::Required
            } else {
                DetectorOutcome::Clear
            }
        }
        Termination::Signaled(sig) => {
            DetectorOutcome::Error(format!("command detector {name} killed by signal {sig}"))
        }
        Termination::TimedOut => DetectorOutcome::Error(format!(
            "command detector {name} timed out after {}",
            go_duration(timeout.unwrap_or_default())
        )),
    };
    with_output(name, outcome, &out)
}

/// Runs a preset's command and maps its exit code through `map` (`None` = unexpected code).
async fn preset_command(
    name: &str,
    argv: Vec<String>,
    timeout: Duration,
    map: impl Fn(i32) -> Option<DetectorOutcome>,
) -> DetectorReport {
    let shown = argv.join(" ");
    let spec = CommandSpec {
        argv,
        env: Vec::new(),
        timeout: Some(timeout),
    };
    let out = match process::run(&spec).await {
        Ok(out) => out,
        Err(e) => {
            return bare(
                name,
                DetectorOutcome::Error(format!("cannot run `{shown}`: {e}")),
            );
        }
    };
    let outcome = match out.termination {
        Termination::Exited(code) => map(code).unwrap_or_else(|| {
            DetectorOutcome::Error(format!("`{shown}` exited with unexpected code {code}"))
        }),
        Termination::Signaled(sig) => {
            DetectorOutcome::Error(format!("`{shown}` killed by signal {sig}"))
        }
        Termination::TimedOut => DetectorOutcome::Error(format!(
            "`{shown}` timed out after {}",
            go_duration(timeout)
        )),
    };
    let mut r = with_output(name, outcome, &out);
    if !matches!(out.termination, Termination::Exited(_)) {
        r.exit_code = None;
    }
    r
}

async fn preset_report(name: &str, preset: Preset, paths: &PresetPaths) -> DetectorReport {
    match preset {
        Preset::Debian => file_report(name, &paths.reboot_required).await,
        Preset::Rhel => {
            let argv = vec![paths.needs_restarting.clone(), "-r".to_owned()];
            preset_command(name, argv, paths.timeout, |code| match code {
                0 => Some(DetectorOutcome::Clear),
                1 => Some(DetectorOutcome::Required),
                _ => None,
            })
            .await
        }
        Preset::Suse => match file_outcome(&paths.reboot_needed).await {
            DetectorOutcome::Clear => {
                let argv = vec![paths.zypper.clone(), "needs-rebooting".to_owned()];
                preset_command(name, argv, paths.timeout, |code| match code {
                    0 => Some(DetectorOutcome::Clear),
                    ZYPPER_REBOOT_NEEDED => Some(DetectorOutcome::Required),
                    _ => None,
                })
                .await
            }
            other => bare(name, other),
        },
        Preset::Kernel => {
            let (outcome, evidence) = kernel_check(paths);
            let mut r = bare(name, outcome);
            r.stdout = evidence;
            r
        }
    }
}

/// The installed kernel versions: `modules_dir/<v>/modules.dep`, else `boot_dir/vmlinuz-<v>`.
pub fn installed_kernels(paths: &PresetPaths) -> Vec<String> {
    let names = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from_modules: Vec<String> = names(&paths.modules_dir)
        .into_iter()
        .filter(|(_, p)| p.join("modules.dep").is_file())
        .map(|(n, _)| n)
        .collect();
    if !from_modules.is_empty() {
        return from_modules;
    }
    names(&paths.boot_dir)
        .into_iter()
        .filter_map(|(n, _)| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .filter(|v| !v.is_empty())
        .collect()
}

/// The `kernel` preset's verdict, plus evidence (`running X, newest installed Y`) for reports.
fn kernel_check(paths: &PresetPaths) -> (DetectorOutcome, String) {
    let running = match std::fs::read_to_string(&paths.osrelease) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Ok(_) => {
            let e = format!(
                "running kernel version: {} is empty",
                paths.osrelease.display()
            );
            return (DetectorOutcome::Error(e), String::new());
        }
        Err(e) => {
            let e = format!(
                "read running kernel version {}: {e}",
                paths.osrelease.display()
            );
            return (DetectorOutcome::Error(e), String::new());
        }
    };
    let installed = installed_kernels(paths);
    let Some(newest) = installed.iter().max_by(|a, b| compare_versions(a, b)) else {
        let e = format!(
            "no installed kernel found in {} (*/modules.dep) or {} (vmlinuz-*)",
            paths.modules_dir.display(),
            paths.boot_dir.display()
        );
        return (DetectorOutcome::Error(e), format!("running {running}"));
    };
    let evidence = format!("running {running}, newest installed {newest}");
    if compare_versions(newest, &running) == Ordering::Greater {
        (DetectorOutcome::Required, evidence)
    } else {
        (DetectorOutcome::Clear, evidence)
    }
}

/// Sort weight of one non-digit character, as in Debian/GNU version ordering: `~` sorts before
/// everything (even the end of the string), letters before other punctuation.
fn char_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares two version strings the way `sort -V` does for kernel releases: alternating runs of
/// non-digits (compared character by character, letters before punctuation, `~` first) and
/// digits (compared as numbers, leading zeros ignored). `6.1.0-18-amd64 > 6.1.0-9-amd64`,
/// `5.10 > 5.9`, `6.1.0-rc1 > 6.1.0`, `6.1~rc1 < 6.1`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = char_order(a.get(i).copied());
            let cb = char_order(b.get(j).copied());
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
        // Digit run: skip leading zeros, then the longer run wins, else the first difference.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Folds the reports into the machine's input: any error wins (every failing detector named,
/// `name: err; name: err`), then any required (`by` = their names), else not required.
pub fn combine(reports: &[DetectorReport]) -> DetectorResult {
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            DetectorOutcome::Error(e) => Some(format!("{}: {e}", r.name)),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        return DetectorResult::Error {
            detail: errors.join("; "),
        };
    }
    let by: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome == DetectorOutcome::Required)
        .map(|r| r.name.clone())
        .collect();
    if by.is_empty() {
        DetectorResult::NotRequired
    } else {
        DetectorResult::Required { by }
    }
}

/// The Go "detector block" (`writeDetectorResults`, docs/GO-COMPAT.md §4), one entry per
/// report, every line ending in `\n`:
/// ```text
///   - <name> => <clear|reboot-required|error: <err>> (duration <D>)
///       exit code: <n>      (only when the detector ran a command)
///       stdout: <trimmed>   (only if non-empty)
///       stderr: <trimmed>   (only if non-empty)
/// ```
pub fn format_reports(reports: &[DetectorReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let status = match &r.outcome {
            DetectorOutcome::Clear => "clear".to_owned(),
            DetectorOutcome::Required => "reboot-required".to_owned(),
            DetectorOutcome::Error(e) => format!("error: {e}"),
        };
        s.push_str(&format!(
            "  - {} => {status} (duration {})\n",
            r.name,
            go_duration(r.duration)
        ));
        if let Some(code) = r.exit_code {
            s.push_str(&format!("      exit code: {code}\n"));
        }
        if !r.stdout.trim().is_empty() {
            s.push_str(&format!("      stdout: {}\n", r.stdout.trim()));
        }
        if !r.stderr.trim().is_empty() {
            s.push_str(&format!("      stderr: {}\n", r.stderr.trim()));
        }
    }
    s
}

#[cfg(test)]
mod tests;
