//! The embedded file log: a durable, append-only sequence of opaque byte
//! records with dense indexes starting at 1, kept as segment files in one
//! directory. The sequencer appends one encoded batch per record and
//! acknowledges nothing before [`FileLog::sync`] returns; engines replay the
//! records with [`FileLog::read_from`].
//!
//! This module owns the on-disk format, crash recovery (telling a torn tail
//! from corruption), segment roll-over and prefix deletion. It does not
//! interpret payloads and knows nothing of Raft.
//!
//! # On-disk format, version 1
//!
//! A log is a directory holding segment files, a manifest in two copies
//! (`MANIFEST-0`, `MANIFEST-1`: which segments exist, see
//! [`crate::manifest`]) and a `LOCK` file (held with `flock` while a
//! [`FileLog`] is open). A segment the manifest lists that is missing is
//! refused at open, naming the file and the indexes it held, so a deleted
//! newest segment is not mistaken for a shorter log. A segment is named after the index
//! of its first record, in 20 decimal digits: `00000000000000000001.log`.
//! It holds consecutive records and nothing else; there is no segment
//! header, because the name gives the first index and every record carries
//! its own. Segments are dense: each one starts at the index after the last
//! record of the one before. A segment is rolled over when the next record
//! would take it past `segment_bytes_max`; a record larger than that gets a
//! segment of its own.
//!
//! A record is a 64-byte header followed by the payload. Integers are
//! little-endian.
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic, ASCII `ORDL` |
//! | 4 | 2 | format version, 1 |
//! | 6 | 2 | reserved, zero |
//! | 8 | 4 | payload length in bytes |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | record index |
//! | 24 | 16 | chain value of the previous record ([`CHAIN_GENESIS`] for index 1) |
//! | 40 | 16 | chain value of this record |
//! | 56 | 8 | checksum |
//! | 64 | n | payload |
//!
//! - `chain_i = xxh3_128(chain_{i-1} ++ index ++ payload)`, with the chain
//!   as 16 bytes and the index as 8 bytes, both little-endian.
//! - `checksum = xxh3_64(header bytes 0..56 ++ payload)`.
//!
//! Each record stores the previous chain value as well as its own, so it can
//! be verified on its own. After [`FileLog::truncate_prefix`] has deleted
//! old segments, verification starts at the first remaining record: its
//! stored previous chain is trusted (nothing older is left to check it
//! against), and every record after it is checked against its predecessor.
//!
//! # Crash rules
//!
//! Writes are ordered so that only the last segment can hold unsynced data:
//! a segment is `fdatasync`ed before its successor is created, and creating
//! a segment fsyncs the directory. [`FileLog::open`] fsyncs the last segment
//! and the directory, so everything it returns is durable even if the
//! previous process died without syncing.
//!
//! When `open` meets a record it cannot read (header cut short, wrong
//! magic, version or reserved bits, length over the limit, payload cut
//! short, checksum mismatch), it decides as follows:
//!
//! - **Torn tail.** The record is in the last segment and no valid record
//!   (a header that parses, a payload inside the file, a matching checksum)
//!   starts anywhere after it. This is a write that was never synced.
//!   `open` truncates the file at the record's offset, fsyncs it and
//!   reports a [`Recovery`].
//! - **Corruption.** The record is in an earlier segment, or a valid record
//!   follows it. `open` fails with [`LogError::Corrupt`], which names the
//!   file and the byte offset. Nothing is skipped or repaired.
//!
//! A record whose checksum matches but whose index or chain is wrong is
//! always corruption, and so is a gap or overlap between segments.
//!
//! Two limits of this rule. A synced last record that rots on disk looks
//! just like a torn write: it is truncated and reported, and a replica must
//! supply it again. And if the disk persists unsynced pages out of order, a
//! missing unsynced record may sit before an intact unsynced one. `open`
//! then reports corruption instead of guessing. That is a false alarm that
//! needs an operator; it never loses data silently.
//!
//! # Fail stop
//!
//! A failed write, fsync, segment creation or directory fsync poisons the
//! log: every later append and sync returns [`LogError::Poisoned`], and
//! nothing past [`FileLog::synced_index`] was ever reported durable. A
//! retry is never safe: after a failed fsync Linux may drop the dirty
//! pages and report the next fsync as a success (PostgreSQL's
//! "fsyncgate"). Only a reopen, which reads back and verifies what is
//! there, goes on.
//!
//! # Storage
//!
//! Every file operation goes through a [`Storage`]: [`FileLog::open`]
//! uses [`OsStorage`], the real file system; [`FileLog::open_with`] takes
//! any other, such as the fault-injecting
//! `storage::sim::SimStorage` the tests use. The format and the rules
//! above do not depend on which.
//!
//! # Example
//!
//! ```
//! use ordo_sequencer::file_log::{FileLog, FileLogConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = FileLog::open(FileLogConfig::new(dir.path())).unwrap();
//! assert_eq!(log.append(b"first batch").unwrap(), 1);
//! assert_eq!(log.append_batch(&[b"second", b"third"]).unwrap(), 2..4);
//! log.sync().unwrap(); // one fdatasync covers all three: group commit
//! drop(log);
//!
//! let log = FileLog::open(FileLogConfig::new(dir.path())).unwrap();
//! assert!(log.recovery().is_none());
//! let records: Vec<(u64, Vec<u8>)> =
//!     log.read_from(2).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(records, vec![(2, b"second".to_vec()), (3, b"third".to_vec())]);
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, IoSlice, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3Default;

use crate::manifest;
use crate::storage::{self, AppendFile, OsStorage, ReadFile, Storage, StorageLock};

/// A segment is rolled over before a record would take it past this size.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// The largest payload of one record (the header not included).
pub const RECORD_BYTES_MAX_DEFAULT: u32 = 64 * 1024 * 1024;
/// The size of a record header; see the module docs for its layout.
pub const HEADER_BYTES: usize = 64;
/// The on-disk format version written in every record header.
pub const FORMAT_VERSION: u16 = 1;
/// The chain value before record 1.
pub const CHAIN_GENESIS: u128 = u128::from_le_bytes(*b"ordo-log-genesis");

const RECORD_MAGIC: [u8; 4] = *b"ORDL";
/// The header bytes the checksum covers: everything before the checksum.
const HEADER_CHECKED_BYTES: usize = 56;
const SEGMENT_NAME_DIGITS: usize = 20;
const SEGMENT_SUFFIX: &str = ".log";
const LOCK_FILE_NAME: &str = "LOCK";

/// Written (durably, beside the segments) when an fsync fails: the last
/// index that was synced before it. See [`FileLog::open_with`]: the next
/// start cuts every record after it.
pub const FAILED_SYNC_FILE_NAME: &str = "FAILED-SYNC";
const FAILED_SYNC_MAGIC: &[u8; 8] = b"ordofsf1";
const FAILED_SYNC_BYTES: usize = 8 + 8 + 8;
/// Writes of [`FAILED_SYNC_FILE_NAME`] tried before giving up.
const FAILED_SYNC_WRITE_ATTEMPTS: usize = 3;
/// Large enough that scanning a segment costs few syscalls, small enough to
/// keep one per reader without thinking about it.
const READ_BUFFER_BYTES: usize = 256 * 1024;

