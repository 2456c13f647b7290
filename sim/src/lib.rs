//! `ordo-sim`: a deterministic simulation of ordo: a single node's
//! pipeline (this module) or a 3-member Raft cluster ([`cluster`]), per
//! seed ([`Topology`]).
//!
//! One seed is one run, on one thread, in simulated time, over a
//! simulated disk ([`SimStorage`]): seeded clients send bank transfers and
//! list appends (pipelined, retried with the same request ids, across
//! restarts), the node runs the real pieces of a production node (the
//! [`NodeCore`] admission, group commit and durability rule, the
//! [`FileLog`] and its recovery, the [`Executor`] with the real WASM
//! procedures and its exactly-once table, and the restart replay), and a
//! seeded fault schedule kills the process, cuts the power (losing or
//! tearing unsynced writes), fails fsyncs and tears writes. A safety
//! phase with faults is followed by a liveness phase without them.
//!
//! The checker ([`check`] and the checks inside the run) decides:
//! nothing acknowledged is lost or applied twice, every acknowledged
//! answer is the one a serial execution of the log in log order gives
//! (the [`model`]), the state and chain hashes after a restart equal the
//! ones the node had at the same position, stale reads are exact at their
//! position and never go backwards for a client, money is conserved, and
//! every request is answered within a bound once faults stop.
//!
//! The same seed gives the same run: [`SeedReport::trace_hash`] hashes
//! every event, and a test runs seeds twice and compares. What is not
//! simulated yet (snapshots, membership changes, the TCP transport, the
//! production node's threads) is listed in docs/ARCHITECTURE.md.

pub mod cluster;
pub mod model;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ordo::node_core::{Action, CoreConfig, InjectedBug, NodeCore, Refusal, replay_log};
use ordo_engine::{EngineConfig, Executor, ModuleCompiler, PartitionSchedule, TxOutcome};
use ordo_sequencer::entry::{ArgsEncoding, Batch, ClientId, Deploy, Entry, Invocation};
use ordo_sequencer::raft::{Retention, SnapshotImage, SnapshotStore};
use ordo_sequencer::sequencer::Sequencer;
use ordo_sequencer::storage::sim::SimStorage;
use ordo_sequencer::{FileLog, FileLogConfig, LogError};
use xxhash_rust::xxh3::Xxh3;

use model::{Answer, Model, Op, ReadKey};

/// Where the simulated node keeps its log on the simulated disk.
const LOG_DIR: &str = "/data/log";
/// Where it keeps its snapshots.
const SNAPSHOTS_DIR: &str = "/data/snapshots";
/// The simulated engine's instance epoch: snapshots are taken just before
/// a batch that opens one, so a short epoch gives a seed several.
const SIM_INSTANCE_EPOCH: u64 = 64;
/// The chance, per mille, that a batch opening an instance epoch is
/// snapshotted (production snapshots once enough log has grown).
const SNAPSHOT_PER_MILLE: u64 = 500;

/// The simulated node's engine config.
fn sim_engine_config() -> EngineConfig {
    EngineConfig {
        instance_epoch: SIM_INSTANCE_EPOCH,
        ..EngineConfig::default()
    }
}

/// Steps of the safety phase (faults on).
pub const FAULT_STEPS: u64 = 1_500;
/// The longest the liveness phase may take, in simulated time, before
/// every outstanding request must have its answer.
pub const LIVENESS_BOUND_NS: u64 = 2_000_000_000;
/// A client resends a request unanswered for this long (simulated).
const RETRY_AFTER_NS: u64 = 20_000_000;
/// Starts that fail with an I/O error (an injected fault) before one
/// counts as a finding.
const START_ATTEMPTS_MAX: u64 = 8;
/// The most partition threads a simulated node's executor runs.
const PARTITIONS_MAX: u64 = 3;
/// The starting balance of every account.
const ACCOUNT_BALANCE: i64 = 1_000;

/// A small deterministic generator (SplitMix64): the simulator's only
/// source of choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6f72_646f_5f73_696d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }

    pub fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }
}

/// What a seed simulates: one node (the file log and the node's core),
/// or a 3-member Raft cluster ([`cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

impl Topology {
    /// The topology of `seed` when none is forced: a third of the seeds
    /// are clusters. Drawn from its own stream, so a single-node seed runs
    /// exactly as it did before clusters existed.
    pub fn of_seed(seed: u64) -> Topology {
        if Rng::new(seed ^ 0x746f_706f_6c6f_6779).chance(333) {
            Topology::Cluster
        } else {
            Topology::Single
        }
    }

    /// The topology a planted bug needs, if it needs one.
    pub fn of_bug(bug: InjectedBug) -> Topology {
        match bug {
            InjectedBug::CountVoteTwice => Topology::Cluster,
            _ => Topology::Single,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topology::Single => "single node",
            Topology::Cluster => "3-member cluster",
        }
    }
}

