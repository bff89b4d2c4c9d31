//! `cluster status` in an operator's words (issue #19): a slot holder is shown as `rebooting`,
//! then `recovering` once it is, and instants are to the second — against a real etcd and a
//! real daemon that "reboots" (a new boot id) into a failing post-reboot health check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::fleet::{fleet_node, wait};
use crate::node::*;

/// The `held:` line of `cluster status`.
fn held_line(n: &Node) -> String {
    let (_, out, _) = n.once(&["cluster", "status"]);
    out.lines()
        .find(|l| l.trim_start().starts_with("held:"))
        .unwrap_or("")
        .to_string()
}

/// Whether `text` has an RFC 3339 instant with a fraction of a second (`…:05.123Z`).
fn has_fractional_instant(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(3)).any(|i| {
        b[i].is_ascii_digit()
            && b[i + 1].is_ascii_digit()
            && b[i + 2] == b'.'
            && b[i + 3].is_ascii_digit()
            && text[..i].ends_with(':')
    })
}

#[test]
fn a_holder_shows_rebooting_then_recovering_with_second_precision() {
    assert!(has_fractional_instant("x 2026-12-07T07:04:34.680Z y"));
    assert!(!has_fractional_instant("x 2026-12-07T07:04:34Z (3.5 s) y"));

    let e = etcd::Etcd::start(1);
    let n = fleet_node("node-r", &e);
    let mut d = n.start();
    wait("the reboot command", 30, || {
        !n.read("reboots.log").is_empty()
    });
    let line = held_line(&n);
    assert!(
        line.contains("node-r") && line.ends_with("[rebooting]"),
        "{line}"
    );
    let (_, out, _) = n.once(&["cluster", "status"]);
    assert!(
        !has_fractional_instant(&out),
        "instants to the second:\n{out}"
    );

    // The "reboot": a new boot id, the post-reboot health check fails, so it stays Recovering.
    sigterm(&mut d);
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    std::fs::write(n.path("fail-post-reboot"), "").expect("fail");
    let mut d = n.start();
    wait("Recovering", 30, || n.state()["state"] == "Recovering");
    wait("the holder shown as recovering", 15, || {
        held_line(&n).ends_with("[recovering]")
    });
    let (_, out, _) = n.once(&["cluster", "status"]);
    assert!(
        !has_fractional_instant(&out),
        "instants to the second:\n{out}"
    );
    sigterm(&mut d);
}
