//! [`Node`] → [`RawConfig`] with the Go daemon's decoding rules (yaml.v3 + `applyDefaults`),
//! collecting **every** problem instead of stopping at the first.
//!
//! - Any scalar goes into a string field as written (`node_name: 123`, `+5` in an argv).
//! - Bool fields take `true`/`false` and the YAML 1.1 words yaml.v3 accepts for typed bools
//!   (`yes`/`no`/`on`/`off`/`y`/`n` in lower, Capitalised and UPPER case), quoted or not.
//! - Integer fields take integers and integral floats (`30.0`); `30.5` is an error (yaml.v3
//!   would silently truncate it to 30).
//! - `null` (or nothing) leaves a field at its default. For the Go fields that `applyDefaults`
//!   covers, `0`, `""` (blank for `lock_key`) and `[]` (`reboot_command`) mean the default too.
//! - Unknown keys are reported with a "did you mean" hint; type errors in plain words; both
//!   with the line (and the drop-in file, when it is not the main one).

use std::path::PathBuf;

use super::error::Problem;
use super::raw::*;
use super::yaml::{Kind, Node, Resolved};

/// What decoding found, besides the values.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Unknown keys and type errors.
    pub problems: Vec<Problem>,
    /// Field paths that had a decode problem: validation findings at or below them are noise.
    pub errored: Vec<String>,
    /// Every field path the decoder accepts at the mappings it visited (`etcd_tls.ca_file`,
    /// `reboot_required_detectors[0].cmd`): the test that keeps docs/CONFIG.md equal to the
    /// decoder reads it, so a new field cannot go undocumented.
    pub accepted: Vec<String>,
}

/// The Go daemon's top-level fields (everything else is new in this daemon).
pub const GO_FIELDS: &[&str] = &[
    "node_name",
    "reboot_required_detectors",
    "health_script",
    "health_timeout_sec",
    "health_publish_interval_sec",
    "check_interval_sec",
    "backoff_min_sec",
    "backoff_max_sec",
    "min_reboot_interval_sec",
    "lock_key",
    "lock_ttl_sec",
    "etcd_endpoints",
    "etcd_namespace",
    "etcd_tls",
    "reboot_command",
    "cluster_policies",
    "windows",
    "kill_switch_file",
    "metrics",
    "dry_run",
];

const NEW_FIELDS: &[&str] = &[
    "max_concurrent_reboots",
    "group",
    "group_max_concurrent_reboots",
    "group_policies",
    "reboot_lease_ttl_sec",
    "post_reboot_health_timeout_sec",
    "lock_wait_timeout_sec",
    "lock_backend",
    "etcd_auth",
    "state_dir",
    "run_dir",
    "boot_id_path",
    "hooks",
    "webhooks",
    "health_stale_after_sec",
    "log",
    "insecure_allow_writable_files",
];

/// Largest number of seconds accepted (about 136 years); keeps duration arithmetic finite.
const MAX_SECS: u64 = u32::MAX as u64;

struct Dec<'a> {
    files: &'a [PathBuf],
    out: Decoded,
    /// Position of each problem, to report them in document order.
    order: Vec<(usize, usize)>,
}

