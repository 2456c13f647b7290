//! When to snapshot (a single node and a cluster member alike), and a
//! single node's snapshots (the embedded file log): writing them off the
//! executor thread, and removing the log records they make unnecessary.
//!
//! A snapshot is taken just before a batch that opens an instance epoch
//! (so a restored engine, with fresh wasm instances, runs the rest of the
//! log exactly as one that never stopped), but not at every such point:
//! serializing the state costs time on the executor thread in proportion
//! to its size, so a node snapshots only once its log (a member's: its
//! Raft journal) has grown by at least
//! [`NodeConfig::snapshot_log_bytes_min`](crate::NodeConfig) and by at
//! least the size of the previous snapshot since it. Like Redis's
//! rewrite of its append-only file at 100% growth, that keeps the work of
//! snapshotting within a constant factor of the work of logging, and
//! bounds a restart to one snapshot load plus the replay of at most about
//! that much log.
//!
//! The image goes to a writer thread, which writes it durably (temporary
//! file, fsync, rename, fsync the directory) next to the newest earlier
//! one, and then removes the log segments whose records both kept
//! snapshots cover. Two are kept so that a damaged newest snapshot falls
//! back to the previous one, whose log suffix is still there. While a
//! backup is reading the log, it pins the records it still needs.
//!
//! Restart: the newest intact snapshot, then the records after the one it
//! covers (see the node's `open`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};
use ordo_engine::{EngineConfig, Executor};
use ordo_sequencer::FileLog;
use ordo_sequencer::entry::Batch;
use ordo_sequencer::raft::{SnapshotImage, SnapshotStore};
use parking_lot::Mutex;

/// The least log growth, in bytes, between two single-node snapshots.
/// At the transfer benchmark's 44 bytes per transaction, 16 MiB is about
/// 380,000 transactions, the most a restart replays (while the snapshot
/// is smaller than that).
pub const SNAPSHOT_LOG_BYTES_MIN_DEFAULT: u64 = 16 << 20;

/// The folder of a data directory that holds a single node's snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Decides, on the executor thread, before which batches to snapshot: a
/// single node's (inside [`LocalSnapshots`]) and a cluster member's (the
/// node's executor loop keeps one). Only at points that open an instance
/// epoch, and there only once the log has grown by `log_bytes_min` and
/// by the previous snapshot's size since that snapshot.
#[derive(Debug)]
pub(crate) struct SnapshotSchedule {
    log_bytes_min: u64,
    log_bytes_since: u64,
    last_snapshot_bytes: u64,
}

impl SnapshotSchedule {
    /// A schedule whose previous snapshot (0 if none) held
    /// `last_snapshot_bytes` of engine image.
    pub(crate) fn new(log_bytes_min: u64, last_snapshot_bytes: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            log_bytes_min,
            log_bytes_since: 0,
            last_snapshot_bytes,
        }
    }

    /// Whether to snapshot just before `batch`.
    pub(crate) fn due(&self, engine: &EngineConfig, batch: &Batch) -> bool {
        self.due_before(engine.instance_epoch, batch.first_seq, batch.last_seq())
    }

    /// Whether to snapshot just before the batch `first_seq..=last_seq`.
    fn due_before(&self, instance_epoch: u64, first_seq: u64, last_seq: u64) -> bool {
        // A minimum of 0 snapshots at every instance epoch.
        let threshold = match self.log_bytes_min {
            0 => 0,
            min => min.max(self.last_snapshot_bytes),
        };
        first_seq > 1
            && self.log_bytes_since >= threshold
            && ordo_engine::opens_instance_epoch(instance_epoch, first_seq, last_seq)
    }

    /// A snapshot with `engine_bytes` of engine image was taken.
    pub(crate) fn taken(&mut self, engine_bytes: u64) {
        self.last_snapshot_bytes = engine_bytes;
        self.log_bytes_since = 0;
    }

    /// The log grew by a batch of `encoded_bytes`.
    pub(crate) fn grew(&mut self, encoded_bytes: usize) {
        self.log_bytes_since += encoded_bytes as u64;
    }
}

