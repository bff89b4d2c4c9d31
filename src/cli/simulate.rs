//! `simulate --trace FILE`: replay a journal or a hand-written trace through the machine.

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
    println!(
        "replaying {} inputs from {} {kind}",
        trace.items.len(),
        path.display()
    );
    match replay::run(&trace, |input, step| {
        println!("{}", replay::step_line(input, step))
    }) {
        Ok(None) => {
            if trace.is_journal() {
                println!(
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
