//! Snapshots of an executor: everything that decides its future outcomes
//! and status, as deterministic bytes, and an executor rebuilt from them.
//!
//! # Format (version 3)
//!
//! ```text
//! magic      8 bytes   "ORDOSNAP"
//! version    u32 LE    3
//! body       postcard  Body (below)
//! checksum   16 bytes  xxh3-128 of everything before it, LE
//! ```
//!
//! The body holds, in this order: the engine config (as JSON, so configs
//! recorded before a field existed still compare equal), the position,
//! the chain hash, the state hash and key count, every deployed module
//! (name, SHA-256 and original wasm bytes, in name order), the procedure
//! routes (procedure, module, index, in procedure order), the exactly-once
//! table (clients in id order with their stored results as `(request id,
//! seq, outcome)` in request-id order, and the graveyard in eviction
//! order), every slot's entries in key order, and (since version 3) the
//! sequence number each module was deployed at, in name order, and the
//! schemas of tables whose module was undeployed (table, module, schema),
//! in table order.
//!
//! Version 2 is version 3 without the deploy positions (its modules
//! restore without one). Version 1 differed from version 2 only in the
//! table: each client held a dense window of results indexed by
//! `request_id - base`. Both are still read (and converted); only version
//! 3 is written.
//! Only ordered collections are iterated, so the same state always gives
//! the same bytes.
//!
//! Wasm instances are not in a snapshot: a restored executor starts with
//! fresh ones. That matches the other replicas only at the start of an
//! instance epoch, so a snapshot must be taken just before executing a
//! batch that opens one (`EngineConfig::opens_instance_epoch`), and the
//! restored executor refuses (panics on) any other first batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::{Executor, PartitionSchedule, Route};
use crate::config::EngineConfig;
use crate::module::{DeployError, ModuleCompiler};
use crate::partition::{SLOTS, slot_of_key};
use crate::sessions::{SessionLimits, Sessions, SessionsSnapshot, SessionsSnapshotV1};
use crate::state::StateStore;

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"ORDOSNAP";
/// The snapshot format this build writes (it also reads versions 1 and 2).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;
const SNAPSHOT_FORMAT_VERSION_DENSE_SESSIONS: u32 = 1;
const SNAPSHOT_FORMAT_VERSION_WITHOUT_DEPLOY_POSITIONS: u32 = 2;
const HEADER_BYTES: usize = SNAPSHOT_MAGIC.len() + 4;
const CHECKSUM_BYTES: usize = 16;

/// Why a snapshot cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an ordo engine snapshot: it does not start with the magic bytes `ORDOSNAP`")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("snapshot is truncated: {bytes} bytes is shorter than any snapshot")]
    Truncated { bytes: usize },
    #[error("snapshot is corrupt or truncated: its checksum does not match its contents")]
    ChecksumMismatch,
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "snapshot was taken under a different engine config ({detail}); restore it with the config it was taken with"
    )]
    ConfigMismatch { detail: String },
    #[error("invalid engine config: {0}")]
    InvalidConfig(String),
    #[error("partitions must be 1 to {SLOTS}, not {0}")]
    InvalidPartitions(usize),
    #[error("module `{name}` in the snapshot does not compile: {error}")]
    Module { name: String, error: DeployError },
}

/// What a snapshot holds, as written: borrowed from the executor.
#[derive(Serialize)]
struct BodyOut<'a> {
    config: String,
    position: u64,
    chain_hash: u128,
    state_hash: u128,
    keys: u64,
    modules: Vec<ModuleOut<'a>>,
    routes: Vec<(&'a str, &'a str, u32)>,
    sessions: SessionsSnapshot,
    slots: Vec<StoreEntries<'a>>,
    deployed_at: Vec<(&'a str, u64)>,
    retired_tables: Vec<(&'a str, &'a str, &'a ordo_schema::TableSchema)>,
}

#[derive(Serialize)]
struct ModuleOut<'a> {
    name: &'a str,
    sha256: [u8; 32],
    wasm: &'a [u8],
}

/// A slot's entries in key order, serialized straight from the store.
struct StoreEntries<'a>(&'a StateStore);

