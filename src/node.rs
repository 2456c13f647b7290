//! An ordo node: the sequencer, a log and the executor, wired together in
//! one process. The log is the embedded file log, or (with
//! [`NodeConfig::cluster`]) a member of a Raft group; the node drives
//! either through [`ordo_sequencer::Log`].
//!
//! Three parties share the work:
//! - callers (any thread) append requests to the *open batch* and get a
//!   completion later on a channel;
//! - the *log thread* repeatedly takes the open batch and proposes it to
//!   the log. The file log numbers it, appends it, fsyncs once for the
//!   whole batch (group commit) and delivers it; Raft replicates it and
//!   delivers it, numbered, once a majority has it. While the log is busy
//!   the next batch fills up;
//! - the *executor thread* runs delivered batches in log order, answers
//!   the callers, and in a cluster takes snapshots, installs the leader's,
//!   checks the other members' hashes, and runs stale reads between
//!   batches.
//!
//! So no result leaves before its batch is durable (committed), and the
//! order the log delivers is the one order every replay and every member
//! sees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use ordo_client::schema::Schema;
use ordo_engine::contract::{DeployedModule, ProcedureContract};
use ordo_engine::{
    Abort, DeployError, EngineConfig, EngineStatus, Executor, ModuleCompiler, ModuleSummary,
    Outcome, ProcedureInfo, ReadOutcome, TxOutcome,
};
use ordo_sequencer::entry::{
    ArgsEncoding, Batch, ClientId, Deploy, Entry, Invocation, SessionChange, SessionEntry,
    Signature, session_client_id,
};
use ordo_sequencer::raft::{ClusterConfig, ClusterStatus, RaftHandle, RaftLog, SnapshotImage};
use ordo_sequencer::storage::replace_file;
use ordo_sequencer::{
    Committed, Delivery, FileLog, FileLogConfig, Log, LogError, Recovery, RefusalReason, Sequencer,
};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::node_core::{Action, CoreConfig, NodeCore, Refusal};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most entries the log thread puts in one batch.
pub const BATCH_ENTRIES_MAX_DEFAULT: usize = 16_384;
/// Most encoded argument bytes in one batch.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 32 << 20;
/// Requests accepted but not yet answered, node-wide. Past this, new
/// requests are refused with `Overloaded` instead of queueing without
/// bound.
pub const INFLIGHT_MAX_DEFAULT: usize = 100_000;
/// Durable batches waiting for the executor. When the executor falls
/// behind, the log thread stops taking new batches.
const EXECUTOR_QUEUE_BATCHES_MAX: usize = 8;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub batch_entries_max: usize,
    pub batch_bytes_max: usize,
    /// How long a batch may stay open waiting for more entries once the
    /// log is free. Zero closes it as soon as the log can take it: under
    /// load batches still grow, because they fill while the previous one
    /// is being fsynced.
    pub batch_window: Duration,
    pub inflight_max: usize,
    pub segment_bytes_max: u64,
    /// Executor threads (1 to [`ordo_engine::SLOTS`]). Changes speed
    /// only: outcomes and state hashes are the same for any number, so a
    /// node may restart with another.
    pub partitions: usize,
    /// Set to run as one member of a Raft cluster instead of on the
    /// embedded file log.
    pub cluster: Option<ClusterMember>,
    /// Bytes the on-disk cache of compiled modules (`<data>/compiled/`)
    /// may hold; 0 turns the cache off. See `compile_cache.rs`.
    pub compile_cache_bytes_max: u64,
    /// The least log growth in bytes between two snapshots, on a single
    /// node and in a cluster (see `snapshots.rs`); 0 snapshots at every
    /// instance epoch.
    pub snapshot_log_bytes_min: u64,
    /// On a single node, how many snapshots to keep (2 to
    /// `SNAPSHOTS_KEPT_MAX`); the log the oldest covers is removed. More
    /// keeps more history for `ordo replay`.
    pub snapshots_kept: usize,
    /// On a single node, also keep the snapshots (and so the log) that
    /// rebuild every position down to this many before the newest
    /// snapshot (at most `SNAPSHOTS_KEPT_MAX` snapshots); 0: only
    /// `snapshots_kept`.
    pub retain_positions: u64,
}

/// This node's place in a Raft cluster.
#[derive(Clone, Debug)]
pub struct ClusterMember {
    pub node_id: u64,
    /// Every member's replication and client addresses (`--cluster`).
    pub members: std::collections::BTreeMap<u64, ordo_sequencer::raft::MemberAddrs>,
    /// Proves membership on every replication connection.
    pub secret: ordo_sequencer::raft::ClusterSecret,
    /// TLS between members, if set.
    pub tls: Option<ordo_sequencer::raft::PeerTls>,
}

/// The default number of executor threads: one per two cores (at least
/// one, at most the number of slots the state is split into).
///
/// Not one per core: the log thread and the network need cores too, and
/// executor threads spin briefly while they wait for each other. On this
/// project's 2-core machine, two executor threads on every batch behind
/// `ordo serve` ran transfers 15-35% slower than one; since small batches
/// run on one thread (`ordo_engine::PARALLEL_BATCH_ENTRIES_MIN`) two run
/// at one's speed, never faster (docs/BENCHMARKS.md, "Without a
/// dispatcher").
pub fn default_partitions() -> usize {
    (std::thread::available_parallelism().map_or(1, |cores| cores.get()) / 2)
        .clamp(1, ordo_engine::SLOTS)
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            engine: EngineConfig::default(),
            batch_entries_max: BATCH_ENTRIES_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            batch_window: Duration::ZERO,
            inflight_max: INFLIGHT_MAX_DEFAULT,
            segment_bytes_max: ordo_sequencer::file_log::SEGMENT_BYTES_MAX_DEFAULT,
            partitions: default_partitions(),
            cluster: None,
            compile_cache_bytes_max: crate::compile_cache::COMPILE_CACHE_BYTES_MAX_DEFAULT,
            snapshot_log_bytes_min: crate::snapshots::SNAPSHOT_LOG_BYTES_MIN_DEFAULT,
            snapshots_kept: ordo_sequencer::raft::SNAPSHOTS_KEPT_DEFAULT,
            retain_positions: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node is overloaded: {inflight_max} requests already in flight; retry later")]
    Overloaded { inflight_max: usize },
    #[error("arguments of {bytes} bytes are over the {max}-byte limit")]
    ArgsTooLarge { bytes: usize, max: usize },
    /// The name is not one a module can export, so no call of it could
    /// ever run; refused before it costs a log entry. The name itself is
    /// not repeated: it may be megabytes.
    #[error(
        "the procedure name ({bytes} bytes) is not a valid name: use 1 to {} characters from [a-z0-9_], starting with a letter or `_`",
        ordo_engine::module::PROCEDURE_NAME_BYTES_MAX
    )]
    BadProcedureName { bytes: usize },
    #[error("deploy rejected: {0}")]
    Deploy(#[from] DeployError),
    #[error("cannot reset the tables: {0}")]
    BadResetTables(String),
    /// A typed call's argument types (its signature fingerprint) are not
    /// the procedure's; refused before it costs a log entry.
    #[error(
        "the arguments were encoded for another signature than `{}`'s, which is {}",
        .contract.schema.name,
        .contract.signature()
    )]
    SignatureMismatch { contract: Arc<ProcedureContract> },
    /// The arguments do not match the procedure's schema; refused before
    /// they cost a log entry.
    #[error("arguments of `{procedure}` do not match its signature {signature}: {reason}")]
    BadArguments {
        procedure: String,
        signature: String,
        reason: String,
    },
    #[error("the node is shutting down")]
    Stopped,
    /// A stale read asked for a position this node had not executed yet,
    /// and it did not get there within [`STALE_READ_WAIT_MS_MAX`] (or too
    /// many reads were already waiting). The read did not run; retry it,
    /// later or on another node.
    #[error(
        "this node has executed up to position {applied}, behind the {wanted} the read asks for, and did not catch up in time; retry, or read from another node"
    )]
    Behind { applied: u64, wanted: u64 },
    /// A cluster member that does not lead was asked to sequence; retry
    /// on the leader (the same request id keeps it exactly-once).
    #[error("this node is not the leader{}", match .leader_addr {
        Some(addr) => format!("; the leader serves clients at {addr}"),
        None => "; no leader is known (an election may be under way)".to_string(),
    })]
    NotLeader { leader_addr: Option<String> },
    #[error("cluster: {0}")]
    Cluster(#[from] ordo_sequencer::raft::ClusterError),
    #[error(
        "{partitions} partitions requested: use 1 to {} (the state is split into that many slots)",
        ordo_engine::SLOTS
    )]
    BadPartitions { partitions: usize },
    #[error("the node stopped after a fatal error: {0}")]
    Failed(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "log record {index} does not decode as a batch ({reason}); the log was written by an incompatible ordo or is damaged"
    )]
    BadRecord { index: u64, reason: String },
    #[error(
        "log record {index} starts at sequence {found}, expected {expected}: the log is not a dense total order"
    )]
    SequenceGap {
        index: u64,
        expected: u64,
        found: u64,
    },
    #[error("could not start a node thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "{path} records different engine limits than this node was started with ({detail}); outcomes depend on them, so replaying with other limits would rewrite history. Start with the recorded limits, or use a new data directory"
    )]
    EngineConfigMismatch { path: PathBuf, detail: String },
}

/// Why a typed call did not return a value.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("transaction {seq} aborted: {abort}")]
    Aborted { seq: u64, abort: Abort },
    #[error("could not encode the arguments: {0}")]
    Encode(postcard::Error),
    #[error("could not decode the result as the requested type: {0}")]
    Decode(postcard::Error),
}

/// The answer to one request.
#[derive(Debug)]
pub struct Completion {
    pub request_id: u64,
    pub result: Result<TxOutcome, NodeError>,
}

/// A committed call's decoded result and the sequence number it took
/// effect at (usable as a fencing token).
#[derive(Debug, Clone, PartialEq)]
pub struct Called<R> {
    pub value: R,
    pub seq: u64,
}

/// A node's position and hashes, plus log facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub engine: EngineStatus,
    /// Index of the last durable log record (one record per batch), or
    /// of the last Raft log entry.
    pub log_records: u64,
    /// The Raft index of the last batch executed (0 on an embedded node).
    pub raft_applied: u64,
}

/// From [`Node::storage_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageStatus {
    pub snapshot_position: Option<u64>,
    pub log_bytes: u64,
}

/// Where a request's answer goes. Answers travel in vectors so the
/// executor sends once per batch per caller, not once per request: at
/// hundreds of thousands of requests a second, per-request channel sends
/// and thread wake-ups cost more than the transactions.
#[derive(Clone)]
enum Reply {
    /// For threads that wait for their answers.
    Blocking(Sender<Vec<Completion>>),
    /// For async callers (the TCP server's connections): no thread waits.
    Async(tokio::sync::mpsc::UnboundedSender<Vec<Completion>>),
}

impl Reply {
    /// Hands over `completions`; a caller that went away no longer wants
    /// answers, so a failed send is not an error.
    fn send(&self, completions: Vec<Completion>) {
        match self {
            Reply::Blocking(sender) => {
                let _ = sender.send(completions);
            }
            Reply::Async(sender) => {
                let _ = sender.send(completions);
            }
        }
    }

