//! The executor: a deterministic state machine from log batches to state
//! and outcomes. It does no I/O; its only inputs are batches, in order.
//!
//! For each entry it (1) consults the exactly-once table, (2) runs the
//! deploy or the procedure in the sandbox, (3) commits or drops the write
//! set, and (4) folds the outcome into the batch digest. After the batch
//! it chains `(previous chain, batch range, content hash, outcome digest)`
//! into the chain hash that replicas compare to detect divergence.
//!
//! # Partitions
//!
//! The state is split into [`SLOTS`] slots by partition key (see
//! partition.rs), and each slot belongs to one executor thread
//! ([`thread_of_slot`](crate::partition::thread_of_slot)). Thread 0 is
//! the thread that calls [`Executor::execute_each`]; threads 1 to N-1 are
//! partition threads. Thread 0 *plans* entries in log order (the
//! exactly-once check, the procedure's partition declaration) into cells
//! shared with the other threads, and hands outcomes out in log order;
//! nothing else is serial. Every slot has a *lane* that walks the planned
//! cells in log order and runs the transactions that touch its slot; a
//! thread steps the lanes of the slots it owns. A transaction spanning
//! slots runs when the last of its slots' lanes reaches it, so each
//! slot's transactions run one at a time, in log order, in the slot's
//! own instances: Calvin's deterministic locking at slot granularity,
//! with the log order as the lock order, so there are no deadlocks and
//! no aborts that depend on timing. A deploy, an undeploy or a traced
//! call runs on thread 0 once everything before it is done. Outcomes,
//! the state hash and the chain hash are the same for every N
//! (executor/lanes.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use ordo_entry::{ArgsEncoding, Batch, Deploy, Entry, Invocation, Signature};
use parking_lot::Mutex;
use smallvec::SmallVec;
use xxhash_rust::xxh3::Xxh3;

use crate::LookupMap;
use crate::config::EngineConfig;
use crate::contract::{DeployedModule, ProcedureContract};
use crate::module::{CompiledModule, DeployError, ModuleCompiler, ProcedureInfo};
use crate::outcome::{
    Abort, AbortKind, ModuleSummary, Outcome, ProcedureLogs, ReadOutcome, TxOutcome,
};
use crate::partition::{Declared, SLOTS, SlotSet};
use crate::sandbox::{
    Call, CallNotes, Export, HostLinker, LoadedModule, Sandbox, StateView, WriteLimits,
    abi_encoding, wasmtime_engine,
};
use crate::sessions::{Check, SessionLimits, Sessions};
use crate::state::StateStore;
use crate::trace::TxTrace;

/// Where an executor stands: its log position and hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineStatus {
    /// The sequence number of the last executed entry (0 before any).
    pub position: u64,
    /// Order-independent hash of the state's contents.
    pub state_hash: u128,
    /// Hash chained over every batch executed, including outcomes.
    pub chain_hash: u128,
    /// Number of keys stored.
    pub keys: u64,
    /// Open exactly-once sessions, registered or not.
    pub sessions: u64,
    /// What the stored outcomes are charged against
    /// `EngineConfig::stored_results_total_bytes_max`.
    pub stored_result_bytes: u64,
}

impl EngineStatus {
    pub fn state_hash_hex(&self) -> String {
        format!("{:032x}", self.state_hash)
    }

    pub fn chain_hash_hex(&self) -> String {
        format!("{:032x}", self.chain_hash)
    }
}

/// What [`Executor::scan_committed`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScannedRows {
    /// The position the rows are as of.
    pub position: u64,
    /// `(key, value)` in key order.
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether rows remain in the range after the last one.
    pub more: bool,
}

/// One slot: its committed state and the instances its transactions run
/// in. Only the thread stepping the slot's lane, or thread 0 while that
/// thread is idle, locks either, so the locks are never contended.
struct Slot {
    store: Arc<Mutex<StateStore>>,
    sandbox: Mutex<Sandbox>,
}

/// A procedure: its module and its index in the module's procedure list.
#[derive(Clone)]
struct Route {
    module: Arc<LoadedModule>,
    procedure: usize,
}

/// A transaction whose partitions are known, ready to run.
struct Prepared {
    /// The procedure's module, by pointer rather than by `Arc`: a count
    /// changed on thread 0 and a module read on another thread share a
    /// cache line (the `Arc`'s counts sit beside the module's first
    /// fields), which would then move between cores on every
    /// transaction. The module outlives the task: only a deploy or an
    /// undeploy drops a module, and they run only once every entry
    /// planned before them is done (`needs_the_whole_engine`).
    module: *const LoadedModule,
    procedure: usize,
    declared: Declared,
    /// The slots to lock; never empty (a transaction that declared no
    /// partition still runs in slot 0's instances).
    slots: SlotSet,
}

/// Stack size of every engine thread: thread 0 (the caller's thread,
/// which should be spawned with it too) and the partition threads. wasm
/// has its own stack limit ([`EngineConfig::wasm_stack_bytes_max`]); this
/// is for the host frames beneath it, and it is the same for every thread
/// so that no transaction can overflow on one thread and not another.
pub const ENGINE_THREAD_STACK_BYTES: usize = 16 << 20;

/// A panic on an engine thread: a broken invariant or a bug, never an
/// outcome. The executor re-raises a partition thread's panic on the
/// caller's thread with this as the payload ([`std::panic::resume_unwind`]),
/// so whoever calls [`Executor::execute`] can name the thread and the
/// transaction and stop, instead of waiting forever for a thread that is
/// gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnginePanic {
    /// The thread's name, such as `ordo-partition-2`.
    pub thread: String,
    /// The transaction it was running (or waiting at, for a transaction
    /// that spans threads), if any.
    pub seq: Option<u64>,
    /// The panic's message.
    pub message: String,
}

