//! `simulate`: evaluate the detectors once (Go), with `--trace FILE` replay a journal or a
//! hand-written trace through the machine, or with `--cluster N` plan a rollout
//! ([`crate::sim::plan`]).

use std::path::Path;

use crate::exit::Exit;
use crate::replay;

/// Prints one line per input; for a journal, exit 1 at the first divergence with both sides.
pub fn trace(path: &Path) -> Exit {
    let trace = match replay::load(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("simulate: {e}");
            return Exit::Runtime;
        }
    };
    for w in &trace.warnings {
        eprintln!("warning: {w}");
    }
    let kind = if trace.is_journal() {
        "journal (verifying recorded decisions)"
    } else {
        "trace"
    };
    crate::cli::outln!(
        "replaying {} inputs from {} {kind}",
        trace.items.len(),
        path.display()
    );
    match replay::run(&trace, |input, step| {
        crate::cli::outln!("{}", replay::step_line(input, step))
    }) {
        Ok(None) => {
            if trace.is_journal() {
                crate::cli::outln!(
                    "replay identical: {} inputs, no divergence",
                    trace.items.len()
                );
            }
            Exit::Ok
        }
        Ok(Some(d)) => {
            eprintln!("{d}");
            Exit::Runtime
        }
        Err(e) => {
            eprintln!("simulate: {e}");
            Exit::Runtime
        }
    }
}

/// Go `simulate`: configuration summary, one detector evaluation, no action. Exit 0, or 6 when a
/// detector failed (2 for configuration errors).
pub fn detectors(config: &Path) -> Exit {
    use crate::adapters::detectors::{PresetPaths, evaluate, format_reports};
    let s = match super::run::settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clusterrebootd: cannot start the async runtime: {e}");
            return Exit::Runtime;
        }
    };
    let names: Vec<&str> = s.detectors.iter().map(|d| d.name.as_str()).collect();
    crate::cli::outln!("node {} configuration summary:", s.node_name);
    crate::cli::outln!("  detectors: {}", names.join(", "));
    crate::cli::outln!("  health script: {}", s.health_script.display());
    crate::cli::outln!("  etcd endpoints: {}", s.etcd.endpoints.join(", "));
    crate::cli::outln!("  reboot command: {}", s.reboot_command.join(" "));
    let reports = rt.block_on(evaluate(&s.detectors, &PresetPaths::default()));
    crate::cli::outln!("detector evaluations:");
    crate::cli::out!("{}", format_reports(&reports));
    let result = crate::adapters::detectors::combine(&reports);
    let required = matches!(result, crate::fsm::DetectorResult::Required { .. });
    crate::cli::outln!("overall reboot required: {required}");
    if let crate::fsm::DetectorResult::Error { detail } = result {
        eprintln!("detector evaluation encountered errors: {detail}");
        return Exit::DetectorError;
    }
    crate::cli::outln!("no reboot actions performed in simulation mode");
    Exit::Ok
}

/// `simulate --cluster N`: the rollout planner. Exit 0 when every node finished, 1 when the
/// simulation stopped first (or found an invariant violation), 2 for configuration errors.
pub fn cluster(config: &Path, nodes: u32, args: &super::PlanArgs) -> Exit {
    use crate::sim::{plan, svg};
    let s = match super::run::settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let start_ms = match &args.start {
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => u64::try_from(t.as_millisecond()).unwrap_or(0),
            Err(e) => {
                eprintln!("simulate: --start {text:?} is not an RFC 3339 time: {e}");
                return Exit::Usage;
            }
        },
        None => crate::clock::Clock::System.now_ms(),
    };
    let groups = match plan::parse_groups(args.groups.as_deref().unwrap_or(""), nodes as usize) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("simulate: {e}");
            return Exit::Usage;
        }
    };
    let opts = plan::PlanOptions {
        groups,
        nodes: nodes as usize,
        concurrency: args.concurrency,
        reboot: args.reboot_duration,
        health: args.health_duration,
        start_ms,
        seed: args.seed,
        arrivals: args.arrivals,
    };
    let p = plan::plan(&s, &opts);
    if args.json {
        super::emit(&format!("{:#}\n", plan::json(&p)));
    } else {
        super::emit(&plan::text(&p));
    }
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, svg::render(&p)) {
            eprintln!("simulate: cannot write {}: {e}", path.display());
            return Exit::Runtime;
        }
        if !args.json {
            super::emit(&format!("timeline chart written to {}\n", path.display()));
        }
    }
    if p.last_done_ms.is_some() && p.report.violations.is_empty() {
        Exit::Ok
    } else {
        Exit::Runtime
    }
}
