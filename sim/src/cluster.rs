//! The cluster simulator: a 3-member Raft cluster (openraft, ordo's
//! journal, state machine and proposal path) on one thread, on simulated
//! time, over simulated disks and an in-memory network with faults.
//!
//! Each member is what a production member runs below the node's
//! threads: a [`RaftLog`] (started with `RaftLog::start_simulated`) whose
//! journal is ordo's `LogStore` over its own [`SimStorage`], whose state
//! machine numbers committed batches and delivers them, and an
//! [`Executor`] with the real WASM procedures that executes every
//! delivered batch. The simulator plays the node around it: a leader
//! takes client requests into a batch and proposes it, answers the
//! clients of its own proposals once they are executed, and followers
//! refuse writes with the leader's id; any member answers stale reads.
//!
//! Everything runs on one tokio current-thread runtime with paused time
//! (tokio's `test-util`): when every task is waiting, the clock jumps to
//! the next timer. openraft's election randomness comes from the seed
//! (`runtime::seed_thread_rng`), the network's from the seed, and the
//! driver's from the seed; a test runs seeds twice and compares traces.
//!
//! Faults in the safety phase: a member killed (every task of it aborted
//! at once) and restarted later, with or without a power loss on its
//! disk (lost and torn unsynced writes); failed fsyncs and torn writes on
//! a member's disk (a failed journal fsync stops Raft on that member,
//! which is then restarted); dropped, delayed (and so reordered) and
//! duplicated messages; a slow member (slow links and a slow disk); and
//! partitions (one member cut off, or the links of one pair) that heal.
//! Then a liveness phase without faults, in which every request must be
//! answered within [`LIVENESS_BOUND_NS`] and every member must reach the
//! same position; then every member loses power at once, and the cluster
//! must come back to that position within the same bound.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ordo::node_core::InjectedBug;
use ordo_engine::{EngineConfig, Executor, ModuleCompiler, TxOutcome};
use ordo_sequencer::entry::{ArgsEncoding, Batch, ClientId, Deploy, Entry, Invocation};
use ordo_sequencer::log::{Delivery, Log};
use ordo_sequencer::raft::memory::{Fabric, Leg, Links, RpcKind};
use ordo_sequencer::raft::runtime::{MemberTasks, seed_thread_rng};
use ordo_sequencer::raft::{ClusterConfig, ClusterSecret, MemberAddrs, RaftLog};
use ordo_sequencer::storage::sim::SimStorage;
use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

use crate::model::{Answer, Op, ReadKey};
use crate::{
    ACCOUNT_BALANCE, Options, Rng, SeedReport, StaleRead, Topology, check_history, check_state,
    event,
};

/// The members' node ids.
const MEMBERS: [u64; 3] = [1, 2, 3];
/// Steps of the safety phase (faults on).
pub const FAULT_STEPS: u64 = 1_200;
/// Once faults stop, every request must be answered, and every member
/// must have executed all of them, within this much simulated time.
pub const LIVENESS_BOUND_NS: u64 = 20_000_000_000;
/// A client resends a request unanswered for this long (simulated).
const RETRY_AFTER_NS: u64 = 400_000_000;
/// Starts that fail (an injected fault) before one counts as a finding.
const START_ATTEMPTS_MAX: u64 = 8;
/// The Raft timing of the simulated members (production's defaults).
const HEARTBEAT: Duration = ordo_sequencer::raft::HEARTBEAT_DEFAULT;
const ELECTION_TIMEOUT_MIN: Duration = ordo_sequencer::raft::ELECTION_TIMEOUT_MIN_DEFAULT;

/// The answer to a batch's requests: (client, request id) per entry.
type Token = Vec<(usize, u64)>;

/// How a seed's cluster world is shaped (chosen from the seed).
#[derive(Clone, Debug)]
struct Shape {
    clients: usize,
    pipeline_max: usize,
    ops_per_client: usize,
    accounts: u64,
    lists: u64,
    bank_per_mille: u64,
    /// Of the requests, logged (linearizable) reads.
    logged_read_per_mille: u64,
    stale_read_per_mille: u64,
    batch_entries_max: usize,
    proposals_in_flight: usize,
    /// Per-mille chances, per step of the safety phase.
    kill_per_mille: u64,
    power_loss_per_mille: u64,
    failed_sync_per_mille: u64,
    torn_write_per_mille: u64,
    partition_per_mille: u64,
    reconnect_per_mille: u64,
    /// Per-mille chances, per message, while faults are on.
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    /// The longest a message takes (microseconds).
    delay_max_us: u64,
    /// A member with slow links and a slow disk, if any.
    slow_member: Option<u64>,
}

