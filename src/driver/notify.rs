//! systemd `Type=notify` (SPEC §10): READY=1 once started, STATUS=`<State>: <reason>` on every
//! transition, RELOADING=1 … READY=1 around a reload, WATCHDOG=1 at half of `WatchdogSec`.
//! Everything is a no-op when the daemon does not run under systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager, if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set.
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(event = "sd_notify_failed", error = %e);
        }
    }

    /// Start-up finished.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A transition happened.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// A reload begins (`systemctl reload`).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// A reload finished.
    pub fn reloaded(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Half of the unit's `WatchdogSec`, when set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }

    /// Watchdog keep-alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}
