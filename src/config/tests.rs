//! Table tests for validation: every rule has a failing example that asserts the field path.

use super::load::from_strs;
use super::*;
use std::time::Duration;

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

/// `BASE` with `overlay` merged over it as a drop-in, loaded and validated like the daemon does.
fn with(overlay: &str) -> Result<Validated, ConfigError> {
    validate_loaded(from_strs(&[BASE, overlay])?, &env())
}

/// One whole file, loaded and validated.
fn file(text: &str, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    validate_loaded(from_strs(&[text])?, env)
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
            "{backoff_min_sec: 10, backoff_max_sec: 5}",
            "backoff_max_sec: must be at least",
        ),
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
        ("reboot_command: ['']", "reboot_command: must not be empty"),
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
            "metrics: {enabled: true, listen: 'localhost'}",
            "metrics.listen: must be host:port",
        ),
        (
            "max_concurrent_reboots: 0",
            "max_concurrent_reboots: must be between 1",
        ),
        (
            "reboot_lease_ttl_sec: 0",
            "reboot_lease_ttl_sec: must be greater than 0",
        ),
        ("group: 'db/shard'", "group: must be at most 64 characters"),
        ("group: '..'", "group: must be at most 64 characters"),
        (
            "{group: db, group_max_concurrent_reboots: 0}",
            "group_max_concurrent_reboots: must be between 1",
        ),
        (
            "{group: db, group_policies: {min_healthy_fraction: -0.5}}",
            "group_policies.min_healthy_fraction: must be between 0 and 1",
        ),
        (
            "{group: db, group_policies: {fallback_nodes: [db-1, ' ']}}",
            "group_policies.fallback_nodes[1]: must not be empty",
        ),
        (
            "{group: db, group_policies: {min_healthy_absolute: -1}}",
            "group_policies.min_healthy_absolute",
        ),
        (
            "{group: db, group_policies: {min_healthy: 1}}",
            "group_policies.min_healthy",
        ),
        (
            "{group: db, lock_backend: local}",
            "group: needs lock_backend: etcd",
        ),
        (
            "{group: db, lock_key: /reboot_group/db}",
            "lock_key: must not contain or lie under the group pools' prefix",
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
            "health_timeout_sec: must be a whole number ≥ 1",
        ),
        ("dry_run: maybe", "dry_run: must be true or false"),
        ("node_name: {a: 1}", "node_name: must be a text value"),
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
    let got = problems(
        "{health_timeout_sec: -1, check_interval_sec: soon, lock_backend: x, log: {format: xml}, nodename: a}",
    );
    assert_eq!(got.len(), 5, "{got:#?}");
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

const GO_TEMPLATE: &str = include_str!("../../tests/fixtures/go-packaging-config.yaml");

/// The Go package's template with the four required fields filled in, as an operator would.
fn go_template_filled() -> String {
    let filled = GO_TEMPLATE
        .replace("node_name: \"\"", "node_name: \"n1\"")
        .replace(
            "reboot_required_detectors: []",
            "reboot_required_detectors: [{type: file, path: /var/run/reboot-required}]",
        )
        .replace(
            "health_script: \"\"",
            "health_script: /usr/local/bin/health",
        )
        .replace(
            "etcd_endpoints: []",
            "etcd_endpoints: [\"http://127.0.0.1:2379\"]",
        );
    assert_ne!(filled, GO_TEMPLATE);
    filled
}

