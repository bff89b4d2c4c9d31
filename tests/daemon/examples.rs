//! The ready-made scripts in `examples/health/` and `examples/hooks/` (issue #19), run as real
//! processes the way the daemon runs them (the `RC_*` environment, exit code = verdict):
//! against a real etcd (`etcd-quorum.sh`, `peers-healthy.sh`), a small local fake of the
//! Prometheus HTTP API (`prometheus-alerts.sh`) and a fake `kubectl` first in `PATH` that
//! records its arguments (`kube-drain.sh`). Two tests run them through the daemon itself: the
//! peer check as `health_script` of `status`, and the drain hook around a real reboot cycle.
//! Every script must also pass shellcheck.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::node;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use node::*;

/// An example script of this repository.
fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// Runs `script args` with `env` on top of this process's environment (minus every `RC_*`
/// variable and the scripts' own knobs, so the caller's shell cannot leak into a test) and
/// returns the exit code and stdout + stderr.
fn run(script: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(script);
    for (k, _) in std::env::vars() {
        if [
            "RC_",
            "ETCD_QUORUM_",
            "PROMETHEUS_",
            "PEERS_",
            "KUBE",
            "CLUSTERREBOOTD",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            c.env_remove(k);
        }
    }
    let o = c
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Runs until the exit code is `want` (the cluster may need a moment, e.g. a leader election),
/// failing with the last output after a generous deadline.
fn eventually(script: &Path, env: &[(&str, &str)], want: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out) = run(script, &[], env);
        if code == want {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{} never exited {want}; last exit {code}:\n{out}",
            script.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_script_passes_shellcheck() {
    let scripts = [
        "health/etcd-quorum.sh",
        "health/prometheus-alerts.sh",
        "health/peers-healthy.sh",
        "health/system-running.sh",
        "hooks/kube-drain.sh",
    ];
    for s in scripts {
        let text = std::fs::read_to_string(example(s)).expect(s);
        assert!(text.starts_with("#!/bin/sh\n"), "{s}: POSIX sh");
        assert!(text.contains("\nset -eu\n"), "{s}: set -eu");
        for section in ["Requires:", "Environment", "Exit codes"] {
            assert!(text.contains(section), "{s}: header lacks {section}");
        }
    }
    let o = Command::new("shellcheck")
        .arg("--shell=sh")
        .args(scripts.map(example))
        .output()
        .expect("shellcheck must be installed (scripts/install-deps installs it)");
    assert!(
        o.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn system_running_passes_only_when_systemd_says_running() {
    let check = example("health/system-running.sh");
    let bin = tempfile::tempdir().expect("tempdir");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (state, code, want) in [("running", 0, 0), ("degraded", 1, 1), ("starting", 1, 1)] {
        script(
            &bin.path().join("systemctl"),
            &format!("#!/bin/sh\necho {state}\nexit {code}\n"),
        );
        let (got, out) = run(&check, &[], &[("PATH", path.as_str())]);
        assert_eq!(got, want, "{state}: {out}");
        if want != 0 {
            assert_eq!(out.trim(), format!("system state is {state}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd-quorum.sh

#[test]
fn etcd_quorum_passes_only_while_losing_this_member_keeps_the_quorum() {
    let script = example("health/etcd-quorum.sh");
    let mut e = etcd::Etcd::start(3);
    let endpoints = e.endpoints().join(",");
    let env = [("RC_ETCD_ENDPOINTS", endpoints.as_str())];
    let out = eventually(&script, &env, 0);
    assert!(
        out.starts_with(
            "etcd-quorum: 3 of 3 members healthy; 2 stay up during the reboot, quorum is 2"
        ),
        "{out}"
    );

    // One member down: 2 of 3 healthy, rebooting this (member) node would leave 1.
    e.members[2].kill();
    let out = eventually(&script, &env, 1);
    assert!(
        out.contains("rebooting would break the quorum: 2 of 3 members healthy, 1 would stay up"),
        "{out}"
    );
    // A node that hosts no member may go: the two healthy members stay a quorum.
    let not_member = [
        ("RC_ETCD_ENDPOINTS", endpoints.as_str()),
        ("ETCD_QUORUM_THIS_NODE_IS_MEMBER", "false"),
    ];
    eventually(&script, &not_member, 0);

    // Two members down: the quorum is lost, whatever this node is.
    e.members[1].kill();
    let (code, out) = run(&script, &[], &not_member);
    assert_ne!(code, 0, "{out}");
    let (code, out) = run(&script, &[], &env);
    assert_ne!(code, 0, "{out}");

    // Back to three: passes again.
    e.members[1].restart();
    e.members[2].restart();
    eventually(&script, &env, 0);
}

#[test]
fn etcd_quorum_cannot_check_without_endpoints_or_etcd() {
    let script = example("health/etcd-quorum.sh");
    let (code, out) = run(&script, &[], &[("RC_ETCD_ENDPOINTS", "")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no etcd endpoints"), "{out}");
    let port = etcd::free_port();
    let nobody = format!("http://127.0.0.1:{port}");
    let (code, out) = run(&script, &[], &[("RC_ETCD_ENDPOINTS", nobody.as_str())]);
    assert_ne!(code, 0, "{out}");
    // ETCD_QUORUM_ENDPOINTS wins over the daemon's endpoints.
    let e = etcd::Etcd::start(1);
    let real = e.endpoints().join(",");
    let env = [
        ("RC_ETCD_ENDPOINTS", nobody.as_str()),
        ("ETCD_QUORUM_ENDPOINTS", real.as_str()),
        ("ETCD_QUORUM_THIS_NODE_IS_MEMBER", "false"),
    ];
    let out = eventually(&script, &env, 0);
    assert!(out.contains("1 of 1 members healthy"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// prometheus-alerts.sh

/// A fake Prometheus: answers every request with the current `body` and records the request
/// heads. Bound to port 0; the thread ends with the test process.
struct FakeProm {
    url: String,
    body: Arc<Mutex<(u16, String)>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeProm {
    fn start() -> FakeProm {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let body = Arc::new(Mutex::new((200, alerts(&[]))));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (b, r) = (body.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut head = String::new();
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                r.lock().unwrap().push(head);
                let (status, text) = b.lock().unwrap().clone();
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeProm {
            url,
            body,
            requests,
        }
    }

    fn answer(&self, status: u16, body: String) {
        *self.body.lock().unwrap() = (status, body);
    }
}

/// One alert: `(alertname, state, extra labels)`.
type Alert<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A `/api/v1/alerts` answer.
fn alerts(list: &[Alert]) -> String {
    let alerts: Vec<serde_json::Value> = list
        .iter()
        .map(|(name, state, labels)| {
            let mut l = serde_json::Map::new();
            l.insert("alertname".into(), (*name).into());
            for (k, v) in labels.iter() {
                l.insert((*k).into(), (*v).into());
            }
            serde_json::json!({
                "labels": l,
                "annotations": {"summary": "something"},
                "state": state,
                "activeAt": "2026-12-07T01:00:00Z",
                "value": "1e+00"
            })
        })
        .collect();
    serde_json::json!({"status": "success", "data": {"alerts": alerts}}).to_string()
}

#[test]
fn prometheus_alerts_block_only_alerts_that_count() {
    let script = example("health/prometheus-alerts.sh");
    let p = FakeProm::start();
    let url = p.url.as_str();
    let check = |extra: &[(&str, &str)]| {
        let mut env = vec![("PROMETHEUS_URL", url)];
        env.extend_from_slice(extra);
        run(&script, &[], &env)
    };

    // Nothing active.
    let (code, out) = check(&[]);
    assert_eq!(code, 0, "{out}");
    let req = p
        .requests
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(req.starts_with("GET /api/v1/alerts HTTP/1.1\r\n"), "{req}");

    // kube-prometheus' Watchdog always fires: ignored by default.
    p.answer(
        200,
        alerts(&[("Watchdog", "firing", &[("severity", "none")])]),
    );
    let (code, out) = check(&[]);
    assert_eq!(code, 0, "{out}");
    // ... unless the ignore list is emptied.
    let (code, out) = check(&[("PROMETHEUS_ALERT_IGNORE", "")]);
    assert_eq!(code, 1, "{out}");

    // A firing alert blocks, named on the first line.
    p.answer(
        200,
        alerts(&[
            ("Watchdog", "firing", &[]),
            (
                "KubeNodeNotReady",
                "firing",
                &[("severity", "critical"), ("node", "n2")],
            ),
            ("CPUThrottlingHigh", "pending", &[("severity", "warning")]),
        ]),
    );
    let (code, out) = check(&[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines().next(),
        Some("prometheus-alerts: 1 alert(s) firing: KubeNodeNotReady"),
        "{out}"
    );
    assert!(
        out.contains("KubeNodeNotReady{node=\"n2\",severity=\"critical\"} firing"),
        "{out}"
    );
    // Filtered out by the ignore regex (kured's --alert-filter-regexp): passes.
    let (code, out) = check(&[("PROMETHEUS_ALERT_IGNORE", "^(Watchdog|KubeNode.*)$")]);
    assert_eq!(code, 0, "{out}");
    // Only alerts matching PROMETHEUS_ALERT_ONLY count (kured's --alert-filter-match-only).
    let (code, out) = check(&[("PROMETHEUS_ALERT_ONLY", "^Etcd")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(&[("PROMETHEUS_ALERT_ONLY", "^KubeNode")]);
    assert_eq!(code, 1, "{out}");
    // Label filters: a warning-only policy lets the critical alert through... and blocks on
    // the pending warning once pending counts too.
    let (code, out) = check(&[("PROMETHEUS_ALERT_LABELS", "severity=^warning$")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(&[
        ("PROMETHEUS_ALERT_LABELS", "severity=^warning$"),
        ("PROMETHEUS_ALERT_STATES", "firing pending"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CPUThrottlingHigh"), "{out}");
    let (code, out) = check(&[("PROMETHEUS_ALERT_LABELS", "severity=critical node=^n2$")]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = check(&[("PROMETHEUS_ALERT_LABELS", "severity=critical node=^n3$")]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn prometheus_alerts_fail_closed_without_an_answer() {
    let script = example("health/prometheus-alerts.sh");
    let (code, out) = run(&script, &[], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("set PROMETHEUS_URL"), "{out}");
    let nobody = format!("http://127.0.0.1:{}", etcd::free_port());
    let (code, out) = run(&script, &[], &[("PROMETHEUS_URL", nobody.as_str())]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("prometheus-alerts: cannot read "), "{out}");

    let p = FakeProm::start();
    let env = [("PROMETHEUS_URL", p.url.as_str())];
    p.answer(503, "{\"status\":\"error\"}".into());
    let (code, out) = run(&script, &[], &env);
    assert_eq!(code, 2, "{out}");
    p.answer(
        200,
        "{\"status\":\"error\",\"error\":\"overloaded\"}".into(),
    );
    let (code, out) = run(&script, &[], &env);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("did not answer success"), "{out}");
    p.answer(200, "<html>not prometheus</html>".into());
    let (code, out) = run(&script, &[], &env);
    assert_eq!(code, 2, "{out}");
    p.answer(200, alerts(&[]));
    let (code, out) = run(
        &script,
        &[],
        &[
            ("PROMETHEUS_URL", p.url.as_str()),
            ("PROMETHEUS_ALERT_IGNORE", "(unclosed"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bad regular expression"), "{out}");

    // A bearer token file is sent as the Authorization header.
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\nignored\n").expect("token");
    let (code, out) = run(
        &script,
        &[],
        &[
            ("PROMETHEUS_URL", p.url.as_str()),
            (
                "PROMETHEUS_BEARER_TOKEN_FILE",
                token.to_str().expect("utf-8"),
            ),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let req = p
        .requests
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(
        req.to_ascii_lowercase()
            .contains("authorization: bearer s3cret\r\n"),
        "{req}"
    );
}

// ---------------------------------------------------------------------------------------------
// peers-healthy.sh

fn etcd_node(name: &str, e: &etcd::Etcd, extra: &str) -> Node {
    Node::named(
        name,
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /ex\nhealth_publish_interval_sec: 1\n{extra}",
            e.endpoints().join(", ")
        ),
    )
}

#[test]
fn peers_healthy_blocks_on_an_unhealthy_or_silent_peer() {
    let script = example("health/peers-healthy.sh");
    let e = etcd::Etcd::start(1);
    let a = etcd_node("node-a", &e, "");
    let b = etcd_node("node-b", &e, "");
    let bin = env!("CARGO_BIN_EXE_clusterrebootd");
    let config = a.path("config.yaml");
    let config = config.to_str().expect("utf-8");
    let as_a = |extra: &[(&'static str, &'static str)]| {
        let mut env = vec![
            ("CLUSTERREBOOTD", bin),
            ("CLUSTERREBOOTD_CONFIG", config),
            ("RC_NODE_NAME", "node-a"),
            ("RC_PHASE", "pre-lock"),
        ];
        env.extend_from_slice(extra);
        env
    };
    let (code, out) = run(&script, &[], &as_a(&[]));
    assert_eq!(code, 0, "empty fleet: {out}");

    // node-b's daemon runs with a failing health script: its heartbeat reports unhealthy.
    std::fs::remove_file(b.path("reboot-required")).expect("marker");
    std::fs::write(b.path("block"), "").expect("block");
    let mut daemon = b.start();
    let out = eventually(&script, &as_a(&[]), 1);
    assert!(
        out.starts_with("peers-healthy: 1 other node(s) not healthy: node-b (heartbeat"),
        "{out}"
    );
    // Not counted: itself, an ignored node, and the phases that report this node's own health.
    let (code, out) = run(&script, &[], &as_a(&[("RC_NODE_NAME", "node-b")]));
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&script, &[], &as_a(&[("PEERS_IGNORE", "node-x,node-b")]));
    assert_eq!(code, 0, "{out}");
    for phase in ["heartbeat", "post-reboot"] {
        let (code, out) = run(&script, &[], &as_a(&[("RC_PHASE", phase)]));
        assert_eq!(code, 0, "{phase}: {out}");
        assert!(out.contains("not checked in phase"), "{out}");
    }
    let (code, out) = run(&script, &[], &as_a(&[("RC_PHASE", "post-lock")]));
    assert_eq!(code, 1, "{out}");

    // Healthy again: passes.
    std::fs::remove_file(b.path("block")).expect("unblock");
    let out = eventually(&script, &as_a(&[]), 0);
    assert!(out.contains("1 other node(s), all healthy"), "{out}");
    sigterm(&mut daemon);

    // A node whose last report is old (its machine died): stale blocks unless allowed.
    let (ok, out) = e.etcdctl(
        None,
        &[
            "put",
            "/ex/cluster_health/node-c",
            r#"{"node":"node-c","healthy":true,"reported_at":"2026-01-01T00:00:00Z"}"#,
        ],
    );
    assert!(ok, "{out}");
    let (code, out) = run(&script, &[], &as_a(&[]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("node-c (stale: last report 2026-01-01T00:00:00Z)"),
        "{out}"
    );
    let (code, out) = run(&script, &[], &as_a(&[("PEERS_STALE_OK", "true")]));
    assert_eq!(code, 0, "{out}");

    // A fleet record nobody can read counts too (fail closed).
    let (ok, out) = e.etcdctl(None, &["put", "/ex/node_state/node-d", "{not json"]);
    assert!(ok, "{out}");
    let (code, out) = run(&script, &[], &as_a(&[("PEERS_STALE_OK", "true")]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("node-d (unreadable record: "), "{out}");
    let (code, out) = run(
        &script,
        &[],
        &as_a(&[("PEERS_STALE_OK", "true"), ("PEERS_IGNORE", "node-d")]),
    );
    assert_eq!(code, 0, "{out}");

    // Run by the daemon as its health script: the node's own `status` pass is blocked by the
    // stale peer, which the daemon alone (no cluster_policies) would not count.
    let config = a.read("config.yaml").replace(
        &format!("health_script: {}", a.path("health.sh").display()),
        &format!("health_script: {}", script.display()),
    );
    std::fs::write(a.path("config.yaml"), config).expect("config");
    let o = a
        .cmd(&["status"])
        .env("CLUSTERREBOOTD", bin)
        .env("CLUSTERREBOOTD_CONFIG", a.path("config.yaml"))
        .output()
        .expect("status");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("outcome: health_blocked"), "{stdout}");
    // (node-b, stopped above, turns stale too after 4 s: the count is not asserted.)
    assert!(
        stdout.contains("other node(s) not healthy: ")
            && stdout.contains("node-c (stale: last report 2026-01-01T00:00:00Z)"),
        "{stdout}"
    );
}

#[test]
fn peers_healthy_cannot_check_without_etcd() {
    let script = example("health/peers-healthy.sh");
    let n = Node::new("");
    let config = n.path("config.yaml");
    let env = [
        ("CLUSTERREBOOTD", env!("CARGO_BIN_EXE_clusterrebootd")),
        ("CLUSTERREBOOTD_CONFIG", config.to_str().expect("utf-8")),
    ];
    let (code, out) = run(&script, &[], &env);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("needs lock_backend: etcd"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// kube-drain.sh

/// A directory with a fake `kubectl` that appends its arguments to `kubectl.log`, answers
/// `get node … jsonpath={.spec.unschedulable}` with the file `unschedulable`, keeps the
/// annotation in the file `annotation`, and exits with the content of `drain-exit` on drain.
/// While the file `fail` holds a number > 0, every call fails (the API server not up yet) and
/// counts it down.
struct FakeKube {
    dir: tempfile::TempDir,
}

impl FakeKube {
    fn new() -> FakeKube {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        script(
            &dir.path().join("kubectl"),
            &format!(
                r#"#!/bin/sh
echo "$*" >> {d}/kubectl.log
echo "${{RC_PHASE:-}} ${{RC_STATE:-}}" >> {d}/env.log
fails=$(cat {d}/fail 2>/dev/null || echo 0)
if [ "$fails" -gt 0 ]; then
  echo $((fails - 1)) > {d}/fail
  echo "The connection to the server was refused" >&2
  exit 1
fi
case "$1" in
  get)
    case "$*" in
      *unschedulable*) cat {d}/unschedulable 2>/dev/null || true ;;
      *cordoned-before-drain*) cat {d}/annotation 2>/dev/null || true ;;
    esac ;;
  annotate)
    case "$*" in
      *cordoned-before-drain=true*) printf true > {d}/annotation ;;
      *cordoned-before-drain-*) rm -f {d}/annotation ;;
    esac ;;
  drain) echo "evicting pod default/web-1"; exit "$(cat {d}/drain-exit 2>/dev/null || echo 0)" ;;
esac
"#
            ),
        );
        FakeKube { dir }
    }

    /// `PATH` with the fake first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("kubectl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).expect("write");
    }
}

#[test]
fn kube_drain_drains_the_node_and_uncordons_it_after() {
    let script = example("hooks/kube-drain.sh");
    let k = FakeKube::new();
    let path = k.path();
    let env = [("PATH", path.as_str()), ("RC_NODE_NAME", "node-1")];
    let (code, out) = run(&script, &["drain"], &env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        k.log(),
        [
            "get node node-1 -o jsonpath={.spec.unschedulable}",
            "drain node-1 --ignore-daemonsets --delete-emptydir-data --timeout=45s",
        ]
    );
    let (code, out) = run(&script, &["uncordon"], &env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        k.log()[2..],
        [
            "get node node-1 -o jsonpath={.metadata.annotations.clusterrebootd\\.io/cordoned-before-drain}",
            "uncordon node-1",
        ]
    );

    // KUBE_NODE_NAME, the timeout and extra flags.
    let k = FakeKube::new();
    let path = k.path();
    let (code, out) = run(
        &script,
        &["drain"],
        &[
            ("PATH", path.as_str()),
            ("RC_NODE_NAME", "node-1"),
            ("KUBE_NODE_NAME", "worker-7.example"),
            ("KUBE_DRAIN_TIMEOUT", "600s"),
            ("KUBE_DRAIN_EXTRA_ARGS", "--force --grace-period=60"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        k.log()[1],
        "drain worker-7.example --ignore-daemonsets --delete-emptydir-data --timeout=600s --force --grace-period=60"
    );
}

#[test]
fn kube_drain_failure_uncordons_and_a_node_cordoned_before_stays_cordoned() {
    let script = example("hooks/kube-drain.sh");
    let k = FakeKube::new();
    let path = k.path();
    let env = [("PATH", path.as_str()), ("RC_NODE_NAME", "node-1")];
    k.set("drain-exit", "1");
    let (code, out) = run(&script, &["drain"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("draining node-1 failed"), "{out}");
    assert_eq!(k.log().last().map(String::as_str), Some("uncordon node-1"));
    // KUBE_UNCORDON_ON_FAILURE=false leaves it cordoned.
    let k = FakeKube::new();
    let path = k.path();
    k.set("drain-exit", "1");
    let (code, out) = run(
        &script,
        &["drain"],
        &[
            ("PATH", path.as_str()),
            ("RC_NODE_NAME", "node-1"),
            ("KUBE_UNCORDON_ON_FAILURE", "false"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        !k.log().iter().any(|l| l.starts_with("uncordon")),
        "{:?}",
        k.log()
    );

    // Cordoned by an operator before: marked, drained, and left cordoned after the reboot.
    let k = FakeKube::new();
    let path = k.path();
    let env = [("PATH", path.as_str()), ("RC_NODE_NAME", "node-1")];
    k.set("unschedulable", "true");
    let (code, out) = run(&script, &["drain"], &env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        k.log()[1],
        "annotate --overwrite node node-1 clusterrebootd.io/cordoned-before-drain=true"
    );
    let (code, out) = run(&script, &["uncordon"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("left cordoned"), "{out}");
    assert_eq!(
        k.log().last().map(String::as_str),
        Some("annotate node node-1 clusterrebootd.io/cordoned-before-drain-")
    );
    assert!(
        !k.log().iter().any(|l| l.starts_with("uncordon")),
        "{:?}",
        k.log()
    );

    // Right after the boot the API server may not answer yet: uncordon retries.
    let k = FakeKube::new();
    let path = k.path();
    let retrying = [
        ("PATH", path.as_str()),
        ("RC_NODE_NAME", "node-1"),
        ("KUBE_UNCORDON_ATTEMPTS", "3"),
        ("KUBE_RETRY_INTERVAL", "0"),
    ];
    k.set("fail", "2");
    let (code, out) = run(&script, &["uncordon"], &retrying);
    assert_eq!(code, 0, "{out}");
    assert_eq!(k.log().len(), 4, "{:?}", k.log());
    assert_eq!(k.log().last().map(String::as_str), Some("uncordon node-1"));
    k.set("fail", "5");
    let (code, out) = run(&script, &["uncordon"], &retrying);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("gave up after 3 attempts"), "{out}");
    assert!(
        !k.log()[4..].iter().any(|l| l.starts_with("uncordon")),
        "{:?}",
        k.log()
    );

    // Usage errors.
    let (code, out) = run(&script, &["drain"], &[("PATH", path.as_str())]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(&script, &["cordon"], &env);
    assert_eq!(code, 2, "{out}");
}

/// The hook configured as the daemon runs it: around a real (simulated) reboot cycle on the
/// local backend, drain before the reboot command, uncordon after the boot.
#[test]
fn kube_drain_runs_as_the_daemons_hooks_around_a_reboot() {
    let script = example("hooks/kube-drain.sh");
    let k = FakeKube::new();
    let n = Node::new("");
    let config = n.read("config.yaml")
        + &format!(
            "hooks: {{pre_reboot: [[{s}, drain]], post_reboot: [[{s}, uncordon]], timeout_sec: 30}}\n",
            s = script.display()
        );
    std::fs::write(n.path("config.yaml"), config).expect("config");
    let start = || {
        n.cmd(&["run"])
            .env("PATH", k.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(n.path("daemon.log")).expect("log"))
            .spawn()
            .expect("spawn daemon")
    };
    let mut daemon = start();
    n.wait_for("the fake reboot command", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    assert_eq!(
        k.log(),
        [
            "get node node-1 -o jsonpath={.spec.unschedulable}",
            "drain node-1 --ignore-daemonsets --delete-emptydir-data --timeout=45s",
        ]
    );
    n.wait_for("state Rebooting", 10, |n| n.state()["state"] == "Rebooting");
    sigterm(&mut daemon);
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let mut daemon = start();
    n.wait_for("recovery to finish", 30, |n| {
        !n.path("state/slot.json").exists()
    });
    assert_eq!(k.log().last().map(String::as_str), Some("uncordon node-1"));
    assert_eq!(k.log().len(), 4, "{:?}", k.log());
    // What a hook can tell the two lists apart by (docs/CONFIG.md, hooks).
    let env = std::fs::read_to_string(k.dir.path().join("env.log")).expect("env.log");
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [
            "post-lock Rebooting",
            "post-lock Rebooting",
            "post-lock Recovering",
            "post-lock Recovering"
        ]
    );
    sigterm(&mut daemon);

    // A drain that fails aborts the reboot: no reboot command, the node uncordoned again.
    let k = FakeKube::new();
    k.set("drain-exit", "1");
    std::fs::write(n.path("reboot-required"), "").expect("marker");
    std::fs::write(n.path("reboots.log"), "").expect("reset");
    let start = || {
        n.cmd(&["run"])
            .env("PATH", k.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(n.path("daemon.log")).expect("log"))
            .spawn()
            .expect("spawn daemon")
    };
    let mut daemon = start();
    n.wait_for("the aborted reboot", 30, |n| {
        n.read("state/journal.jsonl")
            .contains("pre-reboot hook failed")
    });
    sigterm(&mut daemon);
    assert!(
        n.read("reboots.log").is_empty(),
        "rebooted despite the failed drain"
    );
    assert!(
        k.log().iter().any(|l| l == "uncordon node-1"),
        "{:?}",
        k.log()
    );
    // The hook's first output line is the evidence in the journal (and `status --explain`).
    let journal = n.read("state/journal.jsonl");
    assert!(
        journal.contains("exit status 1: evicting pod default/web-1"),
        "{}",
        tail(&journal, 5)
    );
}
