//! Who may change what the daemon runs as root: the configuration files, `config.d/`, the
//! scripts and commands they name, and the directories the daemon keeps its state in.
//!
//! The daemon runs as root and executes `health_script`, command detectors, hooks and the
//! reboot command. A file among them that another user can write — or a directory on its path
//! that another user can write, so the file can be swapped — hands that user root (issue #20:
//! a file dropped into a world-writable `config.d/` set `health_script`). Like sshd's
//! `StrictModes`, sudo and cron, such a path is refused: every file and every directory from it
//! up to `/` must be owned by root or by the daemon's own user and not be writable by group or
//! others. A directory with the sticky bit (like `/tmp`) may be writable by others, since they
//! cannot rename or remove what they do not own — except `state_dir` and `run_dir`
//! themselves, where a stranger could still plant files.
//!
//! Paths that do not exist yet are checked from their nearest existing directory up. A command
//! given without a `/` is found through `PATH` and not checked here.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::error::Problem;
use super::raw::RawConfig;

/// What was found, split by whether `insecure_allow_writable_files` may excuse it.
#[derive(Debug, Default)]
pub struct Findings {
    /// About the main configuration file and the directories above it: never excused (the
    /// opt-out is read from that file, so it cannot vouch for itself).
    pub always: Vec<Problem>,
    /// Everything else: errors, or warnings with the opt-out.
    pub excusable: Vec<Problem>,
}

/// Checks the main file, the drop-ins (and `config.d/`), and the paths `raw` names.
pub fn check(main: &Path, files: &[PathBuf], raw: &RawConfig) -> Findings {
    let me = nix::unistd::geteuid().as_raw();
    let mut f = Findings::default();
    if let Some(why) = untrusted(main, me, false) {
        f.always.push(Problem::new("", why));
    }
    let config_d = main
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("config.d");
    if config_d.exists()
        && let Some(why) = untrusted(&config_d, me, true)
    {
        f.excusable.push(Problem::new("", why));
    }
    for file in files.iter().skip(1) {
        if let Some(why) = untrusted(file, me, false) {
            f.excusable.push(Problem::new("", why));
        }
    }
    let program = |field: String, p: &str, f: &mut Findings| {
        if p.starts_with('/')
            && let Some(why) = untrusted(Path::new(p), me, false)
        {
            f.excusable.push(Problem::new(
                field,
                format!("{why}; the daemon runs it as root"),
            ));
        }
    };
    program("health_script".into(), &raw.health_script, &mut f);
    for (i, d) in raw.reboot_required_detectors.iter().enumerate() {
        if let Some(argv0) = d.cmd.first() {
            program(
                format!("reboot_required_detectors[{i}].cmd[0]"),
                argv0,
                &mut f,
            );
        }
    }
    for (list, hooks) in [
        ("pre_reboot", &raw.hooks.pre_reboot),
        ("post_reboot", &raw.hooks.post_reboot),
    ] {
        for (i, argv) in hooks.iter().enumerate() {
            if let Some(argv0) = argv.first() {
                program(format!("hooks.{list}[{i}][0]"), argv0, &mut f);
            }
        }
    }
    if let Some(argv0) = raw.reboot_command.first() {
        program("reboot_command[0]".into(), argv0, &mut f);
    }
    for (field, dir) in [("state_dir", &raw.state_dir), ("run_dir", &raw.run_dir)] {
        if dir.starts_with('/')
            && let Some(why) = untrusted(Path::new(dir), me, true)
        {
            f.excusable.push(Problem::new(
                field,
                format!("{why}; others could plant or replace the daemon's state files"),
            ));
        }
    }
    // A writable directory is named once, not once per file below it.
    let mut seen = std::collections::HashSet::new();
    f.always
        .retain(|p| seen.insert((p.field.clone(), p.message.clone())));
    f.excusable
        .retain(|p| seen.insert((p.field.clone(), p.message.clone())));
    f
}

