//! etcd security against a real etcd 3.4: server-auth TLS, mutual TLS, username/password with an
//! RBAC role scoped to the namespace prefix, and a real daemon doing a full reboot cycle under
//! auth without ever writing its password anywhere. Every etcd call is bounded by a timeout, so
//! a failure is an error, never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use crate::etcd;
use crate::node;
use crate::tls;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clusterrebootd::config::{AuthSettings, EtcdSettings, TlsSettings};
use clusterrebootd::coord::etcd::{EtcdBackend, EtcdConfig};
use clusterrebootd::coord::etcd_kv::{EtcdKv, EtcdOptions};
use clusterrebootd::coord::keys::Keys;
use clusterrebootd::coord::kv::*;
use clusterrebootd::coord::{Coordinator, HealthRecord, Notice};
use clusterrebootd::fsm::{CooldownStatus, PolicyVerdict};
use tokio::sync::mpsc;

const NS: &str = "/ns";
const LOCK: &str = "/cluster/clusterrebootd/lock";
const ROOT: &str = "root:root-pw-7c1e";
/// Distinctive, so a leak anywhere is found by a plain substring search.
const PASSWORD: &str = "Rb-pw-9f3a71c2e";

/// Every etcd call in these tests: an answer within 15 s or the test fails.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 15 s (hang)"))
}

fn opts() -> EtcdOptions {
    EtcdOptions {
        dial_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
    }
}

fn settings(e: &etcd::Etcd, tls: Option<TlsSettings>, auth: Option<AuthSettings>) -> EtcdSettings {
    EtcdSettings {
        endpoints: e.endpoints(),
        namespace: NS.into(),
        tls,
        auth,
    }
}

async fn connect(s: &EtcdSettings) -> Result<EtcdKv, KvError> {
    bounded("connect", EtcdKv::connect(s, &opts())).await
}

fn config(node: &str, dir: &Path) -> EtcdConfig {
    EtcdConfig::new(
        node,
        &format!("{node}-boot"),
        Keys::new(NS, LOCK),
        1,
        Duration::from_secs(5),
        clusterrebootd::coord::etcd::LeaseStore::in_dir(&dir.join(node)),
    )
}

/// A backend on `kv` joins the (empty) queue and gets the slot.
async fn joins_the_queue(kv: &EtcdKv, dir: &Path) -> Arc<EtcdBackend<EtcdKv>> {
    let b = Arc::new(EtcdBackend::new(kv.clone(), config("n1", dir)));
    let (tx, _rx) = mpsc::channel(16);
    bounded("join_queue", b.join_queue(tx))
        .await
        .expect("slot acquired");
    let q = bounded("queue", b.queue()).await.expect("queue");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].key.starts_with("/ns/cluster/clusterrebootd/lock/"));
    b
}

async fn put_get(kv: &EtcdKv) {
    bounded("put", kv.put("/ns/probe", b"v1".to_vec(), 0))
        .await
        .expect("put");
    let (got, _) = bounded("get", kv.get("/ns/probe")).await.expect("get");
    assert_eq!(got.expect("key").value, b"v1");
}

fn tls_etcd(certs: &tls::Certs, client_cert_auth: bool) -> etcd::Etcd {
    etcd::Etcd::start_with(
        1,
        etcd::Options {
            tls: Some(etcd::ServerTls {
                cert: certs.server_cert.clone(),
                key: certs.server_key.clone(),
                ca: certs.ca.clone(),
                client_cert_auth,
                etcdctl_client: Some((certs.client_cert.clone(), certs.client_key.clone())),
            }),
            extra_args: vec![],
            ..Default::default()
        },
    )
}

// ------------------------------------------------------------------ TLS

