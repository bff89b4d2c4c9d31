//! Validation: [`RawConfig`] → [`Settings`], collecting **every** problem with its field path.
//!
//! This is where the rules the Go daemon only discovered at run time live (window syntax,
//! duplicate detector names, relative paths, `lock_ttl_sec` ≤ `health_timeout_sec`, unreadable
//! TLS files), so `validate-config` catches them before a rollout.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, Problem};
use super::raw::{RawConfig, RawDetector, RawPolicies, RawWebhooks};
use super::settings::*;
use crate::windows::Windows;

/// What validation may look up outside the document (kept explicit so tests control it).
#[derive(Debug, Clone, Default)]
pub struct ValidateEnv {
    /// Host name used when `node_name` is empty.
    pub hostname: Option<String>,
}

impl ValidateEnv {
    /// The real environment: the kernel's host name.
    pub fn system() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        ValidateEnv { hostname }
    }
}

/// A successful validation: the settings plus non-fatal warnings to log.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The settings.
    pub settings: Settings,
    /// Things that work but deserve an operator's attention (e.g. a world-readable key).
    pub warnings: Vec<Problem>,
}

/// Collects problems while fields are checked.
#[derive(Default)]
struct Report {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Report {
    fn err(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(Problem::new(field, msg));
    }
    fn warn(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push(Problem::new(field, msg));
    }
    /// A duration in seconds that must be positive.
    fn positive(&mut self, field: &str, secs: u64) -> Duration {
        if secs == 0 {
            self.err(field, "must be greater than 0");
        }
        Duration::from_secs(secs)
    }
    /// A path that must be absolute.
    fn absolute(&mut self, field: &str, p: &str) -> PathBuf {
        if p.is_empty() {
            self.err(field, "must not be empty");
        } else if !p.starts_with('/') {
            self.err(field, format!("must be an absolute path, got {p:?}"));
        }
        PathBuf::from(p)
    }
    /// A file that must be readable now (TLS material, password file).
    fn readable(&mut self, field: &str, p: &str) -> PathBuf {
        let path = self.absolute(field, p);
        if !p.is_empty()
            && let Err(e) = std::fs::File::open(&path)
        {
            self.err(field, format!("cannot read {p}: {e}"));
        }
        path
    }
}

/// Validates a parsed document. Returns all problems at once on failure.
pub fn validate(raw: &RawConfig, env: &ValidateEnv) -> Result<Validated, ConfigError> {
    let mut r = Report::default();

    let node_name = if raw.node_name.trim().is_empty() {
        match &env.hostname {
            Some(h) => h.clone(),
            None => {
                r.err("node_name", "empty and the host name could not be read");
                String::new()
            }
        }
    } else {
        raw.node_name.clone()
    };
    if node_name.contains('/') || node_name.chars().any(char::is_whitespace) {
        r.err(
            "node_name",
            format!(
                "must not contain '/' or whitespace (it is part of etcd keys), got {node_name:?}"
            ),
        );
    }

    let detectors = validate_detectors(&mut r, &raw.reboot_required_detectors);

    let health_script = r.absolute("health_script", &raw.health_script);
    let health_timeout = r.positive("health_timeout_sec", raw.health_timeout_sec);
    let health_publish_interval = r.positive(
        "health_publish_interval_sec",
        raw.health_publish_interval_sec,
    );
    let check_interval = r.positive("check_interval_sec", raw.check_interval_sec);
    let bmin = r.positive("backoff_min_sec", raw.backoff_min_sec);
    let bmax = Duration::from_secs(raw.backoff_max_sec);
    if raw.backoff_max_sec < raw.backoff_min_sec {
        r.err(
            "backoff_max_sec",
            format!(
                "must be at least backoff_min_sec ({}), got {}",
                raw.backoff_min_sec, raw.backoff_max_sec
            ),
        );
    }

    // Go's applyNamespace: surrounding blanks go, leading slashes collapse to one, a trailing
    // slash stays (so both daemons build the same etcd keys during a migration).
    let lock_key = format!("/{}", raw.lock_key.trim().trim_start_matches('/'));
    let lock_ttl = r.positive("lock_ttl_sec", raw.lock_ttl_sec);
    if raw.lock_ttl_sec <= raw.health_timeout_sec {
        r.err(
            "lock_ttl_sec",
            format!(
                "must be greater than health_timeout_sec ({}), got {}: the slot would expire while the health script runs",
                raw.health_timeout_sec, raw.lock_ttl_sec
            ),
        );
    }

    let lock_backend = match raw.lock_backend.as_str() {
        "etcd" => LockBackend::Etcd,
        "local" => LockBackend::Local,
        other => {
            r.err(
                "lock_backend",
                format!("must be \"etcd\" or \"local\", got {other:?}"),
            );
            LockBackend::Etcd
        }
    };
    let etcd = validate_etcd(&mut r, raw, lock_backend);

    if raw
        .reboot_command
        .first()
        .is_none_or(|a| a.trim().is_empty())
    {
        r.err("reboot_command", "must not be empty");
    }

    let policies = validate_policies(&mut r, "cluster_policies", &raw.cluster_policies);

    let windows = validate_windows(&mut r, raw);

    let kill_switch_file = r.absolute("kill_switch_file", &raw.kill_switch_file);
    // Like the Go daemon, the listen address only matters when metrics are enabled.
    let listen: Option<SocketAddr> = if raw.metrics.enabled {
        match crate::metrics::listen_addr(&raw.metrics.listen) {
            Ok(a) => Some(a),
            Err(e) => {
                r.err("metrics.listen", e);
                None
            }
        }
    } else {
        None
    };

    let max_concurrent_reboots = match u32::try_from(raw.max_concurrent_reboots) {
        Ok(n) if n >= 1 => n,
        _ => {
            r.err(
                "max_concurrent_reboots",
                format!(
                    "must be between 1 and {}, got {}",
                    u32::MAX,
                    raw.max_concurrent_reboots
                ),
            );
            1
        }
    };
    let group = validate_group(&mut r, raw, lock_backend, &lock_key);
    let group_policies = validate_policies(&mut r, "group_policies", &raw.group_policies);
    if group.is_none() && raw.group_policies != RawPolicies::default() {
        r.warn(
            "group_policies",
            "is set but group is empty, so it has no effect",
        );
    }
    let reboot_lease_ttl = r.positive("reboot_lease_ttl_sec", raw.reboot_lease_ttl_sec);
    if raw.reboot_lease_ttl_sec > 0 && raw.reboot_lease_ttl_sec < raw.lock_ttl_sec {
        r.warn(
            "reboot_lease_ttl_sec",
            "is shorter than lock_ttl_sec: a slot may expire while the node is down",
        );
    }
    let post_reboot_health_timeout = r.positive(
        "post_reboot_health_timeout_sec",
        raw.post_reboot_health_timeout_sec,
    );
    let lock_wait_timeout =
        (raw.lock_wait_timeout_sec > 0).then(|| Duration::from_secs(raw.lock_wait_timeout_sec));

    let state_dir = r.absolute("state_dir", &raw.state_dir);
    let run_dir = r.absolute("run_dir", &raw.run_dir);
    let boot_id_path = r.absolute("boot_id_path", &raw.boot_id_path);

    for (list, hooks) in [
        ("pre_reboot", &raw.hooks.pre_reboot),
        ("post_reboot", &raw.hooks.post_reboot),
    ] {
        for (i, argv) in hooks.iter().enumerate() {
            if argv.first().is_none_or(|a| a.trim().is_empty()) {
                r.err(format!("hooks.{list}[{i}]"), "must not be empty");
            }
        }
    }
    let hook_timeout = r.positive("hooks.timeout_sec", raw.hooks.timeout_sec);
    let webhooks = validate_webhooks(&mut r, &raw.webhooks);

    let health_stale_after = if raw.health_stale_after_sec == 0 {
        health_publish_interval * 4
    } else {
        if raw.health_stale_after_sec <= raw.health_publish_interval_sec {
            r.err(
                "health_stale_after_sec",
                format!(
                    "must be greater than health_publish_interval_sec ({}), got {}",
                    raw.health_publish_interval_sec, raw.health_stale_after_sec
                ),
            );
        }
        Duration::from_secs(raw.health_stale_after_sec)
    };

    if !["trace", "debug", "info", "warn", "error"].contains(&raw.log.level.as_str()) {
        r.err(
            "log.level",
            format!(
                "must be one of trace, debug, info, warn, error; got {:?}",
                raw.log.level
            ),
        );
    }
    let format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            r.err(
                "log.format",
                format!("must be \"json\" or \"text\", got {other:?}"),
            );
            LogFormat::Json
        }
    };

    let (Some(windows), true) = (windows, r.errors.is_empty()) else {
        return Err(ConfigError::Invalid(r.errors));
    };
    let settings = Settings {
        node_name,
        detectors,
        health_script,
        health_timeout,
        health_publish_interval,
        check_interval,
        backoff: BackoffBounds {
            min: bmin,
            max: bmax,
        },
        min_reboot_interval: Duration::from_secs(raw.min_reboot_interval_sec),
        lock_key,
        lock_ttl,
        etcd,
        reboot_command: raw.reboot_command.clone(),
        policies,
        windows,
        windows_text: WindowsText {
            deny: raw.windows.deny.clone(),
            allow: raw.windows.allow.clone(),
            timezone: raw.windows.timezone.clone(),
        },
        kill_switch_file,
        metrics_listen: listen,
        dry_run: raw.dry_run,
        max_concurrent_reboots,
        group,
        group_policies,
        reboot_lease_ttl,
        post_reboot_health_timeout,
        lock_wait_timeout,
        lock_backend,
        state_dir,
        run_dir,
        boot_id_path,
        hooks: Hooks {
            pre_reboot: raw.hooks.pre_reboot.clone(),
            post_reboot: raw.hooks.post_reboot.clone(),
            timeout: hook_timeout,
        },
        webhooks,
        health_stale_after,
        log: LogSettings {
            level: raw.log.level.clone(),
            format,
        },
    };
    Ok(Validated {
        settings,
        warnings: r.warnings,
    })
}

