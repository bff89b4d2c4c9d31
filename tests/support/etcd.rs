//! Starts real etcd members (Debian `etcd-server`, `/usr/bin/etcd`) on free loopback ports with
//! temporary data directories, for integration tests. Stopped (SIGKILL) when dropped.
//!
//! [`Etcd::start`] starts plain-HTTP members; [`Etcd::start_with`] can serve clients over TLS
//! (optionally requiring client certificates) and pass extra flags. [`Etcd::etcdctl`] runs
//! `etcdctl` against the cluster with the right URL scheme and TLS files.

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

/// Client-side TLS of a member (peers still talk plain HTTP on loopback).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Server certificate (SAN IP:127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA: what `etcdctl` verifies the server with, and, with `client_cert_auth`, the CA
    /// etcd trusts for client certificates.
    pub ca: PathBuf,
    /// `--client-cert-auth --trusted-ca-file=<ca>`: clients must present a certificate signed
    /// by `ca`.
    pub client_cert_auth: bool,
    /// Client certificate and key `etcdctl` (and the health check) use.
    pub etcdctl_client: Option<(PathBuf, PathBuf)>,
}

/// How to start the members.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve clients over TLS (`https://127.0.0.1:<port>`).
    pub tls: Option<ServerTls>,
    /// Further `etcd` flags, e.g. `--auth-token-ttl=2`.
    pub extra_args: Vec<String>,
    /// Further local addresses every member also serves clients on (same port as its loopback
    /// URL), e.g. the host end of a veth pair so a daemon in a network namespace can reach it.
    pub extra_client_hosts: Vec<String>,
}

/// One etcd member.
pub struct Member {
    /// Member name.
    pub name: String,
    /// Client URL.
    pub client_url: String,
    /// Client URLs it listens on: `client_url` plus one per [`Options::extra_client_hosts`].
    listen_client_urls: String,
    peer_url: String,
    data_dir: PathBuf,
    cluster: String,
    token: String,
    child: Option<Child>,
    log: PathBuf,
    opts: Options,
}

/// A single-member or multi-member etcd cluster.
pub struct Etcd {
    _dir: tempfile::TempDir,
    /// The members.
    pub members: Vec<Member>,
    opts: Options,
}

impl Member {
    fn spawn(&mut self, state: &str) {
        let log = std::fs::File::create(&self.log).expect("etcd log");
        let mut tls_args: Vec<String> = Vec::new();
        if let Some(t) = &self.opts.tls {
            tls_args.extend([
                format!("--cert-file={}", t.cert.display()),
                format!("--key-file={}", t.key.display()),
            ]);
            // etcd 3.4 requires a client certificate whenever --trusted-ca-file is given, so
            // server-auth-only TLS must leave it out.
            if t.client_cert_auth {
                tls_args.extend([
                    format!("--trusted-ca-file={}", t.ca.display()),
                    "--client-cert-auth".to_string(),
                ]);
            }
        }
        let child = Command::new("etcd")
            .args([
                "--name",
                &self.name,
                "--data-dir",
                &self.data_dir.display().to_string(),
                "--listen-client-urls",
                &self.listen_client_urls,
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
            .args(&tls_args)
            .args(&self.opts.extra_args)
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

    /// Kills the member, deletes its data and starts it as a new, empty one with the same
    /// configuration (a disaster recovery from nothing): same cluster id, revision back to 1.
    pub fn wipe_and_restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.spawn("new");
    }

    /// The member's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Etcd {
    /// Starts `n` plain-HTTP members and waits until the cluster answers.
    pub fn start(n: usize) -> Etcd {
        Etcd::start_with(n, Options::default())
    }

    /// Starts `n` members with `opts` and waits until the cluster answers.
    pub fn start_with(n: usize, opts: Options) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("t{}", free_port());
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let specs: Vec<(String, String, String)> = (0..n)
            .map(|i| {
                (
                    format!("m{i}"),
                    format!("{scheme}://127.0.0.1:{}", free_port()),
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
                listen_client_urls: listen_urls(&client_url, &opts.extra_client_hosts),
                data_dir: dir.path().join(&name),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_url,
                peer_url,
                cluster: cluster.clone(),
                token: token.clone(),
                child: None,
                opts: opts.clone(),
            })
            .collect();
        for m in &mut members {
            m.spawn("new");
        }
        let e = Etcd {
            _dir: dir,
            members,
            opts,
        };
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
            if self.members.iter().any(|m| self.member_healthy(m)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = self.members.iter().map(|m| m.log()).collect();
        panic!("etcd did not become healthy:\n{}", logs.join("\n---\n"));
    }

    fn member_healthy(&self, m: &Member) -> bool {
        if self.opts.tls.is_none() {
            return health(&m.client_url);
        }
        // Over TLS: let etcdctl do the handshake (it also accepts "permission denied" as healthy
        // once auth is enabled).
        Command::new("etcdctl")
            .args(self.tls_args())
            .args([
                "--endpoints",
                &m.client_url,
                "--dial-timeout=1s",
                "--command-timeout=1s",
                "endpoint",
                "health",
            ])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn tls_args(&self) -> Vec<String> {
        let Some(t) = &self.opts.tls else {
            return Vec::new();
        };
        let mut args = vec![format!("--cacert={}", t.ca.display())];
        if let Some((cert, key)) = &t.etcdctl_client {
            args.push(format!("--cert={}", cert.display()));
            args.push(format!("--key={}", key.display()));
        }
        args
    }

    /// Runs `etcdctl <args>` against all members (TLS files as configured); returns whether it
    /// succeeded and its stdout + stderr. `user` is `name:password` (or `None`).
    pub fn etcdctl(&self, user: Option<&str>, args: &[&str]) -> (bool, String) {
        let mut c = Command::new("etcdctl");
        c.args(self.tls_args())
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null());
        if let Some(u) = user {
            c.arg(format!("--user={u}"));
        }
        let o = c.args(args).output().expect("etcdctl must be installed");
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

impl Etcd {
    /// Index of the current leader among `members`, asking each running member on its own (a
    /// killed member does not hide the others' answers); `None` while there is none.
    pub fn leader(&self) -> Option<usize> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .find_map(|m| {
                let o = Command::new("etcdctl")
                    .args(self.tls_args())
                    .arg(format!("--endpoints={}", m.client_url))
                    .args(["--dial-timeout=1s", "--command-timeout=2s"])
                    .args(["endpoint", "status", "-w", "json"])
                    .env("ETCDCTL_API", "3")
                    .stdin(Stdio::null())
                    .output()
                    .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
                let s = v.as_array()?.first()?;
                let leader = s["Status"]["leader"].as_u64()?;
                let me = s["Status"]["header"]["member_id"].as_u64()?;
                if leader == me {
                    Some(m.client_url.clone())
                } else {
                    None
                }
            })
            .and_then(|url| self.members.iter().position(|m| m.client_url == url))
    }

    /// Whether every member is running and says it is healthy (has a leader).
    pub fn all_healthy(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.child.is_some() && self.member_healthy(m))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// `client_url` followed by the same scheme and port on each of `hosts`, comma-separated.
fn listen_urls(client_url: &str, hosts: &[String]) -> String {
    let (scheme, rest) = client_url.split_once("://").expect("scheme");
    let port = rest.rsplit(':').next().expect("port");
    std::iter::once(client_url.to_string())
        .chain(hosts.iter().map(|h| format!("{scheme}://{h}:{port}")))
        .collect::<Vec<_>>()
        .join(",")
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
