//! The chain journal: the chain hash a single node reached after each
//! batch, so that `ordo replay` can tell, batch by batch, whether a
//! replayed history is the one the node ran.
//!
//! The log records what ran, not what came out; the chain hash digests
//! every outcome of a batch (docs/ARCHITECTURE.md, "Hashes"), so one
//! 40-byte record per batch pins the outcomes down to the batch (to the
//! transaction, when a batch holds one). Records are derived data: they
//! are written through a buffer after each batch and never fsynced, and a
//! write error stops the journal (saying so once), never the node. A
//! crash can lose or tear the newest records; readers stop at the first
//! record whose checksum fails. A file is started at every snapshot the
//! node takes (`chain-<first sequence number>.bin`), and the oldest files
//! are removed once all of them hold more than
//! [`CHAIN_JOURNAL_BYTES_MAX`]: 6.7 million batches, more history than
//! the kept snapshots and log usually span (old records nothing can
//! replay any more are harmless).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal's directory inside a data directory.
pub const CHAIN_DIR: &str = "chain";

/// One record: first and last sequence number, chain hash after the
/// batch, and an xxh3-64 checksum of those 32 bytes.
pub const CHAIN_RECORD_BYTES: usize = 40;

/// Bytes buffered before a write; a record is flushed after every batch
/// anyway.
const CHAIN_BUFFER_BYTES: usize = 4096;

/// The most bytes one journal file is read to (25 million batches).
pub const CHAIN_FILE_BYTES_MAX: u64 = 1 << 30;

/// The journal's files, together, before the oldest are removed.
pub const CHAIN_JOURNAL_BYTES_MAX: u64 = 256 << 20;

/// The chain hash after the batch `first_seq..=last_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainRecord {
    pub first_seq: u64,
    pub last_seq: u64,
    pub chain_hash: u128,
}

impl ChainRecord {
    fn encode(&self) -> [u8; CHAIN_RECORD_BYTES] {
        let mut bytes = [0u8; CHAIN_RECORD_BYTES];
        bytes[..8].copy_from_slice(&self.first_seq.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.last_seq.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.chain_hash.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..32]);
        bytes[32..].copy_from_slice(&sum.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<ChainRecord> {
        let sum = u64::from_le_bytes(bytes[32..40].try_into().ok()?);
        if xxhash_rust::xxh3::xxh3_64(&bytes[..32]) != sum {
            return None;
        }
        let record = ChainRecord {
            first_seq: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            last_seq: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            chain_hash: u128::from_le_bytes(bytes[16..32].try_into().ok()?),
        };
        (record.first_seq >= 1 && record.last_seq >= record.first_seq).then_some(record)
    }
}

/// The writer, owned by the executor thread.
pub struct ChainJournal {
    dir: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    bytes_kept_max: u64,
    stopped: bool,
}

impl ChainJournal {
    /// A journal in `dir` whose files are pruned, oldest first, to
    /// `bytes_kept_max` ([`CHAIN_JOURNAL_BYTES_MAX`] in a node).
    pub fn open(dir: PathBuf, bytes_kept_max: u64) -> std::io::Result<ChainJournal> {
        std::fs::create_dir_all(&dir)?;
        Ok(ChainJournal {
            dir,
            file: None,
            bytes_kept_max,
            stopped: false,
        })
    }

    /// Starts a new file at a snapshot the node took before `next_seq`,
    /// and removes the oldest files past the byte budget.
    pub fn rotate(&mut self, next_seq: u64) {
        if self.stopped {
            return;
        }
        self.file = None;
        if let Err(err) = self.start(next_seq) {
            self.stop(err);
        }
    }

