//! Hot backups of a standalone node, and restoring a data directory from
//! one.
//!
//! A backup is fixed at one position: the node's newest snapshot file plus
//! the log records after it, up to the last batch the executor has run.
//! Taking it stops nothing: the snapshot file is immutable once written,
//! and the records are read from the live log in chunks, under its lock
//! for a moment each, while a pin keeps the node from removing them. The
//! client (`ordo backup`) writes them into a directory:
//!
//! | file | what |
//! | --- | --- |
//! | `snapshot.bin` | the snapshot file as the node keeps it (its own magic and checksum); absent if the node had none |
//! | `records.bin` | magic `ORDOBKR1`, then per record its log index (u64 LE), length (u32 LE) and payload (an encoded batch) |
//! | `BACKUP.json` | written last: the position, state and chain hashes, engine config, and each file's size and xxh3-128 |
//!
//! `ordo restore` checks every checksum and that the batches continue
//! the snapshot densely, writes a new data directory (the snapshot as
//! covering nothing of a fresh log, and the records as that log), opens a
//! node on it and refuses unless it reaches the backup's position with its
//! state and chain hashes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use ordo_client::protocol::{BACKUP_CHUNK_BYTES_MAX, BackupAnswer, BackupInfo, BackupStep};
use ordo_engine::EngineConfig;
use ordo_sequencer::entry::Batch;
use ordo_sequencer::raft::{SnapshotImage, SnapshotStore};
use ordo_sequencer::storage::replace_file;
use ordo_sequencer::{FileLog, FileLogConfig};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::snapshots::{LocalSnapshots, LogPin};
use crate::{Node, NodeConfig};

pub const MANIFEST_FILE: &str = "BACKUP.json";
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
pub const RECORDS_FILE: &str = "records.bin";
const RECORDS_MAGIC: &[u8; 8] = b"ORDOBKR1";
/// The backup directory format this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// Largest `BACKUP.json` read: it holds a few hashes and the engine config.
const MANIFEST_BYTES_MAX: u64 = 1 << 20;
/// Largest record `ordo restore` reads from `records.bin`: the file log's
/// own record limit.
const RECORD_BYTES_MAX: u32 = ordo_sequencer::file_log::RECORD_BYTES_MAX_DEFAULT;

/// A backup being read out of a node, held by the connection that began
/// it; dropping it lets the node remove the records again.
pub struct ServedBackup {
    pub info: BackupInfo,
    snapshot: Arc<Vec<u8>>,
    /// A standalone node's log and the pin on its records after the
    /// snapshot; `None` for a cluster member's backup (its snapshot only).
    log: Option<(Arc<Mutex<FileLog>>, LogPin)>,
}

impl ServedBackup {
    /// Fixes a backup at the position `status` describes (`log_records`
    /// is the last record the executor has run).
    pub fn begin(
        local: &LocalSnapshots,
        engine_config: &EngineConfig,
        status: &crate::NodeStatus,
    ) -> Result<ServedBackup, String> {
        // Pin everything there is first, so nothing goes while the
        // snapshot is chosen; then narrow the pin to what it needs.
        let log = local.log().clone();
        let pin_all = local.pin(log.lock().first_index());
        let (snapshot, covered) = loop {
            match local.store().newest_file() {
                Err(err) => return Err(format!("cannot list the snapshots: {err}")),
                Ok(None) => break (Vec::new(), 0),
                Ok(Some((covered, path))) => match std::fs::read(&path) {
                    Ok(bytes) => break (bytes, covered),
                    // Replaced by a newer one between listing and reading.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
                },
            }
        };
        if covered == 0 && log.lock().first_index() > 1 {
            return Err("the node has removed log records but has no snapshot".into());
        }
        let pin = local.pin(covered + 1);
        drop(pin_all);
        Ok(ServedBackup {
            info: BackupInfo {
                position: status.engine.position,
                state_hash: status.engine.state_hash_hex(),
                chain_hash: status.engine.chain_hash_hex(),
                engine_config: serde_json::to_string(engine_config)
                    .expect("an engine config serializes"),
                snapshot_bytes: snapshot.len() as u64,
                snapshot_covered_index: covered,
                last_record_index: status.log_records.max(covered),
            },
            snapshot: Arc::new(snapshot),
            log: Some((log, pin)),
        })
    }