const _: () = assert!(HEADER_CHECKED_BYTES + 8 == HEADER_BYTES);

/// Where the log lives and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLogConfig {
    pub dir: PathBuf,
    /// A segment is rolled over before a record would take it past this.
    pub segment_bytes_max: u64,
    /// The largest payload [`FileLog::append`] accepts. A header on disk
    /// claiming more is an unreadable record (torn or corrupt), unless its
    /// checksum proves it was written under a larger limit: then `open`
    /// fails with [`LogError::RecordOverLimit`] rather than truncating it.
    pub record_bytes_max: u32,
    /// Open even though the manifest lists newest segments that are gone
    /// (their records are lost), and record what is there now. Only for an
    /// operator who has decided to accept that loss (`ordo repair
    /// --accept-loss`); never set by a node on its own.
    pub accept_lost_segments: bool,
}

impl FileLogConfig {
    /// A config with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> FileLogConfig {
        FileLogConfig {
            dir: dir.into(),
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            accept_lost_segments: false,
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes_max < HEADER_BYTES as u64 {
            return Err(LogError::Config(format!(
                "segment_bytes_max is {} bytes, less than one record header ({HEADER_BYTES} bytes)",
                self.segment_bytes_max
            )));
        }
        Ok(())
    }
}

/// Why a record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    #[error("the file ends {bytes_available} bytes into the record header ({HEADER_BYTES} bytes)")]
    HeaderIncomplete { bytes_available: u64 },
    #[error("the header does not start with the record magic")]
    BadMagic,
    #[error("the header has format version {version}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { version: u16 },
    #[error("reserved header bits are set")]
    ReservedNonZero,
    #[error(
        "the header claims a {payload_bytes} byte payload, over record_bytes_max ({record_bytes_max} bytes)"
    )]
    TooLarge {
        payload_bytes: u32,
        record_bytes_max: u32,
    },
    #[error(
        "the header claims a {payload_bytes} byte payload but only {bytes_available} bytes follow it"
    )]
    PayloadIncomplete {
        payload_bytes: u32,
        bytes_available: u64,
    },
    #[error("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    ChecksumMismatch { stored: u64, computed: u64 },
    /// Not a fault of the bytes: the record came after the last index an
    /// fsync made durable before an fsync failed ([`FAILED_SYNC_FILE_NAME`]).
    /// The page cache may still show such records although the disk
    /// dropped them, so a start keeps none of them.
    #[error(
        "it comes after index {durable_index}, the last one synced before an fsync failed, so the disk may not hold it"
    )]
    AfterFailedSync { durable_index: u64 },
}

/// What is wrong with a log that cannot be opened or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// [`FAILED_SYNC_FILE_NAME`] is there but is not one (it is written
    /// atomically, so this is damage, not a crash).
    #[error(
        "the failed-fsync record is not {FAILED_SYNC_BYTES} bytes with a valid checksum, so the log cannot tell which records after a failed fsync to cut"
    )]
    BadFailedSyncRecord,
    #[error(
        "unreadable record ({fault}) followed by a valid record at byte offset {valid_record_offset}, so this is not a torn write"
    )]
    BadRecordBeforeValid {
        fault: RecordFault,
        valid_record_offset: u64,
    },
    #[error(
        "unreadable record ({fault}) in a segment that is not the last one (it was synced before the next segment was created)"
    )]
    BadRecordInSealedSegment { fault: RecordFault },
    #[error("unreadable record ({fault})")]
    BadRecord { fault: RecordFault },
    #[error("record has index {found}, expected {expected}")]
    IndexMismatch { expected: u64, found: u64 },
    #[error(
        "hash chain break at index {index}: the record's previous chain is {stored_prev:#034x}, the previous record's chain is {expected_prev:#034x}"
    )]
    ChainBreak {
        index: u64,
        expected_prev: u128,
        stored_prev: u128,
    },
    #[error(
        "hash chain mismatch at index {index}: stored {stored:#034x}, computed {computed:#034x}"
    )]
    ChainMismatch {
        index: u64,
        stored: u128,
        computed: u128,
    },
    #[error(
        "segment is named for index {named} but index {expected} comes next (a gap if larger: was a segment file deleted? an overlap if smaller)"
    )]
    SegmentStartMismatch { named: u64, expected: u64 },
    #[error(
        "the only segment is empty and starts at index {first_index}, so the chain value before it is unknown"
    )]
    EmptyLogAfterCompaction { first_index: u64 },
}

/// Everything that can go wrong with a [`FileLog`].
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("file log: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "file log corrupt: {} at byte offset {offset}: {corruption}. Nothing was skipped or repaired; \
         stop this node and restore its log directory from a replica or a backup",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        corruption: Corruption,
    },
    #[error(
        "file log: {} at byte offset {offset} holds a valid {payload_bytes} byte record, over \
         record_bytes_max ({record_bytes_max} bytes); reopen with record_bytes_max of at least {payload_bytes}",
        path.display()
    )]
    RecordOverLimit {
        path: PathBuf,
        offset: u64,
        payload_bytes: u32,
        record_bytes_max: u32,
    },
    #[error(
        "payload of {payload_bytes} bytes is over record_bytes_max ({record_bytes_max} bytes); nothing was appended"
    )]
    RecordTooLarge {
        payload_bytes: u64,
        record_bytes_max: u32,
    },
    #[error(
        "index {index} was removed by truncate_prefix; the log now starts at index {first_index}"
    )]
    Compacted { index: u64, first_index: u64 },
    #[error(
        "index {index} is outside the log (indexes start at 1; the last index is {last_index})"
    )]
    OutOfRange { index: u64, last_index: u64 },
    #[error(
        "file log is unusable after an earlier write or fsync error: what reached the disk is unknown \
         and retrying fsync is unsafe; reopen the log to recover"
    )]
    Poisoned,
    #[error("file log directory {} is locked by another open FileLog (in this or another process)", dir.display())]
    Locked { dir: PathBuf },
    #[error("invalid file log config: {0}")]
    Config(String),
    #[error(
        "file log in {}: {detail}. Acknowledged records may be gone; this node refuses to start with \
         less than it had. Restore the missing files from a backup or a replica, or, to accept the \
         loss, run `ordo repair --accept-loss --data DIR`",
        dir.display()
    )]
    MissingSegments { dir: PathBuf, detail: String },
    #[error(
        "file log in {}: both copies of the manifest are damaged ({}); restore the log directory \
         from a backup or a replica",
        dir.display(),
        reasons.join("; ")
    )]
    ManifestDamaged { dir: PathBuf, reasons: Vec<String> },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A torn tail that [`FileLog::open`] cut off. The node should log it.
