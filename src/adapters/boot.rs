//! Boot identity and the files written around a reboot (SPEC §8).
//!
//! The boot id (`/proc/sys/kernel/random/boot_id`, configurable so tests can fake a reboot) is
//! how the daemon knows a reboot really happened. After one, it writes
//! `<run_dir>/last-reboot.json` ([`PostRebootMarker`]) for operators and monitoring.
//! Files are replaced with [`crate::fsutil::write_atomic`]: readers see the old or the new
//! content, never a torn file, even after a power loss.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::fsutil::write_atomic;

/// Most bytes read from the boot id file (a boot id is 36 characters).
pub const BOOT_ID_MAX: usize = 128;

/// File name of the post-reboot marker inside `run_dir`.
pub const POST_REBOOT_MARKER: &str = "last-reboot.json";

/// Why a boot id could not be read or a file not written.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The boot id file could not be read.
    #[error("read boot id {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The boot id file holds nothing but whitespace.
    #[error("boot id file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The first line is longer than any boot id: probably the wrong file.
    #[error("boot id file {} does not hold a boot id (first line longer than {BOOT_ID_MAX} bytes)", path.display())]
    TooLong {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be written or its directory created.
    #[error("write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The marker could not be encoded (cannot happen with finite numbers).
    #[error("encode {}: {source}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

impl BootError {
    /// Short stable label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BootError::Read { .. } => "read",
            BootError::Empty { .. } => "empty",
            BootError::TooLong { .. } => "too_long",
            BootError::Write { .. } => "write",
            BootError::Encode { .. } => "encode",
        }
    }
}

