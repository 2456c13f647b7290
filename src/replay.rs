//! `ordo replay`: re-runs past transactions exactly, offline, from a
//! stopped node's data directory or from a backup.
//!
//! Every transaction is a deterministic function of the log (including its
//! batch boundaries, which open instance epochs: docs/ARCHITECTURE.md), so
//! the state before sequence number N is rebuilt from the newest snapshot
//! taken before N plus the log after it, and N runs again in the same
//! sandbox history it had the first time. Snapshots are taken only at
//! instance-epoch starts, so a restored engine's fresh instances are the
//! ones the original run had.
//!
//! The log records what ran, not what came out, so the replay checks
//! itself against the original run where the original left a record: the
//! chain hash (which digests every outcome) of the first snapshot at or
//! after the replayed range. Equal means every outcome up to that position
//! is the original's; different means the history diverged somewhere
//! between the start snapshot and that one.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use ordo_engine::contract::ProcedureContract;
use ordo_engine::schema::{
    TableSchema, ordered_key_to_json, postcard_params_to_json, postcard_to_json,
};
use ordo_engine::{EngineConfig, Executor, ModuleCompiler, TxOutcome, TxTrace};
use ordo_sequencer::entry::{ArgsEncoding, Batch, Entry};
use ordo_sequencer::raft::{SnapshotImage, SnapshotStore};
use ordo_sequencer::{FileLog, FileLogConfig};

/// The most transactions one `ordo replay --seq A..B` prints: a summary
/// line each, all held in memory until the range ends.
pub const REPLAY_RANGE_TRANSACTIONS_MAX: u64 = 1_000_000;

/// Where the history comes from.
pub enum ReplaySource {
    /// A data directory of a stopped single node (`ordo serve --data`).
    DataDir(PathBuf),
    /// A directory `ordo backup` wrote.
    Backup(PathBuf),
}

/// One replayed log entry.
pub struct ReplayedTx {
    pub seq: u64,
    /// The batch's timestamp (`ordo.now_ms`).
    pub timestamp_ms: u64,
    /// What `ordo.random_seed` returned.
    pub random_seed: u64,
    pub entry: EntryView,
    pub outcome: TxOutcome,
    /// Set when tracing was asked for and a procedure ran.
    pub trace: Option<TxTrace>,
    /// Whether its batch's chain hash equals the one the node recorded
    /// after running it (the chain journal); `None` where there is no
    /// record (a backup, a lost or pruned journal).
    pub matches: Option<bool>,
    /// What the modules deployed when its batch began declare, to show
    /// its arguments, result, keys and values decoded.
    pub schemas: Arc<Schemas>,
}

/// The procedure and table schemas of the modules deployed at one
/// position (docs/PROCEDURES.md, "The procedure contract").
#[derive(Default)]
pub struct Schemas {
    /// By procedure name; procedures without a schema are absent.
    pub procedures: BTreeMap<String, Arc<ProcedureContract>>,
    /// By table name.
    pub tables: BTreeMap<String, TableSchema>,
}

impl Schemas {
    fn of(executor: &Executor) -> Schemas {
        let mut schemas = Schemas::default();
        for module in executor.deployed_modules() {
            schemas
                .procedures
                .extend(module.contract.procedures.clone());
            for (name, table) in &module.contract.tables {
                schemas
                    .tables
                    .entry(name.clone())
                    .or_insert_with(|| table.clone());
            }
        }
        schemas
    }

    /// A call's arguments as JSON: the JSON itself for a JSON call; for a
    /// postcard call, an object keyed by parameter name decoded with the
    /// procedure's schema, or hex where there is none (or the bytes do
    /// not fit it).
    pub fn args(&self, entry: &EntryView) -> serde_json::Value {
        if entry.encoding == Some(ArgsEncoding::Postcard)
            && let Some(contract) = self.procedures.get(&entry.name)
            && let Ok(value) = postcard_params_to_json(
                &contract.schema.params,
                &contract.schema.types,
                &entry.args,
            )
        {
            return value;
        }
        render_payload(entry.encoding, &entry.args)
    }