    /// Whether the records after the snapshot include the batch it was
    /// taken before (always so unless the status it was begun with had
    /// not yet run that batch: see `Node::begin_backup`). Without a
    /// snapshot, or for a member's backup (records: none; its position is
    /// the snapshot's, taken from the snapshot itself), there is nothing
    /// to miss.
    pub fn holds_the_batch_after_its_snapshot(&self) -> bool {
        self.log.is_none()
            || self.info.snapshot_covered_index == 0
            || self.info.last_record_index > self.info.snapshot_covered_index
    }

    /// Fixes a backup of a cluster member at its newest Raft snapshot:
    /// the snapshot file as the member keeps it (with its Raft log id and
    /// membership, which `ordo restore --member` needs) and no records.
    /// Its position is the snapshot's, behind the member's own by at most
    /// the snapshot schedule's log growth (`SnapshotSchedule`) and one
    /// `--snapshot-every`. The snapshot files are immutable and read
    /// whole here, so writes go on. Its hashes are those of the state the
    /// snapshot rebuilds, computed by restoring it once beside the node's
    /// own state (memory for a second copy, for the moment it takes).
    pub fn begin_member(
        store: &SnapshotStore,
        compiler: Arc<ordo_engine::ModuleCompiler>,
        engine_config: &EngineConfig,
    ) -> Result<ServedBackup, String> {
        let (bytes, covered) = loop {
            match store.newest_file() {
                Err(err) => return Err(format!("cannot list the snapshots: {err}")),
                Ok(None) => {
                    return Err(
                        "the member has no snapshot yet (it takes one once its journal has grown by --snapshot-log-bytes-min, at a --snapshot-every point); try again later".into(),
                    );
                }
                Ok(Some((covered, path))) => match std::fs::read(&path) {
                    Ok(bytes) => break (bytes, covered),
                    // Replaced by a newer one between listing and reading.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
                },
            }
        };
        let image = SnapshotImage::decode(&bytes)
            .map_err(|reason| format!("the newest snapshot is damaged: {reason}"))?;
        if image.covered_index() != covered {
            return Err("the newest snapshot covers another index than its name says".into());
        }
        let executor =
            ordo_engine::Executor::restore(compiler, engine_config.clone(), 1, &image.engine)
                .map_err(|err| format!("the newest snapshot does not restore: {err}"))?;
        let status = executor.status();
        drop(executor);
        if status.position + 1 != image.next_seq {
            return Err(format!(
                "the newest snapshot continues at sequence {} but rebuilds position {}",
                image.next_seq, status.position
            ));
        }
        Ok(ServedBackup {
            info: BackupInfo {
                position: status.position,
                state_hash: status.state_hash_hex(),
                chain_hash: status.chain_hash_hex(),
                engine_config: serde_json::to_string(engine_config)
                    .expect("an engine config serializes"),
                snapshot_bytes: bytes.len() as u64,
                snapshot_covered_index: covered,
                last_record_index: covered,
            },
            snapshot: Arc::new(bytes),
            log: None,
        })
    }

