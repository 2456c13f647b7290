//! `ordo-engine`: executes ordo's log deterministically.
//!
//! The [`Executor`] takes batches from the log, in order, and runs each
//! entry: deploys are checked and compiled ([`module`]), invocations run a
//! WebAssembly procedure in a sandbox configured for determinism
//! ([`sandbox`]) against the state, split by partition key into [`SLOTS`]
//! slots ([`partition`]) that up to 16 threads execute in parallel. Writes
//! are buffered and applied only if the procedure commits. The engine does
//! no I/O: its only input is the log, so every replica that executes the
//! same log reaches the same state, outcomes and hashes, whatever its
//! number of threads.
//!
//! For replication, [`Executor::snapshot`] captures the whole replicated
//! state as deterministic bytes and [`Executor::restore`] rebuilds an
//! executor from them; take snapshots just before a batch that opens an
//! instance epoch ([`opens_instance_epoch`]). [`Executor::read`] runs a
//! read-only procedure locally, outside the log, without changing
//! anything another replica could observe.
//!
//! ```
//! use ordo_engine::{EngineConfig, Executor};
//! use ordo_entry::{ArgsEncoding, Batch, Entry, Invocation};
//!
//! let config = EngineConfig::default();
//! let mut executor = Executor::new(Executor::compiler(&config), config);
//! let batch = Batch {
//!     first_seq: 1,
//!     timestamp_ms: 0,
//!     entries: vec![Entry::Invoke(Invocation {
//!         client_id: 7,
//!         request_id: 1,
//!         acked_below: 0,
//!         procedure: "missing".into(),
//!         encoding: ArgsEncoding::Json,
//!         args: b"{}".to_vec(),
//!     })],
//! };
//! let outcomes = executor.execute(&batch);
//! assert!(!outcomes[0].outcome.is_committed());
//! assert_eq!(executor.status().position, 1);
//! ```

pub mod config;
pub mod contract;
/// The schema model the engine checks modules and calls against.
pub use ordo_schema as schema;
mod executor;
pub mod module;
pub mod outcome;
pub mod partition;
pub mod sandbox;
mod sessions;
pub mod state;
pub mod trace;

/// A hash map for lookups only. Its seed is random, so code must never let
/// its iteration order reach an outcome; use a `BTreeMap` where order
/// matters.
pub(crate) type LookupMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use config::{
    COMPILED_CODE_BYTES_MAX_DEFAULT, EngineConfig, FUNCTION_BODY_BYTES_MAX_DEFAULT,
    FUNCTIONS_COUNT_MAX_DEFAULT, INSTANCE_EPOCH_DEFAULT, NESTING_DEPTH_MAX_DEFAULT,
    opens_instance_epoch,
};
pub use executor::{
    ENGINE_THREAD_STACK_BYTES, EnginePanic, EngineStatus, Executor, PARALLEL_BATCH_ENTRIES_MIN,
    PartitionSchedule, ScannedRows, SnapshotError, panic_message,
};
pub use module::{
    ArtifactKey, ArtifactStore, COMPILE_TIMEOUT, CompileStats, CompileWatchdog, DeployError,
    ModuleCompiler, ModuleShape, ParamInfo, ProcedureInfo, measure,
};
pub use outcome::{
    Abort, AbortKind, LogLevel, LogLine, ModuleSummary, Outcome, PROCEDURE_LOG_BYTES_PER_CALL_MAX,
    PROCEDURE_LOG_LINES_PER_CALL_MAX, ProcedureLogs, ReadOutcome, TxOutcome,
};
pub use partition::SLOTS;
pub use sessions::{GRAVEYARD_CLIENTS_MAX, STORED_RESULT_OVERHEAD_BYTES};
pub use state::StateStore;
pub use trace::{HostCall, TRACE_BYTES_MAX, TxTrace};

/// Whether this build has the `fault-injection` feature, which only test
/// builds enable (the root package's and this crate's dev-dependencies):
/// the node obeys its test hooks only then, so a release binary ignores
/// them whatever its environment says.
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");
