//! A daemon "node" for end-to-end tests: a temp dir with config, boot id file, reboot-required
//! marker, a health script and a fake reboot command that only records the request. The
//! "reboot" is simulated by the test: SIGTERM (as systemd does at shutdown), new boot id,
//! marker removed (the update got applied), start again.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One simulated node.
pub struct Node {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// Its name.
    pub name: String,
    /// Command prefix for every `clusterrebootd` invocation, e.g. `ip netns exec <ns>` to run
    /// the node inside a network namespace; empty for a plain process.
    pub wrap: Vec<String>,
}

impl Node {
    /// A local-backend node called node-1.
    pub fn new(extra: &str) -> Node {
        Node::named("node-1", &format!("lock_backend: local\n{extra}"))
    }

    /// A node named `name` whose config ends with `extra` YAML (backend etc.).
    pub fn named(name: &str, extra: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("boot_id"), "boot-a\n").expect("boot id");
        std::fs::write(d.join("reboot-required"), "").expect("marker");
        script(
            &d.join("health.sh"),
            &format!(
                "#!/bin/sh\necho \"$RC_PHASE $RC_NODE_NAME $RC_LOCK_HELD\" >> {log}\nif [ \"$RC_PHASE\" = post-reboot ] && [ -e {fail} ]; then echo 'still syncing'; exit 1; fi\nif [ -e {block} ]; then echo 'quorum would break'; exit 3; fi\nexit 0\n",
                log = d.join("health.log").display(),
                fail = d.join("fail-post-reboot").display(),
                block = d.join("block").display(),
            ),
        );
        script(
            &d.join("reboot.sh"),
            &format!(
                "#!/bin/sh\necho \"reboot $* node=$RC_NODE_NAME\" >> {}\n",
                d.join("reboots.log").display()
            ),
        );
        let config = format!(
            "node_name: {name}
reboot_required_detectors: [{{type: file, path: {marker}}}]
health_script: {health}
state_dir: {state}
run_dir: {run}
boot_id_path: {boot}
kill_switch_file: {kill}
reboot_command: [{reboot}, '-r', '$RC_NODE_NAME']
check_interval_sec: 1
backoff_min_sec: 1
backoff_max_sec: 2
health_timeout_sec: 10
lock_ttl_sec: 30
log: {{level: debug, format: json}}
{extra}",
            marker = d.join("reboot-required").display(),
            health = d.join("health.sh").display(),
            state = d.join("state").display(),
            run = d.join("run").display(),
            boot = d.join("boot_id").display(),
            kill = d.join("disable").display(),
            reboot = d.join("reboot.sh").display(),
        );
        std::fs::write(d.join("config.yaml"), config).expect("config");
        Node {
            dir,
            name: name.to_string(),
            wrap: Vec::new(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `clusterrebootd <args> --config <its config>` (behind [`Node::wrap`], if any).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_clusterrebootd");
        let mut c = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        c.args(args)
            .arg("--config")
            .arg(self.path("config.yaml"))
            .stdin(Stdio::null());
        c
    }

    pub fn start(&self) -> Child {
        self.cmd(&["run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("daemon.log")).expect("log"))
            .spawn()
            .expect("spawn daemon")
    }

    pub fn once(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd(args).output().expect("run");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap_or_default()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("run/state.json")).unwrap_or(serde_json::Value::Null)
    }

    /// Waits for `cond`, failing with the daemon log and journal on timeout.
    pub fn wait_for(&self, what: &str, secs: u64, cond: impl Fn(&Node) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}\n--- state.json\n{}\n--- journal\n{}\n--- daemon.log (tail)\n{}",
            self.read("run/state.json"),
            self.read("state/journal.jsonl"),
            tail(&self.read("daemon.log"), 30)
        );
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

pub fn sigterm(child: &mut Child) -> i32 {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "daemon did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn journal_states(n: &Node) -> Vec<(String, String, String)> {
    n.read("state/journal.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "record")
        .map(|v| {
            (
                v["from"].as_str().unwrap_or_default().to_string(),
                v["to"].as_str().unwrap_or_default().to_string(),
                v["event"]["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Whether the effective uid is 0 (`/proc/self/status`: real, effective, saved, fs uid); tests
/// that need root (tmpfs mounts, network namespaces) skip loudly otherwise.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
