//! Binary entry point: everything lives in the library; this only maps the result to an exit code.

fn main() -> std::process::ExitCode {
    clusterrebootd::cli::main_with_args(std::env::args_os()).into()
}
