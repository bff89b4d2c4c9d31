//! Retry delays: exponential between `backoff_min` and `backoff_max`, with jitter that arrives
//! as data (the driver draws it), so the machine stays deterministic.

use super::config::FsmConfig;

/// Delay before retry number `failures` (1 = first retry).
///
/// `base = min × 2^(failures-1)` capped at `max`; the result is uniformly spread over
/// `[base/2, base]` by `jitter` and never below `min` — "equal jitter", so many nodes that failed
/// together do not retry together, while the delay still grows.
pub fn delay_ms(cfg: &FsmConfig, failures: u32, jitter: u32) -> u64 {
    let min = cfg.backoff_min_ms.max(1);
    let max = cfg.backoff_max_ms.max(min);
    let shift = failures.saturating_sub(1).min(32);
    let base = min.saturating_mul(1u64 << shift).min(max);
    let half = base / 2;
    let spread = u64::from(jitter) % (base - half + 1);
    (half + spread).clamp(min, max)
}

/// How long `attempts` retries with the (un-jittered) backoff between them take: the upper bound
/// of the backoff schedule, e.g. 5 + 10 + 20 + 40 + 60 s for 5 attempts with the Go defaults.
pub fn attempts_ms(cfg: &FsmConfig, attempts: u32) -> u64 {
    let min = cfg.backoff_min_ms.max(1);
    let max = cfg.backoff_max_ms.max(min);
    (0..attempts.min(64))
        .map(|k| min.saturating_mul(1u64 << k.min(32)).min(max))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {

    #[test]
    fn five_go_lock_attempts_take_135_s_with_the_defaults() {
        assert_eq!(attempts_ms(&FsmConfig::default(), 5), 135_000);
        assert_eq!(attempts_ms(&cfg(1_000, 2_000), 5), 9_000);
    }

    use super::*;

    fn cfg(min: u64, max: u64) -> FsmConfig {
        FsmConfig {
            backoff_min_ms: min,
            backoff_max_ms: max,
            ..FsmConfig::default()
        }
    }

    #[test]
    fn grows_exponentially_and_caps() {
        let c = cfg(5_000, 60_000);
        // Without jitter spread (jitter = 0) the delay is max(base/2, min).
        let got: Vec<u64> = (1..=6).map(|f| delay_ms(&c, f, 0)).collect();
        assert_eq!(got, vec![5_000, 5_000, 10_000, 20_000, 30_000, 30_000]);
        // With the largest spread it reaches base.
        let top: Vec<u64> = (1..=6).map(|f| delay_ms(&c, f, u32::MAX - 1)).collect();
        assert!(top.iter().all(|d| *d >= 5_000 && *d <= 60_000), "{top:?}");
        assert_eq!(delay_ms(&c, 40, 30_000), 60_000);
    }

    #[test]
    fn always_within_bounds() {
        let c = cfg(1_000, 7_000);
        for f in 0..50 {
            for j in [0, 1, 999, 3_500, 123_456, u32::MAX] {
                let d = delay_ms(&c, f, j);
                assert!((1_000..=7_000).contains(&d), "failures {f} jitter {j}: {d}");
            }
        }
    }
}