impl std::fmt::Display for EnginePanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(
                f,
                "engine thread `{}` panicked while running the transaction at sequence {seq}: {}",
                self.thread, self.message
            ),
            None => write!(
                f,
                "engine thread `{}` panicked between transactions: {}",
                self.thread, self.message
            ),
        }
    }
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(engine) = payload.downcast_ref::<EnginePanic>() {
        engine.to_string()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// An entry of the batch being executed, until its outcome is handed out.
enum Pending {
    /// Planned to run on a lane; its result is in its cell once done.
    Running,
    /// Known. `ran` is false if it never ran (a forgotten request), in
    /// which case the exactly-once table does not remember it.
    Done {
        outcome: Outcome,
        ran: bool,
        notes: RunNotes,
    },
    /// A retry of the request that ran at `seq`; `None` if that was earlier
    /// in this batch.
    Duplicate { seq: u64, outcome: Option<Outcome> },
}

/// How far thread 0 plans ahead of the answers it has handed out, in
/// entries: enough that the other threads rarely wait for it to plan, and
/// a bound on how far one thread's lanes can run ahead of another's.
const PLAN_AHEAD_ENTRIES: usize = 512;

/// Batches of fewer entries run on thread 0 alone, whatever the number
/// of threads: the other threads sleep between batches, waking them costs
/// tens of microseconds, and behind `ordo serve` the cores they would take
/// are the network's and the log's. Measured on the 2-core VM: with 512,
/// `ordo serve --partitions 2` ran `ordo bench transfer` 15-35% slower
/// than `--partitions 1`; with batches of up to 1,024 entries on the
/// threads never, at the same speed (docs/BENCHMARKS.md).
pub const PARALLEL_BATCH_ENTRIES_MIN: usize = 2048;

/// Entries thread 0 plans before it runs its own lanes again.
const PLAN_CHUNK_ENTRIES: usize = 64;

// An entry's cell is reused only once the entry is handed out.
const _: () = assert!(PLAN_AHEAD_ENTRIES < lanes::RING_CELLS);

/// Steps thread 0's lane takes before it plans and hands out answers
/// again.
const OWN_STEPS_BETWEEN_PLANS: usize = 32;

/// Keeps a batch borrowed until every partition thread has left it: on a
/// panic on thread 0 it stops the lanes first.
struct LeaveGuard<'a> {
    shared: &'a lanes::Shared,
    workers: usize,
    finished: bool,
}

impl LeaveGuard<'_> {
    fn finish(&mut self) {
        self.shared.wait_until_left(self.workers);
        self.finished = true;
    }
}

impl Drop for LeaveGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.abort(None);
            self.shared.wait_until_left(self.workers);
        }
    }
}

/// Thread 0's bookkeeping for one batch.
struct BatchRun {
    first_seq: u64,
    entries: Vec<Pending>,
    /// Entries handed out so far (a prefix of `entries`).
    emitted: usize,
    /// Sequence numbers whose outcome a later duplicate in this batch
    /// needs, and those outcomes once known.
    wanted: BTreeSet<u64>,
    kept: BTreeMap<u64, Outcome>,
    digest: Xxh3,
}

mod lanes;
mod snapshot;

pub use snapshot::SnapshotError;

/// How the partition threads' work is run. Either way outcomes, the state
/// hash and the chain hash are the same: only speed differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionSchedule {
    /// `partitions - 1` OS threads beside the caller's (production).
    Threads,
    /// No threads: the caller's thread steps every partition thread's
    /// lanes, and a generator seeded with this value picks which thread's
    /// lanes move next and when, so a simulator can explore interleavings and
    /// replay one by its seed (executor/lanes.rs, `SeededLanes`).
    Seeded(u64),
}

/// Where lanes 1 to N-1 run.
enum Lanes {
    /// On partition threads, at index `thread - 1`.
    Threads(Vec<lanes::Worker>),
    /// On the caller's thread, stepped in a seeded order.
    Seeded(lanes::SeededLanes),
}

pub struct Executor {
    /// Runs partition declarations; its instances see no state.
    planner: Sandbox,
    /// Runs local reads ([`Executor::read`]) and their declarations, and
    /// nothing else, so reads never touch the instances whose history
    /// must be the same on every replica.
    reader: Sandbox,
    /// Set by [`Executor::restore`]: the next batch must open an instance
    /// epoch, or this replica's fresh instances would differ from the
    /// warm ones every other replica has.
    epoch_start_required: bool,
    linker: HostLinker,
    compiler: Arc<ModuleCompiler>,
    /// Deployed modules by name.
    modules: BTreeMap<String, Arc<LoadedModule>>,
    /// The sequence number each deployed module's version was deployed
    /// at (in the snapshot since format version 3; absent for a module
    /// restored from an older one).
    deployed_at: BTreeMap<String, u64>,
    /// The schemas of tables whose module was undeployed while no other
    /// module declared them, with that module's name: their rows stay, so
    /// a later deploy that declares the table is checked against them as
    /// against a live module's (in the snapshot since format version 3).
    retired_tables: BTreeMap<String, (String, ordo_schema::TableSchema)>,
    /// Procedure name to the module that provides it. Only looked up.
    routes: LookupMap<String, Route>,
    sessions: Sessions,
    position: u64,
    chain_hash: u128,
    config: EngineConfig,
    slots: Arc<[Slot]>,
    /// Executor threads, thread 0 included.
    partitions: usize,
    /// The cells of the batch being executed, shared with the lanes.
    shared: Arc<lanes::Shared>,
    /// Thread 0's lanes (`None` only while a batch runs).
    own_lanes: Option<lanes::ThreadLanes>,
    /// Every slot's lanes, for thread 0 to run a batch alone.
    all_lanes: Option<lanes::ThreadLanes>,
    /// Batches with fewer entries run on thread 0 alone
    /// ([`PARALLEL_BATCH_ENTRIES_MIN`]; every batch under a seeded
    /// schedule uses the lanes, so the simulator sees them).
    parallel_min: usize,
    /// Lanes 1 to N-1.
    lanes: Lanes,
    /// The entry being dispatched, while a batch runs: `Some` when a batch
    /// was interrupted by a panic. See [`Executor::interrupted_at`].
    dispatching: Option<u64>,
    /// Set by [`Executor::execute_traced`] for one batch: the sequence
    /// numbers to trace, and then what each did.
    tracing: Option<(RangeInclusive<u64>, BTreeMap<u64, TxTrace>)>,
    /// Set by [`Executor::execute_prefix`] when it stopped inside a batch.
    reads_only: bool,
    /// Test-only fault injection: see [`Executor::inject_partition_panic`].
    #[cfg(feature = "fault-injection")]
    panic_at: Option<u64>,
    /// Test-only fault injection: see
    /// [`Executor::inject_skipped_exactly_once_check`].
    #[cfg(feature = "fault-injection")]
    skip_exactly_once: bool,
}

impl Executor {
    /// An executor at position 0 with empty state that runs every
    /// transaction on the calling thread, sharing `compiler`'s wasmtime
    /// engine and compiled-module cache.
    pub fn new(compiler: Arc<ModuleCompiler>, config: EngineConfig) -> Executor {
        Executor::with_partitions(compiler, config, 1)
    }

    /// Like [`Executor::new`], with `partitions` executor threads (1 to
    /// [`SLOTS`]): the calling thread plus `partitions - 1` more. The
    /// number changes speed only, never an outcome.
    ///
    /// # Panics
    ///
    /// If `partitions` is 0 or more than [`SLOTS`], or if `config` is
    /// invalid ([`EngineConfig::validate`]).
    pub fn with_partitions(
        compiler: Arc<ModuleCompiler>,
        config: EngineConfig,
        partitions: usize,
    ) -> Executor {
        Executor::with_partition_schedule(compiler, config, partitions, PartitionSchedule::Threads)
    }