/// A single node's snapshots and the log they shorten.
pub struct LocalSnapshots {
    store: Arc<SnapshotStore>,
    log: Arc<Mutex<FileLog>>,
    schedule: Mutex<SnapshotSchedule>,
    /// Set while the writer thread holds an image: the next due point is
    /// skipped rather than queue a second image (and its memory).
    writing: Arc<AtomicBool>,
    images: Option<Sender<SnapshotImage>>,
    /// Backups in progress: pin id → the first log record each still
    /// reads. Records from the lowest on are never removed.
    pins: Arc<Mutex<BTreeMap<u64, u64>>>,
    next_pin: AtomicU64,
    /// The sequence number the newest snapshot continues at (0: none).
    newest_next_seq: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl LocalSnapshots {
    /// Starts the writer thread. `latest` is the snapshot the node was
    /// restored from, if any.
    pub fn start(
        store: Arc<SnapshotStore>,
        log: Arc<Mutex<FileLog>>,
        log_bytes_min: u64,
        latest: Option<&SnapshotImage>,
    ) -> std::io::Result<LocalSnapshots> {
        let (images, received) = crossbeam_channel::bounded(1);
        let writing = Arc::new(AtomicBool::new(false));
        let pins = Arc::new(Mutex::new(BTreeMap::new()));
        let newest_next_seq = Arc::new(AtomicU64::new(latest.map_or(0, |image| image.next_seq)));
        let writer = {
            let store = store.clone();
            let log = log.clone();
            let writing = writing.clone();
            let pins = pins.clone();
            let newest_next_seq = newest_next_seq.clone();
            std::thread::Builder::new()
                .name("ordo-snapshots".into())
                .spawn(move || {
                    write_snapshots(received, &store, &log, &writing, &pins, &newest_next_seq)
                })?
        };
        Ok(LocalSnapshots {
            store,
            log,
            schedule: Mutex::new(SnapshotSchedule::new(
                log_bytes_min,
                latest.map_or(0, |image| image.engine.len() as u64),
            )),
            writing,
            images: Some(images),
            pins,
            next_pin: AtomicU64::new(1),
            newest_next_seq,
            writer: Some(writer),
        })
    }

    /// Called on the executor thread before it executes `batch`, the file
    /// log's record `record_index` of `encoded_bytes`, stamped after a
    /// batch stamped `previous_timestamp_ms`. Takes a snapshot if one is
    /// due; says whether it did.
    pub fn before_batch(
        &self,
        executor: &Executor,
        engine: &EngineConfig,
        batch: &Batch,
        record_index: u64,
        encoded_bytes: usize,
        previous_timestamp_ms: u64,
    ) -> bool {
        let mut schedule = self.schedule.lock();
        let mut taken = false;
        if schedule.due(engine, batch) && !self.writing.swap(true, Ordering::AcqRel) {
            let image = SnapshotImage::for_file_log(
                record_index - 1,
                batch.first_seq,
                previous_timestamp_ms,
                executor.snapshot(),
            );
            schedule.taken(image.engine.len() as u64);
            let sent = self
                .images
                .as_ref()
                .is_some_and(|images| images.send(image).is_ok());
            if !sent {
                self.writing.store(false, Ordering::Release);
            }
            taken = sent;
        }
        schedule.grew(encoded_bytes);
        taken
    }

    /// The sequence number the newest durable snapshot continues at; 0 if
    /// there is none.
    pub fn newest_next_seq(&self) -> u64 {
        self.newest_next_seq.load(Ordering::Acquire)
    }

    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    pub fn log(&self) -> &Arc<Mutex<FileLog>> {
        &self.log
    }

    /// Keeps the log's records from `first_index` on until the pin is
    /// dropped.
    pub fn pin(&self, first_index: u64) -> LogPin {
        let id = self.next_pin.fetch_add(1, Ordering::Relaxed);
        self.pins.lock().insert(id, first_index);
        LogPin {
            id,
            pins: self.pins.clone(),
        }
    }
}

impl Drop for LocalSnapshots {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has written what it
        // holds: a snapshot half written at exit would only be a wasted
        // temporary file, but a finished one saves replay next time.
        self.images = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Log records a backup still needs; they stay until this is dropped.
pub struct LogPin {
    id: u64,
    pins: Arc<Mutex<BTreeMap<u64, u64>>>,
}

impl Drop for LogPin {
    fn drop(&mut self) {
        self.pins.lock().remove(&self.id);
    }
}

fn write_snapshots(
    images: Receiver<SnapshotImage>,
    store: &SnapshotStore,
    log: &Mutex<FileLog>,
    writing: &AtomicBool,
    pins: &Mutex<BTreeMap<u64, u64>>,
    newest_next_seq: &AtomicU64,
) {
    for image in images {
        let saving = std::time::Instant::now();
        match store.save(&image) {
            Ok(()) => {
                tracing::info!(
                    position = image.next_seq - 1,
                    bytes = image.engine.len(),
                    ms = saving.elapsed().as_millis() as u64,
                    "saved a snapshot"
                );
                newest_next_seq.store(image.next_seq, Ordering::Release);
                if let Err(err) = remove_covered_records(store, log, pins) {
                    tracing::error!("could not remove log records a snapshot covers: {err}");
                }
            }
            Err(err) => tracing::error!(
                "could not save a snapshot at sequence {} in {}: {err}",
                image.next_seq,
                store.dir().display()
            ),
        }
        drop(image);
        writing.store(false, Ordering::Release);
        let trimming = std::time::Instant::now();
        crate::malloc::release_free_memory();
        tracing::debug!(
            us = trimming.elapsed().as_micros() as u64,
            "returned free heap memory after a snapshot"
        );
    }
}

/// Removes the log segments whose records the oldest kept snapshot
/// covers, once there are two (and no backup still reads them).
fn remove_covered_records(
    store: &SnapshotStore,
    log: &Mutex<FileLog>,
    pins: &Mutex<BTreeMap<u64, u64>>,
) -> Result<(), String> {
    let pinned_below = pins
        .lock()
        .values()
        .min()
        .map_or(u64::MAX, |first| first.saturating_sub(1));
    records_to_remove(store, pinned_below)?.map_or(Ok(()), |through| {
        log.lock()
            .truncate_prefix(through)
            .map(|_| ())
            .map_err(|err| err.to_string())
    })
}

/// The last log record that may go once `store`'s snapshots are
/// durable: the one the oldest kept snapshot covers, once there are two
/// or more (so that if the newest is damaged, an older one still fits
/// the log), and none from `pinned_below + 1` on. `None` while there is
/// only one snapshot.
/// The single node's rule, shared with the simulator.
pub fn records_to_remove(store: &SnapshotStore, pinned_below: u64) -> Result<Option<u64>, String> {
    let covered = store.covered_indexes().map_err(|err| err.to_string())?;
    let [older, _, ..] = covered[..] else {
        return Ok(None);
    };
    Ok(Some(older.min(pinned_below)))
}

/// Why a data directory's snapshot and log do not fit together.
pub fn check_fits(
    image: Option<&SnapshotImage>,
    log: &FileLog,
    snapshots: &Path,
) -> Result<(), String> {
    match image {
        None if log.first_index() > 1 => Err(format!(
            "the log in {} starts at record {}, and no intact snapshot in {} covers the records before it; restore this node from a backup",
            log.dir().display(),
            log.first_index(),
            snapshots.display()
        )),
        Some(image) if image.covered_index() > log.last_index() => Err(format!(
            "the snapshot in {} covers log records up to {}, but the log in {} ends at record {}: records it had are missing",
            snapshots.display(),
            image.covered_index(),
            log.dir().display(),
            log.last_index()
        )),
        Some(image) if log.first_index() > image.covered_index() + 1 => Err(format!(
            "the newest intact snapshot in {} covers log records up to {}, but the log in {} starts at record {}: records {} to {} are missing",
            snapshots.display(),
            image.covered_index(),
            log.dir().display(),
            log.first_index(),
            image.covered_index() + 1,
            log.first_index() - 1
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotSchedule;

    const EPOCH: u64 = 64;

    #[test]
    fn every_epoch_start_with_a_minimum_of_zero() {
        let schedule = SnapshotSchedule::new(0, 1 << 30);
        assert!(schedule.due_before(EPOCH, 65, 70), "an epoch starts at 65");
        assert!(schedule.due_before(EPOCH, 60, 70), "65 is inside the batch");
        assert!(!schedule.due_before(EPOCH, 66, 128), "129 is not");
        assert!(
            !schedule.due_before(EPOCH, 1, 10),
            "never before the first entry"
        );
    }

    #[test]
    fn only_after_the_minimum_and_the_last_snapshots_size() {
        let mut schedule = SnapshotSchedule::new(1000, 0);
        schedule.grew(999);
        assert!(
            !schedule.due_before(EPOCH, 65, 65),
            "999 bytes of log < 1000"
        );
        schedule.grew(1);
        assert!(schedule.due_before(EPOCH, 65, 65));
        assert!(
            !schedule.due_before(EPOCH, 66, 66),
            "grown, but no epoch start"
        );

        // A snapshot of 5000 bytes: the next needs 5000 bytes of log.
        schedule.taken(5000);
        assert!(!schedule.due_before(EPOCH, 129, 129));
        schedule.grew(4999);
        assert!(!schedule.due_before(EPOCH, 129, 129));
        schedule.grew(1);
        assert!(schedule.due_before(EPOCH, 129, 129));
    }
}