#[tokio::test]
async fn server_tls_with_the_ca() {
    let certs = tls::Certs::generate();
    let e = tls_etcd(&certs, false);
    assert!(e.endpoints()[0].starts_with("https://127.0.0.1:"));

    let kv = connect(&settings(
        &e,
        Some(TlsSettings {
            ca_file: Some(certs.ca.clone()),
            client: None,
            insecure_skip_verify: false,
        }),
        None,
    ))
    .await
    .expect("connect");
    put_get(&kv).await;
    let dir = tempfile::tempdir().expect("tempdir");
    joins_the_queue(&kv, dir.path()).await;

    // The server certificate is really verified: another CA does not vouch for it.
    let other = tls::Certs::generate();
    let kv = connect(&settings(
        &e,
        Some(TlsSettings {
            ca_file: Some(other.ca.clone()),
            client: None,
            insecure_skip_verify: false,
        }),
        None,
    ))
    .await
    .expect("connect is lazy");
    let err = bounded("get with a foreign CA", kv.get("/ns/probe"))
        .await
        .expect_err("a server certificate from an unknown CA was accepted");
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = tls::Certs::generate();
    let e = tls_etcd(&certs, true);

    let with_cert = connect(&settings(
        &e,
        Some(TlsSettings {
            ca_file: Some(certs.ca.clone()),
            client: Some((certs.client_cert.clone(), certs.client_key.clone())),
            insecure_skip_verify: false,
        }),
        None,
    ))
    .await
    .expect("connect");
    put_get(&with_cert).await;
    let dir = tempfile::tempdir().expect("tempdir");
    joins_the_queue(&with_cert, dir.path()).await;

    let without = connect(&settings(
        &e,
        Some(TlsSettings {
            ca_file: Some(certs.ca.clone()),
            client: None,
            insecure_skip_verify: false,
        }),
        None,
    ))
    .await
    .expect("connect is lazy");
    let err = bounded(
        "put without a client certificate",
        without.put("/ns/probe", b"v2".to_vec(), 0),
    )
    .await
    .expect_err("etcd accepted a client without a certificate");
    // TLS 1.3: the server rejects the missing certificate after the handshake; tonic reports
    // it as a gRPC status "Unknown: transport error".
    assert!(
        matches!(err, KvError::Unavailable(_) | KvError::Other(_)),
        "{err:?}"
    );
    // Nothing was written.
    let (got, _) = bounded("get", with_cert.get("/ns/probe"))
        .await
        .expect("get");
    assert_eq!(got.expect("key").value, b"v1");
}

// ------------------------------------------------------------------ auth + RBAC

/// Root user (with the root role `auth enable` requires), a role with read-write on `/ns/` only, user `reboot` with that role, auth on.
/// Returns the 0600 password file.
fn setup_rbac(e: &etcd::Etcd, dir: &Path) -> PathBuf {
    let steps: [&[&str]; 8] = [
        &["user", "add", ROOT],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "clusterrebootd"],
        &[
            "role",
            "grant-permission",
            "--prefix=true",
            "clusterrebootd",
            "readwrite",
            "/ns/",
        ],
        &["user", "add", &format!("reboot:{PASSWORD}")],
        &["user", "grant-role", "reboot", "clusterrebootd"],
        &["auth", "enable"],
    ];
    for args in steps {
        let (ok, out) = e.etcdctl(None, args);
        assert!(ok, "etcdctl {args:?}: {out}");
    }
    // Auth is on: anonymous requests are refused from now on.
    let (ok, out) = e.etcdctl(None, &["put", "/ns/anon", "x"]);
    assert!(!ok, "anonymous put accepted after auth enable: {out}");
    let pw = dir.join("etcd-password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("password file");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    pw
}

fn auth(password_file: &Path) -> Option<AuthSettings> {
    Some(AuthSettings {
        username: "reboot".into(),
        password_file: password_file.to_path_buf(),
    })
}