    fn same_channel(&self, other: &Reply) -> bool {
        match (self, other) {
            (Reply::Blocking(a), Reply::Blocking(b)) => a.same_channel(b),
            (Reply::Async(a), Reply::Async(b)) => a.same_channel(b),
            _ => false,
        }
    }
}

/// What a proposed batch carries through the log: who to answer. The
/// request ids are for answering without the batch (a proposal lost in a
/// leader change).
struct Callers {
    request_ids: Vec<u64>,
    replies: Vec<Option<Reply>>,
    /// When the batch's first request was admitted (the calls' latency
    /// counts from here).
    opened_at: Instant,
}

impl Callers {
    /// Tells every caller `err` (the batch will not be answered here).
    fn fail(self, shared: &Shared, err: impl Fn() -> NodeError) {
        shared.answered(self.request_ids.len());
        for (request_id, reply) in self.request_ids.into_iter().zip(self.replies) {
            if let Some(reply) = reply {
                reply.send(vec![Completion {
                    request_id,
                    result: Err(err()),
                }]);
            }
        }
    }
}

impl std::fmt::Debug for Callers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Callers({} requests)", self.request_ids.len())
    }
}

struct Shared {
    config: NodeConfig,
    compiler: Arc<ModuleCompiler>,
    /// Admission, group commit and (on a single node) numbering and the
    /// durability rule: the sans-IO core the simulator drives too.
    /// Submitting threads add to its open batch; the log thread closes
    /// batches and carries out what it asks.
    core: Mutex<NodeCore<Option<Reply>>>,
    /// Wakes the log thread: the open batch got its first entry or filled
    /// up, or the node is stopping.
    log_work: Condvar,
    /// The core's clock is nanoseconds since this instant.
    clock_base: Instant,
    stopping: AtomicBool,
    failure: Mutex<Option<String>>,
    status: Mutex<NodeStatus>,
    status_changed: Condvar,
    procedures: Mutex<Vec<ProcedureInfo>>,
    /// The deployed procedures' schemas, for checking calls before they
    /// are logged. Replaced whenever a batch with a deploy has run.
    contracts: RwLock<BTreeMap<String, Arc<ProcedureContract>>>,
    modules: Mutex<Vec<DeployedModule>>,
    next_client: AtomicU64,
    metrics: crate::metrics::Metrics,
    procedure_logs: crate::procedure_logs::ProcedureLogs,
    /// Overload refusals, at most one line a second.
    overloaded_log: ordo_sequencer::rate_limited::RateLimitedLog,
    raft: Option<RaftHandle>,
    /// A single node's snapshots (`None` in a cluster, where Raft keeps
    /// them).
    local: Option<crate::snapshots::LocalSnapshots>,
    reads: Sender<ReadRequest>,
}

/// Stale reads waiting for the executor thread; past this, reads are
/// refused as overloaded.
const READS_QUEUED_MAX: usize = 1024;

/// Longest a stale read waits for the executor to reach its
/// `min_position` before it is refused with [`NodeError::Behind`]. Long
/// enough for a restarted member to hear the leader's commit index and
/// apply its log tail (a heartbeat is 100 ms), short enough that a client
/// still has time to try another node within its request timeout.
pub const STALE_READ_WAIT_MS_MAX: u64 = 1_000;

/// Stale reads the executor holds while they wait for their
/// `min_position`; a read that would be one more is refused with
/// [`NodeError::Behind`] at once (checked before it is stored).
pub const STALE_READS_PARKED_MAX: usize = 1024;

/// The most rows one `Node::submit_scan` answers.
pub const SCAN_ROWS_MAX: usize = 1_000;
/// Bytes of keys and values past which a scan answers no more rows (the
/// row that crosses it is the last), so an answer fits in a frame.
pub const SCAN_BYTES_MAX: usize = 4 << 20;

/// A stale read for the executor thread to run between batches.
struct ReadRequest {
    work: ReadWork,
    /// Run only once the executor has reached this position (0: at once).
    min_position: u64,
    /// After this, a read still below `min_position` is refused.
    deadline: Instant,
}

/// What a [`ReadRequest`] runs, and where its answer goes.
enum ReadWork {
    /// A read-only procedure.
    Procedure {
        procedure: String,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        answer: ReadReply,
    },
    /// Committed rows of a key range (`Node::submit_scan`).
    Scan {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        rows_max: usize,
        answer: tokio::sync::oneshot::Sender<Result<ordo_engine::ScannedRows, NodeError>>,
    },
}

/// Where a stale read's answer goes: a blocked thread (`Node::read`) or an
/// async caller (`Node::submit_read`, the server), which then holds no
/// thread while the read waits for its position.
enum ReadReply {
    Blocking(Sender<Result<ReadOutcome, NodeError>>),
    Async(tokio::sync::oneshot::Sender<Result<ReadOutcome, NodeError>>),
}

impl ReadReply {
    fn send(self, answer: Result<ReadOutcome, NodeError>) {
        match self {
            ReadReply::Blocking(sender) => {
                let _ = sender.send(answer);
            }
            ReadReply::Async(sender) => {
                let _ = sender.send(answer);
            }
        }
    }
}

impl ReadRequest {
    /// Answers with `error`, without running.
    fn refuse(self, error: NodeError) {
        match self.work {
            ReadWork::Procedure { answer, .. } => answer.send(Err(error)),
            ReadWork::Scan { answer, .. } => {
                let _ = answer.send(Err(error));
            }
        }
    }
}

/// The stale reads the executor holds until it reaches their
/// `min_position` (at most [`STALE_READS_PARKED_MAX`]).
#[derive(Default)]
struct ParkedReads {
    reads: Vec<ReadRequest>,
}

impl ParkedReads {
    /// Runs `read` now if the executor is at its position, holds it if
    /// not (and there is room and time), or refuses it.
    fn take(&mut self, executor: &mut Executor, position: u64, read: ReadRequest) {
        if read.min_position <= position {
            run_read(executor, read);
        } else if self.reads.len() >= STALE_READS_PARKED_MAX || read.deadline <= Instant::now() {
            refuse_behind(read, position);
        } else {
            self.reads.push(read);
        }
    }

    /// Runs the held reads the executor has now reached, refuses those
    /// whose wait is over; in arrival order.
    fn release(&mut self, executor: &mut Executor, position: u64) {
        if self.reads.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut kept = Vec::new();
        for read in std::mem::take(&mut self.reads) {
            if read.min_position <= position {
                run_read(executor, read);
            } else if read.deadline <= now {
                refuse_behind(read, position);
            } else {
                kept.push(read);
            }
        }
        self.reads = kept;
    }

    /// When the first held read's wait ends, if any is held.
    fn next_deadline(&self) -> Option<Instant> {
        self.reads.iter().map(|read| read.deadline).min()
    }
}

fn run_read(executor: &mut Executor, read: ReadRequest) {
    match read.work {
        ReadWork::Procedure {
            procedure,
            encoding,
            args,
            answer,
        } => answer.send(Ok(executor.read(&procedure, encoding, &args, now_ms()))),
        ReadWork::Scan {
            start,
            end,
            rows_max,
            answer,
        } => {
            let rows = executor.scan_committed(&start, end.as_deref(), rows_max, SCAN_BYTES_MAX);
            let _ = answer.send(Ok(rows));
        }
    }
}

fn refuse_behind(read: ReadRequest, position: u64) {
    let wanted = read.min_position;
    read.refuse(NodeError::Behind {
        applied: position,
        wanted,
    });
}

impl Shared {
    /// Makes what the executor now runs visible to callers.
    fn publish_procedures(&self, executor: &Executor) {
        *self.procedures.lock() = executor.procedures();
        *self.contracts.write() = executor.contracts();
        *self.modules.lock() = executor.deployed_modules();
    }

    /// Checks a call's arguments against the procedure's schema, if it has
    /// one (docs/PROCEDURES.md, "The procedure contract"). A procedure
    /// without a schema, or one not deployed (yet), is left to the
    /// executor.
    fn check_arguments(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: &[u8],
        signature: Option<&Signature>,
    ) -> Result<(), NodeError> {
        let contracts = self.contracts.read();
        let Some(contract) = contracts.get(procedure) else {
            return Ok(());
        };
        let bad = |reason: String| NodeError::BadArguments {
            procedure: procedure.to_string(),
            signature: contract.signature(),
            reason,
        };
        match encoding {
            ArgsEncoding::Postcard => {
                if let Some(signature) = signature
                    && signature != &contract.fingerprint
                {
                    return Err(NodeError::SignatureMismatch {
                        contract: contract.clone(),
                    });
                }
                ordo_engine::schema::check_postcard_args(
                    &contract.param_shapes,
                    &contract.schema.types,
                    args,
                )
                .map_err(|err| bad(err.to_string()))
            }
            ArgsEncoding::Json => {
                let value = ordo_engine::schema::parse_json(args)
                    .map_err(|err| bad(format!("not JSON: {err}")))?;
                ordo_engine::schema::check_json_args(
                    &contract.schema.params,
                    &contract.schema.types,
                    &value,
                )
                .map_err(|err| bad(err.to_string()))
            }
        }
    }

    fn fail(&self, reason: String) {
        {
            let mut failure = self.failure.lock();
            if failure.is_none() {
                *failure = Some(reason);
            }
        }
        self.stop();
        self.status_changed.notify_all();
    }

    /// Sets `stopping`, stops the core taking requests, and wakes the log
    /// thread. Under the core's lock: the log thread checks `stopping`
    /// under it before it waits, so a store and notify between its check
    /// and its wait would be lost and leave it (and `Node::shutdown`,
    /// joining it) waiting forever.
    fn stop(&self) {
        let mut core = self.core.lock();
        core.stop();
        self.stopping.store(true, Ordering::SeqCst);
        self.log_work.notify_all();
    }

    /// The core's clock: monotonic nanoseconds since the node opened.
    fn now_ns(&self) -> u64 {
        self.clock_base.elapsed().as_nanos() as u64
    }

    /// The core's clock reading `at_ns` as an instant.
    fn instant_at(&self, at_ns: u64) -> Instant {
        self.clock_base + Duration::from_nanos(at_ns)
    }

    /// `count` of this node's admitted requests were answered, or their
    /// callers told why not: they no longer count against
    /// `inflight_max`.
    fn answered(&self, count: usize) {
        self.core.lock().answered(count);
    }

    /// What a caller hears for a request the core refused.
    fn refused(&self, refusal: &Refusal) -> NodeError {
        match refusal {
            Refusal::Overloaded { inflight_max } => NodeError::Overloaded {
                inflight_max: *inflight_max,
            },
            Refusal::Failed(reason) => NodeError::Failed(reason.clone()),
            Refusal::Stopped => self.refusal(),
        }
    }

    fn refusal(&self) -> NodeError {
        match self.failure.lock().clone() {
            Some(reason) => NodeError::Failed(reason),
            None => NodeError::Stopped,
        }
    }

    fn enqueue(&self, entry: Entry, reply: Option<Reply>) -> Result<(), NodeError> {
        match self
            .enqueue_all(std::iter::once(entry), reply.as_ref())
            .pop()
        {
            None => Ok(()),
            Some((_, err)) => Err(err),
        }
    }