/// What one seed ran and found.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub bug: Option<InjectedBug>,
    pub options: Options,
    pub topology: Topology,
    /// Hash of every event of the run: equal for two runs of one seed.
    pub trace_hash: u64,
    pub steps: u64,
    pub simulated_ms: u64,
    pub clients: usize,
    pub acknowledged: u64,
    pub stale_reads: u64,
    pub process_kills: u64,
    pub power_losses: u64,
    pub failed_syncs: u64,
    pub torn_writes: u64,
    /// Starts refused by an I/O error (and tried again).
    pub failed_starts: u64,
    /// Snapshots saved (single node).
    pub snapshots: u64,
    /// Starts from a snapshot rather than from the log's first record.
    pub snapshot_restores: u64,
    /// Log prefixes cut because snapshots cover them.
    pub log_prefix_cuts: u64,
    pub last_seq: u64,
    /// Cluster seeds: messages the network lost (partitions included)
    /// and duplicated, partitions made, and members whose Raft stopped on
    /// a storage failure (and were restarted).
    pub dropped_messages: u64,
    pub duplicated_messages: u64,
    pub partitions: u64,
    pub failed_members: u64,
    /// Cluster seeds: the highest Raft term a member reached (each
    /// election, won or not, starts one).
    pub max_term: u64,
    /// The first violation, if the checker found one.
    pub failure: Option<String>,
}

impl SeedReport {
    /// A report of nothing yet.
    pub fn empty(seed: u64, options: Options, topology: Topology) -> SeedReport {
        SeedReport {
            seed,
            bug: options.bug,
            options,
            topology,
            trace_hash: 0,
            steps: 0,
            simulated_ms: 0,
            clients: 0,
            acknowledged: 0,
            stale_reads: 0,
            process_kills: 0,
            power_losses: 0,
            failed_syncs: 0,
            torn_writes: 0,
            failed_starts: 0,
            snapshots: 0,
            snapshot_restores: 0,
            log_prefix_cuts: 0,
            last_seq: 0,
            dropped_messages: 0,
            duplicated_messages: 0,
            partitions: 0,
            failed_members: 0,
            max_term: 0,
            failure: None,
        }
    }

    /// The command that runs this seed again.
    pub fn replay_command(&self) -> String {
        let mut command = format!("cargo run --release -p ordo-sim -- --seed {}", self.seed);
        if let Some(bug) = self.bug {
            command.push_str(" --inject ");
            command.push_str(bug.name());
        }
        match self.options.topology {
            Some(Topology::Single) => command.push_str(" --single"),
            Some(Topology::Cluster) => command.push_str(" --cluster"),
            None => {}
        }
        if self.options.process_restart_after_failed_fsync {
            command.push_str(" --process-restart-after-failed-fsync");
        }
        command
    }
}

/// A compiler for every seed of a process: compiled modules are cached by
/// hash, so each example module compiles once.
pub fn shared_compiler() -> Arc<ModuleCompiler> {
    Executor::compiler(&EngineConfig::default())
}

/// How a seed's world is shaped (chosen from the seed).
#[derive(Clone, Debug)]
struct Shape {
    clients: usize,
    pipeline_max: usize,
    ops_per_client: usize,
    accounts: u64,
    lists: u64,
    bank_per_mille: u64,
    stale_read_per_mille: u64,
    core: CoreConfig,
    segment_bytes_max: u64,
    /// Per-mille chances, per step of the safety phase.
    kill_per_mille: u64,
    power_loss_per_mille: u64,
    failed_sync_per_mille: u64,
    torn_write_per_mille: u64,
    dropped_answer_per_mille: u64,
    /// After a failed fsync, restart only the process (a supervisor), not
    /// the machine.
    process_restart_after_failed_fsync: bool,
}

impl Shape {
    fn pick(rng: &mut Rng) -> Shape {
        let faulty = rng.chance(850);
        let rate = |rng: &mut Rng, max: u64| if faulty { rng.below(max + 1) } else { 0 };
        Shape {
            clients: rng.range(1, 4) as usize,
            pipeline_max: rng.range(1, 8) as usize,
            ops_per_client: rng.range(20, 120) as usize,
            accounts: rng.range(2, 12),
            lists: rng.range(1, 6),
            bank_per_mille: rng.below(1_001),
            stale_read_per_mille: rng.below(200),
            core: CoreConfig {
                inflight_max: rng.range(4, 64) as usize,
                batch_entries_max: rng.range(1, 32) as usize,
                batch_bytes_max: 64 << 10,
                batch_window_ns: if rng.chance(500) {
                    0
                } else {
                    rng.below(2_000_000)
                },
            },
            segment_bytes_max: rng.range(2 << 10, 64 << 10),
            kill_per_mille: rate(rng, 6),
            power_loss_per_mille: rate(rng, 6),
            failed_sync_per_mille: rate(rng, 4),
            torn_write_per_mille: rate(rng, 4),
            dropped_answer_per_mille: rate(rng, 30),
            process_restart_after_failed_fsync: rng.chance(500),
        }
    }
}

/// A request a client is waiting on.
#[derive(Clone, Debug)]
struct Outstanding {
    op: Op,
    sent_at_ns: u64,
}

struct Client {
    id: ClientId,
    next_request_id: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    /// Every answer this client took, by request id: position and answer.
    acked: BTreeMap<u64, (u64, Answer)>,
    ops_left: usize,
    pipeline_max: usize,
    /// The highest position this client has seen (answers and reads).
    observed: u64,
}

