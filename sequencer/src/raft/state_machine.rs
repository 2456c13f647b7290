//! openraft's state machine for ordo: it numbers committed batches and
//! hands them to the node's executor, in order. It holds no engine state
//! itself; snapshots are engine images the node wrote ([`SnapshotStore`]).

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{ProposalId, RaftPoint, TypeConfig};
use crate::log::{Committed, Delivery};
use crate::sequencer::Sequencer;
use crate::storage::{OsStorage, Storage};

type NodeId = u64;

/// This node's proposals not yet applied.
pub type Pending<T> = Arc<Mutex<HashMap<ProposalId, Proposed<T>>>>;

/// A proposal of this node, until it is applied or abandoned: the
/// proposer's token, and the entries it encoded with the buffer it
/// encoded them into.
pub struct Proposed<T> {
    pub token: T,
    pub entries: Vec<crate::entry::Entry>,
    pub encoded: bytes::Bytes,
}

impl<T> Proposed<T> {
    /// The entries of `applied`, this proposal's bytes as the log holds
    /// them, without decoding them if they are still the very buffer this
    /// node encoded `entries` into (the leader's own proposal, applied in
    /// the run that proposed it: openraft hands it back as a clone of
    /// what it was given). The buffer is immutable and held here, so no
    /// other bytes can sit at its address: the same address and length
    /// mean the same bytes, which decode to exactly `entries` (postcard
    /// round-trips every entry field). Bytes that came back from the
    /// journal or from another member are decoded as on any node.
    fn take_entries(self, applied: &bytes::Bytes) -> (Option<Vec<crate::entry::Entry>>, T) {
        let same_buffer =
            self.encoded.as_ptr() == applied.as_ptr() && self.encoded.len() == applied.len();
        (same_buffer.then_some(self.entries), self.token)
    }
}

/// The engine's whole state at a batch boundary, and where that boundary
/// is in the Raft log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotImage {
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    /// The sequence number of the next batch's first entry.
    pub next_seq: u64,
    /// The timestamp of the last batch before the snapshot (timestamps
    /// never go backwards across it).
    pub last_timestamp_ms: u64,
    /// `Executor::snapshot` bytes. A byte string: postcard writes a
    /// `Vec<u8>` as a sequence of `u8`s, which is the same bytes (a
    /// length, then each byte as is) but encodes and decodes one element
    /// at a time; megabytes of state are one copy this way.
    #[serde(with = "serde_bytes")]
    pub engine: Vec<u8>,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"ordosnp1";

impl SnapshotImage {
    /// Magic, a checksum, then the postcard image.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("snapshots serialize");
        let mut bytes = Vec::with_capacity(body.len() + 24);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// A single node's snapshot: the engine state just after the file
    /// log's record `record_index` (0: before the first record). The file
    /// log has no terms, so its image names the record as a log id of
    /// term 0 and no membership; the format is the cluster's, so one
    /// reader and one checksum serve both.
    pub fn for_file_log(
        record_index: u64,
        next_seq: u64,
        last_timestamp_ms: u64,
        engine: Vec<u8>,
    ) -> SnapshotImage {
        SnapshotImage {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(
                    openraft::CommittedLeaderId::new(0, 0),
                    record_index,
                )),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("file-{record_index}-seq{next_seq}"),
            },
            next_seq,
            last_timestamp_ms,
            engine,
        }
    }

    /// The last log index (file log record or Raft entry) the image
    /// covers; 0 if it covers none.
    pub fn covered_index(&self) -> u64 {
        self.meta.last_log_id.map_or(0, |log_id| log_id.index)
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotImage, String> {
        if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err("not an ordo snapshot (bad magic or too short)".into());
        }
        let checksum = u128::from_le_bytes(bytes[8..24].try_into().expect("16 bytes"));
        let body = &bytes[24..];
        if xxhash_rust::xxh3::xxh3_128(body) != checksum {
            return Err("snapshot checksum mismatch (torn or corrupt)".into());
        }
        postcard::from_bytes(body).map_err(|err| format!("snapshot does not decode: {err}"))
    }
}

/// Snapshot files, `snapshot-<raft index>-<next sequence number>.bin`
/// (files from before the sequence number was in the name are
/// `snapshot-<raft index>.bin`): the newest [`SNAPSHOTS_KEPT_DEFAULT`] (or
/// as many as the store was opened to keep), and enough older ones to
/// reach back the positions it was told to retain.
pub struct SnapshotStore {
    /// Where the files live: the OS's file system, or the simulator's
    /// disk.
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    write: Mutex<()>,
    retention: Retention,
}