    /// Enqueues `entries` with one lock, all answered on `reply`. Admits
    /// what fits under `inflight_max`, in order; returns the request ids
    /// refused and why (empty, without allocating, when all are admitted).
    fn enqueue_all(
        &self,
        entries: impl ExactSizeIterator<Item = Entry>,
        reply: Option<&Reply>,
    ) -> Vec<(u64, NodeError)> {
        if let Some(raft) = &self.raft
            && let Err(leader_addr) = raft.leads()
        {
            return entries
                .map(|entry| {
                    (
                        entry.client().1,
                        NodeError::NotLeader {
                            leader_addr: leader_addr.clone(),
                        },
                    )
                })
                .collect();
        }
        let now_ns = self.now_ns();
        // Once one request is refused, so are the rest (the core's state
        // does not change under the lock): admitted ones form a prefix.
        let mut refusal = None;
        let mut refused_ids = Vec::new();
        let inflight_before;
        {
            let mut core = self.core.lock();
            inflight_before = core.inflight();
            let was_empty = core.open_entries() == 0;
            for entry in entries {
                let request_id = entry.client().1;
                if refusal.is_none() {
                    match core.submit(entry, reply.cloned(), now_ns) {
                        Ok(()) => continue,
                        Err(why) => refusal = Some(why),
                    }
                }
                refused_ids.push(request_id);
            }
            // A waiting log thread has no batch, or is waiting out the
            // window of one that just filled up.
            if (was_empty && core.open_entries() > 0)
                || (!self.config.batch_window.is_zero() && core.open_is_full())
            {
                self.log_work.notify_one();
            }
        }
        let Some(refusal) = refusal else {
            return Vec::new();
        };
        if let Refusal::Overloaded { inflight_max } = refusal {
            for _ in &refused_ids {
                self.metrics.request_refused_overloaded();
            }
            self.overloaded_log.warn_with(|| {
                format!(
                    "refused {} requests as overloaded: {inflight_before} were in flight, the limit is {inflight_max} (--inflight-max); their clients retry",
                    refused_ids.len()
                )
            });
        }
        refused_ids
            .into_iter()
            .map(|request_id| (request_id, self.refused(&refusal)))
            .collect()
    }
}

/// The engine's rule for procedure names (grammar and length), checked
/// where requests enter the node.
fn check_procedure_name(procedure: &str) -> Result<(), NodeError> {
    if ordo_engine::module::valid_procedure_name(procedure) {
        Ok(())
    } else {
        Err(NodeError::BadProcedureName {
            bytes: procedure.len(),
        })
    }
}

/// A running embedded node. Dropping it shuts it down gracefully: the open
/// batch is made durable, executed and answered first.
pub struct Node {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: Option<Recovery>,
    internal: Session,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// A client id nobody else will pick: wall-clock nanoseconds, process id
/// and a counter. Only uniqueness matters; the id is logged, so replicas
/// never need to regenerate it.
fn fresh_client_id(counter: u64) -> ClientId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos << 32) ^ ((std::process::id() as u128) << 16) ^ counter as u128;
    xxhash_rust::xxh3::xxh3_128(&mixed.to_le_bytes())
}

/// The protocol's session request as a log entry's change.
pub fn session_change(request: ordo_client::protocol::SessionRequest) -> SessionChange {
    match request {
        ordo_client::protocol::SessionRequest::Register => SessionChange::Register,
        ordo_client::protocol::SessionRequest::End => SessionChange::End,
    }
}

/// How long [`Node::begin_backup`] waits for the batch after the newest
/// snapshot to run (it is durable when the snapshot is taken, so this is
/// one batch's execution on a healthy node).
const BACKUP_STATUS_WAIT: Duration = Duration::from_secs(10);