impl Shape {
    fn pick(rng: &mut Rng) -> Shape {
        let faulty = rng.chance(850);
        let rate = |rng: &mut Rng, max: u64| if faulty { rng.below(max + 1) } else { 0 };
        Shape {
            clients: rng.range(1, 4) as usize,
            pipeline_max: rng.range(1, 6) as usize,
            ops_per_client: rng.range(15, 60) as usize,
            accounts: rng.range(2, 10),
            lists: rng.range(1, 5),
            bank_per_mille: rng.below(1_001),
            logged_read_per_mille: rng.below(200),
            stale_read_per_mille: rng.below(200),
            batch_entries_max: rng.range(1, 16) as usize,
            proposals_in_flight: rng.range(1, 4) as usize,
            kill_per_mille: rate(rng, 5),
            power_loss_per_mille: rng.below(1_001),
            failed_sync_per_mille: rate(rng, 3),
            torn_write_per_mille: rate(rng, 3),
            partition_per_mille: rate(rng, 4),
            reconnect_per_mille: rng.below(30),
            drop_per_mille: rate(rng, 60),
            duplicate_per_mille: rate(rng, 40),
            delay_max_us: rng.range(100, 20_000),
            slow_member: (faulty && rng.chance(250)).then(|| MEMBERS[rng.below(3) as usize]),
        }
    }
}

/// The network's state: the seed's say over every message.
struct Net {
    rng: Rng,
    trace: Xxh3,
    faults: bool,
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    delay_max_us: u64,
    slow_member: Option<u64>,
    /// Links cut by a partition, both directions listed.
    cut: BTreeSet<(u64, u64)>,
    /// Members that are down: their disks answer nothing either.
    dropped: u64,
    duplicated: u64,
}

struct SimLinks(Arc<Mutex<Net>>);

impl Links for SimLinks {
    fn leg(&self, from: u64, to: u64, kind: RpcKind) -> Leg {
        let mut guard = self.0.lock();
        let net = &mut *guard;
        let cut = net.cut.contains(&(from, to));
        let faults = net.faults;
        let dropped = cut || (faults && net.rng.chance(net.drop_per_mille));
        let duplicate = !dropped && faults && net.rng.chance(net.duplicate_per_mille);
        let mut delay_us = 20 + net.rng.below(net.delay_max_us.max(1));
        if faults
            && net
                .slow_member
                .is_some_and(|slow| slow == from || slow == to)
        {
            delay_us += 20_000 + net.rng.below(80_000);
        }
        net.dropped += u64::from(dropped);
        net.duplicated += u64::from(duplicate);
        let kind = kind as u64;
        event(
            &mut net.trace,
            40,
            &[
                from,
                to,
                kind,
                u64::from(dropped),
                delay_us,
                u64::from(duplicate),
            ],
        );
        Leg {
            dropped,
            delay: Duration::from_micros(delay_us),
            duplicate,
        }
    }
}

#[derive(Clone, Debug)]
struct Outstanding {
    op: Op,
    sent_at_ns: u64,
}

