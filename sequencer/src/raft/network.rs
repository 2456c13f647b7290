//! Raft RPC between cluster members over TCP (TLS when configured).
//!
//! Nothing a connection sends reaches openraft, the log or the divergence
//! check before the peer has proved that it holds the cluster secret and
//! named a configured member other than this node ([`auth`]). After that
//! every frame carries a MAC under a key of that connection alone, with a
//! counter, so a frame cannot be forged, replayed, reordered or reflected
//! even without TLS; and every message is attributed to the member that
//! authenticated, never to an id it names:
//!
//! - an AppendEntries, InstallSnapshot or Vote whose leader or candidate
//!   is not the authenticated member closes the connection;
//! - a `Report`'s check points are rewritten to the authenticated member.
//!
//! Client addresses come from the configuration ([`Peers`]), never from a
//! peer's say-so. The port is bounded: a small frame limit and a deadline
//! until the handshake is done, a cap on handshakes in progress and on
//! connections per member, an idle timeout, TCP keepalive, accept errors
//! that back off, and log lines that are rate-limited.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::auth::{self, PeerChannel, PeerIo};
use super::{Checkpoint, ClusterSecret, MemberAddrs, PeerTls, TypeConfig};
use crate::rate_limited::RateLimitedLog;

type NodeId = u64;

/// Largest RPC frame from an authenticated member: sixteen entries of up
/// to 32 MiB of arguments each, with room to spare. The body is read as
/// it arrives, so a length prefix alone allocates nothing.
pub const PEER_FRAME_BYTES_MAX: usize = 1 << 30;
/// Time a new connection has to finish TLS and the handshake.
pub const PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// An authenticated connection that carries nothing for this long is
/// closed (the leader's heartbeats keep its links busy every 100 ms).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive on every replication connection, so a peer that
/// vanished without a FIN is noticed.
const PEER_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; a connection over it is closed at
/// once. Each costs one task and a few KiB for at most the handshake
/// timeout, so a flood of idle connections cannot take the descriptors
/// the members need.
pub const PEER_HANDSHAKES_MAX: usize = 64;
/// Authenticated connections kept per member; a new one beyond it closes
/// that member's oldest (a restarted member must get back in while its
/// old, half-open connections linger).
pub const PEER_CONNECTIONS_PER_MEMBER_MAX: usize = 8;
/// Check points taken from one `Report` at most (a follower sends at
/// most its outbox, 1,024).
const REPORT_CHECKPOINTS_MAX: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A link unused for this long is reopened before use rather than risk
/// the peer's idle timeout closing it under a call.
const LINK_REOPEN_AFTER: Duration = Duration::from_secs(15);
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's check points, for the leader's next proposal.
    Report(Vec<Checkpoint>),
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Report,
}

/// Check points reported by followers, waiting for a proposal.
pub type Inbox = Arc<Mutex<Vec<Checkpoint>>>;

/// Check points a leader holds at most; older ones are dropped (a check
/// point not checked is a missed check, not an error).
const INBOX_MAX: usize = 4096;

/// The configured members: their addresses and how to reach them. Fixed
/// at start; nothing a peer says changes it.
#[derive(Clone)]
pub struct Peers {
    me: NodeId,
    members: Arc<BTreeMap<NodeId, MemberAddrs>>,
    secret: ClusterSecret,
    tls: Option<PeerTls>,
}

impl Peers {
    pub fn new(
        me: NodeId,
        members: BTreeMap<NodeId, MemberAddrs>,
        secret: ClusterSecret,
        tls: Option<PeerTls>,
    ) -> Peers {
        Peers {
            me,
            members: Arc::new(members),
            secret,
            tls,
        }
    }

    /// The member's client address, from the configuration.
    pub fn client_addr(&self, node: NodeId) -> Option<String> {
        self.members.get(&node).map(|addrs| addrs.client.clone())
    }

    fn is_member(&self, node: NodeId) -> bool {
        self.members.contains_key(&node)
    }
}