    fn start(&mut self, first_seq: u64) -> std::io::Result<()> {
        let path = self.dir.join(format!("chain-{first_seq:020}.bin"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.file = Some(std::io::BufWriter::with_capacity(CHAIN_BUFFER_BYTES, file));
        // Newest first: keep files while the budget lasts (the new, empty
        // one always).
        let mut kept_bytes = 0;
        for (index, old) in files(&self.dir)?.iter().rev().enumerate() {
            kept_bytes += std::fs::metadata(old)?.len();
            if index > 0 && kept_bytes > self.bytes_kept_max {
                std::fs::remove_file(old)?;
            }
        }
        Ok(())
    }

    /// After a restart: appends to the newest file, so restarts do not
    /// push older files out; starts one at `first_seq` if there is none.
    fn continue_newest(&mut self, first_seq: u64) -> std::io::Result<()> {
        match files(&self.dir)?.pop() {
            Some(newest) => {
                let file = std::fs::OpenOptions::new().append(true).open(newest)?;
                // A crash may have torn the last record: cut it, so the
                // records appended next are read.
                let length = file.metadata()?.len();
                file.set_len(length - length % CHAIN_RECORD_BYTES as u64)?;
                self.file = Some(std::io::BufWriter::with_capacity(CHAIN_BUFFER_BYTES, file));
                Ok(())
            }
            None => self.start(first_seq),
        }
    }

    /// Records the chain hash after a batch.
    pub fn record(&mut self, record: ChainRecord) {
        if self.stopped {
            return;
        }
        if self.file.is_none()
            && let Err(err) = self.continue_newest(record.first_seq)
        {
            return self.stop(err);
        }
        let file = self.file.as_mut().expect("started above");
        if let Err(err) = file.write_all(&record.encode()).and_then(|()| file.flush()) {
            self.stop(err);
        }
    }

    fn stop(&mut self, err: std::io::Error) {
        tracing::warn!(
            "the chain journal in {} stopped ({err}); ordo replay will check against snapshots only",
            self.dir.display()
        );
        self.stopped = true;
        self.file = None;
    }
}

fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("chain-") && name.ends_with(".bin"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// What a journal holds: the records by first sequence number. A batch
/// recorded twice (a restart re-ran it) with two different hashes keeps
/// both: `conflicts` names them, which is itself a divergence between two
/// runs of this node.
#[derive(Default)]
pub struct ChainHistory {
    pub records: BTreeMap<u64, ChainRecord>,
    pub conflicts: Vec<(ChainRecord, ChainRecord)>,
}

/// Reads every journal file in `dir` (none if it does not exist), each up
/// to its first damaged record.
pub fn read(dir: &Path) -> std::io::Result<ChainHistory> {
    let mut history = ChainHistory::default();
    if !dir.exists() {
        return Ok(history);
    }
    for path in files(dir)? {
        let length = std::fs::metadata(&path)?.len();
        if length > CHAIN_FILE_BYTES_MAX {
            return Err(std::io::Error::other(format!(
                "{} is {length} bytes, over the {CHAIN_FILE_BYTES_MAX}-byte limit of a chain journal file",
                path.display()
            )));
        }
        let bytes = std::fs::read(&path)?;
        for chunk in bytes.chunks_exact(CHAIN_RECORD_BYTES) {
            let Some(record) = ChainRecord::decode(chunk) else {
                break;
            };
            match history.records.get(&record.first_seq) {
                Some(earlier) if *earlier != record => {
                    history.conflicts.push((*earlier, record));
                }
                Some(_) => {}
                None => {
                    history.records.insert(record.first_seq, record);
                }
            }
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(first_seq: u64, chain_hash: u128) -> ChainRecord {
        ChainRecord {
            first_seq,
            last_seq: first_seq + 1,
            chain_hash,
        }
    }

    #[test]
    fn records_read_back_up_to_a_torn_or_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = ChainJournal::open(dir.path().to_path_buf(), 1 << 20).unwrap();
        for seq in [1, 3, 5] {
            journal.record(record(seq, seq as u128 * 7));
        }
        drop(journal);
        let path = files(dir.path()).unwrap().remove(0);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 3 * CHAIN_RECORD_BYTES);
        // A torn last record, then a flipped bit in the second.
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap().records.len(), 2);
        bytes[CHAIN_RECORD_BYTES + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let history = read(dir.path()).unwrap();
        assert_eq!(history.records.keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn rotation_keeps_the_newest_files_within_the_budget_and_reruns_that_disagree_are_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one full file besides the newest.
        let budget = CHAIN_RECORD_BYTES as u64;
        let mut journal = ChainJournal::open(dir.path().to_path_buf(), budget).unwrap();
        journal.record(record(1, 1));
        journal.rotate(3);
        journal.record(record(3, 3));
        journal.rotate(5);
        journal.record(record(5, 5));
        // A restart re-ran batch 5 and got another hash.
        journal.record(record(5, 6));
        drop(journal);
        assert_eq!(files(dir.path()).unwrap().len(), 2);
        let history = read(dir.path()).unwrap();
        assert_eq!(history.records.keys().copied().collect::<Vec<_>>(), [3, 5]);
        assert_eq!(history.conflicts, [(record(5, 5), record(5, 6))]);
    }
}
