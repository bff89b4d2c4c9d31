//! The process exit-code contract, in one place.
//!
//! Operators' scripts and systemd units of the Go daemon branch on these numbers, so they are part
//! of the compatibility promise (SPEC §9). Every command returns an [`Exit`]; nothing else in the
//! code base chooses a numeric exit status.

use serde::{Deserialize, Serialize};

/// Why the process ended, mapped to the Go daemon's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// 0: the command did what was asked (or there was nothing to do).
    Ok,
    /// 1: an unexpected run-time failure (I/O, etcd unreachable at start, a failed reboot).
    Runtime,
    /// 2: the configuration is missing or invalid.
    Config,
    /// 3: the health gate (script or cluster policy) blocked the reboot.
    HealthBlocked,
    /// 4: the reboot slot could not be obtained.
    LockUnavailable,
    /// 5: the kill switch file exists or the cluster is paused.
    KillSwitch,
    /// 6: a reboot-required detector failed.
    DetectorError,
    /// 64: the command line itself was wrong (clap's usage errors are mapped here, not to 2).
    Usage,
}

impl Exit {
    /// The numeric status handed to the operating system.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Runtime => 1,
            Exit::Config => 2,
            Exit::HealthBlocked => 3,
            Exit::LockUnavailable => 4,
            Exit::KillSwitch => 5,
            Exit::DetectorError => 6,
            Exit::Usage => 64,
        }
    }

    /// Every variant, for documentation and exhaustive tests.
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::Runtime,
        Exit::Config,
        Exit::HealthBlocked,
        Exit::LockUnavailable,
        Exit::KillSwitch,
        Exit::DetectorError,
        Exit::Usage,
    ];
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_go_contract() {
        let got: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5, 6, 64]);
    }
}
