//! Raft RPC between nodes over TCP: length-prefixed postcard frames.
//!
//! A connection starts with a [`Hello`] naming the caller's node id and
//! client address (so followers learn where the leader serves clients),
//! then carries one request and one response at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Checkpoint, TypeConfig};

type NodeId = u64;

/// Largest RPC frame: sixteen entries of up to 32 MiB of arguments each,
/// with room to spare.
const FRAME_BYTES_MAX: usize = 1 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
struct Hello {
    node_id: NodeId,
    client_addr: String,
}

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

/// What this node knows of the others' client addresses.
#[derive(Clone)]
pub struct Peers {
    me: NodeId,
    client_addrs: Arc<Mutex<BTreeMap<NodeId, String>>>,
}

impl Peers {
    pub fn new(me: NodeId, client_addr: String) -> Peers {
        Peers {
            me,
            client_addrs: Arc::new(Mutex::new(BTreeMap::from([(me, client_addr)]))),
        }
    }

    pub fn client_addr(&self, node: NodeId) -> Option<String> {
        self.client_addrs.lock().get(&node).cloned()
    }

    fn hello(&self) -> Hello {
        Hello {
            node_id: self.me,
            client_addr: self.client_addr(self.me).unwrap_or_default(),
        }
    }
}

async fn write_frame(stream: &mut TcpStream, value: &impl Serialize) -> std::io::Result<()> {
    let body = postcard::to_stdvec(value).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

async fn read_frame<V: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<V> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await?;
    let length = u32::from_le_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("raft frame of {length} bytes is over the {FRAME_BYTES_MAX}-byte limit"),
        ));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    postcard::from_bytes(&body)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}

/// Answers peers' RPCs on `listener` until the process ends.
pub async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, peers: Peers, inbox: Inbox) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            raft.clone(),
            peers.clone(),
            inbox.clone(),
        ));
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft<TypeConfig>,
    peers: Peers,
    inbox: Inbox,
) {
    let Ok(hello) = read_frame::<Hello>(&mut stream).await else {
        return;
    };
    if hello.node_id != peers.me {
        peers
            .client_addrs
            .lock()
            .insert(hello.node_id, hello.client_addr);
    }
    while let Ok(request) = read_frame::<Request>(&mut stream).await {
        let response = match request {
            Request::Append(rpc) => Response::Append(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
            Request::Report(mut checkpoints) => {
                let mut inbox = inbox.lock();
                inbox.append(&mut checkpoints);
                let excess = inbox.len().saturating_sub(INBOX_MAX);
                inbox.drain(..excess);
                Response::Report
            }
        };
        if write_frame(&mut stream, &response).await.is_err() {
            return;
        }
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
        Connection {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            stream: None,
        }
    }
}

/// A lazily (re)connected link to one peer.
pub struct Connection {
    target: NodeId,
    addr: String,
    peers: Peers,
    stream: Option<TcpStream>,
}

enum CallError {
    /// Could not connect: the peer is down; openraft backs off.
    Unreachable(std::io::Error),
    /// The connection failed mid-call.
    Network(std::io::Error),
}

impl Connection {
    async fn call(&mut self, request: Request, ttl: Duration) -> Result<Response, CallError> {
        if self.stream.is_none() {
            let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr));
            let mut stream = match connecting.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return Err(CallError::Unreachable(err)),
                Err(_) => {
                    return Err(CallError::Unreachable(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {} timed out", self.addr),
                    )));
                }
            };
            let _ = stream.set_nodelay(true);
            write_frame(&mut stream, &self.peers.hello())
                .await
                .map_err(CallError::Unreachable)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let exchange = async {
            write_frame(stream, &request).await?;
            read_frame::<Response>(stream).await
        };
        let result = match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(CallError::Network(err)),
            Err(_) => Err(CallError::Unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("node {} did not answer within {ttl:?}", self.target),
            ))),
        };
        if result.is_err() {
            // The stream may hold half a frame; start afresh next time.
            self.stream = None;
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
        let metrics = raft.metrics().borrow().clone();
        let Some(leader) = metrics.current_leader.filter(|leader| *leader != peers.me) else {
            continue;
        };
        if outbox.lock().is_empty() {
            continue;
        }
        if link.as_ref().is_none_or(|(to, _)| *to != leader) {
            let Some(node) = metrics.membership_config.membership().get_node(&leader) else {
                continue;
            };
            link = Some((
                leader,
                Connection {
                    target: leader,
                    addr: node.addr.clone(),
                    peers: peers.clone(),
                    stream: None,
                },
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