struct Client {
    id: ClientId,
    next_request_id: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    acked: BTreeMap<u64, (u64, Answer)>,
    ops_left: usize,
    pipeline_max: usize,
    /// The highest position this client has seen.
    observed: u64,
    /// The member it is connected to.
    member: u64,
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

/// A member's running incarnation.
struct Running {
    log: RaftLog<Token>,
    tasks: MemberTasks,
    deliveries: crossbeam_channel::Receiver<Delivery<Token>>,
    executor: Executor,
    /// The leader's open batch: entries and who to answer.
    open: Vec<(Entry, (usize, u64))>,
}

struct Member {
    id: u64,
    disk: SimStorage,
    dir: std::path::PathBuf,
    running: Option<Running>,
    boot: u64,
    /// Down until this simulated instant.
    down_until_ns: u64,
    start_attempts: u64,
    /// The disk's file syncs when a failed fsync was last armed on it.
    syncs_when_armed: Option<u64>,
}

struct World {
    rng: Rng,
    shape: Shape,
    started: tokio::time::Instant,
    compiler: Arc<ModuleCompiler>,
    fabric: Arc<Fabric>,
    net: Arc<Mutex<Net>>,
    members: Vec<Member>,
    clients: Vec<Client>,
    /// Answers on their way to each client: (arrival, request id, outcome).
    answers: Vec<VecDeque<(u64, u64, TxOutcome)>>,
    /// Every member's hashes after each executed batch: last seq ->
    /// (state, chain, member that first reached it).
    history: BTreeMap<u64, (u128, u128, u64)>,
    /// The committed batches, by first seq (as the first member to
    /// execute each saw it).
    batches: BTreeMap<u64, Batch>,
    reads: Vec<StaleRead>,
    /// Partitions in force: (healing at, links cut).
    partitions: Vec<(u64, Vec<(u64, u64)>)>,
    trace: Xxh3,
    report: SeedReport,
    _dirs: tempfile::TempDir,
}

type Checked = Result<(), String>;

/// Runs cluster seed `seed` (see the module's docs).
pub fn run(seed: u64, options: Options, compiler: &Arc<ModuleCompiler>) -> SeedReport {
    let mut rng = Rng::new(seed ^ 0x0063_6c75_7374_6572);
    let shape = Shape::pick(&mut rng);
    let mut report = SeedReport::empty(seed, options, Topology::Cluster);
    report.clients = shape.clients;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report.failure = Some(format!("cannot build the simulator's runtime: {err}"));
            return report;
        }
    };
    seed_thread_rng(Some(rng.next_u64()));
    let dirs = match tempfile::tempdir() {
        Ok(dirs) => dirs,
        Err(err) => {
            report.failure = Some(format!("cannot make a directory for snapshots: {err}"));
            return report;
        }
    };
    let net = Arc::new(Mutex::new(Net {
        rng: Rng::new(rng.next_u64()),
        trace: Xxh3::new(),
        faults: true,
        drop_per_mille: shape.drop_per_mille,
        duplicate_per_mille: shape.duplicate_per_mille,
        delay_max_us: shape.delay_max_us,
        slow_member: shape.slow_member,
        cut: BTreeSet::new(),
        dropped: 0,
        duplicated: 0,
    }));
    let fabric = Fabric::new(Box::new(SimLinks(net.clone())));
    if options.bug == Some(InjectedBug::CountVoteTwice) {
        fabric.plant_count_vote_twice();
    }
    let members = MEMBERS
        .iter()
        .map(|&id| Member {
            id,
            disk: SimStorage::new(rng.next_u64()),
            dir: dirs.path().join(format!("member-{id}")),
            running: None,
            boot: 0,
            down_until_ns: 0,
            start_attempts: 0,
            syncs_when_armed: None,
        })
        .collect();
    let mut clients = Vec::new();
    for index in 0..=shape.clients {
        clients.push(Client {
            id: (u128::from(seed) << 32) | (index as u128 + 1),
            next_request_id: 1,
            outstanding: BTreeMap::new(),
            acked: BTreeMap::new(),
            ops_left: if index == 0 { 3 } else { shape.ops_per_client },
            pipeline_max: if index == 0 { 1 } else { shape.pipeline_max },
            observed: 0,
            member: MEMBERS[rng.below(3) as usize],
        });
    }
    let report = runtime.block_on(async {
        let mut world = World {
            rng,
            answers: (0..clients.len()).map(|_| VecDeque::new()).collect(),
            clients,
            shape,
            started: tokio::time::Instant::now(),
            compiler: compiler.clone(),
            fabric,
            net,
            members,
            history: BTreeMap::new(),
            batches: BTreeMap::new(),
            reads: Vec::new(),
            partitions: Vec::new(),
            trace: Xxh3::new(),
            report,
            _dirs: dirs,
        };
        let result = {
            let run = std::panic::AssertUnwindSafe(world.run());
            futures_catch_unwind(run).await
        };
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(violation)) => Some(violation),
            Err(message) => Some(format!("the simulated cluster panicked: {message}")),
        };
        world.report.max_term = world
            .members
            .iter()
            .filter_map(|member| member.running.as_ref())
            .map(|running| running.log.handle().status().term)
            .max()
            .unwrap_or(0);
        // Stop every member before the runtime goes.
        for index in 0..world.members.len() {
            world.kill(index);
        }
        let net = world.net.lock();
        world.report.dropped_messages = net.dropped;
        world.report.duplicated_messages = net.duplicated;
        let net_trace = net.trace.digest();
        drop(net);
        world.report.failure = failure;
        event(&mut world.trace, 50, &[net_trace]);
        world.report.trace_hash = world.trace.digest();
        world.report.simulated_ms = world.now_ns() / 1_000_000;
        world.report
    });
    seed_thread_rng(None);
    report
}

