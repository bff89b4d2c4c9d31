//! The command line: argument definitions (clap derive) and dispatch to one module per command.
//!
//! Parsing errors never leak clap's own exit status: usage mistakes exit 64 and `--help` /
//! `--version` exit 0, as the Go daemon's callers expect (SPEC §9).

pub(crate) mod cluster;
mod completions;
pub mod explain;
mod fsm_cmd;
mod man;
mod run;
mod simulate;
mod validate_config;
mod windows_cmd;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::exit::Exit;

/// The exit-code contract (SPEC §9) as shown by `--help` and the man page.
pub const EXIT_CODES: [(u8, &str); 8] = [
    (
        0,
        "ok: the command did what was asked (or there was nothing to do)",
    ),
    (1, "runtime error"),
    (2, "configuration missing or invalid"),
    (
        3,
        "health blocked: the health script or a cluster policy blocked the reboot",
    ),
    (4, "lock unavailable: no reboot slot could be obtained"),
    (5, "kill switch present or cluster paused"),
    (6, "detector error: a reboot-required detector failed"),
    (64, "usage error: the command line itself was wrong"),
];

/// [`EXIT_CODES`] as the `--help` epilogue (kept equal by a test).
pub const EXIT_HELP: &str = "\
Exit codes:
  0   ok: the command did what was asked (or there was nothing to do)
  1   runtime error
  2   configuration missing or invalid
  3   health blocked: the health script or a cluster policy blocked the reboot
  4   lock unavailable: no reboot slot could be obtained
  5   kill switch present or cluster paused
  6   detector error: a reboot-required detector failed
  64  usage error: the command line itself was wrong";

/// Planner options of `simulate --cluster N`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Override `max_concurrent_reboots`.
    #[arg(long, value_name = "K", requires = "cluster", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// How long a node is down for its reboot.
    #[arg(long, value_name = "DURATION", default_value = "5m", requires = "cluster", value_parser = humantime::parse_duration)]
    pub reboot_duration: std::time::Duration,
    /// How long one run of the health script takes.
    #[arg(long, value_name = "DURATION", default_value = "10s", requires = "cluster", value_parser = humantime::parse_duration)]
    pub health_duration: std::time::Duration,
    /// Updates land uniformly over this span (seeded) instead of all at once, as in a real
    /// fleet; each node notices its update when it lands.
    #[arg(long, value_name = "SPREAD", default_value = "0s", requires = "cluster", value_parser = humantime::parse_duration)]
    pub arrivals: std::time::Duration,
    /// Reboot groups: NAME=COUNTxK[,…] gives the next COUNT nodes the group NAME with K slots
    /// (e.g. db=3x1,web=10x2); nodes beyond them are in no group.
    #[arg(long, value_name = "GROUPS", requires = "cluster")]
    pub groups: Option<String>,
    /// When the rollout starts (RFC 3339; default: now).
    #[arg(long, value_name = "RFC3339", requires = "cluster")]
    pub start: Option<String>,
    /// Seed of the simulation (the same seed gives the same plan).
    #[arg(long, value_name = "S", default_value_t = 1, requires = "cluster")]
    pub seed: u64,
    /// Print the plan as JSON.
    #[arg(long, requires = "cluster")]
    pub json: bool,
    /// Also write the timeline as an SVG chart to this file.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub svg: Option<PathBuf>,
}