impl Node {
    /// Opens (or creates) the node in `config.data_dir`: recovers the log,
    /// replays it into a fresh engine, and starts serving.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| {
            NodeError::Failed(format!(
                "cannot create data directory {}: {source}",
                config.data_dir.display()
            ))
        })?;
        check_engine_config(&config)?;
        let compiler = build_compiler(&config)?;
        if !(1..=ordo_engine::SLOTS).contains(&config.partitions) {
            return Err(NodeError::BadPartitions {
                partitions: config.partitions,
            });
        }
        let (delivery_tx, delivery_rx) = crossbeam_channel::bounded(EXECUTOR_QUEUE_BATCHES_MAX);
        let (reads_tx, reads_rx) = crossbeam_channel::bounded(READS_QUEUED_MAX);
        // A Raft log can abandon proposals only once the node runs, but
        // it is built before the shared state: it finds it through this.
        let shared_for_abandon: Arc<std::sync::OnceLock<std::sync::Weak<Shared>>> =
            Arc::new(std::sync::OnceLock::new());
        // Filled by the replay of a single node's log, as running the log
        // writes the same lines again.
        let procedure_logs = crate::procedure_logs::ProcedureLogs::default();
        let core_config = CoreConfig {
            inflight_max: config.inflight_max,
            batch_entries_max: config.batch_entries_max,
            batch_bytes_max: config.batch_bytes_max,
            batch_window_ns: u64::try_from(config.batch_window.as_nanos()).unwrap_or(u64::MAX),
        };
        let (writer, core, executor, recovery, raft, local, last_timestamp_ms) = match &config
            .cluster
        {
            None => {
                let opening = Instant::now();
                let mut log_config = FileLogConfig::new(config.data_dir.join("log"));
                log_config.segment_bytes_max = config.segment_bytes_max;
                let file = FileLog::open(log_config)?;
                let recovery = file.recovery().cloned();
                let log_opened = opening.elapsed();
                let snapshots_dir = config.data_dir.join(crate::snapshots::SNAPSHOTS_DIR);
                let cannot = |what: &str, err: std::io::Error| {
                    NodeError::Failed(format!("cannot {what} {}: {err}", snapshots_dir.display()))
                };
                let store = Arc::new(
                    ordo_sequencer::raft::SnapshotStore::open_retaining(
                        snapshots_dir.clone(),
                        ordo_sequencer::raft::Retention {
                            kept: config.snapshots_kept,
                            positions: config.retain_positions,
                        },
                    )
                    .map_err(|err| cannot("open the snapshots in", err))?,
                );
                let latest = store
                    .latest()
                    .map_err(|err| cannot("read the snapshots in", err))?;
                crate::snapshots::check_fits(latest.as_ref(), &file, &snapshots_dir)
                    .map_err(NodeError::Failed)?;
                let restoring = Instant::now();
                let (mut executor, sequencer) = match &latest {
                    Some(image) => (
                        restore_executor(&config, &compiler, image)?,
                        Sequencer::resume(image.next_seq, image.last_timestamp_ms),
                    ),
                    None => (fresh_executor(&config, &compiler), Sequencer::new()),
                };
                let restored = restoring.elapsed();
                let after_index = latest.as_ref().map_or(0, SnapshotImage::covered_index);
                let replaying = Instant::now();
                let sequencer = crate::node_core::replay_log(
                    &file,
                    &mut executor,
                    after_index,
                    sequencer,
                    |batch, outcomes| procedure_logs.record(&batch.entries, outcomes),
                )?;
                if let Some(image) = &latest {
                    // Operators (and tests) want to know what a start
                    // skipped, and where its time went.
                    tracing::info!(
                        "opened the log in {} ms, restored the snapshot at sequence {} (log record {}) in {} ms, replayed the {} records after it in {} ms",
                        log_opened.as_millis(),
                        image.next_seq,
                        image.covered_index(),
                        restored.as_millis(),
                        file.last_index() - image.covered_index(),
                        replaying.elapsed().as_millis()
                    );
                }
                let last_timestamp_ms = sequencer.last_timestamp_ms();
                let file = Arc::new(Mutex::new(file));
                let local = crate::snapshots::LocalSnapshots::start(
                    store,
                    file.clone(),
                    config.snapshot_log_bytes_min,
                    latest.as_ref(),
                )
                .map_err(NodeError::Thread)?;
                let writer = LogWriter::Local {
                    file,
                    deliveries: delivery_tx,
                };
                (
                    writer,
                    NodeCore::new(core_config, sequencer, None),
                    executor,
                    recovery,
                    None,
                    Some(local),
                    last_timestamp_ms,
                )
            }
            Some(member) => {
                let mut cluster = ClusterConfig::new(
                    member.node_id,
                    member.members.clone(),
                    member.secret.clone(),
                    config.data_dir.join("raft"),
                );
                cluster.tls = member.tls.clone();
                let abandon_to = shared_for_abandon.clone();
                let (log, latest) = RaftLog::start(
                    cluster,
                    delivery_tx,
                    // The reason is for logs; callers just hear "not the
                    // leader", move on and retry, and the request ids keep
                    // that exactly-once (the batch may commit after all).
                    move |callers: Callers, _reason: String| {
                        if let Some(shared) = abandon_to.get().and_then(std::sync::Weak::upgrade) {
                            callers.fail(&shared, || NodeError::NotLeader { leader_addr: None });
                        }
                    },
                    now_ms(),
                )?;
                let executor = match &latest {
                    Some(image) => restore_executor(&config, &compiler, image)?,
                    None => fresh_executor(&config, &compiler),
                };
                let raft = log.handle();
                (
                    LogWriter::Replicated(Box::new(log)),
                    NodeCore::proposing(core_config),
                    executor,
                    None,
                    Some(raft),
                    None,
                    // Raft hands the executor each batch's predecessor's
                    // stamp itself (`RaftPoint`).
                    0,
                )
            }
        };

        let compiled = compiler.stats();
        if compiled != Default::default() {
            // Operators (and tests) want to know whether a start had to
            // compile modules again.
            tracing::info!(
                "modules at startup: {} loaded from the compiled-code cache, {} compiled, {} cache files discarded",
                compiled.loaded_from_cache,
                compiled.compiled,
                compiled.cache_discarded
            );
        }
        let status = NodeStatus {
            engine: executor.status(),
            log_records: writer.last_index(),
            raft_applied: 0,
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            compiler,
            core: Mutex::new(core),
            log_work: Condvar::new(),
            clock_base: Instant::now(),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            status: Mutex::new(status),
            status_changed: Condvar::new(),
            procedures: Mutex::new(executor.procedures()),
            contracts: RwLock::new(executor.contracts()),
            modules: Mutex::new(executor.deployed_modules()),
            next_client: AtomicU64::new(1),
            metrics: Default::default(),
            procedure_logs,
            overloaded_log: ordo_sequencer::rate_limited::RateLimitedLog::new(Duration::from_secs(
                1,
            )),
            raft,
            local,
            reads: reads_tx,
        });
        let _ = shared_for_abandon.set(Arc::downgrade(&shared));

        // A single node records its chain hash after every batch, for
        // `ordo replay` (chain_journal.rs); a journal that cannot open is
        // said once and skipped: it is derived data.
        let chain_journal = shared.local.as_ref().and_then(|_| {
            let dir = shared.config.data_dir.join(crate::chain_journal::CHAIN_DIR);
            crate::chain_journal::ChainJournal::open(
                dir.clone(),
                crate::chain_journal::CHAIN_JOURNAL_BYTES_MAX,
            )
            .inspect_err(|err| {
                tracing::warn!("no chain journal: cannot open {}: {err}", dir.display())
            })
            .ok()
        });
        let executor_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ordo-executor".into())
                .stack_size(ordo_engine::ENGINE_THREAD_STACK_BYTES)
                .spawn(move || {
                    run_executor(
                        shared,
                        executor,
                        delivery_rx,
                        reads_rx,
                        last_timestamp_ms,
                        chain_journal,
                    )
                })
                .map_err(NodeError::Thread)?
        };
        let log_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ordo-log".into())
                .spawn(move || {
                    let _fail_on_panic = FailOnPanic(&shared, "ordo-log");
                    run_log(shared.clone(), writer)
                })
                .map_err(NodeError::Thread)?
        };
        let internal = Session::new(shared.clone());
        Ok(Node {
            shared,
            // Joined in this order on shutdown: the log thread finishes
            // the open batch, then the executor answers it.
            threads: Mutex::new(vec![log_thread, executor_thread]),
            recovery,
            internal,
        })
    }

    /// A time-travel read (`replay::read_at_live`): runs the read-only
    /// `procedure` against the state as of position `at`, rebuilt from
    /// this node's kept snapshots and log on the calling thread; a
    /// standalone node only. The node's own state is not touched.
    pub fn read_at(
        &self,
        at: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: &[u8],
    ) -> Result<ordo_engine::ReadOutcome, NodeError> {
        let Some(local) = &self.shared.local else {
            return Err(NodeError::Failed(
                "time-travel reads are served by a standalone node; a cluster member cannot serve them yet"
                    .into(),
            ));
        };
        let executed = self.shared.status.lock().engine.position;
        crate::replay::read_at_live(
            local,
            &self.shared.config.engine,
            executed,
            at,
            procedure,
            encoding,
            args,
        )
        .map_err(|err| NodeError::Failed(format!("{err:#}")))
    }

    /// Fixes a hot backup (see `backup.rs`): of a standalone node at its
    /// current position, of a cluster member at its newest snapshot.
    pub fn begin_backup(&self) -> Result<crate::backup::ServedBackup, NodeError> {
        let cannot = |reason| NodeError::Failed(format!("cannot begin a backup: {reason}"));
        match (&self.shared.local, &self.shared.raft) {
            (Some(local), _) => {
                // A snapshot is taken just before the batch that opens its
                // epoch, and written while that batch runs. A status read
                // before the batch ran, with the snapshot listed after it
                // was written, would make a backup at the snapshot's own
                // position without that batch: its restore could execute
                // nothing but a batch opening the epoch (the executor
                // refuses anything else). Such a backup is never handed
                // out; the status is read again once the batch has run.
                let deadline = Instant::now() + BACKUP_STATUS_WAIT;
                loop {
                    let status = *self.shared.status.lock();
                    let backup = crate::backup::ServedBackup::begin(
                        local,
                        &self.shared.config.engine,
                        &status,
                    )
                    .map_err(cannot)?;
                    if backup.holds_the_batch_after_its_snapshot() {
                        return Ok(backup);
                    }
                    drop(backup);
                    let mut now = self.shared.status.lock();
                    if now.log_records == status.log_records
                        && self
                            .shared
                            .status_changed
                            .wait_until(&mut now, deadline)
                            .timed_out()
                    {
                        return Err(cannot(
                            "the batch after the newest snapshot did not run in time; try again"
                                .to_string(),
                        ));
                    }
                    if let Some(failure) = self.shared.failure.lock().clone() {
                        return Err(cannot(failure));
                    }
                }
            }
            (None, Some(raft)) => crate::backup::ServedBackup::begin_member(
                raft.snapshots(),
                self.shared.compiler.clone(),
                &self.shared.config.engine,
            )
            .map_err(cannot),
            (None, None) => Err(cannot("the node keeps no snapshots".to_string())),
        }
    }

    /// Runs the read-only `procedure` on this node's current state,
    /// without logging it: possibly stale on a cluster follower; the
    /// outcome carries the position it read at. Blocks until the executor
    /// thread is between batches.
    pub fn read(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<ReadOutcome, NodeError> {
        self.read_at_least(procedure, encoding, args, 0)
    }

    /// [`Node::read`] at `min_position` or later: if this node has not
    /// executed that far, the read waits (up to
    /// [`STALE_READ_WAIT_MS_MAX`]) for it to, and is otherwise refused
    /// with [`NodeError::Behind`]. Never answers from a state older than
    /// `min_position`, which is what keeps one client's stale reads
    /// monotonic across a restart or a move to another node.
    pub fn read_at_least(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        min_position: u64,
    ) -> Result<ReadOutcome, NodeError> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        self.queue_read(
            procedure,
            encoding,
            args,
            min_position,
            ReadReply::Blocking(answer),
        )?;
        answered
            .recv()
            .unwrap_or_else(|_| Err(self.shared.refusal()))
    }

    /// [`Node::read_at_least`] for async callers: the answer comes on the
    /// returned channel, so no thread waits while the read waits for its
    /// position. A dropped sender means the node stopped.
    pub fn submit_read(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        min_position: u64,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<ReadOutcome, NodeError>>, NodeError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue_read(
            procedure,
            encoding,
            args,
            min_position,
            ReadReply::Async(answer),
        )?;
        Ok(answered)
    }

    fn queue_read(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        min_position: u64,
        answer: ReadReply,
    ) -> Result<(), NodeError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(self.shared.refusal());
        }
        check_procedure_name(procedure)?;
        self.queue_read_work(
            ReadWork::Procedure {
                procedure: procedure.to_string(),
                encoding,
                args,
                answer,
            },
            min_position,
        )
    }

    /// The committed rows with `start <= key < end` (no `end`: to the
    /// last key) at this node's current position, at most `rows_max`
    /// (up to [`SCAN_ROWS_MAX`]) and about [`SCAN_BYTES_MAX`] bytes, read
    /// by the executor between batches (`ordo scan`). The answer comes on
    /// the returned channel.
    pub fn submit_scan(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        rows_max: usize,
    ) -> Result<
        tokio::sync::oneshot::Receiver<Result<ordo_engine::ScannedRows, NodeError>>,
        NodeError,
    > {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.queue_read_work(
            ReadWork::Scan {
                start,
                end,
                rows_max: rows_max.clamp(1, SCAN_ROWS_MAX),
                answer,
            },
            0,
        )?;
        Ok(answered)
    }

    fn queue_read_work(&self, work: ReadWork, min_position: u64) -> Result<(), NodeError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(self.shared.refusal());
        }
        let request = ReadRequest {
            work,
            min_position,
            deadline: Instant::now() + Duration::from_millis(STALE_READ_WAIT_MS_MAX),
        };
        self.shared
            .reads
            .try_send(request)
            .map_err(|err| match err {
                crossbeam_channel::TrySendError::Full(_) => NodeError::Overloaded {
                    inflight_max: READS_QUEUED_MAX,
                },
                crossbeam_channel::TrySendError::Disconnected(_) => self.shared.refusal(),
            })
    }

    /// Why the node stopped, if it failed (a log write, a divergence, Raft
    /// stopping for good on an entry it could not apply).
    pub fn failure(&self) -> Option<String> {
        if let Some(failure) = self.shared.failure.lock().clone() {
            return Some(failure);
        }
        self.shared.raft.as_ref().and_then(RaftHandle::fatal)
    }

    /// This node's place in its Raft cluster; `None` on an embedded node.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.shared.raft.as_ref().map(RaftHandle::status)
    }

    /// What opening the log had to repair, if anything (a torn tail).
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.config.data_dir
    }

    /// A new client session with a fresh client id.
    pub fn session(&self) -> Session {
        Session::new(self.shared.clone())
    }

    /// A new client session registered through the log (an
    /// `Entry::Session` `Register`): unlike [`Node::session`]'s, it lives
    /// in the registered pool, so unregistered clients never push it out,
    /// and once it expires its requests are refused with
    /// `session_expired` instead of being forgotten. End it with
    /// [`Session::end`].
    pub fn register_session(&self) -> Result<Session, CallError> {
        let counter = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let low = fresh_client_id(counter) as u64;
        let session = Session::with_id(self.shared.clone(), session_client_id(low), 1);
        session.change_session(SessionChange::Register)?;
        Ok(session)
    }

    /// A session that continues an earlier client's request ids, e.g. to
    /// retry after a restart.
    pub fn resume_session(&self, client_id: ClientId, next_request_id: u64) -> Session {
        Session::with_id(self.shared.clone(), client_id, next_request_id)
    }

    /// A session for an async caller (the TCP server): the completions
    /// of its [`Session::submit_many_with_ack`] calls arrive on the
    /// returned channel, not through [`Session::recv`], so no thread has
    /// to wait for them.
    pub fn async_session(
        &self,
        client_id: ClientId,
    ) -> (
        Session,
        tokio::sync::mpsc::UnboundedReceiver<Vec<Completion>>,
    ) {
        let (completions_tx, completions_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut session = Session::with_id(self.shared.clone(), client_id, 1);
        session.completions_tx = Reply::Async(completions_tx);
        (session, completions_rx)
    }

    /// Deploys (or upgrades) module `name`. Returns once the deploy has
    /// taken effect.
    pub fn deploy(&self, name: &str, wasm: &[u8]) -> Result<ModuleSummary, CallError> {
        self.internal.deploy(name, wasm)
    }

    /// Calls `procedure` with postcard-encoded `args` and decodes its
    /// result.
    pub fn call<A: Serialize + Schema, R: DeserializeOwned>(
        &self,
        procedure: &str,
        args: &A,
    ) -> Result<Called<R>, CallError> {
        self.internal.call(procedure, args)
    }

    /// Calls `procedure` with raw arguments and returns the raw outcome.
    pub fn call_raw(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<TxOutcome, NodeError> {
        self.internal.call_raw(procedure, encoding, args)
    }

    pub fn status(&self) -> NodeStatus {
        *self.shared.status.lock()
    }

    /// What a standalone node keeps on disk: the position its newest
    /// durable snapshot rebuilds (`None` before the first) and the bytes
    /// of its log's records. `None` on a cluster member.
    pub fn storage_status(&self) -> Option<StorageStatus> {
        let local = self.shared.local.as_ref()?;
        let next_seq = local.newest_next_seq();
        Some(StorageStatus {
            snapshot_position: (next_seq > 0).then(|| next_seq - 1),
            log_bytes: local.log().lock().bytes(),
        })
    }

    /// Executor threads (`NodeConfig::partitions`).
    pub fn partitions(&self) -> usize {
        self.shared.config.partitions
    }

    /// The node's counters in the Prometheus text format.
    /// A page of this node's procedure log (`ordo logs`).
    pub fn procedure_log_page(
        &self,
        query: &crate::procedure_logs::LogQuery<'_>,
    ) -> crate::procedure_logs::LogPage {
        let position = self.status().engine.position;
        self.shared.procedure_logs.page(query, position)
    }

    /// The metrics in the OpenMetrics text format
    /// ([`crate::metrics::METRICS_CONTENT_TYPE`]).
    pub fn metrics_text(&self) -> String {
        let engine = self.status().engine;
        self.shared.metrics.render(crate::metrics::Gauges {
            inflight: self.shared.core.lock().inflight() as u64,
            sessions: engine.sessions,
            stored_result_bytes: engine.stored_result_bytes,
            compile: self.shared.compiler.stats(),
        })
    }

    /// Every deployed module with its schemas, in name order.
    pub fn modules(&self) -> Vec<DeployedModule> {
        self.shared.modules.lock().clone()
    }

    pub fn procedures(&self) -> Vec<ProcedureInfo> {
        self.shared.procedures.lock().clone()
    }

    /// Waits until the executor has reached `position`, up to `timeout`.
    pub fn wait_for_position(&self, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut status = self.shared.status.lock();
        while status.engine.position < position {
            if self
                .shared
                .status_changed
                .wait_until(&mut status, deadline)
                .timed_out()
            {
                return status.engine.position >= position;
            }
        }
        true
    }

    /// Stops taking requests, makes the open batch durable, executes and
    /// answers it, and joins the node's threads.
    /// Idempotent; requests after it are refused with `Stopped`.
    pub fn shutdown(&self) {
        self.shared.stop();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The engine limits decide outcomes (fuel, memory, sizes), so they are
/// part of what a log means. The first open records them; later opens must
/// match.
fn check_engine_config(config: &NodeConfig) -> Result<(), NodeError> {
    let path = config.data_dir.join("engine-config.json");
    let wanted = serde_json::to_string_pretty(&config.engine).expect("the config serializes");
    let io_failure = |action: &str, source: std::io::Error| {
        NodeError::Failed(format!("cannot {action} {}: {source}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(recorded) => {
            let recorded: EngineConfig =
                serde_json::from_str(&recorded).map_err(|err| NodeError::EngineConfigMismatch {
                    path: path.clone(),
                    detail: format!("the file does not parse: {err}"),
                })?;
            if recorded != config.engine {
                return Err(NodeError::EngineConfigMismatch {
                    path,
                    detail: format!("recorded {recorded:?}"),
                });
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            replace_file(&path, wanted.as_bytes()).map_err(|err| io_failure("write", err))
        }
        Err(err) => Err(io_failure("read", err)),
    }
}

/// Where the log thread puts closed batches.
enum LogWriter {
    /// A single node's file log (shared with the snapshot thread and
    /// backups, which take it briefly; this thread is its only writer),
    /// and the executor's queue that durable batches go to.
    Local {
        file: Arc<Mutex<FileLog>>,
        deliveries: Sender<Delivery<Callers>>,
    },
    /// A Raft group: it numbers proposals and delivers them to the
    /// executor's queue once a majority holds them.
    Replicated(Box<dyn Log<Callers>>),
}

impl LogWriter {
    /// Index of the last log record (file log) or Raft log entry.
    fn last_index(&self) -> u64 {
        match self {
            LogWriter::Local { file, .. } => file.lock().last_index(),
            LogWriter::Replicated(log) => log.last_index(),
        }
    }
}

/// The log thread: takes the core's next action under its lock and
/// carries it out without it (appends, fsyncs and proposals block), so
/// the next batch grows meanwhile (group commit). Returns once the node
/// stops and everything admitted has been released, or when the log
/// fails.
fn run_log(shared: Arc<Shared>, mut writer: LogWriter) {
    // Of the batch being made durable: its record's length (the single
    // node's snapshot schedule counts log bytes) and when its append
    // began (the durability metric).
    let mut encoded_bytes = 0;
    let mut writing = Instant::now();
    loop {
        let action = {
            let mut core = shared.core.lock();
            loop {
                if let Some(action) = core.poll(shared.now_ns(), now_ms()) {
                    break action;
                }
                if core.is_idle() && shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                match core.next_deadline_ns() {
                    Some(deadline_ns) => {
                        let deadline = shared.instant_at(deadline_ns);
                        shared.log_work.wait_until(&mut core, deadline);
                    }
                    None => shared.log_work.wait(&mut core),
                }
            }
        };
        let released = match (action, &mut writer) {
            (Action::Append { batch }, LogWriter::Local { file, .. }) => {
                let encoded = batch.encode();
                encoded_bytes = encoded.len();
                writing = Instant::now();
                let appended = file.lock().append(&encoded);
                match appended {
                    Ok(index) => shared.core.lock().appended(index, batch),
                    Err(err) => return fail_log(&shared, format!("log write failed: {err}")),
                }
            }
            (Action::Sync, LogWriter::Local { file, .. }) => {
                // After a failed write or fsync the file's durable
                // contents are unknown; retrying fsync can falsely
                // succeed. The node stops and a restart recovers from what
                // is really on disk.
                let synced = file.lock().sync();
                match synced {
                    Ok(()) => shared.core.lock().synced(),
                    Err(err) => return fail_log(&shared, format!("log write failed: {err}")),
                }
            }
            (
                Action::Propose {
                    entries,
                    tokens,
                    timestamp_ms,
                    opened_at_ns,
                },
                LogWriter::Replicated(log),
            ) => {
                let count = entries.len();
                let callers = Callers {
                    request_ids: entries.iter().map(|entry| entry.client().1).collect(),
                    replies: tokens,
                    opened_at: shared.instant_at(opened_at_ns),
                };
                let proposing = Instant::now();
                let proposed = log.propose(entries, timestamp_ms, callers);
                shared.core.lock().proposed();
                match proposed {
                    Ok(()) => shared
                        .metrics
                        .batch_durable(count, proposing.elapsed().as_nanos() as u64),
                    Err(refused) => match refused.reason {
                        RefusalReason::NotLeader { .. } => {
                            let leader_addr = shared
                                .raft
                                .as_ref()
                                .and_then(|raft| raft.leads().err().flatten());
                            refused.token.fail(&shared, || NodeError::NotLeader {
                                leader_addr: leader_addr.clone(),
                            });
                        }
                        RefusalReason::Failed(reason) => {
                            refused
                                .token
                                .fail(&shared, || NodeError::Failed(reason.clone()));
                            return fail_log(&shared, reason);
                        }
                    },
                }
                Vec::new()
            }
            (_, _) => {
                unreachable!("a local log's core appends and syncs, a replicated log's proposes")
            }
        };
        for action in released {
            let Action::Execute {
                batch,
                log_index,
                tokens,
                opened_at_ns,
            } = action
            else {
                unreachable!("the core releases only batches to execute")
            };
            let LogWriter::Local { deliveries, .. } = &writer else {
                unreachable!("only a local log's core releases batches")
            };
            shared
                .metrics
                .batch_durable(batch.entries.len(), writing.elapsed().as_nanos() as u64);
            let callers = Callers {
                request_ids: batch.entries.iter().map(|entry| entry.client().1).collect(),
                replies: tokens,
                opened_at: shared.instant_at(opened_at_ns),
            };
            let delivered = deliveries.send(Delivery::Batch(Committed {
                batch,
                log_index,
                token: Some(callers),
                raft: None,
                checkpoints: Vec::new(),
                encoded_bytes,
            }));
            if let Err(crossbeam_channel::SendError(Delivery::Batch(committed))) = delivered {
                let reason = "the executor has stopped".to_string();
                if let Some(callers) = committed.token {
                    callers.fail(&shared, || NodeError::Failed(reason.clone()));
                }
                return fail_log(&shared, reason);
            }
        }
    }
}

/// The log failed (or its consumer did): the node stops, and every
/// request the core still holds hears why.
fn fail_log(shared: &Shared, reason: String) {
    shared.fail(reason.clone());
    let lost = shared.core.lock().fail(reason.clone());
    for (request_id, reply) in lost {
        if let Some(reply) = reply {
            reply.send(vec![Completion {
                request_id,
                result: Err(NodeError::Failed(reason.clone())),
            }]);
        }
    }
}

/// Marks the node failed if the named thread unwinds: a panic there is a
/// broken invariant (say, a gap in the log), and callers must hear about it
/// rather than wait. A panic while a batch executes is caught earlier, in
/// `run_executor`, which can name the transaction too.
struct FailOnPanic<'a>(&'a Shared, &'static str);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(format!(
                "thread `{}` panicked outside any transaction; its message is on the process's stderr",
                self.1
            ));
        }
    }
}

