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
//! given without a `/` is checked where `PATH` finds it (and every `PATH` directory searched
//! before it); arguments that are absolute paths of existing files are checked too, since an
//! interpreter's script (`[/bin/sh, /etc/x/check.sh]`) is the code that really runs.

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
    if raw.health_script.starts_with('/')
        && let Some(why) = untrusted(Path::new(&raw.health_script), me, false)
    {
        f.excusable.push(Problem::new(
            "health_script",
            format!("{why}; the daemon runs it as root"),
        ));
    }
    for (i, d) in raw.reboot_required_detectors.iter().enumerate() {
        command(
            &format!("reboot_required_detectors[{i}].cmd"),
            &d.cmd,
            me,
            &mut f,
        );
    }
    for (list, hooks) in [
        ("pre_reboot", &raw.hooks.pre_reboot),
        ("post_reboot", &raw.hooks.post_reboot),
    ] {
        for (i, argv) in hooks.iter().enumerate() {
            command(&format!("hooks.{list}[{i}]"), argv, me, &mut f);
        }
    }
    command("reboot_command", &raw.reboot_command, me, &mut f);
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

/// Checks one command line the daemon runs as root (`field` is its path, e.g.
/// `reboot_command`): the program, and every argument that names an existing regular file by
/// absolute path — the script an interpreter runs (`[/bin/sh, /etc/x/check.sh]`, `[python3,
/// /opt/check.py]`) is the real code, so it must be as safe as the program. A program given
/// as a bare name is checked where `PATH` finds it, together with every `PATH` directory
/// searched before it (a file planted there would run instead).
fn command(field: &str, argv: &[String], me: u32, f: &mut Findings) {
    let Some(program) = argv.first() else {
        return;
    };
    if program.contains('/') {
        if let Some(why) = untrusted(Path::new(program), me, false) {
            f.excusable.push(Problem::new(
                format!("{field}[0]"),
                format!("{why}; the daemon runs it as root"),
            ));
        }
    } else if !program.is_empty() && !program.contains('$') {
        let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        for why in path_lookup(program, &path, me) {
            f.excusable.push(Problem::new(format!("{field}[0]"), why));
        }
    }
    for (j, arg) in argv.iter().enumerate().skip(1) {
        // `$VAR` is expanded at run time (hooks, reboot command): what it becomes is unknown.
        if !arg.starts_with('/') || arg.contains('$') {
            continue;
        }
        let is_file = std::fs::metadata(arg).is_ok_and(|m| m.is_file());
        if is_file && let Some(why) = untrusted(Path::new(arg), me, false) {
            f.excusable.push(Problem::new(
                format!("{field}[{j}]"),
                format!(
                    "{why}; it is an argument of {program}, which runs as root and may execute it (an interpreter's script)"
                ),
            ));
        }
    }
}