/// The newest snapshot and one before it, to fall back on if the newest
/// is damaged.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 2;

/// The most snapshots a store keeps: each is a full copy of the state.
pub const SNAPSHOTS_KEPT_MAX: usize = 1_000;

/// Which snapshots a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many are kept (2 to [`SNAPSHOTS_KEPT_MAX`]).
    pub kept: usize,
    /// Also kept: the snapshots needed to rebuild the state at every
    /// position down to the newest snapshot's minus this many (the
    /// newest snapshot at or before that, and every one after it), up
    /// to [`SNAPSHOTS_KEPT_MAX`] snapshots in all. 0: none beyond `kept`.
    pub positions: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            kept: SNAPSHOTS_KEPT_DEFAULT,
            positions: 0,
        }
    }
}

/// One snapshot file, by its name.
struct SnapshotFile {
    /// The log index it covers.
    index: u64,
    /// The sequence number it continues at, where the name says it.
    next_seq: Option<u64>,
    path: PathBuf,
}

impl SnapshotStore {
    pub fn open(dir: PathBuf) -> std::io::Result<SnapshotStore> {
        SnapshotStore::open_retaining(dir, Retention::default())
    }

    /// A store that keeps the `kept` newest snapshots (2 to
    /// [`SNAPSHOTS_KEPT_MAX`]): more history for the replay debugger and
    /// time-travel reads, at one state's size on disk each.
    pub fn open_keeping(dir: PathBuf, kept: usize) -> std::io::Result<SnapshotStore> {
        SnapshotStore::open_retaining(dir, Retention { kept, positions: 0 })
    }

    /// A store that keeps what `retention` says.
    pub fn open_retaining(dir: PathBuf, retention: Retention) -> std::io::Result<SnapshotStore> {
        SnapshotStore::open_on(OsStorage::shared(), dir, retention)
    }