    /// Like [`Executor::with_partitions`], with the partition threads'
    /// work run as `schedule` says.
    pub fn with_partition_schedule(
        compiler: Arc<ModuleCompiler>,
        config: EngineConfig,
        partitions: usize,
        schedule: PartitionSchedule,
    ) -> Executor {
        assert!(
            (1..=SLOTS).contains(&partitions),
            "partitions must be 1 to {SLOTS}, not {partitions}"
        );
        if let Err(err) = config.validate() {
            panic!("invalid engine config: {err}");
        }
        let engine = compiler.engine().clone();
        let slots: Arc<[Slot]> = (0..SLOTS)
            .map(|_| Slot {
                store: Arc::new(Mutex::new(StateStore::new())),
                sandbox: Mutex::new(Sandbox::new(engine.clone(), config.clone())),
            })
            .collect();
        let shared = Arc::new(lanes::Shared::new(
            slots.clone(),
            config.tx_fuel_max,
            partitions,
        ));
        let lanes = match schedule {
            PartitionSchedule::Threads => Lanes::Threads(
                (1..partitions)
                    .map(|thread| lanes::spawn_worker(thread, shared.clone()))
                    .collect(),
            ),
            PartitionSchedule::Seeded(seed) => {
                Lanes::Seeded(lanes::SeededLanes::new(partitions, seed))
            }
        };
        Executor {
            linker: HostLinker::new(&engine),
            planner: Sandbox::new(engine.clone(), config.clone()),
            reader: Sandbox::new(engine, config.clone()),
            epoch_start_required: false,
            compiler,
            modules: BTreeMap::new(),
            deployed_at: BTreeMap::new(),
            retired_tables: BTreeMap::new(),
            routes: LookupMap::default(),
            sessions: Sessions::new(SessionLimits::of(&config)),
            position: 0,
            chain_hash: 0,
            config,
            slots,
            partitions,
            shared,
            own_lanes: Some(lanes::ThreadLanes::new(0, partitions)),
            all_lanes: Some(lanes::ThreadLanes::new(0, 1)),
            parallel_min: match schedule {
                PartitionSchedule::Threads => PARALLEL_BATCH_ENTRIES_MIN,
                PartitionSchedule::Seeded(_) => 0,
            },
            lanes,
            dispatching: None,
            tracing: None,
            reads_only: false,
            #[cfg(feature = "fault-injection")]
            panic_at: None,
            #[cfg(feature = "fault-injection")]
            skip_exactly_once: false,
        }
    }

    /// The sequence number thread 0 had planned up to when a batch was cut
    /// short by a panic (on this thread or re-raised from a partition
    /// thread); `None` when no batch is interrupted. After that the
    /// executor must not be used again: drop it.
    pub fn interrupted_at(&self) -> Option<u64> {
        self.dispatching
    }

    /// Makes the partition thread that runs the transaction at `seq` panic
    /// instead of running it, so tests can check that a partition thread's
    /// failure stops the node instead of hanging it. Compiled only with
    /// the `fault-injection` feature, which only tests enable: a release
    /// binary has no way to panic a thread on purpose, whatever its
    /// environment or input says. (Nothing a client or module can send is
    /// meant to panic the engine, so there is no honest public way to do
    /// it.)
    #[cfg(feature = "fault-injection")]
    pub fn inject_partition_panic(&mut self, seq: u64) {
        self.panic_at = Some(seq);
    }

    /// Makes the exactly-once check treat every request as new, so a
    /// retried request runs again: a planted bug that the simulator's
    /// checker must catch (`ordo-sim --inject skip-exactly-once`). Only
    /// with the `fault-injection` feature, like
    /// [`Executor::inject_partition_panic`].
    #[cfg(feature = "fault-injection")]
    pub fn inject_skipped_exactly_once_check(&mut self) {
        self.skip_exactly_once = true;
    }

    /// A compiler configured for `config`, to share between the submit
    /// path and the executor.
    pub fn compiler(config: &EngineConfig) -> Arc<ModuleCompiler> {
        Arc::new(ModuleCompiler::new(wasmtime_engine(config), config.clone()))
    }

    /// Runs batches of at least `entries` entries on every thread, and
    /// smaller ones on the calling thread alone (default
    /// [`PARALLEL_BATCH_ENTRIES_MIN`]; 0: every batch on every thread, as
    /// tests of the threads want). Speed only: outcomes and hashes are the
    /// same either way. No effect under a seeded schedule, which always
    /// uses every lane.
    pub fn set_parallel_batch_entries_min(&mut self, entries: usize) {
        if let Lanes::Threads(_) = self.lanes {
            self.parallel_min = entries;
        }
    }