    pub fn step(&self, step: BackupStep) -> Result<BackupAnswer, String> {
        match step {
            BackupStep::Begin => Ok(BackupAnswer::Begun(self.info.clone())),
            BackupStep::Snapshot { offset } => {
                let start = usize::try_from(offset)
                    .ok()
                    .filter(|start| *start <= self.snapshot.len())
                    .ok_or_else(|| {
                        format!(
                            "offset {offset} is past the snapshot's {} bytes",
                            self.snapshot.len()
                        )
                    })?;
                let end = (start + BACKUP_CHUNK_BYTES_MAX).min(self.snapshot.len());
                Ok(BackupAnswer::Snapshot {
                    offset,
                    bytes: self.snapshot[start..end].to_vec(),
                })
            }
            BackupStep::Records { from } => {
                let first = self.info.snapshot_covered_index + 1;
                let last = self.info.last_record_index;
                if from < first || from > last + 1 {
                    return Err(format!(
                        "record {from} is outside this backup's records {first} to {last}"
                    ));
                }
                let mut records = Vec::new();
                let Some((log, _)) = &self.log else {
                    return Ok(BackupAnswer::Records(records));
                };
                if from > last {
                    return Ok(BackupAnswer::Records(records));
                }
                let log = log.lock();
                let mut bytes = 0;
                for record in log.read_from(from).map_err(|err| err.to_string())? {
                    let (index, payload) = record.map_err(|err| err.to_string())?;
                    if index > last
                        || (!records.is_empty() && bytes + payload.len() > BACKUP_CHUNK_BYTES_MAX)
                    {
                        break;
                    }
                    bytes += payload.len();
                    records.push((index, payload));
                }
                Ok(BackupAnswer::Records(records))
            }
        }
    }
}

/// `BACKUP.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub position: u64,
    pub state_hash: String,
    pub chain_hash: String,
    pub engine_config: EngineConfig,
    pub snapshot: Option<FileSum>,
    pub records: FileSum,
    /// Log records in `records.bin`.
    pub record_count: u64,
}

