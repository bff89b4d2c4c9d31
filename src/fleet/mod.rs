//! The fleet view (issue #17, SPEC §7 `node_state`, §15): every node's decision state in one
//! place.
//!
//! Each daemon publishes a [`NodeState`] record under `<ns>/node_state/<node>` on its session
//! lease, so a dead daemon's entry disappears. The record is derived from what the driver
//! already observes (the step, the state file, the journal tail) by [`track::Tracker`], which
//! also decides whether anything changed: the record is written on transitions only, never
//! once per idle check. [`publish::Publisher`] writes it from a task of its own, so a slow or
//! failing etcd never blocks or changes a decision (a failure is a log line and a metric).
//! [`view`] reads the whole fleet back (for `cluster status` and the web page, [`page`]):
//! values read back are untrusted, capped and decoded with errors shown, never a panic.

pub mod page;
pub mod publish;
pub mod routes;
pub mod svg;
pub mod table;
pub mod track;
pub mod webhook;

/// The fleet as read back (`cluster status`, the page): lives in `coord`, re-exported here.
pub use crate::coord::fleet_view as view;
pub use crate::coord::node_state::*;

pub use publish::Publisher;
pub use track::Tracker;

/// The driver's one handle on the fleet view: derive after each step, publish when changed.
#[derive(Debug)]
pub struct Fleet {
    tracker: Tracker,
    publisher: Publisher,
    webhooks: Option<webhook::Observer>,
}

impl Fleet {
    /// Starts publishing for the daemon configured by `settings`. Must run inside tokio.
    pub fn start<C: crate::coord::Coordinator>(
        settings: &crate::config::Settings,
        coord: std::sync::Arc<C>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Fleet {
            tracker: Tracker::new(
                settings.run_dir.clone(),
                settings.kill_switch_file.display().to_string(),
            ),
            webhooks: webhook::Observer::start(
                &settings.node_name,
                &settings.webhooks,
                metrics.clone(),
            ),
            publisher: Publisher::start(coord, metrics),
        }
    }

    /// Writes the pending record now (see [`Publisher::flush`]); before the process exits.
    pub async fn flush(&self, limit: std::time::Duration) {
        self.publisher.flush(limit).await;
    }

    /// After a step (see [`Tracker::observe`]): hands a changed record to the publisher and
    /// the step to the webhook observer.
    pub fn observe<'a>(
        &mut self,
        event: &crate::fsm::Event,
        step: &crate::fsm::Step,
        file: &crate::driver::state_file::StateFile,
        records: impl Iterator<Item = &'a crate::fsm::record::Record>,
    ) {
        let rec = self.tracker.observe(event, step, file, records);
        if let Some(w) = &mut self.webhooks {
            w.observe(step, rec.as_ref());
        }
        if let Some(rec) = rec {
            self.publisher.publish(rec);
        }
    }
}