#[test]
fn the_go_package_template_loads_once_the_required_fields_are_filled() {
    let v = file(&go_template_filled(), &env()).expect("valid");
    let s = v.settings;
    assert_eq!(s.node_name, "n1");
    assert!(s.dry_run);
    assert_eq!(
        s.lock_key, "/cluster/clusterrebootd/lock",
        "lock_key: \"\" = default"
    );
    assert_eq!(s.health_timeout.as_secs(), 45);
    assert_eq!(s.check_interval.as_secs(), 300);
    assert_eq!(s.lock_ttl.as_secs(), 120);
    assert_eq!(s.policies.min_healthy_fraction, 0.0, "null = no policy");
    assert_eq!(s.policies.min_healthy_absolute, 0);
    assert_eq!(
        s.reboot_command.last().map(String::as_str),
        Some("coordinated reboot for ${RC_NODE_NAME}")
    );
    assert!(s.metrics_listen.is_none());
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

#[test]
fn the_unfilled_go_template_names_every_missing_field() {
    let err = file(GO_TEMPLATE, &env()).expect_err("invalid");
    let got = err.problems();
    // node_name falls back to the host name (a deliberate difference from Go)...
    assert_eq!(
        got,
        [
            "reboot_required_detectors: at least one detector is required",
            "health_script: must not be empty",
            "etcd_endpoints: at least one endpoint is required unless lock_backend is \"local\"",
        ],
        "{got:#?}"
    );
    // ...and is reported with the others when there is no host name either.
    let err = file(GO_TEMPLATE, &ValidateEnv { hostname: None }).expect_err("invalid");
    let got = err.problems();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("node_name: empty"), "{got:#?}");
}

#[test]
fn zero_empty_and_null_mean_the_default_like_go_apply_defaults() {
    let zero = with(
        "health_timeout_sec: 0
health_publish_interval_sec: 0
check_interval_sec: 0
backoff_min_sec: 0
backoff_max_sec: 0
lock_ttl_sec: 0
lock_key: '   '
reboot_command: []
kill_switch_file: ''
metrics: {enabled: true, listen: ''}
",
    )
    .expect("valid")
    .settings;
    let null = with(
        "health_timeout_sec: null
health_publish_interval_sec: ~
check_interval_sec:
backoff_min_sec: null
backoff_max_sec: null
lock_ttl_sec: null
lock_key: null
reboot_command: null
kill_switch_file: null
metrics: {enabled: true, listen: null}
etcd_tls: null
windows: ~
cluster_policies: {min_healthy_fraction: null, min_healthy_absolute: null}
",
    )
    .expect("valid")
    .settings;
    for s in [zero, null] {
        assert_eq!(s.health_timeout.as_secs(), 30);
        assert_eq!(s.health_publish_interval.as_secs(), 15);
        assert_eq!(s.check_interval.as_secs(), 60);
        assert_eq!((s.backoff.min.as_secs(), s.backoff.max.as_secs()), (5, 60));
        assert_eq!(s.lock_ttl.as_secs(), 90);
        assert_eq!(s.lock_key, "/cluster/clusterrebootd/lock");
        assert_eq!(
            s.reboot_command,
            ["/sbin/shutdown", "-r", "now", "coordinated kernel reboot"]
        );
        assert_eq!(
            s.kill_switch_file,
            std::path::Path::new("/etc/clusterrebootd/disable")
        );
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
    }
}

#[test]
fn yaml_1_1_booleans_go_into_bool_fields() {
    for (text, want) in [
        ("yes", true),
        ("Yes", true),
        ("YES", true),
        ("on", true),
        ("ON", true),
        ("y", true),
        ("Y", true),
        ("'yes'", true),
        ("\"on\"", true),
        ("True", true),
        ("no", false),
        ("No", false),
        ("off", false),
        ("Off", false),
        ("n", false),
        ("N", false),
        ("'no'", false),
        ("FALSE", false),
    ] {
        let s = with(&format!(
            "dry_run: {text}\nmetrics: {{enabled: {text}}}\netcd_tls: {{enabled: false, insecure_skip_verify: {text}}}\ncluster_policies: {{forbid_if_only_fallback_left: {text}, fallback_nodes: [n2]}}\n"
        ))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .settings;
        assert_eq!(s.dry_run, want, "{text}");
        assert_eq!(s.metrics_listen.is_some(), want, "{text}");
        assert_eq!(s.policies.forbid_if_only_fallback_left, want, "{text}");
    }
    assert_problem("dry_run: yEs", "dry_run: must be true or false");
    assert_problem("dry_run: 1", "dry_run: must be true or false");
}

