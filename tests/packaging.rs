//! Packaging tests (SPEC §12.4, issue #15): the .deb and .rpm built by `scripts/package`, their
//! contents, modes and maintainer scripts, and the .deb installed for real in Debian 12
//! containers booted with systemd-nspawn (recipe: shared/recipes/systemd-container.md).
//!
//! The packages are built once per change: the first test takes a lock, runs `scripts/package`
//! (profile `dist`) and records a hash of every input (src/, packaging/, Cargo.toml, …) in
//! `target/packaging/packages.stamp`; later tests (other processes under nextest) reuse dist/.
//! The rootfs (debootstrap, ~45 s) is cached as `target/packaging/rootfs-bookworm.tar.zst`.
//!
//! Needs root, systemd-nspawn, debootstrap, dpkg-deb, rpm and the cargo packagers
//! (`scripts/install-deps` installs them); without them every test prints why and skips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "support/etcd.rs"]
mod etcd;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Preconditions, packages, rootfs
// ---------------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo().join(p) })
        .unwrap_or_else(|| repo().join("target"))
}

fn work_dir() -> PathBuf {
    let d = target_dir().join("packaging");
    fs::create_dir_all(&d).expect("target/packaging");
    d
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why the tests cannot run here, if they cannot.
fn unavailable(containers: bool) -> Option<String> {
    if run("id -u").stdout.trim_ascii() != b"0" {
        return Some("needs root (dpkg, systemd-nspawn)".into());
    }
    for t in ["cargo-deb", "cargo-generate-rpm"] {
        if !have(t) {
            return Some(format!("{t} missing: run scripts/install-deps packaging"));
        }
    }
    let mut needed = vec!["dpkg-deb", "rpm", "rpm2cpio", "cpio"];
    if containers {
        needed.extend(["systemd-nspawn", "debootstrap", "zstd", "nsenter"]);
    }
    for t in needed {
        if !have(t) {
            return Some(format!("{t} missing: run scripts/install-deps"));
        }
    }
    if containers {
        // nspawn needs a writable cgroup file system (not the case in an unprivileged docker
        // container, e.g. a CI job's `container:`).
        let probe = [
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .iter()
        .map(|h| Path::new(h).join(format!("crd-pkg-probe-{}", std::process::id())))
        .find(|p| p.parent().is_some_and(Path::is_dir))?;
        if fs::create_dir(&probe).is_err() {
            return Some(format!(
                "cannot create {} (cgroup file system read-only: unprivileged container?)",
                probe.display()
            ));
        }
        let _ = fs::remove_dir(&probe);
    }
    None
}

macro_rules! skip_unless_ready {
    ($name:literal, $containers:expr) => {
        if let Some(why) = unavailable($containers) {
            let msg = format!("\n!!!!!!!! SKIPPED {}: {} !!!!!!!!\n", $name, why);
            eprintln!("{msg}");
            println!("{msg}");
            return;
        }
    };
}

/// An exclusive lock on `target/packaging/<name>.lock` (held across test processes: nextest
/// runs each test in its own), released when dropped.
type Lock = nix::fcntl::Flock<fs::File>;

fn lock(name: &str) -> Lock {
    let f = fs::File::create(work_dir().join(format!("{name}.lock"))).expect("lock file");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock")
}

fn hash_tree(h: &mut DefaultHasher, p: &Path) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(p)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for e in entries {
            hash_tree(h, &e);
        }
    } else if let Ok(bytes) = fs::read(p) {
        p.hash(h);
        bytes.hash(h);
    }
}

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

fn find_in(dir: &Path, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found.pop()
}

/// The packages in dist/, built by `scripts/package` unless an identical build is there.
fn packages() -> Packages {
    let _l = lock("packages");
    let r = repo();
    let mut h = DefaultHasher::new();
    for p in [
        "src",
        "packaging",
        "examples",
        "docs",
        "fsm-spec",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "scripts/package",
    ] {
        hash_tree(&mut h, &r.join(p));
    }
    let key = format!("{:016x}\n", h.finish());
    let stamp = work_dir().join("packages.stamp");
    let dist = r.join("dist");
    let found = || {
        Some(Packages {
            deb: find_in(&dist, "_amd64.deb")?,
            rpm: find_in(&dist, ".x86_64.rpm")?,
        })
    };
    if fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str())
        && let Some(p) = found()
    {
        return p;
    }
    let _ = fs::remove_dir_all(&dist);
    let t0 = Instant::now();
    let log = work_dir().join("package.log");
    let mut cmd = Command::new(r.join("scripts/package"));
    // The variables cargo sets for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*, …) would leak into
    // the build and make build scripts that track them (ring) rebuild half the tree.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR" {
            cmd.env_remove(k);
        }
    }
    let ok = cmd
        .current_dir(&r)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(
            fs::File::create(&log)
                .expect("log")
                .try_clone()
                .expect("log"),
        )
        .status()
        .expect("scripts/package")
        .success();
    let out = fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "scripts/package failed:\n{out}");
    eprintln!(
        "packaging: scripts/package took {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    fs::write(&stamp, key).expect("stamp");
    found().expect("dist/ has a .deb and an .rpm")
}

