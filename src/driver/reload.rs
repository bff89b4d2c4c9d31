//! SIGHUP: the configuration re-read, validated, and its hot fields applied at once.

use std::sync::Arc;

use super::Driver;
use crate::adapters::env::{EnvExtras, base_env};
use crate::adapters::health::HealthConfig;
use crate::config::Settings;
use crate::coord::Coordinator;
use crate::exit::Exit;
use crate::fsm::*;

impl<C: Coordinator> Driver<C> {
    /// SIGHUP: re-read and validate the configuration; keep the old one if it is invalid; apply
    /// the hot fields at once and name the restart-only fields that changed but were not applied.
    pub(super) async fn reload(&mut self) -> Option<Exit> {
        let path = self.opts.config_path.clone()?;
        self.notifier.reloading();
        let status = format!("{}: reloaded configuration", self.machine.state().name());
        let new = match crate::config::load_settings(&path, &crate::config::ValidateEnv::system()) {
            Ok(v) => v.settings,
            Err(e) => {
                self.node.metrics.config_reload("invalid");
                tracing::error!(event = "config_reload_failed", path = %path.display(), problems = %e.problems().join("; "), "configuration reload rejected; keeping the running configuration");
                self.notifier.reloaded(&format!(
                    "{}: reload rejected (invalid configuration)",
                    self.machine.state().name()
                ));
                return None;
            }
        };
        let (applied, ignored) = hot_reload(&self.node.settings, new);
        if !ignored.is_empty() {
            tracing::warn!(event = "config_reload_restart_needed", fields = %ignored.join(", "), "these fields changed but need a restart: {}", ignored.join(", "));
        }
        let extras = EnvExtras {
            dry_run: applied.dry_run || self.opts.mode.dry_run,
            metrics_endpoint: self
                .node
                .rc_env
                .iter()
                .find(|(k, _)| k == "RC_METRICS_ENDPOINT")
                .map(|(_, v)| v.clone()),
            skip_health: self.opts.mode.skip_health,
            skip_lock: self.opts.mode.skip_lock,
        };
        self.node.rc_env = Arc::new(base_env(&applied, &extras));
        self.node
            .health
            .reconfigure(HealthConfig {
                script: applied.health_script.clone(),
                timeout: applied.health_timeout,
                base_env: self.node.rc_env.as_ref().clone(),
            })
            .await;
        self.node.coord.set_capacity(applied.max_concurrent_reboots);
        if let Some(g) = &applied.group {
            self.node.coord.set_group_capacity(g.max_concurrent_reboots);
        }
        self.node
            .coord
            .set_policies(applied.policies.clone(), applied.health_stale_after);
        self.node
            .coord
            .set_group_policies(applied.group_policies.clone());
        crate::logging::set_level(&applied.log.level);
        self.node.settings = Arc::new(applied);
        self.opts.settings = self.node.settings.as_ref().clone();
        self.node.metrics.config_reload("applied");
        tracing::info!(event = "config_reloaded", path = %path.display(), "configuration reloaded");
        let config = FsmConfig::from_settings(&self.node.settings, self.opts.mode);
        let code = self.handle(Event::ConfigReloaded { config }).await;
        self.notifier.reloaded(&status);
        code
    }
}

/// Splits a reloaded configuration: returns the settings to run with (hot fields from `new`,
/// restart-only fields from `old`) and the names of restart-only fields that changed.
pub fn hot_reload(old: &Settings, new: Settings) -> (Settings, Vec<&'static str>) {
    let mut ignored = Vec::new();
    let mut s = new;
    macro_rules! keep {
        ($field:ident, $name:literal) => {
            if s.$field != old.$field {
                ignored.push($name);
                s.$field = old.$field.clone();
            }
        };
    }
    keep!(node_name, "node_name");
    keep!(etcd, "etcd_endpoints/etcd_tls/etcd_auth/etcd_namespace");
    keep!(lock_key, "lock_key");
    keep!(lock_backend, "lock_backend");
    keep!(state_dir, "state_dir");
    keep!(run_dir, "run_dir");
    keep!(boot_id_path, "boot_id_path");
    keep!(metrics_listen, "metrics.listen");
    keep!(lock_ttl, "lock_ttl_sec");
    keep!(webhooks, "webhooks");
    // The group itself needs a restart (a node never changes pools while queued or holding);
    // its pool size is applied like max_concurrent_reboots.
    let name = |g: &Option<crate::config::RebootGroup>| g.as_ref().map(|g| g.name.clone());
    if name(&s.group) != name(&old.group) {
        ignored.push("group");
        s.group = old.group.clone();
    }
    (s, ignored)
}

#[cfg(test)]
mod tests {
    use super::hot_reload;
    use crate::config::{Settings, ValidateEnv, load::from_strs, validate_loaded};

    fn settings(extra: &str) -> Settings {
        let base = "node_name: n1\nreboot_required_detectors: [{type: file, path: /r}]\nhealth_script: /h\netcd_endpoints: [\"http://127.0.0.1:2379\"]\n";
        let env = ValidateEnv {
            hostname: Some("h".into()),
        };
        validate_loaded(from_strs(&[base, extra]).expect("load"), &env)
            .expect("valid")
            .settings
    }

    /// Issue #16: the group needs a restart (a node never changes pools while queued or
    /// holding); its pool size is applied at once.
    #[test]
    fn the_group_needs_a_restart_its_size_does_not() {
        let old = settings("{group: db, group_max_concurrent_reboots: 1}");
        let (s, ignored) = hot_reload(
            &old,
            settings("{group: db, group_max_concurrent_reboots: 2}"),
        );
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(s.group.map(|g| g.max_concurrent_reboots), Some(2));
        let (s, ignored) = hot_reload(&old, settings("{group: web}"));
        assert_eq!(ignored, ["group"]);
        assert_eq!(s.group.map(|g| g.name), Some("db".into()));
        let (s, ignored) = hot_reload(&old, settings("{}"));
        assert_eq!(ignored, ["group"]);
        assert!(s.group.is_some());
        // group_policies are applied at once, like cluster_policies.
        let (s, ignored) = hot_reload(
            &old,
            settings("{group: db, group_policies: {min_healthy_absolute: 2}}"),
        );
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(s.group_policies.min_healthy_absolute, 2);
    }
}