impl Serialize for StoreEntries<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for entry in self.0.iter() {
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

/// One slot's entries in a snapshot, in key order, borrowed from it.
type SlotEntries<'image> = Vec<(&'image [u8], &'image [u8])>;

/// What a snapshot holds, as read: the same layout as [`BodyOut`], with
/// the exactly-once table in the layout of the image's version. The
/// slots' keys and values borrow from the image: a million entries would
/// otherwise cost two heap allocations each, only to be copied into the
/// store's inline buffers and freed.
#[derive(Deserialize)]
struct BodyIn<'image, Table = SessionsSnapshot> {
    config: String,
    position: u64,
    chain_hash: u128,
    state_hash: u128,
    keys: u64,
    modules: Vec<ModuleIn>,
    routes: Vec<(String, String, u32)>,
    sessions: Table,
    #[serde(borrow)]
    slots: Vec<SlotEntries<'image>>,
}

impl<'image> BodyIn<'image, SessionsSnapshotV1> {
    fn upgrade(self) -> BodyIn<'image> {
        BodyIn {
            config: self.config,
            position: self.position,
            chain_hash: self.chain_hash,
            state_hash: self.state_hash,
            keys: self.keys,
            modules: self.modules,
            routes: self.routes,
            sessions: self.sessions.upgrade(),
            slots: self.slots,
        }
    }
}

#[derive(Deserialize)]
struct ModuleIn {
    name: String,
    sha256: [u8; 32],
    wasm: Vec<u8>,
}