/// The node's compiler, with the on-disk cache of compiled code unless
/// `compile_cache_bytes_max` is 0.
fn build_compiler(config: &NodeConfig) -> Result<Arc<ModuleCompiler>, NodeError> {
    let compiler = ModuleCompiler::new(
        ordo_engine::sandbox::wasmtime_engine(&config.engine),
        config.engine.clone(),
    );
    if config.compile_cache_bytes_max == 0 {
        return Ok(Arc::new(compiler));
    }
    let dir = config
        .data_dir
        .join(crate::compile_cache::COMPILE_CACHE_DIR);
    let store =
        crate::compile_cache::DiskArtifactStore::open(dir.clone(), config.compile_cache_bytes_max)
            .map_err(|err| {
                NodeError::Failed(format!(
                    "cannot open the compiled-code cache {}: {err}",
                    dir.display()
                ))
            })?;
    Ok(Arc::new(compiler.with_artifact_store(Arc::new(store))))
}

/// Why the node stops after a panic while executing a batch: names the
/// thread and the transaction.
fn engine_panic_reason(
    payload: &(dyn std::any::Any + Send),
    interrupted_at: Option<u64>,
) -> String {
    let reason = match payload.downcast_ref::<ordo_engine::EnginePanic>() {
        Some(panic) => panic.to_string(),
        None => ordo_engine::EnginePanic {
            thread: "ordo-executor".to_string(),
            seq: interrupted_at,
            message: ordo_engine::panic_message(payload),
        }
        .to_string(),
    };
    format!("{reason}. This is a bug in ordo, not an outcome: the node stops rather than guess")
}

/// Answers of a batch go out in chunks of this many transactions while the
/// rest of the batch runs: a caller at the front of a batch of thousands
/// need not wait for the end of it (the batch is already durable).
const ANSWER_CHUNK: usize = 256;

/// Check points whose hashes a node keeps for comparing with the others'.
const CHECK_POINTS_KEPT: usize = 4096;

/// This node's hashes at recent check points, and what the other nodes
/// reported for them (through the log, so every node sees the same
/// reports). When a majority of the cluster agrees on hashes this node
/// does not have, this node is the one that diverged.
#[derive(Default)]
struct DivergenceCheck {
    own: std::collections::BTreeMap<u64, (u128, u128)>,
    reported: std::collections::BTreeMap<u64, std::collections::BTreeMap<u64, (u128, u128)>>,
}

impl DivergenceCheck {
    fn record(&mut self, last_seq: u64, hashes: (u128, u128)) {
        self.own.insert(last_seq, hashes);
        while self.own.len() > CHECK_POINTS_KEPT {
            self.own.pop_first();
        }
        if let Some(&oldest) = self.own.keys().next() {
            self.reported = self.reported.split_off(&oldest);
        }
    }

    /// Takes in `checkpoints` (from the log) and fails if a majority of
    /// the `members` agree on hashes this node (`me`) does not have.
    /// Check points in the name of a node that is not a member count for
    /// nothing, and each member counts once however often it is named.
    /// `batch_seq` and `raft_index` only name where it was found.
    fn check(
        &mut self,
        me: u64,
        members: &[u64],
        checkpoints: &[ordo_sequencer::raft::Checkpoint],
        batch_seq: u64,
        raft_index: u64,
    ) -> Result<(), String> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let majority = members.len().max(1) / 2 + 1;
        let members_count = members.len();
        for checkpoint in checkpoints {
            if !members.contains(&checkpoint.node) {
                continue;
            }
            let Some(&own) = self.own.get(&checkpoint.last_seq) else {
                continue;
            };
            let reports = self.reported.entry(checkpoint.last_seq).or_default();
            reports.insert(
                checkpoint.node,
                (checkpoint.state_hash, checkpoint.chain_hash),
            );
            reports.insert(me, own);
            let mut votes: std::collections::BTreeMap<(u128, u128), Vec<u64>> = Default::default();
            for (node, hashes) in reports.iter() {
                votes.entry(*hashes).or_default().push(*node);
            }
            if let Some((agreed, nodes)) = votes
                .iter()
                .find(|(hashes, nodes)| nodes.len() >= majority && **hashes != own)
            {
                return Err(format!(
                    "this node diverged: after the batch ending at sequence {} (found while executing the batch at sequence {}, Raft index {}) its state hash is {:032x} and chain hash {:032x}, but nodes {nodes:?} (a majority of {members_count}) have {:032x} and {:032x}. Replicas must be deterministic; this node stops rather than serve a different history. Wipe its data directory to rejoin from a snapshot.",
                    checkpoint.last_seq, batch_seq, raft_index, own.0, own.1, agreed.0, agreed.1,
                ));
            }
        }
        Ok(())
    }
}

