//! Tests of the models the daemon is built on, without daemons: the structural rules of the
//! code base, the machine against its machine-readable spec, and the cluster simulator (seeded
//! sweeps, regression models, the accelerated soak). One binary (issue #12).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod architecture;
mod fsm_spec;
mod sim;
mod sim_load;
mod sim_soak;
