//! The replicated log: a Raft group (openraft 0.9) whose entries are
//! sequencer batches, behind the same [`Log`] trait as the file log.
//!
//! - Only the leader proposes. A proposal is one batch: the entries in the
//!   order the leader took them and the leader's clock. Sequence numbers
//!   are *not* in the proposal: Raft indexes have gaps (blank and
//!   membership entries) and a proposal can be lost in a leader change,
//!   so every node numbers batches densely when it applies them
//!   ([`state_machine`]), which gives every node the same numbers.
//! - Applying does not execute. The state machine numbers the batch and
//!   hands it, in order, to the node's executor thread as a
//!   [`Delivery`]; every node executes every committed batch itself (no
//!   row or effect shipping).
//! - Snapshots are engine images the node writes at instance-epoch starts
//!   ([`SnapshotStore`]); openraft is told about each one and then purges
//!   the log before it.
//! - [`network`] is a small TCP (or TLS) RPC between the members'
//!   replication addresses; [`auth`] authenticates every connection with
//!   the cluster secret before anything it sends is decoded.

pub mod auth;
pub mod lost;
#[cfg(feature = "sim")]
pub mod memory;
pub mod network;
pub mod runtime;
pub mod state_machine;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use openraft::{BasicNode, Config, LogId, Raft, ServerState, SnapshotPolicy, StoredMembership};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::log::{Delivery, Log, RefusalReason, Refused};
pub use state_machine::{
    Retention, SNAPSHOTS_KEPT_DEFAULT, SNAPSHOTS_KEPT_MAX, SnapshotImage, SnapshotStore,
};
/// openraft's snapshot metadata, with ordo's node types.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;

openraft::declare_raft_types!(
    /// openraft's types for ordo: an entry's data is a [`Proposal`];
    /// applying returns nothing (answers come from the executor).
    pub TypeConfig:
        D = Proposal,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::OrdoRuntime,
);

/// Identifies a proposal so the proposing node can find the callers to
/// answer when it is applied. `boot` tells this run of the node from
/// earlier ones, whose proposals may still be in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub node: u64,
    pub boot: u64,
    pub counter: u64,
}

/// One Raft entry's data: one batch as the leader closed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub timestamp_ms: u64,
    /// The batch's entries, postcard-encoded once by the leader, in one
    /// shared, immutable buffer: openraft clones an entry for every
    /// follower it replicates to and again to apply it, and a clone is a
    /// reference count, not a copy. On the wire and in the journal it is
    /// a byte string, as a `Vec<u8>` under `serde_bytes` was (the same
    /// bytes). Decoded once per node when applied, except by the leader
    /// that proposed it, which still holds the entries it encoded (see
    /// `state_machine::Proposed`).
    #[serde(with = "shared_bytes")]
    pub entries: bytes::Bytes,
    /// Nodes' hashes at check points (the proposer's own and those its
    /// followers reported), for every node to compare with its own.
    pub checkpoints: Vec<Checkpoint>,
}

/// serde for a [`bytes::Bytes`] as a byte string (postcard: a length,
/// then the bytes), exactly as `serde_bytes` writes a `Vec<u8>`.
mod shared_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        bytes: &bytes::Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<bytes::Bytes, D::Error> {
        // `Bytes::from(Vec)` takes the buffer over without copying it.
        serde_bytes::ByteBuf::deserialize(deserializer)
            .map(|buf| bytes::Bytes::from(buf.into_vec()))
    }
}

/// A node's hashes right after it executed the batch ending at
/// `last_seq`, a check point: every node must have the same ones there.
/// Check points are the ends of batches that cross a multiple of
/// [`CHECK_INTERVAL`], the same batches on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub node: u64,
    pub last_seq: u64,
    pub state_hash: u128,
    pub chain_hash: u128,
}

/// Sequence numbers between divergence check points: 1 makes the end of
/// every batch a check point. A check point costs 56 bytes per member in
/// a later proposal; raise this if that ever matters next to batches.
pub const CHECK_INTERVAL: u64 = 1;

/// This node's check points kept for sending at most (older ones are
/// dropped: a missed check, not an error).
const OUTBOX_MAX: usize = 1024;

