//! The Raft log store: openraft's log entries kept durably in a
//! [`FileLog`] used as a journal, with the live entries indexed in memory.
//!
//! The journal is append-only. Each record is one [`JournalRecord`]: an
//! entry appended, or "entries from index i on were removed" (a conflict
//! truncation, which Raft only ever does to uncommitted entries). Replaying
//! the journal in order rebuilds the live log. The vote and the purge point
//! are small and rare, so they live in their own file (`raft-meta`),
//! replaced atomically ([`Storage::replace`]: write, fsync, rename, fsync
//! the directory).
//!
//! Purging removes entries from memory and deletes the journal segments
//! that hold nothing still live.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use super::lost::LostEntries;
use crate::file_log::{FileLog, FileLogConfig, LogError, PendingSync};
use crate::storage::{OsStorage, Storage};

type NodeId = u64;

#[derive(Serialize, Deserialize)]
enum JournalRecord {
    Entry(Entry<TypeConfig>),
    /// Entries at `since` and after are gone.
    Truncate {
        since: u64,
    },
}

/// What `raft-meta` holds.
#[derive(Serialize, Deserialize, Default, Clone)]
struct RaftMeta {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    journal: FileLog,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// `(journal index, raft index)` of every entry record still in the
    /// journal, oldest first: which journal prefix a purge frees.
    journal_entries: VecDeque<(u64, u64)>,
    meta: RaftMeta,
    meta_path: PathBuf,
    storage: Arc<dyn Storage>,
}

/// openraft's log storage for one node. Clones share the same log (the
/// reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// Appended entries waiting for their fdatasync (the syncer).
    syncs: tokio::sync::mpsc::UnboundedSender<SyncJob>,
}

/// An append waiting for its fdatasync: the journal's pending sync (none
/// if nothing was written) and openraft's callback.
type SyncJob = (Option<PendingSync>, LogFlushed<TypeConfig>);

/// Runs the journal's fdatasyncs off openraft's core task, so that a
/// leader replicates an entry while its own disk is still writing it
/// (Raft allows this: the leader counts itself only once flushed). Every
/// sync waiting when one finishes is answered by it: group commit.
///
/// It holds the store weakly: dropping the last `LogStore` closes the
/// journal (and its lock) at once, and ends this thread.
fn run_syncer(
    inner: std::sync::Weak<Mutex<Inner>>,
    mut syncs: tokio::sync::mpsc::UnboundedReceiver<SyncJob>,
) {
    while let Some(first) = syncs.blocking_recv() {
        let mut waiting = vec![first];
        while let Ok(job) = syncs.try_recv() {
            waiting.push(job);
        }
        sync_waiting(&inner, waiting);
    }
}

/// The simulator's syncer (`LogStore::open_simulated`): a task of the
/// member instead of a thread, which waits `latency()` of (simulated)
/// time before each fdatasync, as a disk takes time, and answers every
/// sync waiting by then with it.
#[cfg(feature = "sim")]
async fn run_simulated_syncer(
    inner: std::sync::Weak<Mutex<Inner>>,
    mut syncs: tokio::sync::mpsc::UnboundedReceiver<SyncJob>,
    latency: Arc<dyn Fn() -> std::time::Duration + Send + Sync>,
) {
    while let Some(first) = syncs.recv().await {
        tokio::time::sleep(latency()).await;
        let mut waiting = vec![first];
        while let Ok(job) = syncs.try_recv() {
            waiting.push(job);
        }
        sync_waiting(&inner, waiting);
    }
}

/// Runs the newest of `waiting`'s syncs (it covers every older one) and
/// answers them all with its result.
fn sync_waiting(inner: &std::sync::Weak<Mutex<Inner>>, waiting: Vec<SyncJob>) {
    let newest = waiting.iter().rev().find_map(|(sync, _)| sync.as_ref());
    let result = match newest {
        None => Ok(()),
        Some(sync) => {
            let ran = sync.run();
            match inner.upgrade() {
                Some(inner) => inner.lock().journal.finish_sync(sync.up_to_index(), ran),
                None => ran,
            }
        }
    };
    for (_, callback) in waiting {
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|err| std::io::Error::other(err.to_string())),
        );
    }
}

fn io_error(err: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&err)
}

/// The journal's file log configuration in the Raft directory `dir`.
fn journal_config(dir: &Path) -> FileLogConfig {
    let mut config = FileLogConfig::new(dir.join("journal"));
    // A Raft entry is one batch; the node limits batches to 32 MiB of
    // arguments, plus framing.
    config.record_bytes_max = 64 << 20;
    config
}