/// Test-only fault injection: a node started with this variable set to a
/// sequence number replaces that transaction's arguments with garbage,
/// so it alone diverges (the divergence check must catch it). Obeyed only
/// by builds with the engine's `fault-injection` feature (test builds).
const DIVERGE_AT_SEQ_VARIABLE: &str = "ORDO_TEST_DIVERGE_AT_SEQ";

fn run_executor(
    shared: Arc<Shared>,
    mut executor: Executor,
    deliveries: Receiver<Delivery<Callers>>,
    reads: Receiver<ReadRequest>,
    mut last_timestamp_ms: u64,
    mut chain_journal: Option<crate::chain_journal::ChainJournal>,
) {
    let _fail_on_panic = FailOnPanic(&shared, "ordo-executor");
    let diverge_at: Option<u64> = ordo_engine::FAULT_INJECTION
        .then(|| std::env::var(DIVERGE_AT_SEQ_VARIABLE).ok())
        .flatten()
        .and_then(|seq| seq.parse().ok());
    let mut divergence = DivergenceCheck::default();
    // A cluster member's snapshot schedule (a single node's is inside
    // `shared.local`). It starts as if the last snapshot were empty: the
    // first comes after `snapshot_log_bytes_min` of log.
    let mut cluster_snapshots =
        crate::snapshots::SnapshotSchedule::new(shared.config.snapshot_log_bytes_min, 0);
    // Reads waiting for a position this executor has not reached: looked
    // at again after every batch or install, and when a wait ends.
    let mut parked = ParkedReads::default();
    loop {
        // The published position is the executor's own between batches
        // (set after every batch and install, on this thread).
        let position = shared.status.lock().engine.position;
        parked.release(&mut executor, position);
        let wait_ends = parked
            .next_deadline()
            .map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        let delivery = crossbeam_channel::select! {
            recv(deliveries) -> delivery => match delivery {
                Ok(delivery) => delivery,
                Err(_) => return,
            },
            recv(reads) -> read => {
                if let Ok(read) = read {
                    parked.take(&mut executor, position, read);
                }
                continue;
            }
            recv(wait_ends) -> _ => continue,
        };
        let committed = match delivery {
            Delivery::Batch(committed) => committed,
            Delivery::Install(image) => {
                match restore_executor(&shared.config, &shared.compiler, &image) {
                    Ok(restored) => {
                        // Operators (and tests) want to know a node
                        // skipped log replay.
                        tracing::info!(
                            "installed the leader's snapshot: continuing at sequence {}",
                            image.next_seq
                        );
                        executor = restored;
                    }
                    Err(err) => {
                        shared.fail(format!("cannot install the leader's snapshot: {err}"));
                        return;
                    }
                }
                divergence = DivergenceCheck::default();
                shared.publish_procedures(&executor);
                shared.status.lock().engine = executor.status();
                shared.status_changed.notify_all();
                continue;
            }
        };
        let Committed {
            mut batch,
            log_index,
            token,
            raft,
            checkpoints,
            encoded_bytes,
        } = committed;
        if let (Some(point), Some(handle)) = (&raft, &shared.raft) {
            take_snapshot_if_due(
                &mut cluster_snapshots,
                &shared.config,
                &executor,
                handle,
                point,
                &batch,
            );
            cluster_snapshots.grew(encoded_bytes);
        }
        if let Some(local) = &shared.local
            && local.before_batch(
                &executor,
                &shared.config.engine,
                &batch,
                log_index,
                encoded_bytes,
                last_timestamp_ms,
            )
            && let Some(journal) = &mut chain_journal
        {
            journal.rotate(batch.first_seq);
        }
        last_timestamp_ms = batch.timestamp_ms;
        if let Some(handle) = &shared.raft
            && let Err(reason) = divergence.check(
                handle.node_id(),
                &handle.members(),
                &checkpoints,
                batch.first_seq,
                raft.as_ref().map_or(0, |point| point.index),
            )
        {
            tracing::error!("{reason}");
            shared.fail(reason.clone());
            if let Some(callers) = token {
                callers.fail(&shared, || NodeError::Failed(reason.clone()));
            }
            return;
        }
        if let Some(seq) = diverge_at
            && (batch.first_seq..=batch.last_seq()).contains(&seq)
            && let Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } =
                &mut batch.entries[(seq - batch.first_seq) as usize]
        {
            invocation.args = vec![0xff; 3];
        }
        // Only this node's own proposals were counted against
        // `inflight_max` (a replica's batches came from another node).
        let counted = token.is_some();
        let opened_at = token.as_ref().map(|callers| callers.opened_at);
        let replies = token.map_or_else(
            || vec![None; batch.entries.len()],
            |callers| callers.replies,
        );
        let has_deploy = batch.entries.iter().any(|entry| {
            matches!(
                entry,
                Entry::Deploy(_) | Entry::DeployResetting { .. } | Entry::Undeploy(_)
            )
        });
        let executing = Instant::now();
        let mut answered = 0;
        let mut chunk = Vec::with_capacity(ANSWER_CHUNK.min(batch.entries.len()));
        let mut replies = replies.into_iter();
        // Answers all but the last chunk as they are ready. The last one
        // waits for the status below, so that a caller that is the last
        // of its batch sees the batch in `Node::status` once answered.
        // A panic on any engine thread while the batch runs (a partition
        // thread's is re-raised here) stops the node, naming the thread and
        // the transaction, and fails the callers still waiting.
        let executed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            executor.execute_each(&batch, |tx| {
                if let Outcome::Deployed(module) = &tx.outcome {
                    tracing::info!(
                        module = %module.name,
                        sha256 = %module.sha256,
                        seq = tx.seq,
                        procedures = module.procedures.len(),
                        "deployed"
                    );
                }
                chunk.push(tx);
                if chunk.len() == ANSWER_CHUNK && answered + ANSWER_CHUNK < batch.entries.len() {
                    let entries = &batch.entries[answered..answered + chunk.len()];
                    answer_chunk(&shared, entries, &mut replies, &mut chunk, opened_at);
                    answered += ANSWER_CHUNK;
                }
            })
        }));
        if let Err(payload) = executed {
            let reason = engine_panic_reason(&*payload, executor.interrupted_at());
            tracing::error!("{reason}");
            shared.fail(reason.clone());
            if counted {
                let waiting = batch.entries[answered..]
                    .iter()
                    .map(|entry| entry.client().1)
                    .collect();
                Callers {
                    request_ids: waiting,
                    replies: replies.collect(),
                    opened_at: opened_at.unwrap_or_else(Instant::now),
                }
                .fail(&shared, || NodeError::Failed(reason.clone()));
            }
            return;
        }
        shared
            .metrics
            .batch_executed(executing.elapsed().as_nanos() as u64, batch.last_seq());
        if has_deploy {
            shared.publish_procedures(&executor);
        }
        let engine_status = executor.status();
        if let Some(journal) = &mut chain_journal {
            journal.record(crate::chain_journal::ChainRecord {
                first_seq: batch.first_seq,
                last_seq: batch.last_seq(),
                chain_hash: engine_status.chain_hash,
            });
        }
        {
            let mut status = shared.status.lock();
            status.engine = engine_status;
            status.log_records = log_index;
            if let Some(point) = &raft {
                status.raft_applied = point.index;
            }
        }
        if let Some(handle) = &shared.raft
            && ordo_sequencer::raft::is_check_point(batch.first_seq, batch.last_seq())
        {
            let hashes = (engine_status.state_hash, engine_status.chain_hash);
            divergence.record(batch.last_seq(), hashes);
            handle.executed(batch.last_seq(), hashes.0, hashes.1);
        }
        shared.status_changed.notify_all();
        answer_chunk(
            &shared,
            &batch.entries[answered..],
            &mut replies,
            &mut chunk,
            opened_at,
        );
    }
}

/// A cluster member snapshots just before a batch that starts an instance
/// epoch, when `schedule` says the journal has grown enough since the last
/// one: every node resets its wasm instances there anyway, so an engine
/// restored from it (with fresh instances) runs the rest of the log
/// exactly as one that never stopped. Snapshots are this member's own
/// business (members need not snapshot at the same points); what they
/// bound is the journal a restart replays and the entries held in memory
/// until openraft purges them.
fn take_snapshot_if_due(
    schedule: &mut crate::snapshots::SnapshotSchedule,
    config: &NodeConfig,
    executor: &Executor,
    handle: &RaftHandle,
    point: &ordo_sequencer::raft::RaftPoint,
    batch: &Batch,
) {
    if !schedule.due(&config.engine, batch) {
        return;
    }
    let image = SnapshotImage {
        meta: snapshot_meta(point, batch.first_seq),
        next_seq: batch.first_seq,
        last_timestamp_ms: point.before_timestamp_ms,
        engine: executor.snapshot(),
    };
    schedule.taken(image.engine.len() as u64);
    handle.save_snapshot(image);
    // Here rather than after the save (on openraft's runtime, in the
    // sequencer): the free memory is the executor's churn since the last
    // snapshot; the image itself is a mapping of its own (`malloc.rs`).
    crate::malloc::release_free_memory();
}

/// openraft's description of a snapshot taken at `point`.
fn snapshot_meta(
    point: &ordo_sequencer::raft::RaftPoint,
    next_seq: u64,
) -> ordo_sequencer::raft::SnapshotMeta {
    ordo_sequencer::raft::SnapshotMeta {
        last_log_id: point.before_log_id,
        last_membership: point.before_membership.clone(),
        snapshot_id: format!(
            "{}-seq{next_seq}",
            point.before_log_id.map_or(0, |log_id| log_id.index)
        ),
    }
}

/// An executor with an empty state.
fn fresh_executor(config: &NodeConfig, compiler: &Arc<ModuleCompiler>) -> Executor {
    #[cfg_attr(not(test), allow(unused_mut))]
    let mut executor =
        Executor::with_partitions(compiler.clone(), config.engine.clone(), config.partitions);
    #[cfg(test)]
    if let Some(seq) = tests::injected_panic(&config.data_dir) {
        executor.inject_partition_panic(seq);
        // Small batches would run on thread 0 alone, never reaching the
        // partition thread that is to panic.
        executor.set_parallel_batch_entries_min(0);
    }
    executor
}

/// An executor with the state of a snapshot image.
fn restore_executor(
    config: &NodeConfig,
    compiler: &Arc<ModuleCompiler>,
    image: &SnapshotImage,
) -> Result<Executor, NodeError> {
    Executor::restore(
        compiler.clone(),
        config.engine.clone(),
        config.partitions,
        &image.engine,
    )
    .map_err(|err| {
        NodeError::Failed(format!(
            "snapshot at sequence {} does not restore: {err}",
            image.next_seq
        ))
    })
}

