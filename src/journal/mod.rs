//! Durable, append-only JSON Lines journal: the storage under the
//! event-sourced reboot state machine.
//!
//! Each line is one JSON object tagged with `"kind"` and a sequence number:
//!
//! ```text
//! {"kind":"snapshot","seq":41,...fields of S...}
//! {"kind":"record","seq":42,...fields of R...}
//! ```
//!
//! A record's `seq` is 1-based and keeps increasing across compactions; a
//! snapshot's `seq` is that of the last record whose effect it contains (0
//! when none). `R` and `S` must serialise as JSON objects (structs or maps)
//! and must not have fields named `kind` or `seq`.
//!
//! Crash handling on [`Journal::open`]: only the last line can be torn by a
//! power loss, so a bad last line is cut off (after copying it to
//! `<path>.torn-<unix-seconds>`) with a warning; a bad line anywhere else is
//! [`JournalError::Corrupt`] and the file is left untouched for the caller to
//! [`Journal::quarantine`].

mod file;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::file::{LineReader, RawLine};

/// Tuning for a journal; the defaults suit the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Records since the last snapshot beyond which
    /// [`Journal::needs_compaction`] says to compact, so replay stays fast.
    pub max_records: usize,
    /// Longest line (without its newline) that is written or read, so a
    /// corrupt file cannot make `open` buffer it unbounded. Appends of longer
    /// lines are refused, since they could not be read back.
    pub max_line_bytes: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_line_bytes: 1 << 20,
        }
    }
}

/// What [`Journal::open`] found on disk: the state to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<R, S> {
    /// The last snapshot in the file, if any.
    pub snapshot: Option<S>,
    /// The records after that snapshot, with their sequence numbers, oldest
    /// first.
    pub records: Vec<(u64, R)>,
    /// The sequence number the next appended record will get.
    pub next_seq: u64,
    /// Repairs made while opening (torn tail cut off, stale temp file
    /// removed), for the daemon to surface to operators.
    pub warnings: Vec<String>,
}

/// Why a journal operation failed. Every variant names the journal file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A system call failed (including ENOSPC); the journal stays usable.
    #[error("journal {}: {op}: {error}", path.display())]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// What was being done, e.g. "append" or "sync".
        op: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// A line other than the last is damaged, or sequence numbers are out of
    /// order; the file was not modified.
    #[error("journal {} line {line}: {message}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number of the first bad line.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A record or snapshot could not be serialised as a JSON object.
    #[error("journal {}: cannot encode {what}: {error}", path.display())]
    Encode {
        /// The journal file.
        path: PathBuf,
        /// "record" or "snapshot".
        what: &'static str,
        /// The serialiser's error.
        error: serde_json::Error,
    },
    /// A record or snapshot encodes to a line longer than
    /// [`JournalOptions::max_line_bytes`] and so could not be read back.
    #[error(
        "journal {}: {what} encodes to {len} bytes, over the {max}-byte line limit",
        path.display()
    )]
    TooLarge {
        /// The journal file.
        path: PathBuf,
        /// "record" or "snapshot".
        what: &'static str,
        /// Encoded length without the newline.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// [`Journal::compact`] was given more tail records than were ever
    /// appended, so their sequence numbers cannot be known.
    #[error(
        "journal {}: compaction keeps {tail} tail records but only {appended} were appended",
        path.display()
    )]
    InvalidTail {
        /// The journal file.
        path: PathBuf,
        /// Length of `keep_tail`.
        tail: usize,
        /// Records appended since the journal was created.
        appended: u64,
    },
}

impl JournalError {
    /// A short stable label for metrics and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Corrupt { .. } => "corrupt",
            Self::Encode { .. } => "encode",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidTail { .. } => "invalid_tail",
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Corrupt { path, .. }
            | Self::Encode { path, .. }
            | Self::TooLarge { path, .. }
            | Self::InvalidTail { path, .. } => path,
        }
    }
}

/// Builds a mapper from `io::Error` to [`JournalError::Io`].
fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |error| JournalError::Io {
        path: path.to_path_buf(),
        op,
        error,
    }
}

/// One journal line: the tag lives here so `R` and `S` stay plain structs.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line<R, S> {
    Record(Seq<R>),
    Snapshot(Seq<S>),
}

/// Adds the sequence number next to the caller's fields.
#[derive(Serialize, Deserialize)]
struct Seq<T> {
    seq: u64,
    #[serde(flatten)]
    body: T,
}

/// Serialises `line` into `out` (cleared first) plus a newline, refusing
/// lines that could not be read back under `max`.
fn encode_line<T: Serialize>(
    path: &Path,
    what: &'static str,
    line: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), JournalError> {
    out.clear();
    serde_json::to_writer(&mut *out, line).map_err(|error| JournalError::Encode {
        path: path.to_path_buf(),
        what,
        error,
    })?;
    if out.len() > max {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
            what,
            len: out.len(),
            max,
        });
    }
    out.push(b'\n');
    Ok(())
}

