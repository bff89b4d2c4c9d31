//! Table tests for validation: every rule has a failing example that asserts the field path.

use super::load::{from_value, merge};
use super::*;
use serde_yaml_ng::Value;

const BASE: &str = r#"
node_name: n1
reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]
health_script: /usr/local/bin/health
etcd_endpoints: ["http://127.0.0.1:2379"]
"#;

fn env() -> ValidateEnv {
    ValidateEnv {
        hostname: Some("host-a".into()),
    }
}

fn with(overlay: &str) -> Result<Validated, ConfigError> {
    let mut doc: Value = serde_yaml_ng::from_str(BASE).expect("base");
    let over: Value = serde_yaml_ng::from_str(overlay).expect("overlay");
    if !over.is_null() {
        merge(&mut doc, over);
    }
    validate(&from_value(doc)?, &env())
}

fn problems(overlay: &str) -> Vec<String> {
    match with(overlay) {
        Ok(_) => panic!("expected {overlay:?} to be rejected"),
        Err(e) => e.problems(),
    }
}

fn assert_problem(overlay: &str, expected: &str) {
    let got = problems(overlay);
    assert!(
        got.iter().any(|p| p.starts_with(expected)),
        "overlay:\n{overlay}\nexpected a problem starting with:\n  {expected}\ngot:\n  {}",
        got.join("\n  ")
    );
}

#[test]
fn defaults_equal_the_go_defaults() {
    let raw = RawConfig::default();
    assert_eq!(raw.health_timeout_sec, 30);
    assert_eq!(raw.health_publish_interval_sec, 15);
    assert_eq!(raw.check_interval_sec, 60);
    assert_eq!((raw.backoff_min_sec, raw.backoff_max_sec), (5, 60));
    assert_eq!(raw.min_reboot_interval_sec, 0);
    assert_eq!(raw.lock_key, "/cluster/clusterrebootd/lock");
    assert_eq!(raw.lock_ttl_sec, 90);
    assert_eq!(raw.etcd_namespace, "");
    assert_eq!(
        raw.reboot_command,
        ["/sbin/shutdown", "-r", "now", "coordinated kernel reboot"]
    );
    assert_eq!(raw.kill_switch_file, "/etc/clusterrebootd/disable");
    assert!(!raw.metrics.enabled);
    assert_eq!(raw.metrics.listen, "127.0.0.1:9090");
    assert!(!raw.dry_run);
    assert!(!raw.etcd_tls.enabled);
    assert_eq!(raw.cluster_policies.min_healthy_fraction, 0.0);
    assert!(raw.windows.allow.is_empty() && raw.windows.deny.is_empty());
    // New fields.
    assert_eq!(raw.max_concurrent_reboots, 1);
    assert_eq!(raw.reboot_lease_ttl_sec, 1800);
    assert_eq!(raw.post_reboot_health_timeout_sec, 600);
    assert_eq!(raw.lock_wait_timeout_sec, 0);
    assert_eq!(raw.lock_backend, "etcd");
    assert_eq!(raw.state_dir, "/var/lib/clusterrebootd");
    assert_eq!(raw.run_dir, "/run/clusterrebootd");
    assert_eq!(raw.boot_id_path, "/proc/sys/kernel/random/boot_id");
    assert_eq!(
        (raw.log.level.as_str(), raw.log.format.as_str()),
        ("info", "json")
    );
}

#[test]
fn minimal_config_validates_with_defaults() {
    let s = with("").expect("valid").settings;
    assert_eq!(s.node_name, "n1");
    assert_eq!(s.health_stale_after.as_secs(), 60, "4 x publish interval");
    assert_eq!(s.detectors[0].name, "file:/var/run/reboot-required");
    assert_eq!(s.lock_backend, LockBackend::Etcd);
    assert!(s.metrics_listen.is_none());
    assert!(s.lock_wait_timeout.is_none());
}

#[test]
fn empty_node_name_becomes_the_host_name() {
    let s = with("node_name: ''").expect("valid").settings;
    assert_eq!(s.node_name, "host-a");
}

#[test]
fn namespace_is_normalised() {
    let s = with("etcd_namespace: prod/").expect("valid").settings;
    assert_eq!(s.etcd.namespace, "/prod");
}

