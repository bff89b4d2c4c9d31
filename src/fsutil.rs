//! Small file helpers shared by adapters: atomic replacement and bounded JSON reads.
//!
//! State files (`last-reboot.json`, the local backend's records, the etcd identity) are
//! replaced atomically and durably so a reader or a power loss never sees half a file;
//! `state.json`, a status snapshot, only atomically ([`write_status`]).

use std::io::{Read, Write};
use std::path::Path;

/// Largest state file read back (they are a few hundred bytes).
pub const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;

/// Writes `bytes` to `path` atomically: a temp file (mode 0644, not narrowed by the umask:
/// status readers and monitoring need it) in the same directory, fsync, rename, fsync of the
/// directory. Creates the directory if missing. On failure the old file stays and the temp file
/// is removed.
///
/// The temp file has a random name and is created with `O_CREAT|O_EXCL|O_NOFOLLOW`: a file or
/// symlink someone planted in the directory is never opened, followed or chmod-ed (issue #20);
/// a name that happens to exist is skipped and another one drawn.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true)
}

/// [`write_atomic`] without the two fsyncs: readers still see the old or the new file, never
/// half of one, but after a power loss the file may be the old one or empty. For
/// `<run_dir>/state.json`, a status snapshot rewritten on every transition and at every start,
/// whose directory is `/run` (tmpfs) on a packaged node; the journal is the durable record. The
/// fsyncs cost ~1 ms per transition on a disk (docs/PERFORMANCE.md, "Hand-off latency").
pub fn write_status(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut attempt = 0;
    let (mut f, tmp) = loop {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(
            ".tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        // fchmod on the descriptor we created: never a path that could have been swapped.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    drop(f);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a small JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let mut buf = Vec::new();
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(ReadError::Format(format!(
            "larger than {MAX_STATE_FILE_BYTES} bytes"
        )));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| ReadError::Format(e.to_string()))
}

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS refused.
    #[error("{0}")]
    Io(std::io::Error),
    /// The content is not what was expected.
    #[error("{0}")]
    Format(String),
}

/// Removes a file; a missing file is fine.
pub fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/state.json");
        write_atomic(&p, b"{\"a\":1}").expect("write");
        write_atomic(&p, b"{\"a\":2}").expect("replace");
        let v: Option<serde_json::Value> = read_json(&p).expect("read");
        assert_eq!(v, Some(serde_json::json!({"a": 2})));
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().expect("dir"))
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// Issue #20: a symlink planted at a temp name (the old name was predictable) is not
    /// followed, and its target keeps its content and mode.
    #[test]
    fn a_planted_symlink_at_the_temp_name_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("shadow");
        std::fs::write(&target, b"secret").expect("target");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let p = dir.path().join("state.json");
        // The name the previous implementation used, and a few more guesses.
        let old = dir
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &old).expect("symlink");
        write_atomic(&p, b"{}").expect("write");
        assert_eq!(std::fs::read(&target).expect("read"), b"secret");
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).expect("read"), b"{}");
        assert!(
            std::fs::symlink_metadata(&old)
                .expect("link")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_status_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state.json");
        write_status(&p, b"{\"a\":1}").expect("write");
        write_status(&p, b"{\"a\":2}").expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"{\"a\":2}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn missing_is_none_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.json");
        assert!(read_json::<serde_json::Value>(&p).expect("ok").is_none());
        std::fs::write(&p, b"{not json").expect("write");
        assert!(matches!(
            read_json::<serde_json::Value>(&p),
            Err(ReadError::Format(_))
        ));
    }
}