/// What [`repair_journal`] found or did.
#[derive(Debug)]
pub enum JournalRepair {
    /// The journal opens; nothing to do.
    Intact { last_index: u64 },
    /// Newest segments are missing and the loss was not accepted.
    Refused { detail: String },
    /// The loss was accepted and the member marked (see `lost.rs`).
    Accepted { marker: LostEntries },
}

/// `ordo repair` for a cluster member's Raft directory `dir`: if the
/// journal is refused only because its newest segments are missing and
/// `accept_loss` is set, accepts the loss and leaves the marker that
/// keeps the member from voting until it has caught up.
pub fn repair_journal(dir: &Path, accept_loss: bool) -> Result<JournalRepair, LogError> {
    let detail = match FileLog::open(journal_config(dir)) {
        Ok(journal) => {
            return Ok(JournalRepair::Intact {
                last_index: journal.last_index(),
            });
        }
        Err(LogError::MissingSegments { detail, .. }) => detail,
        Err(other) => return Err(other),
    };
    if !accept_loss {
        return Ok(JournalRepair::Refused { detail });
    }
    let write_marker = |marker: &LostEntries| {
        super::lost::write(dir, marker).map_err(|source| LogError::Io {
            action: "write the lost-entries marker in",
            path: dir.to_path_buf(),
            source,
        })
    };
    // The marker before the journal gives up its segments: a crash in
    // between must not leave a member that votes on a shortened log.
    let meta = read_meta(&OsStorage, &dir.join("raft-meta"))?;
    let mut marker = LostEntries {
        term: meta.vote.map_or(0, |vote| vote.leader_id().term),
        kept_up_to: 0,
        detail,
        caught_up_at: None,
    };
    write_marker(&marker)?;
    drop(FileLog::open(FileLogConfig {
        accept_lost_segments: true,
        ..journal_config(dir)
    })?);
    let store = LogStore::open(dir)?;
    marker.kept_up_to = {
        let inner = store.inner.lock();
        let kept = inner.entries.keys().next_back().copied();
        kept.or(inner.meta.last_purged.map(|log_id| log_id.index))
            .unwrap_or(0)
    };
    drop(store);
    write_marker(&marker)?;
    Ok(JournalRepair::Accepted { marker })
}

/// `ordo restore --member`: prepares the fresh Raft directory `dir` of a
/// member seeded from a snapshot covering up to `snapshot` (the snapshot
/// file itself goes in `dir/snapshots`, written by the caller):
///
/// - `raft-meta` holds the log purged up to `snapshot` and a vote of term
///   `term` for no member (node id 0, not committed), so the member
///   refuses any leader of an older term (a deposed leader still
///   replicating would otherwise win it for its majority) and grants
///   nothing itself;
/// - the `lost-entries` marker (`lost.rs`) keeps it from voting or
///   standing until it has applied up to `caught_up_at` or an entry of a
///   later term than `term`.
///
/// Refuses a directory that already holds a journal or a `raft-meta`.
pub fn seed_member(
    dir: &Path,
    snapshot: LogId<NodeId>,
    term: u64,
    caught_up_at: u64,
    detail: String,
) -> Result<(), LogError> {
    let io = |action: &'static str, path: &Path, source: std::io::Error| LogError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|err| io("create", dir, err))?;
    for existing in ["journal", "raft-meta", super::lost::LOST_ENTRIES_FILE] {
        let path = dir.join(existing);
        if path.exists() {
            return Err(io(
                "seed a member in",
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists: not a fresh member", path.display()),
                ),
            ));
        }
    }
    // The marker first: a crash before the vote leaves a member that
    // refuses votes, never one that votes on a log it lacks.
    super::lost::write(
        dir,
        &LostEntries {
            term,
            kept_up_to: snapshot.index,
            detail,
            caught_up_at: Some(caught_up_at),
        },
    )
    .map_err(|err| io("write the lost-entries marker in", dir, err))?;
    let meta = RaftMeta {
        vote: Some(Vote::new(term, 0)),
        last_purged: Some(snapshot),
    };
    let path = dir.join("raft-meta");
    OsStorage
        .replace(&path, &postcard::to_stdvec(&meta).expect("meta serializes"))
        .map_err(|err| io("write", &path, err))
}