/// A line that could not be used, and whether a power loss could explain it.
struct BadLine {
    message: String,
    /// True for damage a torn write can produce (bad bytes, bad syntax, no
    /// newline); false for well-formed JSON of the wrong shape, which is
    /// never dropped silently.
    torn_like: bool,
}

/// Decodes one physical line.
fn decode_line<R: DeserializeOwned, S: DeserializeOwned>(
    raw: &RawLine,
    bytes: &[u8],
    max: usize,
) -> Result<Line<R, S>, BadLine> {
    if raw.oversized {
        return Err(BadLine {
            message: format!(
                "line of {} bytes exceeds the {max}-byte limit",
                raw.end - raw.start
            ),
            torn_like: true,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| BadLine {
        message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        torn_like: true,
    })?;
    let line = serde_json::from_str::<Line<R, S>>(text).map_err(|e| BadLine {
        torn_like: !raw.terminated || !matches!(e.classify(), serde_json::error::Category::Data),
        message: e.to_string(),
    })?;
    if !raw.terminated {
        return Err(BadLine {
            message: "no trailing newline (incomplete write)".to_owned(),
            torn_like: true,
        });
    }
    Ok(line)
}

/// Result of scanning a journal file.
struct Scan<R, S> {
    snapshot: Option<S>,
    records: Vec<(u64, R)>,
    last_seq: u64,
    /// End of the last good line: where the file is cut if the tail is torn.
    good_end: u64,
    /// The bad last line, if any: (1-based line number, message).
    torn: Option<(u64, String)>,
}

/// Reads the whole journal with bounded memory, applying snapshots and
/// records; fails on damage that is not at the end.
fn scan<R: DeserializeOwned, S: DeserializeOwned>(
    path: &Path,
    file: &File,
    max: usize,
) -> Result<Scan<R, S>, JournalError> {
    let corrupt = |line: u64, message: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, file), max);
    let mut buf = Vec::new();
    let mut out = Scan {
        snapshot: None,
        records: Vec::new(),
        last_seq: 0,
        good_end: 0,
        torn: None,
    };
    let mut line_no: u64 = 0;
    while let Some(raw) = reader.next_line(&mut buf).map_err(io_err(path, "read"))? {
        line_no += 1;
        if let Some((bad, message)) = out.torn.take() {
            // Something follows the bad line: not a torn tail.
            return Err(corrupt(bad, message));
        }
        match decode_line::<R, S>(&raw, &buf, max) {
            Ok(Line::Record(Seq { seq, body })) => {
                if seq <= out.last_seq {
                    return Err(corrupt(
                        line_no,
                        format!("record seq {seq} does not follow seq {}", out.last_seq),
                    ));
                }
                out.last_seq = seq;
                out.records.push((seq, body));
                out.good_end = raw.end;
            }
            Ok(Line::Snapshot(Seq { seq, body })) => {
                if seq < out.last_seq {
                    return Err(corrupt(
                        line_no,
                        format!("snapshot seq {seq} is behind seq {}", out.last_seq),
                    ));
                }
                out.last_seq = seq;
                out.snapshot = Some(body);
                out.records.clear();
                out.good_end = raw.end;
            }
            Err(BadLine {
                message,
                torn_like: true,
            }) => out.torn = Some((line_no, message)),
            Err(BadLine {
                message,
                torn_like: false,
            }) => return Err(corrupt(line_no, message)),
        }
    }
    Ok(out)
}

/// Journal bookkeeping that must move together, so a failed sync can roll
/// back to the last durable state in one assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// Bytes of complete lines in the file.
    len: u64,
    /// Sequence number for the next record.
    next_seq: u64,
    /// Records after the last snapshot.
    since_snapshot: usize,
}

/// An open journal, positioned for appending. Not shared between processes:
/// the daemon must hold it exclusively.
pub struct Journal<R, S> {
    path: PathBuf,
    opts: JournalOptions,
    /// `None` after a compaction whose reopen failed; reopened lazily.
    file: Option<File>,
    /// Current state, including appends not yet synced.
    pos: Position,
    /// State as of the last successful sync.
    durable: Position,
    /// A rollback failed: bytes past `pos.len` must be cut before writing.
    needs_truncate: bool,
    /// Reused encode buffer.
    scratch: Vec<u8>,
    #[cfg(test)]
    syncs: u64,
    _types: PhantomData<fn(&R, &S)>,
}