/// Usually the bytes were writes that never completed a sync, so nothing
/// acknowledged was lost; but a synced last record that rotted, or was cut
/// by hand, looks the same, so the message cannot promise that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The segment that was truncated.
    pub path: PathBuf,
    /// The byte offset the segment was truncated at: the start of the
    /// unreadable record.
    pub offset: u64,
    pub truncated_bytes: u64,
    /// What was wrong with the record at `offset`.
    pub fault: RecordFault,
    /// The last index in the log after the truncation (0 if empty).
    pub last_index: u64,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let RecordFault::AfterFailedSync { durable_index } = self.fault {
            return write!(
                f,
                "file log: an fsync failed in the last run after index {durable_index}; cut the {} bytes of records appended after it in {} from byte offset {}. None of them was acknowledged (a node answers only after a successful fsync), and the page cache may show them although the disk dropped them",
                self.truncated_bytes,
                self.path.display(),
                self.offset
            );
        }
        write!(
            f,
            "file log: torn tail in {} at byte offset {}: {}; cut {} bytes after index {}. \
             A crash during a write leaves such a tail, and then nothing cut was acknowledged; \
             but if these bytes had been synced (a damaged disk, a file cut by hand), the records \
             in them were acknowledged and are lost on this node (a cluster member gets them \
             back from the others)",
            self.path.display(),
            self.offset,
            self.fault,
            self.truncated_bytes,
            self.last_index
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordHeader {
    payload_bytes: u32,
    index: u64,
    chain_prev: u128,
    chain: u128,
    checksum: u64,
}

impl RecordHeader {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[0..4].copy_from_slice(&RECORD_MAGIC);
        bytes[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 6..8 and 12..16 are reserved and stay zero.
        bytes[8..12].copy_from_slice(&self.payload_bytes.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.index.to_le_bytes());
        bytes[24..40].copy_from_slice(&self.chain_prev.to_le_bytes());
        bytes[40..56].copy_from_slice(&self.chain.to_le_bytes());
        bytes[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        bytes
    }

    /// Checks what can be checked without the payload, except the length
    /// limit: the caller decides what an over-limit length means.
    fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<RecordHeader, RecordFault> {
        let field = |range: Range<usize>| &bytes[range];
        if field(0..4) != RECORD_MAGIC {
            return Err(RecordFault::BadMagic);
        }
        let version = u16::from_le_bytes(field(4..6).try_into().unwrap());
        if version != FORMAT_VERSION {
            return Err(RecordFault::UnsupportedVersion { version });
        }
        if field(6..8) != [0; 2] || field(12..16) != [0; 4] {
            return Err(RecordFault::ReservedNonZero);
        }
        Ok(RecordHeader {
            payload_bytes: u32::from_le_bytes(field(8..12).try_into().unwrap()),
            index: u64::from_le_bytes(field(16..24).try_into().unwrap()),
            chain_prev: u128::from_le_bytes(field(24..40).try_into().unwrap()),
            chain: u128::from_le_bytes(field(40..56).try_into().unwrap()),
            checksum: u64::from_le_bytes(field(56..64).try_into().unwrap()),
        })
    }

    fn record_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + u64::from(self.payload_bytes)
    }
}

/// Both hashes over one record, fed the payload in pieces so that a scan
/// never has to hold a whole payload in memory.
struct RecordHasher {
    checksum: Xxh3Default,
    chain: Xxh3Default,
}

impl RecordHasher {
    fn new(header: &[u8; HEADER_BYTES], index: u64, chain_prev: u128) -> RecordHasher {
        let mut checksum = Xxh3Default::new();
        checksum.update(&header[..HEADER_CHECKED_BYTES]);
        RecordHasher {
            checksum,
            chain: chain_hasher(chain_prev, index),
        }
    }

    fn update(&mut self, payload_part: &[u8]) {
        self.checksum.update(payload_part);
        self.chain.update(payload_part);
    }

    /// `(checksum, chain)`.
    fn finish(&self) -> (u64, u128) {
        (self.checksum.digest(), self.chain.digest128())
    }
}

fn chain_hasher(chain_prev: u128, index: u64) -> Xxh3Default {
    let mut chain = Xxh3Default::new();
    chain.update(&chain_prev.to_le_bytes());
    chain.update(&index.to_le_bytes());
    chain
}

/// Encodes the header of the record `index` holding `payload`.
fn encode_record_header(index: u64, chain_prev: u128, payload: &[u8]) -> RecordHeader {
    let payload_bytes =
        u32::try_from(payload.len()).expect("payload length checked against record_bytes_max");
    let mut chain = chain_hasher(chain_prev, index);
    chain.update(payload);
    let mut header = RecordHeader {
        payload_bytes,
        index,
        chain_prev,
        chain: chain.digest128(),
        checksum: 0,
    };
    let mut checksum = Xxh3Default::new();
    checksum.update(&header.encode()[..HEADER_CHECKED_BYTES]);
    checksum.update(payload);
    header.checksum = checksum.digest();
    header
}

/// One segment file as known in memory. Only the last one grows.
#[derive(Clone, Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
    /// The bytes of complete records; for the last segment, where the next
    /// record goes.
    bytes: u64,
    records: u64,
}

impl Segment {
    /// The index of the last record, or `first_index - 1` if empty.
    fn last_index(&self) -> u64 {
        self.first_index + self.records - 1
    }
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!(
        "{first_index:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

/// The first index a file name stands for, if it is a segment's name.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The last synced index [`FileLog::record_failed_sync`] wrote at `path`,
/// if there is such a file.
fn read_failed_sync(storage: &dyn Storage, path: &Path) -> Result<Option<u64>, LogError> {
    let io_error = |action| {
        move |source| LogError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    // The length first, so a damaged (say, huge) file is never read whole.
    let file_bytes = match storage.file_len(path) {
        Ok(file_bytes) => file_bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("stat")(source)),
    };
    let bytes = if file_bytes == FAILED_SYNC_BYTES as u64 {
        storage.read_file(path).map_err(io_error("read"))?
    } else {
        Vec::new()
    };
    let valid = bytes.len() == FAILED_SYNC_BYTES
        && bytes[..8] == FAILED_SYNC_MAGIC[..]
        && xxhash_rust::xxh3::xxh3_64(&bytes[..16]).to_le_bytes()[..] == bytes[16..];
    if !valid {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            corruption: Corruption::BadFailedSyncRecord,
        });
    }
    let durable_index = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(Some(durable_index))
}

fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
    storage
        .sync_dir(dir)
        .map_err(io_error("fsync directory", dir))
}

/// An fdatasync begun by [`FileLog::begin_sync`].
#[derive(Debug)]
pub struct PendingSync {
    /// The active segment's handle, shared with the log (no `dup`).
    file: Arc<dyn AppendFile>,
    path: PathBuf,
    up_to_index: u64,
}

impl PendingSync {
    /// Records up to this index are durable once [`PendingSync::run`]
    /// succeeds.
    pub fn up_to_index(&self) -> u64 {
        self.up_to_index
    }