/// What the accepting side of the replication port shares between its
/// connections.
struct Acceptor {
    raft: Raft<TypeConfig>,
    peers: Peers,
    inbox: Inbox,
    handshakes: Arc<Semaphore>,
    connections: Mutex<BTreeMap<NodeId, VecDeque<tokio::task::AbortHandle>>>,
    log: RateLimitedLog,
    /// Set while this member's journal has lost entries it may have
    /// acknowledged (`lost.rs`): every vote request is refused.
    votes_refused: Arc<AtomicBool>,
    /// openraft's leader lease (the longest election timeout): how long
    /// after the last word from a leader this member refuses candidates.
    lease: Duration,
    /// When a leader's AppendEntries or InstallSnapshot was last accepted.
    leader_heard: Mutex<Option<Instant>>,
}

impl Acceptor {
    fn heard_from_leader(&self) {
        *self.leader_heard.lock() = Some(Instant::now());
    }

    /// Whether this member has heard nothing from a leader for a whole
    /// lease.
    fn leader_silent(&self) -> bool {
        self.leader_heard
            .lock()
            .is_none_or(|heard| heard.elapsed() > self.lease)
    }
}

/// How many elections in a row this member (`own`, whose vote is `vote`)
/// must start for its candidacy to outrank `candidate`'s (openraft's
/// leader ids order by term, then node id), if one or two do; 0 if not.
fn rounds_to_outrank(
    vote: &openraft::Vote<NodeId>,
    own: NodeId,
    candidate: &openraft::LeaderId<NodeId>,
) -> u64 {
    (1..=2)
        .find(|rounds| openraft::LeaderId::new(vote.leader_id().term + rounds, own) > *candidate)
        .unwrap_or(0)
}

/// Answers members' RPCs on `listener` until the process ends; vote
/// requests are refused while `votes_refused` is set.
///
/// A vote request this member refuses because the candidate's log is
/// shorter than its own, when it has not heard from a leader for a whole
/// `lease` either, makes it stand for election itself at once (see
/// [`rounds_to_outrank`]). openraft 0.9 has no pre-vote: the refused
/// candidate holds its term's vote, and without this the member with the
/// longer log stands only on its own timer, an election timeout later, or
/// 1.2 s later still if it had once seen a greater log as a candidate
/// (openraft keeps that mark until its next timed election). Measured on
/// loopback, that made a failover take 2.3 s instead of 1.1 s
/// (docs/BENCHMARKS.md, "Failover").
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    peers: Peers,
    inbox: Inbox,
    votes_refused: Arc<AtomicBool>,
    lease: Duration,
) {
    let acceptor = Arc::new(Acceptor {
        raft,
        peers,
        inbox,
        votes_refused,
        lease,
        leader_heard: Mutex::new(None),
        handshakes: Arc::new(Semaphore::new(PEER_HANDSHAKES_MAX)),
        connections: Mutex::new(BTreeMap::new()),
        log: RateLimitedLog::new(Duration::from_secs(10)),
    });
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                accepted
            }
            Err(err) => {
                // Out of file descriptors, most likely: wait for some to
                // be freed instead of spinning on the error.
                acceptor
                    .log
                    .warn(&format!("replication port: accept failed: {err}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = acceptor.handshakes.clone().try_acquire_owned() else {
            acceptor.log.warn(&format!(
                "replication port: {PEER_HANDSHAKES_MAX} handshakes already in progress; closed a connection from {from}"
            ));
            continue;
        };
        // The task learns its own handle, so that once authenticated it
        // can be closed when its member opens too many connections.
        let (own_handle_tx, own_handle) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let acceptor = acceptor.clone();
            async move {
                let Ok(own_handle) = own_handle.await else {
                    return;
                };
                let result = serve_connection(&acceptor, stream, permit, own_handle).await;
                if let Err(reason) = result {
                    acceptor.log.warn(&format!(
                        "replication port: connection from {from} closed: {reason}"
                    ));
                }
            }
        });
        let _ = own_handle_tx.send(task.abort_handle());
    }
}

impl Acceptor {
    /// Records an authenticated connection of `member`, closing the
    /// member's oldest beyond the per-member limit.
    fn register(&self, member: NodeId, handle: tokio::task::AbortHandle) {
        let mut connections = self.connections.lock();
        let list = connections.entry(member).or_default();
        list.retain(|handle| !handle.is_finished());
        list.push_back(handle);
        while list.len() > PEER_CONNECTIONS_PER_MEMBER_MAX {
            if let Some(oldest) = list.pop_front() {
                oldest.abort();
            }
        }
    }
}