/// Reads the boot id: the first line of `path`, trimmed, non-empty; at most [`BOOT_ID_MAX`]
/// bytes are read, and a first line that does not end within them is rejected (the path points
/// at the wrong file).
pub fn read_boot_id(path: &Path) -> Result<String, BootError> {
    let read_err = |source| BootError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut buf = Vec::with_capacity(BOOT_ID_MAX);
    file.take(BOOT_ID_MAX as u64)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    let line_end = buf.iter().position(|b| *b == b'\n');
    if line_end.is_none() && buf.len() == BOOT_ID_MAX {
        return Err(BootError::TooLong {
            path: path.to_owned(),
        });
    }
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let id = String::from_utf8_lossy(line).trim().to_owned();
    if id.is_empty() {
        return Err(BootError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(id)
}

/// What `<run_dir>/last-reboot.json` records about the last reboot: evidence for operators
/// that the reboot happened and how long the node was down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostRebootMarker {
    /// Boot id before the reboot.
    pub previous_boot_id: String,
    /// Boot id now.
    pub boot_id: String,
    /// When the reboot command was issued (RFC 3339), `null` when unknown (e.g. lost state).
    pub issued_at: Option<String>,
    /// When the daemon noticed the new boot (RFC 3339).
    pub returned_at: String,
    /// `returned_at - issued_at` in seconds, when both are known.
    pub down_seconds: Option<f64>,
    /// When the post-reboot health check passed and the slot was released (RFC 3339); absent
    /// until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<String>,
}

impl PostRebootMarker {
    /// The marker for a reboot issued at `issued_at` (if known) and noticed at `returned_at`
    /// (both ms since the epoch, as the machine reports them).
    pub fn new(
        previous_boot_id: String,
        boot_id: String,
        issued_at: Option<u64>,
        returned_at: u64,
    ) -> Self {
        let ts = |ms: u64| crate::fsm::record::fmt_ts(ms);
        PostRebootMarker {
            previous_boot_id,
            boot_id,
            issued_at: issued_at.map(ts),
            returned_at: ts(returned_at),
            down_seconds: issued_at.map(|i| returned_at.saturating_sub(i) as f64 / 1000.0),
            recovered_at: None,
        }
    }
}

/// Writes `m` to `<run_dir>/last-reboot.json` atomically, creating `run_dir` (mode 0755) when
/// missing; returns the file's path.
pub fn write_post_reboot_marker(
    run_dir: &Path,
    m: &PostRebootMarker,
) -> Result<PathBuf, BootError> {
    let dir_err = |source| BootError::Write {
        path: run_dir.to_owned(),
        source,
    };
    if !run_dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(run_dir)
            .map_err(dir_err)?;
        // The umask may have narrowed the mode; monitoring agents need to read the marker.
        fs::set_permissions(run_dir, fs::Permissions::from_mode(0o755)).map_err(dir_err)?;
    }
    let path = run_dir.join(POST_REBOOT_MARKER);
    let mut bytes = serde_json::to_vec_pretty(m).map_err(|source| BootError::Encode {
        path: path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes).map_err(|source| BootError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_boot_id_cases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("boot_id");

        fs::write(&p, "3f1c9a52-5b7e-4d0c-9a55-2c1e8f0b7a11\n").expect("write");
        assert_eq!(
            read_boot_id(&p).expect("id"),
            "3f1c9a52-5b7e-4d0c-9a55-2c1e8f0b7a11"
        );
        fs::write(&p, "  abc  ").expect("write");
        assert_eq!(read_boot_id(&p).expect("id"), "abc");

        fs::write(&p, "").expect("write");
        let e = read_boot_id(&p).expect_err("empty");
        assert_eq!(e.kind(), "empty");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        fs::write(&p, " \n\n").expect("write");
        assert_eq!(read_boot_id(&p).expect_err("blank").kind(), "empty");

        let missing = dir.path().join("missing");
        let e = read_boot_id(&missing).expect_err("missing");
        assert_eq!(e.kind(), "read");
        assert!(
            e.to_string()
                .starts_with(&format!("read boot id {}: ", missing.display())),
            "{e}"
        );

        // A huge single line: rejected after reading only BOOT_ID_MAX bytes.
        fs::write(&p, vec![b'a'; 10 * 1024 * 1024]).expect("write");
        assert_eq!(read_boot_id(&p).expect_err("huge").kind(), "too_long");
        // A huge file whose first line is a boot id: the line is used.
        let mut big = b"abc-123\n".to_vec();
        big.extend(vec![b'x'; 1024 * 1024]);
        fs::write(&p, big).expect("write");
        assert_eq!(read_boot_id(&p).expect("id"), "abc-123");
        // Exactly BOOT_ID_MAX bytes without a newline could be cut: rejected.
        fs::write(&p, vec![b'b'; BOOT_ID_MAX]).expect("write");
        assert_eq!(read_boot_id(&p).expect_err("max").kind(), "too_long");
        fs::write(&p, vec![b'b'; BOOT_ID_MAX - 1]).expect("write");
        assert_eq!(read_boot_id(&p).expect("id").len(), BOOT_ID_MAX - 1);
    }

    fn marker() -> PostRebootMarker {
        PostRebootMarker {
            previous_boot_id: "old-id".into(),
            boot_id: "new-id".into(),
            issued_at: Some("2024-05-01T02:00:00Z".into()),
            returned_at: "2024-05-01T02:03:30Z".into(),
            down_seconds: Some(210.5),
            recovered_at: None,
        }
    }

    #[test]
    fn marker_round_trip_and_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_dir = dir.path().join("run/clusterrebootd");
        let path = write_post_reboot_marker(&run_dir, &marker()).expect("write");
        assert_eq!(path, run_dir.join("last-reboot.json"));
        let mode = fs::metadata(&run_dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "run_dir mode {mode:o}");

        let text = fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "previous_boot_id": "old-id",
                "boot_id": "new-id",
                "issued_at": "2024-05-01T02:00:00Z",
                "returned_at": "2024-05-01T02:03:30Z",
                "down_seconds": 210.5,
            })
        );
        let back: PostRebootMarker = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, marker());

        // Replace with a different marker: unknown issue time is an explicit null.
        let m2 = PostRebootMarker {
            issued_at: None,
            down_seconds: None,
            recovered_at: Some("2024-05-01T02:05:00Z".into()),
            ..marker()
        };
        write_post_reboot_marker(&run_dir, &m2).expect("rewrite");
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"issued_at\": null"), "{text}");
        let back: PostRebootMarker = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, m2);
        // No temporary file left behind.
        let names: Vec<String> = fs::read_dir(&run_dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["last-reboot.json"]);
    }

    #[test]
    fn write_atomic_replaces_and_keeps_the_old_file_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").expect("write");
        // A reader holding the old file keeps seeing the old content (a new inode replaced it).
        let mut old = File::open(&p).expect("open");
        write_atomic(&p, b"two").expect("replace");
        let mut s = String::new();
        old.read_to_string(&mut s).expect("read old");
        assert_eq!(s, "one");
        assert_eq!(fs::read_to_string(&p).expect("read"), "two");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o644
        );

        // Target is a directory: rename fails, the temporary file is cleaned up.
        let d = dir.path().join("adir");
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join("keep"), "x").expect("write");
        assert!(write_atomic(&d, b"nope").is_err());
        assert!(d.join("keep").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Missing parent directories are created (state.json's run_dir may not exist yet).
        write_atomic(&dir.path().join("no/such/file"), b"x").expect("creates parents");
    }
}
