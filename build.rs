//! Records the git revision at build time so `clusterrebootd version` can print it.
//! Packagers building from a tarball set CLUSTERREBOOTD_REVISION instead.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLUSTERREBOOTD_REVISION");
    // Where HEAD and the branch refs really are: `.git/…` in a clone, elsewhere in a `git
    // worktree` (there `.git` is a file, and a path that does not exist would make cargo rerun
    // this script, and rebuild the crate, on every build).
    // `packed-refs` too: `git gc` / `git pack-refs` moves the branch refs there.
    for (what, fallback) in [
        ("HEAD", ".git/HEAD"),
        ("refs/heads", ".git/refs/heads"),
        ("packed-refs", ".git/packed-refs"),
    ] {
        let path = Command::new("git")
            .args(["rev-parse", "--git-path", what])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fallback.to_string());
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
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