impl Client {
    fn acked_below(&self) -> u64 {
        self.outstanding
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_request_id)
    }
}

/// A stale read, to be checked against the model at its position.
#[derive(Clone, Debug)]
pub(crate) struct StaleRead {
    pub(crate) client: usize,
    pub(crate) position: u64,
    pub(crate) key: ReadKey,
    pub(crate) answer: Answer,
}

/// The answer to a request, on its way back to the client.
type Token = (usize, u64);

struct SimNode {
    log: FileLog,
    executor: Executor,
    core: NodeCore<Token>,
    /// The node's snapshots, on the simulated disk (production's store).
    snapshots: SnapshotStore,
    /// The timestamp of the last batch executed (a snapshot's image
    /// carries it).
    last_timestamp_ms: u64,
}

struct World {
    bug: Option<InjectedBug>,
    options: Options,
    rng: Rng,
    shape: Shape,
    now_ns: u64,
    storage: SimStorage,
    compiler: Arc<ModuleCompiler>,
    node: Option<SimNode>,
    clients: Vec<Client>,
    /// Answers in flight to each client, in the order they were sent.
    network: Vec<VecDeque<(u64, TxOutcome)>>,
    /// The live node's hashes after each batch: last seq -> (state, chain).
    history: BTreeMap<u64, (u128, u128)>,
    /// Log records the node removed because snapshots cover them, read
    /// from the durable log just before: the final check needs the whole
    /// history. Record index -> batch.
    archived: BTreeMap<u64, Batch>,
    /// The disk's fsync count when a failed fsync was last armed.
    syncs_when_armed: Option<u64>,
    reads: Vec<StaleRead>,
    trace: Xxh3,
    report: SeedReport,
}

/// How a run deviates from the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// A bug to plant.
    pub bug: Option<InjectedBug>,
    /// After every failed fsync, restart only the process (as a supervisor
    /// would), not the machine; without it each seed picks one or the
    /// other. See docs/ARCHITECTURE.md, "What the simulator found".
    pub process_restart_after_failed_fsync: bool,
    /// The topology to run; `None`: the seed's ([`Topology::of_seed`]),
    /// or the planted bug's ([`Topology::of_bug`]).
    pub topology: Option<Topology>,
}

/// Runs seed `seed`, with `bug` planted if given.
pub fn run_seed(seed: u64, bug: Option<InjectedBug>, compiler: &Arc<ModuleCompiler>) -> SeedReport {
    run_seed_with(
        seed,
        Options {
            bug,
            ..Options::default()
        },
        compiler,
    )
}

/// Runs seed `seed` with `options`.
pub fn run_seed_with(seed: u64, options: Options, compiler: &Arc<ModuleCompiler>) -> SeedReport {
    let topology = options
        .topology
        .or(options.bug.map(Topology::of_bug))
        .unwrap_or_else(|| Topology::of_seed(seed));
    match topology {
        Topology::Single => run_single(seed, options, compiler),
        Topology::Cluster => cluster::run(seed, options, compiler),
    }
}

/// Runs single-node seed `seed`.
fn run_single(seed: u64, options: Options, compiler: &Arc<ModuleCompiler>) -> SeedReport {
    let bug = options.bug;
    let mut rng = Rng::new(seed);
    let shape = Shape::pick(&mut rng);
    let storage = SimStorage::new(rng.next_u64());
    let mut clients = Vec::new();
    // Client 0 sets up (deploys, opens accounts) one request at a time;
    // the others start once it is done.
    for index in 0..=shape.clients {
        clients.push(Client {
            id: (u128::from(seed) << 32) | (index as u128 + 1),
            next_request_id: 1,
            outstanding: BTreeMap::new(),
            acked: BTreeMap::new(),
            ops_left: if index == 0 { 3 } else { shape.ops_per_client },
            pipeline_max: if index == 0 { 1 } else { shape.pipeline_max },
            observed: 0,
        });
    }
    let mut report = SeedReport::empty(seed, options, Topology::Single);
    report.clients = shape.clients;
    let mut world = World {
        bug,
        options,
        rng,
        network: (0..clients.len()).map(|_| VecDeque::new()).collect(),
        clients,
        shape,
        now_ns: 1_000_000_000,
        storage,
        compiler: compiler.clone(),
        node: None,
        history: BTreeMap::new(),
        archived: BTreeMap::new(),
        syncs_when_armed: None,
        reads: Vec::new(),
        trace: Xxh3::new(),
        report,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(violation)) => Some(violation),
        Err(payload) => Some(format!(
            "the simulated node panicked: {}",
            ordo_engine::panic_message(&*payload)
        )),
    };
    world.report.failure = failure;
    world.report.trace_hash = world.trace.digest();
    world.report.simulated_ms = world.now_ns / 1_000_000;
    world.report
}

type Checked = Result<(), String>;

/// Adds one event to the run's trace.
pub(crate) fn event(trace: &mut Xxh3, tag: u8, values: &[u64]) {
    trace.update(&[tag]);
    for value in values {
        trace.update(&value.to_le_bytes());
    }
}