#[test]
fn any_scalar_goes_into_a_string_field_as_written() {
    let s = with(
        "node_name: 123
reboot_command: [/bin/echo, +5, 0x10, 1.50, true, ~, null, 2024-01-02, '']
etcd_namespace: 007
",
    );
    // The empty last argument is allowed; only the first must be set.
    let s = s.expect("valid").settings;
    assert_eq!(s.node_name, "123");
    assert_eq!(
        s.reboot_command,
        ["/bin/echo", "+5", "0x10", "1.50", "true", "2024-01-02", ""],
        "null items are dropped, as yaml.v3 does"
    );
    assert_eq!(s.etcd.namespace, "/007");
    let s = with("reboot_required_detectors: [{type: command, cmd: [/bin/check, -r, +5, 10]}]")
        .expect("valid")
        .settings;
    assert_eq!(
        s.detectors[0].kind,
        DetectorKind::Command {
            argv: vec!["/bin/check".into(), "-r".into(), "+5".into(), "10".into()],
            success_exit_codes: vec![],
            timeout: Some(DEFAULT_DETECTOR_TIMEOUT),
        }
    );
}

#[test]
fn integral_floats_go_into_integer_fields_but_fractions_do_not() {
    let s = with("health_timeout_sec: 30.0\nlock_ttl_sec: 1.2e2\ncheck_interval_sec: 0x3c\n")
        .expect("valid")
        .settings;
    assert_eq!(s.health_timeout.as_secs(), 30);
    assert_eq!(s.lock_ttl.as_secs(), 120);
    assert_eq!(s.check_interval.as_secs(), 60);
    assert_problem(
        "health_timeout_sec: 30.5",
        "health_timeout_sec: must be a whole number ≥ 1",
    );
    assert_problem(
        "check_interval_sec: '30'",
        "check_interval_sec: must be a whole number",
    );
}

#[test]
fn merge_keys_and_anchors_work() {
    let s = file(
        "defaults: &d
  type: file
  path: /var/run/reboot-required
node_name: n1
health_script: /usr/local/bin/health
etcd_endpoints: [&ep 'http://127.0.0.1:2379']
reboot_required_detectors:
  - <<: *d
  - <<: *d
    name: second
    path: /run/other
",
        &env(),
    );
    // `defaults` itself is not a field: yaml.v3 with KnownFields rejects it too.
    let got = s.expect_err("unknown key").problems();
    assert_eq!(got, ["defaults: unknown field (line 1)"], "{got:#?}");
    let s = with(
        "reboot_required_detectors:
  - &base {type: command, cmd: [/bin/check], timeout_sec: 5}
  - <<: *base
    name: other
",
    )
    .expect("valid")
    .settings;
    assert_eq!(s.detectors.len(), 2);
    assert_eq!(s.detectors[1].name, "other");
    assert_eq!(s.detectors[1].kind, s.detectors[0].kind);
}

#[test]
fn lock_key_is_normalised_like_go_apply_namespace() {
    for (written, want) in [
        ("cluster/lock", "/cluster/lock"),
        ("//cluster/lock", "/cluster/lock"),
        (" /cluster/lock ", "/cluster/lock"),
        ("/cluster/lock/", "/cluster/lock/"),
    ] {
        let s = with(&format!("lock_key: '{written}'"))
            .expect("valid")
            .settings;
        assert_eq!(s.lock_key, want, "{written:?}");
        // The etcd keys are the Go daemon's: "/" + trim(ns) + "/" + trim_left(key, "/").
        let keys = crate::coord::keys::Keys::new("", &s.lock_key);
        assert_eq!(
            keys.slot_prefix(),
            format!("/{}/", written.trim().trim_start_matches('/')),
        );
    }
}

#[test]
fn etcd_endpoints_with_a_trailing_slash_are_accepted() {
    let s = with(
        "etcd_endpoints: ['http://10.0.0.1:2379/', 'https://etcd.example:2379', '10.0.0.2:2379']",
    )
    .expect("valid")
    .settings;
    assert_eq!(
        s.etcd.endpoints,
        [
            "http://10.0.0.1:2379",
            "https://etcd.example:2379",
            "10.0.0.2:2379"
        ]
    );
}