fn set_keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new().with_time(PEER_KEEPALIVE_IDLE);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
    let _ = stream.set_nodelay(true);
}

async fn serve_connection(
    acceptor: &Acceptor,
    stream: TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
    own_handle: tokio::task::AbortHandle,
) -> Result<(), String> {
    set_keepalive(&stream);
    let peers = &acceptor.peers;
    let handshake = async {
        let io: Box<dyn PeerIo> = match &peers.tls {
            Some(tls) => Box::new(
                tls.acceptor()
                    .accept(stream)
                    .await
                    .map_err(|err| format!("TLS handshake failed: {err}"))?,
            ),
            None => Box::new(stream),
        };
        auth::accept(io, &peers.secret, peers.me, |node| {
            node != peers.me && peers.is_member(node)
        })
        .await
        .map_err(|err| err.to_string())
    };
    let (mut channel, member) = tokio::time::timeout(PEER_HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("no handshake within {PEER_HANDSHAKE_TIMEOUT:?}"))??;
    drop(permit);
    acceptor.register(member, own_handle);
    loop {
        let request = match tokio::time::timeout(
            PEER_IDLE_TIMEOUT,
            channel.recv::<Request>(PEER_FRAME_BYTES_MAX),
        )
        .await
        {
            Err(_) => return Ok(()),
            Ok(Err(auth::ChannelError::Closed)) => return Ok(()),
            Ok(Err(err)) => return Err(format!("member {member}: {err}")),
            Ok(Ok(request)) => request,
        };
        let response = match request {
            Request::Append(rpc) => {
                check_sender(member, rpc.vote.leader_id().voted_for(), "AppendEntries")?;
                let answer = acceptor.raft.append_entries(rpc).await;
                if matches!(&answer, Ok(response) if !matches!(response, AppendEntriesResponse::HigherVote(_)))
                {
                    acceptor.heard_from_leader();
                }
                Response::Append(answer)
            }
            Request::Vote(rpc) => {
                check_sender(member, rpc.vote.leader_id().voted_for(), "a vote request")?;
                if acceptor.votes_refused.load(Ordering::Acquire) {
                    let vote = acceptor.raft.metrics().borrow().vote;
                    Response::Vote(Ok(refused_vote(vote)))
                } else {
                    let (candidate, candidate_log) = (*rpc.vote.leader_id(), rpc.last_log_id);
                    let answer = acceptor.raft.vote(rpc).await;
                    if let Ok(response) = &answer
                        && !response.vote_granted
                        && response.last_log_id > candidate_log
                        && acceptor.leader_silent()
                    {
                        let rounds =
                            rounds_to_outrank(&response.vote, acceptor.peers.me, &candidate);
                        if rounds > 0 {
                            tracing::info!(
                                "refused member {member}'s candidacy for its shorter log, with no leader heard for {:?}: standing for election instead",
                                acceptor.lease
                            );
                            let raft = acceptor.raft.clone();
                            tokio::spawn(async move {
                                for _ in 0..rounds {
                                    if raft.trigger().elect().await.is_err() {
                                        return;
                                    }
                                }
                            });
                        }
                    }
                    Response::Vote(answer)
                }
            }
            Request::Snapshot(rpc) => {
                check_sender(member, rpc.vote.leader_id().voted_for(), "InstallSnapshot")?;
                let answer = acceptor.raft.install_snapshot(rpc).await;
                if answer.is_ok() {
                    acceptor.heard_from_leader();
                }
                Response::Snapshot(answer)
            }
            Request::Report(checkpoints) => {
                let mut checkpoints = attribute_report(member, checkpoints);
                let mut inbox = acceptor.inbox.lock();
                inbox.append(&mut checkpoints);
                let excess = inbox.len().saturating_sub(INBOX_MAX);
                inbox.drain(..excess);
                Response::Report
            }
        };
        channel
            .send(&response)
            .await
            .map_err(|err| format!("member {member}: {err}"))?;
    }
}

