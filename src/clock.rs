//! Wall-clock time for adapters and the coordination protocol, real or simulated.
//!
//! The daemon reads the system clock. The cluster simulator ([`crate::sim`]) runs every node in
//! one paused tokio runtime, so "now" must follow tokio's virtual time instead, and one node's
//! clock may be stepped (an NTP jump) without touching the others. Code that needs wall-clock
//! time for protocol records (cooldown, health records, slot values) takes a [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::fsm::Millis;

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Virtual time: an origin plus tokio's (possibly paused) clock plus a per-node step.
    Simulated(Arc<SimClock>),
}

/// A simulated wall clock driven by tokio's clock.
#[derive(Debug)]
pub struct SimClock {
    origin_ms: i64,
    start: tokio::time::Instant,
    offset_ms: AtomicI64,
}

impl Clock {
    /// A simulated clock reading `origin_ms` (ms since the epoch) now; must be created inside
    /// the tokio runtime whose clock it follows.
    pub fn simulated(origin_ms: Millis) -> Clock {
        Clock::Simulated(Arc::new(SimClock {
            origin_ms: i64::try_from(origin_ms).unwrap_or(i64::MAX),
            start: tokio::time::Instant::now(),
            offset_ms: AtomicI64::new(0),
        }))
    }

    /// A clock that reads like `self` plus its own step (for one node's NTP jumps).
    pub fn fork(&self) -> Clock {
        match self {
            Clock::System => Clock::System,
            Clock::Simulated(s) => Clock::Simulated(Arc::new(SimClock {
                origin_ms: s.origin_ms,
                start: s.start,
                offset_ms: AtomicI64::new(s.offset_ms.load(Ordering::Relaxed)),
            })),
        }
    }

    /// Steps a simulated clock by `delta_ms` (positive or negative); no-op on the system clock.
    pub fn step(&self, delta_ms: i64) {
        if let Clock::Simulated(s) = self {
            s.offset_ms.fetch_add(delta_ms, Ordering::Relaxed);
        }
    }

    /// Now, in ms since the epoch (0 before 1970).
    pub fn now_ms(&self) -> Millis {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            Clock::Simulated(s) => {
                let elapsed = i64::try_from(s.start.elapsed().as_millis()).unwrap_or(i64::MAX);
                let ms = s
                    .origin_ms
                    .saturating_add(elapsed)
                    .saturating_add(s.offset_ms.load(Ordering::Relaxed));
                u64::try_from(ms).unwrap_or(0)
            }
        }
    }

    /// Now, as a timestamp.
    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Simulated(_) => {
                jiff::Timestamp::from_millisecond(i64::try_from(self.now_ms()).unwrap_or(0))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn simulated_clock_follows_tokio_time_and_steps_per_fork() {
        let c = Clock::simulated(1_000_000);
        let other = c.fork();
        assert_eq!(c.now_ms(), 1_000_000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.now_ms(), 1_005_000);
        other.step(-60_000);
        assert_eq!(other.now_ms(), 945_000, "the fork jumped back a minute");
        assert_eq!(c.now_ms(), 1_005_000, "the original did not");
        assert_eq!(c.now().as_millisecond(), 1_005_000);
    }
}