impl World {
    fn run(&mut self) -> Checked {
        self.restart("first start")?;
        while self.report.steps < FAULT_STEPS {
            self.step(true)?;
        }
        // Liveness: no more faults; every request must be answered within
        // the bound.
        let faults_stopped_ns = self.now_ns;
        while !self.all_done() {
            if self.now_ns - faults_stopped_ns > LIVENESS_BOUND_NS {
                let waiting: usize = self.clients.iter().map(|c| c.outstanding.len()).sum();
                let unsent: usize = self.clients.iter().map(|c| c.ops_left).sum();
                return Err(format!(
                    "liveness: {waiting} requests unanswered and {unsent} not sent {} ms of simulated time after the faults stopped",
                    LIVENESS_BOUND_NS / 1_000_000
                ));
            }
            self.step(false)?;
        }
        // The end: power loss, restart, and the whole-log check.
        self.power_loss();
        self.restart("final restart")?;
        self.check_log()
    }

    fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|client| client.ops_left == 0 && client.outstanding.is_empty())
            && self.network.iter().all(VecDeque::is_empty)
    }

    fn step(&mut self, faults: bool) -> Checked {
        self.report.steps += 1;
        if faults && self.fault()? {
            return Ok(());
        }
        let choice = self.rng.below(100);
        event(&mut self.trace, 1, &[self.report.steps, choice]);
        match choice {
            0..35 => self.client_sends(),
            35..40 => self.client_retries(),
            40..65 => self.node_acts()?,
            65..85 => self.deliver_answer(faults)?,
            85..90 => self.stale_read()?,
            _ => {
                let advance = match self.node.as_ref().and_then(|n| n.core.next_deadline_ns()) {
                    Some(deadline) if deadline > self.now_ns && self.rng.chance(500) => {
                        deadline - self.now_ns
                    }
                    _ => self.rng.below(500_000) + 1,
                };
                self.now_ns += advance;
                event(&mut self.trace, 2, &[self.now_ns]);
            }
        }
        Ok(())
    }

    /// Maybe injects a fault; true if one happened this step.
    fn fault(&mut self) -> Result<bool, String> {
        let shape = &self.shape;
        let (kill, power, sync, torn) = (
            shape.kill_per_mille,
            shape.power_loss_per_mille,
            shape.failed_sync_per_mille,
            shape.torn_write_per_mille,
        );
        if self.rng.chance(kill) {
            self.report.process_kills += 1;
            event(&mut self.trace, 10, &[]);
            self.node = None;
            self.restart("process kill")?;
            return Ok(true);
        }
        if self.rng.chance(power) {
            self.report.power_losses += 1;
            event(&mut self.trace, 11, &[]);
            self.power_loss();
            self.restart("power loss")?;
            return Ok(true);
        }
        // At most one failed fsync pending on the disk: a new one only
        // once the disk has synced since the last was armed, as in the
        // cluster simulator. Two queued failures land on consecutive
        // fsyncs, the log's and its FAILED-SYNC marker's, and the marker
        // is best effort: seed 8862 of 10,000 lost a record that way after
        // a process-only restart (docs/ARCHITECTURE.md, "What the
        // simulator found").
        if self.rng.chance(sync) {
            let syncs = self.storage.stats().file_syncs;
            if self.syncs_when_armed.is_none_or(|armed| syncs > armed) {
                self.syncs_when_armed = Some(syncs);
                self.report.failed_syncs += 1;
                event(&mut self.trace, 12, &[]);
                self.storage.fail_next_sync(None);
                return Ok(true);
            }
        }
        if self.rng.chance(torn) {
            self.report.torn_writes += 1;
            let keep = self.rng.below(64) as usize;
            event(&mut self.trace, 13, &[keep as u64]);
            self.storage.tear_next_write(None, keep);
            return Ok(true);
        }
        Ok(false)
    }

    fn power_loss(&mut self) {
        self.node = None;
        self.storage.crash_randomly();
    }

    /// Opens the node on what the disk holds: the log's recovery, the
    /// newest intact snapshot (checked to fit the log) or a fresh
    /// executor, and the replay of the records after it, as the
    /// production node's `open` does.
    /// Every answer in flight is lost; clients resend what they miss.
    fn restart(&mut self, why: &str) -> Checked {
        self.node = None;
        for queue in &mut self.network {
            queue.clear();
        }
        let mut config = FileLogConfig::new(LOG_DIR);
        config.segment_bytes_max = self.shape.segment_bytes_max;
        // An I/O error while opening (an injected fsync failure during
        // recovery) makes the start fail, as it should; the operator, or
        // a supervisor, starts it again after the machine recovers.
        // Anything else (the log refusing what is on disk) is a finding.
        let mut attempts = 0;
        let (log, snapshots) = loop {
            let opened =
                FileLog::open_with(config.clone(), self.storage.shared()).and_then(|log| {
                    SnapshotStore::open_on(
                        self.storage.shared(),
                        SNAPSHOTS_DIR.into(),
                        Retention::default(),
                    )
                    .map(|snapshots| (log, snapshots))
                    .map_err(|source| LogError::Io {
                        action: "open the snapshot store in",
                        path: SNAPSHOTS_DIR.into(),
                        source,
                    })
                });
            match opened {
                Ok(opened) => break opened,
                Err(err @ LogError::Io { .. }) if attempts < START_ATTEMPTS_MAX => {
                    attempts += 1;
                    event(&mut self.trace, 21, &[attempts]);
                    self.report.failed_starts += 1;
                    drop(err);
                    self.storage.crash_randomly();
                }
                Err(err) => return Err(format!("after a {why}, the log does not open: {err}")),
            }
        };
        // Each start picks its number of partition threads and how their
        // work interleaves (the engine's seeded schedule: no OS threads,
        // the seed picks which partition's queue moves next and when):
        // outcomes and hashes must depend on neither, also across a
        // restart with another number.
        let partitions = self.rng.range(1, PARTITIONS_MAX) as usize;
        let schedule_seed = self.rng.next_u64();
        event(&mut self.trace, 22, &[partitions as u64, schedule_seed]);
        let schedule = PartitionSchedule::Seeded(schedule_seed);
        let latest = snapshots
            .latest()
            .map_err(|err| format!("after a {why}, the snapshots do not read: {err}"))?;
        ordo::snapshots::check_fits(latest.as_ref(), &log, SNAPSHOTS_DIR.as_ref())
            .map_err(|err| format!("after a {why}: {err}"))?;
        let (mut executor, sequencer, after_index) = match &latest {
            Some(image) => {
                event(
                    &mut self.trace,
                    23,
                    &[image.next_seq, image.covered_index()],
                );
                self.report.snapshot_restores += 1;
                let executor = Executor::restore_scheduled(
                    self.compiler.clone(),
                    sim_engine_config(),
                    partitions,
                    schedule,
                    &image.engine,
                )
                .map_err(|err| format!("after a {why}, the snapshot does not restore: {err}"))?;
                let sequencer = Sequencer::resume(image.next_seq, image.last_timestamp_ms);
                (executor, sequencer, image.covered_index())
            }
            None => {
                let executor = Executor::with_partition_schedule(
                    self.compiler.clone(),
                    sim_engine_config(),
                    partitions,
                    schedule,
                );
                (executor, Sequencer::new(), 0)
            }
        };
        if self.bug == Some(InjectedBug::SkipExactlyOnce) {
            executor.inject_skipped_exactly_once_check();
        }
        let sequencer = replay_log(&log, &mut executor, after_index, sequencer, |_, _| {})
            .map_err(|err| format!("after a {why}, the log does not replay: {err}"))?;
        let status = executor.status();
        event(
            &mut self.trace,
            20,
            &[status.position, status.chain_hash as u64],
        );
        // Nothing acknowledged may be missing after a restart.
        for client in &self.clients {
            if let Some((request_id, (seq, _))) = client
                .acked
                .iter()
                .find(|(_, (seq, _))| *seq > status.position)
            {
                return Err(format!(
                    "acknowledged transaction lost: client {:#x} request {request_id} was answered at seq {seq}, but after a {why} the node holds only {} entries",
                    client.id, status.position
                ));
            }
        }
        // The restarted node must be the node it was at that position.
        if let Some(&(state, chain)) = self.history.get(&status.position)
            && (state, chain) != (status.state_hash, status.chain_hash)
        {
            return Err(format!(
                "after a {why}, the node at seq {} has state hash {:032x} and chain hash {:032x}, but it had {state:032x} and {chain:032x} there before",
                status.position, status.state_hash, status.chain_hash
            ));
        }
        // What the node executed past its durable log never happened.
        self.history.split_off(&(status.position + 1));
        if status.position > 0 {
            self.history
                .insert(status.position, (status.state_hash, status.chain_hash));
        }
        let sequencer_last_timestamp_ms = sequencer.last_timestamp_ms();
        let core = NodeCore::new(self.shape.core.clone(), sequencer, self.bug);
        self.node = Some(SimNode {
            log,
            executor,
            core,
            snapshots,
            last_timestamp_ms: sequencer_last_timestamp_ms,
        });
        // Clients reconnect and resend everything unanswered.
        for index in 0..self.clients.len() {
            let waiting: Vec<u64> = self.clients[index].outstanding.keys().copied().collect();
            for request_id in waiting {
                self.send(index, request_id);
            }
        }
        Ok(())
    }

    fn entry(&self, client: usize, request_id: u64, op: &Op) -> Entry {
        let client_id = self.clients[client].id;
        match op {
            Op::Deploy { name } => Entry::Deploy(Deploy {
                client_id,
                request_id,
                name: (*name).to_string(),
                wasm: match *name {
                    "bank" => ordo::modules::BANK.to_vec(),
                    _ => ordo::modules::LISTS.to_vec(),
                },
            }),
            op => Entry::Invoke(Invocation {
                client_id,
                request_id,
                acked_below: self.clients[client].acked_below(),
                procedure: op.procedure().to_string(),
                encoding: ArgsEncoding::Postcard,
                args: op.args(),
            }),
        }
    }

    /// (Re)sends an outstanding request to the node, if it is up.
    fn send(&mut self, client: usize, request_id: u64) {
        let Some(outstanding) = self.clients[client].outstanding.get_mut(&request_id) else {
            return;
        };
        outstanding.sent_at_ns = self.now_ns;
        let op = outstanding.op.clone();
        let entry = self.entry(client, request_id, &op);
        let Some(node) = &mut self.node else { return };
        let refused = match node.core.submit(entry, (client, request_id), self.now_ns) {
            Ok(()) => 0,
            Err(Refusal::Overloaded { .. }) => 1,
            Err(Refusal::Failed(_)) => 2,
            Err(Refusal::Stopped) => 3,
        };
        event(&mut self.trace, 3, &[client as u64, request_id, refused]);
    }

    fn next_op(&mut self, client: usize) -> Op {
        if client == 0 {
            return match self.clients[0].next_request_id {
                1 => Op::Deploy { name: "bank" },
                2 => Op::Deploy { name: "lists" },
                _ => Op::OpenAccounts {
                    count: self.shape.accounts,
                    balance: ACCOUNT_BALANCE,
                },
            };
        }
        if self.rng.chance(self.shape.bank_per_mille) {
            let from = self.rng.below(self.shape.accounts);
            let to = (from + 1 + self.rng.below(self.shape.accounts - 1)) % self.shape.accounts;
            Op::Transfer {
                from,
                to,
                amount: self.rng.range(1, 400) as i64,
            }
        } else {
            Op::Append {
                key: self.rng.below(self.shape.lists),
                value: self.rng.next_u64() >> 16,
            }
        }
    }

    fn setup_done(&self) -> bool {
        self.clients[0].ops_left == 0 && self.clients[0].outstanding.is_empty()
    }

    fn client_sends(&mut self) {
        let index = self.rng.below(self.clients.len() as u64) as usize;
        if index != 0 && !self.setup_done() {
            return;
        }
        let client = &self.clients[index];
        if client.ops_left == 0 || client.outstanding.len() >= client.pipeline_max {
            return;
        }
        let op = self.next_op(index);
        let client = &mut self.clients[index];
        client.ops_left -= 1;
        let request_id = client.next_request_id;
        client.next_request_id += 1;
        client.outstanding.insert(
            request_id,
            Outstanding {
                op,
                sent_at_ns: self.now_ns,
            },
        );
        self.send(index, request_id);
    }

    /// A client resends its oldest request unanswered for too long (a
    /// lost answer, an overload refusal, or a node that is still busy).
    fn client_retries(&mut self) {
        let index = self.rng.below(self.clients.len() as u64) as usize;
        let stale = self.clients[index]
            .outstanding
            .iter()
            .find(|(_, waiting)| self.now_ns - waiting.sent_at_ns >= RETRY_AFTER_NS)
            .map(|(request_id, _)| *request_id);
        if let Some(request_id) = stale {
            self.send(index, request_id);
        }
    }

    /// The node carries out its next action, if it has one.
    fn node_acts(&mut self) -> Checked {
        let Some(node) = &mut self.node else {
            return Ok(());
        };
        // The simulated wall clock is the simulated monotonic one.
        let Some(action) = node.core.poll(self.now_ns, self.now_ns / 1_000_000) else {
            return Ok(());
        };
        let released = match action {
            Action::Append { batch } => {
                let encoded = batch.encode();
                event(&mut self.trace, 4, &[batch.first_seq, encoded.len() as u64]);
                match node.log.append(&encoded) {
                    Ok(index) => node.core.appended(index, batch),
                    Err(err) => return self.log_failed(format!("append: {err}")),
                }
            }
            Action::Sync => {
                event(&mut self.trace, 5, &[]);
                match node.log.sync() {
                    Ok(()) => node.core.synced(),
                    Err(err) => return self.log_failed(format!("sync: {err}")),
                }
            }
            Action::Execute { .. } | Action::Propose { .. } => {
                unreachable!("a local log's core asks to append or sync")
            }
        };
        for action in released {
            if let Action::Execute {
                batch,
                tokens,
                log_index,
                ..
            } = action
            {
                self.snapshot_if_due(&batch, log_index)?;
                self.execute(&batch, tokens);
            }
        }
        Ok(())
    }

    /// Before a batch that opens an instance epoch, the node may snapshot
    /// (as production's `LocalSnapshots::before_batch` does, here on the
    /// seed's say) into production's `SnapshotStore` on the simulated
    /// disk, and then drop the log records production would
    /// (`records_to_remove`). A failed save is only logged in
    /// production, so here too: the node goes on without it.
    fn snapshot_if_due(&mut self, batch: &Batch, log_index: u64) -> Checked {
        let node = self.node.as_mut().expect("only a running node executes");
        if batch.first_seq == 1
            || !ordo_engine::opens_instance_epoch(
                SIM_INSTANCE_EPOCH,
                batch.first_seq,
                batch.last_seq(),
            )
            || !self.rng.chance(SNAPSHOT_PER_MILLE)
        {
            return Ok(());
        }
        let image = SnapshotImage::for_file_log(
            log_index - 1,
            batch.first_seq,
            node.last_timestamp_ms,
            node.executor.snapshot(),
        );
        let saved = node.snapshots.save(&image);
        event(
            &mut self.trace,
            24,
            &[batch.first_seq, log_index, saved.is_ok() as u64],
        );
        if saved.is_err() {
            return Ok(());
        }
        self.report.snapshots += 1;
        let Some(through) = ordo::snapshots::records_to_remove(&node.snapshots, u64::MAX)? else {
            return Ok(());
        };
        // Keep what is about to go, from the durable log itself, for the
        // final check of the whole history.
        let first = node.log.first_index();
        if through >= first {
            let records = node
                .log
                .read_from(first)
                .map_err(|err| format!("the log does not read before a prefix cut: {err}"))?;
            for record in records {
                let (index, payload) =
                    record.map_err(|err| format!("the log before a prefix cut: {err}"))?;
                if index > through {
                    break;
                }
                let batch = Batch::decode(&payload)
                    .map_err(|err| format!("log record {index} does not decode: {err}"))?;
                self.archived.insert(index, batch);
            }
        }
        match node.log.truncate_prefix(through) {
            Ok(_) => {
                event(&mut self.trace, 25, &[through]);
                self.report.log_prefix_cuts += 1;
                Ok(())
            }
            Err(err) => self.log_failed(format!("cut the log's prefix: {err}")),
        }
    }

    fn execute(&mut self, batch: &Batch, tokens: Vec<Token>) {
        let node = self.node.as_mut().expect("only a running node executes");
        node.last_timestamp_ms = batch.timestamp_ms;
        let outcomes = node.executor.execute(batch);
        let status = node.executor.status();
        self.history
            .insert(status.position, (status.state_hash, status.chain_hash));
        event(
            &mut self.trace,
            6,
            &[batch.first_seq, status.chain_hash as u64],
        );
        node.core.answered(tokens.len());
        for ((client, request_id), outcome) in tokens.into_iter().zip(outcomes) {
            self.network[client].push_back((request_id, outcome));
        }
    }

    /// The log failed: the node stops (fail-stop, as production does) and
    /// is restarted, after a power loss or (as a supervisor would) as a
    /// process only. The simulated disk drops what a failed fsync was to
    /// persist only at a crash, so a process restart reads it from the
    /// "page cache": the file log must not build on it.
    fn log_failed(&mut self, reason: String) -> Checked {
        event(&mut self.trace, 7, &[]);
        if let Some(node) = &mut self.node {
            node.core.fail(reason.clone());
        }
        if !self.options.process_restart_after_failed_fsync
            && !self.shape.process_restart_after_failed_fsync
        {
            self.power_loss();
        }
        self.node = None;
        self.restart(&format!("log failure ({reason})"))
    }

    fn deliver_answer(&mut self, faults: bool) -> Checked {
        let index = self.rng.below(self.clients.len() as u64) as usize;
        let Some((request_id, outcome)) = self.network[index].pop_front() else {
            return Ok(());
        };
        if faults && self.rng.chance(self.shape.dropped_answer_per_mille) {
            event(&mut self.trace, 8, &[index as u64, request_id]);
            return Ok(());
        }
        let answer = Answer::of(&outcome.outcome);
        event(&mut self.trace, 9, &[index as u64, request_id, outcome.seq]);
        let client = &mut self.clients[index];
        if let Some((seq, first)) = client.acked.get(&request_id) {
            if (*seq, first) != (outcome.seq, &answer) {
                return Err(format!(
                    "a retry got another answer: client {:#x} request {request_id} was answered {first:?} at seq {seq}, then {answer:?} at seq {}",
                    client.id, outcome.seq
                ));
            }
            return Ok(());
        }
        if client.outstanding.remove(&request_id).is_none() {
            return Ok(());
        }
        client.observed = client.observed.max(outcome.seq);
        client.acked.insert(request_id, (outcome.seq, answer));
        self.report.acknowledged += 1;
        Ok(())
    }

    /// A stale read on the node, at the position the node has reached,
    /// asking for at least the client's highest observed position (the
    /// production node refuses or waits when it is behind).
    fn stale_read(&mut self) -> Checked {
        if !self.setup_done() || !self.rng.chance(self.shape.stale_read_per_mille * 5) {
            return Ok(());
        }
        let index = 1 + self.rng.below(self.clients.len() as u64 - 1) as usize;
        let key = if self.rng.chance(500) {
            ReadKey::Balance(self.rng.below(self.shape.accounts))
        } else {
            ReadKey::List(self.rng.below(self.shape.lists))
        };
        let Some(node) = &mut self.node else {
            return Ok(());
        };
        let min_position = self.clients[index].observed;
        if node.executor.status().position < min_position {
            event(&mut self.trace, 14, &[index as u64]);
            return Ok(());
        }
        let read = node.executor.read(
            key.procedure(),
            ArgsEncoding::Postcard,
            &key.args(),
            self.now_ns / 1_000_000,
        );
        let answer = Answer::of(&read.outcome);
        event(&mut self.trace, 15, &[index as u64, read.position]);
        if read.position < min_position {
            return Err(format!(
                "stale read went backwards: client {index} had seen seq {min_position}, then read at {}",
                read.position
            ));
        }
        self.clients[index].observed = read.position;
        self.reads.push(StaleRead {
            client: index,
            position: read.position,
            key,
            answer,
        });
        self.report.stale_reads += 1;
        Ok(())
    }

    /// Reads the whole durable log and checks every answer and read
    /// against the model's serial execution of it, and the final state.
    fn check_log(&mut self) -> Checked {
        let node = self
            .node
            .as_mut()
            .expect("the final restart opened the node");
        let first = node.log.first_index();
        if self
            .archived
            .keys()
            .next_back()
            .map_or(0, |last| last + 1)
            .max(1)
            < first
        {
            return Err(format!(
                "the final log starts at record {first}, but only records up to {:?} were kept before prefix cuts",
                self.archived.keys().next_back()
            ));
        }
        let records = node
            .log
            .read_from(first)
            .map_err(|err| format!("the final log does not read: {err}"))?;
        let archived = std::mem::take(&mut self.archived);
        let batches = archived
            .into_iter()
            .filter(|(index, _)| *index < first)
            .map(|(_, batch)| Ok(batch))
            .chain(records.map(|record| {
                let (index, payload) = record.map_err(|err| format!("the final log: {err}"))?;
                Batch::decode(&payload)
                    .map_err(|err| format!("log record {index} does not decode: {err}"))
            }));
        let acked = self.clients.iter().map(|client| (client.id, &client.acked));
        let (model, position) =
            check_history("durable", batches, std::mem::take(&mut self.reads), acked)?;
        check_state(
            &model,
            &mut node.executor,
            self.shape.accounts,
            self.shape.lists,
            "",
        )?;
        self.report.last_seq = position;
        event(&mut self.trace, 30, &[position]);
        Ok(())
    }
}