fn validate_webhooks(r: &mut Report, raw: &RawWebhooks) -> super::settings::Webhooks {
    use super::webhook_url::{Format, Target, parse_url};
    let mut targets = Vec::new();
    for (list, format, urls) in [
        ("urls", Format::Json, &raw.urls),
        ("slack_urls", Format::Slack, &raw.slack_urls),
    ] {
        for (i, text) in urls.iter().enumerate() {
            match parse_url(text) {
                Ok(url) => targets.push(Target { url, format }),
                Err(why) => r.err(format!("webhooks.{list}[{i}]"), &why),
            }
        }
    }
    let timeout = r.positive("webhooks.timeout_sec", raw.timeout_sec);
    let stuck_after = r.positive("webhooks.stuck_after_sec", raw.stuck_after_sec);
    let ca_file = (!raw.ca_file.is_empty()).then(|| r.absolute("webhooks.ca_file", &raw.ca_file));
    super::settings::Webhooks {
        targets,
        timeout,
        retries: u32::try_from(raw.retries).unwrap_or(100),
        stuck_after,
        ca_file,
    }
}

fn validate_detectors(r: &mut Report, raw: &[RawDetector]) -> Vec<DetectorSpec> {
    if raw.is_empty() {
        r.err(
            "reboot_required_detectors",
            "at least one detector is required",
        );
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let at = |f: &str| format!("reboot_required_detectors[{i}].{f}");
        // Fields that belong to another detector type are ignored, as the Go daemon does, but
        // said so: they are usually a mistake.
        let stray = |r: &mut Report, allowed: &[&str]| {
            let present = [
                ("path", !d.path.is_empty()),
                ("cmd", !d.cmd.is_empty()),
                ("success_exit_codes", !d.success_exit_codes.is_empty()),
                ("timeout_sec", d.timeout_sec != 0),
                ("preset", !d.preset.is_empty()),
            ];
            for (f, set) in present {
                if set && !allowed.contains(&f) {
                    r.warn(
                        at(f),
                        format!("is not used by a {:?} detector and is ignored", d.kind),
                    );
                }
            }
        };
        let spec = match d.kind.as_str() {
            "file" => {
                stray(r, &["path"]);
                let path = r.absolute(&at("path"), &d.path);
                Some((format!("file:{}", d.path), DetectorKind::File { path }))
            }
            "command" => {
                stray(r, &["cmd", "success_exit_codes", "timeout_sec"]);
                if d.cmd.first().is_none_or(|a| a.trim().is_empty()) {
                    r.err(at("cmd"), "must not be empty");
                }
                Some((
                    format!(
                        "command:{}",
                        d.cmd.first().map(String::as_str).unwrap_or("")
                    ),
                    DetectorKind::Command {
                        argv: d.cmd.clone(),
                        success_exit_codes: d.success_exit_codes.clone(),
                        timeout: Some(if d.timeout_sec > 0 {
                            Duration::from_secs(d.timeout_sec)
                        } else {
                            DEFAULT_DETECTOR_TIMEOUT
                        }),
                    },
                ))
            }
            "preset" => {
                stray(r, &["preset"]);
                match Preset::from_name(&d.preset) {
                    Some(preset) => Some((
                        format!("preset:{}", d.preset),
                        DetectorKind::Preset { preset },
                    )),
                    None => {
                        r.err(
                            at("preset"),
                            format!(
                                "must be one of debian, rhel, suse, kernel; got {:?}",
                                d.preset
                            ),
                        );
                        None
                    }
                }
            }
            other => {
                r.err(
                    at("type"),
                    format!("must be \"file\", \"command\" or \"preset\", got {other:?}"),
                );
                None
            }
        };
        let Some((default_name, kind)) = spec else {
            continue;
        };
        let name = if d.name.is_empty() {
            default_name
        } else {
            d.name.clone()
        };
        if !seen.insert(name.clone()) {
            r.err(
                at("name"),
                format!("duplicate detector name {name:?} (names must be unique)"),
            );
        }
        out.push(DetectorSpec { name, kind });
    }
    out
}