/// Why `path` (and the directories above it, and its real location when it is a symlink)
/// could be changed by someone other than root and `me`; `None` when it cannot.
/// `strict_leaf`: the path itself may not be a sticky world-writable directory either.
pub fn untrusted(path: &Path, me: u32, strict_leaf: bool) -> Option<String> {
    let mut paths = vec![absolute(path)];
    if let Ok(real) = std::fs::canonicalize(path)
        && real != paths[0]
    {
        paths.push(real);
    }
    for p in paths {
        let mut leaf = true;
        for dir in p.ancestors() {
            // A component that does not exist (yet) cannot be judged; the ones above it can.
            if let Ok(meta) = std::fs::metadata(dir)
                && let Some(why) = verdict(dir, &meta, me, leaf && strict_leaf)
            {
                return Some(why);
            }
            leaf = false;
        }
    }
    None
}

/// Why one existing file or directory is not trustworthy.
fn verdict(path: &Path, meta: &std::fs::Metadata, me: u32, strict: bool) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let what = if meta.is_dir() { "directory" } else { "file" };
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!(
            "{} is owned by uid {}, not by root: that user can change what the daemon runs (chown root it)",
            path.display(),
            meta.uid()
        ));
    }
    let writable = mode & 0o022;
    if writable == 0 {
        return None;
    }
    let sticky = meta.is_dir() && mode & 0o1000 != 0;
    if sticky && !strict {
        return None;
    }
    let by = match writable {
        0o020 => "group",
        0o002 => "others",
        _ => "group and others",
    };
    Some(format!(
        "{what} {} is writable by {by} (mode {mode:04o}): chmod go-w it",
        path.display()
    ))
}

/// `path` made absolute against the current directory, `.`/`..` resolved textually.
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// What the test suites create: a 0700 temp dir (under sticky /tmp), 0644 configs, 0755
    /// scripts. All trusted.
    #[test]
    fn the_usual_modes_are_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, "").expect("write");
        chmod(&cfg, 0o644);
        let script = dir.path().join("health.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        chmod(&script, 0o755);
        assert_eq!(untrusted(&cfg, me(), false), None);
        assert_eq!(untrusted(&script, me(), false), None);
        // Not there yet: checked from the nearest existing directory.
        assert_eq!(untrusted(&dir.path().join("run/x"), me(), true), None);
        assert_eq!(untrusted(Path::new("/bin/sh"), me(), false), None);
    }

    /// Issue #20: a world-writable config.d/, a group-writable script, a world-writable
    /// run_dir are refused, naming the path.
    #[test]
    fn writable_files_and_directories_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("config.d");
        std::fs::create_dir(&d).expect("mkdir");
        chmod(&d, 0o777);
        let why = untrusted(&d.join("zz.yaml"), me(), false).expect("refused");
        assert!(
            why.contains(&format!(
                "directory {} is writable by group and others (mode 0777)",
                d.display()
            )),
            "{why}"
        );
        let script = dir.path().join("health.sh");
        std::fs::write(&script, "").expect("write");
        chmod(&script, 0o775);
        let why = untrusted(&script, me(), false).expect("refused");
        assert!(why.contains("is writable by group (mode 0775)"), "{why}");
        // A sticky directory is fine above a file, not as a state directory itself.
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("mkdir");
        chmod(&run, 0o1777);
        assert_eq!(untrusted(&run.join("state.json"), me(), false), None);
        assert!(untrusted(&run, me(), true).is_some());
        // A symlink into a writable directory is judged by where it points.
        let link = dir.path().join("link.sh");
        std::fs::write(d.join("real.sh"), "").expect("write");
        chmod(&d.join("real.sh"), 0o755);
        std::os::unix::fs::symlink(d.join("real.sh"), &link).expect("symlink");
        assert!(untrusted(&link, me(), false).is_some());
    }

    /// A file owned by another non-root user is refused (needs root to chown; skipped else).
    #[test]
    fn a_file_owned_by_another_user_is_refused() {
        if me() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("health.sh");
        std::fs::write(&script, "").expect("write");
        chmod(&script, 0o755);
        std::os::unix::fs::chown(&script, Some(65534), None).expect("chown");
        let why = untrusted(&script, 0, false).expect("refused");
        assert!(why.contains("is owned by uid 65534, not by root"), "{why}");
    }
}