impl Manifest {
    /// Fails unless `status` is at this backup's position with its state
    /// and chain hash; the message says what reached `status` (`reached`)
    /// and how the backup relates to its position (`backup_at`).
    fn check_reached(
        &self,
        status: &ordo_engine::EngineStatus,
        reached: &str,
        backup_at: &str,
    ) -> anyhow::Result<()> {
        if status.position != self.position
            || status.state_hash_hex() != self.state_hash
            || status.chain_hash_hex() != self.chain_hash
        {
            bail!(
                "{reached} position {} with state hash {} and chain hash {}, but the backup {backup_at} position {} with {} and {}",
                status.position,
                status.state_hash_hex(),
                status.chain_hash_hex(),
                self.position,
                self.state_hash,
                self.chain_hash
            );
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub file: String,
    pub bytes: u64,
    /// Hex of the xxh3-128 of the whole file.
    pub xxh3_128: String,
}

fn file_sum(file: &str, bytes: &[u8]) -> FileSum {
    FileSum {
        file: file.to_string(),
        bytes: bytes.len() as u64,
        xxh3_128: format!("{:032x}", xxh3_128(bytes)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// A directory that may be filled: absent (it is created) or empty.
fn fresh_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{what} {} is not empty; give a new or empty directory",
                    dir.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => bail!("cannot read {what} {}: {err}", dir.display()),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Checks that `batches` continue `snapshot` (or the start of history)
/// densely, and returns the last sequence number they reach.
fn check_batches(
    snapshot: Option<&SnapshotImage>,
    records: &[(u64, Vec<u8>)],
) -> anyhow::Result<u64> {
    let mut next_seq = snapshot.map_or(1, |image| image.next_seq);
    for (index, payload) in records {
        let batch =
            Batch::decode(payload).with_context(|| format!("log record {index} is not a batch"))?;
        if batch.first_seq != next_seq || batch.entries.is_empty() {
            bail!(
                "log record {index} starts at sequence {}, but the backup's history continues at {next_seq}",
                batch.first_seq
            );
        }
        next_seq = batch.last_seq() + 1;
    }
    Ok(next_seq - 1)
}

/// `ordo backup`: copies the node at `client`'s position into `dir`.
pub async fn take(client: &ordo_client::Client, dir: &Path) -> anyhow::Result<Manifest> {
    fresh_dir(dir, "the backup directory")?;
    let BackupAnswer::Begun(info) = client.backup_step(BackupStep::Begin).await? else {
        bail!("the server answered a backup's begin with something else");
    };
    let engine_config: EngineConfig = serde_json::from_str(&info.engine_config)
        .context("the server's engine config does not parse")?;

    let mut snapshot = Vec::new();
    while (snapshot.len() as u64) < info.snapshot_bytes {
        let offset = snapshot.len() as u64;
        match client.backup_step(BackupStep::Snapshot { offset }).await? {
            BackupAnswer::Snapshot { offset: at, bytes } if at == offset && !bytes.is_empty() => {
                snapshot.extend_from_slice(&bytes)
            }
            _ => {
                bail!("the server sent the wrong part of the snapshot (asked for offset {offset})")
            }
        }
    }
    if snapshot.len() as u64 != info.snapshot_bytes {
        bail!(
            "the server sent {} snapshot bytes, not the {} it announced",
            snapshot.len(),
            info.snapshot_bytes
        );
    }
    let image = if snapshot.is_empty() {
        None
    } else {
        let image = SnapshotImage::decode(&snapshot)
            .map_err(|reason| anyhow::anyhow!("the snapshot received is damaged: {reason}"))?;
        if image.covered_index() != info.snapshot_covered_index {
            bail!("the snapshot received covers another log record than the server said");
        }
        Some(image)
    };

    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = info.snapshot_covered_index + 1;
    while next <= info.last_record_index {
        let BackupAnswer::Records(chunk) = client
            .backup_step(BackupStep::Records { from: next })
            .await?
        else {
            bail!("the server answered a request for records with something else");
        };
        if chunk.is_empty() {
            bail!(
                "the server sent no records from {next} on, though the backup ends at {}",
                info.last_record_index
            );
        }
        for (index, payload) in chunk {
            if index != next {
                bail!("the server sent log record {index} where {next} was due");
            }
            records.push((index, payload));
            next += 1;
        }
    }
    let reached = check_batches(image.as_ref(), &records)?;
    if reached != info.position {
        bail!(
            "the backup's batches reach sequence {reached}, but the server said {}",
            info.position
        );
    }

    let manifest = write_backup(dir, &info, engine_config, &snapshot, &records)?;
    Ok(manifest)
}

fn write_backup(
    dir: &Path,
    info: &BackupInfo,
    engine_config: EngineConfig,
    snapshot: &[u8],
    records: &[(u64, Vec<u8>)],
) -> anyhow::Result<Manifest> {
    let snapshot_sum = if snapshot.is_empty() {
        None
    } else {
        write_synced(&dir.join(SNAPSHOT_FILE), snapshot)?;
        Some(file_sum(SNAPSHOT_FILE, snapshot))
    };
    let mut encoded = Vec::with_capacity(
        RECORDS_MAGIC.len() + records.iter().map(|(_, p)| p.len() + 12).sum::<usize>(),
    );
    encoded.extend_from_slice(RECORDS_MAGIC);
    for (index, payload) in records {
        encoded.extend_from_slice(&index.to_le_bytes());
        encoded.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        encoded.extend_from_slice(payload);
    }
    write_synced(&dir.join(RECORDS_FILE), &encoded)?;
    let manifest = Manifest {
        format: BACKUP_FORMAT_VERSION,
        position: info.position,
        state_hash: info.state_hash.clone(),
        chain_hash: info.chain_hash.clone(),
        engine_config,
        snapshot: snapshot_sum,
        records: file_sum(RECORDS_FILE, &encoded),
        record_count: records.len() as u64,
    };
    // The manifest last, through a rename: a directory with a
    // `BACKUP.json` is a complete backup.
    let path = dir.join(MANIFEST_FILE);
    replace_file(
        &path,
        serde_json::to_string_pretty(&manifest)
            .expect("a manifest serializes")
            .as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}

/// A backup directory read back and checked.
pub struct ReadBackup {
    pub manifest: Manifest,
    pub snapshot: Option<SnapshotImage>,
    pub records: Vec<(u64, Vec<u8>)>,
}

fn read_checked(dir: &Path, sum: &FileSum, limit: u64) -> anyhow::Result<Vec<u8>> {
    if sum.file.contains(['/', '\\']) || sum.file == ".." {
        bail!("the manifest names a file outside the backup: {}", sum.file);
    }
    let path = dir.join(&sum.file);
    let length = std::fs::metadata(&path)
        .with_context(|| format!("{} is missing", path.display()))?
        .len();
    if length != sum.bytes || length > limit {
        bail!(
            "{} is {length} bytes, but the manifest says {}",
            path.display(),
            sum.bytes
        );
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if format!("{:032x}", xxh3_128(&bytes)) != sum.xxh3_128 {
        bail!(
            "{} is damaged: its checksum does not match the manifest's",
            path.display()
        );
    }
    Ok(bytes)
}

/// Reads and checks a backup directory.
pub fn read(dir: &Path) -> anyhow::Result<ReadBackup> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = match std::fs::metadata(&manifest_path) {
        Ok(meta) if meta.len() > MANIFEST_BYTES_MAX => {
            bail!(
                "{} is over {MANIFEST_BYTES_MAX} bytes",
                manifest_path.display()
            )
        }
        Ok(_) => std::fs::read(&manifest_path)?,
        Err(err) => bail!(
            "{} has no {MANIFEST_FILE} ({err}): it is not a complete backup",
            dir.display()
        ),
    };
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("{} does not parse", manifest_path.display()))?;
    if manifest.format != BACKUP_FORMAT_VERSION {
        bail!(
            "backup format {} is not supported (this build reads {BACKUP_FORMAT_VERSION})",
            manifest.format
        );
    }
    let snapshot = match &manifest.snapshot {
        None => None,
        Some(sum) => {
            let bytes = read_checked(dir, sum, u64::MAX)?;
            Some(SnapshotImage::decode(&bytes).map_err(|reason| {
                anyhow::anyhow!("{} is damaged: {reason}", dir.join(&sum.file).display())
            })?)
        }
    };
    let encoded = read_checked(dir, &manifest.records, u64::MAX)?;
    let records = decode_records(&encoded)?;
    if records.len() as u64 != manifest.record_count {
        bail!(
            "{} holds {} records, but the manifest says {}",
            RECORDS_FILE,
            records.len(),
            manifest.record_count
        );
    }
    let reached = check_batches(snapshot.as_ref(), &records)?;
    if reached != manifest.position {
        bail!(
            "the backup's batches reach sequence {reached}, but its manifest says {}",
            manifest.position
        );
    }
    Ok(ReadBackup {
        manifest,
        snapshot,
        records,
    })
}

fn decode_records(bytes: &[u8]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let Some(mut rest) = bytes.strip_prefix(RECORDS_MAGIC) else {
        bail!("{RECORDS_FILE} does not start with its magic bytes");
    };
    let mut records = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 12 {
            bail!("{RECORDS_FILE} ends in the middle of a record header");
        }
        let index = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let length = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if length > RECORD_BYTES_MAX || rest.len() - 12 < length as usize {
            bail!("{RECORDS_FILE}: record {index} claims {length} bytes, more than remain");
        }
        records.push((index, rest[12..12 + length as usize].to_vec()));
        rest = &rest[12 + length as usize..];
    }
    Ok(records)
}

/// What `ordo restore` made.
pub struct Restored {
    pub data: PathBuf,
    pub position: u64,
    pub state_hash: String,
}

/// `ordo restore`: makes the data directory `data` from the backup in
/// `dir`, then opens a node on it and checks it reaches the backup's
/// position and hashes.
pub fn restore(dir: &Path, data: &Path) -> anyhow::Result<Restored> {
    let backup = read(dir)?;
    fresh_dir(data, "the data directory")?;
    let config = NodeConfig {
        engine: backup.manifest.engine_config.clone(),
        ..NodeConfig::new(data)
    };
    if let Some(image) = &backup.snapshot {
        let store = SnapshotStore::open(data.join(crate::snapshots::SNAPSHOTS_DIR))?;
        // In the new data directory the snapshot covers no log record:
        // the log starts afresh with the batches after it.
        store.save(&SnapshotImage::for_file_log(
            0,
            image.next_seq,
            image.last_timestamp_ms,
            image.engine.clone(),
        ))?;
    }
    {
        let mut log = FileLog::open(FileLogConfig::new(data.join("log")))?;
        for (_, payload) in &backup.records {
            log.append(payload)?;
        }
        log.sync()?;
    }
    let node = Node::open(config).with_context(|| {
        format!(
            "the restored data directory {} does not open",
            data.display()
        )
    })?;
    let status = node.status().engine;
    drop(node);
    backup
        .manifest
        .check_reached(&status, "the restored node reached", "was taken at")?;
    Ok(Restored {
        data: data.to_path_buf(),
        position: status.position,
        state_hash: status.state_hash_hex(),
    })
}

/// What one of the other members of a cluster said about itself when
/// `ordo restore --member` asked it (its status).
#[derive(Clone, Debug)]
pub struct MemberReport {
    /// Where it was asked.
    pub addr: String,
    pub node_id: u64,
    /// Its current term (of its vote).
    pub term: u64,
    /// The last index in its Raft log.
    pub last_log_index: u64,
}

/// What `ordo restore --member` made.
pub struct SeededMember {
    pub data: PathBuf,
    pub node_id: u64,
    pub position: u64,
    pub state_hash: String,
    /// The Raft index the snapshot covers: the member receives the log
    /// after it from the leader.
    pub snapshot_index: u64,
    /// It votes again once it has applied this index (or an entry of a
    /// term after `term`).
    pub caught_up_at: u64,
    pub term: u64,
}

/// How many of the other members must answer before a member is seeded:
/// enough that they meet every majority of the `voters` (which may have
/// counted the member being replaced), so the highest term and log index
/// among them bound every vote and every committed entry.
pub fn members_to_ask(voters: usize) -> usize {
    voters - voters / 2
}

/// `ordo restore --member NODE_ID`: makes the data directory `data` of
/// cluster member `node_id` from a backup of (any) member of the same
/// cluster, in place of the member's lost data, so that it joins with the
/// backup's snapshot as its installed Raft snapshot and takes only the
/// log after it from the leader.
///
/// Raft assumes a member never forgets what it acknowledged or voted, and
/// the member being replaced may have done both after the backup was
/// taken. So `reports`, the statuses of the other members asked just now,
/// must come from enough of them ([`members_to_ask`]) and none may be
/// `node_id` itself (the member replaced must be gone); the new member
/// then starts with a vote of the highest term they reported (it follows
/// no older leader) and the `lost-entries` marker, which keeps it from
/// voting until it has applied the highest log index they reported
/// (`store::seed_member`).
pub fn restore_member(
    dir: &Path,
    data: &Path,
    node_id: u64,
    reports: &[MemberReport],
) -> anyhow::Result<SeededMember> {
    let backup = read(dir)?;
    let Some(image) = &backup.snapshot else {
        bail!(
            "{} holds no snapshot: a member is seeded from a backup of a cluster member",
            dir.display()
        );
    };
    let voters: Vec<u64> = image
        .meta
        .last_membership
        .membership()
        .voter_ids()
        .collect();
    let Some(snapshot_log_id) = image.meta.last_log_id.filter(|_| !voters.is_empty()) else {
        bail!(
            "{} is a backup of a standalone node: restore it without --member",
            dir.display()
        );
    };
    if !backup.records.is_empty() {
        bail!(
            "{} holds log records after its snapshot, which a cluster member's backup never does",
            dir.display()
        );
    }
    if !voters.contains(&node_id) {
        bail!("node {node_id} is not a member of the backup's cluster (members {voters:?})");
    }
    let mut asked: Vec<&MemberReport> = Vec::new();
    for report in reports {
        if report.node_id == node_id {
            bail!(
                "{} answers as node {node_id}: the member being replaced is still running; stop it first",
                report.addr
            );
        }
        if !voters.contains(&report.node_id) {
            bail!(
                "{} answers as node {}, which is not a member of the backup's cluster (members {voters:?})",
                report.addr,
                report.node_id
            );
        }
        if !asked.iter().any(|seen| seen.node_id == report.node_id) {
            asked.push(report);
        }
    }
    let needed = members_to_ask(voters.len());
    if asked.len() < needed {
        bail!(
            "{} of the other members answered ({}); seeding member {node_id} of a {}-member cluster needs {needed}, so that the highest term and log index they report bound what node {node_id} may have voted and acknowledged",
            asked.len(),
            asked
                .iter()
                .map(|report| format!("node {} at {}", report.node_id, report.addr))
                .collect::<Vec<_>>()
                .join(", "),
            voters.len()
        );
    }
    let term = asked.iter().map(|report| report.term).max().unwrap_or(0);
    let caught_up_at = asked
        .iter()
        .map(|report| report.last_log_index)
        .max()
        .unwrap_or(0)
        .max(snapshot_log_id.index);

    // The snapshot must rebuild exactly the state the backup names.
    let engine_config = backup.manifest.engine_config.clone();
    let executor = ordo_engine::Executor::restore(
        ordo_engine::Executor::compiler(&engine_config),
        engine_config.clone(),
        1,
        &image.engine,
    )
    .map_err(|err| anyhow::anyhow!("the backup's snapshot does not restore: {err}"))?;
    let status = executor.status();
    drop(executor);
    backup
        .manifest
        .check_reached(&status, "the backup's snapshot rebuilds", "names")?;

    fresh_dir(data, "the data directory")?;
    let config_path = data.join("engine-config.json");
    write_synced(
        &config_path,
        serde_json::to_string_pretty(&engine_config)
            .expect("the config serializes")
            .as_bytes(),
    )?;
    let raft_dir = data.join("raft");
    SnapshotStore::open(raft_dir.join("snapshots"))?.save(image)?;
    ordo_sequencer::raft::store::seed_member(
        &raft_dir,
        snapshot_log_id,
        term,
        caught_up_at,
        format!(
            "seeded by `ordo restore --member` from a backup at Raft index {}; the member it replaces may have acknowledged entries up to index {caught_up_at} (term {term})",
            snapshot_log_id.index
        ),
    )?;
    sync_dir(&raft_dir)?;
    sync_dir(data)?;
    Ok(SeededMember {
        data: data.to_path_buf(),
        node_id,
        position: status.position,
        state_hash: status.state_hash_hex(),
        snapshot_index: snapshot_log_id.index,
        caught_up_at,
        term,
    })
}

#[cfg(test)]
mod tests {
    use super::members_to_ask;

    /// Enough of the other members to meet every majority of the whole
    /// cluster, whichever majority the replaced member was part of.
    #[test]
    fn the_members_asked_meet_every_majority() {
        for voters in 1..=9usize {
            let majority = voters / 2 + 1;
            let asked = members_to_ask(voters);
            // A majority holding the replaced member has `majority - 1`
            // others; the asked and they overlap among the `voters - 1`:
            // asked + (majority - 1) > voters - 1.
            assert!(asked + majority > voters, "{voters} voters");
            // One fewer would not: (asked - 1) + (majority - 1) <= voters - 1.
            assert!(asked + majority <= voters + 1, "{voters} voters");
        }
        assert_eq!(members_to_ask(3), 2);
        assert_eq!(members_to_ask(5), 3);
    }
}