fn validate_etcd(r: &mut Report, raw: &RawConfig, backend: LockBackend) -> EtcdSettings {
    if backend == LockBackend::Etcd && raw.etcd_endpoints.is_empty() {
        r.err(
            "etcd_endpoints",
            "at least one endpoint is required unless lock_backend is \"local\"",
        );
    }
    // A trailing `/` is accepted (the Go client takes URLs) and dropped.
    let endpoints: Vec<String> = raw
        .etcd_endpoints
        .iter()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .collect();
    for (i, (e, written)) in endpoints.iter().zip(&raw.etcd_endpoints).enumerate() {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or(e);
        // Credentials in the URL would be ignored by the client and exported to every script
        // in RC_ETCD_ENDPOINTS (issue #20); the message does not repeat them.
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            r.err(
                format!("etcd_endpoints[{i}]"),
                "must not contain credentials (user:password@host): they would be exported to every script in RC_ETCD_ENDPOINTS; set etcd_auth.username and etcd_auth.password_file instead",
            );
            continue;
        }
        let hostport_ok = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !hostport_ok {
            r.err(
                format!("etcd_endpoints[{i}]"),
                format!("must look like http(s)://host:port, got {written:?}"),
            );
        }
    }
    let namespace = raw.etcd_namespace.trim_end_matches('/').to_string();
    let namespace = if namespace.is_empty() || namespace.starts_with('/') {
        namespace
    } else {
        format!("/{namespace}")
    };

    let t = &raw.etcd_tls;
    let tls = if t.enabled {
        let ca_file = (!t.ca_file.is_empty()).then(|| r.readable("etcd_tls.ca_file", &t.ca_file));
        let client = match (t.cert_file.is_empty(), t.key_file.is_empty()) {
            (true, true) => None,
            (false, false) => {
                let cert = r.readable("etcd_tls.cert_file", &t.cert_file);
                let key = r.readable("etcd_tls.key_file", &t.key_file);
                warn_if_world_readable(r, "etcd_tls.key_file", &key);
                Some((cert, key))
            }
            (true, false) => {
                r.err("etcd_tls.cert_file", "must be set when key_file is set");
                None
            }
            (false, true) => {
                r.err("etcd_tls.key_file", "must be set when cert_file is set");
                None
            }
        };
        if t.insecure_skip_verify {
            r.warn(
                "etcd_tls.insecure_skip_verify",
                "is not supported by this daemon: etcd server certificates are always verified (set ca_file)",
            );
        }
        Some(TlsSettings {
            ca_file,
            client,
            insecure_skip_verify: t.insecure_skip_verify,
        })
    } else {
        None
    };

    let a = &raw.etcd_auth;
    let auth = match (a.username.is_empty(), a.password_file.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let password_file = r.readable("etcd_auth.password_file", &a.password_file);
            warn_if_world_readable(r, "etcd_auth.password_file", &password_file);
            Some(AuthSettings {
                username: a.username.clone(),
                password_file,
            })
        }
        (false, true) => {
            r.err(
                "etcd_auth.password_file",
                "must be set when username is set",
            );
            None
        }
        (true, false) => {
            r.err(
                "etcd_auth.username",
                "must be set when password_file is set",
            );
            None
        }
    };
    EtcdSettings {
        endpoints,
        namespace,
        tls,
        auth,
    }
}