impl<R, S> fmt::Debug for Journal<R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("pos", &self.pos)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl Journal<(), ()> {
    /// Renames a journal that failed with [`JournalError::Corrupt`] to
    /// `<path>.corrupt-<unix-seconds>` (numbered if taken) so the daemon can
    /// start fresh without losing the evidence. Returns the new path.
    pub fn quarantine(path: impl AsRef<Path>) -> Result<PathBuf, JournalError> {
        let path = path.as_ref();
        let base = file::with_suffix(path, &format!(".corrupt-{}", file::unix_seconds()));
        let target = file::unused_path(&base).map_err(io_err(path, "quarantine"))?;
        fs::rename(path, &target).map_err(io_err(path, "quarantine"))?;
        file::sync_parent_dir(path).map_err(io_err(path, "sync directory"))?;
        tracing::warn!(
            event = "journal_quarantined",
            journal = %path.display(),
            quarantined = %target.display(),
            "journal quarantined"
        );
        Ok(target)
    }
}

impl<R, S> Journal<R, S>
where
    R: Serialize + DeserializeOwned,
    S: Serialize + DeserializeOwned,
{
    /// Opens the journal at `path`, creating it (and its directory, mode
    /// 0600) if missing, and returns it with the state to replay. A torn last
    /// line is saved to `<path>.torn-<unix-seconds>`, cut off and reported in
    /// [`Loaded::warnings`]; damage elsewhere is [`JournalError::Corrupt`]
    /// and leaves the file as it was.
    pub fn open(
        path: impl AsRef<Path>,
        opts: JournalOptions,
    ) -> Result<(Self, Loaded<R, S>), JournalError> {
        let path = path.as_ref().to_path_buf();
        let mut warnings = Vec::new();

        file::create_parent_dir(&path).map_err(io_err(&path, "create directory"))?;
        let existed = path.try_exists().map_err(io_err(&path, "open"))?;
        let file = file::open_journal_file(&path).map_err(io_err(&path, "open"))?;
        if !existed {
            file.sync_all().map_err(io_err(&path, "sync"))?;
            file::sync_parent_dir(&path).map_err(io_err(&path, "sync directory"))?;
        }

        let scanned = scan::<R, S>(&path, &file, opts.max_line_bytes)?;

        // A compaction that crashed before its rename leaves its temp file;
        // the journal itself is intact, so just discard it.
        let tmp = Self::tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {
                let msg = format!(
                    "journal {}: removed leftover compaction file {}",
                    path.display(),
                    tmp.display()
                );
                tracing::warn!(event = "journal_warning", "{msg}");
                warnings.push(msg);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "remove temp file")(e)),
        }

        if let Some((line, message)) = &scanned.torn {
            let end = file.metadata().map_err(io_err(&path, "stat"))?.len();
            let base = file::with_suffix(&path, &format!(".torn-{}", file::unix_seconds()));
            let saved = file::save_range(&file, scanned.good_end, end, &base)
                .map_err(io_err(&path, "save torn tail"))?;
            file.set_len(scanned.good_end)
                .map_err(io_err(&path, "truncate torn tail"))?;
            file.sync_all().map_err(io_err(&path, "sync"))?;
            let msg = format!(
                "journal {} line {line}: {message}; dropped {} bytes of torn last line (saved to {})",
                path.display(),
                end - scanned.good_end,
                saved.display()
            );
            tracing::warn!(event = "journal_warning", "{msg}");
            warnings.push(msg);
        }

        let pos = Position {
            len: scanned.good_end,
            next_seq: scanned.last_seq.saturating_add(1),
            since_snapshot: scanned.records.len(),
        };
        let journal = Self {
            path,
            opts,
            file: Some(file),
            pos,
            durable: pos,
            needs_truncate: false,
            scratch: Vec::new(),
            #[cfg(test)]
            syncs: 0,
            _types: PhantomData,
        };
        let loaded = Loaded {
            snapshot: scanned.snapshot,
            records: scanned.records,
            next_seq: pos.next_seq,
            warnings,
        };
        Ok((journal, loaded))
    }

    /// Reads a journal without changing anything (no repair, no creation): for `simulate
    /// --trace` and `status`, which may look at the journal of a running daemon. A torn last
    /// line is skipped with a warning; damage elsewhere is [`JournalError::Corrupt`].
    pub fn read(
        path: impl AsRef<Path>,
        opts: JournalOptions,
    ) -> Result<Loaded<R, S>, JournalError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io_err(path, "open"))?;
        let scanned = scan::<R, S>(path, &file, opts.max_line_bytes)?;
        let mut warnings = Vec::new();
        if let Some((line, message)) = &scanned.torn {
            warnings.push(format!(
                "journal {} line {line}: {message}; ignoring the torn last line",
                path.display()
            ));
        }
        Ok(Loaded {
            snapshot: scanned.snapshot,
            records: scanned.records,
            next_seq: scanned.last_seq.saturating_add(1),
            warnings,
        })
    }

    /// Appends `rec` durably (write then `fdatasync`) and returns its
    /// sequence number. On error nothing of the record remains on disk and
    /// the journal stays usable; records appended with
    /// [`append_no_sync`](Self::append_no_sync) and not yet synced are
    /// rolled back too if the sync fails.
    pub fn append(&mut self, rec: &R) -> Result<u64, JournalError> {
        let seq = self.append_no_sync(rec)?;
        self.sync()?;
        Ok(seq)
    }

    /// Appends `rec` without waiting for the disk, for batches such as a
    /// replay import: call [`sync`](Self::sync) after the batch. Until then
    /// the records may be lost on power loss, and a failed `sync` rolls all
    /// of them back. A failed write leaves no partial line.
    pub fn append_no_sync(&mut self, rec: &R) -> Result<u64, JournalError> {
        self.repair()?;
        let seq = self.pos.next_seq;
        let mut line = std::mem::take(&mut self.scratch);
        let encoded = encode_line(
            &self.path,
            "record",
            &Line::<&R, &S>::Record(Seq { seq, body: rec }),
            self.opts.max_line_bytes,
            &mut line,
        );
        let written = encoded.and_then(|()| self.write_line(&line));
        self.scratch = line;
        let len = written?;
        self.pos.len += len;
        self.pos.next_seq = seq.saturating_add(1);
        self.pos.since_snapshot += 1;
        Ok(seq)
    }

    /// Makes all appended records durable (`fdatasync`). A no-op when
    /// nothing is pending. On failure the unsynced records are cut from the
    /// file (their fate on disk is unknown after a failed fsync) and the
    /// journal continues from the last durable state.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.repair()?;
        if self.pos == self.durable {
            return Ok(());
        }
        let result = self.writer()?.sync_data();
        match result {
            Ok(()) => {
                #[cfg(test)]
                {
                    self.syncs += 1;
                }
                self.durable = self.pos;
                Ok(())
            }
            Err(error) => {
                self.pos = self.durable;
                self.needs_truncate = true;
                // Best effort now; retried before the next write otherwise.
                let _ = self.repair();
                Err(io_err(&self.path, "sync")(error))
            }
        }
    }

    /// Whether the records since the last snapshot exceed
    /// [`JournalOptions::max_records`], i.e. the caller should snapshot its
    /// state and call [`compact`](Self::compact).
    pub fn needs_compaction(&self) -> bool {
        self.pos.since_snapshot > self.opts.max_records
    }

    /// Replaces the journal with `snapshot` followed by `keep_tail`, which
    /// must be the most recent `keep_tail.len()` records appended (they keep
    /// their sequence numbers; the snapshot covers everything before them).
    ///
    /// Crash-safe: the new content is written to `<path>.tmp`, fsynced,
    /// renamed over the journal and the directory fsynced, so either the old
    /// or the new journal is complete at every instant. If an error is
    /// returned after the rename (directory fsync or reopen), the new journal
    /// is already in use.
    pub fn compact(&mut self, snapshot: &S, keep_tail: &[R]) -> Result<(), JournalError> {
        let appended = self.pos.next_seq.saturating_sub(1);
        let tail = keep_tail.len();
        let snapshot_seq = match appended.checked_sub(tail as u64) {
            Some(seq) => seq,
            None => {
                return Err(JournalError::InvalidTail {
                    path: self.path.clone(),
                    tail,
                    appended,
                });
            }
        };
        let tmp = Self::tmp_path(&self.path);
        let new_len = match self.write_compacted(&tmp, snapshot_seq, snapshot, keep_tail) {
            Ok(len) => len,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&self.path, "compact: rename")(e));
        }
        // The new file is the journal now: never write to the old inode.
        self.file = None;
        self.needs_truncate = false;
        self.pos = Position {
            len: new_len,
            next_seq: self.pos.next_seq,
            since_snapshot: tail,
        };
        self.durable = self.pos;
        file::sync_parent_dir(&self.path).map_err(io_err(&self.path, "sync directory"))?;
        self.writer()?;
        tracing::debug!(
            event = "journal_compacted",
            journal = %self.path.display(),
            snapshot_seq,
            tail,
            bytes = new_len,
            "journal compacted"
        );
        Ok(())
    }

    /// Number of records after the last snapshot.
    pub fn len_since_snapshot(&self) -> usize {
        self.pos.since_snapshot
    }

    /// Sequence number the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.pos.next_seq
    }

    /// The journal file, for logs and the daemon's status output.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>.tmp`, where compaction builds the new journal.
    fn tmp_path(path: &Path) -> PathBuf {
        file::with_suffix(path, ".tmp")
    }

    /// The append handle, reopened if a compaction replaced the file.
    fn writer(&mut self) -> Result<&mut File, JournalError> {
        let file = match self.file.take() {
            Some(f) => f,
            None => file::open_journal_file(&self.path).map_err(io_err(&self.path, "reopen"))?,
        };
        Ok(self.file.insert(file))
    }

    /// Cuts bytes a failed rollback left past the last complete line.
    fn repair(&mut self) -> Result<(), JournalError> {
        if self.needs_truncate {
            let len = self.pos.len;
            let file = self.writer()?;
            file.set_len(len).map_err(io_err(&self.path, "truncate"))?;
            self.needs_truncate = false;
        }
        Ok(())
    }

    /// Writes one encoded line; returns its length.
    fn write_line(&mut self, line: &[u8]) -> Result<u64, JournalError> {
        let prev_len = self.pos.len;
        let file = self.writer()?;
        match file::write_or_rollback(file, prev_len, line) {
            Ok(()) => Ok(line.len() as u64),
            Err(failure) => {
                if !failure.rolled_back {
                    self.needs_truncate = true;
                }
                Err(io_err(&self.path, "append")(failure.error))
            }
        }
    }

    /// Writes and fsyncs the compacted journal at `tmp`; returns its length.
    fn write_compacted(
        &self,
        tmp: &Path,
        snapshot_seq: u64,
        snapshot: &S,
        keep_tail: &[R],
    ) -> Result<u64, JournalError> {
        let io_tmp = |op| io_err(tmp, op);
        let max = self.opts.max_line_bytes;
        let mut out = BufWriter::new(file::create_temp_file(tmp).map_err(io_tmp("create"))?);
        let mut line = Vec::new();
        let mut len = 0u64;
        encode_line(
            &self.path,
            "snapshot",
            &Line::<&R, &S>::Snapshot(Seq {
                seq: snapshot_seq,
                body: snapshot,
            }),
            max,
            &mut line,
        )?;
        out.write_all(&line).map_err(io_tmp("write"))?;
        len += line.len() as u64;
        for (seq, rec) in (snapshot_seq + 1..).zip(keep_tail) {
            encode_line(
                &self.path,
                "record",
                &Line::<&R, &S>::Record(Seq { seq, body: rec }),
                max,
                &mut line,
            )?;
            out.write_all(&line).map_err(io_tmp("write"))?;
            len += line.len() as u64;
        }
        let file = out
            .into_inner()
            .map_err(|e| io_tmp("write")(e.into_error()))?;
        file.sync_all().map_err(io_tmp("sync"))?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read as _;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        node: String,
        n: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Snap {
        total: u64,
        nodes: Vec<String>,
    }

    type J = Journal<Rec, Snap>;

    fn rec(n: u32) -> Rec {
        Rec {
            node: format!("node-{n}"),
            n,
        }
    }

    fn opts() -> JournalOptions {
        JournalOptions::default()
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("journal.jsonl");
        (dir, path)
    }

    fn plain(records: &[(u64, Rec)]) -> Vec<Rec> {
        records.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Side files whose name starts with `<journal name><infix>`.
    fn side_files(path: &Path, infix: &str) -> Vec<PathBuf> {
        let prefix = format!("{}{infix}", path.file_name().unwrap().to_string_lossy());
        let mut found: Vec<PathBuf> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .collect();
        found.sort();
        found
    }

    fn write_records(path: &Path, n: u32) {
        let (mut j, _) = J::open(path, opts()).unwrap();
        for i in 1..=n {
            j.append(&rec(i)).unwrap();
        }
    }

    #[test]
    fn round_trip_append_reopen() {
        let (_dir, path) = setup();
        let (mut j, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(loaded.next_seq, 1);
        assert!(loaded.records.is_empty() && loaded.snapshot.is_none());
        assert_eq!(j.append(&rec(1)).unwrap(), 1);
        assert_eq!(j.append(&rec(2)).unwrap(), 2);
        assert_eq!(j.len_since_snapshot(), 2);
        assert_eq!(j.path(), path.as_path());
        drop(j);

        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"kind":"record","seq":1,"node":"node-1","n":1}"#
        );
        let (mut j, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(loaded.records, vec![(1, rec(1)), (2, rec(2))]);
        assert_eq!(loaded.next_seq, 3);
        assert!(loaded.warnings.is_empty());
        assert_eq!(j.append(&rec(3)).unwrap(), 3);
        drop(j);
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1), rec(2), rec(3)]);
    }

    #[cfg(unix)]
    #[test]
    fn new_journal_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = setup();
        J::open(&path, opts()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn append_syncs_and_batches_sync_once() {
        let (_dir, path) = setup();
        let (mut j, _) = J::open(&path, opts()).unwrap();
        j.append(&rec(1)).unwrap();
        assert_eq!(j.syncs, 1);
        j.append_no_sync(&rec(2)).unwrap();
        j.append_no_sync(&rec(3)).unwrap();
        assert_eq!(j.syncs, 1);
        // Written (visible to readers) before the sync.
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
        j.sync().unwrap();
        assert_eq!(j.syncs, 2);
        j.sync().unwrap();
        assert_eq!(j.syncs, 2, "nothing pending: no fsync");
        assert_eq!(j.durable, j.pos);
    }

    #[test]
    fn torn_last_line_is_saved_truncated_and_appends_stay_clean() {
        let (_dir, path) = setup();
        write_records(&path, 2);
        let good = fs::read(&path).unwrap();
        let torn = br#"{"kind":"record","seq":3,"node":"no"#;
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(torn).unwrap();
        drop(f);

        let (mut j, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1), rec(2)]);
        assert_eq!(loaded.next_seq, 3);
        assert_eq!(loaded.warnings.len(), 1);
        let w = &loaded.warnings[0];
        assert!(w.contains(&path.display().to_string()), "{w}");
        assert!(w.contains("line 3"), "{w}");
        assert_eq!(fs::read(&path).unwrap(), good);
        let saved = side_files(&path, ".torn-");
        assert_eq!(saved.len(), 1);
        assert_eq!(fs::read(&saved[0]).unwrap(), torn);

        assert_eq!(j.append(&rec(3)).unwrap(), 3);
        drop(j);
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1), rec(2), rec(3)]);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn complete_last_line_without_newline_is_dropped() {
        let (_dir, path) = setup();
        write_records(&path, 1);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"kind":"record","seq":2,"node":"x","n":2}"#)
            .unwrap();
        drop(f);
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1)]);
        assert!(loaded.warnings[0].contains("no trailing newline"));
    }

    #[test]
    fn invalid_utf8_last_line_is_torn() {
        let (_dir, path) = setup();
        write_records(&path, 2);
        let good_len = fs::metadata(&path).unwrap().len();
        let bad: &[u8] = b"{\"kind\":\"record\",\"seq\":3,\"node\":\"\xff\xfe\",\"n\":3}\n";
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(bad).unwrap();
        drop(f);

        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1), rec(2)]);
        assert!(
            loaded.warnings[0].contains("invalid UTF-8"),
            "{:?}",
            loaded.warnings
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(fs::read(&side_files(&path, ".torn-")[0]).unwrap(), bad);
    }

    #[test]
    fn read_only_skips_a_torn_tail_without_touching_the_file() {
        let (_dir, path) = setup();
        write_records(&path, 3);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"kind\":\"rec").expect("write torn tail");
        drop(f);
        let before = fs::read(&path).expect("read");
        let loaded = Journal::<Rec, Snap>::read(&path, opts()).expect("read-only load");
        assert_eq!(loaded.records.len(), 3);
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert_eq!(fs::read(&path).expect("read"), before, "file changed");
    }

    #[test]
    fn corrupt_middle_line_is_an_error_and_file_is_unchanged() {
        let (_dir, path) = setup();
        write_records(&path, 4);
        let text = fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "garbage";
        let damaged = format!("{}\n", lines.join("\n"));
        fs::write(&path, &damaged).unwrap();

        let err = J::open(&path, opts()).unwrap_err();
        assert_eq!(err.kind(), "corrupt");
        assert!(
            matches!(err, JournalError::Corrupt { line: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.path(), path.as_path());
        assert_eq!(
            err.to_string(),
            format!(
                "journal {} line 3: expected value at line 1 column 1",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), damaged);
        assert!(side_files(&path, ".torn-").is_empty());
    }

    #[test]
    fn wrong_shape_on_complete_last_line_is_corrupt_not_dropped() {
        let (_dir, path) = setup();
        write_records(&path, 1);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"record\",\"seq\":2,\"node\":7}\n")
            .unwrap();
        drop(f);
        let before = fs::read(&path).unwrap();
        let err = J::open(&path, opts()).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 2, .. }),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn out_of_order_seq_is_corrupt() {
        let (_dir, path) = setup();
        write_records(&path, 2);
        let text = fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        fs::write(&path, format!("{text}{first}\n")).unwrap();
        let err = J::open(&path, opts()).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 3, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("seq 1 does not follow seq 2"),
            "{err}"
        );
    }

    #[test]
    fn quarantine_moves_corrupt_journal_aside() {
        let (_dir, path) = setup();
        write_records(&path, 1);
        let content = fs::read(&path).unwrap();
        let moved = Journal::quarantine(&path).unwrap();
        assert!(!path.exists());
        assert!(
            moved
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal.jsonl.corrupt-")
        );
        assert_eq!(fs::read(&moved).unwrap(), content);
        // A second quarantine in the same second does not overwrite.
        fs::write(&path, b"x\n").unwrap();
        let moved2 = Journal::quarantine(&path).unwrap();
        assert_ne!(moved, moved2);
        assert_eq!(fs::read(&moved).unwrap(), content);
        // Missing file: an io error naming the path.
        let err = Journal::quarantine(&path).unwrap_err();
        assert_eq!(err.kind(), "io");
        assert_eq!(err.path(), path.as_path());
        // The daemon can start fresh.
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert!(loaded.records.is_empty());
    }

    #[test]
    fn oversized_line_last_is_torn_middle_is_corrupt() {
        let (_dir, path) = setup();
        let small = JournalOptions {
            max_records: 10,
            max_line_bytes: 256,
        };
        write_records(&path, 1);
        let good_len = fs::metadata(&path).unwrap().len();
        let huge = vec![b'x'; 4 << 20];
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&huge).unwrap();
        drop(f);

        let (_, loaded) = J::open(&path, small).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1)]);
        assert!(loaded.warnings[0].contains("exceeds the 256-byte limit"));
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(
            fs::metadata(&side_files(&path, ".torn-")[0]).unwrap().len(),
            huge.len() as u64
        );

        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&huge).unwrap();
        f.write_all(b"\n{\"kind\":\"record\",\"seq\":2,\"node\":\"a\",\"n\":2}\n")
            .unwrap();
        drop(f);
        let err = J::open(&path, small).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn too_large_record_is_refused_and_journal_stays_usable() {
        let (_dir, path) = setup();
        let small = JournalOptions {
            max_records: 10,
            max_line_bytes: 64,
        };
        let (mut j, _) = J::open(&path, small).unwrap();
        j.append(&rec(1)).unwrap();
        let big = Rec {
            node: "y".repeat(100),
            n: 2,
        };
        let err = j.append(&big).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        assert_eq!(j.append(&rec(2)).unwrap(), 2);
        drop(j);
        let (_, loaded) = J::open(&path, small).unwrap();
        assert_eq!(loaded.records, vec![(1, rec(1)), (2, rec(2))]);
    }

    #[test]
    fn non_object_record_is_an_encode_error() {
        let (_dir, path) = setup();
        let (mut j, _) = Journal::<u32, Snap>::open(&path, opts()).unwrap();
        let err = j.append(&7).unwrap_err();
        assert_eq!(err.kind(), "encode");
        assert_eq!(j.next_seq(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn failed_write_leaves_no_partial_line_and_journal_recovers() {
        let (_dir, path) = setup();
        let (mut j, _) = J::open(&path, opts()).unwrap();
        j.append(&rec(1)).unwrap();
        let before = fs::read(&path).unwrap();
        // Simulate a write that stopped half-way and whose rollback failed.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"kind":"record","se"#).unwrap();
        j.needs_truncate = true;
        assert_eq!(j.append(&rec(2)).unwrap(), 2);
        drop(j);
        let after = fs::read(&path).unwrap();
        assert!(after.starts_with(&before));
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1), rec(2)]);
        assert!(loaded.warnings.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn enospc_is_an_error_not_a_panic() {
        // /dev/full fails every write with ENOSPC.
        let mut full = match fs::OpenOptions::new().write(true).open("/dev/full") {
            Ok(f) => f,
            Err(_) => return,
        };
        let err = file::write_or_rollback(&mut full, 0, b"{}\n").unwrap_err();
        assert_eq!(err.error.raw_os_error(), Some(28));
    }

    #[test]
    fn empty_file_opens_clean() {
        let (_dir, path) = setup();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"").unwrap();
        let (j, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(loaded.next_seq, 1);
        assert!(loaded.snapshot.is_none() && loaded.records.is_empty());
        assert!(loaded.warnings.is_empty());
        assert!(!j.needs_compaction());
    }

    #[test]
    fn file_with_only_a_snapshot() {
        let (_dir, path) = setup();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            b"{\"kind\":\"snapshot\",\"seq\":41,\"total\":41,\"nodes\":[\"a\"]}\n",
        )
        .unwrap();
        let (mut j, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(
            loaded.snapshot,
            Some(Snap {
                total: 41,
                nodes: vec!["a".into()]
            })
        );
        assert!(loaded.records.is_empty());
        assert_eq!(loaded.next_seq, 42);
        assert_eq!(j.len_since_snapshot(), 0);
        assert_eq!(j.append(&rec(1)).unwrap(), 42);
    }

    #[test]
    fn compaction_keeps_snapshot_and_tail_and_seq_continues() {
        let (_dir, path) = setup();
        let o = JournalOptions {
            max_records: 3,
            max_line_bytes: 1024,
        };
        let (mut j, _) = J::open(&path, o).unwrap();
        for i in 1..=4 {
            j.append(&rec(i)).unwrap();
        }
        assert!(j.needs_compaction());
        let snap = Snap {
            total: 2,
            nodes: vec!["node-1".into(), "node-2".into()],
        };
        j.compact(&snap, &[rec(3), rec(4)]).unwrap();
        assert!(!j.needs_compaction());
        assert_eq!(j.len_since_snapshot(), 2);
        assert!(!file::with_suffix(&path, ".tmp").exists());
        assert_eq!(j.append(&rec(5)).unwrap(), 5);
        drop(j);

        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"snapshot","seq":2,"total":2,"#),
            "{text}"
        );
        let (mut j, loaded) = J::open(&path, o).unwrap();
        assert_eq!(loaded.snapshot, Some(snap.clone()));
        assert_eq!(loaded.records, vec![(3, rec(3)), (4, rec(4)), (5, rec(5))]);
        assert_eq!(loaded.next_seq, 6);

        // Compacting with an empty tail still preserves next_seq.
        j.compact(&snap, &[]).unwrap();
        drop(j);
        let (mut j, loaded) = J::open(&path, o).unwrap();
        assert!(loaded.records.is_empty());
        assert_eq!(loaded.next_seq, 6);
        assert_eq!(j.append(&rec(6)).unwrap(), 6);

        let err = j.compact(&snap, &vec![rec(0); 7]).unwrap_err();
        assert_eq!(err.kind(), "invalid_tail");
    }

    #[test]
    fn leftover_compaction_temp_file_is_removed() {
        let (_dir, path) = setup();
        write_records(&path, 1);
        let tmp = file::with_suffix(&path, ".tmp");
        fs::write(&tmp, b"{\"kind\":\"snapshot\"").unwrap();
        let (_, loaded) = J::open(&path, opts()).unwrap();
        assert_eq!(plain(&loaded.records), vec![rec(1)]);
        assert!(!tmp.exists());
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn error_labels_and_display() {
        let e = JournalError::Io {
            path: "/var/lib/x/journal.jsonl".into(),
            op: "append",
            error: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert_eq!(e.kind(), "io");
        assert!(
            e.to_string()
                .starts_with("journal /var/lib/x/journal.jsonl: append: ")
        );
        let e = JournalError::Corrupt {
            path: "/var/lib/x/journal.jsonl".into(),
            line: 17,
            message: "expected value at column 1".into(),
        };
        assert_eq!(
            e.to_string(),
            "journal /var/lib/x/journal.jsonl line 17: expected value at column 1"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Power loss at any byte (optionally followed by zero-filled
        /// blocks) must reopen to a prefix of what was appended, never fail.
        #[test]
        fn truncation_anywhere_yields_a_prefix(
            recs in prop::collection::vec(("[a-z\u{e9}\u{4e2d}\"\\\\]{0,12}", any::<u32>()), 1..20),
            cut in any::<prop::sample::Index>(),
            zeros in 0usize..40,
        ) {
            let (_dir, path) = setup();
            let appended: Vec<Rec> = recs
                .into_iter()
                .map(|(node, n)| Rec { node, n })
                .collect();
            {
                let (mut j, _) = J::open(&path, opts()).unwrap();
                for r in &appended {
                    j.append(r).unwrap();
                }
            }
            let full = fs::read(&path).unwrap();
            let at = cut.index(full.len() + 1);
            let mut damaged = full[..at].to_vec();
            damaged.extend(std::iter::repeat_n(0u8, zeros));
            fs::write(&path, &damaged).unwrap();

            let (mut j, loaded) = J::open(&path, opts()).unwrap();
            let got = plain(&loaded.records);
            prop_assert!(got.len() <= appended.len());
            prop_assert_eq!(&got[..], &appended[..got.len()]);
            let whole_lines = full[..at].iter().filter(|&&b| b == b'\n').count();
            prop_assert_eq!(got.len(), whole_lines);
            prop_assert_eq!(loaded.next_seq, got.len() as u64 + 1);

            // And the journal keeps working after the repair.
            let extra = Rec { node: "after".into(), n: 0 };
            j.append(&extra).unwrap();
            drop(j);
            let (_, again) = J::open(&path, opts()).unwrap();
            prop_assert!(again.warnings.is_empty());
            prop_assert_eq!(again.records.len(), got.len() + 1);
            let mut f = File::open(&path).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            prop_assert!(!bytes.contains(&0));
        }
    }
}