impl Executor {
    /// The executor's whole replicated state as deterministic bytes (see
    /// the format above): equal states give equal bytes, on any number of
    /// partitions. Call it between batches, from the thread that executes
    /// them, just before executing a batch that opens an instance epoch
    /// (`EngineConfig::opens_instance_epoch`): [`Executor::restore`] gives
    /// fresh instances, which only such a batch starts with everywhere.
    pub fn snapshot(&self) -> Vec<u8> {
        let stores: Vec<_> = self.slots.iter().map(|slot| slot.store.lock()).collect();
        let (state_hash, keys) = stores.iter().fold((0u128, 0u64), |(hash, keys), store| {
            (
                hash.wrapping_add(store.content_hash()),
                keys + store.len() as u64,
            )
        });
        let mut routes: Vec<(&str, &str, u32)> = self
            .routes
            .iter()
            .map(|(procedure, route)| {
                (
                    procedure.as_str(),
                    route.module.compiled.name.as_str(),
                    route.procedure as u32,
                )
            })
            .collect();
        routes.sort_unstable();
        let body = BodyOut {
            config: serde_json::to_string(&self.config).expect("a config serializes"),
            position: self.position,
            chain_hash: self.chain_hash,
            state_hash,
            keys,
            modules: self
                .modules
                .iter()
                .map(|(name, module)| ModuleOut {
                    name,
                    sha256: module.compiled.sha256,
                    wasm: &module.compiled.wasm,
                })
                .collect(),
            routes,
            sessions: self.sessions.snapshot(),
            slots: stores.iter().map(|store| StoreEntries(store)).collect(),
            deployed_at: self
                .deployed_at
                .iter()
                .map(|(name, seq)| (name.as_str(), *seq))
                .collect(),
            retired_tables: self
                .retired_tables
                .iter()
                .map(|(table, (module, schema))| (table.as_str(), module.as_str(), schema))
                .collect(),
        };
        let mut bytes = Vec::with_capacity(HEADER_BYTES + CHECKSUM_BYTES);
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        let bytes = postcard::to_extend(&body, bytes).expect("a snapshot body serializes");
        drop(stores);
        let mut bytes = bytes;
        let checksum = xxh3_128(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// An executor in exactly the state `snapshot` was taken in, with
    /// `partitions` threads (any number: outcomes never depend on it) and
    /// fresh wasm instances. `config` must equal the config the snapshot
    /// was taken under. Every module is compiled again from its wasm
    /// bytes with `compiler`.
    ///
    /// The first batch the restored executor executes must open an
    /// instance epoch; it panics on any other (see [`Executor::snapshot`]).
    /// The position and chain hash a snapshot image recorded, checked but
    /// without rebuilding anything: what the replay debugger compares a
    /// replayed history against.
    pub fn snapshot_position_and_chain_hash(snapshot: &[u8]) -> Result<(u64, u128), SnapshotError> {
        let (body, _, _) = decode(snapshot)?;
        Ok((body.position, body.chain_hash))
    }

    pub fn restore(
        compiler: Arc<ModuleCompiler>,
        config: EngineConfig,
        partitions: usize,
        snapshot: &[u8],
    ) -> Result<Executor, SnapshotError> {
        Executor::restore_scheduled(
            compiler,
            config,
            partitions,
            PartitionSchedule::Threads,
            snapshot,
        )
    }

    /// [`Executor::restore`], with the partition threads' work run as
    /// `schedule` says (the simulator's seeded interleavings).
    pub fn restore_scheduled(
        compiler: Arc<ModuleCompiler>,
        config: EngineConfig,
        partitions: usize,
        schedule: PartitionSchedule,
        snapshot: &[u8],
    ) -> Result<Executor, SnapshotError> {
        let (body, deployed_at, retired_tables) = decode(snapshot)?;
        config.validate().map_err(SnapshotError::InvalidConfig)?;
        if !(1..=SLOTS).contains(&partitions) {
            return Err(SnapshotError::InvalidPartitions(partitions));
        }
        check_config(&body.config, &config)?;
        let corrupt = |what: String| SnapshotError::Corrupt(what);

        let sessions = Sessions::restore(body.sessions, SessionLimits::of(&config))
            .map_err(|err| corrupt(format!("the exactly-once table: {err}")))?;
        if body.slots.len() != SLOTS {
            return Err(corrupt(format!("{} slots, not {SLOTS}", body.slots.len())));
        }

        let mut executor =
            Executor::with_partition_schedule(compiler, config, partitions, schedule);
        for module in body.modules {
            if executor.modules.contains_key(&module.name) {
                return Err(corrupt(format!("module `{}` appears twice", module.name)));
            }
            let compiled = executor
                .compiler
                .compile(&module.name, &module.wasm)
                .map_err(|error| SnapshotError::Module {
                    name: module.name.clone(),
                    error,
                })?;
            if compiled.sha256 != module.sha256 {
                return Err(corrupt(format!(
                    "module `{}`'s bytes do not match its SHA-256",
                    module.name
                )));
            }
            let loaded = executor
                .linker
                .load(compiled)
                .map_err(|err| SnapshotError::Module {
                    name: module.name.clone(),
                    error: DeployError::Invalid(err),
                })?;
            executor.modules.insert(module.name, Arc::new(loaded));
        }

        // Deploys refuse procedure clashes, so the routes are exactly every
        // module's procedures. The snapshot's list must say the same.
        let mut derived = BTreeMap::new();
        for module in executor.modules.values() {
            for (index, procedure) in module.compiled.procedures.iter().enumerate() {
                let clash = derived.insert(
                    procedure.name.clone(),
                    (module.compiled.name.clone(), index as u32),
                );
                if clash.is_some() {
                    return Err(corrupt(format!(
                        "procedure `{}` is provided by two modules",
                        procedure.name
                    )));
                }
            }
        }
        let recorded: BTreeMap<String, (String, u32)> = body
            .routes
            .into_iter()
            .map(|(procedure, module, index)| (procedure, (module, index)))
            .collect();
        if recorded != derived {
            return Err(corrupt(
                "the procedure routes do not match the modules' procedures".to_string(),
            ));
        }
        for (procedure, (module, index)) in derived {
            let route = Route {
                module: executor.modules[&module].clone(),
                procedure: index as usize,
            };
            executor.routes.insert(procedure, route);
        }

        for (slot, store) in build_slot_stores(body.slots).into_iter().enumerate() {
            *executor.slots[slot].store.lock() = store.map_err(corrupt)?;
        }
        let (state_hash, keys) = executor.state_summary();
        if (state_hash, keys) != (body.state_hash, body.keys) {
            return Err(corrupt(format!(
                "its entries hash to {state_hash:032x} ({keys} keys), not the recorded {:032x} ({} keys)",
                body.state_hash, body.keys
            )));
        }

        for (name, seq) in deployed_at {
            if !executor.modules.contains_key(&name) || seq > body.position {
                return Err(corrupt(format!(
                    "a deploy position ({seq}) for module `{name}`, which it does not hold or that is past its position"
                )));
            }
            executor.deployed_at.insert(name, seq);
        }
        for (table, module, schema) in retired_tables {
            if executor
                .modules
                .values()
                .any(|live| live.compiled.contract.tables.contains_key(&table))
            {
                return Err(corrupt(format!(
                    "table `{table}` is both retired and declared by a deployed module"
                )));
            }
            executor.retired_tables.insert(table, (module, schema));
        }
        executor.sessions = sessions;
        executor.position = body.position;
        executor.chain_hash = body.chain_hash;
        executor.epoch_start_required = true;
        Ok(executor)
    }
}

/// Threads that build a restored snapshot's slot stores side by side.
/// Slots are independent, so the stores (and so every outcome) are the
/// same however many build them; on a million keys, building is most of
/// a restore.
const RESTORE_THREADS_MAX: usize = 4;

/// Every slot's store, checked (keys ascending, each in its own slot), in
/// slot order; a slot that fails says why.
fn build_slot_stores(mut slots: Vec<SlotEntries<'_>>) -> Vec<Result<StateStore, String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |cores| cores.get())
        .clamp(1, RESTORE_THREADS_MAX);
    // Contiguous shares, so the results concatenate in slot order.
    let share_slots = slots.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = slots
            .chunks_mut(share_slots)
            .enumerate()
            .map(|(share, entries)| {
                scope.spawn(move || {
                    entries
                        .iter_mut()
                        .enumerate()
                        .map(|(offset, entries)| {
                            build_slot_store(share * share_slots + offset, std::mem::take(entries))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .expect("a slot store builds without panicking")
            })
            .collect()
    })
}

fn build_slot_store(slot: usize, entries: SlotEntries<'_>) -> Result<StateStore, String> {
    if entries.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(format!("slot {slot}'s keys are not in ascending order"));
    }
    if entries.iter().any(|(key, _)| slot_of_key(key) != slot) {
        return Err(format!("a key is stored in slot {slot}, not its own"));
    }
    Ok(StateStore::from_sorted(&entries))
}

/// What version 3 added after the body: deploy positions, and the
/// schemas of tables whose module was undeployed.
type DeployPositions = Vec<(String, u64)>;
type RetiredTables = Vec<(String, String, ordo_schema::TableSchema)>;

/// Checks the frame (magic, version, checksum) and decodes the body, with
/// version 3's additions (none before).
fn decode(snapshot: &[u8]) -> Result<(BodyIn<'_>, DeployPositions, RetiredTables), SnapshotError> {
    if !snapshot.starts_with(&SNAPSHOT_MAGIC[..snapshot.len().min(SNAPSHOT_MAGIC.len())]) {
        return Err(SnapshotError::BadMagic);
    }
    if snapshot.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(SnapshotError::Truncated {
            bytes: snapshot.len(),
        });
    }
    let version = u32::from_le_bytes(
        snapshot[SNAPSHOT_MAGIC.len()..HEADER_BYTES]
            .try_into()
            .expect("4 bytes"),
    );
    if !(SNAPSHOT_FORMAT_VERSION_DENSE_SESSIONS..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let (framed, checksum) = snapshot.split_at(snapshot.len() - CHECKSUM_BYTES);
    let checksum = u128::from_le_bytes(checksum.try_into().expect("16 bytes"));
    if xxh3_128(framed) != checksum {
        return Err(SnapshotError::ChecksumMismatch);
    }
    let body = &framed[HEADER_BYTES..];
    match version {
        SNAPSHOT_FORMAT_VERSION_DENSE_SESSIONS => decode_body::<BodyIn<SessionsSnapshotV1>>(body)
            .map(|body| (body.upgrade(), Vec::new(), Vec::new())),
        SNAPSHOT_FORMAT_VERSION_WITHOUT_DEPLOY_POSITIONS => {
            decode_body::<BodyIn>(body).map(|body| (body, Vec::new(), Vec::new()))
        }
        // Postcard has no framing around a struct: the body's fields
        // followed by the additions decode as this pair.
        _ => decode_body::<(BodyIn, (DeployPositions, RetiredTables))>(body)
            .map(|(body, (deployed_at, retired))| (body, deployed_at, retired)),
    }
}

fn decode_body<'image, T: Deserialize<'image>>(body: &'image [u8]) -> Result<T, SnapshotError> {
    let (body, rest) = postcard::take_from_bytes::<T>(body)
        .map_err(|err| SnapshotError::Corrupt(format!("its body does not decode: {err}")))?;
    if !rest.is_empty() {
        return Err(SnapshotError::Corrupt(format!(
            "{} bytes follow its body",
            rest.len()
        )));
    }
    Ok(body)
}

/// Compares the snapshot's recorded config with the one given, naming
/// every setting that differs.
fn check_config(recorded: &str, given: &EngineConfig) -> Result<(), SnapshotError> {
    let recorded: EngineConfig = serde_json::from_str(recorded).map_err(|err| {
        SnapshotError::Corrupt(format!("its engine config does not parse: {err}"))
    })?;
    if &recorded == given {
        return Ok(());
    }
    let as_map = |config: &EngineConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("a config serializes to a JSON object"),
    };
    let (recorded, given) = (as_map(&recorded), as_map(given));
    let detail = recorded
        .iter()
        .filter(|(name, value)| given.get(*name) != Some(value))
        .map(|(name, value)| {
            let now = given
                .get(name)
                .map_or("nothing".to_string(), |v| v.to_string());
            format!("{name}: snapshot {value}, given {now}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(SnapshotError::ConfigMismatch { detail })
}

#[cfg(test)]
mod tests {
    use ordo_entry::{ArgsEncoding, Batch, Entry, Invocation};

    use super::*;

    /// An image written in version 1's layout (dense exactly-once windows)
    /// restores to exactly the executor a version 2 image gives.
    #[test]
    fn version_1_images_restore_to_the_same_executor() {
        let config = EngineConfig {
            instance_epoch: 4,
            ..EngineConfig::default()
        };
        let compiler = Executor::compiler(&config);
        let mut executor = Executor::new(compiler.clone(), config.clone());
        let invoke = |client_id, request_id, acked_below| {
            Entry::Invoke(Invocation {
                client_id,
                request_id,
                acked_below,
                procedure: "missing".into(),
                encoding: ArgsEncoding::Json,
                args: b"{}".to_vec(),
            })
        };
        executor.execute(&Batch {
            first_seq: 1,
            timestamp_ms: 0,
            entries: vec![
                invoke(1, 5, 0),
                invoke(1, 9, 0),
                invoke(2, 1, 0),
                invoke(1, 7, 6),
            ],
        });
        let image = executor.snapshot();
        let (body, _, _) = decode(&image).unwrap();
        let v1_body = (
            body.config,
            body.position,
            body.chain_hash,
            body.state_hash,
            body.keys,
            body.modules
                .iter()
                .map(|module| (&module.name, module.sha256, &module.wasm))
                .collect::<Vec<_>>(),
            body.routes,
            body.sessions.downgrade(),
            body.slots,
        );
        let mut v1 = SNAPSHOT_MAGIC.to_vec();
        v1.extend_from_slice(&SNAPSHOT_FORMAT_VERSION_DENSE_SESSIONS.to_le_bytes());
        let mut v1 = postcard::to_extend(&v1_body, v1).unwrap();
        let checksum = xxh3_128(&v1);
        v1.extend_from_slice(&checksum.to_le_bytes());
        assert_ne!(v1, image);
        let restored = Executor::restore(compiler, config, 1, &v1).unwrap();
        assert_eq!(restored.snapshot(), image);
        assert_eq!(restored.status(), executor.status());
    }
}