/// Answers `outcomes` (and empties it), the outcomes of `entries`, to the
/// next `entries.len()` of `replies`. `opened_at` is set for this node's
/// own proposals, which count against `inflight_max`, and is when their
/// batch opened.
fn answer_chunk(
    shared: &Shared,
    entries: &[Entry],
    replies: &mut impl Iterator<Item = Option<Reply>>,
    outcomes: &mut Vec<TxOutcome>,
    opened_at: Option<Instant>,
) {
    debug_assert_eq!(entries.len(), outcomes.len());
    shared
        .metrics
        .outcomes(entries, outcomes, opened_at.map(|opened| opened.elapsed()));
    shared.procedure_logs.record(entries, outcomes);
    // Uncount before answering, so a caller that has its answer is never
    // still counted against `inflight_max`.
    if opened_at.is_some() {
        shared.answered(outcomes.len());
    }
    answer_batch(
        entries
            .iter()
            .zip(outcomes.drain(..))
            .zip(replies.by_ref().take(entries.len())),
    );
}

/// Callers a batch's answers are grouped for before a caller's answers
/// may go out in more than one message. A caller's messages still leave
/// in execution order, so a larger number only saves sends.
const ANSWER_GROUPS_SEARCHED: usize = 64;

/// Sends a batch's answers, one message per caller (for up to
/// `ANSWER_GROUPS_SEARCHED` callers interleaved in the batch): a server
/// with many connections would otherwise send, and wake its writers,
/// once per answer.
fn answer_batch<'a>(answers: impl Iterator<Item = ((&'a Entry, TxOutcome), Option<Reply>)>) {
    let mut groups: Vec<(Reply, Vec<Completion>)> = Vec::new();
    for ((entry, outcome), reply) in answers {
        let Some(reply) = reply else { continue };
        let completion = Completion {
            request_id: entry.client().1,
            result: Ok(outcome),
        };
        let searched = groups.len().saturating_sub(ANSWER_GROUPS_SEARCHED);
        match groups[searched..]
            .iter_mut()
            .rev()
            .find(|(current, _)| current.same_channel(&reply))
        {
            Some((_, completions)) => completions.push(completion),
            None => groups.push((reply, vec![completion])),
        }
    }
    for (reply, completions) in groups {
        reply.send(completions);
    }
}

/// One request of a [`Session::submit_many_with_ack`] batch.
#[derive(Debug)]
pub struct RemoteCall {
    pub request_id: u64,
    pub acked_below: u64,
    pub procedure: String,
    pub encoding: ArgsEncoding,
    pub args: Vec<u8>,
    /// The fingerprint of the argument types the caller encoded, if it
    /// knows them (a typed call); `None` is the raw path.
    pub signature: Option<Signature>,
}

/// A client of an embedded node: a client id, its request ids, and the
/// channel its completions arrive on. Request ids make retries
/// exactly-once: resubmitting an id returns the original outcome.
pub struct Session {
    shared: Arc<Shared>,
    client_id: ClientId,
    next_request_id: AtomicU64,
    /// Request ids submitted whose completions were not yet received; the
    /// smallest bounds what the engine must remember (`acked_below`).
    outstanding: Mutex<std::collections::BTreeSet<u64>>,
    completions_tx: Reply,
    completions_rx: Receiver<Vec<Completion>>,
    /// Completions received from the channel but not yet handed out.
    ready: Mutex<std::collections::VecDeque<Completion>>,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Session {
        let counter = shared.next_client.fetch_add(1, Ordering::Relaxed);
        Session::with_id(shared, fresh_client_id(counter), 1)
    }

    fn with_id(shared: Arc<Shared>, client_id: ClientId, next_request_id: u64) -> Session {
        let (completions_tx, completions_rx) = crossbeam_channel::unbounded();
        let completions_tx = Reply::Blocking(completions_tx);
        Session {
            shared,
            client_id,
            next_request_id: AtomicU64::new(next_request_id),
            outstanding: Mutex::new(Default::default()),
            completions_tx,
            completions_rx,
            ready: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// Submits a call without waiting; its completion arrives through
    /// [`Session::recv`]. Returns the request id.
    pub fn submit(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<u64, NodeError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.submit_with_id(request_id, procedure, encoding, args)?;
        Ok(request_id)
    }

    /// Submits with an explicit request id: a retry of `request_id` runs
    /// at most once and returns the original outcome.
    pub fn submit_with_id(
        &self,
        request_id: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.submit_to(
            request_id,
            procedure,
            encoding,
            args,
            None,
            self.completions_tx.clone(),
        )
    }

    /// Submits with an explicit request id and watermark, for a remote
    /// client that tracks its own outstanding requests (across
    /// reconnects). The completion arrives through [`Session::recv`].
    pub fn submit_with_ack(
        &self,
        request_id: u64,
        acked_below: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.check_call(procedure, encoding, &args, None)?;
        let entry = Entry::Invoke(Invocation {
            client_id: self.client_id,
            request_id,
            acked_below: acked_below.min(request_id),
            procedure: procedure.to_string(),
            encoding,
            args,
        });
        self.shared
            .enqueue(entry, Some(self.completions_tx.clone()))
    }

    /// Submits many remote calls at once (one lock on the open batch, and
    /// consecutive log entries, so their answers travel together). Calls
    /// with arguments over the limit, or over the node's in-flight limit,
    /// are refused; returns their request ids and the reasons.
    pub fn submit_many_with_ack(&self, calls: Vec<RemoteCall>) -> Vec<(u64, NodeError)> {
        let mut refused = Vec::new();
        let mut entries = Vec::with_capacity(calls.len());
        for call in calls {
            if let Err(err) = self.check_call(
                &call.procedure,
                call.encoding,
                &call.args,
                call.signature.as_ref(),
            ) {
                refused.push((call.request_id, err));
                continue;
            }
            entries.push(Entry::call(
                Invocation {
                    client_id: self.client_id,
                    request_id: call.request_id,
                    acked_below: call.acked_below.min(call.request_id),
                    procedure: call.procedure,
                    encoding: call.encoding,
                    args: call.args,
                },
                call.signature,
            ));
        }
        if !entries.is_empty() {
            refused.extend(
                self.shared
                    .enqueue_all(entries.into_iter(), Some(&self.completions_tx)),
            );
        }
        refused
    }

    /// Submits a session entry (register or end) under `request_id`; its
    /// completion arrives like a call's (through [`Session::recv`], or the
    /// async channel of [`Node::async_session`]).
    pub fn submit_session_change(
        &self,
        request_id: u64,
        change: SessionChange,
    ) -> Result<(), NodeError> {
        self.shared.enqueue(
            self.session_entry(request_id, change),
            Some(self.completions_tx.clone()),
        )
    }

    /// Ends this registered session through the log: its stored results
    /// are freed, and later requests under its id are refused with
    /// `session_expired`.
    pub fn end(&self) -> Result<(), CallError> {
        self.change_session(SessionChange::End)
    }

    fn session_entry(&self, request_id: u64, change: SessionChange) -> Entry {
        Entry::Session(SessionEntry {
            client_id: self.client_id,
            request_id,
            change,
        })
    }

    /// Logs a session change and waits for it to take effect.
    fn change_session(&self, change: SessionChange) -> Result<(), CallError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.shared.enqueue(
            self.session_entry(request_id, change),
            Some(Reply::Blocking(reply)),
        )?;
        let tx = self.await_answer(&answer)?.result?;
        match tx.outcome {
            Outcome::Aborted(abort) => Err(CallError::Aborted { seq: tx.seq, abort }),
            _ => Ok(()),
        }
    }

    /// Every completion that is ready, waiting up to `timeout` for the
    /// first; empty if none came.
    pub fn recv_many_timeout(&self, timeout: Duration) -> Vec<Completion> {
        let mut ready = self.ready.lock();
        let mut received: Vec<Completion> = ready.drain(..).collect();
        if received.is_empty() {
            match self.completions_rx.recv_timeout(timeout) {
                Ok(completions) => received = completions,
                Err(_) => return received,
            }
        }
        while let Ok(more) = self.completions_rx.try_recv() {
            received.extend(more);
        }
        received
    }

    /// Refuses a call that could never run (a procedure name no module
    /// can export, the engine's own rule), whose arguments are over the
    /// limit, or whose arguments do not match the procedure's schema,
    /// before it costs a log entry.
    fn check_call(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: &[u8],
        signature: Option<&Signature>,
    ) -> Result<(), NodeError> {
        check_procedure_name(procedure)?;
        let max = self.shared.config.engine.args_bytes_max;
        if args.len() > max {
            return Err(NodeError::ArgsTooLarge {
                bytes: args.len(),
                max,
            });
        }
        self.shared
            .check_arguments(procedure, encoding, args, signature)
    }

    /// Waits for the single answer on a one-request reply channel.
    fn await_answer(&self, answer: &Receiver<Vec<Completion>>) -> Result<Completion, NodeError> {
        answer
            .recv()
            .ok()
            .and_then(|completions| completions.into_iter().next())
            .ok_or_else(|| self.shared.refusal())
    }

    fn submit_to(
        &self,
        request_id: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        signature: Option<Signature>,
        reply: Reply,
    ) -> Result<(), NodeError> {
        self.check_call(procedure, encoding, &args, signature.as_ref())?;
        let acked_below = {
            let mut outstanding = self.outstanding.lock();
            outstanding.insert(request_id);
            *outstanding.first().expect("just inserted")
        };
        let entry = Entry::call(
            Invocation {
                client_id: self.client_id,
                request_id,
                acked_below,
                procedure: procedure.to_string(),
                encoding,
                args,
            },
            signature,
        );
        self.shared.enqueue(entry, Some(reply)).inspect_err(|_| {
            self.outstanding.lock().remove(&request_id);
        })
    }

    /// The next completion of a [`Session::submit`]ted request, in
    /// execution order; waits for one. Call [`Session::acknowledge`] with
    /// each one received.
    pub fn recv(&self) -> Completion {
        self.recv_until(None)
            .expect("the session holds a sender, so its channel never closes")
    }

    /// Like [`Session::recv`], but gives up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Completion> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// A completion if one is ready, without waiting.
    pub fn try_recv(&self) -> Option<Completion> {
        let mut ready = self.ready.lock();
        if ready.is_empty()
            && let Ok(completions) = self.completions_rx.try_recv()
        {
            ready.extend(completions);
        }
        ready.pop_front()
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Option<Completion> {
        let mut ready = self.ready.lock();
        while ready.is_empty() {
            let received = match deadline {
                Some(deadline) => self.completions_rx.recv_deadline(deadline).ok()?,
                None => self.completions_rx.recv().ok()?,
            };
            ready.extend(received);
        }
        ready.pop_front()
    }

    /// Marks a request's answer as received so the engine may forget it.
    pub fn acknowledge(&self, request_id: u64) {
        self.outstanding.lock().remove(&request_id);
    }

    /// Calls and waits, returning the raw outcome.
    pub fn call_raw(
        &self,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<TxOutcome, NodeError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.call_raw_with_id(request_id, procedure, encoding, args)
    }

    /// Calls with an explicit request id and waits (a retry is exactly
    /// this with a request id used before).
    pub fn call_raw_with_id(
        &self,
        request_id: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
    ) -> Result<TxOutcome, NodeError> {
        self.call_checked_with_id(request_id, procedure, encoding, args, None)
    }

    /// [`Session::call_raw_with_id`] for arguments encoded from types with
    /// this signature fingerprint: refused unless it is the procedure's.
    pub fn call_checked_with_id(
        &self,
        request_id: u64,
        procedure: &str,
        encoding: ArgsEncoding,
        args: Vec<u8>,
        signature: Option<Signature>,
    ) -> Result<TxOutcome, NodeError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.submit_to(
            request_id,
            procedure,
            encoding,
            args,
            signature,
            Reply::Blocking(reply),
        )?;
        let completion = self.await_answer(&answer);
        self.acknowledge(request_id);
        completion?.result
    }

    /// Calls `procedure` with postcard-encoded `args` and decodes its
    /// result as `R`. An abort is an error carrying the procedure's reason.
    /// The call carries the fingerprint of `A`'s schema: arguments of
    /// other types than the procedure's parameters are refused before
    /// they are logged (a tuple `(A, B)` is two parameters, `()` none, any
    /// other type one).
    pub fn call<A: Serialize + Schema, R: DeserializeOwned>(
        &self,
        procedure: &str,
        args: &A,
    ) -> Result<Called<R>, CallError> {
        let signature = ordo_client::schema_cache::args_signature::<A>();
        let args = postcard::to_stdvec(args).map_err(CallError::Encode)?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let tx = self.call_checked_with_id(
            request_id,
            procedure,
            ArgsEncoding::Postcard,
            args,
            Some(signature),
        )?;
        decode_outcome(tx)
    }

    /// Deploys (or upgrades) a module and waits until it has taken effect.
    /// A module that fails validation is refused before it reaches the log.
    pub fn deploy(&self, name: &str, wasm: &[u8]) -> Result<ModuleSummary, CallError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.deploy_with_id(request_id, name, wasm)
            .map(|deployed| deployed.value)
    }

