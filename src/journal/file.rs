//! Low-level file helpers for the journal: a bounded line reader (so a huge
//! or newline-free file can never make us buffer it whole), a
//! write-or-roll-back primitive (so a failed append never leaves half a line
//! behind) and small durability helpers (0600 files, directory fsync, unique
//! side-file names for torn tails and quarantined journals).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where one physical line sits in the file and how it ended, as reported by
/// [`LineReader::next_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawLine {
    /// Byte offset of the first byte of the line.
    pub start: u64,
    /// Byte offset just past the line (past its `\n` when terminated).
    pub end: u64,
    /// Whether the line ended with `\n` (false only for the last line).
    pub terminated: bool,
    /// Whether the line was longer than the limit; its bytes were then
    /// skipped, not buffered.
    pub oversized: bool,
}

/// Splits a byte stream into `\n`-terminated lines while buffering at most
/// `max` bytes of any one line, so that reading a corrupt journal is bounded
/// in memory whatever its content.
pub(crate) struct LineReader<B> {
    inner: B,
    offset: u64,
    max: usize,
}

impl<B: BufRead> LineReader<B> {
    /// Wraps `inner`, which must be positioned at offset 0 of the file.
    pub(crate) fn new(inner: B, max: usize) -> Self {
        Self {
            inner,
            offset: 0,
            max,
        }
    }

    /// Reads the next line into `buf` (without its `\n`). Returns `None` at
    /// end of input. When the line exceeds the limit, `buf` is left empty,
    /// the rest of the line is consumed without being stored, and
    /// [`RawLine::oversized`] is set.
    pub(crate) fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<RawLine>> {
        buf.clear();
        let start = self.offset;
        let mut oversized = false;
        let mut terminated = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(avail) => avail,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            let (content, consumed, found_newline) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            if !oversized {
                if buf.len().saturating_add(content) <= self.max {
                    buf.extend_from_slice(&avail[..content]);
                } else {
                    oversized = true;
                    buf.clear();
                    buf.shrink_to(self.max);
                }
            }
            self.inner.consume(consumed);
            self.offset += consumed as u64;
            if found_newline {
                terminated = true;
                break;
            }
        }
        if self.offset == start {
            return Ok(None);
        }
        Ok(Some(RawLine {
            start,
            end: self.offset,
            terminated,
            oversized,
        }))
    }
}

/// A writable file that can be cut back to a given length; implemented by
/// [`File`] and by fault-injecting sinks in tests.
pub(crate) trait LineSink: Write {
    /// Truncates the underlying file to `len` bytes.
    fn truncate_to(&mut self, len: u64) -> io::Result<()>;
}

impl LineSink for File {
    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// Why [`write_or_rollback`] failed, and whether the file is clean again.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    /// The error from the write.
    pub error: io::Error,
    /// True when the file was truncated back to its previous length; false
    /// means a partial line may still be on disk and must be cut later.
    pub rolled_back: bool,
}

/// Writes `line` with a single `write_all`; on failure (for example ENOSPC
/// after a short write) truncates the sink back to `prev_len` so no partial
/// line is left for the next append to be glued onto.
pub(crate) fn write_or_rollback<W: LineSink + ?Sized>(
    sink: &mut W,
    prev_len: u64,
    line: &[u8],
) -> Result<(), WriteFailure> {
    match sink.write_all(line) {
        Ok(()) => Ok(()),
        Err(error) => {
            let rolled_back = sink.truncate_to(prev_len).is_ok();
            Err(WriteFailure { error, rolled_back })
        }
    }
}