/// Runs `batches`, a log in order, through the model (a serial execution)
/// and checks it against what the clients saw: the log has no hole, every
/// stale read equals the model's state at its position, every
/// acknowledged answer is in the log with the model's answer at the same
/// seq, and money is conserved. `log` names the log in messages
/// ("durable", "committed"). Returns the model and the log's last seq.
pub(crate) fn check_history<'a>(
    log: &str,
    batches: impl IntoIterator<Item = Result<Batch, String>>,
    mut reads: Vec<StaleRead>,
    acked: impl IntoIterator<Item = (ClientId, &'a BTreeMap<u64, (u64, Answer)>)>,
) -> Result<(Model, u64), String> {
    let mut model = Model::default();
    reads.sort_by_key(|read| (read.position, read.client));
    let mut reads = reads.into_iter().peekable();
    // Expected answers by (client id, request id).
    let mut expected: BTreeMap<(ClientId, u64), (u64, Answer)> = BTreeMap::new();
    let mut position = 0;
    for batch in batches {
        let batch = batch?;
        if batch.first_seq != position + 1 {
            return Err(format!(
                "the {log} log has a hole: seq {} follows {position}",
                batch.first_seq
            ));
        }
        for (offset, entry) in batch.entries.iter().enumerate() {
            let seq = batch.first_seq + offset as u64;
            while let Some(read) = reads.next_if(|read| read.position < seq) {
                check_read(&model, &read)?;
            }
            let Some(op) = Op::from_entry(entry) else {
                return Err(format!("seq {seq} holds an entry no client sent"));
            };
            let answer = model.apply(seq, entry.client(), &op);
            expected.entry(entry.client()).or_insert(answer);
            position = seq;
        }
    }
    for read in reads {
        if read.position > position {
            return Err(format!(
                "a stale read at seq {} saw state past the {log} log's end ({position})",
                read.position
            ));
        }
        check_read(&model, &read)?;
    }
    for (client, acked) in acked {
        for (request_id, (seq, answer)) in acked {
            let Some((want_seq, want)) = expected.get(&(client, *request_id)) else {
                return Err(format!(
                    "acknowledged transaction lost: client {client:#x} request {request_id} (answered at seq {seq}) is not in the {log} log"
                ));
            };
            if (want_seq, want) != (seq, answer) {
                return Err(format!(
                    "client {client:#x} request {request_id} was answered {answer:?} at seq {seq}, but a serial execution of the log answers {want:?} at seq {want_seq}"
                ));
            }
        }
    }
    let total: i64 = model.accounts.values().sum();
    let opened = ACCOUNT_BALANCE * model.accounts.len() as i64;
    if total != opened {
        return Err(format!(
            "the model lost money: {total} after opening {opened}"
        ));
    }
    Ok((model, position))
}

/// Checks that `executor` holds the model's state: every account's
/// balance and every list. `whose` follows the item in messages (e.g.
/// " on member 2").
pub(crate) fn check_state(
    model: &Model,
    executor: &mut Executor,
    accounts: u64,
    lists: u64,
    whose: &str,
) -> Checked {
    let keys = (0..accounts)
        .map(ReadKey::Balance)
        .chain((0..lists).map(ReadKey::List));
    for key in keys {
        let read = executor.read(key.procedure(), ArgsEncoding::Postcard, &key.args(), 0);
        let answer = Answer::of(&read.outcome);
        let want = model.read(&key);
        if answer != want {
            return Err(format!(
                "{key:?}{whose} holds {answer:?} after the run, but a serial execution of the log gives {want:?}"
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_read(model: &Model, read: &StaleRead) -> Checked {
    let want = model.read(&read.key);
    if want != read.answer {
        return Err(format!(
            "stale read of {:?} at seq {} by client {} answered {:?}, but the state at that seq holds {want:?}",
            read.key, read.position, read.client, read.answer
        ));
    }
    Ok(())
}