#[test]
fn metrics_listen_takes_what_go_net_listen_takes_and_only_when_enabled() {
    for (written, want) in [
        (":9090", "0.0.0.0:9090"),
        ("localhost:9090", "127.0.0.1:9090"),
        ("0.0.0.0:9100", "0.0.0.0:9100"),
        ("'[::1]:9090'", "[::1]:9090"),
    ] {
        let s = with(&format!("metrics: {{enabled: true, listen: {written}}}"))
            .unwrap_or_else(|e| panic!("{written}: {e}"))
            .settings;
        assert_eq!(
            s.metrics_listen,
            Some(want.parse().expect("addr")),
            "{written}"
        );
    }
    let s = with("metrics: {enabled: false, listen: 'not an address'}")
        .expect("disabled metrics are not validated")
        .settings;
    assert!(s.metrics_listen.is_none());
}

#[test]
fn detector_fields_of_another_type_warn_instead_of_failing() {
    let v = with(
        "reboot_required_detectors:
  - {type: file, path: /a, timeout_sec: 5, cmd: [x], success_exit_codes: [1]}
  - {type: command, cmd: [/bin/true], path: /b}
",
    )
    .expect("valid");
    let mut got: Vec<String> = v
        .warnings
        .iter()
        .filter(|w| w.field.starts_with("reboot_required_detectors"))
        .map(ToString::to_string)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "reboot_required_detectors[0].cmd: is not used by a \"file\" detector and is ignored",
            "reboot_required_detectors[0].success_exit_codes: is not used by a \"file\" detector and is ignored",
            "reboot_required_detectors[0].timeout_sec: is not used by a \"file\" detector and is ignored",
            "reboot_required_detectors[1].path: is not used by a \"command\" detector and is ignored",
        ]
    );
}

#[test]
fn a_field_with_a_type_error_is_not_reported_again_by_validation() {
    let got = problems("reboot_required_detectors: soon\nhealth_script: [a]\n");
    assert_eq!(
        got,
        [
            "reboot_required_detectors: must be a list, got \"soon\" (config.d/01.yaml line 1)",
            "health_script: must be a text value, got a list (config.d/01.yaml line 2)",
        ],
        "{got:#?}"
    );
}

