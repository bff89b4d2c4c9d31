//! A network namespace joined to the host by a veth pair, to cut one daemon off from etcd
//! (chaos scenario 12). Needs root and iproute2 (`ip`). The namespace (and with it both ends of
//! the veth pair) is removed on drop, also when the test panics; leftovers of an earlier run that
//! was killed are removed before it is created again.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, reserved for network benchmark tests), so they do
//! not clash with a real network of the machine.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// The namespace and its veth pair.
pub struct Netns {
    /// Namespace name (`ip netns exec <name> …`).
    pub name: String,
    /// Host end of the veth pair.
    host_if: String,
    /// Namespace end of the veth pair.
    ns_if: String,
    /// Address of the host end (what a process in the namespace connects to).
    pub host_addr: String,
    /// Address of the namespace end.
    pub ns_addr: String,
}

/// Runs `ip <args>`; returns whether it succeeded and its stderr.
fn ip(args: &[&str]) -> (bool, String) {
    match Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Runs `ip <args>` and panics with its error if it fails.
fn must(args: &[&str]) {
    let (ok, err) = ip(args);
    assert!(ok, "ip {}: {err}", args.join(" "));
}

impl Netns {
    /// Why a namespace cannot be made here (not root, no `ip`), or `None` when it can.
    pub fn unavailable() -> Option<String> {
        if !super::node::is_root() {
            return Some("needs root (network namespaces)".into());
        }
        if !ip(&["-V"]).0 {
            return Some("needs iproute2 (`ip`; scripts/install-deps installs it)".into());
        }
        None
    }

    /// Creates namespace `name` with a veth pair `<name>-h` (host, `198.18.<net>.1/30`) and
    /// `<name>-n` (namespace, `198.18.<net>.2/30`), both up.
    pub fn create(name: &str, net: u8) -> Netns {
        let n = Netns {
            name: name.to_string(),
            host_if: format!("{name}-h"),
            ns_if: format!("{name}-n"),
            host_addr: format!("198.18.{net}.1"),
            ns_addr: format!("198.18.{net}.2"),
        };
        n.remove();
        must(&["netns", "add", &n.name]);
        must(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", &n.ns_if,
        ]);
        must(&["link", "set", &n.ns_if, "netns", &n.name]);
        must(&[
            "addr",
            "add",
            &format!("{}/30", n.host_addr),
            "dev",
            &n.host_if,
        ]);
        must(&["link", "set", &n.host_if, "up"]);
        must(&[
            "-n",
            &n.name,
            "addr",
            "add",
            &format!("{}/30", n.ns_addr),
            "dev",
            &n.ns_if,
        ]);
        must(&["-n", &n.name, "link", "set", &n.ns_if, "up"]);
        must(&["-n", &n.name, "link", "set", "lo", "up"]);
        n
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn wrap(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Cuts the namespace off: its end of the veth pair goes down (the node's "cable is
    /// pulled"; what it sends goes nowhere, connections already open hang until they time out).
    pub fn cut(&self) {
        must(&["-n", &self.name, "link", "set", &self.ns_if, "down"]);
    }

    /// Reconnects the namespace.
    pub fn heal(&self) {
        must(&["-n", &self.name, "link", "set", &self.ns_if, "up"]);
    }

    /// Removes the namespace and the host end of the pair, ignoring what does not exist.
    fn remove(&self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}
