//! Entry points for the fuzz targets (`fuzz/`, `scripts/fuzz`) into code that is private to a
//! command. Not an API: hidden from the docs, kept as thin as possible.

use crate::config::Settings;
use crate::coord::keys::Keys;
use crate::coord::kv::{Kv, KvError};

/// What `cluster status` shows for the store behind `kv`: the text exactly as printed to a
/// terminal, and whether it names the cooldown record corrupt (the daemons then start no reboot).
pub async fn cluster_status<K: Kv>(
    kv: &K,
    keys: &Keys,
    settings: &Settings,
) -> Result<(String, bool), KvError> {
    let view = crate::coord::fleet_view::read(
        kv,
        keys,
        settings.max_concurrent_reboots,
        settings.health_stale_after,
    )
    .await?;
    let now = jiff::Timestamp::now();
    let text = crate::text::for_terminal(&crate::fleet::table::render(&view, now)).into_owned();
    Ok((text, view.cooldown_corrupt.is_some()))
}

/// A scratch directory for one fuzz target in this process, on tmpfs when there is one (the
/// targets create many files per second): `<base>/clusterrebootd-fuzz-<target>-<pid>`.
pub fn scratch_dir(target: &str) -> std::path::PathBuf {
    let shm = std::path::PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "clusterrebootd-fuzz-{target}-{}",
        std::process::id()
    ))
}
