//! clusterrebootd: safe, automatic, cluster-coordinated reboots of Linux nodes.
//!
//! Layout (one concern per module):
//! - [`adapters`]: detectors, windows, health script, reboot, boot id: effects into I/O.
//! - [`config`]: the Go-compatible YAML configuration, drop-ins and validation.
//! - [`coord`]: coordination backends behind one trait (local files now, etcd later).
//! - [`clock`]: wall-clock time, real or simulated (the cluster simulator steps it).
//! - [`fsutil`]: atomic file replacement and bounded JSON reads for state files.
//! - [`windows`]: maintenance-window grammar and time-zone-aware evaluation.
//! - [`fsm`]: the pure decision machine (statig): inputs in, effects out.
//! - [`driver`]: the tokio loop connecting the machine, journal and adapters.
//! - [`logging`]: tracing setup (JSON or text on stderr).
//! - [`metrics`]: Prometheus metrics (Go names plus SPEC §10) and the `/metrics` endpoint.
//! - [`journal`]: the durable JSON Lines event journal (append, fsync, compaction).
//! - [`replay`]: replaying journals and hand-written traces through the machine.
//! - [`sim`]: the deterministic cluster simulator and the rollout planner.
//! - [`fleet`]: the fleet view: each node's published decision state, `cluster status`, the page.
//! - [`exit`]: the exit-code contract shared by every command.
//! - [`cli`]: the command line (clap) and one module per command.
//! - [`version`]: build version and git revision.
//! - `fuzzing` (hidden): the fuzz targets' entry points into private code (`fuzz/`).
#![deny(missing_docs)]

pub mod adapters;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coord;
pub mod driver;
pub mod exit;
pub mod explain;
pub mod fleet;
pub mod fsm;
pub mod fsm_spec;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod human;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod replay;
pub mod sim;
pub mod text;
pub mod version;
pub mod windows;