/// Whether the batch `first_seq..=last_seq` ends at a check point.
pub fn is_check_point(first_seq: u64, last_seq: u64) -> bool {
    last_seq / CHECK_INTERVAL > (first_seq - 1) / CHECK_INTERVAL
}

/// Where a committed batch sits in the Raft log, and the Raft state just
/// before it was applied (what a snapshot taken before executing the
/// batch records).
#[derive(Clone, Debug)]
pub struct RaftPoint {
    pub index: u64,
    pub before_log_id: Option<LogId<u64>>,
    pub before_membership: StoredMembership<u64, BasicNode>,
    pub before_timestamp_ms: u64,
}

/// The shortest cluster secret accepted, in bytes.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;
/// The longest cluster secret accepted, in bytes (a file read for it is
/// checked against this before it is read whole).
pub const CLUSTER_SECRET_BYTES_MAX: usize = 4096;

/// The secret every member holds; only the key derived from it is kept.
/// Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ClusterSecret {
    key: Arc<[u8; 32]>,
}

impl ClusterSecret {
    /// From the secret's bytes (surrounding white space is not part of
    /// it, so a file ending in a newline works).
    pub fn new(secret: Vec<u8>) -> Result<ClusterSecret, ClusterError> {
        let trimmed = secret.trim_ascii();
        if trimmed.len() < CLUSTER_SECRET_BYTES_MIN || trimmed.len() > CLUSTER_SECRET_BYTES_MAX {
            return Err(ClusterError::BadSecret(format!(
                "the cluster secret is {} bytes; it must be {CLUSTER_SECRET_BYTES_MIN} to {CLUSTER_SECRET_BYTES_MAX} (make one with `openssl rand -hex 32`)",
                trimmed.len()
            )));
        }
        Ok(ClusterSecret {
            key: Arc::new(blake3::derive_key("ordo cluster secret v1", trimmed)),
        })
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ClusterSecret(..)")
    }
}

/// Where a member listens: for its peers, and for clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    pub replication: String,
    pub client: String,
}

/// TLS between members: this node's certificate for the connections it
/// accepts, and the CA it checks the others' certificates against.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PeerTls(..)")
    }
}