/// The answer of a member that lost journal entries to any vote request:
/// not granted, with its own vote, and no last log id (what it holds
/// says nothing about what it acknowledged). Raft is not asked, so the
/// request changes nothing here, not even the term.
fn refused_vote(own: openraft::Vote<NodeId>) -> VoteResponse<NodeId> {
    VoteResponse::new(own, None, false)
}

/// Whatever node ids a report names, it speaks for the member that sent
/// it, and for at most `REPORT_CHECKPOINTS_MAX` check points.
fn attribute_report(member: NodeId, mut checkpoints: Vec<Checkpoint>) -> Vec<Checkpoint> {
    checkpoints.truncate(REPORT_CHECKPOINTS_MAX);
    for checkpoint in &mut checkpoints {
        checkpoint.node = member;
    }
    checkpoints
}

/// A member may speak only for itself: the leader of an AppendEntries or
/// InstallSnapshot, or the candidate of a vote, must be the member that
/// authenticated.
fn check_sender(member: NodeId, named: Option<NodeId>, what: &str) -> Result<(), String> {
    if named == Some(member) {
        Ok(())
    } else {
        let named = named.map_or_else(|| "none".to_string(), |node| node.to_string());
        Err(format!(
            "member {member} sent {what} in the name of node {named}; closing the connection"
        ))
    }
}

/// Makes one [`Connection`] per peer for openraft.
pub struct Network {
    peers: Peers,
}

impl Network {
    pub fn new(peers: Peers) -> Network {
        Network { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection::new(target, node.addr.clone(), self.peers.clone())
    }
}

/// A lazily (re)connected, authenticated link to one peer.
pub struct Connection {
    target: NodeId,
    addr: String,
    peers: Peers,
    channel: Option<(PeerChannel, Instant)>,
}

enum CallError {
    /// Could not connect or authenticate: the peer is down; openraft backs off.
    Unreachable(std::io::Error),
    /// The connection failed mid-call.
    Network(std::io::Error),
}

impl Connection {
    fn new(target: NodeId, addr: String, peers: Peers) -> Connection {
        Connection {
            target,
            addr,
            peers,
            channel: None,
        }
    }

    async fn open(&self) -> Result<PeerChannel, std::io::Error> {
        let connect = async {
            let stream = TcpStream::connect(&self.addr).await?;
            set_keepalive(&stream);
            let io: Box<dyn PeerIo> = match &self.peers.tls {
                Some(tls) => Box::new(tls.connect(&self.addr, stream).await?),
                None => Box::new(stream),
            };
            auth::connect(io, &self.peers.secret, self.peers.me, self.target)
                .await
                .map_err(|err| std::io::Error::other(err.to_string()))
        };
        tokio::time::timeout(CONNECT_TIMEOUT.max(PEER_HANDSHAKE_TIMEOUT), connect)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connecting to node {} at {} timed out",
                        self.target, self.addr
                    ),
                )
            })?
    }

    async fn call(&mut self, request: Request, ttl: Duration) -> Result<Response, CallError> {
        if self
            .channel
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() > LINK_REOPEN_AFTER)
        {
            self.channel = None;
        }
        if self.channel.is_none() {
            // Opening is a round trip with the peer now (the handshake): a
            // frozen peer must cost this call its deadline, not more.
            let channel = match tokio::time::timeout(ttl, self.open()).await {
                Ok(opened) => opened.map_err(CallError::Unreachable)?,
                Err(_) => {
                    return Err(CallError::Unreachable(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "node {} did not complete the handshake within {ttl:?}",
                            self.target
                        ),
                    )));
                }
            };
            self.channel = Some((channel, Instant::now()));
        }
        let (channel, used) = self.channel.as_mut().expect("connected above");
        *used = Instant::now();
        let exchange = async {
            channel.send(&request).await?;
            channel.recv::<Response>(PEER_FRAME_BYTES_MAX).await
        };
        let result = match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(CallError::Network(std::io::Error::other(err.to_string()))),
            Err(_) => Err(CallError::Unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("node {} did not answer within {ttl:?}", self.target),
            ))),
        };
        if result.is_err() {
            // The stream may hold half a frame; start afresh next time.
            self.channel = None;
        }
        result
    }
}