    /// A store on `storage` (the simulator passes its disk) that keeps
    /// what `retention` says. Creating the directory syncs its parent, so
    /// that the directory, whose snapshots let the log drop the records
    /// they cover, survives a crash.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        retention: Retention,
    ) -> std::io::Result<SnapshotStore> {
        let kept = retention.kept;
        if !(SNAPSHOTS_KEPT_DEFAULT..=SNAPSHOTS_KEPT_MAX).contains(&kept) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "snapshots kept must be {SNAPSHOTS_KEPT_DEFAULT} to {SNAPSHOTS_KEPT_MAX}, not {kept}"
                ),
            ));
        }
        if !storage.is_dir(&dir) {
            storage.create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                storage.sync_dir(parent)?;
            }
        }
        Ok(SnapshotStore {
            storage,
            dir,
            write: Mutex::new(()),
            retention,
        })
    }

    /// The snapshot files, oldest (lowest index) first.
    fn files(&self) -> std::io::Result<Vec<SnapshotFile>> {
        let mut files = Vec::new();
        for name in self.storage.list_dir(&self.dir)? {
            let path = self.dir.join(&name);
            let Some(stem) = name
                .to_str()
                .and_then(|name| name.strip_prefix("snapshot-"))
                .and_then(|name| name.strip_suffix(".bin"))
            else {
                continue;
            };
            let (index, next_seq) = match stem.split_once('-') {
                Some((index, next_seq)) => match next_seq.parse::<u64>() {
                    Ok(next_seq) => (index, Some(next_seq)),
                    Err(_) => continue,
                },
                None => (stem, None),
            };
            if let Ok(index) = index.parse::<u64>() {
                files.push(SnapshotFile {
                    index,
                    next_seq,
                    path,
                });
            }
        }
        files.sort_by_key(|file| file.index);
        Ok(files)
    }

    /// Writes `image` durably (temporary file, fsync, rename, fsync the
    /// directory) and deletes what the retention no longer needs.
    pub fn save(&self, image: &SnapshotImage) -> std::io::Result<()> {
        let _writing = self.write.lock();
        let index = image.meta.last_log_id.map_or(0, |log_id| log_id.index);
        if let Some(newest) = self.files()?.last()
            && newest.index >= index
        {
            return Ok(());
        }
        let path = self
            .dir
            .join(format!("snapshot-{index:020}-{:020}.bin", image.next_seq));
        self.storage.replace(&path, &image.encode())?;
        let files = self.files()?;
        let keep_from = first_retained(&files, self.retention);
        for old in &files[..keep_from] {
            let _ = self.storage.remove_file(&old.path);
        }
        Ok(())
    }

    /// The log indexes the kept snapshot files cover, oldest first.
    pub fn covered_indexes(&self) -> std::io::Result<Vec<u64>> {
        Ok(self.files()?.into_iter().map(|file| file.index).collect())
    }

    /// The newest snapshot file's path and covered index, without reading
    /// it.
    pub fn newest_file(&self) -> std::io::Result<Option<(u64, PathBuf)>> {
        Ok(self.files()?.pop().map(|file| (file.index, file.path)))
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Every snapshot that reads back intact, oldest first, with the path
    /// and reason of each that does not.
    #[allow(clippy::type_complexity)]
    pub fn all_images(&self) -> std::io::Result<(Vec<SnapshotImage>, Vec<(PathBuf, String)>)> {
        let (mut intact, mut damaged) = (Vec::new(), Vec::new());
        for SnapshotFile { path, .. } in self.files()? {
            match SnapshotImage::decode(&self.storage.read_file(&path)?) {
                Ok(image) => intact.push(image),
                Err(reason) => damaged.push((path, reason)),
            }
        }
        Ok((intact, damaged))
    }

    /// The newest snapshot that reads back intact and continues at or
    /// before `position + 1` (so it rebuilds the state as of `position`).
    pub fn newest_at_or_before(&self, position: u64) -> std::io::Result<Option<SnapshotImage>> {
        for file in self.files()?.into_iter().rev() {
            if file
                .next_seq
                .is_some_and(|next_seq| next_seq.saturating_sub(1) > position)
            {
                continue;
            }
            match SnapshotImage::decode(&self.storage.read_file(&file.path)?) {
                Ok(image) if image.next_seq.saturating_sub(1) <= position => {
                    return Ok(Some(image));
                }
                Ok(_) => {}
                Err(reason) => tracing::warn!("skipping {}: {reason}", file.path.display()),
            }
        }
        Ok(None)
    }

    /// The oldest position a kept snapshot rebuilds (its next sequence
    /// number minus one), from the file names; `None` without snapshots,
    /// or if the oldest is from before names said it.
    pub fn oldest_position(&self) -> std::io::Result<Option<u64>> {
        Ok(self
            .files()?
            .first()
            .and_then(|file| file.next_seq)
            .map(|next_seq| next_seq.saturating_sub(1)))
    }

    /// The newest snapshot that reads back intact.
    pub fn latest(&self) -> std::io::Result<Option<SnapshotImage>> {
        Ok(self.latest_with_bytes()?.map(|(image, _)| image))
    }

    /// [`SnapshotStore::latest`] with the file's bytes, which are the
    /// image's encoding ([`SnapshotImage::encode`] wrote them).
    fn latest_with_bytes(&self) -> std::io::Result<Option<(SnapshotImage, Vec<u8>)>> {
        for SnapshotFile { path, .. } in self.files()?.into_iter().rev() {
            let bytes = self.storage.read_file(&path)?;
            match SnapshotImage::decode(&bytes) {
                Ok(image) => return Ok(Some((image, bytes))),
                Err(reason) => tracing::warn!("skipping {}: {reason}", path.display()),
            }
        }
        Ok(None)
    }

    /// The newest intact snapshot as openraft ships it: its file's bytes
    /// as they are (checked by decoding them), not encoded a second time.
    /// openraft asks for it after every snapshot the node takes.
    fn latest_for_raft(&self) -> std::io::Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.latest_with_bytes()?.map(|(image, bytes)| Snapshot {
            meta: image.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// Where the files to keep start (`files` oldest first): the newest
/// `retention.kept`, and from the newest snapshot at or before the newest
/// one's position minus `retention.positions` on, at most
/// [`SNAPSHOTS_KEPT_MAX`] in all. A file whose name does not give its
/// position (an older store's) counts as old enough.
fn first_retained(files: &[SnapshotFile], retention: Retention) -> usize {
    let by_count = files.len().saturating_sub(retention.kept);
    let cap = files.len().saturating_sub(SNAPSHOTS_KEPT_MAX);
    let Some(newest_next_seq) = files.last().and_then(|file| file.next_seq) else {
        return by_count;
    };
    if retention.positions == 0 {
        return by_count;
    }
    // A snapshot continuing at `next_seq` rebuilds positions from
    // `next_seq - 1` on; the oldest position to retain is:
    let oldest = newest_next_seq
        .saturating_sub(1)
        .saturating_sub(retention.positions);
    let by_position = files
        .iter()
        .rposition(|file| {
            file.next_seq
                .is_none_or(|next_seq| next_seq.saturating_sub(1) <= oldest)
        })
        .unwrap_or(0);
    by_count.min(by_position).max(cap)
}

struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    sequencer: Sequencer,
}

pub struct StateMachine<T> {
    node_id: NodeId,
    applied: Arc<Mutex<Applied>>,
    snapshots: Arc<SnapshotStore>,
    pending: Pending<T>,
    deliveries: Sender<Delivery<T>>,
}

impl<T> StateMachine<T> {
    pub fn new(
        node_id: NodeId,
        latest: Option<&SnapshotImage>,
        snapshots: Arc<SnapshotStore>,
        pending: Pending<T>,
        deliveries: Sender<Delivery<T>>,
    ) -> StateMachine<T> {
        let applied = match latest {
            Some(image) => Applied {
                last_applied: image.meta.last_log_id,
                membership: image.meta.last_membership.clone(),
                sequencer: Sequencer::resume(image.next_seq, image.last_timestamp_ms),
            },
            None => Applied {
                last_applied: None,
                membership: StoredMembership::default(),
                sequencer: Sequencer::new(),
            },
        };
        StateMachine {
            node_id,
            applied: Arc::new(Mutex::new(applied)),
            snapshots,
            pending,
            deliveries,
        }
    }

    /// Hands `delivery` to the executor, waiting while its queue is full.
    /// The wait is back-pressure on Raft's apply, so it runs where tokio
    /// allows blocking (on a current-thread runtime, the simulator's, the
    /// queue must be unbounded: nothing else runs while this waits).
    ///
    /// It tries without blocking first: the queue usually has room, and
    /// `block_in_place` is not free even when nothing blocks: it hands
    /// this worker's other tasks to a thread of the blocking pool (a
    /// wake-up and two context switches per batch applied, measured on a
    /// leader under load).
    fn deliver(&self, delivery: Delivery<T>) -> Result<(), Box<StorageError<NodeId>>> {
        let delivered = match self.deliveries.try_send(delivery) {
            Ok(()) => true,
            Err(crossbeam_channel::TrySendError::Full(delivery)) => {
                super::runtime::blocking(|| self.deliveries.send(delivery).is_ok())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        };
        if delivered {
            Ok(())
        } else {
            Err(Box::new(
                StorageIOError::write_state_machine(AnyError::error("the executor has stopped"))
                    .into(),
            ))
        }
    }
}

pub struct SnapshotBuilder {
    snapshots: Arc<SnapshotStore>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Hands back the newest image the node wrote: snapshots are only
    /// taken at instance-epoch starts, where a restored engine behaves
    /// exactly like one that ran through.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        match self.snapshots.latest_for_raft() {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Err(StorageIOError::read_snapshot(
                None,
                AnyError::error("no snapshot has been written yet"),
            )
            .into()),
            Err(err) => Err(StorageIOError::read_snapshot(None, AnyError::new(&err)).into()),
        }
    }
}