    /// The number of executor threads.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn status(&self) -> EngineStatus {
        let (state_hash, keys) = self.state_summary();
        EngineStatus {
            position: self.position,
            state_hash,
            chain_hash: self.chain_hash,
            keys,
            sessions: self.sessions.len() as u64,
            stored_result_bytes: self.sessions.stored_bytes(),
        }
    }

    /// The state hash (the slots' hashes add up: see state.rs) and the
    /// number of keys.
    fn state_summary(&self) -> (u128, u64) {
        self.slots.iter().fold((0u128, 0u64), |(hash, keys), slot| {
            let store = slot.store.lock();
            (
                hash.wrapping_add(store.content_hash()),
                keys + store.len() as u64,
            )
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every procedure, in name order.
    pub fn procedures(&self) -> Vec<ProcedureInfo> {
        let mut all: Vec<ProcedureInfo> = self
            .modules
            .values()
            .flat_map(|module| module.compiled.procedures.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn modules(&self) -> Vec<ModuleSummary> {
        self.modules
            .values()
            .map(|module| summary(&module.compiled))
            .collect()
    }

    /// Executes one batch. Batches must arrive in log order, without gaps:
    /// anything else would break the total order, so it panics.
    pub fn execute(&mut self, batch: &Batch) -> Vec<TxOutcome> {
        let mut outcomes = Vec::with_capacity(batch.entries.len());
        self.execute_each(batch, |tx| outcomes.push(tx));
        outcomes
    }

    /// Like [`Executor::execute`], and records every host call each
    /// transaction with a sequence number in `traced` makes (the replay
    /// debugger). The outcomes, the state and the hashes are exactly those
    /// of [`Executor::execute`]: a traced transaction runs on this thread
    /// once every entry before it is done, which only changes speed.
    /// Entries that ran no procedure (a deploy, a session change, a
    /// duplicate, a call refused before it ran) have no trace.
    pub fn execute_traced(
        &mut self,
        batch: &Batch,
        traced: RangeInclusive<u64>,
    ) -> (Vec<TxOutcome>, BTreeMap<u64, TxTrace>) {
        self.tracing = Some((traced, BTreeMap::new()));
        let outcomes = self.execute(batch);
        let traces = self
            .tracing
            .take()
            .map(|(_, traces)| traces)
            .unwrap_or_default();
        (outcomes, traces)
    }

    /// Like [`Executor::execute`], but hands each transaction's outcome
    /// to `each` as soon as it and every outcome before it are known, in
    /// log order, so that a caller can answer the front of a large batch
    /// while the rest runs. The executor's position, state hash and chain
    /// hash move to the end of the batch only when this returns.
    pub fn execute_each(&mut self, batch: &Batch, each: impl FnMut(TxOutcome)) {
        self.execute_through(batch, batch.last_seq(), each);
    }

    /// Executes the entries of `batch` up to and including `through` (the
    /// time-travel read: the state as of a position inside a batch), with
    /// the whole batch's instance-epoch rule, and stops there. The chain
    /// hash, which covers whole batches, is left as it was, so the
    /// executor then serves reads only: executing another batch panics.
    pub fn execute_prefix(&mut self, batch: &Batch, through: u64) -> Vec<TxOutcome> {
        assert!(
            (batch.first_seq..=batch.last_seq()).contains(&through),
            "{through} is not in the batch"
        );
        let mut outcomes = Vec::new();
        self.execute_through(batch, through, |tx| outcomes.push(tx));
        if through < batch.last_seq() {
            self.reads_only = true;
        }
        outcomes
    }

    fn execute_through(&mut self, batch: &Batch, through: u64, mut each: impl FnMut(TxOutcome)) {
        assert!(
            !self.reads_only,
            "an executor that ran part of a batch (execute_prefix) serves reads only"
        );
        assert_eq!(
            batch.first_seq,
            self.position + 1,
            "batches must be executed in order, without gaps"
        );
        assert!(
            !batch.entries.is_empty(),
            "the sequencer never logs empty batches"
        );
        // Instances live for an instance epoch (see sandbox.rs). Every
        // partition thread is idle between batches.
        let opens_epoch = self
            .config
            .opens_instance_epoch(batch.first_seq, batch.last_seq());
        assert!(
            opens_epoch || !self.epoch_start_required,
            "an executor restored from a snapshot must first execute a batch that opens an instance epoch (one holding a sequence number k * {} + 1), not {}..={}: take snapshots just before such a batch",
            self.config.instance_epoch,
            batch.first_seq,
            batch.last_seq()
        );
        self.epoch_start_required = false;
        if opens_epoch {
            self.reset_instances();
        }
        let count = (through + 1 - batch.first_seq) as usize;
        let mut run = BatchRun {
            first_seq: batch.first_seq,
            entries: Vec::with_capacity(count),
            emitted: 0,
            wanted: BTreeSet::new(),
            kept: BTreeMap::new(),
            digest: Xxh3::new(),
        };
        self.sessions.begin_batch();
        self.dispatching = Some(batch.first_seq);
        let shared = self.shared.clone();
        shared.begin(batch, count);
        // A small batch runs on this thread alone: waking the others
        // would cost more than they save, and over the network the cores
        // they would take are the network's and the log's.
        let alone = count < self.parallel_min;
        let workers = match &mut self.lanes {
            Lanes::Threads(_) if alone => 0,
            Lanes::Threads(workers) => {
                for (index, worker) in workers.iter().enumerate() {
                    assert!(
                        worker.start(),
                        "partition thread {} has ended: an executor whose batch was interrupted must be dropped",
                        index + 1
                    );
                }
                workers.len()
            }
            Lanes::Seeded(seeded) => {
                seeded.begin();
                0
            }
        };
        // Until every partition thread has left the batch, `batch` must
        // stay borrowed: on any way out of here, a panic included.
        let mut leaving = LeaveGuard {
            shared: &shared,
            workers,
            finished: false,
        };
        let lanes_of_thread_0 = if alone {
            &mut self.all_lanes
        } else {
            &mut self.own_lanes
        };
        let mut own = lanes_of_thread_0
            .take()
            .expect("only a panic leaves it taken");
        own.begin();
        let mut planned = 0;
        while run.emitted < count {
            let mut moved = false;
            // Plan ahead of the answers, so the other threads have work.
            let target = count
                .min(run.emitted + PLAN_AHEAD_ENTRIES)
                .min(planned + PLAN_CHUNK_ENTRIES);
            let planned_before = planned;
            while planned < target {
                let entry = &batch.entries[planned];
                let seq = batch.first_seq + planned as u64;
                if self.needs_the_whole_engine(entry, seq) && run.emitted < planned {
                    // It runs alone, once everything before it is done.
                    break;
                }
                self.dispatching = Some(seq);
                let pending = self.dispatch(&mut run, entry, planned, seq, batch.timestamp_ms);
                run.entries.push(pending);
                planned += 1;
            }
            if planned > planned_before {
                shared.publish(planned);
                moved = true;
            }
            for _ in 0..OWN_STEPS_BETWEEN_PLANS {
                if shared.step(&mut own) != lanes::Step::Moved {
                    break;
                }
                moved = true;
            }
            if let Lanes::Seeded(seeded) = &mut self.lanes {
                seeded.wander(&shared);
            }
            moved |= self.emit_ready(&mut run, batch, &mut each);
            if shared.is_aborted() {
                break;
            }
            if !moved && run.emitted < count {
                match &mut self.lanes {
                    Lanes::Threads(_) => shared.wait_for_own_or(&own, run.emitted),
                    Lanes::Seeded(seeded) => assert!(
                        seeded.step(&shared),
                        "nothing can move, yet the batch is not done"
                    ),
                }
            }
        }
        leaving.finish();
        if alone {
            self.all_lanes = Some(own);
        } else {
            self.own_lanes = Some(own);
        }
        if let Some(panic) = shared.take_panic() {
            std::panic::resume_unwind(Box::new(panic));
        }
        assert_eq!(run.emitted, count, "every outcome is known");
        self.sessions.end_batch();
        self.dispatching = None;
        self.position = through;
        if through < batch.last_seq() {
            return;
        }
        let mut chain = Xxh3::new();
        chain.update(&self.chain_hash.to_le_bytes());
        chain.update(&batch.first_seq.to_le_bytes());
        chain.update(&self.position.to_le_bytes());
        chain.update(&batch.timestamp_ms.to_le_bytes());
        chain.update(&self.state_summary().0.to_le_bytes());
        chain.update(&run.digest.digest128().to_le_bytes());
        self.chain_hash = chain.digest128();
    }

    /// Decides what to do with one entry, in log order: answer it from the
    /// exactly-once table, run it here, or plan it for the lanes.
    fn dispatch(
        &mut self,
        run: &mut BatchRun,
        entry: &Entry,
        index: usize,
        seq: u64,
        now_ms: u64,
    ) -> Pending {
        let (client, request_id) = entry.client();
        let acked_below = match entry {
            Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => {
                invocation.acked_below
            }
            Entry::Deploy(_) | Entry::DeployResetting { .. } | Entry::Undeploy(_) => 0,
            Entry::Session(session) => {
                // Not remembered per request: registering and ending are
                // idempotent, so a resent one needs no stored answer.
                return Pending::Done {
                    outcome: self.sessions.change(client, session.change, seq),
                    ran: false,
                    notes: RunNotes::default(),
                };
            }
        };
        let check = self.sessions.check(client, request_id, acked_below);
        #[cfg(feature = "fault-injection")]
        let check = match check {
            Check::Duplicate { .. } if self.skip_exactly_once => Check::New,
            check => check,
        };
        match check {
            Check::Duplicate { seq, outcome } => {
                if outcome.is_none() {
                    run.wanted.insert(seq);
                }
                return Pending::Duplicate { seq, outcome };
            }
            Check::Forgotten => {
                return Pending::Done {
                    outcome: Outcome::aborted(
                        AbortKind::RequestForgotten,
                        format!(
                            "request {request_id} of client {client:032x} cannot be answered exactly once: its result was acknowledged and dropped, or the client's session expired; a retry is never run twice. Start a new session for new requests"
                        ),
                    ),
                    ran: false,
                    notes: RunNotes::default(),
                };
            }
            Check::Expired => {
                return Pending::Done {
                    outcome: Outcome::aborted(
                        AbortKind::SessionExpired,
                        format!(
                            "request {request_id} did not run: session {client:032x} is not open (it expired while idle, or under the stored-result budget, or it was ended or never registered). Register a new session, and check whether this session's unanswered requests took effect before retrying them"
                        ),
                    ),
                    ran: false,
                    notes: RunNotes::default(),
                };
            }
            Check::New => self.sessions.record_pending(client, request_id, seq),
        }
        let (invocation, signature) = match entry {
            Entry::Deploy(deploy) => {
                // A deploy changes what every slot runs: nothing else is
                // running (`needs_the_whole_engine`).
                let outcome = self.deploy(deploy, &[], seq, now_ms);
                return Pending::Done {
                    outcome,
                    ran: true,
                    notes: RunNotes::default(),
                };
            }
            Entry::Undeploy(undeploy) => {
                let outcome = self.undeploy(&undeploy.name);
                return Pending::Done {
                    outcome,
                    ran: true,
                    notes: RunNotes::default(),
                };
            }
            Entry::DeployResetting {
                deploy,
                reset_tables,
            } => {
                let outcome = self.deploy(deploy, reset_tables, seq, now_ms);
                return Pending::Done {
                    outcome,
                    ran: true,
                    notes: RunNotes::default(),
                };
            }
            Entry::Invoke(invocation) => (invocation, None),
            Entry::InvokeChecked {
                invocation,
                signature,
            } => (invocation, Some(signature)),
            Entry::Session(_) => unreachable!("answered above"),
        };
        let prepared = match self.prepare(invocation, signature, seq, now_ms) {
            Ok(prepared) => prepared,
            Err(abort) => {
                return Pending::Done {
                    outcome: Outcome::Aborted(abort),
                    ran: true,
                    notes: RunNotes::default(),
                };
            }
        };
        let traced = matches!(&self.tracing, Some((traced, _)) if traced.contains(&seq));
        if !traced {
            self.shared.plan(
                index,
                prepared.slots.bits(),
                Some(lanes::Task {
                    prepared,
                    encoding: abi_encoding(invocation.encoding),
                    #[cfg(feature = "fault-injection")]
                    panic: self.panic_at == Some(seq),
                }),
            );
            return Pending::Running;
        }
        // Traced: it runs here, alone (`needs_the_whole_engine`).
        let call = Call {
            procedure: prepared.procedure,
            export: Export::Procedure,
            args: &invocation.args,
            encoding: abi_encoding(invocation.encoding),
            seq,
            now_ms,
            fuel: self.config.tx_fuel_max,
        };
        let home = prepared
            .slots
            .first()
            .expect("prepare() never leaves the slot set empty");
        self.slots[home].sandbox.lock().start_trace();
        // SAFETY: nothing was deployed since it was prepared, just now.
        let module = unsafe { &*prepared.module };
        let ran = run_in_slots(
            &self.slots,
            module,
            prepared.declared,
            prepared.slots,
            &call,
        );
        let trace = self.slots[home].sandbox.lock().take_trace();
        if let (Some((_, kept)), Some(trace)) = (&mut self.tracing, trace) {
            kept.insert(seq, trace);
        }
        ran.into_pending()
    }

    /// Whether `entry` must run with nothing else running: a deploy or an
    /// undeploy (it changes what every slot runs) or a traced call (its
    /// trace is taken from its slot's sandbox).
    fn needs_the_whole_engine(&self, entry: &Entry, seq: u64) -> bool {
        match entry {
            Entry::Deploy(_) | Entry::DeployResetting { .. } | Entry::Undeploy(_) => true,
            Entry::Invoke(_) | Entry::InvokeChecked { .. } => {
                matches!(&self.tracing, Some((traced, _)) if traced.contains(&seq))
            }
            Entry::Session(_) => false,
        }
    }

    /// Finds the procedure and runs its partition declaration.
    fn prepare(
        &mut self,
        invocation: &Invocation,
        signature: Option<&Signature>,
        seq: u64,
        now_ms: u64,
    ) -> Result<Prepared, Abort> {
        self.check_args(&invocation.args)?;
        let route = route_of(&self.routes, &self.modules, &invocation.procedure)?;
        if let Some(signature) = signature {
            check_signature(route, &invocation.procedure, signature)?;
        }
        let declared = declare(
            &mut self.planner,
            &self.config,
            route,
            &invocation.args,
            invocation.encoding,
            seq,
            now_ms,
        )?;
        let mut slots = declared.slots();
        if slots.is_empty() {
            slots.insert(0);
        }
        Ok(Prepared {
            module: Arc::as_ptr(&route.module),
            procedure: route.procedure,
            declared,
            slots,
        })
    }

    /// Every deployed module with its contract, in name order.
    pub fn deployed_modules(&self) -> Vec<DeployedModule> {
        let mut modules: Vec<DeployedModule> = self
            .modules
            .values()
            .map(|module| DeployedModule {
                name: module.compiled.name.clone(),
                sha256: module.compiled.sha256_hex(),
                procedures: module
                    .compiled
                    .procedures
                    .iter()
                    .map(|procedure| procedure.name.clone())
                    .collect(),
                contract: module.compiled.contract.clone(),
                deployed_at: self.deployed_at.get(&module.compiled.name).copied(),
                wasm_bytes: module.compiled.wasm.len() as u64,
            })
            .collect();
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        modules
    }

    /// The schemas of every procedure that has one, by name (for checking
    /// calls before they are logged).
    pub fn contracts(&self) -> BTreeMap<String, Arc<ProcedureContract>> {
        self.modules
            .values()
            .flat_map(|module| module.compiled.contract.procedures.clone())
            .collect()
    }

    fn check_args(&self, args: &[u8]) -> Result<(), Abort> {
        if args.len() > self.config.args_bytes_max {
            return Err(Abort::new(
                AbortKind::LimitExceeded,
                format!(
                    "arguments of {} bytes are over the {}-byte limit",
                    args.len(),
                    self.config.args_bytes_max
                ),
            ));
        }
        Ok(())
    }

    /// Committed rows with `start <= key < end` (no `end`: to the last
    /// key), in key order across every slot: at most `rows_max` rows, and
    /// no more once `bytes_max` bytes of keys and values are taken (the
    /// row that crosses it is the last). Says whether rows remain after
    /// the last one returned. For `ordo scan`; call it between batches,
    /// from the thread that executes them. Nothing observable changes.
    pub fn scan_committed(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        rows_max: usize,
        bytes_max: usize,
    ) -> ScannedRows {
        // Every partition thread is idle between batches, so these locks
        // are free.
        let stores: Vec<_> = self.slots.iter().map(|slot| slot.store.lock()).collect();
        let mut merged = crate::sandbox::MergedRange::new(
            stores
                .iter()
                .map(|store| store.range(start, end).peekable())
                .collect(),
        )
        .peekable();
        let mut rows = Vec::new();
        let mut bytes = 0;
        while rows.len() < rows_max && bytes < bytes_max {
            let Some((key, value)) = merged.next() else {
                break;
            };
            bytes += key.len() + value.len();
            rows.push((key.to_vec(), value.to_vec()));
        }
        ScannedRows {
            position: self.position,
            more: merged.peek().is_some(),
            rows,
        }
    }

    /// Runs a read-only procedure against the state as of the last
    /// executed entry, without logging it: a local, possibly stale read.
    /// Nothing observable changes: not the position, the hashes, the
    /// state or the exactly-once table, and not the instances logged
    /// transactions run in, since the read runs in a sandbox of its own.
    ///
    /// The procedure must be marked read-only in its module's metadata
    /// (`#[procedure(read_only)]`), else the read aborts with
    /// [`AbortKind::NotReadOnly`]; a write or delete aborts it with
    /// [`AbortKind::ReadOnly`]. It sees the partitions it declares, like a
    /// logged call (all of them if it declares none). `ordo.sequence`
    /// returns the position and `ordo.now_ms` returns `now_ms`. Call it
    /// between batches, from the thread that executes them.
    pub fn read(
        &mut self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: &[u8],
        now_ms: u64,
    ) -> ReadOutcome {
        ReadOutcome {
            position: self.position,
            outcome: outcome_of(self.try_read(procedure, encoding, args, now_ms)),
        }
    }

    fn try_read(
        &mut self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: &[u8],
        now_ms: u64,
    ) -> Result<Vec<u8>, Abort> {
        self.check_args(args)?;
        let route = route_of(&self.routes, &self.modules, procedure)?;
        if !route.module.compiled.procedures[route.procedure].read_only {
            return Err(Abort::new(
                AbortKind::NotReadOnly,
                format!(
                    "procedure `{procedure}` is not marked read-only (#[procedure(read_only)]), so it cannot be read locally; submit it as a transaction"
                ),
            ));
        }
        let seq = self.position;
        let declared = declare(
            &mut self.reader,
            &self.config,
            route,
            args,
            encoding,
            seq,
            now_ms,
        )?;
        // Every partition thread is idle between batches, so these locks
        // are free.
        let stores = self
            .slots
            .iter()
            .enumerate()
            .map(|(slot, state)| (slot, state.store.lock_arc()))
            .collect();
        let call = Call {
            procedure: route.procedure,
            export: Export::Procedure,
            args,
            encoding: abi_encoding(encoding),
            seq,
            now_ms,
            fuel: self.config.tx_fuel_max,
        };
        self.reader
            .read(&route.module, &call, StateView::read_only(stores, declared))
    }

    /// Hands out, in log order, every outcome known without a gap before
    /// it, folding each into the batch digest and the exactly-once table.
    /// Says whether it handed any out.
    fn emit_ready(
        &mut self,
        run: &mut BatchRun,
        batch: &Batch,
        each: &mut impl FnMut(TxOutcome),
    ) -> bool {
        let emitted_before = run.emitted;
        while run.emitted < run.entries.len() {
            let index = run.emitted;
            let seq = run.first_seq + index as u64;
            let mut pending = std::mem::replace(&mut run.entries[index], Pending::Running);
            if let Pending::Running = pending {
                match self.shared.take_ran(index) {
                    Some(ran) => pending = ran.into_pending(),
                    None => break,
                }
            }
            let tx = match pending {
                Pending::Running => unreachable!("taken above"),
                Pending::Done {
                    outcome,
                    ran,
                    notes,
                } => {
                    if ran {
                        let (client, request_id) = batch.entries[index].client();
                        self.sessions.fill(client, request_id, seq, &outcome);
                    }
                    if run.wanted.contains(&seq) {
                        run.kept.insert(seq, outcome.clone());
                    }
                    TxOutcome {
                        seq,
                        outcome,
                        duplicate: false,
                        fuel_used: notes.fuel_used,
                        logs: notes.logs,
                    }
                }
                Pending::Duplicate {
                    seq: original,
                    outcome,
                } => TxOutcome {
                    seq: original,
                    outcome: outcome.unwrap_or_else(|| {
                        run.kept
                            .get(&original)
                            .expect("a duplicate's original ran earlier in this batch")
                            .clone()
                    }),
                    duplicate: true,
                    fuel_used: 0,
                    logs: None,
                },
            };
            hash_outcome(&mut run.digest, seq, &tx);
            each(tx);
            run.emitted += 1;
        }
        run.emitted > emitted_before
    }

    /// Drops every instance of every slot, of the planner and of the
    /// reader. Only called while no partition thread is running anything.
    fn reset_instances(&mut self) {
        self.planner.reset();
        self.reader.reset();
        for slot in self.slots.iter() {
            slot.sandbox.lock().reset();
        }
    }

    /// Removes module `name` and its procedures (an [`Entry::Undeploy`]):
    /// committed with an empty result, or aborted (`deploy_rejected`) if no
    /// module has that name. Its tables' rows stay; modules cannot call
    /// each other, so no other module depends on it.
    fn undeploy(&mut self, name: &str) -> Outcome {
        let Some(removed) = self.modules.remove(name) else {
            return Outcome::aborted(
                AbortKind::DeployRejected,
                format!("no module named `{name}` is deployed, so none was removed"),
            );
        };
        for procedure in &removed.compiled.procedures {
            self.routes.remove(&procedure.name);
        }
        self.deployed_at.remove(name);
        for (table, schema) in &removed.compiled.contract.tables {
            let declared_elsewhere = self
                .modules
                .values()
                .any(|module| module.compiled.contract.tables.contains_key(table));
            if !declared_elsewhere {
                self.retired_tables
                    .insert(table.clone(), (name.to_string(), schema.clone()));
            }
        }
        // Its instances must not linger in any sandbox.
        self.reset_instances();
        Outcome::Committed { result: Vec::new() }
    }

    fn deploy(
        &mut self,
        deploy: &Deploy,
        reset_tables: &[String],
        seq: u64,
        now_ms: u64,
    ) -> Outcome {
        match self.try_deploy(deploy, reset_tables, seq, now_ms) {
            Ok(summary) => Outcome::Deployed(summary),
            Err(err) => Outcome::aborted(AbortKind::DeployRejected, err.to_string()),
        }
    }

    fn try_deploy(
        &mut self,
        deploy: &Deploy,
        reset_tables: &[String],
        seq: u64,
        now_ms: u64,
    ) -> Result<ModuleSummary, DeployError> {
        let compiled = self.compiler.compile(&deploy.name, &deploy.wasm)?;
        let migrations: Vec<usize> = (0..compiled.procedures.len())
            .filter(|&index| compiled.procedures[index].migration)
            .collect();
        if migrations.len() > 1 {
            return Err(DeployError::TooManyMigrations(
                migrations
                    .iter()
                    .map(|&index| compiled.procedures[index].name.clone())
                    .collect(),
            ));
        }
        for procedure in &compiled.procedures {
            if let Some(owner) = self.routes.get(&procedure.name)
                && owner.module.compiled.name != compiled.name
            {
                return Err(DeployError::ProcedureClash {
                    procedure: procedure.name.clone(),
                    owner: owner.module.compiled.name.clone(),
                });
            }
        }
        // A module with a migration rewrites the tables itself; the check
        // is for modules that would read old data as their own.
        if migrations.is_empty() {
            self.check_stored_tables(&compiled, reset_tables)?;
        }
        let loaded = Arc::new(self.linker.load(compiled).map_err(DeployError::Invalid)?);
        if let Some(&migration) = migrations.first() {
            self.migrate(&loaded, migration, seq, now_ms)?;
        }
        for table in reset_tables {
            self.empty_table(table);
        }
        if let Some(previous) = self.modules.remove(&deploy.name) {
            for procedure in &previous.compiled.procedures {
                self.routes.remove(&procedure.name);
            }
        }
        for (index, procedure) in loaded.compiled.procedures.iter().enumerate() {
            if procedure.migration {
                continue;
            }
            self.routes.insert(
                procedure.name.clone(),
                Route {
                    module: loaded.clone(),
                    procedure: index,
                },
            );
        }
        let summary = summary(&loaded.compiled);
        // Tables it declares are live again, under its schema.
        for table in loaded.compiled.contract.tables.keys() {
            self.retired_tables.remove(table);
        }
        self.modules.insert(deploy.name.clone(), loaded);
        self.deployed_at.insert(deploy.name.clone(), seq);
        // The upgraded module's old instances must not serve another call.
        self.reset_instances();
        Ok(summary)
    }
}

impl Executor {
    /// Runs `module`'s migration at the deploy's position, over every
    /// partition, as one transaction with the migration budgets: its
    /// writes apply only if it commits, and if it aborts the deploy does
    /// not happen. Every instance is dropped before (an instance of the
    /// module's previous version has the same name) and after.
    fn migrate(
        &mut self,
        module: &Arc<LoadedModule>,
        procedure: usize,
        seq: u64,
        now_ms: u64,
    ) -> Result<(), DeployError> {
        self.reset_instances();
        let call = Call {
            procedure,
            export: Export::Procedure,
            args: &[],
            encoding: abi_encoding(ArgsEncoding::Postcard),
            seq,
            now_ms,
            fuel: MIGRATION_FUEL,
        };
        let stores: SmallVec<_> = (0..SLOTS)
            .map(|slot| (slot, self.slots[slot].store.lock_arc()))
            .collect();
        let view = StateView::new(stores, Declared::All);
        let result = self.slots[0].sandbox.lock().execute_with_limits(
            module,
            &call,
            view,
            WriteLimits {
                writes_max: MIGRATION_WRITES_MAX,
                bytes_max: MIGRATION_WRITE_BYTES_MAX,
            },
        );
        self.reset_instances();
        result
            .map(drop)
            .map_err(|abort| DeployError::MigrationFailed {
                procedure: module.compiled.procedures[procedure].name.clone(),
                kind: abort.kind.as_str(),
                message: abort.message,
            })
    }

    /// Refuses a module that declares a table some deployed module also
    /// declares, with a stored type the new one cannot read, while the
    /// table holds data. (An empty table may change type freely.)
    fn check_stored_tables(
        &self,
        compiled: &CompiledModule,
        reset_tables: &[String],
    ) -> Result<(), DeployError> {
        for (name, new) in &compiled.contract.tables {
            if reset_tables.contains(name) {
                continue;
            }
            let live = self.modules.values().filter_map(|deployed| {
                deployed
                    .compiled
                    .contract
                    .tables
                    .get(name)
                    .map(|old| (old, deployed.compiled.name.clone()))
            });
            let retired = self
                .retired_tables
                .get(name)
                .map(|(module, old)| (old, format!("{module}, undeployed")));
            for (old, owner) in live.chain(retired) {
                let mut changes = Vec::new();
                for (what, old_shape, new_shape) in [
                    ("key", &old.key, &new.key),
                    ("value", &old.value, &new.value),
                ] {
                    if let Err(found) = ordo_schema::stored_compatibility(
                        (old_shape, &old.types),
                        (new_shape, &new.types),
                    ) {
                        changes.extend(found.into_iter().map(|change| format!("{what} {change}")));
                    }
                }
                if changes.is_empty() || !self.table_has_rows(name) {
                    continue;
                }
                let render = |table: &ordo_schema::TableSchema| {
                    format!(
                        "Table<{}, {}>",
                        ordo_schema::render(&table.key, &table.types),
                        ordo_schema::render(&table.value, &table.types)
                    )
                };
                return Err(DeployError::IncompatibleTable {
                    table: name.clone(),
                    old: format!("{} (module `{owner}`)", render(old)),
                    new: render(new),
                    changes: changes.join("; "),
                });
            }
        }
        Ok(())
    }

    /// Whether any slot holds a key of table `name`.
    fn table_has_rows(&self, name: &str) -> bool {
        let (start, end) = table_range(name);
        self.slots
            .iter()
            .any(|slot| slot.store.lock().range(&start, Some(&end)).next().is_some())
    }

    /// Deletes every key of table `name`, in every slot.
    fn empty_table(&self, name: &str) {
        let (start, end) = table_range(name);
        for slot in self.slots.iter() {
            let mut store = slot.store.lock();
            let keys: Vec<Vec<u8>> = store
                .range(&start, Some(&end))
                .map(|(key, _)| key.to_vec())
                .collect();
            for key in keys {
                store.delete(&key);
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Every partition thread is between batches (an interrupted
        // batch, too, waited for them all to leave it), so each ends as
        // soon as its signal closes.
        if let Lanes::Threads(workers) = &mut self.lanes {
            for worker in std::mem::take(workers) {
                worker.stop();
            }
        }
    }
}

/// The keys of table `name`: they start with the name and a 0x00 byte
/// (docs/ABI.md), so they are the range `[name 0x00, name 0x01)`.
fn table_range(name: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = name.as_bytes().to_vec();
    start.push(0);
    let mut end = name.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

/// The module and index of a deployed procedure.
fn route_of<'a>(
    routes: &'a LookupMap<String, Route>,
    modules: &BTreeMap<String, Arc<LoadedModule>>,
    procedure: &str,
) -> Result<&'a Route, Abort> {
    routes.get(procedure).ok_or_else(|| {
        let migration = modules.values().find(|module| {
            module
                .compiled
                .procedures
                .iter()
                .any(|p| p.migration && p.name == procedure)
        });
        let message = match migration {
            Some(module) => format!(
                "`{procedure}` is a migration of module `{}`: it runs only when its module is deployed",
                module.compiled.name
            ),
            None => format!("no deployed module provides procedure `{procedure}`"),
        };
        Abort::new(AbortKind::UnknownProcedure, message)
    })
}

/// Fuel for a module's migration: enough to rewrite millions of rows.
pub const MIGRATION_FUEL: u64 = 20_000_000_000;
/// Writes a migration may make (its write set is held in host memory).
pub const MIGRATION_WRITES_MAX: usize = 10_000_000;
/// Bytes a migration may write.
pub const MIGRATION_WRITE_BYTES_MAX: usize = 256 << 20;

/// A call checked against one parameter schema may run only under that
/// schema: the module may have been redeployed since the check.
fn check_signature(route: &Route, procedure: &str, signature: &Signature) -> Result<(), Abort> {
    match route.module.compiled.contract.procedures.get(procedure) {
        Some(contract) if &contract.fingerprint == signature => Ok(()),
        Some(contract) => Err(Abort::new(
            AbortKind::SignatureMismatch,
            format!(
                "`{procedure}` was redeployed with another signature, {}, after this call was checked; nothing ran",
                contract.signature()
            ),
        )),
        None => Err(Abort::new(
            AbortKind::SignatureMismatch,
            format!(
                "`{procedure}` was redeployed without a schema after this call was checked against one; nothing ran"
            ),
        )),
    }
}

/// What a call of `route` with `args` may touch: the host reads a bare-
/// parameter declaration from the arguments itself, runs any other
/// declaration in `sandbox`, and a procedure without one touches all.
fn declare(
    sandbox: &mut Sandbox,
    config: &EngineConfig,
    route: &Route,
    args: &[u8],
    encoding: ArgsEncoding,
    seq: u64,
    now_ms: u64,
) -> Result<Declared, Abort> {
    let compiled = &route.module.compiled;
    let fast = compiled.fast_declarations[route.procedure]
        .as_ref()
        .and_then(|fast| fast.evaluate(args, encoding == ArgsEncoding::Json, config.key_bytes_max));
    if let Some(declared) = fast {
        return Ok(declared);
    }
    if !compiled.procedures[route.procedure].declares_partitions {
        return Ok(Declared::All);
    }
    let call = Call {
        procedure: route.procedure,
        export: Export::Declaration,
        args,
        encoding: abi_encoding(encoding),
        seq,
        now_ms,
        fuel: config.tx_fuel_max,
    };
    sandbox.declare(&route.module, &call)
}

/// A transaction that ran on a lane or on thread 0.
struct Ran {
    result: Result<Vec<u8>, Abort>,
    notes: RunNotes,
}

impl Ran {
    fn into_pending(self) -> Pending {
        Pending::Done {
            outcome: outcome_of(self.result),
            ran: true,
            notes: self.notes,
        }
    }
}

/// What a transaction that ran did besides its outcome: the
/// [`TxOutcome::fuel_used`] and [`TxOutcome::logs`] it is handed out with.
#[derive(Default)]
struct RunNotes {
    fuel_used: u64,
    logs: Option<Box<ProcedureLogs>>,
}

/// The outcome of a transaction that ran: its result, or why it aborted.
fn outcome_of(result: Result<Vec<u8>, Abort>) -> Outcome {
    match result {
        Ok(result) => Outcome::Committed { result },
        Err(abort) => Outcome::Aborted(abort),
    }
}

/// Runs a transaction of `module` that may touch `declared`, in `slot_set`:
/// locks those slots' stores, and calls it in the instances of the lowest
/// one. A procedure marked read-only gets a view that refuses writes.
fn run_in_slots(
    slots: &[Slot],
    module: &LoadedModule,
    declared: Declared,
    slot_set: SlotSet,
    call: &Call<'_>,
) -> Ran {
    let stores: SmallVec<_> = slot_set
        .iter()
        .map(|slot| (slot, slots[slot].store.lock_arc()))
        .collect();
    let home = slot_set
        .first()
        .expect("prepare() never leaves the slot set empty");
    // `#[procedure(read_only)]` holds on the logged path too: a write
    // aborts, the same way on every replica (the mark is in the module).
    let view = if module.compiled.procedures[call.procedure].read_only {
        StateView::read_only(stores, declared)
    } else {
        StateView::new(stores, declared)
    };
    let mut sandbox = slots[home].sandbox.lock();
    let result = sandbox.execute(module, call, view);
    let CallNotes {
        fuel_used,
        lines,
        dropped,
    } = sandbox.take_notes();
    // Aborts get a log too, even a silent one: the node's procedure log
    // shows why a call failed, with its module.
    let logs = (!lines.is_empty() || dropped != 0 || result.is_err()).then(|| {
        Box::new(ProcedureLogs {
            module: module.compiled.name.clone(),
            lines,
            dropped,
        })
    });
    Ran {
        result,
        notes: RunNotes { fuel_used, logs },
    }
}

fn summary(compiled: &crate::module::CompiledModule) -> ModuleSummary {
    ModuleSummary {
        name: compiled.name.clone(),
        sha256: compiled.sha256_hex(),
        procedures: compiled
            .procedures
            .iter()
            .map(|procedure| procedure.name.clone())
            .collect(),
    }
}

/// Folds an outcome into the batch digest with an unambiguous framing.
fn hash_outcome(digest: &mut Xxh3, seq: u64, tx: &TxOutcome) {
    digest.update(&seq.to_le_bytes());
    digest.update(&tx.seq.to_le_bytes());
    digest.update(&[tx.duplicate as u8]);
    match &tx.outcome {
        Outcome::Committed { result } => {
            digest.update(&[0]);
            digest.update(&(result.len() as u64).to_le_bytes());
            digest.update(result);
        }
        Outcome::Deployed(summary) => {
            digest.update(&[1]);
            digest.update(summary.sha256.as_bytes());
            digest.update(summary.name.as_bytes());
        }
        Outcome::Aborted(abort) => {
            digest.update(&[2]);
            digest.update(abort.kind.as_str().as_bytes());
            digest.update(&(abort.message.len() as u64).to_le_bytes());
            digest.update(abort.message.as_bytes());
        }
    }
}
