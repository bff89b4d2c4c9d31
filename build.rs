//! Records the git revision at build time so `clusterrebootd version` can print it.
//! Packagers building from a tarball set CLUSTERREBOOTD_REVISION instead.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLUSTERREBOOTD_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let rev = std::env::var("CLUSTERREBOOTD_REVISION").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    println!(
        "cargo:rustc-env=CLUSTERREBOOTD_GIT_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