fn warn_if_world_readable(r: &mut Report, field: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        r.warn(
            field,
            format!("{} is world-readable; chmod o-r it", path.display()),
        );
    }
}

fn validate_windows(r: &mut Report, raw: &RawConfig) -> Option<Windows> {
    let tz_name = raw.windows.timezone.trim();
    let tz = if tz_name.is_empty() {
        jiff::tz::TimeZone::system()
    } else {
        match jiff::tz::TimeZone::get(tz_name) {
            Ok(tz) => tz,
            Err(e) => {
                r.err(
                    "windows.timezone",
                    format!("unknown IANA time zone {tz_name:?}: {e}"),
                );
                return None;
            }
        }
    };
    match Windows::new(&raw.windows.deny, &raw.windows.allow, tz) {
        Ok(w) => Some(w),
        Err(errs) => {
            for e in errs {
                r.err(
                    format!("windows.{}[{}]", e.list, e.index),
                    e.error.to_string(),
                );
            }
            None
        }
    }
}

/// `cluster_policies` or `group_policies` (the same fields), reported under `path`.
fn validate_policies(r: &mut Report, path: &str, p: &RawPolicies) -> Policies {
    if !(0.0..=1.0).contains(&p.min_healthy_fraction) || p.min_healthy_fraction.is_nan() {
        r.err(
            format!("{path}.min_healthy_fraction"),
            format!("must be between 0 and 1, got {}", p.min_healthy_fraction),
        );
    }
    for (i, n) in p.fallback_nodes.iter().enumerate() {
        if n.trim().is_empty() {
            r.err(format!("{path}.fallback_nodes[{i}]"), "must not be empty");
        }
    }
    if p.forbid_if_only_fallback_left && p.fallback_nodes.is_empty() {
        r.warn(
            format!("{path}.forbid_if_only_fallback_left"),
            "is true but fallback_nodes is empty, so it never blocks",
        );
    }
    Policies {
        min_healthy_fraction: p.min_healthy_fraction,
        min_healthy_absolute: p.min_healthy_absolute,
        forbid_if_only_fallback_left: p.forbid_if_only_fallback_left,
        fallback_nodes: p.fallback_nodes.clone(),
    }
}