    /// The fdatasync itself; call [`FileLog::finish_sync`] with the result.
    pub fn run(&self) -> Result<(), LogError> {
        self.file.sync_data().map_err(|source| LogError::Io {
            action: "fdatasync segment",
            path: self.path.clone(),
            source,
        })
    }
}

/// An append-only log of opaque records in segment files. See the module
/// docs for the format and the crash rules.
///
/// Not thread-safe by itself (`append` takes `&mut self`); a directory can
/// be open in at most one `FileLog` at a time. After a failed write or
/// fsync it refuses every append and sync until reopened (see "Fail
/// stop" in the module docs).
#[derive(Debug)]
pub struct FileLog {
    config: FileLogConfig,
    storage: Arc<dyn Storage>,
    /// Held for its `flock`, released when the log is dropped.
    _lock: StorageLock,
    /// In index order, dense. Empty only for a log that never had a record.
    segments: Vec<Segment>,
    /// Append handle on the last segment, shared with a [`PendingSync`].
    active: Option<Arc<dyn AppendFile>>,
    last_index: u64,
    last_chain: u128,
    synced_index: u64,
    /// Set by a failed write or fsync: the file's state is then unknown, and
    /// a retried fsync can report success without the data being on disk.
    poisoned: bool,
    recovery: Option<Recovery>,
    headers_scratch: Vec<[u8; HEADER_BYTES]>,
    /// Generation of the manifest last written (see [`crate::manifest`]).
    manifest_generation: u64,
}

impl FileLog {
    /// Opens the log in `config.dir`, creating the directory if needed,
    /// verifies every segment, and cuts off a torn tail (see
    /// [`FileLog::recovery`]). Fails with [`LogError::Corrupt`] on anything
    /// that is not a torn tail. The log runs on the real file system
    /// ([`OsStorage`]); see [`FileLog::open_with`] for another storage.
    pub fn open(config: FileLogConfig) -> Result<FileLog, LogError> {
        FileLog::open_with(config, OsStorage::shared())
    }

    /// [`FileLog::open`] over `storage`: the same format, rules and
    /// system calls, on whatever disk `storage` is (a simulated one with
    /// faults, in tests).
    pub fn open_with(
        config: FileLogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<FileLog, LogError> {
        config.validate()?;
        let dir = config.dir.clone();
        if !storage.is_dir(&dir) {
            storage
                .create_dir_all(&dir)
                .map_err(io_error("create directory", &dir))?;
            // The new directory's own entry must be durable too.
            sync_dir(&*storage, storage::parent_dir(&dir))?;
        }
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = match storage.lock(&lock_path) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(LogError::Locked { dir }),
            Err(source) => {
                return Err(LogError::Io {
                    action: "lock",
                    path: lock_path,
                    source,
                });
            }
        };

        let mut first_indexes = Vec::new();
        for name in storage
            .list_dir(&dir)
            .map_err(io_error("list directory", &dir))?
        {
            if let Some(first_index) = name.to_str().and_then(parse_segment_name) {
                first_indexes.push(first_index);
            }
        }
        first_indexes.sort_unstable();
        let (manifest_generation, manifest_stale) = check_manifest(
            &*storage,
            &dir,
            &mut first_indexes,
            config.accept_lost_segments,
        )?;

        let mut log = FileLog {
            config,
            storage,
            _lock: lock,
            segments: Vec::with_capacity(first_indexes.len()),
            active: None,
            last_index: 0,
            last_chain: CHAIN_GENESIS,
            synced_index: 0,
            poisoned: false,
            recovery: None,
            headers_scratch: Vec::new(),
            manifest_generation,
        };
        let failed_sync_path = dir.join(FAILED_SYNC_FILE_NAME);
        let durable_index_max = read_failed_sync(&*log.storage, &failed_sync_path)?;
        let mut manifest_stale = manifest_stale;
        let mut segment_count = first_indexes.len();
        if let Some(durable_index) = durable_index_max {
            // Segments that hold only records after the failed fsync's
            // durable point go first, newest first (a later segment needs
            // the earlier ones, so a crash part way leaves a dense log).
            while segment_count > 1 && first_indexes[segment_count - 1] > durable_index {
                let path = segment_path(&dir, first_indexes[segment_count - 1]);
                log.storage
                    .remove_file(&path)
                    .map_err(io_error("remove segment", &path))?;
                segment_count -= 1;
                manifest_stale = true;
            }
            first_indexes.truncate(segment_count);
            sync_dir(&*log.storage, &dir)?;
        }
        for (position, &first_index) in first_indexes.iter().enumerate() {
            let path = segment_path(&dir, first_index);
            let is_first = position == 0;
            let is_last = position + 1 == segment_count;
            // The first segment may start anywhere above 0 (truncate_prefix).
            let expected_first_index = if is_first {
                first_index.max(1)
            } else {
                log.last_index + 1
            };
            if first_index != expected_first_index {
                return Err(LogError::Corrupt {
                    path,
                    offset: 0,
                    corruption: Corruption::SegmentStartMismatch {
                        named: first_index,
                        expected: expected_first_index,
                    },
                });
            }
            // The first segment of a compacted log starts from its stored
            // previous chain; every other one continues the chain before it.
            let chain_prev = if is_first && first_index > 1 {
                None
            } else {
                Some(log.last_chain)
            };
            let mut scan = scan_segment(
                &*log.storage,
                &path,
                first_index,
                chain_prev,
                log.config.record_bytes_max,
                durable_index_max.unwrap_or(u64::MAX),
            )?;
            if let Some(durable_index) = durable_index_max
                && scan.capped
            {
                // Whatever follows the durable point goes, readable or not.
                scan.bad = Some((
                    scan.valid_bytes,
                    RecordFault::AfterFailedSync { durable_index },
                ));
            }
            let segment = Segment {
                first_index,
                path,
                bytes: scan.valid_bytes,
                records: scan.records,
            };
            if let Some((offset, fault)) = scan.bad {
                assert_eq!(offset, scan.valid_bytes);
                if !is_last {
                    return Err(LogError::Corrupt {
                        path: segment.path,
                        offset,
                        corruption: Corruption::BadRecordInSealedSegment { fault },
                    });
                }
                let after_failed_sync = matches!(fault, RecordFault::AfterFailedSync { .. });
                if !after_failed_sync
                    && let Some(valid_record_offset) =
                        find_valid_record(&*log.storage, &segment.path, offset)?
                {
                    return Err(LogError::Corrupt {
                        path: segment.path,
                        offset,
                        corruption: Corruption::BadRecordBeforeValid {
                            fault,
                            valid_record_offset,
                        },
                    });
                }
                let file_bytes = truncate_file(&*log.storage, &segment.path, offset)?;
                log.recovery = Some(Recovery {
                    path: segment.path.clone(),
                    offset,
                    truncated_bytes: file_bytes - offset,
                    fault,
                    last_index: segment.last_index(),
                });
            }
            // An empty segment before the last one cannot get here: the next
            // segment would need its name, and fails the start check above.
            if segment.records == 0 && is_first && first_index > 1 {
                return Err(LogError::Corrupt {
                    path: segment.path,
                    offset: 0,
                    corruption: Corruption::EmptyLogAfterCompaction { first_index },
                });
            }
            if let Some(chain) = scan.last_chain {
                log.last_chain = chain;
            }
            log.last_index = segment.last_index();
            log.segments.push(segment);
        }

        if let Some(last) = log.segments.last() {
            // Every byte past `last.bytes` was cut above, so the end of
            // the file is where the next record goes.
            let active = log
                .storage
                .open_append(&last.path)
                .map_err(io_error("open segment", &last.path))?;
            // A previous process may have died after writing but before
            // syncing, or after creating this segment but before syncing the
            // directory: make what we are about to report durable.
            active
                .sync_all()
                .map_err(io_error("fsync segment", &last.path))?;
            sync_dir(&*log.storage, &dir)?;
            log.active = Some(active);
        }
        log.synced_index = log.last_index;
        if let Some(recovery) = &log.recovery {
            assert_eq!(recovery.last_index, log.last_index);
        }
        if manifest_stale {
            log.write_manifest(log.segments.len())?;
        }
        if durable_index_max.is_some() {
            // The cut is durable (truncate syncs, the directory and the
            // manifest were synced above): the marker has done its work.
            log.storage
                .remove_file(&failed_sync_path)
                .map_err(io_error("remove", &failed_sync_path))?;
            sync_dir(&*log.storage, &dir)?;
        }
        Ok(log)
    }