/// Catches a panic of `future` (the simulated world), as a message.
async fn futures_catch_unwind<F: std::future::Future>(
    future: std::panic::AssertUnwindSafe<F>,
) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future.0);
    std::future::poll_fn(move |context| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(context)
        })) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => {
                std::task::Poll::Ready(Err(ordo_engine::panic_message(&*payload).to_string()))
            }
        }
    })
    .await
}

impl World {
    fn now_ns(&self) -> u64 {
        1_000_000_000 + self.started.elapsed().as_nanos() as u64
    }

    async fn run(&mut self) -> Checked {
        for index in 0..self.members.len() {
            self.start(index).await?;
        }
        while self.report.steps < FAULT_STEPS {
            self.step(true).await?;
        }
        // Liveness: faults stop, partitions heal, every member comes back.
        {
            let mut net = self.net.lock();
            net.faults = false;
            net.cut.clear();
        }
        self.partitions.clear();
        for member in &mut self.members {
            member.down_until_ns = 0;
        }
        let faults_stopped_ns = self.now_ns();
        loop {
            let done = self.all_done();
            if done && self.members_agree() {
                break;
            }
            if self.now_ns() - faults_stopped_ns > LIVENESS_BOUND_NS {
                let waiting: usize = self.clients.iter().map(|c| c.outstanding.len()).sum();
                let unsent: usize = self.clients.iter().map(|c| c.ops_left).sum();
                let positions: Vec<String> = self
                    .members
                    .iter()
                    .map(|member| match &member.running {
                        Some(running) => format!(
                            "{}: {} ({})",
                            member.id,
                            running.executor.status().position,
                            running.log.handle().status().role
                        ),
                        None => format!("{}: down", member.id),
                    })
                    .collect();
                return Err(format!(
                    "liveness: {waiting} requests unanswered and {unsent} not sent {} ms of simulated time after the faults stopped (members at {})",
                    LIVENESS_BOUND_NS / 1_000_000,
                    positions.join(", ")
                ));
            }
            self.step(false).await?;
        }
        self.whole_cluster_power_loss().await?;
        self.check_log()
    }

    /// The end: every member loses power at once and starts again; they
    /// must come back to the last committed position (nothing committed
    /// may be lost with all of them), re-executing the whole log, whose
    /// hashes are checked again at every batch.
    async fn whole_cluster_power_loss(&mut self) -> Checked {
        let last = self.history.keys().next_back().copied().unwrap_or(0);
        for index in 0..self.members.len() {
            self.kill(index);
            self.members[index].disk.crash_randomly();
        }
        event(&mut self.trace, 34, &[last]);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let restarted_ns = self.now_ns();
        while !self.members_agree() {
            if self.now_ns() - restarted_ns > LIVENESS_BOUND_NS {
                let positions: Vec<String> = self
                    .members
                    .iter()
                    .map(|member| match &member.running {
                        Some(running) => {
                            format!("{}: {}", member.id, running.executor.status().position)
                        }
                        None => format!("{}: down", member.id),
                    })
                    .collect();
                return Err(format!(
                    "after every member lost power, the cluster did not come back to seq {last} within {} ms of simulated time (members at {})",
                    LIVENESS_BOUND_NS / 1_000_000,
                    positions.join(", ")
                ));
            }
            self.step(false).await?;
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|client| client.ops_left == 0 && client.outstanding.is_empty())
            && self.answers.iter().all(VecDeque::is_empty)
    }

    /// Every member is up and has executed the last committed batch.
    fn members_agree(&self) -> bool {
        let last = self.history.keys().next_back().copied().unwrap_or(0);
        self.members.iter().all(|member| {
            member
                .running
                .as_ref()
                .is_some_and(|running| running.executor.status().position == last)
        })
    }