/// `group` and `group_max_concurrent_reboots` (issue #16): the name becomes part of an etcd
/// key, so only `[A-Za-z0-9._-]`; a group needs the etcd backend and a `lock_key` that does not
/// overlap the group pools' prefix.
fn validate_group(
    r: &mut Report,
    raw: &RawConfig,
    backend: LockBackend,
    lock_key: &str,
) -> Option<RebootGroup> {
    let name = raw.group.trim();
    let k = match u32::try_from(raw.group_max_concurrent_reboots) {
        Ok(n) if n >= 1 => n,
        _ => {
            r.err(
                "group_max_concurrent_reboots",
                format!(
                    "must be between 1 and {}, got {}",
                    u32::MAX,
                    raw.group_max_concurrent_reboots
                ),
            );
            1
        }
    };
    if name.is_empty() {
        if raw.group_max_concurrent_reboots != 1 {
            r.warn(
                "group_max_concurrent_reboots",
                "is set but group is empty, so it has no effect",
            );
        }
        return None;
    }
    if name.len() > MAX_GROUP_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name == "."
        || name == ".."
    {
        r.err(
            "group",
            format!(
                "must be at most {MAX_GROUP_NAME} characters of A-Z, a-z, 0-9, '.', '_' and '-' (it is part of an etcd key), got {:?}",
                name.chars().take(80).collect::<String>()
            ),
        );
    }
    if backend == LockBackend::Local {
        r.err(
            "group",
            "needs lock_backend: etcd (the local backend coordinates one machine, there is no group to share)",
        );
    }
    if crate::coord::keys::Keys::new(&raw.etcd_namespace, lock_key).group_root_overlaps_lock() {
        r.err(
            "lock_key",
            format!(
                "must not contain or lie under the group pools' prefix reboot_group/ when group is set, got {lock_key:?}"
            ),
        );
    }
    Some(RebootGroup {
        name: name.to_string(),
        max_concurrent_reboots: k,
    })
}
