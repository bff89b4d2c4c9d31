//! Binary entry point: everything lives in the library; this only maps the result to an exit code.

/// mimalloc instead of glibc malloc: the rollout planner (`simulate --cluster`) allocates in
/// small pieces at a high rate and runs ~12% faster with it (docs/PERFORMANCE.md); the daemon
/// does not care either way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    clusterrebootd::cli::main_with_args(std::env::args_os()).into()
}