    async fn step(&mut self, faults: bool) -> Checked {
        self.report.steps += 1;
        self.maintain(faults).await?;
        if faults {
            self.fault().await?;
        }
        let choice = self.rng.below(100);
        event(&mut self.trace, 1, &[self.report.steps, choice]);
        match choice {
            0..40 => self.client_sends(),
            40..45 => self.client_retries(),
            45..55 => self.stale_read()?,
            _ => {}
        }
        self.propose();
        self.execute_deliveries()?;
        self.deliver_answers()?;
        let pause = 50 + self.rng.below(4_000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
        let now = self.now_ns();
        event(&mut self.trace, 2, &[now]);
        Ok(())
    }

    /// Restarts members whose time down is over, restarts members whose
    /// Raft stopped, and heals partitions whose time is up.
    async fn maintain(&mut self, faults: bool) -> Checked {
        let now = self.now_ns();
        for member in &self.members {
            if let Some(running) = &member.running
                && let Some(panic) = running.tasks.panics().first()
            {
                return Err(format!("a task of member {} panicked: {panic}", member.id));
            }
        }
        for index in 0..self.members.len() {
            let member = &self.members[index];
            let stopped = member
                .running
                .as_ref()
                .is_some_and(|running| running.log.handle().fatal().is_some());
            if stopped {
                // A storage failure stopped Raft here: the process exits
                // and its supervisor starts it again (after a power loss,
                // sometimes).
                event(&mut self.trace, 7, &[member.id]);
                self.report.failed_members += 1;
                self.kill(index);
                if self.rng.chance(500) {
                    self.members[index].disk.crash_randomly();
                }
                self.members[index].down_until_ns = now + 1_000_000;
            }
            let member = &self.members[index];
            if member.running.is_none() && member.down_until_ns <= now {
                self.start(index).await?;
            }
        }
        let mut healed = false;
        self.partitions.retain(|(heal_at, _)| {
            let keep = *heal_at > now && faults;
            healed |= !keep;
            keep
        });
        if healed {
            let mut net = self.net.lock();
            net.cut = self
                .partitions
                .iter()
                .flat_map(|(_, links)| links.iter().copied())
                .collect();
            event(&mut self.trace, 33, &[net.cut.len() as u64]);
        }
        Ok(())
    }

    async fn fault(&mut self) -> Checked {
        let now = self.now_ns();
        if self.rng.chance(self.shape.kill_per_mille) {
            let index = self.rng.below(3) as usize;
            if self.members[index].running.is_some() {
                let power = self.rng.chance(self.shape.power_loss_per_mille);
                event(&mut self.trace, 10, &[index as u64, u64::from(power)]);
                self.kill(index);
                if power {
                    self.report.power_losses += 1;
                    self.members[index].disk.crash_randomly();
                } else {
                    self.report.process_kills += 1;
                }
                self.members[index].down_until_ns = now + self.rng.range(1, 2_000) * 1_000_000;
            }
        }
        if self.rng.chance(self.shape.failed_sync_per_mille) {
            let index = self.rng.below(3) as usize;
            // At most one failed fsync pending per disk: a new one only
            // once the disk has synced since the last was armed. (Queued
            // on an idle member's disk, several failures used to land on
            // consecutive fsyncs: the journal's and every attempt to
            // write its FAILED-SYNC marker, which is best effort; see
            // docs/ARCHITECTURE.md, "What the cluster simulator found".)
            let member = &mut self.members[index];
            let syncs = member.disk.stats().file_syncs;
            if member.syncs_when_armed.is_none_or(|armed| syncs > armed) {
                member.syncs_when_armed = Some(syncs);
                self.report.failed_syncs += 1;
                event(&mut self.trace, 12, &[index as u64]);
                member.disk.fail_next_sync(None);
            }
        }
        if self.rng.chance(self.shape.torn_write_per_mille) {
            let index = self.rng.below(3) as usize;
            let keep = self.rng.below(64) as usize;
            self.report.torn_writes += 1;
            event(&mut self.trace, 13, &[index as u64, keep as u64]);
            self.members[index].disk.tear_next_write(None, keep);
        }
        if self.rng.chance(self.shape.partition_per_mille) {
            let a = MEMBERS[self.rng.below(3) as usize];
            let links: Vec<(u64, u64)> = if self.rng.chance(700) {
                // `a` is cut off from the others.
                MEMBERS
                    .iter()
                    .filter(|&&b| b != a)
                    .flat_map(|&b| [(a, b), (b, a)])
                    .collect()
            } else {
                // One link is cut (both ways): the others still meet.
                let b = MEMBERS
                    .iter()
                    .copied()
                    .filter(|&b| b != a)
                    .nth(self.rng.below(2) as usize)
                    .expect("two others");
                vec![(a, b), (b, a)]
            };
            let heal_at = now + self.rng.range(50, 3_000) * 1_000_000;
            event(&mut self.trace, 32, &[a, links.len() as u64, heal_at]);
            self.report.partitions += 1;
            self.net.lock().cut.extend(links.iter().copied());
            self.partitions.push((heal_at, links));
        }
        Ok(())
    }

    /// The member's process dies: every task of it stops at once.
    fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(running) = member.running.take() {
            running.tasks.kill();
            self.fabric.set_member(member.id, None);
            drop(running);
        }
    }