#[tokio::test]
async fn rbac_role_scoped_to_the_namespace() {
    let e = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = setup_rbac(&e, dir.path());
    let kv = connect(&settings(&e, None, auth(&pw)))
        .await
        .expect("connect");
    let keys = Keys::new(NS, LOCK);

    // Queue, slot, reboot lease (lease grant needs no permission; the move is one txn under /ns/).
    let b = joins_the_queue(&kv, dir.path()).await;
    bounded("move", b.move_to_reboot_lease(Duration::from_secs(60)))
        .await
        .expect("move to the reboot lease");
    let (marker, _) = bounded("get", kv.get(&keys.in_progress("n1")))
        .await
        .expect("get");
    assert!(marker.is_some(), "in-progress marker written");

    // Cooldown (a put on its own lease) and the health registry.
    bounded("cooldown", b.start_cooldown(Duration::from_secs(30)))
        .await
        .expect("start cooldown");
    match bounded("cooldown", b.read_cooldown()).await.expect("read") {
        CooldownStatus::Active { by, .. } => assert_eq!(by, "n1"),
        other => panic!("{other:?}"),
    }
    bounded(
        "publish",
        b.publish_health(HealthRecord {
            node: "n1".into(),
            healthy: true,
            stage: String::new(),
            reason: String::new(),
            reported_at: jiff::Timestamp::now().to_string(),
            group: None,
        }),
    )
    .await
    .expect("publish health");
    assert_eq!(
        bounded("health", b.cluster_health()).await.expect("health"),
        PolicyVerdict::Pass
    );

    // Pause: read, and seen through the watch (watch needs read permission too).
    let mut notices = b.notices();
    assert_eq!(bounded("pause", b.pause()).await.expect("pause"), None);
    let (ok, out) = e.etcdctl(
        Some(ROOT),
        &[
            "put",
            "/ns/pause",
            r#"{"reason":"audit","by":"ops","at":"2026-11-27T10:00:00Z"}"#,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        bounded("pause", b.pause())
            .await
            .expect("pause")
            .is_some_and(|r| r.starts_with("audit")),
    );
    let seen = bounded("pause notice", async {
        loop {
            if let Ok(Notice::PauseChanged(Some(r))) = notices.recv().await {
                return r;
            }
        }
    })
    .await;
    assert!(seen.starts_with("audit"), "{seen}");

    // Release: delete + revoke of the reboot lease, marker cleared.
    bounded("release", b.release_slot()).await.expect("release");
    bounded("clear", b.clear_in_progress())
        .await
        .expect("clear marker");
    assert!(bounded("queue", b.queue()).await.expect("queue").is_empty());

    // Outside the prefix: denied, for writes and reads.
    let err = bounded("put outside", kv.put("/other/key", b"x".to_vec(), 0))
        .await
        .expect_err("a put outside /ns/ must be refused");
    assert!(matches!(err, KvError::Denied(_)), "{err:?}");
    let err = bounded("get outside", kv.get("/other/key"))
        .await
        .expect_err("a get outside /ns/ must be refused");
    assert!(matches!(err, KvError::Denied(_)), "{err:?}");
    // `/ns` itself (without the slash) is not under the prefix either.
    let err = bounded("put /nsx", kv.put("/nsx", b"x".to_vec(), 0))
        .await
        .expect_err("/nsx is outside /ns/");
    assert!(matches!(err, KvError::Denied(_)), "{err:?}");

    // A wrong password, or no credentials at all, is a denial, not a hang.
    let bad = dir.path().join("bad-password");
    std::fs::write(&bad, "wrong\n").expect("write");
    let bad = connect(&settings(&e, None, auth(&bad)))
        .await
        .expect("connect is lazy");
    let err = bounded("get with a wrong password", bad.get("/ns/probe"))
        .await
        .expect_err("wrong password accepted");
    assert!(
        matches!(err, KvError::Denied(ref m) if m.contains("authentication failed")),
        "{err:?}"
    );
    let anon = connect(&settings(&e, None, None)).await.expect("connect");
    let err = bounded("anonymous get", anon.get("/ns/probe"))
        .await
        .expect_err("anonymous access accepted");
    assert!(matches!(err, KvError::Denied(_)), "{err:?}");
}

#[tokio::test]
async fn auth_with_an_unreachable_endpoint() {
    // Authentication must not make the connect (and so the daemon's start) depend on every
    // endpoint: the dead first endpoint is skipped like for any other call.
    let e = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = setup_rbac(&e, dir.path());
    let dead = format!("http://127.0.0.1:{}", etcd::free_port());
    let mut s = settings(&e, None, auth(&pw));
    s.endpoints.insert(0, dead.clone());
    let kv = connect(&s).await.expect("connect with one endpoint down");
    put_get(&kv).await;
    // etcd entirely down at start: connecting still works, calls fail closed until it is back.
    s.endpoints = vec![dead];
    let kv = connect(&s).await.expect("connect with etcd down");
    let err = bounded("get with etcd down", kv.get("/ns/probe"))
        .await
        .expect_err("no etcd");
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn expired_auth_token_is_renewed() {
    // Simple tokens expire after --auth-token-ttl without use (default 300 s; JWT tokens expire
    // regardless of use): a daemon that is idle longer must re-authenticate, not fail forever.
    let e = etcd::Etcd::start_with(
        1,
        etcd::Options {
            tls: None,
            extra_args: vec!["--auth-token-ttl=1".into()],
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = setup_rbac(&e, dir.path());
    let kv = connect(&settings(&e, None, auth(&pw)))
        .await
        .expect("connect");
    put_get(&kv).await;
    // Idle time is the point here: nothing to wait for but the token's expiry.
    tokio::time::sleep(Duration::from_secs(3)).await;
    bounded(
        "put after token expiry",
        kv.put("/ns/probe", b"v2".to_vec(), 0),
    )
    .await
    .expect("put with an expired token");
    let lease = bounded(
        "lease after token expiry",
        kv.lease_grant(Duration::from_secs(5)),
    )
    .await
    .expect("lease");
    assert!(lease > 0);
}

// ------------------------------------------------------------------ a real daemon under auth

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn assert_no_password(n: &node::Node, daemon_log: &str) {
    assert!(
        !daemon_log.contains(PASSWORD),
        "password in daemon.log:\n{daemon_log}"
    );
    let mut files = Vec::new();
    files_under(&n.path("state"), &mut files);
    files_under(&n.path("run"), &mut files);
    assert!(!files.is_empty(), "no state files written");
    for f in files {
        let body = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        assert!(!body.contains(PASSWORD), "password in {}", f.display());
    }
}

#[test]
fn daemon_reboot_cycle_under_auth() {
    let e = etcd::Etcd::start(1);
    let secrets = tempfile::tempdir().expect("tempdir");
    let pw = setup_rbac(&e, secrets.path());
    let n = node::Node::named(
        "node-a",
        &format!(
            "lock_backend: etcd\netcd_endpoints: [{}]\netcd_namespace: /ns\nmin_reboot_interval_sec: 60\n\
             etcd_auth: {{username: reboot, password_file: {}}}\n",
            e.endpoints()[0],
            pw.display()
        ),
    );
    // The config is valid and a 0600 password file draws no warning; a world-readable one does.
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !format!("{out}{err}").contains("world-readable"),
        "{out}{err}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, out, err) = n.once(&["validate-config"]);
    assert_eq!(code, 0, "a warning is not an error: {out}{err}");
    assert!(
        format!("{out}{err}").contains("etcd_auth.password_file")
            && format!("{out}{err}").contains("world-readable"),
        "{out}{err}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let mut d = n.start();
    n.wait_for("the reboot command", 30, |n| {
        !n.read("reboots.log").is_empty()
    });
    let (ok, out) = e.etcdctl(Some(ROOT), &["get", "--prefix", "--keys-only", "/ns/"]);
    assert!(ok, "{out}");
    assert!(out.contains("/ns/reboot_in_progress/node-a"), "{out}");
    assert!(out.contains("/ns/cluster/clusterrebootd/lock/"), "{out}");

    // "Reboot": stop, new boot id, the update is applied, start again.
    node::sigterm(&mut d);
    let first_log = n.read("daemon.log");
    std::fs::write(n.path("boot_id"), "boot-b\n").expect("boot id");
    std::fs::remove_file(n.path("reboot-required")).expect("marker");
    let mut d = n.start();
    n.wait_for("recovery after the reboot", 30, |n| {
        n.state()["state"] == "Idle" && !n.read("run/last-reboot.json").is_empty()
    });
    node::sigterm(&mut d);

    // Everything it wrote to etcd is under /ns/; the slot and marker are gone, cooldown is set.
    let (ok, out) = e.etcdctl(Some(ROOT), &["get", "--prefix", "--keys-only", "/"]);
    assert!(ok, "{out}");
    let keys: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(keys.iter().all(|k| k.starts_with("/ns/")), "{keys:?}");
    assert!(keys.contains(&"/ns/reboot_cooldown"), "{keys:?}");
    assert!(keys.contains(&"/ns/cluster_health/node-a"), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.starts_with("/ns/reboot_in_progress/")
            || k.starts_with("/ns/cluster/clusterrebootd/lock/")),
        "{keys:?}"
    );

    // The search below is only meaningful if the (debug-level) log has content.
    assert!(first_log.lines().count() > 10, "{first_log}");
    assert_no_password(&n, &first_log);
    assert_no_password(&n, &n.read("daemon.log"));
}