    /// Appends one record and returns its index. The record reaches the
    /// file (one `writev`) but is not durable before [`FileLog::sync`].
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let indexes = self.append_batch(&[payload])?;
        debug_assert_eq!(indexes.end - indexes.start, 1);
        Ok(indexes.start)
    }

    /// Appends records in order, one `writev` per segment touched, and
    /// returns their indexes. Either every payload is within
    /// `record_bytes_max` or nothing is appended. Not durable before
    /// [`FileLog::sync`].
    pub fn append_batch(&mut self, payloads: &[&[u8]]) -> Result<Range<u64>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let record_bytes_max = self.config.record_bytes_max;
        if let Some(payload) = payloads
            .iter()
            .find(|payload| payload.len() as u64 > u64::from(record_bytes_max))
        {
            return Err(LogError::RecordTooLarge {
                payload_bytes: payload.len() as u64,
                record_bytes_max,
            });
        }
        let first_index = self.last_index + 1;
        let mut done = 0;
        while done < payloads.len() {
            let record_bytes = HEADER_BYTES as u64 + payloads[done].len() as u64;
            if self.needs_roll(record_bytes) {
                self.roll()?;
            }
            // Take records while they fit; the first always goes in, so
            // a record larger than segment_bytes_max gets its own segment.
            let segment_bytes_start = self.segments.last().expect("rolled above").bytes;
            let mut segment_bytes = segment_bytes_start;
            let mut chain = self.last_chain;
            let mut index = self.last_index;
            self.headers_scratch.clear();
            let mut end = done;
            while end < payloads.len() {
                let record_bytes = HEADER_BYTES as u64 + payloads[end].len() as u64;
                if end > done && segment_bytes + record_bytes > self.config.segment_bytes_max {
                    break;
                }
                index += 1;
                let header = encode_record_header(index, chain, payloads[end]);
                chain = header.chain;
                segment_bytes += record_bytes;
                self.headers_scratch.push(header.encode());
                end += 1;
            }

            let mut slices = Vec::with_capacity(2 * (end - done));
            for (header, payload) in self.headers_scratch.iter().zip(&payloads[done..end]) {
                slices.push(IoSlice::new(header));
                slices.push(IoSlice::new(payload));
            }
            let segment = self.segments.last_mut().expect("rolled above");
            let active = self
                .active
                .as_deref()
                .expect("an active file for the last segment");
            if let Err(source) = storage::write_all_vectored(active, &mut slices) {
                self.poisoned = true;
                return Err(LogError::Io {
                    action: "write segment",
                    path: segment.path.clone(),
                    source,
                });
            }
            segment.bytes = segment_bytes;
            segment.records += (end - done) as u64;
            self.last_index = index;
            self.last_chain = chain;
            assert_eq!(segment.last_index(), self.last_index);
            done = end;
        }
        Ok(first_index..self.last_index + 1)
    }

    fn needs_roll(&self, record_bytes: u64) -> bool {
        match self.segments.last() {
            None => true,
            Some(segment) => {
                segment.bytes > 0 && segment.bytes + record_bytes > self.config.segment_bytes_max
            }
        }
    }

    /// Starts a new segment for the next record.
    fn roll(&mut self) -> Result<(), LogError> {
        // Only the last segment may hold unsynced data: that is what lets
        // `open` call a bad record in any other segment corruption.
        self.sync()?;
        let first_index = self.last_index + 1;
        let path = segment_path(&self.config.dir, first_index);
        let file = match self.storage.create_new(&path) {
            Ok(file) => file,
            Err(source) => {
                self.poisoned = true;
                return Err(LogError::Io {
                    action: "create segment",
                    path,
                    source,
                });
            }
        };
        if let Err(error) = sync_dir(&*self.storage, &self.config.dir) {
            self.poisoned = true;
            return Err(error);
        }
        self.segments.push(Segment {
            first_index,
            path,
            bytes: 0,
            records: 0,
        });
        self.active = Some(file);
        // Listed before anything is appended to it: from here on, losing
        // the file is found out at the next open.
        if let Err(error) = self.write_manifest(self.segments.len()) {
            self.poisoned = true;
            return Err(error);
        }
        Ok(())
    }

    /// Writes the manifest listing the newest `listed` segments: all of
    /// them, except just before `truncate_prefix` deletes the oldest.
    fn write_manifest(&mut self, listed: usize) -> Result<(), LogError> {
        let skip = self.segments.len() - listed;
        let last = self.segments.len().saturating_sub(1);
        let segments = self
            .segments
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(position, segment)| manifest::ListedSegment {
                first_index: segment.first_index,
                sealed_last_index: (position < last).then(|| segment.last_index()),
            })
            .collect();
        let manifest = manifest::Manifest {
            generation: self.manifest_generation + 1,
            segments,
        };
        manifest::write(&*self.storage, &self.config.dir, &manifest)
            .map_err(io_error("write the manifest in", &self.config.dir))?;
        self.manifest_generation = manifest.generation;
        Ok(())
    }

    /// Makes every appended record durable with one `fdatasync`: the group
    /// commit point. After an error the log is poisoned and must be
    /// reopened, because a retried fsync may report success for data the
    /// kernel already dropped.
    pub fn sync(&mut self) -> Result<(), LogError> {
        // Earlier segments were synced when they were sealed; this syncs
        // the active one.
        match self.begin_sync()? {
            None => Ok(()),
            Some(pending) => {
                let ran = pending.run();
                self.finish_sync(pending.up_to_index, ran)
            }
        }
    }

    /// Starts a group commit that runs without `&mut self`, so appends can
    /// go on while the disk works: [`PendingSync::run`] fdatasyncs a
    /// second handle on the active segment, then [`FileLog::finish_sync`]
    /// records the result. `None` if everything appended is synced.
    /// Records of a segment sealed meanwhile are durable anyway (sealing
    /// syncs), so running only the newest pending sync covers older ones.
    pub fn begin_sync(&mut self) -> Result<Option<PendingSync>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if self.synced_index == self.last_index {
            return Ok(None);
        }
        let path = self
            .segments
            .last()
            .expect("records imply a segment")
            .path
            .clone();
        let file = Arc::clone(
            self.active
                .as_ref()
                .expect("records imply an active segment"),
        );
        Ok(Some(PendingSync {
            file,
            path,
            up_to_index: self.last_index,
        }))
    }

    /// Records how a [`PendingSync`] ended. A failure poisons the log,
    /// as in [`FileLog::sync`].
    pub fn finish_sync(
        &mut self,
        up_to_index: u64,
        result: Result<(), LogError>,
    ) -> Result<(), LogError> {
        match result {
            Ok(()) => {
                self.synced_index = self.synced_index.max(up_to_index);
                Ok(())
            }
            Err(err) => {
                self.poisoned = true;
                self.record_failed_sync();
                Err(err)
            }
        }
    }

    /// Writes [`FAILED_SYNC_FILE_NAME`] with the last synced index, so that
    /// the next start cuts what the failed fsync may have dropped: after a
    /// failed fsync the kernel can mark the pages clean, and a restarted
    /// process would read, replay and build on records the disk does not
    /// hold (found by `ordo-sim --process-restart-after-failed-fsync`).
    /// Best effort: if every attempt fails too, the disk is beyond what a
    /// restart can trust, and the error that poisoned the log stands.
    fn record_failed_sync(&self) {
        let path = self.config.dir.join(FAILED_SYNC_FILE_NAME);
        let mut bytes = Vec::with_capacity(FAILED_SYNC_BYTES);
        bytes.extend_from_slice(FAILED_SYNC_MAGIC);
        bytes.extend_from_slice(&self.synced_index.to_le_bytes());
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        // Each attempt writes a new file, so retrying is not retrying the
        // failed fsync (whose pages the kernel may have dropped).
        let mut last_error = None;
        for _ in 0..FAILED_SYNC_WRITE_ATTEMPTS {
            match self.storage.replace(&path, &bytes) {
                Ok(()) => return,
                Err(err) => last_error = Some(err),
            }
        }
        if let Some(err) = last_error {
            tracing::error!(
                "file log: cannot record the failed fsync in {}: {err}; a restart without a reboot may replay records the disk dropped",
                path.display()
            );
        }
    }

    /// Deletes every segment all of whose records are at or below
    /// `up_to_index`, oldest first, and returns how many. Syncs first and
    /// always keeps the last segment that holds records, so the log's last
    /// chain value stays on disk. A crash part way leaves a dense suffix,
    /// which opens fine.
    pub fn truncate_prefix(&mut self, up_to_index: u64) -> Result<usize, LogError> {
        self.sync()?;
        let Some(keep) = self
            .segments
            .iter()
            .rposition(|segment| segment.records > 0)
        else {
            return Ok(0);
        };
        let removing = self
            .segments
            .iter()
            .take(keep)
            .take_while(|segment| segment.last_index() <= up_to_index)
            .count();
        if removing > 0 {
            // The manifest stops listing them first: a crash part way then
            // leaves unlisted old segments, which `open` deletes, never
            // listed ones that are gone.
            self.write_manifest(self.segments.len() - removing)?;
        }
        let mut removed = 0;
        while removed < removing {
            let path = &self.segments[0].path;
            self.storage
                .remove_file(path)
                .map_err(io_error("delete segment", path))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&*self.storage, &self.config.dir)?;
        }
        Ok(removed)
    }

    /// Reads the records from `index` on, in order, up to the last index at
    /// the time of the call (synced or not). `index` may be one past the
    /// last index, which reads nothing.
    pub fn read_from(&self, index: u64) -> Result<LogReader<'_>, LogError> {
        let first_index = self.first_index();
        if index == 0 || index > self.last_index + 1 {
            return Err(LogError::OutOfRange {
                index,
                last_index: self.last_index,
            });
        }
        if index < first_index {
            return Err(LogError::Compacted { index, first_index });
        }
        // The last segment starting at or before `index`; one past the last
        // index falls in the last segment, which reads nothing more.
        let segment_position = self
            .segments
            .partition_point(|segment| segment.first_index <= index)
            .saturating_sub(1);
        Ok(LogReader {
            storage: &*self.storage,
            segments: &self.segments,
            record_bytes_max: self.config.record_bytes_max,
            segment_position,
            file: None,
            offset: 0,
            file_index: 0,
            next_index: index,
            end_index: self.last_index,
            chain_prev: None,
            failed: false,
        })
    }

    /// The index of the first record still in the log (1 unless
    /// [`FileLog::truncate_prefix`] removed some). For an empty log, the
    /// index the first record will get.
    pub fn first_index(&self) -> u64 {
        self.segments
            .first()
            .map_or(1, |segment| segment.first_index)
    }

    /// The index of the last record appended, synced or not; 0 if none.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The highest index known durable.
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// The chain value of the last record, or [`CHAIN_GENESIS`].
    pub fn last_chain(&self) -> u128 {
        self.last_chain
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub fn config(&self) -> &FileLogConfig {
        &self.config
    }

    /// The storage the log runs on.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Whether a write or fsync failed: then every append and sync
    /// returns [`LogError::Poisoned`] until the log is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The torn tail `open` cut off, if it found one.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> impl Iterator<Item = &Path> {
        self.segments.iter().map(|segment| segment.path.as_path())
    }

    /// The bytes of complete records in every segment (what the log holds
    /// on disk, less pre-allocation and unsynced tails).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.bytes).sum()
    }
}