#[test]
fn every_rule_names_its_field() {
    let cases: &[(&str, &str)] = &[
        (
            "reboot_required_detectors: []",
            "reboot_required_detectors: at least one",
        ),
        (
            "reboot_required_detectors: [{type: file, path: /a}, {type: command, cmd: []}]",
            "reboot_required_detectors[1].cmd: must not be empty",
        ),
        (
            "reboot_required_detectors: [{type: file, path: relative}]",
            "reboot_required_detectors[0].path: must be an absolute path",
        ),
        (
            "reboot_required_detectors: [{type: magic}]",
            "reboot_required_detectors[0].type: must be",
        ),
        (
            "reboot_required_detectors: [{type: preset, preset: gentoo}]",
            "reboot_required_detectors[0].preset: must be one of",
        ),
        (
            "reboot_required_detectors: [{type: file, path: /a, cmd: [x]}]",
            "reboot_required_detectors[0].cmd: not used by a \"file\" detector",
        ),
        (
            "reboot_required_detectors: [{type: file, path: /a}, {type: file, path: /a}]",
            "reboot_required_detectors[1].name: duplicate detector name \"file:/a\"",
        ),
        (
            "reboot_required_detectors: [{type: file, name: x, path: /a}, {type: command, name: x, cmd: [/bin/true]}]",
            "reboot_required_detectors[1].name: duplicate",
        ),
        ("health_script: ''", "health_script: must not be empty"),
        (
            "health_script: health.sh",
            "health_script: must be an absolute path",
        ),
        (
            "health_timeout_sec: 0",
            "health_timeout_sec: must be greater than 0",
        ),
        (
            "health_publish_interval_sec: 0",
            "health_publish_interval_sec: must be greater than 0",
        ),
        (
            "check_interval_sec: 0",
            "check_interval_sec: must be greater than 0",
        ),
        (
            "backoff_min_sec: 0",
            "backoff_min_sec: must be greater than 0",
        ),
        (
            "{backoff_min_sec: 10, backoff_max_sec: 5}",
            "backoff_max_sec: must be at least",
        ),
        ("lock_key: cluster/lock", "lock_key: must start with '/'"),
        ("lock_key: /cluster/lock/", "lock_key: must start with '/'"),
        (
            "{lock_ttl_sec: 30, health_timeout_sec: 30}",
            "lock_ttl_sec: must be greater than health_timeout_sec",
        ),
        (
            "etcd_endpoints: []",
            "etcd_endpoints: at least one endpoint",
        ),
        (
            "etcd_endpoints: ['http://a:2379', 'nonsense']",
            "etcd_endpoints[1]: must look like",
        ),
        (
            "etcd_tls: {enabled: true, ca_file: /nonexistent/ca.pem}",
            "etcd_tls.ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            "etcd_tls: {enabled: true, cert_file: /x.pem}",
            "etcd_tls.key_file: must be set",
        ),
        (
            "etcd_tls: {enabled: true, key_file: /nonexistent/k.pem, cert_file: /nonexistent/c.pem}",
            "etcd_tls.key_file: cannot read",
        ),
        (
            "etcd_auth: {username: u}",
            "etcd_auth.password_file: must be set",
        ),
        (
            "etcd_auth: {username: u, password_file: /nonexistent/pw}",
            "etcd_auth.password_file: cannot read",
        ),
        ("reboot_command: []", "reboot_command: must not be empty"),
        (
            "cluster_policies: {min_healthy_fraction: 1.5}",
            "cluster_policies.min_healthy_fraction: must be between 0 and 1",
        ),
        (
            "cluster_policies: {fallback_nodes: ['']}",
            "cluster_policies.fallback_nodes[0]: must not be empty",
        ),
        (
            "windows: {timezone: Mars/Olympus}",
            "windows.timezone: unknown IANA time zone",
        ),
        (
            "windows: {allow: ['* 22:00-04:00', 'Fri 25:00-Mon 08:00']}",
            "windows.allow[1]: invalid window \"Fri 25:00-Mon 08:00\" at column 5",
        ),
        (
            "windows: {deny: ['Caturday 10:00-11:00']}",
            "windows.deny[0]: invalid window",
        ),
        (
            "kill_switch_file: disable",
            "kill_switch_file: must be an absolute path",
        ),
        (
            "metrics: {listen: 'localhost'}",
            "metrics.listen: must be an address",
        ),
        (
            "max_concurrent_reboots: 0",
            "max_concurrent_reboots: must be between 1",
        ),
        (
            "reboot_lease_ttl_sec: 0",
            "reboot_lease_ttl_sec: must be greater than 0",
        ),
        (
            "post_reboot_health_timeout_sec: 0",
            "post_reboot_health_timeout_sec: must be greater than 0",
        ),
        (
            "lock_backend: zookeeper",
            "lock_backend: must be \"etcd\" or \"local\"",
        ),
        ("state_dir: var/lib", "state_dir: must be an absolute path"),
        ("run_dir: ''", "run_dir: must not be empty"),
        (
            "boot_id_path: boot_id",
            "boot_id_path: must be an absolute path",
        ),
        (
            "hooks: {pre_reboot: [[]]}",
            "hooks.pre_reboot[0]: must not be empty",
        ),
        (
            "hooks: {timeout_sec: 0}",
            "hooks.timeout_sec: must be greater than 0",
        ),
        (
            "health_stale_after_sec: 10",
            "health_stale_after_sec: must be greater than health_publish_interval_sec",
        ),
        ("log: {level: loud}", "log.level: must be one of"),
        ("log: {format: xml}", "log.format: must be"),
        ("node_name: 'a/b'", "node_name: must not contain '/'"),
        ("nodename: x", "nodename: unknown field"),
        (
            "health_timeout_sec: -1",
            "health_timeout_sec: invalid value",
        ),
    ];
    for (overlay, expected) in cases {
        assert_problem(overlay, expected);
    }
}

#[test]
fn local_backend_needs_no_endpoints() {
    let s = with("{lock_backend: local, etcd_endpoints: []}")
        .expect("valid")
        .settings;
    assert_eq!(s.lock_backend, LockBackend::Local);
}

#[test]
fn all_problems_are_reported_together() {
    let got =
        problems("{health_timeout_sec: 0, check_interval_sec: 0, lock_key: x, log: {format: xml}}");
    assert!(got.len() >= 4, "expected at least 4 problems, got {got:?}");
}

#[test]
fn readable_tls_files_and_world_readable_key_warn() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
    );
    for f in [&ca, &cert, &key] {
        std::fs::write(f, "x").expect("write");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let v = with(&format!(
        "etcd_tls: {{enabled: true, ca_file: {}, cert_file: {}, key_file: {}}}",
        ca.display(),
        cert.display(),
        key.display()
    ))
    .expect("valid");
    let tls = v.settings.etcd.tls.expect("tls");
    assert_eq!(tls.client, Some((cert, key)));
    assert!(
        v.warnings
            .iter()
            .any(|w| w.field == "etcd_tls.key_file" && w.message.contains("world-readable")),
        "{:?}",
        v.warnings
    );
}