fn rpc_error<E: std::error::Error>(err: CallError) -> RPCError<NodeId, BasicNode, E> {
    match err {
        CallError::Unreachable(err) => RPCError::Unreachable(Unreachable::new(&err)),
        CallError::Network(err) => RPCError::Network(NetworkError::new(&err)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "peer answered a different RPC",
    )))
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Request::Append(rpc), option.hard_ttl()).await {
            Ok(Response::Append(Ok(response))) => Ok(response),
            Ok(Response::Append(Err(err))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(unexpected()),
            Err(err) => Err(rpc_error(err)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(Request::Snapshot(rpc), option.hard_ttl()).await {
            Ok(Response::Snapshot(Ok(response))) => Ok(response),
            Ok(Response::Snapshot(Err(err))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(unexpected()),
            Err(err) => Err(rpc_error(err)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(Ok(response))) => Ok(response),
            Ok(Response::Vote(Err(err))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            Ok(_) => Err(unexpected()),
            Err(err) => Err(rpc_error(err)),
        }
    }
}

/// How often a follower sends its check points to the leader.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// On a follower, sends this node's check points to the leader, which
/// puts them in the log so that every node can compare (a majority
/// decides which node diverged).
pub async fn report_checkpoints(
    raft: Raft<TypeConfig>,
    peers: Peers,
    outbox: Arc<Mutex<Vec<Checkpoint>>>,
) {
    let mut link: Option<(NodeId, Connection)> = None;
    loop {
        tokio::time::sleep(REPORT_INTERVAL).await;
        let Some(leader) = raft
            .metrics()
            .borrow()
            .current_leader
            .filter(|leader| *leader != peers.me)
        else {
            continue;
        };
        if outbox.lock().is_empty() {
            continue;
        }
        if link.as_ref().is_none_or(|(to, _)| *to != leader) {
            let Some(addrs) = peers.members.get(&leader) else {
                continue;
            };
            link = Some((
                leader,
                Connection::new(leader, addrs.replication.clone(), peers.clone()),
            ));
        }
        let checkpoints = std::mem::take(&mut *outbox.lock());
        let (_, connection) = link.as_mut().expect("set above");
        if connection
            .call(Request::Report(checkpoints), Duration::from_secs(1))
            .await
            .is_err()
        {
            link = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_speaks_for_its_sender_only() {
        let forged: Vec<Checkpoint> = (0..5000)
            .map(|node| Checkpoint {
                node,
                last_seq: 10,
                state_hash: 1,
                chain_hash: 2,
            })
            .collect();
        let attributed = attribute_report(2, forged);
        assert_eq!(attributed.len(), REPORT_CHECKPOINTS_MAX);
        assert!(attributed.iter().all(|checkpoint| checkpoint.node == 2));
    }

    #[test]
    fn standing_instead_of_a_refused_candidate_outranks_it() {
        let candidate = openraft::LeaderId::new(3, 1);
        // Our vote is of term 2: term 3 as node 3 outranks (3, 1).
        assert_eq!(
            rounds_to_outrank(&openraft::Vote::new_committed(2, 2), 3, &candidate),
            1
        );
        // As node 1 of a lower id it takes term 4.
        let candidate = openraft::LeaderId::new(3, 2);
        assert_eq!(
            rounds_to_outrank(&openraft::Vote::new_committed(2, 2), 1, &candidate),
            2
        );
        // Far behind in terms: left to the timers.
        let candidate = openraft::LeaderId::new(9, 2);
        assert_eq!(
            rounds_to_outrank(&openraft::Vote::new_committed(2, 2), 1, &candidate),
            0
        );
    }

    #[test]
    fn a_refused_vote_grants_nothing_and_claims_no_log() {
        let own = openraft::Vote::new_committed(4, 2);
        let answer = refused_vote(own);
        assert!(!answer.vote_granted);
        assert_eq!(answer.vote, own);
        assert_eq!(answer.last_log_id, None);
    }

    #[test]
    fn a_member_cannot_act_in_another_members_name() {
        assert!(check_sender(2, Some(2), "AppendEntries").is_ok());
        let refused = check_sender(2, Some(3), "a vote request").unwrap_err();
        assert!(refused.contains("member 2 sent a vote request in the name of node 3"));
        assert!(check_sender(2, None, "InstallSnapshot").is_err());
    }
}