/// Options for files the journal creates: owner read/write only (0600),
/// because journals may name nodes and operators.
fn private_options() -> OpenOptions {
    let mut opts = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

/// Opens (creating if needed) the journal for reading and appending. With
/// `O_APPEND` every write lands at the current end, also after a truncation.
pub(crate) fn open_journal_file(path: &Path) -> io::Result<File> {
    private_options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// Creates (or empties) the compaction temp file.
pub(crate) fn create_temp_file(path: &Path) -> io::Result<File> {
    private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// The directory holding `path`, for directory fsyncs.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path` so that a create, rename or unlink
/// of `path` survives power loss.
pub(crate) fn sync_parent_dir(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// Creates the directory holding `path` if it is missing.
pub(crate) fn create_parent_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(parent_dir(path))
}

/// `path` with `suffix` appended to its file name (`a/j.jsonl` + `.tmp`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Seconds since the Unix epoch, for side-file names; 0 if the clock is
/// before 1970 (naming must never fail).
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How many numbered alternatives to try when a side-file name is taken.
const MAX_NAME_ATTEMPTS: u32 = 1000;

/// Candidate names: `base`, then `base-1`, `base-2`, ...
fn candidates(base: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    (0..MAX_NAME_ATTEMPTS).map(move |i| {
        if i == 0 {
            base.to_path_buf()
        } else {
            with_suffix(base, &format!("-{i}"))
        }
    })
}

/// A name derived from `base` that does not exist yet, so a rename never
/// overwrites an earlier quarantined journal.
pub(crate) fn unused_path(base: &Path) -> io::Result<PathBuf> {
    for candidate in candidates(base) {
        match fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name derived from {}", base.display()),
    ))
}

/// Copies bytes `from..to` of `src` to a new file named after `base`
/// (numbered if taken) and makes it durable; returns its path.
pub(crate) fn save_range(src: &File, from: u64, to: u64, base: &Path) -> io::Result<PathBuf> {
    for candidate in candidates(base) {
        let mut out = match private_options()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let mut reader: &File = src;
        reader.seek(SeekFrom::Start(from))?;
        let want = to.saturating_sub(from);
        let copied = io::copy(&mut reader.take(want), &mut out)?;
        if copied != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("copied {copied} of {want} bytes"),
            ));
        }
        out.sync_all()?;
        sync_parent_dir(&candidate)?;
        return Ok(candidate);
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name derived from {}", base.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, RawLine)> {
        let mut reader = LineReader::new(Cursor::new(input.to_vec()), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(raw) = reader.next_line(&mut buf).unwrap() {
            out.push((buf.clone(), raw));
        }
        out
    }

    #[test]
    fn splits_lines_and_reports_offsets() {
        let got = lines(b"ab\n\ncde", 10);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, b"ab");
        assert_eq!(
            got[0].1,
            RawLine {
                start: 0,
                end: 3,
                terminated: true,
                oversized: false
            }
        );
        assert_eq!(got[1].0, b"");
        assert_eq!((got[1].1.start, got[1].1.end), (3, 4));
        assert_eq!(got[2].0, b"cde");
        assert!(!got[2].1.terminated);
        assert_eq!(got[2].1.end, 7);
        assert!(lines(b"", 10).is_empty());
    }

    #[test]
    fn oversized_line_is_skipped_not_buffered() {
        // 8 MiB without a newline, then a short line; limit 1 KiB.
        let big = io::repeat(b'x').take(8 << 20);
        let tail = Cursor::new(b"\nok\n".to_vec());
        let mut reader = LineReader::new(BufReader::with_capacity(4096, big.chain(tail)), 1024);
        let mut buf = Vec::new();
        let first = reader.next_line(&mut buf).unwrap().unwrap();
        assert!(first.oversized);
        assert!(first.terminated);
        assert_eq!(first.end, (8 << 20) + 1);
        assert!(buf.is_empty());
        assert!(buf.capacity() <= 4096, "capacity {}", buf.capacity());
        let second = reader.next_line(&mut buf).unwrap().unwrap();
        assert!(!second.oversized);
        assert_eq!(buf, b"ok");
        assert!(reader.next_line(&mut buf).unwrap().is_none());
    }

    #[test]
    fn line_exactly_at_limit_is_not_oversized() {
        let got = lines(b"abcd\nabcde\n", 4);
        assert!(!got[0].1.oversized);
        assert!(got[1].1.oversized);
    }

    /// A sink that writes only the first half of what it is given, then
    /// fails like a full disk.
    struct HalfThenFull {
        file: File,
    }

    impl Write for HalfThenFull {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > 1 {
                self.file.write(&buf[..buf.len() / 2])
            } else {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl LineSink for HalfThenFull {
        fn truncate_to(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
    }

    #[test]
    fn failed_write_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        fs::write(&path, b"good\n").unwrap();
        let mut sink = HalfThenFull {
            file: open_journal_file(&path).unwrap(),
        };
        let err = write_or_rollback(&mut sink, 5, b"{\"half\":\"a line\"}\n").unwrap_err();
        assert_eq!(err.error.kind(), io::ErrorKind::StorageFull);
        assert!(err.rolled_back);
        assert_eq!(fs::read(&path).unwrap(), b"good\n");
        // The same handle still appends cleanly.
        sink.file.write_all(b"next\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"good\nnext\n");
    }

    #[test]
    fn unused_path_skips_taken_names() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("j.corrupt-1");
        assert_eq!(unused_path(&base).unwrap(), base);
        fs::write(&base, b"x").unwrap();
        assert_eq!(
            unused_path(&base).unwrap(),
            dir.path().join("j.corrupt-1-1")
        );
    }
}