/// What scanning one segment found.
struct SegmentScan {
    records: u64,
    /// The end of the last readable record.
    valid_bytes: u64,
    last_chain: Option<u128>,
    /// The first unreadable record: its offset and why.
    bad: Option<(u64, RecordFault)>,
    /// The scan stopped at `index_max` with bytes left after it.
    capped: bool,
}

/// Verifies the records of one segment, streaming payloads through the
/// hashes. An unreadable record ends the scan and is returned in `bad`
/// (the caller decides torn or corrupt); a readable record with a wrong
/// index or chain is corruption right away.
/// Compares the segment files found in `dir` with what the manifest
/// lists. Returns the manifest's generation and whether it must be
/// rewritten (absent, a damaged copy, or a newer segment not yet listed).
/// Segments older than the first listed one are what an interrupted
/// `truncate_prefix` left: they are deleted (and dropped from
/// `first_indexes`). A listed segment that is missing is refused, unless
/// it is among the newest and `accept_loss` is set.
fn check_manifest(
    storage: &dyn Storage,
    dir: &Path,
    first_indexes: &mut Vec<u64>,
    accept_loss: bool,
) -> Result<(u64, bool), LogError> {
    let (manifest, damaged) = match manifest::read(storage, dir) {
        manifest::Found::None => return Ok((0, true)),
        manifest::Found::AllDamaged { reasons } => {
            if accept_loss {
                return Ok((0, true));
            }
            return Err(LogError::ManifestDamaged {
                dir: dir.to_path_buf(),
                reasons,
            });
        }
        manifest::Found::Intact { manifest, damaged } => (manifest, damaged.is_some()),
    };
    let first_listed = manifest.segments.first().map(|segment| segment.first_index);
    if let Some(first_listed) = first_listed {
        for &first_index in first_indexes.iter().filter(|index| **index < first_listed) {
            let path = segment_path(dir, first_index);
            storage
                .remove_file(&path)
                .map_err(io_error("delete compacted segment", &path))?;
        }
        first_indexes.retain(|index| *index >= first_listed);
    }
    let missing: Vec<&manifest::ListedSegment> = manifest
        .segments
        .iter()
        .filter(|segment| first_indexes.binary_search(&segment.first_index).is_err())
        .collect();
    if let Some(first_missing) = missing.first() {
        let names: Vec<String> = missing
            .iter()
            .map(|segment| {
                let range = match segment.sealed_last_index {
                    Some(last) => format!("indexes {} to {last}", segment.first_index),
                    None => format!("indexes {} on", segment.first_index),
                };
                format!(
                    "{} ({range})",
                    segment_path(dir, segment.first_index)
                        .file_name()
                        .and_then(|name| name.to_str())
                        .unwrap_or("?")
                )
            })
            .collect();
        // Only a loss at the end leaves a log that still starts where it
        // did and continues its chain.
        let newest_only = first_indexes
            .last()
            .is_none_or(|last_found| *last_found < first_missing.first_index);
        if !(accept_loss && newest_only) {
            let mut detail = format!(
                "the manifest lists {} segment file(s) that are missing: {}",
                names.len(),
                names.join(", ")
            );
            if accept_loss {
                detail.push_str(
                    "; a gap before other segments cannot be accepted, only a loss at the end",
                );
            }
            return Err(LogError::MissingSegments {
                dir: dir.to_path_buf(),
                detail,
            });
        }
    }
    let listed: Vec<u64> = manifest
        .segments
        .iter()
        .map(|segment| segment.first_index)
        .collect();
    let stale = damaged || !missing.is_empty() || listed != *first_indexes;
    Ok((manifest.generation, stale))
}

