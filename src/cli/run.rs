//! `run [--dry-run] [--once]` and `status [--skip-health] [--skip-lock]`: the machine driven by
//! the real adapters on the configured coordination backend.

use std::path::Path;
use std::sync::Arc;

use crate::adapters::boot::read_boot_id;
use crate::adapters::detectors::PresetPaths;
use crate::config::{LockBackend, Settings, ValidateEnv, load_settings};
use crate::coord::etcd::{EtcdBackend, EtcdConfig};
use crate::coord::etcd_kv::{EtcdKv, EtcdOptions};
use crate::coord::keys::Keys;
use crate::coord::local::LocalBackend;
use crate::driver::{self, Options};
use crate::exit::Exit;
use crate::fsm::RunMode;

/// Loads and validates the configuration, printing every problem on failure.
pub fn settings(config: &Path) -> Result<Settings, Exit> {
    match load_settings(config, &ValidateEnv::system()) {
        Ok(v) => {
            for w in &v.warnings {
                eprintln!("warning: {}: {w}", config.display());
            }
            Ok(v.settings)
        }
        Err(e) => {
            eprintln!("configuration at {} is invalid:", config.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            Err(Exit::Config)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("clusterrebootd: cannot start the async runtime: {e}");
            Exit::Runtime
        })
}

fn boot_id(s: &Settings) -> Result<String, Exit> {
    read_boot_id(&s.boot_id_path).map_err(|e| {
        startup_error(s, e);
        Exit::Runtime
    })
}

/// Runs the driver on the configured backend.
fn drive(rt: &tokio::runtime::Runtime, opts: Options, read_only: bool) -> Exit {
    let s = opts.settings.clone();
    match s.lock_backend {
        LockBackend::Local => {
            let coord = Arc::new(LocalBackend::new(
                &s.state_dir,
                &s.node_name,
                &opts.boot_id,
                read_only,
            ));
            rt.block_on(driver::run(opts, coord))
        }
        LockBackend::Etcd => rt.block_on(async {
            let kv = match EtcdKv::connect(&s.etcd, &EtcdOptions::default()).await {
                Ok(kv) => kv,
                Err(e) => {
                    startup_error(&s, e);
                    return Exit::Config;
                }
            };
            let cfg = EtcdConfig {
                node: s.node_name.clone(),
                boot_id: opts.boot_id.clone(),
                keys: Keys::new(&s.etcd.namespace, &s.lock_key),
                capacity: s.max_concurrent_reboots,
                lock_ttl: s.lock_ttl,
                lease_store: crate::coord::etcd::LeaseStore::in_dir(&s.state_dir),
                clock: crate::clock::Clock::System,
                policies: s.policies.clone(),
                group_policies: s.group_policies.clone(),
                stale_after: s.health_stale_after,
                read_only,
                identity_file: Some(s.state_dir.join("etcd-identity.json")),
                group: s.group.as_ref().map(|g| crate::coord::etcd::GroupPool {
                    name: g.name.clone(),
                    capacity: g.max_concurrent_reboots,
                }),
                acquire_order: crate::coord::etcd::AcquireOrder::GroupFirst,
            };
            let coord = Arc::new(EtcdBackend::new(kv, cfg));
            driver::run(opts, coord).await
        }),
    }
}

/// A start-up failure after logging is set up: a JSON log line when the logs are JSON (so that
/// everything the daemon writes parses, issue #19), else the plain `clusterrebootd: …` line.
fn startup_error(s: &Settings, msg: impl std::fmt::Display) {
    if s.log.format == crate::config::LogFormat::Json {
        tracing::error!(event = "startup_failed", "{msg}");
    } else {
        eprintln!("clusterrebootd: {msg}");
    }
}

/// Common start of `run` and `status`: settings, logging, boot id.
fn prepare(config: &Path) -> Result<(Settings, String), Exit> {
    let s = settings(config)?;
    crate::logging::init(&s.log, &s.node_name);
    let boot = boot_id(&s)?;
    Ok((s, boot))
}

/// `run`: the daemon (or one pass with `--once`).
pub fn run(config: &Path, dry_run: bool, once: bool) -> Exit {
    let (s, boot) = match prepare(config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let dry = s.dry_run || dry_run;
    let _lock = match LocalBackend::lock_daemon(&s.state_dir) {
        Ok(l) => l,
        Err(e) => {
            startup_error(&s, e);
            return Exit::Runtime;
        }
    };
    // Go prints these two lines on stdout. The daemon with JSON logs writes them as log
    // lines instead, so that everything it writes parses (`jq`, log shippers); `--once` keeps
    // them on stdout with its report.
    let json_daemon = !once && s.log.format == crate::config::LogFormat::Json;
    if json_daemon {
        tracing::info!(
            event = "starting",
            dry_run = dry,
            "starting orchestration for node {} (dry-run={dry})",
            s.node_name
        );
    } else {
        crate::cli::outln!(
            "starting orchestration for node {} (dry-run={dry})",
            s.node_name
        );
    }
    let opts = Options {
        mode: RunMode {
            dry_run,
            once,
            skip_health: false,
            skip_lock: false,
        },
        persist: true,
        print_report: once,
        boot_id: boot,
        presets: PresetPaths::default(),
        config_path: Some(config.to_path_buf()),
        settings: s,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = drive(&rt, opts, false);
    if json_daemon {
        tracing::info!(
            event = "stopping",
            "shutdown requested; orchestration loop exiting"
        );
    } else if !once {
        crate::cli::outln!("shutdown requested; orchestration loop exiting");
    }
    code
}

/// `status`: a dry-run evaluation of one pass that changes nothing (Go `status`).
pub fn status(config: &Path, skip_health: bool, skip_lock: bool, verbose: bool) -> Exit {
    let (s, boot) = match prepare(config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // The report is the answer; the evaluation's transition and outcome lines would only
    // interleave with it on a terminal (issue #19). `-v` (or RUST_LOG) brings them back.
    if !verbose {
        crate::logging::set_level("error");
    }
    if skip_health {
        eprintln!("skipping health script execution (--skip-health)");
    }
    if skip_lock {
        eprintln!("skipping lock acquisition (--skip-lock)");
    }
    crate::cli::outln!(
        "status evaluation for node {} (dry-run enforced)",
        s.node_name
    );
    let opts = Options {
        mode: RunMode {
            dry_run: true,
            once: true,
            skip_health,
            skip_lock,
        },
        persist: false,
        print_report: true,
        boot_id: boot,
        presets: PresetPaths::default(),
        config_path: None,
        settings: s,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = drive(&rt, opts, true);
    crate::cli::outln!();
    code
}