/// The fields of one mapping, looked up by name.
struct Fields<'n> {
    path: String,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<(&'n Node, String)> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, n)| (*n, join(&self.path, name)))
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known field closest to `name`, if it is close enough to be a typo.
pub fn suggestion<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (distance(&lower, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

impl Dec<'_> {
    fn at(&self, n: &Node) -> String {
        if n.mark.file == 0 {
            format!("line {}", n.mark.line)
        } else {
            let name = self
                .files
                .get(n.mark.file)
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("config.d/{name} line {}", n.mark.line)
        }
    }

    fn problem(&mut self, path: &str, n: &Node, msg: impl std::fmt::Display) {
        let at = self.at(n);
        self.out
            .problems
            .push(Problem::new(path, format!("{msg} ({at})")));
        self.order.push((n.mark.file, n.mark.line));
        self.out.errored.push(path.to_string());
    }

    /// The entries of a mapping; unknown keys reported. `None` for null (use the defaults).
    /// `cluster_policies` and `group_policies` (issue #16): the same four fields.
    fn policies(&mut self, f: &Fields<'_>, name: &str, out: &mut RawPolicies) {
        let Some((n, p)) = f.get(name) else {
            return;
        };
        let Some(c) = self.fields(
            n,
            &p,
            &[
                "min_healthy_fraction",
                "min_healthy_absolute",
                "forbid_if_only_fallback_left",
                "fallback_nodes",
            ],
        ) else {
            return;
        };
        if let Some((n, p)) = c.get("min_healthy_fraction")
            && let Some(v) = self.float(n, &p)
        {
            out.min_healthy_fraction = v;
        }
        if let Some((n, p)) = c.get("min_healthy_absolute")
            && let Some(v) = self.uint(n, &p, u32::MAX as u64, "≥ 0")
        {
            out.min_healthy_absolute = v;
        }
        self.bool_field(
            &c,
            "forbid_if_only_fallback_left",
            &mut out.forbid_if_only_fallback_left,
        );
        self.strings_field(&c, "fallback_nodes", &mut out.fallback_nodes);
    }

    fn fields<'n>(&mut self, n: &'n Node, path: &str, known: &[&str]) -> Option<Fields<'n>> {
        let entries = match &n.kind {
            Kind::Map(e) => e,
            _ if n.is_null() => return None,
            _ => {
                self.problem(
                    path,
                    n,
                    format!("must be a mapping of fields, got {}", n.describe()),
                );
                return None;
            }
        };
        self.out
            .accepted
            .extend(known.iter().map(|k| join(path, k)));
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = k.scalar().map(|s| s.text.as_str()).unwrap_or("?");
            if known.contains(&name) {
                out.push((name, v));
                continue;
            }
            let p = join(path, name);
            let hint = suggestion(name, known)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let at = self.at(k);
            self.out.problems.push(Problem::new(
                p.clone(),
                format!("unknown field ({at}){hint}"),
            ));
            self.order.push((k.mark.file, k.mark.line));
            self.out.errored.push(p);
        }
        Some(Fields {
            path: path.to_string(),
            entries: out,
        })
    }

    /// Any scalar as written; `None` for null.
    fn string(&mut self, n: &Node, path: &str) -> Option<String> {
        match &n.kind {
            Kind::Scalar(s) => match s.resolve() {
                Resolved::Null => None,
                _ => Some(s.text.clone()),
            },
            _ => {
                self.problem(
                    path,
                    n,
                    format!("must be a text value, got {}", n.describe()),
                );
                None
            }
        }
    }

    /// A whole number `0..=max`, from an integer or an integral float; `None` for null.
    fn uint(&mut self, n: &Node, path: &str, max: u64, what: &str) -> Option<u64> {
        let v = match n.scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => return None,
            Some(Resolved::Int(i)) => Some(i),
            Some(Resolved::Float(f)) if f.fract() == 0.0 && f.is_finite() => Some(f as i128),
            _ => None,
        };
        match v {
            Some(i) if (0..=max as i128).contains(&i) => Some(i as u64),
            _ => {
                self.problem(
                    path,
                    n,
                    format!("must be a whole number {what}, got {}", n.describe()),
                );
                None
            }
        }
    }

    /// A Go field that `applyDefaults` fills when it is zero.
    fn secs_or_default(&mut self, f: &Fields<'_>, name: &str, slot: &mut u64, default: u64) {
        if let Some((n, p)) = f.get(name) {
            let what = format!("≥ 1 (0 or null means the default, {default})");
            if let Some(v) = self.uint(n, &p, MAX_SECS, &what) {
                *slot = if v == 0 { default } else { v };
            }
        }
    }

    /// A seconds field where 0 is a value of its own.
    fn secs(&mut self, f: &Fields<'_>, name: &str, slot: &mut u64) {
        if let Some((n, p)) = f.get(name)
            && let Some(v) = self.uint(n, &p, MAX_SECS, "≥ 0")
        {
            *slot = v;
        }
    }

    fn float(&mut self, n: &Node, path: &str) -> Option<f64> {
        match n.scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => None,
            Some(Resolved::Int(i)) => Some(i as f64),
            Some(Resolved::Float(f)) => Some(f),
            _ => {
                self.problem(path, n, format!("must be a number, got {}", n.describe()));
                None
            }
        }
    }

    fn bool(&mut self, n: &Node, path: &str) -> Option<bool> {
        match n.scalar().map(|s| s.resolve()) {
            Some(Resolved::Null) => None,
            Some(Resolved::Bool(b)) => Some(b),
            Some(Resolved::Str(s)) => match s {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                | "TRUE" => Some(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                | "FALSE" => Some(false),
                _ => {
                    self.problem(
                        path,
                        n,
                        format!("must be true or false (yes/no, on/off also work), got {s:?}"),
                    );
                    None
                }
            },
            _ => {
                self.problem(
                    path,
                    n,
                    format!(
                        "must be true or false (yes/no, on/off also work), got {}",
                        n.describe()
                    ),
                );
                None
            }
        }
    }

    fn bool_field(&mut self, f: &Fields<'_>, name: &str, slot: &mut bool) {
        if let Some((n, p)) = f.get(name)
            && let Some(v) = self.bool(n, &p)
        {
            *slot = v;
        }
    }

    fn string_field(&mut self, f: &Fields<'_>, name: &str, slot: &mut String) {
        if let Some((n, p)) = f.get(name)
            && let Some(v) = self.string(n, &p)
        {
            *slot = v;
        }
    }

    /// A string field whose default `applyDefaults` restores when it is `""` (or blank).
    fn string_or_default(&mut self, f: &Fields<'_>, name: &str, slot: &mut String, blank: bool) {
        if let Some((n, p)) = f.get(name)
            && let Some(v) = self.string(n, &p)
        {
            let empty = if blank {
                v.trim().is_empty()
            } else {
                v.is_empty()
            };
            if !empty {
                *slot = v;
            }
        }
    }

    /// The items of a list; `None` for null. yaml.v3 drops null items.
    fn items<'n>(&mut self, n: &'n Node, path: &str) -> Option<Vec<(&'n Node, String)>> {
        match &n.kind {
            Kind::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| !i.is_null())
                    .map(|(i, item)| (item, format!("{path}[{i}]")))
                    .collect(),
            ),
            _ if n.is_null() => None,
            _ => {
                self.problem(path, n, format!("must be a list, got {}", n.describe()));
                None
            }
        }
    }

    fn strings(&mut self, n: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.items(n, path)?;
        Some(
            items
                .into_iter()
                .filter_map(|(item, p)| self.string(item, &p))
                .collect(),
        )
    }

    fn strings_field(&mut self, f: &Fields<'_>, name: &str, slot: &mut Vec<String>) {
        if let Some((n, p)) = f.get(name)
            && let Some(v) = self.strings(n, &p)
        {
            *slot = v;
        }
    }

    fn detector(&mut self, n: &Node, path: &str) -> Option<RawDetector> {
        const KNOWN: &[&str] = &[
            "type",
            "name",
            "path",
            "cmd",
            "success_exit_codes",
            "timeout_sec",
            "preset",
        ];
        let f = self.fields(n, path, KNOWN)?;
        let mut d = RawDetector::default();
        self.string_field(&f, "type", &mut d.kind);
        self.string_field(&f, "name", &mut d.name);
        self.string_field(&f, "path", &mut d.path);
        self.strings_field(&f, "cmd", &mut d.cmd);
        if let Some((n, p)) = f.get("success_exit_codes")
            && let Some(items) = self.items(n, &p)
        {
            d.success_exit_codes = items
                .into_iter()
                .filter_map(|(item, p)| {
                    let v = match item.scalar().map(|s| s.resolve()) {
                        Some(Resolved::Int(i)) => i32::try_from(i).ok(),
                        Some(Resolved::Float(x)) if x.fract() == 0.0 => {
                            i32::try_from(x as i128).ok()
                        }
                        _ => None,
                    };
                    if v.is_none() {
                        self.problem(
                            &p,
                            item,
                            format!(
                                "must be a whole number (an exit code), got {}",
                                item.describe()
                            ),
                        );
                    }
                    v
                })
                .collect();
        }
        self.secs(&f, "timeout_sec", &mut d.timeout_sec);
        self.string_field(&f, "preset", &mut d.preset);
        Some(d)
    }

    fn top(&mut self, doc: &Node) -> RawConfig {
        let mut r = RawConfig::default();
        let known: Vec<&str> = GO_FIELDS.iter().chain(NEW_FIELDS).copied().collect();
        let Some(f) = self.fields(doc, "", &known) else {
            return r;
        };
        self.string_field(&f, "node_name", &mut r.node_name);
        if let Some((n, p)) = f.get("reboot_required_detectors")
            && let Some(items) = self.items(n, &p)
        {
            r.reboot_required_detectors = items
                .into_iter()
                .filter_map(|(item, p)| self.detector(item, &p))
                .collect();
        }
        self.string_field(&f, "health_script", &mut r.health_script);
        self.secs_or_default(&f, "health_timeout_sec", &mut r.health_timeout_sec, 30);
        self.secs_or_default(
            &f,
            "health_publish_interval_sec",
            &mut r.health_publish_interval_sec,
            15,
        );
        self.secs_or_default(&f, "check_interval_sec", &mut r.check_interval_sec, 60);
        self.secs_or_default(&f, "backoff_min_sec", &mut r.backoff_min_sec, 5);
        self.secs_or_default(&f, "backoff_max_sec", &mut r.backoff_max_sec, 60);
        self.secs(
            &f,
            "min_reboot_interval_sec",
            &mut r.min_reboot_interval_sec,
        );
        self.string_or_default(&f, "lock_key", &mut r.lock_key, true);
        self.secs_or_default(&f, "lock_ttl_sec", &mut r.lock_ttl_sec, 90);
        self.strings_field(&f, "etcd_endpoints", &mut r.etcd_endpoints);
        self.string_field(&f, "etcd_namespace", &mut r.etcd_namespace);
        if let Some((n, p)) = f.get("etcd_tls")
            && let Some(t) = self.fields(
                n,
                &p,
                &[
                    "enabled",
                    "ca_file",
                    "cert_file",
                    "key_file",
                    "insecure_skip_verify",
                ],
            )
        {
            self.bool_field(&t, "enabled", &mut r.etcd_tls.enabled);
            self.string_field(&t, "ca_file", &mut r.etcd_tls.ca_file);
            self.string_field(&t, "cert_file", &mut r.etcd_tls.cert_file);
            self.string_field(&t, "key_file", &mut r.etcd_tls.key_file);
            self.bool_field(
                &t,
                "insecure_skip_verify",
                &mut r.etcd_tls.insecure_skip_verify,
            );
        }
        if let Some((n, p)) = f.get("reboot_command")
            && let Some(v) = self.strings(n, &p)
            && !v.is_empty()
        {
            r.reboot_command = v;
        }
        self.policies(&f, "cluster_policies", &mut r.cluster_policies);
        if let Some((n, p)) = f.get("windows")
            && let Some(w) = self.fields(n, &p, &["deny", "allow", "timezone"])
        {
            self.strings_field(&w, "deny", &mut r.windows.deny);
            self.strings_field(&w, "allow", &mut r.windows.allow);
            self.string_field(&w, "timezone", &mut r.windows.timezone);
        }
        self.string_or_default(&f, "kill_switch_file", &mut r.kill_switch_file, false);
        if let Some((n, p)) = f.get("metrics")
            && let Some(m) = self.fields(n, &p, &["enabled", "listen"])
        {
            self.bool_field(&m, "enabled", &mut r.metrics.enabled);
            self.string_or_default(&m, "listen", &mut r.metrics.listen, false);
        }
        self.bool_field(&f, "dry_run", &mut r.dry_run);

        if let Some((n, p)) = f.get("max_concurrent_reboots")
            && let Some(v) = self.uint(n, &p, u32::MAX as u64, "≥ 1")
        {
            r.max_concurrent_reboots = v;
        }
        self.string_field(&f, "group", &mut r.group);
        if let Some((n, p)) = f.get("group_max_concurrent_reboots")
            && let Some(v) = self.uint(n, &p, u32::MAX as u64, "≥ 1")
        {
            r.group_max_concurrent_reboots = v;
        }
        self.policies(&f, "group_policies", &mut r.group_policies);
        self.secs(&f, "reboot_lease_ttl_sec", &mut r.reboot_lease_ttl_sec);
        self.secs(
            &f,
            "post_reboot_health_timeout_sec",
            &mut r.post_reboot_health_timeout_sec,
        );
        self.secs(&f, "lock_wait_timeout_sec", &mut r.lock_wait_timeout_sec);
        self.string_field(&f, "lock_backend", &mut r.lock_backend);
        if let Some((n, p)) = f.get("etcd_auth")
            && let Some(a) = self.fields(n, &p, &["username", "password_file"])
        {
            self.string_field(&a, "username", &mut r.etcd_auth.username);
            self.string_field(&a, "password_file", &mut r.etcd_auth.password_file);
        }
        self.string_field(&f, "state_dir", &mut r.state_dir);
        self.string_field(&f, "run_dir", &mut r.run_dir);
        self.string_field(&f, "boot_id_path", &mut r.boot_id_path);
        if let Some((n, p)) = f.get("hooks")
            && let Some(h) = self.fields(n, &p, &["pre_reboot", "post_reboot", "timeout_sec"])
        {
            for (name, slot) in [
                ("pre_reboot", &mut r.hooks.pre_reboot),
                ("post_reboot", &mut r.hooks.post_reboot),
            ] {
                if let Some((n, p)) = h.get(name)
                    && let Some(items) = self.items(n, &p)
                {
                    *slot = items
                        .into_iter()
                        .filter_map(|(item, p)| self.strings(item, &p))
                        .collect();
                }
            }
            self.secs(&h, "timeout_sec", &mut r.hooks.timeout_sec);
        }
        if let Some((n, p)) = f.get("webhooks")
            && let Some(w) = self.fields(
                n,
                &p,
                &[
                    "urls",
                    "slack_urls",
                    "timeout_sec",
                    "retries",
                    "stuck_after_sec",
                    "ca_file",
                ],
            )
        {
            self.strings_field(&w, "urls", &mut r.webhooks.urls);
            self.strings_field(&w, "slack_urls", &mut r.webhooks.slack_urls);
            self.secs(&w, "timeout_sec", &mut r.webhooks.timeout_sec);
            if let Some((n, p)) = w.get("retries")
                && let Some(v) = self.uint(n, &p, 100, "from 0 to 100")
            {
                r.webhooks.retries = v;
            }
            self.secs(&w, "stuck_after_sec", &mut r.webhooks.stuck_after_sec);
            self.string_field(&w, "ca_file", &mut r.webhooks.ca_file);
        }
        self.secs(&f, "health_stale_after_sec", &mut r.health_stale_after_sec);
        if let Some((n, p)) = f.get("log")
            && let Some(l) = self.fields(n, &p, &["level", "format"])
        {
            self.string_field(&l, "level", &mut r.log.level);
            self.string_field(&l, "format", &mut r.log.format);
        }
        self.bool_field(
            &f,
            "insecure_allow_writable_files",
            &mut r.insecure_allow_writable_files,
        );
        r
    }
}

/// Decodes a merged document. `files` maps [`super::yaml::Mark::file`] to paths for messages.
pub fn decode(doc: &Node, files: &[PathBuf]) -> (RawConfig, Decoded) {
    let mut d = Dec {
        files,
        out: Decoded::default(),
        order: Vec::new(),
    };
    let raw = d.top(doc);
    let mut problems: Vec<_> = d.order.into_iter().zip(d.out.problems).collect();
    problems.sort_by_key(|(at, _)| *at);
    d.out.problems = problems.into_iter().map(|(_, p)| p).collect();
    (raw, d.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        let known = GO_FIELDS;
        assert_eq!(suggestion("nodename", known), Some("node_name"));
        assert_eq!(suggestion("node-name", known), Some("node_name"));
        assert_eq!(suggestion("helth_script", known), Some("health_script"));
        assert_eq!(suggestion("lock_ttl", known), Some("lock_ttl_sec"));
        assert_eq!(suggestion("frobnicate", known), None);
    }
}
