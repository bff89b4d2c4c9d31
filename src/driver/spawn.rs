//! Adapter work runs in tasks spawned through one helper, so that no request is left without
//! an answer: a task that panics answers its request with `EffectTimedOut` at once (instead of
//! never, which before the deadline table froze the node), and whatever else goes wrong is
//! caught by the machine's deadline (`fsm::deadline`).
//!
//! For tests of exactly that, the environment can make one kind of adapter misbehave in the
//! real daemon: `CLUSTERREBOOTD_TEST_STALL=RunDetectors,…` (the adapter never answers) and
//! `CLUSTERREBOOTD_TEST_PANIC=RunHealthScript,…` (its task panics). Effect names as in
//! `fsm-spec/machine.yaml`. Unset in production; a set variable is logged loudly at start.

use std::future::Future;

use crate::fsm::EffectId;

/// Adapters the test hook makes misbehave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterFaults {
    stall: Vec<String>,
    panic: Vec<String>,
}

impl AdapterFaults {
    /// Reads `CLUSTERREBOOTD_TEST_STALL` and `CLUSTERREBOOTD_TEST_PANIC`.
    pub fn from_env() -> AdapterFaults {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let f = AdapterFaults {
            stall: list("CLUSTERREBOOTD_TEST_STALL"),
            panic: list("CLUSTERREBOOTD_TEST_PANIC"),
        };
        if f != AdapterFaults::default() {
            tracing::warn!(event = "test_hook_active", stall = ?f.stall, panic = ?f.panic, "adapter fault injection is on (test hook): these adapters will not answer");
        }
        f
    }
}

/// Runs `work` (which sends the answer to request `id` of kind `effect`) in a task. If the task
/// panics, `on_panic(id)` sends the failing answer instead.
pub fn spawn_answering<W, P>(
    faults: &AdapterFaults,
    effect: &'static str,
    id: EffectId,
    on_panic: P,
    work: W,
) where
    W: Future<Output = ()> + Send + 'static,
    P: FnOnce(EffectId) + Send + 'static,
{
    if faults.stall.iter().any(|s| s == effect) {
        tracing::warn!(
            event = "test_hook_stall",
            effect,
            request = id,
            "test hook: this request is never answered"
        );
        return;
    }
    let panics = faults.panic.iter().any(|s| s == effect);
    let task = tokio::spawn(async move {
        if panics {
            std::panic::panic_any(format!("test hook: the {effect} adapter panics"));
        }
        work.await;
    });
    tokio::spawn(async move {
        if let Err(e) = task.await
            && e.is_panic()
        {
            tracing::error!(
                event = "adapter_panicked",
                effect,
                request = id,
                "the {effect} adapter panicked; answering its request as failed"
            );
            on_panic(id);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_answers_as_failed_and_a_stalled_one_not_at_all() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EffectId>();
        let faults = AdapterFaults {
            stall: vec!["RunDetectors".into()],
            panic: vec!["RunHealthScript".into()],
        };
        let t = tx.clone();
        spawn_answering(
            &faults,
            "RunHealthScript",
            7,
            move |id| {
                let _ = t.send(id);
            },
            async {},
        );
        assert_eq!(rx.recv().await, Some(7), "the panic became an answer");
        let t = tx.clone();
        spawn_answering(
            &faults,
            "RunDetectors",
            8,
            move |id| {
                let _ = t.send(id);
            },
            async {},
        );
        let t = tx.clone();
        spawn_answering(
            &faults,
            "ReadCooldown",
            9,
            move |id| {
                let _ = t.send(id);
            },
            async {},
        );
        drop(tx);
        assert_eq!(
            rx.recv().await,
            None,
            "neither the stalled nor the healthy task answered as failed"
        );
    }
}