    /// [`Session::deploy`] with an explicit request id (a retried deploy
    /// returns the original outcome).
    pub fn deploy_with_id(
        &self,
        request_id: u64,
        name: &str,
        wasm: &[u8],
    ) -> Result<Called<ModuleSummary>, CallError> {
        self.deploy_resetting_with_id(request_id, name, wasm, Vec::new())
    }

    /// [`Session::deploy_with_id`] that also empties `reset_tables` if the
    /// deploy succeeds (development only: the server refuses it unless
    /// started with `--allow-table-reset`).
    pub fn deploy_resetting_with_id(
        &self,
        request_id: u64,
        name: &str,
        wasm: &[u8],
        reset_tables: Vec<String>,
    ) -> Result<Called<ModuleSummary>, CallError> {
        check_reset_tables(&reset_tables)?;
        // Checked here so a bad module never costs a log entry; the
        // executor checks again, and its answer is the one that counts.
        self.shared
            .compiler
            .compile(name, wasm)
            .map_err(NodeError::from)?;
        let deploy = Deploy {
            client_id: self.client_id,
            request_id,
            name: name.to_string(),
            wasm: wasm.to_vec(),
        };
        let entry = if reset_tables.is_empty() {
            Entry::Deploy(deploy)
        } else {
            Entry::DeployResetting {
                deploy,
                reset_tables,
            }
        };
        let tx = self.run_module_change(request_id, entry)?;
        match tx.outcome {
            Outcome::Deployed(summary) => Ok(Called {
                value: summary,
                seq: tx.seq,
            }),
            Outcome::Aborted(abort) => Err(CallError::Aborted { seq: tx.seq, abort }),
            Outcome::Committed { .. } => unreachable!("a deploy entry never commits a result"),
        }
    }
}

impl Session {
    /// Removes the module `name` through the log (`ordo undeploy`) under
    /// `request_id`; returns the sequence number it took effect at.
    pub fn undeploy_with_id(&self, request_id: u64, name: &str) -> Result<u64, CallError> {
        let entry = Entry::Undeploy(ordo_sequencer::entry::Undeploy {
            client_id: self.client_id,
            request_id,
            name: name.to_string(),
        });
        let tx = self.run_module_change(request_id, entry)?;
        match tx.outcome {
            Outcome::Committed { .. } => Ok(tx.seq),
            Outcome::Aborted(abort) => Err(CallError::Aborted { seq: tx.seq, abort }),
            Outcome::Deployed(_) => unreachable!("an undeploy entry never deploys"),
        }
    }

    /// Logs a deploy or undeploy under `request_id` and waits for its
    /// outcome.
    fn run_module_change(&self, request_id: u64, entry: Entry) -> Result<TxOutcome, CallError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.outstanding.lock().insert(request_id);
        let enqueued = self.shared.enqueue(entry, Some(Reply::Blocking(reply)));
        let completion = enqueued.and_then(|()| self.await_answer(&answer));
        self.acknowledge(request_id);
        Ok(completion?.result?)
    }
}

/// Most tables one deploy may reset.
pub const RESET_TABLES_MAX: usize = 64;

/// Table names a deploy may reset: 1 to 256 bytes without NUL (what
/// `Table::new` allows, bounded), at most [`RESET_TABLES_MAX`] of them.
fn check_reset_tables(tables: &[String]) -> Result<(), NodeError> {
    if tables.len() > RESET_TABLES_MAX {
        return Err(NodeError::BadResetTables(format!(
            "{} tables, over the limit of {RESET_TABLES_MAX}",
            tables.len()
        )));
    }
    for table in tables {
        if table.is_empty() || table.len() > 256 || table.as_bytes().contains(&0) {
            return Err(NodeError::BadResetTables(
                "a table name is 1 to 256 bytes without NUL".to_string(),
            ));
        }
    }
    Ok(())
}

/// Decodes a postcard result, or turns an abort into an error.
pub fn decode_outcome<R: DeserializeOwned>(tx: TxOutcome) -> Result<Called<R>, CallError> {
    match tx.outcome {
        Outcome::Committed { result } => Ok(Called {
            value: postcard::from_bytes(&result).map_err(CallError::Decode)?,
            seq: tx.seq,
        }),
        Outcome::Aborted(abort) => Err(CallError::Aborted { seq: tx.seq, abort }),
        Outcome::Deployed(_) => unreachable!("an invocation never deploys"),
    }
}

#[cfg(test)]
mod tests {
    use super::DivergenceCheck;
    use ordo_sequencer::raft::Checkpoint;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// Data directories whose executor is to panic a partition thread at a
    /// sequence number. Compiled only into these unit tests (with the
    /// engine's `fault-injection` feature, a dev-dependency): neither the
    /// release binary nor any environment variable can ask for it.
    static INJECTED_PANICS: parking_lot::Mutex<Vec<(PathBuf, u64)>> =
        parking_lot::Mutex::new(Vec::new());

    pub(super) fn injected_panic(data_dir: &Path) -> Option<u64> {
        INJECTED_PANICS
            .lock()
            .iter()
            .find(|(dir, _)| dir == data_dir)
            .map(|(_, seq)| *seq)
    }

    #[test]
    fn a_panicking_partition_thread_stops_the_node_naming_the_thread_and_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        // Account ids are partition keys (big-endian u64s, as the SDK
        // encodes them): pick one that partition thread 1 of 2 owns.
        let id = (0u64..)
            .find(|id| {
                let slot = ordo_engine::partition::slot_of_partition(&id.to_be_bytes());
                ordo_engine::partition::thread_of_slot(slot, 2) == 1
            })
            .unwrap();
        // Seq 1 deploys, 2 opens the accounts, 3 is the deposit.
        INJECTED_PANICS.lock().push((dir.path().to_path_buf(), 3));
        let node = super::Node::open(super::NodeConfig {
            partitions: 2,
            ..super::NodeConfig::new(dir.path())
        })
        .unwrap();
        let session = node.session();
        session.deploy("bank", crate::modules::BANK).unwrap();
        session
            .call::<_, ()>("open_many", &(0u64, id + 1, 100i64))
            .unwrap();
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let called = session.call::<_, ()>("deposit", &(id, 1i64));
            let failure = node.failure();
            // Shutting down must not hang on the dead thread either.
            drop(session);
            drop(node);
            let _ = sent.send((called.map(|called| called.seq), failure));
        });
        let (called, failure) = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the node hung instead of failing when a partition thread panicked");
        let failure = failure.expect("the node records why it stopped");
        assert!(
            failure.contains("engine thread `ordo-partition-1` panicked")
                && failure.contains("transaction at sequence 3"),
            "{failure}"
        );
        match called {
            Err(super::CallError::Node(super::NodeError::Failed(reason))) => {
                assert_eq!(reason, failure)
            }
            other => panic!("the waiting caller got {other:?}"),
        }
    }

    fn report(node: u64, last_seq: u64, hash: u128) -> Checkpoint {
        Checkpoint {
            node,
            last_seq,
            state_hash: hash,
            chain_hash: hash + 1,
        }
    }

    #[test]
    fn a_majority_against_this_node_stops_it_and_names_the_sequence() {
        let mut check = DivergenceCheck::default();
        check.record(10, (7, 8));
        // One other member disagrees: no majority yet (2 of 3 needed).
        assert!(
            check
                .check(3, &[1, 2, 3], &[report(1, 10, 100)], 11, 5)
                .is_ok()
        );
        // A second one agrees with the first: this node is the odd one out.
        let error = check
            .check(3, &[1, 2, 3], &[report(2, 10, 100)], 12, 6)
            .unwrap_err();
        assert!(
            error.contains("after the batch ending at sequence 10"),
            "{error}"
        );
        assert!(
            error.contains("batch at sequence 12, Raft index 6"),
            "{error}"
        );
        assert!(error.contains("nodes [1, 2]"), "{error}");
    }

    #[test]
    fn agreeing_with_the_majority_or_a_lone_dissenter_is_fine() {
        let mut check = DivergenceCheck::default();
        check.record(10, (7, 8));
        check.record(20, (9, 10));
        // Node 2 agrees at 10; node 1 dissents at 20 but is alone.
        assert!(
            check
                .check(3, &[1, 2, 3], &[report(2, 10, 7), report(1, 20, 55)], 21, 9)
                .is_ok()
        );
        assert!(
            check
                .check(3, &[1, 2, 3], &[report(2, 20, 9)], 22, 10)
                .is_ok()
        );
    }

    #[test]
    fn reports_for_check_points_this_node_never_had_are_ignored() {
        let mut check = DivergenceCheck::default();
        check.record(10, (7, 8));
        // Sequence 5 was before this node's history (a snapshot install).
        assert!(
            check
                .check(3, &[1, 2, 3], &[report(1, 5, 1), report(2, 5, 1)], 11, 4)
                .is_ok()
        );
    }

    #[test]
    fn check_points_in_the_name_of_non_members_or_repeated_count_for_nothing() {
        let mut check = DivergenceCheck::default();
        check.record(10, (7, 8));
        // Invented node ids (a forged report) and one member named many
        // times never make a majority against this node.
        let forged: Vec<Checkpoint> = (4..40)
            .map(|node| report(node, 10, 100))
            .chain((0..10).map(|_| report(1, 10, 100)))
            .collect();
        assert!(check.check(3, &[1, 2, 3], &forged, 11, 5).is_ok());
        // A real second member does.
        assert!(
            check
                .check(3, &[1, 2, 3], &[report(2, 10, 100)], 12, 6)
                .is_err()
        );
    }
}
