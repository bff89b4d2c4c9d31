//! `status --explain [--json]`: the command; the explanation is [`crate::explain`].

use std::path::Path;

use crate::exit::Exit;
use crate::explain::{load_live, no_daemon_json, render_json, render_text};

/// `status --explain [--json]`.
pub fn run(config: &Path, json: bool, verbose: bool) -> Exit {
    let s = match super::run::settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = crate::driver::now_ms();
    match load_live(&s, now) {
        Ok(e) => {
            if json {
                crate::cli::outln!("{:#}", render_json(&e));
            } else {
                crate::cli::out!("{}", crate::text::for_terminal(&render_text(&e, now)));
            }
            Exit::Ok
        }
        Err(why) if json => {
            // A JSON consumer gets JSON only: the dry-run's Go report is text, so it is not run.
            let v = no_daemon_json(&s.node_name, &why.to_string());
            crate::cli::outln!("{v:#}");
            Exit::Ok
        }
        Err(why) => {
            crate::cli::outln!(
                "{}; dry-run evaluation instead:",
                crate::text::for_terminal(&why.to_string())
            );
            super::run::status(config, false, false, verbose)
        }
    }
}