fn scan_segment(
    storage: &dyn Storage,
    path: &Path,
    first_index: u64,
    mut chain_prev: Option<u128>,
    record_bytes_max: u32,
    index_max: u64,
) -> Result<SegmentScan, LogError> {
    let file = storage
        .open_read(path)
        .map_err(io_error("open segment", path))?;
    let file_bytes = file.len_bytes().map_err(io_error("stat segment", path))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut scan = SegmentScan {
        records: 0,
        valid_bytes: 0,
        last_chain: None,
        bad: None,
        capped: false,
    };
    let mut index = first_index;
    while scan.valid_bytes < file_bytes {
        if index > index_max {
            scan.capped = true;
            break;
        }
        let offset = scan.valid_bytes;
        let bytes_available = file_bytes - offset;
        match read_record_checked(&mut reader, path, bytes_available, record_bytes_max)? {
            Err(fault) => {
                scan.bad = Some((offset, fault));
                break;
            }
            Ok(Checked::OverLimit { payload_bytes }) => {
                return Err(LogError::RecordOverLimit {
                    path: path.to_path_buf(),
                    offset,
                    payload_bytes,
                    record_bytes_max,
                });
            }
            Ok(Checked::Valid { header, chain }) => {
                // The checksum matches, so these bytes are what a writer
                // wrote: any disagreement below is corruption, never a tear.
                let corrupt = |corruption| LogError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    corruption,
                };
                if header.index != index {
                    return Err(corrupt(Corruption::IndexMismatch {
                        expected: index,
                        found: header.index,
                    }));
                }
                if let Some(expected_prev) = chain_prev
                    && header.chain_prev != expected_prev
                {
                    return Err(corrupt(Corruption::ChainBreak {
                        index,
                        expected_prev,
                        stored_prev: header.chain_prev,
                    }));
                }
                if chain != header.chain {
                    return Err(corrupt(Corruption::ChainMismatch {
                        index,
                        stored: header.chain,
                        computed: chain,
                    }));
                }
                chain_prev = Some(chain);
                scan.last_chain = Some(chain);
                scan.records += 1;
                scan.valid_bytes += header.record_bytes();
                index += 1;
            }
        }
    }
    Ok(scan)
}

enum Checked {
    /// The record's checksum matches; `chain` is recomputed from its bytes.
    Valid { header: RecordHeader, chain: u128 },
    /// A complete record with a matching checksum, but over the configured
    /// limit: written under a larger `record_bytes_max`.
    OverLimit { payload_bytes: u32 },
}

/// Reads the record at the reader's position, `bytes_available` before the
/// end of the file, and checks it without keeping the payload. The outer
/// error is I/O, the inner one a fault of the record.
fn read_record_checked(
    reader: &mut BufReader<Box<dyn ReadFile>>,
    path: &Path,
    bytes_available: u64,
    record_bytes_max: u32,
) -> Result<Result<Checked, RecordFault>, LogError> {
    if bytes_available < HEADER_BYTES as u64 {
        return Ok(Err(RecordFault::HeaderIncomplete { bytes_available }));
    }
    let mut header_bytes = [0u8; HEADER_BYTES];
    reader
        .read_exact(&mut header_bytes)
        .map_err(io_error("read segment", path))?;
    let header = match RecordHeader::decode(&header_bytes) {
        Ok(header) => header,
        Err(fault) => return Ok(Err(fault)),
    };
    let over_limit = header.payload_bytes > record_bytes_max;
    let payload_available = bytes_available - HEADER_BYTES as u64;
    if u64::from(header.payload_bytes) > payload_available {
        return Ok(Err(if over_limit {
            RecordFault::TooLarge {
                payload_bytes: header.payload_bytes,
                record_bytes_max,
            }
        } else {
            RecordFault::PayloadIncomplete {
                payload_bytes: header.payload_bytes,
                bytes_available: payload_available,
            }
        }));
    }
    let mut hasher = RecordHasher::new(&header_bytes, header.index, header.chain_prev);
    let mut payload_left = u64::from(header.payload_bytes);
    while payload_left > 0 {
        let buffered = reader.fill_buf().map_err(io_error("read segment", path))?;
        if buffered.is_empty() {
            // The file shrank under us; call it what it now looks like.
            return Ok(Err(RecordFault::PayloadIncomplete {
                payload_bytes: header.payload_bytes,
                bytes_available: u64::from(header.payload_bytes) - payload_left,
            }));
        }
        let take = buffered
            .len()
            .min(usize::try_from(payload_left).unwrap_or(usize::MAX));
        hasher.update(&buffered[..take]);
        reader.consume(take);
        payload_left -= take as u64;
    }
    let (checksum, chain) = hasher.finish();
    if checksum != header.checksum {
        return Ok(Err(if over_limit {
            RecordFault::TooLarge {
                payload_bytes: header.payload_bytes,
                record_bytes_max,
            }
        } else {
            RecordFault::ChecksumMismatch {
                stored: header.checksum,
                computed: checksum,
            }
        }));
    }
    if over_limit {
        return Ok(Ok(Checked::OverLimit {
            payload_bytes: header.payload_bytes,
        }));
    }
    Ok(Ok(Checked::Valid { header, chain }))
}