impl<T: Send + 'static> RaftStateMachine<TypeConfig> for StateMachine<T> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let applied = self.applied.lock();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        for entry in entries {
            results.push(());
            let delivery = {
                let mut applied = self.applied.lock();
                let before_log_id = applied.last_applied;
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        None
                    }
                    EntryPayload::Normal(proposal) => {
                        let (own_entries, token) = if proposal.id.node == self.node_id {
                            match self.pending.lock().remove(&proposal.id) {
                                Some(proposed) => {
                                    let (entries, token) = proposed.take_entries(&proposal.entries);
                                    (entries, Some(token))
                                }
                                None => (None, None),
                            }
                        } else {
                            (None, None)
                        };
                        let entries: Vec<crate::entry::Entry> = match own_entries {
                            Some(entries) => entries,
                            None => postcard::from_bytes(&proposal.entries).map_err(|err| {
                                StorageIOError::apply(entry.log_id, AnyError::new(&err))
                            })?,
                        };
                        if entries.is_empty() {
                            continue;
                        }
                        let point = RaftPoint {
                            index: entry.log_id.index,
                            before_log_id,
                            before_membership: applied.membership.clone(),
                            before_timestamp_ms: applied.sequencer.last_timestamp_ms(),
                        };
                        let encoded_bytes = proposal.entries.len();
                        let batch = applied.sequencer.close(entries, proposal.timestamp_ms);
                        Some(Delivery::Batch(Committed {
                            batch,
                            log_index: entry.log_id.index,
                            token,
                            raft: Some(point),
                            checkpoints: proposal.checkpoints,
                            encoded_bytes,
                        }))
                    }
                }
            };
            if let Some(delivery) = delivery {
                self.deliver(delivery).map_err(|err| *err)?;
            }
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let image = SnapshotImage::decode(snapshot.get_ref()).map_err(|reason| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(reason))
        })?;
        if image.meta.last_log_id != meta.last_log_id {
            return Err(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error("the snapshot's contents do not match its metadata"),
            )
            .into());
        }
        let snapshots = self.snapshots.clone();
        let to_save = image.clone();
        super::runtime::blocking(|| snapshots.save(&to_save)).map_err(|err| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&err))
        })?;
        {
            let mut applied = self.applied.lock();
            applied.last_applied = image.meta.last_log_id;
            applied.membership = image.meta.last_membership.clone();
            applied.sequencer = Sequencer::resume(image.next_seq, image.last_timestamp_ms);
        }
        self.deliver(Delivery::Install(Box::new(image)))
            .map_err(|err| *err)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.snapshots
            .latest_for_raft()
            .map_err(|err| StorageIOError::read_snapshot(None, AnyError::new(&err)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files at log index 10, 20, ... continuing at sequence number
    /// 100, 200, ...
    fn files(count: u64) -> Vec<SnapshotFile> {
        (1..=count)
            .map(|i| SnapshotFile {
                index: 10 * i,
                next_seq: Some(100 * i),
                path: PathBuf::new(),
            })
            .collect()
    }

    fn retaining(kept: usize, positions: u64) -> Retention {
        Retention { kept, positions }
    }

    #[test]
    fn the_newest_kept_are_kept_without_a_position_retention() {
        assert_eq!(first_retained(&files(5), retaining(2, 0)), 3);
        assert_eq!(first_retained(&files(1), retaining(2, 0)), 0);
        assert_eq!(first_retained(&[], retaining(2, 0)), 0);
    }

    #[test]
    fn a_position_retention_keeps_the_snapshot_at_or_before_its_start() {
        // Newest continues at 500: position 499. Retaining 250 positions
        // means 249 must be rebuildable: the snapshot continuing at 200
        // (position 199) is the newest at or before it, index 1.
        assert_eq!(first_retained(&files(5), retaining(2, 250)), 1);
        // Position 200 (499 - 299) and 199 (499 - 300) are rebuilt from
        // the snapshot at 199; 198 needs the one at 99.
        assert_eq!(first_retained(&files(5), retaining(2, 299)), 1);
        assert_eq!(first_retained(&files(5), retaining(2, 300)), 1);
        assert_eq!(first_retained(&files(5), retaining(2, 301)), 0);
        // Short retentions never keep fewer than `kept`.
        assert_eq!(first_retained(&files(5), retaining(2, 1)), 3);
        assert_eq!(first_retained(&files(5), retaining(4, 1)), 1);
        // More than the history holds: everything.
        assert_eq!(first_retained(&files(5), retaining(2, 1_000_000)), 0);
    }

    #[test]
    fn files_without_a_position_in_their_name_count_as_old() {
        let mut files = files(5);
        files[2].next_seq = None;
        // 499 - 100 = 399: the snapshot at 399 (index 3) would do; the
        // nameless one at index 2 is older and not needed.
        assert_eq!(first_retained(&files, retaining(2, 100)), 3);
        // Reaching past it: the nameless one counts as at or before.
        assert_eq!(first_retained(&files, retaining(2, 150)), 2);
    }

    #[test]
    fn no_retention_keeps_more_than_the_maximum() {
        let files = files(SNAPSHOTS_KEPT_MAX as u64 + 10);
        assert_eq!(first_retained(&files, retaining(2, u64::MAX)), 10);
    }

    /// `engine` became a byte string (`serde_bytes`): images written when
    /// it was a plain `Vec<u8>` have the same bytes, so both read alike.
    #[test]
    fn the_engine_bytes_keep_their_encoding() {
        #[derive(Serialize)]
        struct Before {
            meta: SnapshotMeta<NodeId, BasicNode>,
            next_seq: u64,
            last_timestamp_ms: u64,
            engine: Vec<u8>,
        }
        let image =
            SnapshotImage::for_file_log(7, 100, 5_000, (0..=255u8).cycle().take(1000).collect());
        let before = Before {
            meta: image.meta.clone(),
            next_seq: image.next_seq,
            last_timestamp_ms: image.last_timestamp_ms,
            engine: image.engine.clone(),
        };
        let old_body = postcard::to_stdvec(&before).unwrap();
        assert_eq!(postcard::to_stdvec(&image).unwrap(), old_body);
        let decoded: SnapshotImage = postcard::from_bytes(&old_body).unwrap();
        assert_eq!(decoded.engine, image.engine);
        assert_eq!(
            SnapshotImage::decode(&image.encode()).unwrap().engine,
            image.engine
        );
    }

    fn some_entries() -> Vec<crate::entry::Entry> {
        use crate::entry::{
            ArgsEncoding, Deploy, Entry, Invocation, SessionChange, SessionEntry, Undeploy,
        };
        let invocation = Invocation {
            client_id: u128::MAX - 3,
            request_id: 9,
            acked_below: 4,
            procedure: "transfer".into(),
            encoding: ArgsEncoding::Postcard,
            args: vec![1, 2, 3, 255],
        };
        let deploy = Deploy {
            client_id: 2,
            request_id: 1,
            name: "bank".into(),
            wasm: vec![0, 97, 115, 109],
        };
        vec![
            Entry::Invoke(invocation.clone()),
            Entry::InvokeChecked {
                invocation: Invocation {
                    encoding: ArgsEncoding::Json,
                    ..invocation
                },
                signature: [7; 16],
            },
            Entry::Deploy(deploy.clone()),
            Entry::DeployResetting {
                deploy,
                reset_tables: vec!["accounts".into()],
            },
            Entry::Session(SessionEntry {
                client_id: crate::entry::session_client_id(5),
                request_id: 1,
                change: SessionChange::End,
            }),
            Entry::Undeploy(Undeploy {
                client_id: 3,
                request_id: 2,
                name: "bank".into(),
            }),
        ]
    }

    /// The leader executes the entries it proposed instead of decoding
    /// them, which is right only because decoding their bytes gives them
    /// back exactly, and only while the applied bytes are its own buffer.
    #[test]
    fn the_proposer_keeps_its_entries_only_for_its_own_buffer() {
        let entries = some_entries();
        let encoded = bytes::Bytes::from(postcard::to_stdvec(&entries).unwrap());
        let decoded: Vec<crate::entry::Entry> = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, entries);
        let proposed = |token| Proposed {
            token,
            entries: entries.clone(),
            encoded: encoded.clone(),
        };
        // What openraft hands back: a clone of the proposal it was given.
        let (kept, token) = proposed(1).take_entries(&encoded.clone());
        assert_eq!((kept.as_ref(), token), (Some(&entries), 1));
        // The same bytes in another buffer (the journal, a peer): decoded.
        let copy = bytes::Bytes::from(encoded.to_vec());
        assert_eq!(proposed(2).take_entries(&copy), (None, 2));
        // A prefix of the buffer starts at the same address.
        assert_eq!(proposed(3).take_entries(&encoded.slice(..10)), (None, 3));
    }

    /// A proposal's entries are a byte string in the journal and on the
    /// wire, the same bytes as the `serde_bytes` `Vec<u8>` they were.
    #[test]
    fn a_proposal_keeps_its_encoding() {
        #[derive(Serialize)]
        struct Before {
            id: ProposalId,
            timestamp_ms: u64,
            #[serde(with = "serde_bytes")]
            entries: Vec<u8>,
            checkpoints: Vec<super::super::Checkpoint>,
        }
        let entries = postcard::to_stdvec(&some_entries()).unwrap();
        let id = ProposalId {
            node: 2,
            boot: 77,
            counter: 5,
        };
        let proposal = super::super::Proposal {
            id,
            timestamp_ms: 123,
            entries: bytes::Bytes::from(entries.clone()),
            checkpoints: Vec::new(),
        };
        let old = postcard::to_stdvec(&Before {
            id,
            timestamp_ms: 123,
            entries,
            checkpoints: Vec::new(),
        })
        .unwrap();
        assert_eq!(postcard::to_stdvec(&proposal).unwrap(), old);
        let decoded: super::super::Proposal = postcard::from_bytes(&old).unwrap();
        assert_eq!(decoded, proposal);
    }
}
