//! `fsm --format mermaid|dot|json`: the machine as drawn from `fsm-spec/machine.yaml`.

use crate::exit::Exit;
use crate::fsm_spec::Spec;

/// Output formats of `fsm`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Mermaid `stateDiagram-v2` (embedded in docs/ARCHITECTURE.md).
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// The whole spec as JSON.
    Json,
}

/// Prints the diagram or the spec.
pub fn run(format: Format) -> Exit {
    let spec = match Spec::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("built-in fsm-spec is invalid: {e}");
            return Exit::Runtime;
        }
    };
    match format {
        Format::Mermaid => crate::cli::out!("{}", spec.to_mermaid()),
        Format::Dot => crate::cli::out!("{}", spec.to_dot()),
        Format::Json => match serde_json::to_string_pretty(&spec) {
            Ok(j) => crate::cli::outln!("{j}"),
            Err(e) => {
                eprintln!("cannot encode the spec: {e}");
                return Exit::Runtime;
            }
        },
    }
    Exit::Ok
}