/// The offset of the first valid record (any length, matching checksum)
/// starting after `bad_offset` in the file, if there is one. Only called on
/// the rare recovery path, so it reads the rest of the file into memory.
fn find_valid_record(
    storage: &dyn Storage,
    path: &Path,
    bad_offset: u64,
) -> Result<Option<u64>, LogError> {
    let mut file = storage
        .open_read(path)
        .map_err(io_error("open segment", path))?;
    let start = bad_offset + 1;
    file.seek(SeekFrom::Start(start))
        .map_err(io_error("seek segment", path))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(io_error("read segment", path))?;
    if rest.len() < HEADER_BYTES {
        return Ok(None);
    }
    for position in 0..=rest.len() - HEADER_BYTES {
        if rest[position..position + RECORD_MAGIC.len()] != RECORD_MAGIC {
            continue;
        }
        let header_bytes: &[u8; HEADER_BYTES] =
            rest[position..position + HEADER_BYTES].try_into().unwrap();
        let Ok(header) = RecordHeader::decode(header_bytes) else {
            continue;
        };
        let payload_start = position + HEADER_BYTES;
        let Some(payload) = rest.get(payload_start..payload_start + header.payload_bytes as usize)
        else {
            continue;
        };
        let mut checksum = Xxh3Default::new();
        checksum.update(&header_bytes[..HEADER_CHECKED_BYTES]);
        checksum.update(payload);
        if checksum.digest() == header.checksum {
            return Ok(Some(start + position as u64));
        }
    }
    Ok(None)
}

/// Cuts the file at `offset` and makes that durable; returns the old length.
fn truncate_file(storage: &dyn Storage, path: &Path, offset: u64) -> Result<u64, LogError> {
    let file_bytes = storage
        .truncate(path, offset)
        .map_err(io_error("truncate segment", path))?;
    assert!(offset < file_bytes, "a torn tail has bytes to cut");
    Ok(file_bytes)
}

/// Streams records in index order across segments, verifying each one's
/// checksum and chain again. Made by [`FileLog::read_from`]. After an error
/// it yields nothing more.
pub struct LogReader<'a> {
    storage: &'a dyn Storage,
    segments: &'a [Segment],
    record_bytes_max: u32,
    segment_position: usize,
    file: Option<BufReader<Box<dyn ReadFile>>>,
    /// The offset of the next record in the open file.
    offset: u64,
    /// The index of the record at `offset`.
    file_index: u64,
    next_index: u64,
    end_index: u64,
    /// The chain of the record before `offset`, when known: unknown at the
    /// start of a segment the reader starts in.
    chain_prev: Option<u128>,
    failed: bool,
}

impl LogReader<'_> {
    fn next_record(&mut self) -> Result<(u64, Vec<u8>), LogError> {
        let segments = self.segments;
        loop {
            let segment = &segments[self.segment_position];
            if self.offset >= segment.bytes && self.file.is_some() {
                // `next_index <= end_index` guarantees a next segment.
                self.segment_position += 1;
                self.file = None;
                continue;
            }
            let path = &segment.path;
            if self.file.is_none() {
                let file = self
                    .storage
                    .open_read(path)
                    .map_err(io_error("open segment", path))?;
                self.file = Some(BufReader::with_capacity(READ_BUFFER_BYTES, file));
                self.offset = 0;
                self.file_index = segment.first_index;
                if segment.first_index == 1 {
                    self.chain_prev = Some(CHAIN_GENESIS);
                }
            }
            let reader = self.file.as_mut().expect("opened above");
            let corrupt = |offset, corruption| LogError::Corrupt {
                path: path.clone(),
                offset,
                corruption,
            };
            let mut header_bytes = [0u8; HEADER_BYTES];
            reader
                .read_exact(&mut header_bytes)
                .map_err(io_error("read segment", path))?;
            let header = RecordHeader::decode(&header_bytes)
                .map_err(|fault| corrupt(self.offset, Corruption::BadRecord { fault }))?;
            if header.index != self.file_index {
                return Err(corrupt(
                    self.offset,
                    Corruption::IndexMismatch {
                        expected: self.file_index,
                        found: header.index,
                    },
                ));
            }
            if header.payload_bytes > self.record_bytes_max
                || self.offset + header.record_bytes() > segment.bytes
            {
                let fault = RecordFault::TooLarge {
                    payload_bytes: header.payload_bytes,
                    record_bytes_max: self.record_bytes_max,
                };
                return Err(corrupt(self.offset, Corruption::BadRecord { fault }));
            }
            let offset = self.offset;
            self.offset += header.record_bytes();
            self.file_index += 1;
            if header.index < self.next_index {
                // Verified by `open`; only walking to the start.
                reader
                    .seek_relative(i64::from(header.payload_bytes))
                    .map_err(io_error("seek segment", path))?;
                self.chain_prev = Some(header.chain);
                continue;
            }
            let mut payload = vec![0u8; header.payload_bytes as usize];
            reader
                .read_exact(&mut payload)
                .map_err(io_error("read segment", path))?;
            let mut hasher = RecordHasher::new(&header_bytes, header.index, header.chain_prev);
            hasher.update(&payload);
            let (checksum, chain) = hasher.finish();
            if checksum != header.checksum {
                let fault = RecordFault::ChecksumMismatch {
                    stored: header.checksum,
                    computed: checksum,
                };
                return Err(corrupt(offset, Corruption::BadRecord { fault }));
            }
            if let Some(expected_prev) = self.chain_prev
                && header.chain_prev != expected_prev
            {
                return Err(corrupt(
                    offset,
                    Corruption::ChainBreak {
                        index: header.index,
                        expected_prev,
                        stored_prev: header.chain_prev,
                    },
                ));
            }
            if chain != header.chain {
                return Err(corrupt(
                    offset,
                    Corruption::ChainMismatch {
                        index: header.index,
                        stored: header.chain,
                        computed: chain,
                    },
                ));
            }
            self.chain_prev = Some(chain);
            return Ok((header.index, payload));
        }
    }
}

impl Iterator for LogReader<'_> {
    type Item = Result<(u64, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next_index > self.end_index {
            return None;
        }
        let record = self.next_record();
        match &record {
            Ok((index, _)) => {
                assert_eq!(*index, self.next_index);
                self.next_index += 1;
            }
            Err(_) => self.failed = true,
        }
        Some(record)
    }
}