impl PeerTls {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// TLS over `stream` to the member at `addr`, whose certificate must
    /// name its host (an IP address or a DNS name).
    async fn connect(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` cannot be checked against a certificate: {err}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, stream)
            .await
    }
}

/// How often a leader sends heartbeats (openraft's `heartbeat_interval`;
/// openraft also ticks its election timer every 1.5 heartbeats).
pub const HEARTBEAT_DEFAULT: Duration = Duration::from_millis(100);
/// The shortest election timeout; the longest is twice this. In openraft
/// 0.9 a follower that has seen a leader also waits out that leader's
/// lease (the longest election timeout) before its own timeout starts,
/// and refuses to vote until the lease has passed: it stands for election
/// 2 x min + [min, 2 x min) after the last heartbeat, here 0.9 to 1.2 s
/// (plus up to one 150 ms tick), which is what keeps a client's gap after
/// losing the leader under 2 s on loopback (medians of 1.2 s measured; a
/// second election round is cut short in `network.rs`). A leader must
/// stall for nine heartbeats in a row before anyone stands, so a busy
/// machine does not cause elections.
pub const ELECTION_TIMEOUT_MIN_DEFAULT: Duration = Duration::from_millis(300);

/// A cluster member's configuration.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// Every member's addresses, this node's included. Followers name the
    /// leader's client address from here, never from what a peer says.
    pub members: BTreeMap<u64, MemberAddrs>,
    /// Proves membership on every replication connection.
    pub secret: ClusterSecret,
    /// TLS on the replication port, if set.
    pub tls: Option<PeerTls>,
    /// Where the Raft journal, its vote and the snapshots live.
    pub dir: PathBuf,
    /// Proposals a leader may have in flight (proposed, not yet
    /// applied). Small: waiting is what makes the next batch larger.
    pub proposals_in_flight: usize,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
}

impl ClusterConfig {
    pub fn new(
        node_id: u64,
        members: BTreeMap<u64, MemberAddrs>,
        secret: ClusterSecret,
        dir: PathBuf,
    ) -> ClusterConfig {
        ClusterConfig {
            node_id,
            members,
            secret,
            tls: None,
            dir,
            proposals_in_flight: 4,
            heartbeat: HEARTBEAT_DEFAULT,
            election_timeout_min: ELECTION_TIMEOUT_MIN_DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node id {node_id} is not in the cluster list ({members:?})")]
    NotAMember { node_id: u64, members: Vec<u64> },
    #[error("cannot listen on the replication address {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadSecret(String),
    #[error("raft storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// What a node reports about its place in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<u64>,
    /// The leader's client address, when known.
    pub leader_client_addr: Option<String>,
    /// The Raft index applied (the state machine applies as soon as an
    /// entry is committed, so this is the known commit point).
    pub commit: u64,
    pub last_log_index: u64,
}

struct InFlight {
    count: Mutex<usize>,
    freed: Condvar,
}

/// A cloneable handle on the running Raft node: status, snapshots, the
/// divergence checkpoint.
#[derive(Clone)]
pub struct RaftHandle {
    node_id: u64,
    raft: Raft<TypeConfig>,
    runtime: tokio::runtime::Handle,
    peers: network::Peers,
    snapshots: Arc<SnapshotStore>,
    /// This node's check points not yet sent (in a proposal when it
    /// leads, else reported to the leader).
    outbox: Arc<Mutex<Vec<Checkpoint>>>,
    /// Check points followers reported, for the next proposal.
    inbox: network::Inbox,
}

impl RaftHandle {
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterStatus {
            node_id: self.node_id,
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            leader_client_addr: metrics
                .current_leader
                .and_then(|leader| self.peers.client_addr(leader)),
            commit: metrics.last_applied.map_or(0, |log_id| log_id.index),
            last_log_index: metrics.last_log_index.unwrap_or(0),
        }
    }

    /// Why Raft stopped for good on this node, if it did (a storage or
    /// apply error). The process must not stay up serving nothing.
    pub fn fatal(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .running_state
            .as_ref()
            .err()
            .map(|fatal| format!("raft stopped: {fatal}"))
    }

    /// Why this node cannot propose now, if it cannot: Raft stopped for
    /// good, or another node leads. Reads the metrics without cloning
    /// them (it is asked once per batch).
    fn refusal(&self) -> Option<RefusalReason> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if let Err(fatal) = &metrics.running_state {
            return Some(RefusalReason::Failed(format!("raft stopped: {fatal}")));
        }
        (metrics.state != ServerState::Leader).then_some(RefusalReason::NotLeader {
            leader: metrics.current_leader,
        })
    }

    /// `Ok` if this node leads; else the leader's client address, if
    /// known. Cheap enough to ask per request.
    pub fn leads(&self) -> Result<(), Option<String>> {
        let leader = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.state == ServerState::Leader {
                return Ok(());
            }
            metrics.current_leader
        };
        Err(leader
            .filter(|leader| *leader != self.node_id)
            .and_then(|leader| self.peers.client_addr(leader)))
    }

    /// Records this node's hashes at the check point `last_seq`, to be
    /// sent to every node through the log.
    pub fn executed(&self, last_seq: u64, state_hash: u128, chain_hash: u128) {
        let mut outbox = self.outbox.lock();
        // A follower cut off from the leader must not hoard them.
        if outbox.len() >= OUTBOX_MAX {
            outbox.remove(0);
        }
        outbox.push(Checkpoint {
            node: self.node_id,
            last_seq,
            state_hash,
            chain_hash,
        });
    }

    /// Every member's node id.
    pub fn members(&self) -> Vec<u64> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// openraft's handle (the simulator routes RPCs to it).
    #[cfg(feature = "sim")]
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// This member's snapshot files (what a backup of it copies).
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Persists `image` (in the background) and then tells Raft, which
    /// records it as the latest snapshot and purges the log before it.
    pub fn save_snapshot(&self, image: SnapshotImage) {
        let snapshots = self.snapshots.clone();
        let raft = self.raft.clone();
        runtime::spawn_on(&self.runtime, async move {
            let saved = tokio::task::spawn_blocking(move || snapshots.save(&image)).await;
            match saved {
                Ok(Ok(())) => {
                    let _ = raft.trigger().snapshot().await;
                }
                Ok(Err(err)) => tracing::error!("could not save a snapshot: {err}"),
                Err(err) => tracing::error!("snapshot writer failed: {err}"),
            }
        });
    }
}

/// On a member that lost journal entries: once it has caught up (see
/// `lost.rs`), deletes the marker and lets it vote and stand again. The
/// marker goes first, so a crash in between only repeats the check.
/// Logs every change of this member's role, term or known leader (an
/// election, a lost leader, a step-down), once per change. It watches
/// openraft's server metrics, which change only with the role, vote,
/// leader or membership: the full metrics are sent on every turn of
/// Raft's loop (every append, flush, replication answer and apply), and
/// waking this task for each of them was a tokio wake-up per turn.
async fn log_role_changes(raft: Raft<TypeConfig>) {
    let mut metrics = raft.server_metrics();
    let mut last = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.state, m.vote.leader_id().term, m.current_leader)
        };
        if last != Some(now) {
            let (state, term, leader) = now;
            tracing::info!(role = ?state, term, leader = ?leader, "raft role");
            last = Some(now);
        }
        if metrics.changed().await.is_err() {
            return; // Raft stopped.
        }
    }
}

async fn watch_catch_up(
    raft: Raft<TypeConfig>,
    lost: lost::LostEntries,
    dir: PathBuf,
    votes_refused: Arc<AtomicBool>,
) {
    let mut metrics = raft.metrics();
    let applied = loop {
        let applied = metrics.borrow_and_update().last_applied;
        if lost.caught_up(applied) {
            break applied;
        }
        if metrics.changed().await.is_err() {
            return; // Raft stopped.
        }
    };
    let cleared = tokio::task::spawn_blocking(move || lost::clear(&dir)).await;
    if let Ok(Err(err)) | Err(err) = cleared.map_err(std::io::Error::other) {
        // Without the marker gone a restart would refuse votes again,
        // which is safe; keep refusing now too rather than disagree.
        tracing::error!("could not delete the lost-entries marker: {err}");
        return;
    }
    votes_refused.store(false, Ordering::Release);
    raft.runtime_config().elect(true);
    let applied = applied.expect("caught up means applied");
    tracing::warn!(
        "node caught up (applied index {} of term {}; marked at term {}{}): it votes and stands for election again",
        applied.index,
        applied.leader_id.term,
        lost.term,
        lost.caught_up_at
            .map_or(String::new(), |at| format!(", index {at}"))
    );
}

/// The Raft implementation of [`Log`].
pub struct RaftLog<T> {
    handle: RaftHandle,
    boot: u64,
    counter: AtomicU64,
    pending: state_machine::Pending<T>,
    in_flight: Arc<InFlight>,
    proposals_in_flight: usize,
    abandon: Arc<dyn Fn(T, String) + Send + Sync>,
    // Dropped last: the runtime runs Raft's tasks. `None` on the
    // simulator's runtime, which the simulator drives (and whose member
    // tasks it kills) itself.
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

/// What a member opens from its Raft directory before Raft starts: the
/// same for the TCP members of production and the simulator's.
struct Prepared<T> {
    snapshots: Arc<SnapshotStore>,
    latest: Option<SnapshotImage>,
    lost: Option<lost::LostEntries>,
    votes_refused: Arc<AtomicBool>,
    pending: state_machine::Pending<T>,
    state_machine: state_machine::StateMachine<T>,
    peers: network::Peers,
    raft_config: Arc<Config>,
}

impl<T: Send + 'static> Prepared<T> {
    /// Checks the membership, and opens the snapshots, the lost-entries
    /// marker and the state machine of `config.dir`.
    fn open(
        config: &ClusterConfig,
        deliveries: Sender<Delivery<T>>,
    ) -> Result<Prepared<T>, ClusterError> {
        if !config.members.contains_key(&config.node_id) {
            return Err(ClusterError::NotAMember {
                node_id: config.node_id,
                members: config.members.keys().copied().collect(),
            });
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|err| ClusterError::Storage(format!("{}: {err}", config.dir.display())))?;
        let snapshots = Arc::new(
            SnapshotStore::open(config.dir.join("snapshots"))
                .map_err(|err| ClusterError::Storage(err.to_string()))?,
        );
        let latest = snapshots
            .latest()
            .map_err(|err| ClusterError::Storage(err.to_string()))?;
        // A journal that lost entries (see `lost.rs`): no votes, no
        // candidacy, until caught up.
        let lost = lost::read(&config.dir).map_err(|err| ClusterError::Storage(err.to_string()))?;
        if let Some(lost) = &lost {
            tracing::warn!(
                "node {} lost Raft journal entries ({}); it will neither vote nor stand for election until it has applied an entry of a term after {}",
                config.node_id,
                lost.detail,
                lost.term
            );
        }
        let votes_refused = Arc::new(AtomicBool::new(lost.is_some()));
        let pending: state_machine::Pending<T> = Arc::new(Mutex::new(HashMap::new()));
        let state_machine = state_machine::StateMachine::new(
            config.node_id,
            latest.as_ref(),
            snapshots.clone(),
            pending.clone(),
            deliveries,
        );
        let peers = network::Peers::new(
            config.node_id,
            config.members.clone(),
            config.secret.clone(),
            config.tls.clone(),
        );
        let raft_config = Config {
            cluster_name: "ordo".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: 2 * config.election_timeout_min.as_millis() as u64,
            // Snapshots are taken by the node at instance-epoch starts
            // and announced with `trigger().snapshot()`.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 64,
            purge_batch_size: 64,
            // Each entry is a whole batch (up to 32 MiB of arguments).
            max_payload_entries: 16,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 8 << 20,
            enable_elect: lost.is_none(),
            ..Default::default()
        }
        .validate()
        .map_err(|err| ClusterError::Raft(err.to_string()))?;
        Ok(Prepared {
            snapshots,
            latest,
            lost,
            votes_refused,
            pending,
            state_machine,
            peers,
            raft_config: Arc::new(raft_config),
        })
    }
}

/// Initialises the cluster if this node has never been part of one.
async fn initialize_if_new(
    raft: &Raft<TypeConfig>,
    members: &BTreeMap<u64, MemberAddrs>,
) -> Result<(), ClusterError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|err| ClusterError::Raft(err.to_string()))?;
    if !initialized {
        let nodes: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|(id, addrs)| {
                (
                    *id,
                    BasicNode {
                        addr: addrs.replication.clone(),
                    },
                )
            })
            .collect();
        // Another member may have got there first and replicated to us:
        // then this is refused, harmlessly.
        let _ = raft.initialize(nodes).await;
    }
    Ok(())
}

impl<T: Send + 'static> RaftLog<T> {
    /// Starts this node's Raft: opens its journal and latest snapshot,
    /// listens for peers, and initialises the cluster if this node has
    /// never been part of one (every member does so with the same
    /// membership, which is safe: they all write the same first entry).
    ///
    /// Returns the log and the snapshot the engine must be restored from
    /// before executing anything delivered. `abandon` is called with the
    /// token of a proposal that will never be answered by this node (lost
    /// in a leader change; it may still commit, in which case a retry
    /// with the same request id finds its outcome).
    pub fn start(
        config: ClusterConfig,
        deliveries: Sender<Delivery<T>>,
        abandon: impl Fn(T, String) + Send + Sync + 'static,
        boot: u64,
    ) -> Result<(RaftLog<T>, Option<SnapshotImage>), ClusterError> {
        let prepared = Prepared::open(&config, deliveries)?;
        let own_addr = config.members[&config.node_id].replication.clone();
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                // One worker: Raft's tasks (the core, the apply, one
                // replication task per follower, the peer connections)
                // wake each other for every batch, and across two workers
                // each of those wakes was a futex call and a context
                // switch. Blocking (the executor's queue full, see
                // `StateMachine::deliver`) still moves the worker's tasks
                // to another thread through `block_in_place`.
                .worker_threads(1)
                .thread_name("ordo-raft")
                .enable_all()
                .build()
                .map_err(|err| ClusterError::Raft(format!("cannot start a runtime: {err}")))?,
        );
        let log_store = store::LogStore::open(&config.dir)
            .map_err(|err| ClusterError::Storage(err.to_string()))?;
        let election_timeout_min = config.election_timeout_min;
        let node_id = config.node_id;
        let inbox: network::Inbox = Arc::new(Mutex::new(Vec::new()));
        let raft = runtime.block_on({
            let peers = prepared.peers.clone();
            let inbox = inbox.clone();
            let votes_refused = prepared.votes_refused.clone();
            let raft_config = prepared.raft_config.clone();
            let members = &config.members;
            let state_machine = prepared.state_machine;
            async move {
                let listener =
                    tokio::net::TcpListener::bind(&own_addr)
                        .await
                        .map_err(|source| ClusterError::Listen {
                            addr: own_addr.clone(),
                            source,
                        })?;
                let raft = Raft::new(
                    node_id,
                    raft_config,
                    network::Network::new(peers.clone()),
                    log_store,
                    state_machine,
                )
                .await
                .map_err(|err| ClusterError::Raft(err.to_string()))?;
                runtime::spawn(network::serve(
                    listener,
                    raft.clone(),
                    peers,
                    inbox,
                    votes_refused,
                    2 * election_timeout_min,
                ));
                initialize_if_new(&raft, members).await?;
                Ok::<_, ClusterError>(raft)
            }
        })?;
        let handle = RaftHandle {
            node_id,
            raft,
            runtime: runtime.handle().clone(),
            peers: prepared.peers,
            snapshots: prepared.snapshots,
            outbox: Arc::new(Mutex::new(Vec::new())),
            inbox,
        };
        if let Some(lost) = prepared.lost {
            runtime::spawn_on(
                &handle.runtime,
                watch_catch_up(
                    handle.raft.clone(),
                    lost,
                    config.dir.clone(),
                    prepared.votes_refused,
                ),
            );
        }
        runtime::spawn_on(&handle.runtime, log_role_changes(handle.raft.clone()));
        runtime::spawn_on(
            &handle.runtime,
            network::report_checkpoints(
                handle.raft.clone(),
                handle.peers.clone(),
                handle.outbox.clone(),
            ),
        );
        let log = RaftLog::assemble(
            handle,
            boot,
            prepared.pending,
            config.proposals_in_flight,
            Arc::new(abandon),
            Some(runtime),
        );
        Ok((log, prepared.latest))
    }

    /// The simulator's member (`sim/`): Raft on the current runtime (a
    /// current-thread one on simulated time), its journal and vote on
    /// `storage` with the syncer taking `sync_latency()` per fdatasync,
    /// and `network` as its transport. Call it inside the member's
    /// [`runtime::MemberTasks`] scope, so that killing the member stops
    /// everything this starts. `deliveries` must be unbounded (see
    /// [`runtime::blocking`]). No listener: the simulated network hands
    /// RPCs to the target's [`Raft`] directly, without the TCP transport's
    /// authentication, its vote refusal for members that lost entries
    /// (no marker is ever written in the simulator) and its "stand
    /// instead of a refused candidate" shortcut; and no check point
    /// reports (the simulator compares every member's hashes itself).
    #[cfg(feature = "sim")]
    pub async fn start_simulated<N>(
        config: ClusterConfig,
        storage: Arc<dyn crate::storage::Storage>,
        sync_latency: Arc<dyn Fn() -> Duration + Send + Sync>,
        network: N,
        deliveries: Sender<Delivery<T>>,
        abandon: impl Fn(T, String) + Send + Sync + 'static,
        boot: u64,
    ) -> Result<(RaftLog<T>, Option<SnapshotImage>), ClusterError>
    where
        N: openraft::RaftNetworkFactory<TypeConfig>,
    {
        let prepared = Prepared::open(&config, deliveries)?;
        let log_store = store::LogStore::open_simulated(&config.dir, storage, sync_latency)
            .map_err(|err| ClusterError::Storage(err.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            prepared.raft_config.clone(),
            network,
            log_store,
            prepared.state_machine,
        )
        .await
        .map_err(|err| ClusterError::Raft(err.to_string()))?;
        initialize_if_new(&raft, &config.members).await?;
        let handle = RaftHandle {
            node_id: config.node_id,
            raft,
            runtime: tokio::runtime::Handle::current(),
            peers: prepared.peers,
            snapshots: prepared.snapshots,
            outbox: Arc::new(Mutex::new(Vec::new())),
            inbox: Arc::new(Mutex::new(Vec::new())),
        };
        let log = RaftLog::assemble(
            handle,
            boot,
            prepared.pending,
            config.proposals_in_flight,
            Arc::new(abandon),
            None,
        );
        Ok((log, prepared.latest))
    }

    fn assemble(
        handle: RaftHandle,
        boot: u64,
        pending: state_machine::Pending<T>,
        proposals_in_flight: usize,
        abandon: Arc<dyn Fn(T, String) + Send + Sync>,
        runtime: Option<Arc<tokio::runtime::Runtime>>,
    ) -> RaftLog<T> {
        RaftLog {
            handle,
            boot,
            counter: AtomicU64::new(0),
            pending,
            in_flight: Arc::new(InFlight {
                count: Mutex::new(0),
                freed: Condvar::new(),
            }),
            proposals_in_flight: proposals_in_flight.max(1),
            abandon,
            _runtime: runtime,
        }
    }

    /// Whether a proposal now would go out without waiting for one in
    /// flight (the simulator, on one thread, must never wait).
    pub fn has_room(&self) -> bool {
        *self.in_flight.count.lock() < self.proposals_in_flight
    }

    pub fn handle(&self) -> RaftHandle {
        self.handle.clone()
    }

    /// Waits for the proposals in flight (bounded by `timeout`).
    fn wait_for_room(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut count = self.in_flight.count.lock();
        while *count >= self.proposals_in_flight {
            if self
                .in_flight
                .freed
                .wait_until(&mut count, deadline)
                .timed_out()
            {
                return false;
            }
        }
        *count += 1;
        true
    }
}

impl<T: Send + 'static> Log<T> for RaftLog<T> {
    fn propose(
        &mut self,
        entries: Vec<Entry>,
        timestamp_ms: u64,
        token: T,
    ) -> Result<(), Refused<T>> {
        if let Some(reason) = self.handle.refusal() {
            return Err(Refused { token, reason });
        }
        // A leader that cannot commit (cut off from the majority) stops
        // taking batches here; after the wait it refuses, and callers
        // retry elsewhere.
        if !self.wait_for_room(Duration::from_secs(5)) {
            return Err(Refused {
                token,
                reason: RefusalReason::NotLeader { leader: None },
            });
        }
        let id = ProposalId {
            node: self.handle.node_id,
            boot: self.boot,
            counter: self.counter.fetch_add(1, Ordering::Relaxed),
        };
        // Encoded once; the journal, both followers and the apply all
        // share this buffer. The entries themselves stay with the token:
        // when this node applies the proposal it executes them instead of
        // decoding its own bytes again.
        let encoded = bytes::Bytes::from(postcard::to_stdvec(&entries).expect("entries serialize"));
        self.pending.lock().insert(
            id,
            state_machine::Proposed {
                token,
                entries,
                encoded: encoded.clone(),
            },
        );
        let proposal = Proposal {
            id,
            timestamp_ms,
            entries: encoded,
            checkpoints: {
                let mut checkpoints = std::mem::take(&mut *self.handle.outbox.lock());
                checkpoints.append(&mut self.handle.inbox.lock());
                checkpoints
            },
        };
        let raft = self.handle.raft.clone();
        let pending = self.pending.clone();
        let in_flight = self.in_flight.clone();
        let abandon = self.abandon.clone();
        runtime::spawn_on(&self.handle.runtime, async move {
            let answered = match raft.client_write_ff(proposal).await {
                Ok(receiver) => matches!(receiver.await, Ok(Ok(_))),
                Err(_) => false,
            };
            *in_flight.count.lock() -= 1;
            in_flight.freed.notify_one();
            if !answered {
                // Applied proposals had their token taken by the state
                // machine; a token still here was not applied by us.
                if let Some(proposed) = pending.lock().remove(&id) {
                    abandon(
                        proposed.token,
                        "leadership changed before the batch committed; retry (request ids make it exactly-once)".into(),
                    );
                }
            }
        });
        Ok(())
    }

    fn last_index(&self) -> u64 {
        self.handle.status().last_log_index
    }
}

impl<T> Drop for RaftLog<T> {
    fn drop(&mut self) {
        if self._runtime.is_none() {
            return; // The simulator's: it kills the member's tasks.
        }
        let raft = self.handle.raft.clone();
        let _ = self.handle.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(2), raft.shutdown()).await
        });
    }
}