    /// Starts member `index` on what its disk holds: the journal's
    /// recovery, a fresh executor, and Raft, which delivers every
    /// committed batch again as it learns the commit point.
    async fn start(&mut self, index: usize) -> Checked {
        let now = self.now_ns();
        let member = &mut self.members[index];
        member.boot += 1;
        let mut members = BTreeMap::new();
        for id in MEMBERS {
            members.insert(
                id,
                MemberAddrs {
                    replication: format!("sim-member-{id}:7000"),
                    client: format!("sim-member-{id}:7001"),
                },
            );
        }
        let secret = ClusterSecret::new(b"the simulated cluster's secret".to_vec())
            .map_err(|err| err.to_string())?;
        let mut config = ClusterConfig::new(member.id, members, secret, member.dir.clone());
        config.proposals_in_flight = self.shape.proposals_in_flight;
        config.heartbeat = HEARTBEAT;
        config.election_timeout_min = ELECTION_TIMEOUT_MIN;
        let slow = self.shape.slow_member == Some(member.id);
        let net = self.net.clone();
        let latency: Arc<dyn Fn() -> Duration + Send + Sync> = Arc::new(move || {
            let mut net = net.lock();
            let faults = net.faults;
            let base = net.rng.below(300) + 20;
            let extra = if slow && faults {
                net.rng.below(30_000)
            } else {
                0
            };
            Duration::from_micros(base + extra)
        });
        let (deliveries_tx, deliveries) = crossbeam_channel::unbounded();
        let tasks = MemberTasks::new();
        let network = self.fabric.network(member.id);
        let started = tasks
            .scope(RaftLog::start_simulated(
                config,
                member.disk.shared(),
                latency,
                network,
                deliveries_tx,
                |_token: Token, _why| {},
                member.boot,
            ))
            .await;
        let log = match started {
            Ok((log, _snapshot)) => log,
            Err(err) => {
                tasks.kill();
                member.start_attempts += 1;
                self.report.failed_starts += 1;
                event(&mut self.trace, 21, &[member.id, member.start_attempts]);
                if member.start_attempts > START_ATTEMPTS_MAX {
                    return Err(format!(
                        "member {} does not start after {START_ATTEMPTS_MAX} attempts: {err}",
                        member.id
                    ));
                }
                // An injected fault during recovery: the machine restarts.
                member.disk.crash_randomly();
                member.down_until_ns = now + 10_000_000;
                return Ok(());
            }
        };
        member.start_attempts = 0;
        self.fabric
            .set_member(member.id, Some(log.handle().raft().clone()));
        let executor = Executor::with_partitions(self.compiler.clone(), EngineConfig::default(), 1);
        event(&mut self.trace, 20, &[member.id, member.boot]);
        member.running = Some(Running {
            log,
            tasks,
            deliveries,
            executor,
            open: Vec::new(),
        });
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

    /// (Re)sends an outstanding request to the client's member: its
    /// leader takes it into the open batch; anyone else refuses it, and
    /// the client reconnects to the leader it names (or any member).
    fn send(&mut self, client: usize, request_id: u64) {
        let now = self.now_ns();
        let Some(outstanding) = self.clients[client].outstanding.get_mut(&request_id) else {
            return;
        };
        outstanding.sent_at_ns = now;
        let op = outstanding.op.clone();
        let entry = self.entry(client, request_id, &op);
        let member_id = self.clients[client].member;
        let index = (member_id - 1) as usize;
        let Some(running) = &mut self.members[index].running else {
            event(
                &mut self.trace,
                3,
                &[client as u64, request_id, member_id, 9],
            );
            self.clients[client].member = MEMBERS[self.rng.below(3) as usize];
            return;
        };
        let refused = match running.log.handle().leads() {
            Ok(()) => {
                if running.open.len() < 256
                    && !running
                        .open
                        .iter()
                        .any(|(_, token)| *token == (client, request_id))
                {
                    running.open.push((entry, (client, request_id)));
                }
                0
            }
            Err(_) => {
                let leader = running.log.handle().status().leader;
                self.clients[client].member = match leader {
                    Some(leader) if leader != member_id => leader,
                    _ => MEMBERS[self.rng.below(3) as usize],
                };
                1
            }
        };
        event(
            &mut self.trace,
            3,
            &[client as u64, request_id, member_id, refused],
        );
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
        if self.rng.chance(self.shape.logged_read_per_mille) {
            let key = if self.rng.chance(500) {
                ReadKey::Balance(self.rng.below(self.shape.accounts))
            } else {
                ReadKey::List(self.rng.below(self.shape.lists))
            };
            return Op::Read { key };
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
        if self.rng.chance(self.shape.reconnect_per_mille) {
            // The client reconnects, to any member.
            self.clients[index].member = MEMBERS[self.rng.below(3) as usize];
        }
        let client = &self.clients[index];
        if client.ops_left == 0 || client.outstanding.len() >= client.pipeline_max {
            return;
        }
        let op = self.next_op(index);
        let now = self.now_ns();
        let client = &mut self.clients[index];
        client.ops_left -= 1;
        let request_id = client.next_request_id;
        client.next_request_id += 1;
        client.outstanding.insert(
            request_id,
            Outstanding {
                op,
                sent_at_ns: now,
            },
        );
        self.send(index, request_id);
    }

    /// A client resends its oldest request unanswered for too long, with
    /// the same request id (to the member it is connected to now).
    fn client_retries(&mut self) {
        let index = self.rng.below(self.clients.len() as u64) as usize;
        let now = self.now_ns();
        let stale = self.clients[index]
            .outstanding
            .iter()
            .find(|(_, waiting)| now - waiting.sent_at_ns >= RETRY_AFTER_NS)
            .map(|(request_id, _)| *request_id);
        if let Some(request_id) = stale {
            // Unanswered for long: perhaps the member is down or cut off.
            if self.rng.chance(500) {
                self.clients[index].member = MEMBERS[self.rng.below(3) as usize];
            }
            self.send(index, request_id);
        }
    }

    /// Leaders with room propose their open batch.
    fn propose(&mut self) {
        let now_ms = self.now_ns() / 1_000_000;
        for member in &mut self.members {
            let Some(running) = &mut member.running else {
                continue;
            };
            if running.open.is_empty() || !running.log.has_room() {
                continue;
            }
            let take = running.open.len().min(self.shape.batch_entries_max);
            let (entries, token): (Vec<Entry>, Token) = running.open.drain(..take).unzip();
            let count = entries.len() as u64;
            let log = &mut running.log;
            let proposed = running
                .tasks
                .sync_scope(|| log.propose(entries, now_ms, token));
            // A refused proposal (no longer the leader) is dropped; its
            // clients retry.
            event(
                &mut self.trace,
                4,
                &[member.id, count, u64::from(proposed.is_ok())],
            );
        }
    }

    /// Every member executes what Raft delivered to it; a proposer answers
    /// the clients of its own batches.
    fn execute_deliveries(&mut self) -> Checked {
        let now = self.now_ns();
        for index in 0..self.members.len() {
            loop {
                let member = &mut self.members[index];
                let member_id = member.id;
                let Some(running) = &mut member.running else {
                    break;
                };
                let Ok(delivery) = running.deliveries.try_recv() else {
                    break;
                };
                let committed = match delivery {
                    Delivery::Batch(committed) => committed,
                    Delivery::Install(_) => {
                        return Err(format!(
                            "member {member_id} was sent a snapshot, but the simulated cluster takes none"
                        ));
                    }
                };
                let batch = committed.batch;
                let position = running.executor.status().position;
                if batch.first_seq != position + 1 {
                    return Err(format!(
                        "member {member_id} at seq {position} was delivered a batch starting at seq {}",
                        batch.first_seq
                    ));
                }
                let outcomes = running.executor.execute(&batch);
                let status = running.executor.status();
                event(
                    &mut self.trace,
                    6,
                    &[member_id, batch.first_seq, status.chain_hash as u64],
                );
                match self.history.get(&status.position) {
                    Some(&(state, chain, first)) => {
                        if (state, chain) != (status.state_hash, status.chain_hash) {
                            return Err(format!(
                                "replicas diverged: at seq {} member {member_id} has state hash {:032x} and chain hash {:032x}, but member {first} had {state:032x} and {chain:032x}",
                                status.position, status.state_hash, status.chain_hash
                            ));
                        }
                    }
                    None => {
                        self.history.insert(
                            status.position,
                            (status.state_hash, status.chain_hash, member_id),
                        );
                    }
                }
                if let Some(first) = self.batches.get(&batch.first_seq) {
                    if first.entries != batch.entries {
                        return Err(format!(
                            "replicas diverged: member {member_id} executed another batch at seq {} than the first member to get there",
                            batch.first_seq
                        ));
                    }
                } else {
                    self.batches.insert(batch.first_seq, batch.clone());
                }
                if let Some(token) = committed.token {
                    for ((client, request_id), outcome) in token.into_iter().zip(outcomes) {
                        let arrives = now + 20_000 + self.rng.below(2_000_000);
                        self.answers[client].push_back((arrives, request_id, outcome));
                    }
                }
            }
        }
        Ok(())
    }

    /// Answers that have arrived reach their clients (in the order they
    /// were sent); while faults are on, some are lost.
    fn deliver_answers(&mut self) -> Checked {
        let now = self.now_ns();
        for index in 0..self.answers.len() {
            while let Some(&(arrives, _, _)) = self.answers[index].front() {
                if arrives > now {
                    break;
                }
                let (_, request_id, outcome) =
                    self.answers[index].pop_front().expect("looked at above");
                if self.net.lock().faults && self.rng.chance(self.shape.drop_per_mille) {
                    event(&mut self.trace, 8, &[index as u64, request_id]);
                    continue;
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
                    continue;
                }
                if client.outstanding.remove(&request_id).is_none() {
                    continue;
                }
                client.observed = client.observed.max(outcome.seq);
                client.acked.insert(request_id, (outcome.seq, answer));
                self.report.acknowledged += 1;
            }
        }
        Ok(())
    }

    /// A stale read on the client's member (or, sometimes, another one),
    /// at that member's position, which must be at least what the client
    /// has seen (a member behind refuses).
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
        let member = if self.rng.chance(500) {
            self.clients[index].member
        } else {
            MEMBERS[self.rng.below(3) as usize]
        };
        let Some(running) = &mut self.members[(member - 1) as usize].running else {
            return Ok(());
        };
        let min_position = self.clients[index].observed;
        let now_ms = self.started.elapsed().as_millis() as u64 + 1_000;
        if running.executor.status().position < min_position {
            event(&mut self.trace, 14, &[index as u64, member]);
            return Ok(());
        }
        let read =
            running
                .executor
                .read(key.procedure(), ArgsEncoding::Postcard, &key.args(), now_ms);
        let answer = Answer::of(&read.outcome);
        event(&mut self.trace, 15, &[index as u64, member, read.position]);
        if read.position < min_position {
            return Err(format!(
                "stale read went backwards: client {index} had seen seq {min_position}, then read at {} on member {member}",
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

    /// Runs the committed batches through the model in log order and
    /// checks every answer, every stale read and every member's state.
    fn check_log(&mut self) -> Checked {
        let batches = self.batches.values().cloned().map(Ok);
        let acked = self.clients.iter().map(|client| (client.id, &client.acked));
        let (model, position) =
            check_history("committed", batches, std::mem::take(&mut self.reads), acked)?;
        for member in &mut self.members {
            let running = member.running.as_mut().expect("every member is up");
            check_state(
                &model,
                &mut running.executor,
                self.shape.accounts,
                self.shape.lists,
                &format!(" on member {}", member.id),
            )?;
        }
        self.report.last_seq = position;
        event(&mut self.trace, 30, &[position]);
        Ok(())
    }
}