    /// A committed call's result as JSON, decoded like [`Schemas::args`].
    pub fn result(&self, entry: &EntryView, result: &[u8]) -> serde_json::Value {
        if entry.encoding == Some(ArgsEncoding::Postcard)
            && let Some(contract) = self.procedures.get(&entry.name)
            && let Ok(value) =
                postcard_to_json(&contract.schema.result, &contract.schema.types, result)
        {
            return value;
        }
        render_payload(entry.encoding, result)
    }

    /// A stored key, and optionally its value, read with the schema of
    /// the table the key belongs to (`name 0x00 class key`, see the SDK's
    /// `Table`). Each part that does not decode is shown raw.
    pub fn row(&self, key: &[u8], value: Option<&[u8]>) -> DecodedRow {
        let raw = |bytes: &[u8]| Err(render_bytes(bytes));
        let table = key
            .iter()
            .position(|&b| b == 0)
            .and_then(|nul| Some((std::str::from_utf8(&key[..nul]).ok()?, nul)))
            .and_then(|(name, nul)| Some((self.tables.get_key_value(name)?, nul)));
        let Some(((name, schema), nul)) = table else {
            return DecodedRow {
                table: None,
                key: raw(key),
                value: value.map(raw),
            };
        };
        // After the NUL comes the key class byte, then the encoded key.
        let decoded_key = key
            .get(nul + 2..)
            .and_then(|encoded| ordered_key_to_json(&schema.key, &schema.types, encoded));
        DecodedRow {
            table: Some(name.clone()),
            key: decoded_key.ok_or_else(|| render_bytes(key)),
            value: value.map(|value| {
                postcard_to_json(&schema.value, &schema.types, value)
                    .map_err(|_| render_bytes(value))
            }),
        }
    }
}

/// A key (and value) as [`Schemas::row`] decoded it.
pub struct DecodedRow {
    /// The table whose schema decoded it, if any.
    pub table: Option<String>,
    /// The key decoded with the table's key shape, or (`Err`) its raw
    /// bytes as [`render_bytes`] shows them.
    pub key: Result<serde_json::Value, String>,
    /// Likewise the value, where there is one.
    pub value: Option<Result<serde_json::Value, String>>,
}

/// The parts of a log entry a user wants to see.
pub struct EntryView {
    /// `call`, `deploy`, `session`.
    pub kind: &'static str,
    /// The procedure called, or the module deployed.
    pub name: String,
    /// For a call: the module that provided the procedure when its batch
    /// began, with its SHA-256 (hex).
    pub module: Option<(String, String)>,
    pub encoding: Option<ArgsEncoding>,
    pub args: Vec<u8>,
}

/// Whether the replayed history is the original run's.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    /// The chain hash at `position` (recorded by the original run in its
    /// chain journal or a snapshot) equals the replay's: every outcome up
    /// to it matches.
    Matches { position: u64 },
    /// The batch `first_seq..=last_seq` is the first whose chain hash
    /// differs from the one the node recorded after running it: an
    /// outcome in it is not the original's (the transaction itself when
    /// the batch holds one).
    DivergedInBatch { first_seq: u64, last_seq: u64 },
    /// The chain hashes at `position` differ: some outcome after
    /// `since` (where the replay started) and at or before `position` is
    /// not what the original run produced.
    Diverged {
        since: u64,
        position: u64,
        original: u128,
        replayed: u128,
    },
    /// Nothing the original run recorded lies at or after the range.
    Unverified { reason: String },
}

pub struct Replay {
    /// Where the replay started: a snapshot's position (0: the log's
    /// beginning).
    pub started_at: u64,
    pub transactions: Vec<ReplayedTx>,
    pub verification: Verification,
}

enum Records {
    Log(Box<FileLog>),
    Backup(Vec<(u64, Vec<u8>)>),
    /// A running node's log, read in chunks of at most
    /// [`LIVE_READ_CHUNK_BYTES`] under its lock, so appends wait for one
    /// chunk at a time, never for a whole replay.
    Live(Arc<parking_lot::Mutex<FileLog>>),
}

/// The most log bytes a time-travel read on a running node copies out
/// under the log's lock at once.
const LIVE_READ_CHUNK_BYTES: usize = 4 << 20;