/// Reads `raft-meta` at `path` (the default if it does not exist).
fn read_meta(storage: &dyn Storage, path: &Path) -> Result<RaftMeta, LogError> {
    match storage.read_file(path) {
        Ok(bytes) => postcard::from_bytes(&bytes).map_err(|err| LogError::Io {
            action: "decode",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(RaftMeta::default()),
        Err(source) => Err(LogError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl LogStore {
    /// Opens (or creates) the store in `dir`: replays the journal, cutting
    /// off a torn tail as [`FileLog`] does.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        LogStore::open_with(dir, OsStorage::shared())
    }

    /// [`LogStore::open`] over `storage` (the journal and `raft-meta`).
    pub fn open_with(dir: &Path, storage: Arc<dyn Storage>) -> Result<LogStore, LogError> {
        let (store, pending, inner) = LogStore::open_unsynced(dir, storage)?;
        std::thread::Builder::new()
            .name("ordo-raft-sync".into())
            .spawn(move || run_syncer(inner, pending))
            .map_err(|source| LogError::Io {
                action: "start the syncer for",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(store)
    }

    /// The simulator's store: over `storage`, with its syncer a task
    /// spawned on the current runtime (of the current member, see
    /// `runtime.rs`) that takes `latency()` per fdatasync.
    #[cfg(feature = "sim")]
    pub fn open_simulated(
        dir: &Path,
        storage: Arc<dyn Storage>,
        latency: Arc<dyn Fn() -> std::time::Duration + Send + Sync>,
    ) -> Result<LogStore, LogError> {
        let (store, pending, inner) = LogStore::open_unsynced(dir, storage)?;
        super::runtime::spawn(run_simulated_syncer(inner, pending, latency));
        Ok(store)
    }

    /// Opens the store; its syncer is the caller's to start.
    #[allow(clippy::type_complexity)]
    fn open_unsynced(
        dir: &Path,
        storage: Arc<dyn Storage>,
    ) -> Result<
        (
            LogStore,
            tokio::sync::mpsc::UnboundedReceiver<SyncJob>,
            std::sync::Weak<Mutex<Inner>>,
        ),
        LogError,
    > {
        let journal = FileLog::open_with(journal_config(dir), storage.clone())?;
        let meta_path = dir.join("raft-meta");
        let meta = read_meta(&*storage, &meta_path)?;
        let mut entries = BTreeMap::new();
        let mut journal_entries = VecDeque::new();
        if journal.last_index() > 0 {
            for record in journal.read_from(journal.first_index())? {
                let (journal_index, payload) = record?;
                let record: JournalRecord =
                    postcard::from_bytes(&payload).map_err(|err| LogError::Io {
                        action: "decode a record of",
                        path: dir.join("journal"),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
                    })?;
                match record {
                    JournalRecord::Entry(entry) => {
                        journal_entries.push_back((journal_index, entry.log_id.index));
                        entries.insert(entry.log_id.index, entry);
                    }
                    JournalRecord::Truncate { since } => {
                        entries.split_off(&since);
                    }
                }
            }
        }
        if let Some(purged) = meta.last_purged {
            entries = entries.split_off(&(purged.index + 1));
        }
        let inner = Arc::new(Mutex::new(Inner {
            journal,
            entries,
            journal_entries,
            meta,
            meta_path,
            storage,
        }));
        let (syncs, pending) = tokio::sync::mpsc::unbounded_channel();
        let weak = Arc::downgrade(&inner);
        Ok((LogStore { inner, syncs }, pending, weak))
    }
}

impl Inner {
    fn write_meta(&self) -> Result<(), std::io::Error> {
        let bytes = postcard::to_stdvec(&self.meta).expect("meta serializes");
        self.storage.replace(&self.meta_path, &bytes)
    }

    /// Appends `records` to the journal without syncing; returns the
    /// journal index of the first.
    fn write_records(&mut self, records: &[JournalRecord]) -> Result<u64, LogError> {
        let payloads: Vec<Vec<u8>> = records
            .iter()
            .map(|record| postcard::to_stdvec(record).expect("records serialize"))
            .collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        Ok(self.journal.append_batch(&slices)?.start)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last_purged_log_id = inner.meta.last_purged;
        let last_log_id = inner
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner.meta.vote = Some(*vote);
        inner
            .write_meta()
            .map_err(|err| StorageIOError::write_vote(io_error(err)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().meta.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let records: Vec<JournalRecord> = entries.into_iter().map(JournalRecord::Entry).collect();
        if records.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let written = inner
            .write_records(&records)
            .and_then(|index| Ok((index, inner.journal.begin_sync()?)));
        let (first_journal_index, sync) = match written {
            Ok(written) => written,
            Err(err) => {
                let message = err.to_string();
                callback.log_io_completed(Err(std::io::Error::other(message.clone())));
                return Err(StorageIOError::write_logs(AnyError::error(message)).into());
            }
        };
        for (offset, record) in records.into_iter().enumerate() {
            if let JournalRecord::Entry(entry) = record {
                let index = entry.log_id.index;
                inner
                    .journal_entries
                    .push_back((first_journal_index + offset as u64, index));
                inner.entries.insert(index, entry);
            }
        }
        drop(inner);
        // The entries are readable (and replicated) from now on; openraft
        // counts them as this node's only once the syncer calls back.
        if let Err(tokio::sync::mpsc::error::SendError((_, callback))) =
            self.syncs.send((sync, callback))
        {
            callback.log_io_completed(Err(std::io::Error::other("the journal syncer stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner
            .write_records(&[JournalRecord::Truncate {
                since: log_id.index,
            }])
            .and_then(|_| inner.journal.sync())
            .map_err(|err| StorageIOError::write_logs(io_error(err)))?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner.meta.last_purged = Some(log_id);
        inner
            .write_meta()
            .map_err(|err| StorageIOError::write_logs(io_error(err)))?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        // Journal records up to the first one still holding a live entry
        // can go (a truncation record only ever affects records before it).
        let mut droppable = 0;
        while let Some(&(journal_index, raft_index)) = inner.journal_entries.front() {
            if raft_index > log_id.index {
                break;
            }
            droppable = journal_index;
            inner.journal_entries.pop_front();
        }
        if droppable > 0 {
            inner
                .journal
                .truncate_prefix(droppable)
                .map_err(|err| StorageIOError::write_logs(io_error(err)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::Vote;
    use openraft::storage::RaftLogStorage;

    use super::*;
    use crate::storage::sim::SimStorage;
    use crate::storage::temporary_path;

    /// `raft-meta` goes through `Storage::replace`: a replace that fails
    /// part way leaves the old vote after a crash, a finished one the new.
    #[test]
    fn the_vote_survives_a_crash_and_a_failed_replace_keeps_the_old_one() {
        let disk = SimStorage::new(9);
        let dir = Path::new("/data/raft");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut store = LogStore::open_with(dir, disk.shared()).unwrap();
            store.save_vote(&Vote::new(3, 1)).await.unwrap();
            disk.fail_next_sync(Some(&temporary_path(&dir.join("raft-meta"))));
            assert!(store.save_vote(&Vote::new(4, 2)).await.is_err());
            drop(store);
            disk.crash();
            let mut store = LogStore::open_with(dir, disk.shared()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
            store.save_vote(&Vote::new(5, 2)).await.unwrap();
            drop(store);
            disk.crash();
            let mut store = LogStore::open_with(dir, disk.shared()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(5, 2)));
        });
    }

    /// A seeded member's store opens at the snapshot's log id, with the
    /// vote that keeps older leaders out and outranks no candidate, and
    /// with the marker; a directory that already holds a journal is
    /// refused.
    #[test]
    fn a_seeded_member_opens_purged_to_its_snapshot_with_vote_and_marker() {
        let dir = tempfile::tempdir().unwrap();
        let raft_dir = dir.path().join("raft");
        let snapshot = LogId::new(openraft::CommittedLeaderId::new(2, 1), 40);
        seed_member(&raft_dir, snapshot, 5, 90, "seeded".into()).unwrap();
        let marker = super::super::lost::read(&raft_dir).unwrap().unwrap();
        assert_eq!(
            (marker.term, marker.kept_up_to, marker.caught_up_at),
            (5, 40, Some(90))
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut store = LogStore::open(&raft_dir).unwrap();
            let vote = store.read_vote().await.unwrap().unwrap();
            assert_eq!(vote, Vote::new(5, 0));
            assert!(!vote.is_committed());
            // A leader of term 5 (any node) or later outranks it; one of
            // term 4 does not.
            assert!(Vote::new_committed(5, 1) > vote);
            assert!(Vote::new_committed(4, 3) < vote);
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(snapshot));
            assert_eq!(state.last_log_id, Some(snapshot));
        });
        // Seeding again over it is refused.
        let err = seed_member(&raft_dir, snapshot, 5, 90, "again".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a fresh member"), "{err}");
    }
}
