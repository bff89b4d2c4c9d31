//! Starts real etcd members (Debian `etcd-server`, `/usr/bin/etcd`) on free loopback ports with
//! temporary data directories, for integration tests. Stopped (SIGKILL) when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; good enough for tests run one process at a time).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One etcd member.
pub struct Member {
    /// Member name.
    pub name: String,
    /// Client URL.
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    cluster: String,
    token: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A single-member or multi-member etcd cluster.
pub struct Etcd {
    _dir: tempfile::TempDir,
    /// The members.
    pub members: Vec<Member>,
}

impl Member {
    fn spawn(&mut self, state: &str) {
        let log = std::fs::File::create(&self.log).expect("etcd log");
        let child = Command::new("etcd")
            .args([
                "--name",
                &self.name,
                "--data-dir",
                &self.data_dir.display().to_string(),
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-token",
                &self.token,
                "--initial-cluster-state",
                state,
                "--logger=zap",
                "--log-level=error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (scripts/install-deps installs etcd-server)");
        self.child = Some(child);
    }

    /// Kills the member (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts a killed member with its data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn("existing");
    }

    /// The member's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("t{}", free_port());
        let specs: Vec<(String, String, String)> = (0..n)
            .map(|i| {
                (
                    format!("m{i}"),
                    format!("http://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let cluster = specs
            .iter()
            .map(|(name, _, peer)| format!("{name}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = specs
            .into_iter()
            .map(|(name, client_url, peer_url)| Member {
                data_dir: dir.path().join(&name),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_url,
                peer_url,
                cluster: cluster.clone(),
                token: token.clone(),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.spawn("new");
        }
        let e = Etcd { _dir: dir, members };
        e.wait_healthy(Duration::from_secs(20));
        e
    }

    /// Client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Waits until `/health` of some member says healthy.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.members.iter().any(|m| health(&m.client_url)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = self.members.iter().map(|m| m.log()).collect();
        panic!("etcd did not become healthy:\n{}", logs.join("\n---\n"));
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// `GET /health` over a raw TCP connection (no HTTP client dependency).
fn health(url: &str) -> bool {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("\"health\":\"true\"")
}
