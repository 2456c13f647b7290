//! The in-memory Raft transport of the simulator (`sim/`): every member
//! of a simulated cluster runs on one current-thread runtime, and an RPC
//! is a call on the target's [`Raft`] handle, with the fate of each leg
//! (request, response) decided by the simulator's [`Links`]: dropped,
//! delayed (which reorders messages between RPCs), duplicated (the
//! request handed to the target twice; the second answer is thrown
//! away), or cut by a partition. A member that is down, or killed while
//! it handles the call, does not answer.
//!
//! Failures are reported as openraft's `NetworkError`, never as
//! `Unreachable`: the latter makes openraft back off in a `select!`
//! without `biased`, whose branch order is tokio's randomness, not the
//! seed's.
//!
//! It carries the simulator's planted Raft bug (`count-vote-twice`, see
//! [`Fabric::count_vote_twice`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use parking_lot::Mutex;

use super::TypeConfig;

type NodeId = u64;

/// Which RPC a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

/// What happens to one leg of an RPC.
#[derive(Clone, Copy, Debug, Default)]
pub struct Leg {
    /// Lost (or cut by a partition): the caller hears nothing.
    pub dropped: bool,
    /// How long the message takes.
    pub delay: Duration,
    /// A request also delivered a second time (ignored for responses).
    pub duplicate: bool,
}

/// The simulator's say over every message.
pub trait Links: Send + Sync + 'static {
    /// The fate of a message `from` -> `to`.
    fn leg(&self, from: NodeId, to: NodeId, kind: RpcKind) -> Leg;
}

/// The members' Raft handles and the links between them.
pub struct Fabric {
    members: Mutex<BTreeMap<NodeId, Raft<TypeConfig>>>,
    links: Box<dyn Links>,
    /// The planted bug: a candidate counts its own vote a second time, in
    /// place of the first voter per election that refuses it or does not
    /// answer. In a 3-member cluster that is a majority of one.
    count_vote_twice: AtomicBool,
    /// The last term each candidate counted a vote twice in.
    doubled: Mutex<BTreeMap<NodeId, u64>>,
}

impl Fabric {
    pub fn new(links: Box<dyn Links>) -> Arc<Fabric> {
        Arc::new(Fabric {
            members: Mutex::new(BTreeMap::new()),
            links,
            count_vote_twice: AtomicBool::new(false),
            doubled: Mutex::new(BTreeMap::new()),
        })
    }

    /// Plants the `count-vote-twice` bug (see the field).
    pub fn plant_count_vote_twice(&self) {
        self.count_vote_twice.store(true, Ordering::Relaxed);
    }

    /// `member` is up with `raft` (after a start), or down (`None`).
    pub fn set_member(&self, member: NodeId, raft: Option<Raft<TypeConfig>>) {
        let mut members = self.members.lock();
        match raft {
            Some(raft) => members.insert(member, raft),
            None => members.remove(&member),
        };
    }

    /// The network factory of `member`.
    pub fn network(self: &Arc<Fabric>, member: NodeId) -> MemoryNetwork {
        MemoryNetwork {
            me: member,
            fabric: self.clone(),
        }
    }

    fn raft(&self, member: NodeId) -> Option<Raft<TypeConfig>> {
        self.members.lock().get(&member).cloned()
    }
}

/// openraft's network factory for one simulated member.
pub struct MemoryNetwork {
    me: NodeId,
    fabric: Arc<Fabric>,
}

impl RaftNetworkFactory<TypeConfig> for MemoryNetwork {
    type Network = MemoryLink;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> MemoryLink {
        MemoryLink {
            from: self.me,
            to: target,
            fabric: self.fabric.clone(),
        }
    }
}

/// A link from one simulated member to another.
pub struct MemoryLink {
    from: NodeId,
    to: NodeId,
    fabric: Arc<Fabric>,
}

fn lost(what: &str) -> NetworkError {
    NetworkError::new(&std::io::Error::other(what.to_string()))
}

impl MemoryLink {
    /// Carries `request` to the target and its answer back, within `ttl`.
    async fn exchange<Q, R, E, F, Fut>(
        &self,
        kind: RpcKind,
        request: Q,
        ttl: Duration,
        call: F,
    ) -> Result<Result<R, RaftError<NodeId, E>>, NetworkError>
    where
        Q: Clone + Send + 'static,
        R: Send + 'static,
        E: std::error::Error + Send + 'static,
        F: Fn(Raft<TypeConfig>, Q) -> Fut,
        Fut: Future<Output = Result<R, RaftError<NodeId, E>>> + Send + 'static,
    {
        let exchange = async {
            let there = self.fabric.links.leg(self.from, self.to, kind);
            tokio::time::sleep(there.delay).await;
            if there.dropped {
                return Err(lost("request lost"));
            }
            let Some(raft) = self.fabric.raft(self.to) else {
                return Err(lost("target down"));
            };
            if there.duplicate {
                let copy = call(raft.clone(), request.clone());
                super::runtime::spawn(async move {
                    let _ = copy.await;
                });
            }
            let answer = match call(raft, request).await {
                // A target killed under the call never answers.
                Err(RaftError::Fatal(_)) => return Err(lost("target stopped")),
                answer => answer,
            };
            let back = self.fabric.links.leg(self.to, self.from, kind);
            tokio::time::sleep(back.delay).await;
            if back.dropped {
                return Err(lost("response lost"));
            }
            Ok(answer)
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(result) => result,
            Err(_) => Err(lost("timed out")),
        }
    }
}

#[allow(clippy::result_large_err)] // openraft's error types
fn rpc_result<R, E: std::error::Error>(
    target: NodeId,
    result: Result<Result<R, RaftError<NodeId, E>>, NetworkError>,
) -> Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
    match result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) => Err(RPCError::RemoteError(RemoteError::new(target, err))),
        Err(err) => Err(RPCError::Network(err)),
    }
}

impl RaftNetwork<TypeConfig> for MemoryLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let result = self
            .exchange(
                RpcKind::Append,
                rpc,
                option.hard_ttl(),
                |raft, rpc| async move { raft.append_entries(rpc).await },
            )
            .await;
        rpc_result(self.to, result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let result = self
            .exchange(
                RpcKind::Snapshot,
                rpc,
                option.hard_ttl(),
                |raft, rpc| async move { raft.install_snapshot(rpc).await },
            )
            .await;
        rpc_result(self.to, result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let (vote, last_log_id) = (rpc.vote, rpc.last_log_id);
        let result = self
            .exchange(
                RpcKind::Vote,
                rpc,
                option.hard_ttl(),
                |raft, rpc| async move { raft.vote(rpc).await },
            )
            .await;
        let granted = matches!(&result, Ok(Ok(response)) if response.vote_granted);
        if !granted && self.fabric.count_vote_twice.load(Ordering::Relaxed) {
            let term = vote.leader_id().term;
            let mut doubled = self.fabric.doubled.lock();
            if doubled.get(&self.from) != Some(&term) {
                doubled.insert(self.from, term);
                return Ok(VoteResponse::new(vote, last_log_id, true));
            }
        }
        rpc_result(self.to, result)
    }
}