/// The cached Debian 12 rootfs tarball (`scripts/rootfs`).
fn rootfs() -> PathBuf {
    let _l = lock("rootfs");
    let out = work_dir().join("rootfs-bookworm.tar.zst");
    if !out.exists() {
        let t0 = Instant::now();
        let o = Command::new(repo().join("scripts/rootfs"))
            .arg(&out)
            .output()
            .expect("scripts/rootfs");
        assert!(
            o.status.success(),
            "scripts/rootfs failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!(
            "packaging: debootstrap rootfs took {:.0} s",
            t0.elapsed().as_secs_f64()
        );
    }
    out
}

fn run(cmd: &str) -> Output {
    Command::new("bash")
        .args(["-c", cmd])
        .output()
        .expect("bash")
}

/// Runs `cmd` in bash, asserts success, returns stdout.
fn sh(cmd: &str) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Static inspection
// ---------------------------------------------------------------------------------------------

/// `dpkg-deb -c` as path → (mode string, owner).
fn deb_files(deb: &Path) -> BTreeMap<String, (String, String)> {
    sh(&format!("dpkg-deb -c {}", deb.display()))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').to_string();
            (path, (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

#[test]
fn deb_contents_modes_and_scripts() {
    skip_unless_ready!("deb_contents_modes_and_scripts", false);
    let p = packages();
    let files = deb_files(&p.deb);
    let expect = [
        ("/usr/bin/clusterrebootd", "-rwxr-xr-x"),
        ("/etc/clusterrebootd/config.yaml", "-rw-r-----"),
        ("/lib/systemd/system/clusterrebootd.service", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/clusterrebootd.conf", "-rw-r--r--"),
        (
            "/usr/libexec/clusterrebootd/health-not-configured",
            "-rwxr-xr-x",
        ),
        ("/usr/share/man/man8/clusterrebootd.8.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/clusterrebootd",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_clusterrebootd",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/clusterrebootd.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/licenses/clusterrebootd/LICENSE", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/copyright", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/README.Debian", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/OPERATIONS.md", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/CONFIG.md", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/CHANGELOG.md", "-rw-r--r--"),
        (
            "/usr/share/doc/clusterrebootd/examples/local.yaml",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/clusterrebootd/examples/health/system-running.sh",
            "-rwxr-xr-x",
        ),
        (
            "/usr/share/doc/clusterrebootd/examples/health/etcd-quorum.sh",
            "-rwxr-xr-x",
        ),
        (
            "/usr/share/doc/clusterrebootd/examples/hooks/kube-drain.sh",
            "-rwxr-xr-x",
        ),
        ("/usr/share/doc/clusterrebootd/MIGRATION.md", "-rw-r--r--"),
        ("/usr/share/doc/clusterrebootd/RUNBOOKS.md", "-rw-r--r--"),
    ];
    for (path, mode) in expect {
        let got = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from the .deb: {files:#?}"));
        assert_eq!(got.0, mode, "{path}");
        assert_eq!(got.1, "0/0", "{path}: owned by root");
    }
    let info = sh(&format!("dpkg-deb -I {}", p.deb.display()));
    for want in [
        "Package: clusterrebootd",
        "Architecture: amd64",
        "Section: admin",
        "Priority: optional",
        "systemd",
        "Recommends: ca-certificates",
        " conffiles ",
        " preinst ",
        " postinst ",
        " prerm ",
        " postrm ",
    ] {
        assert!(info.contains(want), "dpkg-deb -I lacks {want:?}:\n{info}");
    }
    let conffiles = sh(&format!("dpkg-deb -I {} conffiles", p.deb.display()));
    assert_eq!(conffiles.trim(), "/etc/clusterrebootd/config.yaml");
    let script = |name: &str| sh(&format!("dpkg-deb -I {} {name}", p.deb.display()));
    let postinst = script("postinst");
    assert!(postinst.contains("systemd-tmpfiles --create"), "{postinst}");
    assert!(
        postinst.contains("[ -d /run/systemd/system ]"),
        "{postinst}"
    );
    assert!(postinst.contains("systemctl daemon-reload"), "{postinst}");
    assert!(postinst.contains("try-restart"), "{postinst}");
    for forbidden in [
        "systemctl enable",
        "systemctl start",
        "systemctl restart",
        "deb-systemd-helper enable",
        "deb-systemd-invoke start",
    ] {
        let code: String = postinst
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.contains("enable --now"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !code.contains(forbidden),
            "postinst must not {forbidden}:\n{postinst}"
        );
    }
    assert!(script("prerm").contains("stop clusterrebootd.service"));
    let postrm = script("postrm");
    assert!(
        postrm.contains("rm -rf /var/lib/clusterrebootd"),
        "{postrm}"
    );
    let preinst = script("preinst");
    assert!(
        preinst.contains("/etc/clusterrebootd/config.d"),
        "{preinst}"
    );
    // The binary is stripped and the man page is the generated one.
    let t = tempfile::tempdir().expect("tmp");
    sh(&format!(
        "dpkg-deb -x {} {}",
        p.deb.display(),
        t.path().display()
    ));
    let man = sh(&format!(
        "zcat {}/usr/share/man/man8/clusterrebootd.8.gz",
        t.path().display()
    ));
    assert!(man.contains(".TH clusterrebootd 8"), "man page:\n{man}");
    assert!(man.contains("EXIT STATUS"), "man page lacks EXIT STATUS");
    let file = sh(&format!(
        "file {}/usr/bin/clusterrebootd || true",
        t.path().display()
    ));
    if !file.is_empty() {
        assert!(!file.contains("not stripped"), "{file}");
    }
}

#[test]
fn rpm_contents_modes_and_scripts() {
    skip_unless_ready!("rpm_contents_modes_and_scripts", false);
    let p = packages();
    let rpm = p.rpm.display();
    let info = sh(&format!("rpm -qip {rpm} 2>/dev/null"));
    assert!(info.contains("Name        : clusterrebootd"), "{info}");
    assert!(info.contains("Architecture: x86_64"), "{info}");
    assert!(info.contains("License     : Apache-2.0"), "{info}");
    let modes: BTreeMap<String, String> = sh(&format!(
        "rpm -qp --qf '[%{{FILEMODES:perms}} %{{FILEUSERNAME}}:%{{FILEGROUPNAME}} %{{FILENAMES}}\\n]' {rpm} 2>/dev/null"
    ))
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[2].to_string(), format!("{} {}", f[0], f[1]))
    })
    .collect();
    for (path, mode) in [
        ("/usr/bin/clusterrebootd", "-rwxr-xr-x root:root"),
        ("/etc/clusterrebootd/config.yaml", "-rw-r----- root:root"),
        (
            "/usr/lib/systemd/system/clusterrebootd.service",
            "-rw-r--r-- root:root",
        ),
        (
            "/usr/lib/tmpfiles.d/clusterrebootd.conf",
            "-rw-r--r-- root:root",
        ),
        (
            "/usr/share/man/man8/clusterrebootd.8.gz",
            "-rw-r--r-- root:root",
        ),
        (
            "/usr/share/zsh/site-functions/_clusterrebootd",
            "-rw-r--r-- root:root",
        ),
        (
            "/usr/share/licenses/clusterrebootd/LICENSE",
            "-rw-r--r-- root:root",
        ),
    ] {
        assert_eq!(
            modes.get(path).map(String::as_str),
            Some(mode),
            "{path} in {modes:#?}"
        );
    }
    let flags = sh(&format!(
        "rpm -qp --qf '[%{{FILEFLAGS:fflags}} %{{FILENAMES}}\\n]' {rpm} 2>/dev/null"
    ));
    let cfg = flags
        .lines()
        .find(|l| l.ends_with(" /etc/clusterrebootd/config.yaml"))
        .expect("config flags");
    assert!(cfg.starts_with("cn"), "config(noreplace) expected: {cfg}");
    let scripts = sh(&format!("rpm -qp --scripts {rpm} 2>/dev/null"));
    for want in [
        "preinstall scriptlet",
        "postinstall scriptlet",
        "preuninstall scriptlet",
        "postuninstall scriptlet",
        "systemd-tmpfiles --create",
        "try-restart clusterrebootd.service",
        "stop clusterrebootd.service",
        "[ -d /run/systemd/system ]",
    ] {
        assert!(
            scripts.contains(want),
            "rpm scripts lack {want:?}:\n{scripts}"
        );
    }
    let requires = sh(&format!("rpm -qpR {rpm} 2>/dev/null"));
    assert!(requires.contains("systemd"), "{requires}");
}

/// The shipped templates: safe (dry run), the right detector preset, and valid as shipped.
#[test]
fn config_templates_are_safe_and_valid() {
    skip_unless_ready!("config_templates_are_safe_and_valid", false);
    let p = packages();
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    sh(&format!(
        "dpkg-deb -x {} {}/deb",
        p.deb.display(),
        d.display()
    ));
    sh(&format!(
        "mkdir -p {d}/rpm && cd {d}/rpm && rpm2cpio {} | cpio -idm --quiet",
        p.rpm.display(),
        d = d.display()
    ));
    let bin = d.join("deb/usr/bin/clusterrebootd");
    for (fam, root) in [("debian", "deb"), ("rhel", "rpm")] {
        let cfg = d.join(root).join("etc/clusterrebootd/config.yaml");
        let text = fs::read_to_string(&cfg).expect("config");
        assert!(text.contains("\ndry_run: true\n"), "{root}: {text}");
        assert!(text.contains(&format!("preset: {fam}\n")), "{root}: {text}");
        assert!(text.contains("\nlock_backend: local\n"), "{root}: {text}");
        let o = sh(&format!(
            "{} validate-config --config {}",
            bin.display(),
            cfg.display()
        ));
        assert!(o.contains("is valid"), "{o}");
    }
    // The unit's options, as the issue lists them.
    let unit =
        fs::read_to_string(d.join("deb/lib/systemd/system/clusterrebootd.service")).expect("unit");
    for want in [
        "Type=notify",
        "ExecStart=/usr/bin/clusterrebootd run --config /etc/clusterrebootd/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=5",
        "After=network-online.target",
        "Wants=network-online.target",
        "StateDirectory=clusterrebootd",
        "RuntimeDirectory=clusterrebootd",
        "RuntimeDirectoryPreserve=yes",
        "WatchdogSec=",
        "TimeoutStopSec=",
    ] {
        assert!(unit.contains(want), "unit lacks {want}");
    }
    assert!(
        !unit
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("ConditionPathExists")),
        "no kill-switch condition: the kill switch is the daemon's job"
    );
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

/// One Debian 12 container with its own persistent root (so that it survives reboots).
struct Container {
    name: String,
    root: PathBuf,
    share: PathBuf,
    child: Option<Child>,
    cpid: i32,
    boots: u32,
    cgroups: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Container {
    /// A fresh root from the cached tarball; `share` is bound read-only at /mnt/share.
    fn new(name: &str, share: &Path) -> Container {
        let tarball = rootfs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(work_dir())
            .expect("node dir");
        let root = dir.path().join("root");
        fs::create_dir_all(&root).expect("root");
        sh(&format!(
            "tar --numeric-owner -I zstd -xf {} -C {}",
            tarball.display(),
            root.display()
        ));
        fs::write(root.join("etc/hostname"), format!("{name}\n")).expect("hostname");
        Container {
            name: name.to_string(),
            root,
            share: share.to_path_buf(),
            child: None,
            cpid: 0,
            boots: 0,
            cgroups: Vec::new(),
            _dir: dir,
        }
    }

    /// Writes a file into the container's root (before boot or while it runs).
    fn put(&self, path: &str, content: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Boots it (retrying a boot that does not come up) and waits until systemd is running.
    fn boot(&mut self) {
        for attempt in 1..=3 {
            match self.try_boot() {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("{}: boot attempt {attempt} failed: {e}", self.name);
                    self.kill();
                }
            }
        }
        panic!("{}: container did not boot 3 times", self.name);
    }

    fn try_boot(&mut self) -> Result<(), String> {
        self.boots += 1;
        let cg = format!(
            "crd-pkg-{}-{}-{}",
            std::process::id(),
            self.name,
            self.boots
        );
        self.cgroups.push(cg.clone());
        let log = self
            .root
            .parent()
            .expect("dir")
            .join(format!("nspawn-{}.log", self.boots));
        // Each container starts from its own cgroup (recipe: two containers started from the
        // same cgroup collide), in the named systemd and the unified hierarchy when present.
        let script = format!(
            "for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do \
               if [ -d $h ]; then mkdir -p $h/{cg} && echo $$ > $h/{cg}/cgroup.procs; fi; done; \
             exec systemd-nspawn -q -D {root} -M {name} --boot --register=no --keep-unit \
               --console=passive --bind-ro={share}:/mnt/share",
            root = self.root.display(),
            name = self.name,
            share = self.share.display(),
        );
        let child = Command::new("setsid")
            .args(["bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("log"))
            .stderr(
                fs::File::create(&log)
                    .expect("log")
                    .try_clone()
                    .expect("log"),
            )
            .spawn()
            .map_err(|e| e.to_string())?;
        let np = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = run(&format!("pgrep -P {np} -x systemd"));
            if o.status.success() {
                self.cpid = String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse()
                    .map_err(|e| format!("pgrep: {e}"))?;
                break;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "nspawn exited ({st}): {}",
                    fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                return Err("no systemd in the container after 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let o = self.exec("systemctl is-system-running --wait");
            let st = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if st == "running" || st == "degraded" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("system state {st:?} after 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `cmd` with /bin/sh inside the container.
    fn exec(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.cpid.to_string(), "-a", "/bin/sh", "-c", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Runs `cmd` inside, asserts success, returns stdout.
    fn sh(&self, cmd: &str) -> String {
        let o = self.exec(cmd);
        assert!(
            o.status.success(),
            "{}: `{cmd}` failed ({}):\n{}\n{}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `systemctl show -p P --value clusterrebootd`.
    fn prop(&self, p: &str) -> String {
        self.sh(&format!(
            "systemctl show -p {p} --value clusterrebootd.service"
        ))
        .trim()
        .to_string()
    }

    /// Waits until `f` holds, panicking with `what` and the unit's journal after `secs`.
    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut(&Container) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            if Instant::now() > deadline {
                let j = self.exec("journalctl -u clusterrebootd --no-pager -n 60");
                panic!(
                    "{}: timed out waiting for {what}\n{}",
                    self.name,
                    String::from_utf8_lossy(&j.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Has the container's nspawn exited (it rebooted or powered off)?
    fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    fn cleanup_cgroups(&mut self) {
        for cg in self.cgroups.drain(..) {
            for h in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"] {
                let _ = run(&format!(
                    "[ -d {h}/{cg} ] && find {h}/{cg} -depth -type d -exec rmdir {{}} \\; 2>/dev/null; true"
                ));
            }
        }
    }

    /// Powers it off (SIGTERM to nspawn = clean shutdown), SIGKILL after 30 s.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.cleanup_cgroups();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup_cgroups();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup_cgroups();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory shared read-only with the containers at /mnt/share, holding the packages.
fn share_dir(p: &Packages) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("share-")
        .tempdir_in(work_dir())
        .expect("share");
    fs::copy(&p.deb, d.path().join("clusterrebootd.deb")).expect("copy deb");
    d
}

/// `deb` repacked with a higher version (an upgrade of the same content).
fn bumped_deb(deb: &Path, out: &Path, version: &str) {
    let t = tempfile::tempdir().expect("tmp");
    let x = t.path().join("x");
    sh(&format!("dpkg-deb -R {} {}", deb.display(), x.display()));
    sh(&format!(
        "sed -i 's/^Version: .*/Version: {version}/' {}/DEBIAN/control",
        x.display()
    ));
    sh(&format!(
        "dpkg-deb --root-owner-group -Zxz -b {} {} >/dev/null",
        x.display(),
        out.display()
    ));
}

/// A stand-in for the Go daemon's package (docs/GO-COMPAT.md §10): same name, Type=simple unit
/// with the Go layout, conffile config.yaml, a running "daemon" (a shell loop).
fn go_deb(out: &Path) {
    let t = tempfile::tempdir().expect("tmp");
    let r = t.path().join("go");
    let w = |p: &str, c: &str, mode: &str| {
        let f = r.join(p);
        fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        fs::write(&f, c).expect("write");
        sh(&format!("chmod {mode} {}", f.display()));
    };
    w(
        "DEBIAN/control",
        "Package: clusterrebootd\nVersion: 0.0.9\nArchitecture: amd64\nMaintainer: go <go@example.invalid>\nSection: admin\nPriority: optional\nDepends: systemd\nDescription: Go clusterrebootd (test stand-in)\n",
        "644",
    );
    w(
        "DEBIAN/conffiles",
        "/etc/clusterrebootd/config.yaml\n",
        "644",
    );
    w(
        "DEBIAN/postinst",
        "#!/bin/sh\nsystemd-tmpfiles --create /usr/lib/tmpfiles.d/clusterrebootd.conf || true\nif [ -S /run/systemd/private ]; then systemctl daemon-reload || true; fi\nexit 0\n",
        "755",
    );
    w(
        "DEBIAN/prerm",
        "#!/bin/sh\nif [ \"$1\" = remove ]; then systemctl --no-reload stop clusterrebootd.service || true; fi\nexit 0\n",
        "755",
    );
    w(
        "DEBIAN/postrm",
        "#!/bin/sh\nsystemctl daemon-reload 2>/dev/null || true\nexit 0\n",
        "755",
    );
    w(
        "usr/bin/clusterrebootd",
        "#!/bin/sh\necho go daemon stand-in\nexec sleep infinity\n",
        "755",
    );
    w(
        "etc/clusterrebootd/config.yaml",
        "reboot_required_detectors:\n  - type: file\n    path: /var/run/reboot-required\nhealth_script: /bin/true\netcd_endpoints: [\"http://127.0.0.1:1\"]\n",
        "640",
    );
    w(
        "lib/systemd/system/clusterrebootd.service",
        "[Unit]\nDescription=Cluster Reboot Coordinator\nAfter=network-online.target\nWants=network-online.target\nConditionPathExists=!/etc/clusterrebootd/disable\n\n[Service]\nType=simple\nExecStart=/usr/bin/clusterrebootd run --config /etc/clusterrebootd/config.yaml\nRestart=always\nRestartSec=5\nRuntimeDirectory=clusterrebootd\nRuntimeDirectoryMode=0750\n\n[Install]\nWantedBy=multi-user.target\n",
        "644",
    );
    w(
        "usr/lib/tmpfiles.d/clusterrebootd.conf",
        "d /run/clusterrebootd 0750 root root -\n",
        "644",
    );
    w(
        "usr/share/doc/clusterrebootd/PACKAGING_BLUEPRINT.md",
        "go\n",
        "644",
    );
    sh(&format!(
        "dpkg-deb --root-owner-group -Zxz -b {} {} >/dev/null",
        r.display(),
        out.display()
    ));
}

/// The whole life cycle of the .deb on a booted Debian 12: install (not started), verify,
/// start (READY=1), status text, reload, watchdog, stop, remove, reinstall, upgrade, purge.
#[test]
fn deb_lifecycle_in_debian12_container() {
    skip_unless_ready!("deb_lifecycle_in_debian12_container", true);
    let p = packages();
    let share = share_dir(&p);
    bumped_deb(
        &p.deb,
        &share.path().join("clusterrebootd-next.deb"),
        "0.1.0-2",
    );
    let mut c = Container::new("pkgnode", share.path());
    c.boot();

    // Install: neither enabled nor started.
    let out = c.sh("dpkg -i /mnt/share/clusterrebootd.deb 2>&1");
    assert!(out.contains("neither enabled nor started"), "{out}");
    assert_eq!(
        c.exec("systemctl is-enabled clusterrebootd.service")
            .stdout
            .trim_ascii(),
        b"disabled"
    );
    assert_eq!(c.prop("ActiveState"), "inactive");
    assert_eq!(
        c.sh("stat -c '%a %U' /etc/clusterrebootd /etc/clusterrebootd/config.d /etc/clusterrebootd/config.yaml /var/lib/clusterrebootd /run/clusterrebootd"),
        "750 root\n750 root\n640 root\n750 root\n750 root\n"
    );
    assert!(c.sh("clusterrebootd validate-config").contains("is valid"));

    // systemd-analyze verify inside the container (ExecStart must exist): no output at all.
    let v = c.exec("systemd-analyze verify --man=no clusterrebootd.service");
    assert!(
        v.status.success() && v.stderr.is_empty() && v.stdout.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let sec = c.sh("systemd-analyze security --no-pager clusterrebootd.service | tail -n 1");
    eprintln!("systemd-analyze security: {}", sec.trim());

    // Start: Type=notify, so `systemctl start` returns only after READY=1.
    let t0 = Instant::now();
    c.sh("systemctl start clusterrebootd.service");
    eprintln!("systemctl start took {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(c.prop("ActiveState"), "active");
    assert_eq!(c.prop("SubState"), "running");
    assert_eq!(c.prop("Type"), "notify");
    assert_eq!(c.prop("WatchdogUSec"), "1min");
    c.wait_for("StatusText with the state and reason", 30, |c| {
        let s = c.prop("StatusText");
        s.starts_with("Idle: ") && s.len() > "Idle: ".len()
    });
    eprintln!("StatusText: {}", c.prop("StatusText"));

    // Reload: a config.d file lowers the check interval; the reload makes the idle daemon check
    // again at once, now with a reboot required: the shipped health script blocks it.
    c.sh("touch /run/reboot-required");
    c.sh("printf 'check_interval_sec: 5\\n' > /etc/clusterrebootd/config.d/test.yaml");
    let pid = c.prop("MainPID");
    c.sh("systemctl reload clusterrebootd.service");
    assert_eq!(c.prop("MainPID"), pid, "reload keeps the process");
    c.wait_for("the blocked health check in StatusText", 30, |c| {
        c.prop("StatusText")
            .contains("health_script not configured")
    });
    let status = c.prop("StatusText");
    assert!(status.starts_with("Idle: "), "{status}");
    let j = c.sh("journalctl -u clusterrebootd --no-pager -o cat");
    assert!(j.contains("Reloading") || j.contains("reload"), "{j}");

    // Watchdog: a daemon that stops pinging (SIGSTOP) is killed and restarted.
    c.put(
        "/etc/systemd/system/clusterrebootd.service.d/watchdog.conf",
        "[Service]\nWatchdogSec=3\nTimeoutAbortSec=3\n",
        0o644,
    );
    c.sh("systemctl daemon-reload && systemctl restart clusterrebootd.service");
    let pid = c.prop("MainPID");
    c.sh(&format!("kill -STOP {pid}"));
    let t0 = Instant::now();
    c.wait_for("a restart after the watchdog fired", 60, |c| {
        let p = c.prop("MainPID");
        p != pid && p != "0" && c.prop("ActiveState") == "active"
    });
    eprintln!("watchdog restart after {:.1} s", t0.elapsed().as_secs_f64());
    let j = c.sh("journalctl -u clusterrebootd --no-pager -o cat");
    assert!(j.contains("Watchdog timeout"), "{j}");
    fs::remove_file(
        c.root
            .join("etc/systemd/system/clusterrebootd.service.d/watchdog.conf"),
    )
    .expect("rm drop-in");
    c.sh("systemctl daemon-reload && systemctl restart clusterrebootd.service");
    c.wait_for("health blocked again", 30, |c| {
        c.prop("StatusText")
            .contains("health_script not configured")
    });

    // Stop: clean (exit code 3 = last pass health-blocked is a success exit status).
    c.sh("systemctl stop clusterrebootd.service");
    assert_eq!(c.prop("ActiveState"), "inactive");
    assert_eq!(c.prop("Result"), "success");
    assert!(c.root.join("var/lib/clusterrebootd/journal.jsonl").exists());

    // Remove: stops the daemon, keeps the configuration (and the admin's config.d file).
    c.sh("systemctl start clusterrebootd.service");
    c.sh("echo '# edited by the admin' >> /etc/clusterrebootd/config.yaml");
    c.sh("dpkg -r clusterrebootd");
    assert_eq!(c.prop("ActiveState"), "inactive");
    assert!(!c.root.join("usr/bin/clusterrebootd").exists());
    let cfg = fs::read_to_string(c.root.join("etc/clusterrebootd/config.yaml")).expect("kept");
    assert!(cfg.contains("# edited by the admin"));
    assert!(
        c.root
            .join("etc/clusterrebootd/config.d/test.yaml")
            .exists()
    );
    assert!(c.root.join("var/lib/clusterrebootd/journal.jsonl").exists());

    // Reinstall: the edited configuration stays (conffile).
    c.sh("dpkg -i /mnt/share/clusterrebootd.deb");
    let cfg = fs::read_to_string(c.root.join("etc/clusterrebootd/config.yaml")).expect("cfg");
    assert!(cfg.contains("# edited by the admin"));
    assert_eq!(
        c.prop("ActiveState"),
        "inactive",
        "reinstall does not start"
    );

    // Upgrade of a running daemon: restarted with the new package, config kept.
    c.sh("systemctl start clusterrebootd.service");
    let pid = c.prop("MainPID");
    c.sh("dpkg -i /mnt/share/clusterrebootd-next.deb");
    assert_eq!(
        c.sh("dpkg-query -W -f '${Version}' clusterrebootd"),
        "0.1.0-2"
    );
    c.wait_for("the upgraded daemon running", 30, |c| {
        let p = c.prop("MainPID");
        p != pid && p != "0" && c.prop("ActiveState") == "active"
    });
    let cfg = fs::read_to_string(c.root.join("etc/clusterrebootd/config.yaml")).expect("cfg");
    assert!(cfg.contains("# edited by the admin"));

    // Purge: configuration and state gone; the admin's own file is kept and named.
    let out = c.sh("dpkg -P clusterrebootd 2>&1");
    assert!(!c.root.join("etc/clusterrebootd/config.yaml").exists());
    assert!(!c.root.join("var/lib/clusterrebootd").exists());
    assert!(
        !c.root.join("run/clusterrebootd").exists()
            || c.exec("test -d /run/clusterrebootd").status.code() == Some(1)
    );
    assert!(out.contains("config.d"), "purge names the kept file: {out}");
    c.stop();
}

/// Upgrading from the Go package of the same name: the administrator's config.yaml is kept,
/// the running Go daemon is replaced by this one under the new unit (Type=notify).
#[test]
fn deb_upgrade_from_go_package_keeps_config() {
    skip_unless_ready!("deb_upgrade_from_go_package_keeps_config", true);
    let p = packages();
    let share = share_dir(&p);
    go_deb(&share.path().join("go.deb"));
    let mut c = Container::new("gonode", share.path());
    c.boot();
    c.sh("dpkg -i /mnt/share/go.deb");
    c.sh("echo '# node-specific edit' >> /etc/clusterrebootd/config.yaml");
    c.sh("systemctl enable --now clusterrebootd.service");
    let before = c.sh("cat /etc/clusterrebootd/config.yaml");
    assert_eq!(c.prop("Type"), "simple");
    // Non-interactive upgrade, as apt/unattended-upgrades do it: keep the modified conffile.
    let out = c.sh("dpkg -i --force-confdef --force-confold /mnt/share/clusterrebootd.deb 2>&1");
    assert_eq!(c.sh("cat /etc/clusterrebootd/config.yaml"), before, "{out}");
    assert_eq!(c.prop("Type"), "notify");
    assert!(c.prop("ExecStart").contains("/usr/bin/clusterrebootd"));
    c.wait_for("the Rust daemon running the Go config", 30, |c| {
        c.prop("ActiveState") == "active"
            && c.exec("head -c 4 /usr/bin/clusterrebootd").stdout == b"\x7fELF"
            && c.prop("StatusText").contains(':')
    });
    assert!(
        !c.root
            .join("usr/share/doc/clusterrebootd/PACKAGING_BLUEPRINT.md")
            .exists()
    );
    assert_eq!(
        c.exec("systemctl is-enabled clusterrebootd.service")
            .stdout
            .trim_ascii(),
        b"enabled",
        "the administrator's enablement stays"
    );
    c.stop();
}

// ---------------------------------------------------------------------------------------------
// Fleet: three containers, real `systemctl reboot`, etcd on the host loopback
// ---------------------------------------------------------------------------------------------

/// What the etcd poller saw: (time, nodes with an in-progress marker).
type Snapshots = Arc<Mutex<Vec<(f64, BTreeSet<String>)>>>;

fn fleet(k: usize) {
    let p = packages();
    let share = share_dir(&p);
    let etcd = etcd::Etcd::start(1);
    let ep = etcd.endpoints()[0].clone();
    let ns = format!("/fleet{k}");
    let mut nodes: Vec<Container> = (0..3)
        .map(|i| Container::new(&format!("fleet{k}n{i}"), share.path()))
        .collect();
    for (i, c) in nodes.iter().enumerate() {
        // A fresh boot id file at each container boot (the kernel's is the host's).
        c.put(
            "/etc/systemd/system/test-boot-id.service",
            "[Unit]\nDescription=fresh boot id for clusterrebootd tests\nDefaultDependencies=no\nBefore=clusterrebootd.service sysinit.target\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'cat /proc/sys/kernel/random/uuid > /run/test-boot-id'\n\n[Install]\nWantedBy=sysinit.target\n",
            0o644,
        );
        sh(&format!(
            "mkdir -p {r}/etc/systemd/system/sysinit.target.wants && ln -sf /etc/systemd/system/test-boot-id.service {r}/etc/systemd/system/sysinit.target.wants/",
            r = c.root.display()
        ));
        c.put(
            "/usr/local/bin/test-health",
            "#!/bin/sh\necho \"$(cat /run/test-boot-id) $RC_PHASE $(date +%s.%N)\" >> /var/lib/test-health.log\nexit 0\n",
            0o755,
        );
        c.put(
            "/etc/clusterrebootd/config.d/fleet.yaml",
            &format!(
                "node_name: node-{i}
health_script: /usr/local/bin/test-health
health_timeout_sec: 10
check_interval_sec: 2
backoff_min_sec: 1
backoff_max_sec: 2
health_publish_interval_sec: 2
lock_backend: etcd
etcd_endpoints: [\"{ep}\"]
etcd_namespace: {ns}
lock_ttl_sec: 15
max_concurrent_reboots: {k}
reboot_lease_ttl_sec: 600
boot_id_path: /run/test-boot-id
reboot_command: [\"/bin/systemctl\", \"reboot\"]
dry_run: false
log:
  level: debug
"
            ),
            0o640,
        );
    }
    for c in &mut nodes {
        c.boot();
        c.sh("dpkg -i --force-confold /mnt/share/clusterrebootd.deb >/dev/null");
        c.sh("clusterrebootd validate-config");
        c.sh("touch /run/reboot-required"); // gone after the reboot, like an applied update
    }

    // Poll the in-progress markers (written before the reboot command, deleted after the
    // post-reboot health check) every 100 ms.
    let snaps: Snapshots = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let snaps = snaps.clone();
        let done = done.clone();
        let prefix = format!("{ns}/reboot_in_progress/");
        let ep = ep.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let o = Command::new("etcdctl")
                    .args([
                        "--endpoints",
                        &ep,
                        "get",
                        "--prefix",
                        "--keys-only",
                        &prefix,
                    ])
                    .env("ETCDCTL_API", "3")
                    .output();
                if let Ok(o) = o
                    && o.status.success()
                {
                    let set: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| l.trim_start_matches(&prefix).to_string())
                        .collect();
                    snaps.lock().expect("snaps").push((now(), set));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Enable and start the daemons; boot each container again when it exits (its reboot).
    let t0 = Instant::now();
    for c in &nodes {
        c.sh("systemctl enable --now clusterrebootd.service");
    }
    let mut down_at: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut up_at: Vec<Vec<f64>> = vec![Vec::new(); 3];
    // When the harness started booting it again: until then the node is certainly down (the
    // daemon may release its slot during the boot, before `up_at`).
    let mut boot_at: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        for (i, c) in nodes.iter_mut().enumerate() {
            if c.exited() {
                down_at[i].push(now());
                eprintln!(
                    "fleet K={k}: node-{i} rebooted at +{:.1} s",
                    t0.elapsed().as_secs_f64()
                );
                c.cleanup_cgroups();
                boot_at[i].push(now());
                c.boot();
                up_at[i].push(now());
            }
        }
        let all_rebooted = down_at.iter().all(|d| !d.is_empty());
        let markers_empty = snaps.lock().expect("snaps").last().is_some_and(|(t, s)| {
            s.is_empty() && *t > up_at.iter().flatten().fold(0.0, |a: f64, b| a.max(*b))
        });
        if all_rebooted && markers_empty {
            let idle = nodes.iter().all(|c| {
                c.exec("systemctl show -p StatusText --value clusterrebootd")
                    .stdout
                    .starts_with(b"Idle")
            });
            if idle {
                break;
            }
        }
        if Instant::now() > deadline {
            let mut msg = String::new();
            for c in &nodes {
                let j = c.exec("journalctl -u clusterrebootd --no-pager -n 40 -o cat");
                msg += &format!("--- {}\n{}\n", c.name, String::from_utf8_lossy(&j.stdout));
            }
            panic!("fleet K={k}: rollout did not finish in 300 s; reboots {down_at:?}\n{msg}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    poller.join().expect("poller");
    let snaps = snaps.lock().expect("snaps").clone();

    // Each node rebooted exactly once.
    for (i, d) in down_at.iter().enumerate() {
        assert_eq!(d.len(), 1, "node-{i} rebooted {} times", d.len());
    }
    // Never more than K nodes between "reboot" and "recovered"; with K = 2 two at some point.
    let max = snaps.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    assert!(max <= k, "{max} nodes rebooting at once (K = {k})");
    assert_eq!(max, k, "expected {k} nodes down together at some point");
    for i in 0..3 {
        let node = format!("node-{i}");
        let (down, booting) = (down_at[i][0], boot_at[i][0]);
        // The slot (marker) was held while the container was down …
        let held_while_down = snaps
            .iter()
            .filter(|(t, _)| *t >= down && *t <= booting)
            .all(|(_, s)| s.contains(&node));
        assert!(held_while_down, "{node}: marker missing while it was down");
        // … and released only after its daemon, started by systemd after the boot, reported
        // healthy (post-reboot health check in the new boot).
        let released = snaps
            .iter()
            .skip_while(|(t, _)| *t < booting)
            .find(|(_, s)| !s.contains(&node))
            .map(|(t, _)| *t)
            .expect("released");
        let log =
            fs::read_to_string(nodes[i].root.join("var/lib/test-health.log")).expect("health log");
        // "<boot id> <phase> <epoch seconds>" per health script run.
        let lines: Vec<(String, String, f64)> = log
            .lines()
            .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [b, p, t] => Some((b.to_string(), p.to_string(), t.parse().ok()?)),
                _ => None,
            })
            .collect();
        let (post_boot, _, healthy_at) = lines
            .iter()
            .find(|(_, p, t)| p == "post-reboot" && *t >= booting)
            .cloned()
            .unwrap_or_else(|| panic!("{node}: no post-reboot health check after boot:\n{log}"));
        let (lock_boot, _, _) = lines
            .iter()
            .rfind(|(_, p, t)| p == "post-lock" && *t <= down)
            .cloned()
            .unwrap_or_else(|| {
                panic!("{node}: no post-lock health check before the reboot:\n{log}")
            });
        assert_ne!(
            post_boot, lock_boot,
            "{node}: the boot id changed with the reboot"
        );
        assert!(
            snaps.iter().any(|(_, s)| s.contains(&node)),
            "{node}: its in-progress marker was never seen"
        );
        assert!(
            released >= healthy_at,
            "{node}: slot released at {released} before post-reboot health at {healthy_at}"
        );
    }
    if k == 1 {
        // One at a time: the down periods never overlap.
        let mut spans: Vec<(f64, f64)> = (0..3).map(|i| (down_at[i][0], boot_at[i][0])).collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1, "overlapping reboots: {spans:?}");
        }
    }
    eprintln!("fleet K={k}: rollout of 3 nodes with real reboots took {took:.1} s");
    let _ = std::io::stderr().flush();
    for c in &mut nodes {
        c.stop();
    }
}

/// Three containers, one node each, etcd on the host: the rollout reboots one node at a time
/// (`systemctl reboot` for real), each slot held until the node's daemon reports healthy.
#[test]
fn fleet_rollout_one_at_a_time() {
    skip_unless_ready!("fleet_rollout_one_at_a_time", true);
    if !Path::new("/usr/bin/etcd").exists() {
        println!("\n!!!!!!!! SKIPPED fleet_rollout_one_at_a_time: no /usr/bin/etcd !!!!!!!!\n");
        return;
    }
    fleet(1);
}

/// The same with `max_concurrent_reboots: 2`: two nodes down together, never three.
#[test]
fn fleet_rollout_two_at_a_time() {
    skip_unless_ready!("fleet_rollout_two_at_a_time", true);
    if !Path::new("/usr/bin/etcd").exists() {
        println!("\n!!!!!!!! SKIPPED fleet_rollout_two_at_a_time: no /usr/bin/etcd !!!!!!!!\n");
        return;
    }
    fleet(2);
}