/// What `execvp` searches when `PATH` is not set (glibc's default, without the current
/// directory).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Problems with running the bare command `name` through `path` (a `PATH` value): the file
/// found, and each directory searched up to it (all of them when nothing is found, since a
/// file planted in any would be run). An empty or relative entry names a directory relative
/// to wherever the daemon runs: untrusted.
pub fn path_lookup(name: &str, path: &std::ffi::OsStr, me: u32) -> Vec<String> {
    let mut problems = Vec::new();
    for dir in std::env::split_paths(path) {
        if !dir.is_absolute() {
            problems.push(format!(
                "PATH entry {:?} is not an absolute directory: `{name}` is looked up relative to the daemon's working directory; give the command's absolute path",
                dir.display().to_string()
            ));
            continue;
        }
        let candidate = dir.join(name);
        let found =
            std::fs::metadata(&candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0);
        if found {
            if let Some(why) = untrusted(&candidate, me, false) {
                problems.push(format!(
                    "{why}; `{name}` is found there through PATH and the daemon runs it as root"
                ));
            }
            return problems;
        }
        if let Some(why) = untrusted(&dir, me, true) {
            problems.push(format!(
                "{why}; it is on PATH before `{name}` is found, so a `{name}` planted there would run as root"
            ));
        }
    }
    problems
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

    /// Issue #20: the script an interpreter runs is the real code. `[/bin/sh, <script>]` with
    /// a script others can write is refused by its argument's field; an argument that is no
    /// file (a flag, a missing path, `$VAR`) is not judged.
    #[test]
    fn an_interpreters_script_argument_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("check.sh");
        std::fs::write(&script, "exit 0\n").expect("write");
        chmod(&script, 0o644);
        let argv = |extra: &str| -> Vec<String> {
            vec![
                "/bin/sh".into(),
                "-e".into(),
                script.display().to_string(),
                extra.into(),
            ]
        };
        let mut f = Findings::default();
        command("hooks.pre_reboot[0]", &argv("/no/such/file"), me(), &mut f);
        assert!(f.excusable.is_empty(), "{:?}", f.excusable);
        chmod(&script, 0o646);
        let mut f = Findings::default();
        command("hooks.pre_reboot[0]", &argv("$RC_X"), me(), &mut f);
        assert_eq!(f.excusable.len(), 1, "{:?}", f.excusable);
        let p = &f.excusable[0];
        assert_eq!(p.field, "hooks.pre_reboot[0][2]");
        assert!(
            p.message.contains(&format!(
                "file {} is writable by others (mode 0646)",
                script.display()
            )) && p.message.contains("argument of /bin/sh"),
            "{}",
            p.message
        );
        // A swappable directory above the script counts the same.
        chmod(&script, 0o644);
        chmod(dir.path(), 0o777);
        let mut f = Findings::default();
        command("reboot_command", &argv(""), me(), &mut f);
        assert_eq!(f.excusable.len(), 1, "{:?}", f.excusable);
        assert_eq!(f.excusable[0].field, "reboot_command[2]");
        chmod(dir.path(), 0o700);
    }

    /// A bare command name is judged where `PATH` finds it, and every `PATH` directory
    /// searched before it must be safe too (a file planted there would run instead).
    #[test]
    fn a_bare_command_is_checked_where_path_finds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (open, good) = (dir.path().join("open"), dir.path().join("good"));
        for d in [&open, &good] {
            std::fs::create_dir(d).expect("mkdir");
            chmod(d, 0o755);
        }
        let cmd = good.join("mycheck");
        std::fs::write(&cmd, "#!/bin/sh\n").expect("write");
        chmod(&cmd, 0o755);
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).expect("join");
        assert_eq!(
            path_lookup("mycheck", &path(&[&good]), me()),
            Vec::<String>::new()
        );
        // The command itself writable by others.
        chmod(&cmd, 0o757);
        let why = path_lookup("mycheck", &path(&[&good]), me());
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains(&format!("file {} is writable by others", cmd.display()))
                && why[0].contains("found there through PATH"),
            "{why:?}"
        );
        chmod(&cmd, 0o755);
        // A writable directory searched first: refused; searched after the match: irrelevant.
        chmod(&open, 0o777);
        let why = path_lookup("mycheck", &path(&[&open, &good]), me());
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains(&format!("directory {} is writable", open.display()))
                && why[0].contains("on PATH before `mycheck`"),
            "{why:?}"
        );
        assert_eq!(
            path_lookup("mycheck", &path(&[&good, &open]), me()),
            Vec::<String>::new()
        );
        // Not found at all: every directory counts. A relative entry is never trusted.
        assert_eq!(path_lookup("nosuch", &path(&[&good, &open]), me()).len(), 1);
        let why = path_lookup("mycheck", std::ffi::OsStr::new("bin:/usr/bin"), me());
        assert!(
            why[0].contains("PATH entry \"bin\" is not an absolute"),
            "{why:?}"
        );
        // Through `command`: the field is argv[0]'s. The real PATH's `sh` is trusted.
        let mut f = Findings::default();
        command(
            "reboot_command",
            &["sh".into(), "-c".into(), "true".into()],
            me(),
            &mut f,
        );
        assert!(f.excusable.is_empty(), "{:?}", f.excusable);
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