/// Issue #20: `timeout_sec: 0` (the default) used to mean "no timeout", and a hung detector
/// kept the node in `Detecting` forever. It now means the documented 10-minute cap.
#[test]
fn a_command_detector_without_timeout_gets_the_default_cap() {
    for (yaml, want) in [
        ("[{type: command, cmd: [/bin/check]}]", 600),
        ("[{type: command, cmd: [/bin/check], timeout_sec: 0}]", 600),
        ("[{type: command, cmd: [/bin/check], timeout_sec: 5}]", 5),
    ] {
        let s = with(&format!("reboot_required_detectors: {yaml}"))
            .expect("valid")
            .settings;
        match &s.detectors[0].kind {
            DetectorKind::Command { timeout, .. } => {
                assert_eq!(*timeout, Some(Duration::from_secs(want)), "{yaml}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Issue #20: `http://user:pw@host:2379` was accepted, the credentials ignored by the client
/// and exported to every script in RC_ETCD_ENDPOINTS. Now an error that does not repeat them.
#[test]
fn credentials_in_an_endpoint_url_are_rejected_without_echoing_them() {
    for e in [
        "http://user:s3cret@10.0.0.1:2379",
        "https://root@etcd:2379",
        "user:s3cret@etcd:2379",
    ] {
        let err = with(&format!("etcd_endpoints: ['{e}']"))
            .expect_err(e)
            .to_string();
        assert!(
            err.contains("etcd_endpoints[0]: must not contain credentials")
                && err.contains("etcd_auth.username and etcd_auth.password_file"),
            "{e}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}

/// Every field the decoder accepts, found by decoding a document in which every section is
/// present (so the decoder visits each mapping once).
fn accepted_fields() -> Vec<String> {
    const EVERY_SECTION: &str = r#"
reboot_required_detectors: [{type: file, path: /x}]
etcd_tls: {}
cluster_policies: {}
group_policies: {}
windows: {}
metrics: {}
etcd_auth: {}
hooks: {}
webhooks: {}
log: {}
"#;
    let doc = super::yaml::parse(EVERY_SECTION, 0)
        .ok()
        .and_then(|p| p.doc)
        .unwrap_or_else(|| panic!("the test document must parse"));
    let (_, decoded) = super::decode::decode(&doc, &[]);
    // `reboot_required_detectors[0].cmd` → `reboot_required_detectors.cmd`
    let mut all: Vec<String> = decoded
        .accepted
        .iter()
        .map(|p| p.replace("[0]", ""))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The backticked names in the first column of the field tables of docs/CONFIG.md (the Go
/// fields and the new fields; `etcd_tls.cert_file`, `etcd_tls.key_file` in one cell are two).
fn documented_fields(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fields = false;
    for line in doc.lines() {
        if line.starts_with('#') {
            in_fields =
                line.starts_with("## Fields of the Go daemon") || line.starts_with("## New fields");
            continue;
        }
        let Some(row) = line.strip_prefix("| ") else {
            continue;
        };
        if !in_fields {
            continue;
        }
        let first = row.split(" | ").next().unwrap_or_default();
        out.extend(
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|name| !name.is_empty())
                .map(String::from),
        );
    }
    out
}

#[test]
fn config_md_documents_exactly_the_fields_the_decoder_accepts() {
    let doc = include_str!("../../docs/CONFIG.md");
    let accepted = accepted_fields();
    assert!(
        accepted.len() > 60,
        "the decoder visited too few sections: {accepted:?}"
    );
    // Every accepted field is documented: as a table row (`etcd_tls.ca_file`), as the prefix of
    // documented rows (`etcd_tls` → `etcd_tls.…`), or, for a detector field, in the Detectors
    // section.
    let documented = documented_fields(doc);
    assert!(
        documented.len() > 40,
        "field tables not found: {documented:?}"
    );
    let detectors = doc
        .split("### Detectors")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    let undocumented: Vec<&String> = accepted
        .iter()
        .filter(|f| match f.strip_prefix("reboot_required_detectors.") {
            Some(leaf) => !detectors.contains(&format!("`{leaf}`")),
            None => !documented
                .iter()
                .any(|d| d == *f || d.starts_with(&format!("{f}."))),
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields the decoder accepts but docs/CONFIG.md does not document: {undocumented:?}"
    );
    // Every documented field row names a field the decoder accepts.
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| !accepted.contains(d))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/CONFIG.md documents fields the decoder does not accept: {unknown:?}"
    );
}

#[test]
fn reboot_group_settings() {
    let s = with("{group: ' db-1 ', group_max_concurrent_reboots: 2}")
        .expect("valid")
        .settings;
    assert_eq!(
        s.group,
        Some(RebootGroup {
            name: "db-1".into(),
            max_concurrent_reboots: 2
        })
    );
    let v = with("group_max_concurrent_reboots: 3").expect("valid");
    assert_eq!(v.settings.group, None);
    assert!(
        v.warnings
            .iter()
            .any(|w| w.to_string().contains("group_max_concurrent_reboots")),
        "{:?}",
        v.warnings
    );
    assert_eq!(with("{}").expect("valid").settings.group, None);
}

#[test]
fn group_policies_settings() {
    let s = with("{group: db, group_policies: {min_healthy_absolute: 2, min_healthy_fraction: 0.5, forbid_if_only_fallback_left: yes, fallback_nodes: [db-3]}}")
        .expect("valid")
        .settings;
    assert_eq!(
        s.group_policies,
        Policies {
            min_healthy_fraction: 0.5,
            min_healthy_absolute: 2,
            forbid_if_only_fallback_left: true,
            fallback_nodes: vec!["db-3".into()],
        }
    );
    assert_eq!(
        s.policies,
        Policies::default(),
        "cluster_policies untouched"
    );
    let v = with("group_policies: {min_healthy_absolute: 1}").expect("valid");
    assert!(
        v.warnings.iter().any(|w| w
            .to_string()
            .contains("group_policies: is set but group is empty")),
        "{:?}",
        v.warnings
    );
    let v =
        with("{group: db, group_policies: {forbid_if_only_fallback_left: true}}").expect("valid");
    assert!(
        v.warnings.iter().any(|w| w.to_string().contains(
            "group_policies.forbid_if_only_fallback_left: is true but fallback_nodes is empty"
        )),
        "{:?}",
        v.warnings
    );
}