/// `--config`, flattened into each command that reads the configuration, so `version`, `man`,
/// `completions` and `fsm` do not offer it (issue #19). Optional so that a top-level
/// `--config` (Go's order) is not overridden by a default here.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file [default: /etc/clusterrebootd/config.yaml]; `config.d/*.yaml` beside
    /// it are merged in lexical order.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(
    name = "clusterrebootd",
    version = crate::version::LONG,
    about = "Safe, automatic, cluster-coordinated reboots of Linux nodes",
    after_help = EXIT_HELP
)]
pub struct Cli {
    /// Configuration file, also accepted before the command as the Go daemon takes it
    /// (`clusterrebootd --config P run`); the command's own `--config` wins.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands (Go names and flags, plus the new ones).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
        /// Log the reboot command instead of executing it.
        #[arg(long)]
        dry_run: bool,
        /// Do one pass and exit with its outcome's code.
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration and print every problem (exit 2) or that it is valid (exit 0).
    ValidateConfig {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Evaluate the detectors once, replay a journal/trace through the machine (`--trace`), or
    /// plan a rollout over a simulated cluster (`--cluster N`).
    Simulate {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
        /// A daemon journal (`journal.jsonl`) or a hand-written YAML trace to replay; a journal's
        /// recorded decisions are verified (exit 1 on the first divergence).
        #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
        trace: Option<PathBuf>,
        /// Rollout planner: simulate N nodes that all need a reboot, with this configuration's
        /// windows, time zone, cooldown, intervals and policies (no etcd needed).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
        cluster: Option<u32>,
        /// Planner options.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Evaluate one pass without changing anything (dry run, Go `status`), or explain what the
    /// running daemon waits for (`--explain`).
    Status {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
        /// Do not run the health script (it counts as passing).
        #[arg(long)]
        skip_health: bool,
        /// Stop before the reboot slot (outcome `lock_skipped`).
        #[arg(long)]
        skip_lock: bool,
        /// Why is this node not rebooting? Read the running daemon's state file and journal:
        /// state, blocking gate with its evidence, what would unblock it, last transitions.
        /// Without a running daemon, falls back to the dry-run evaluation.
        #[arg(long, conflicts_with_all = ["skip_health", "skip_lock"])]
        explain: bool,
        /// With `--explain`: print a JSON object instead of text.
        #[arg(long, requires = "explain")]
        json: bool,
        /// Also write the evaluation's log lines on stderr at the configured `log.level`
        /// (without it only errors, so the report is not interleaved with them; Go's `status`
        /// wrote none).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the version and git revision.
    Version,
    /// Would a reboot be allowed at an instant (maintenance windows), and when next?
    Windows {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
        /// The instant to evaluate (RFC 3339, e.g. 2026-11-27T22:00:00+01:00); default now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Print a JSON object (`allowed`, `reason`, `next_allowed_at`, …).
        #[arg(long)]
        json: bool,
    },
    /// Inspect and control the cluster coordination state in etcd.
    Cluster {
        /// The configuration file.
        #[command(flatten)]
        cfg: ConfigArg,
        /// What to do.
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Print the state machine from fsm-spec (Mermaid, Graphviz DOT or JSON).
    Fsm {
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: fsm_cmd::Format,
    },
    /// Print a shell completion script on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

/// Parses `args` and runs the command, returning the exit status to use.
pub fn main_with_args<I, T>(args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(go_flag_syntax(args)) {
        Ok(cli) => cli,
        Err(e) => {
            // Printing can only fail if stdout/stderr are closed; the exit code still tells.
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                _ => Exit::Usage,
            };
        }
    };
    run(cli)
}

/// Go's `flag` package syntax for the long flags this CLI knows, rewritten to clap's before
/// parsing, so Go deployments' unit files and scripts work unchanged:
///
/// - `-config P` and `-config=P` become `--config P` / `--config=P` (one dash or two);
/// - a bool flag takes `-once`, `--once=true` or `--once=false` (Go's `strconv.ParseBool`
///   spellings: `1 t T TRUE true True`, `0 f F FALSE false False`); `=false` drops the flag.
///
/// Only arguments that name a known long flag (two letters or more) are touched, never a flag's
/// value, and nothing after `--`. Anything else is passed on for clap to accept or reject.
pub fn go_flag_syntax(args: Vec<OsString>) -> Vec<OsString> {
    use clap::CommandFactory;
    fn collect(cmd: &clap::Command, out: &mut std::collections::HashMap<String, bool>) {
        for a in cmd.get_arguments() {
            if let Some(long) = a.get_long() {
                out.insert(long.to_string(), a.get_action().takes_values());
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut known = std::collections::HashMap::new();
    collect(&Cli::command(), &mut known);
    known.insert("help".into(), false);
    known.insert("version".into(), false);

    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    let mut value_next = false;
    while let Some(arg) = iter.next() {
        if std::mem::take(&mut value_next) {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        let body = text
            .strip_prefix("--")
            .or_else(|| text.strip_prefix('-'))
            .unwrap_or("");
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let takes_value = match known.get(name) {
            Some(t) if name.len() >= 2 => *t,
            _ => {
                out.push(arg);
                continue;
            }
        };
        match (takes_value, value) {
            (true, v) => {
                value_next = v.is_none();
                out.push(format!("--{body}").into());
            }
            (false, None) => out.push(format!("--{name}").into()),
            (false, Some(v)) => match v {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => out.push(format!("--{name}").into()),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => {}
                _ => out.push(arg),
            },
        }
    }
    out
}

/// `println!` through [`emit`]: every report of the command line goes through it, so a closed
/// stdout (`clusterrebootd fsm | head -1`, a daemon whose stdout pipe went away) ends the
/// report quietly instead of panicking in `println!` (issue #19).
macro_rules! outln {
    () => {{
        let _ = $crate::cli::emit("\n");
    }};
    ($($arg:tt)*) => {{
        let _ = $crate::cli::emit(&format!("{}\n", format_args!($($arg)*)));
    }};
}
pub(crate) use outln;

/// `print!` through [`emit`] (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = $crate::cli::emit(&format!($($arg)*));
    }};
}
pub(crate) use out;

pub use crate::text::emit;

fn run(cli: Cli) -> Exit {
    let top = cli.config;
    let path = |cfg: ConfigArg| -> PathBuf {
        cfg.config
            .or_else(|| top.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    };
    match cli.command {
        Command::ValidateConfig { cfg } => validate_config::run(&path(cfg)),
        Command::Version => {
            crate::cli::outln!("{}", crate::version::line());
            Exit::Ok
        }
        Command::Run { cfg, dry_run, once } => run::run(&path(cfg), dry_run, once),
        Command::Simulate {
            cfg,
            cluster: Some(n),
            plan,
            ..
        } => simulate::cluster(&path(cfg), n, &plan),
        Command::Simulate {
            trace: Some(path), ..
        } => simulate::trace(&path),
        Command::Simulate { cfg, .. } => simulate::detectors(&path(cfg)),
        Command::Fsm { format } => fsm_cmd::run(format),
        Command::Completions { shell } => completions::run(shell),
        Command::Man => man::run(),
        Command::Cluster { cfg, command } => cluster::run(&path(cfg), command),
        Command::Windows { cfg, at, json } => windows_cmd::run(&path(cfg), at.as_deref(), json),
        Command::Status {
            cfg,
            explain: true,
            json,
            verbose,
            ..
        } => explain::run(&path(cfg), json, verbose),
        Command::Status {
            cfg,
            skip_health,
            skip_lock,
            verbose,
            ..
        } => run::status(&path(cfg), skip_health, skip_lock, verbose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;

    fn rewrite(args: &[&str]) -> Vec<String> {
        go_flag_syntax(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn go_flag_syntax_is_rewritten_for_known_long_flags_only() {
        assert_eq!(
            rewrite(&["c", "run", "-config", "/p", "-once", "-dry-run"]),
            ["c", "run", "--config", "/p", "--once", "--dry-run"]
        );
        assert_eq!(
            rewrite(&["c", "run", "-config=/p", "--once=true", "-dry-run=false"]),
            ["c", "run", "--config=/p", "--once"]
        );
        assert_eq!(
            rewrite(&[
                "c",
                "status",
                "-skip-health",
                "-skip-lock=1",
                "--config",
                "-once"
            ]),
            [
                "c",
                "status",
                "--skip-health",
                "--skip-lock",
                "--config",
                "-once"
            ],
            "a flag's value is never rewritten"
        );
        assert_eq!(
            rewrite(&[
                "c",
                "run",
                "-h",
                "-x",
                "-bogus",
                "--once=maybe",
                "--",
                "-once"
            ]),
            [
                "c",
                "run",
                "-h",
                "-x",
                "-bogus",
                "--once=maybe",
                "--",
                "-once"
            ]
        );
    }

    #[test]
    fn exit_help_matches_the_exit_contract() {
        let codes: Vec<u8> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        let contract: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, contract);
        let lines: Vec<String> = EXIT_CODES
            .iter()
            .map(|(c, m)| format!("  {c:<3} {m}"))
            .collect();
        assert_eq!(EXIT_HELP, format!("Exit codes:\n{}", lines.join("\n")));
    }
}