impl Records {
    /// Calls `each` with every record after `after_index`, in order, until
    /// it returns `false`.
    fn each_after(
        &self,
        after_index: u64,
        mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        match self {
            Records::Log(log) => {
                if log.last_index() <= after_index {
                    return Ok(());
                }
                for record in log.read_from(after_index + 1)? {
                    let (index, payload) = record?;
                    if !each(index, &payload)? {
                        break;
                    }
                }
            }
            Records::Backup(records) => {
                for (index, payload) in records.iter().filter(|(index, _)| *index > after_index) {
                    if !each(*index, payload)? {
                        break;
                    }
                }
            }
            Records::Live(log) => {
                let mut next = after_index + 1;
                loop {
                    let chunk = {
                        let log = log.lock();
                        if log.last_index() < next {
                            return Ok(());
                        }
                        let mut chunk = Vec::new();
                        let mut bytes = 0;
                        for record in log.read_from(next)? {
                            let (index, payload) = record?;
                            bytes += payload.len();
                            chunk.push((index, payload));
                            if bytes >= LIVE_READ_CHUNK_BYTES {
                                break;
                            }
                        }
                        chunk
                    };
                    for (index, payload) in &chunk {
                        if !each(*index, payload)? {
                            return Ok(());
                        }
                    }
                    match chunk.last() {
                        Some((last, _)) => next = last + 1,
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// The first record index held (1 when the history starts at the
    /// beginning).
    fn first_index(&self) -> u64 {
        match self {
            Records::Log(log) => log.first_index(),
            Records::Backup(records) => records.first().map_or(u64::MAX, |(index, _)| *index),
            Records::Live(log) => log.lock().first_index(),
        }
    }
}

struct History {
    config: EngineConfig,
    /// The chain journal's records (data directories only).
    chain: crate::chain_journal::ChainHistory,
    /// Oldest first.
    snapshots: Vec<SnapshotImage>,
    records: Records,
}

fn open_history(source: &ReplaySource) -> anyhow::Result<History> {
    match source {
        ReplaySource::DataDir(dir) => {
            let config_path = dir.join("engine-config.json");
            let recorded = std::fs::read_to_string(&config_path).with_context(|| {
                format!(
                    "{} is not an ordo data directory (no readable {})",
                    dir.display(),
                    config_path.display()
                )
            })?;
            let config: EngineConfig = serde_json::from_str(&recorded)
                .with_context(|| format!("{} does not parse", config_path.display()))?;
            if dir.join("raft").exists() {
                bail!(
                    "{} belongs to a cluster member; replay a backup of a single node, or a single node's data directory",
                    dir.display()
                );
            }
            let snapshots_dir = dir.join(crate::snapshots::SNAPSHOTS_DIR);
            let (snapshots, damaged) = if snapshots_dir.exists() {
                SnapshotStore::open(snapshots_dir.clone())?
                    .all_images()
                    .with_context(|| format!("reading {}", snapshots_dir.display()))?
            } else {
                (Vec::new(), Vec::new())
            };
            for (path, reason) in damaged {
                eprintln!("ordo: skipping {}: {reason}", path.display());
            }
            let chain_dir = dir.join(crate::chain_journal::CHAIN_DIR);
            let chain = crate::chain_journal::read(&chain_dir)
                .with_context(|| format!("reading {}", chain_dir.display()))?;
            let log = FileLog::open(FileLogConfig::new(dir.join("log"))).map_err(|err| {
                let text = err.to_string();
                if text.contains("is locked") {
                    anyhow::anyhow!(
                        "{text}: a node is serving this data directory. Stop it, or take a backup with `ordo backup` and replay that"
                    )
                } else {
                    anyhow::Error::new(err)
                }
            })?;
            Ok(History {
                config,
                chain,
                snapshots,
                records: Records::Log(Box::new(log)),
            })
        }
        ReplaySource::Backup(dir) => {
            let backup = crate::backup::read(dir)?;
            Ok(History {
                config: backup.manifest.engine_config.clone(),
                chain: Default::default(),
                snapshots: backup.snapshot.into_iter().collect(),
                records: Records::Backup(backup.records),
            })
        }
    }
}

fn position_of(image: &SnapshotImage) -> u64 {
    image.next_seq - 1
}

/// Replays `seqs` from `source` on `partitions` executor threads (the
/// count changes speed, never an outcome), tracing every host call when
/// `trace` is set.
pub fn replay(
    source: &ReplaySource,
    seqs: RangeInclusive<u64>,
    trace: bool,
    partitions: usize,
) -> anyhow::Result<Replay> {
    let (first, last) = (*seqs.start(), *seqs.end());
    if first == 0 || last < first {
        bail!("sequence numbers start at 1, and a range A..B needs A <= B (got {first}..{last})");
    }
    if last - first >= REPLAY_RANGE_TRANSACTIONS_MAX {
        bail!(
            "a range of {} transactions is over the {REPLAY_RANGE_TRANSACTIONS_MAX}-transaction limit of one replay; split it",
            last - first + 1
        );
    }
    if !(1..=ordo_engine::SLOTS).contains(&partitions) {
        bail!("--partitions must be 1 to {}", ordo_engine::SLOTS);
    }
    let history = open_history(source)?;
    let (mut executor, started_at, after_index) = rebuild_start(&history, first - 1, partitions)?;
    // The first snapshot at or after the range: the original run's record
    // to check the replay against.
    let check = history
        .snapshots
        .iter()
        .find(|image| position_of(image) >= last)
        .map(|image| {
            Executor::snapshot_position_and_chain_hash(&image.engine).map_err(|err| {
                anyhow::anyhow!("the snapshot at {} is damaged: {err}", image.next_seq)
            })
        })
        .transpose()?;
    let mut transactions = Vec::new();
    let mut verification = None;
    // Whether every batch through the range matched a journal record.
    let mut journal_confirms = true;
    history.records.each_after(after_index, |index, payload| {
        let batch = next_batch(&executor, index, payload)?;
        let wanted = batch.first_seq.max(first)..=batch.last_seq().min(last);
        let first_of_batch = transactions.len();
        if wanted.is_empty() {
            executor.execute(&batch);
        } else {
            let modules = executor.modules();
            let schemas = Arc::new(Schemas::of(&executor));
            let (outcomes, mut traces) = if trace {
                executor.execute_traced(&batch, wanted.clone())
            } else {
                (executor.execute(&batch), Default::default())
            };
            for seq in wanted {
                let offset = (seq - batch.first_seq) as usize;
                transactions.push(ReplayedTx {
                    seq,
                    timestamp_ms: batch.timestamp_ms,
                    random_seed: ordo_engine::sandbox::random_seed(seq),
                    entry: view_of(&batch.entries[offset], &modules),
                    outcome: outcomes[offset].clone(),
                    trace: traces.remove(&seq),
                    matches: None,
                    schemas: schemas.clone(),
                });
            }
        }
        let status = executor.status();
        let recorded = history.chain.records.get(&batch.first_seq);
        let matches = recorded.map(|record| {
            record.last_seq == batch.last_seq() && record.chain_hash == status.chain_hash
        });
        for tx in &mut transactions[first_of_batch..] {
            tx.matches = matches;
        }
        if matches == Some(false) {
            verification = Some(Verification::DivergedInBatch {
                first_seq: batch.first_seq,
                last_seq: batch.last_seq(),
            });
            return Ok(false);
        }
        journal_confirms &= matches == Some(true);
        let position = status.position;
        if position >= last && journal_confirms {
            verification = Some(Verification::Matches { position });
            return Ok(false);
        }
        match check {
            Some((at, original)) if position >= at => {
                let replayed = executor.status().chain_hash;
                verification = Some(if position > at {
                    Verification::Unverified {
                        reason: format!(
                            "the snapshot at position {at} does not fall on a batch boundary of this log"
                        ),
                    }
                } else if replayed == original {
                    Verification::Matches { position: at }
                } else {
                    Verification::Diverged {
                        since: started_at,
                        position: at,
                        original,
                        replayed,
                    }
                });
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Ok(position < last),
        }
    })?;
    let reached = executor.status().position;
    let diverged = matches!(verification, Some(Verification::DivergedInBatch { .. }));
    if reached < last && !diverged {
        bail!("the history ends at sequence {reached}, before {last}");
    }
    Ok(Replay {
        started_at,
        transactions,
        verification: verification.unwrap_or(Verification::Unverified {
            reason: "no snapshot of the original run lies at or after the range, and the log does not record outcomes".into(),
        }),
    })
}

/// An executor at the newest snapshot whose position is at most
/// `position_max` (or fresh, when the log starts at the beginning), with
/// that position and the log index it covers.
fn rebuild_start(
    history: &History,
    position_max: u64,
    partitions: usize,
) -> anyhow::Result<(Executor, u64, u64)> {
    let starts_at_beginning = history.records.first_index() == 1;
    let start = history
        .snapshots
        .iter()
        .rev()
        .find(|image| position_of(image) <= position_max);
    if start.is_none() && !starts_at_beginning {
        let Some(oldest) = history.snapshots.iter().map(|image| image.next_seq).min() else {
            bail!(
                "this history holds no snapshot and its log does not start at the beginning: nothing can be rebuilt"
            );
        };
        bail!(
            "sequence {} is older than the retained history: the oldest sequence that can be replayed is {oldest}",
            position_max + 1
        );
    }
    let compiler = Arc::new(ModuleCompiler::new(
        ordo_engine::sandbox::wasmtime_engine(&history.config),
        history.config.clone(),
    ));
    Ok(match start {
        Some(image) => (
            Executor::restore(compiler, history.config.clone(), partitions, &image.engine)
                .map_err(|err| {
                    anyhow::anyhow!(
                        "the snapshot at sequence {} does not restore: {err}",
                        image.next_seq
                    )
                })?,
            position_of(image),
            image.covered_index(),
        ),
        None => (
            Executor::with_partitions(compiler, history.config.clone(), partitions),
            0,
            0,
        ),
    })
}

/// Decodes log record `index` and checks it continues `executor`.
fn next_batch(executor: &Executor, index: u64, payload: &[u8]) -> anyhow::Result<Batch> {
    let batch = Batch::decode(payload)
        .map_err(|err| anyhow::anyhow!("log record {index} does not decode: {err}"))?;
    let expected = executor.status().position + 1;
    if batch.first_seq != expected || batch.entries.is_empty() {
        bail!(
            "log record {index} holds sequence {}, but {expected} was next: the history has a gap",
            batch.first_seq
        );
    }
    Ok(batch)
}

/// A time-travel read: runs the read-only `procedure` with JSON `args`
/// against the state as of position `at` (after the entry with that
/// sequence number), rebuilt from `source`. `ordo.now_ms` is the
/// timestamp of the batch that holds `at`.
pub fn read_at(
    source: &ReplaySource,
    at: u64,
    procedure: &str,
    args: &[u8],
    partitions: usize,
) -> anyhow::Result<ordo_engine::ReadOutcome> {
    if !(1..=ordo_engine::SLOTS).contains(&partitions) {
        bail!("--partitions must be 1 to {}", ordo_engine::SLOTS);
    }
    let history = open_history(source)?;
    read_at_history(
        &history,
        at,
        procedure,
        ArgsEncoding::Json,
        args,
        partitions,
    )
}

/// A time-travel read on a running standalone node (`ReadAt` in the
/// protocol): the state as of `at` is rebuilt beside the node's own, from
/// the newest kept snapshot at or before `at` and the log after it, read
/// in chunks while a pin keeps the node from removing those records.
/// `executed` is the node's current position; `at` may not be past it.
/// Costs one more copy of the state in memory for the read's duration.
pub fn read_at_live(
    local: &crate::snapshots::LocalSnapshots,
    config: &EngineConfig,
    executed: u64,
    at: u64,
    procedure: &str,
    encoding: ArgsEncoding,
    args: &[u8],
) -> anyhow::Result<ordo_engine::ReadOutcome> {
    if at > executed {
        bail!("position {at} is ahead of this node, which has executed up to {executed}");
    }
    // Pin everything first, so nothing goes while a snapshot is chosen;
    // then only what the chosen one needs.
    let log = local.log().clone();
    let pin_all = local.pin(log.lock().first_index());
    let store = local.store();
    let cannot = |err: std::io::Error| anyhow::anyhow!("cannot read the snapshots: {err}");
    let image = store.newest_at_or_before(at).map_err(cannot)?;
    if image.is_none() && log.lock().first_index() > 1 {
        let oldest = store.oldest_position().map_err(cannot)?;
        bail!(
            "position {at} is older than this node's retained history{} (keep more with `ordo serve --retain-positions`)",
            oldest.map_or(String::new(), |oldest| format!(
                ": the oldest position that can be read is {oldest}"
            ))
        );
    }
    let _pin = local.pin(image.as_ref().map_or(1, |image| image.covered_index() + 1));
    drop(pin_all);
    let history = History {
        config: config.clone(),
        chain: Default::default(),
        snapshots: image.into_iter().collect(),
        records: Records::Live(log),
    };
    read_at_history(&history, at, procedure, encoding, args, 1)
}

fn read_at_history(
    history: &History,
    at: u64,
    procedure: &str,
    encoding: ArgsEncoding,
    args: &[u8],
    partitions: usize,
) -> anyhow::Result<ordo_engine::ReadOutcome> {
    let covered = history.records.first_index() == 1
        || history
            .snapshots
            .iter()
            .any(|image| position_of(image) <= at);
    if !covered && let Some(oldest) = history.snapshots.iter().map(position_of).min() {
        bail!(
            "position {at} is older than the retained history: the oldest position that can be read is {oldest}"
        );
    }
    let (mut executor, _, after_index) = rebuild_start(history, at, partitions)?;
    let mut now_ms = 0;
    if executor.status().position < at {
        history.records.each_after(after_index, |index, payload| {
            let batch = next_batch(&executor, index, payload)?;
            now_ms = batch.timestamp_ms;
            if batch.last_seq() <= at {
                executor.execute(&batch);
            } else {
                executor.execute_prefix(&batch, at);
            }
            Ok(executor.status().position < at)
        })?;
    }
    let reached = executor.status().position;
    if reached < at {
        bail!("the history ends at sequence {reached}, before {at}");
    }
    Ok(executor.read(procedure, encoding, args, now_ms))
}

fn view_of(entry: &Entry, modules: &[ordo_engine::ModuleSummary]) -> EntryView {
    match entry {
        Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => EntryView {
            kind: "call",
            name: invocation.procedure.clone(),
            module: modules
                .iter()
                .find(|module| module.procedures.contains(&invocation.procedure))
                .map(|module| (module.name.clone(), module.sha256.clone())),
            encoding: Some(invocation.encoding),
            args: invocation.args.clone(),
        },
        Entry::Deploy(deploy) | Entry::DeployResetting { deploy, .. } => EntryView {
            kind: "deploy",
            name: deploy.name.clone(),
            module: None,
            encoding: None,
            args: Vec::new(),
        },
        Entry::Undeploy(undeploy) => EntryView {
            kind: "undeploy",
            name: undeploy.name.clone(),
            module: None,
            encoding: None,
            args: Vec::new(),
        },
        Entry::Session(session) => EntryView {
            kind: "session",
            name: format!(
                "{} {:032x}",
                match session.change {
                    ordo_sequencer::entry::SessionChange::Register => "open",
                    ordo_sequencer::entry::SessionChange::End => "end",
                },
                session.client_id
            ),
            module: None,
            encoding: None,
            args: Vec::new(),
        },
    }
}

/// Bytes as a user reads them: text where they are printable ASCII
/// (other bytes as `\xNN`), so table keys like `acct\x00\x08...` show
/// their table name.
pub fn render_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_graphic() || byte == b' ' {
            if byte == b'\\' {
                out.push('\\');
            }
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// A JSON value for arguments or a result in `encoding`: the JSON itself
/// when it is JSON text, hex otherwise.
pub fn render_payload(encoding: Option<ArgsEncoding>, bytes: &[u8]) -> serde_json::Value {
    if matches!(encoding, Some(ArgsEncoding::Json))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        return value;
    }
    serde_json::Value::String(format!("0x{}", hex::encode(bytes)))
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds
/// (the proleptic Gregorian calendar, H. Hinnant's days-to-civil method).
pub fn utc_time(ms: u64) -> String {
    let (days, in_day) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_match_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789.
        assert_eq!(utc_time(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(utc_time(1_796_148_977_170), "2026-12-01T18:16:17.170Z");
    }

    #[test]
    fn bytes_render_as_text_where_printable() {
        assert_eq!(render_bytes(b"acct\x00\x08"), "acct\\x00\\x08");
        assert_eq!(render_bytes(&[b'k', 0, 0xff]), "k\\x00\\xff");
    }
}
