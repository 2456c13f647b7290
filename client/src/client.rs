//! The async client: one TCP connection to `ordo serve` (or to the leader
//! of an ordo cluster), pipelined, with reconnect-and-resend for
//! exactly-once.
//!
//! A [`Client`] owns one connection, driven by background tasks: a writer
//! fed by a channel of encoded frames, a reader that matches each
//! [`Response`] to its waiting caller by `request_id`, and a supervisor
//! that reconnects when the connection is lost. Any number of calls, from
//! any number of tasks, may be in flight at once; `Client` is cheap to
//! clone and every clone shares the connection.
//!
//! Every request gets the next request id (from 1) of this client's
//! `client_id`, which is random and kept across reconnects. When the
//! connection drops, every request still waiting for its answer is resent
//! on the new connection with the *same* client id and request id, so the
//! server's exactly-once table answers it with its original outcome instead
//! of running it twice. Only if reconnecting fails does a caller see
//! [`ClientError::ConnectionLost`], and then the outcome is unknown.
//!
//! # Clusters
//!
//! [`ClientConfig::addr`] may list several servers, `"A,B,C"` (or build
//! the configuration with [`ClientConfig::cluster`]). [`Client::connect`]
//! tries them in order and keeps the first that accepts the handshake.
//! Calls and deploys must reach the leader: a follower answers them with
//! [`ResponseBody::NotLeader`] and does not run them. The client then
//! moves its whole connection, never failing the request:
//!
//! - `NotLeader { leader: Some(addr) }`: reconnect to `addr` (even if it
//!   is not in the list), at once the first time (and the first time
//!   after waiting out an election), unless `addr` is one the client is
//!   avoiding (below).
//! - `NotLeader { leader: None }` (an election is in progress), or naming
//!   an avoided address (the followers have not noticed yet that their
//!   leader froze or died): wait briefly (50 ms, then 100 ms between
//!   asks) and try the next server in the list.
//! - The connection is lost: try the next server in the list, with a
//!   backoff (50 ms doubling up to 500 ms) once attempts fail.
//! - The connection stalls: requests are in flight on it and nothing at
//!   all has come back for [`ClientConfig::stall_timeout`] (1 s by
//!   default). A frozen process (`SIGSTOP`, a long GC-like pause) or a
//!   hung machine keeps its TCP connection open and silent, so without
//!   this its requests would wait out the whole request timeout while the
//!   rest of the cluster elects a new leader. The client drops the
//!   connection and moves on exactly as if it had been lost. Only a client
//!   that lists more than one server does this: with a single server there
//!   is nowhere else to go, and a slow server must not be hammered with
//!   reconnects, so its requests simply wait (up to the request timeout).
//!
//! The client remembers the addresses that just stalled or failed a
//! connection attempt (refused, timed out, handshake refused), including
//! the servers [`Client::connect`] skipped, for [`AVOID_AFTER_FAILURE`]
//! (2 s): the rotation skips them while another server is left, and a
//! `NotLeader` naming one is not followed, so a frozen leader costs one
//! stall timeout and not a connect timeout after every redirect. A list
//! of servers also gets a shorter connect timeout,
//! [`CLUSTER_CONNECT_TIMEOUT_DEFAULT`] (1 s), so a command whose list
//! starts with a frozen node pays that once per connection.
//!
//! Every move resends every request still waiting, with the same client
//! id and request ids (the path a lost connection takes), so the
//! replicated exactly-once table answers a retry with its original
//! outcome. A request is always either answered or failed: with
//! [`ClientError::Timeout`] after [`ClientConfig::request_timeout`], or with
//! [`ClientError::ConnectionLost`] once [`ClientConfig::reconnect_attempts`]
//! connection attempts in a row have failed.
//!
//! # Sessions
//!
//! By default ([`ClientConfig::register_session`]) a client picks a
//! session id (random, with the protocol's
//! [`SESSION_CLIENT_ID_TAG`](crate::protocol::SESSION_CLIENT_ID_TAG)) and
//! registers it through the log before its first call or deploy (a client
//! that only asks for status, the procedures or stale reads logs
//! nothing and registers nothing), so the server keeps
//! this client's answers for retries whatever other clients do, until the
//! session is ended ([`Client::end_session`]) or expires: only the least
//! recently active sessions expire, when the server's session limit or
//! its stored-result budget is reached.
//!
//! A request under an expired session is not run; it fails with
//! [`ClientError::SessionExpired`], and so does every later request of
//! this client, without being sent. The client does not register again
//! by itself: a request that was waiting may have run before the session
//! expired (on an earlier attempt, before a reconnect), and resending it
//! under a new session would run it a second time. Make a new `Client`,
//! and check the effects of the requests that failed before retrying
//! them. A retry whose original outcome was too large for the server to
//! keep fails with [`ClientError::ResultNotRetained`]: it ran once.
//!
//! Reads choose their [`ReadConsistency`] ([`Client::read`]):
//! `Linearizable` goes through the log like any call, `Stale` runs on
//! whichever node the client is connected to, at that node's position.
//! A client's stale reads are monotonic: each asks for at least the
//! highest position the client has seen ([`Client::observed_position`]),
//! and a node that has not got there (restarted and still catching up, or
//! a lagging follower) waits briefly or answers `Behind`, which the client
//! retries, on the next server if it lists several, within its request
//! timeout. So a stale read never shows an older state than one this
//! client saw before, or than its own writes.
//!
//! ```no_run
//! use ordo_client::{Client, ReadConsistency};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ordo_client::ClientError> {
//! let client = Client::connect("10.0.0.1:7878,10.0.0.2:7878,10.0.0.3:7878").await?;
//! client.call::<_, ()>("transfer", &(1u64, 2u64, 100i64)).await?;
//! let balance = client.read::<_, u64>("balance", &2u64, ReadConsistency::Stale).await?;
//! println!("account 2 held {} at seq {}", balance.value, balance.position);
//! # Ok(())
//! # }
//! ```
//!
//! The background tasks are spawned on the tokio runtime that runs
//! [`Client::connect`]; they stop when the last clone of the client is
//! dropped.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use ordo_frame::{ReadFrameError, read_frame};

use crate::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, HANDSHAKE_FRAME_BYTES_MAX, Hello, ModuleDescription,
    PROTOCOL_VERSION, ProcedureDescription, ProtocolError, RefusalReason, Request, RequestBody,
    RequestRefusal, Response, ResponseBody, SESSION_CLIENT_ID_TAG, SessionRequest, StatusInfo,
    Welcome, decode_payload, encode_frame,
};

/// Default [`ClientConfig::connect_timeout`] for one server: TCP connect
/// plus handshake.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default [`ClientConfig::connect_timeout`] when [`ClientConfig::addr`]
/// lists several servers: a frozen member accepts TCP connections (the
/// kernel does) but never answers the handshake, and with others to try
/// waiting long on one only delays the move.
pub const CLUSTER_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Default [`ClientConfig::request_timeout`]: submit to answer, reconnects
/// included.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::reconnect_attempts`]. With the backoff (none,
/// then 50 ms doubling up to 500 ms) twenty failed attempts in a row span
/// about 8 s plus the connect timeouts: long enough for a node restart on
/// a small log, or for a cluster to elect a new leader (a few seconds)
/// while the attempts rotate through its servers.
pub const RECONNECT_ATTEMPTS_DEFAULT: u32 = 20;
/// Default [`ClientConfig::stall_timeout`]: a little under the time an
/// ordo cluster takes to notice a frozen leader and elect another (0.9 to
/// 1.4 s with the default Raft timing), and far above the time a live node
/// takes to send something back.
pub const STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// How long an address that stalled, or failed a connection attempt, is
/// avoided: the client does not wait on it again, nor follow a
/// `NotLeader` that names it, until this has passed. Long enough to cover
/// an election (after which the followers name the new leader), short
/// enough that a leader wrongly taken for frozen is back soon.
pub const AVOID_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// Addresses remembered as avoided at most (the oldest is forgotten
/// first); a list is a handful of servers, a named leader maybe one more.
const AVOIDED_ADDRS_MAX: usize = 16;

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Longest wait between asks while a cluster elects a leader (a
/// `NotLeader` naming nobody, or naming an avoided address): the client
/// sees the new leader at most this long after it is elected.
const ELECTION_POLL_MAX: Duration = Duration::from_millis(100);
const IO_BUFFER_BYTES: usize = 64 << 10;

/// How to reach a server and how patient to be with it.
///
/// Build one with [`ClientConfig::new`] and change the public fields.
///
/// ```no_run
/// use std::time::Duration;
/// use ordo_client::{Client, ClientConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ordo_client::ClientError> {
/// let config = ClientConfig {
///     token: Some("client-secret".into()),
///     request_timeout: Duration::from_secs(5),
///     ..ClientConfig::new("127.0.0.1:7878")
/// };
/// let client = Client::connect_with(config).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's `host:port`, or a cluster's servers separated by
    /// commas (`"A,B,C"`; spaces and empty items are ignored, see
    /// [`ClientConfig::servers`]).
    pub addr: String,
    /// The client token, sent in the handshake, if the server requires one.
    pub token: Option<String>,
    /// The admin token, sent with every deploy.
    pub admin_token: Option<String>,
    /// Largest frame payload sent or accepted. A larger answer from the
    /// server closes the connection with [`ClientError::Protocol`].
    pub frame_bytes_max: usize,
    /// Limit on the TCP connect plus the handshake, for each attempt:
    /// [`CONNECT_TIMEOUT_DEFAULT`] (5 s) for one server, and
    /// [`CLUSTER_CONNECT_TIMEOUT_DEFAULT`] (1 s) when [`ClientConfig::new`]
    /// is given a list of several.
    pub connect_timeout: Duration,
    /// Limit on one request, from submission to its answer, including any
    /// reconnects and moves to the leader on the way.
    pub request_timeout: Duration,
    /// How many connection attempts in a row may fail, after the
    /// connection is lost or moves to the leader, or when a request is made
    /// while disconnected, before the waiting requests fail with
    /// [`ClientError::ConnectionLost`]. Each attempt tries the next server
    /// (or the leader a follower named). 0 never reconnects: once its
    /// connection is lost, the client is done, and a follower's
    /// `NotLeader` fails the requests with [`ClientError::NotLeader`].
    pub reconnect_attempts: u32,
    /// How long a connection to one of a cluster's servers may stay silent
    /// while requests are in flight on it before the client gives up on
    /// that server: it then drops the connection and moves to the next
    /// server in the list, resending every waiting request with the same
    /// ids, exactly as if the connection had been lost (the move counts
    /// toward the backoff like a loss; a successful connection afterwards
    /// uses up no [`ClientConfig::reconnect_attempts`]). This is what gets
    /// requests away from a frozen or hung leader, whose TCP connection
    /// stays open but says nothing.
    ///
    /// Anything received on the connection (any answer, even part of one)
    /// restarts the clock, and so does sending a request while none was in
    /// flight: a server that is slow but keeps answering is never left,
    /// and an idle connection never stalls.
    ///
    /// Applies only when [`ClientConfig::addr`] lists more than one server
    /// and reconnects are allowed: a single server is never abandoned for
    /// being slow (there is nowhere else to go, and reconnecting would only
    /// add load to it); its requests wait up to
    /// [`ClientConfig::request_timeout`]. `None` (or zero) turns the
    /// detector off.
    pub stall_timeout: Option<Duration>,
    /// Register a session through the log before the first call or
    /// deploy (true by default; see "Sessions" in the module docs).
    /// Without one the client gets an unregistered id, whose exactly-once
    /// memory may be dropped to make room for other unregistered clients.
    pub register_session: bool,
    /// Speak TLS with this configuration (the server runs `ordo serve
    /// --tls-cert`); `None` speaks plain TCP. Build one that trusts your
    /// CA with [`crate::tls::client_config`]. The server's certificate must
    /// name the host of the address dialled (an IP SAN for an IP address).
    /// With TLS, the tokens never cross the network in clear.
    ///
    /// ```no_run
    /// # fn example() -> Result<(), ordo_client::tls::TlsConfigError> {
    /// let config = ordo_client::ClientConfig {
    ///     tls: Some(ordo_client::tls::client_config("ca.pem".as_ref())?),
    ///     ..ordo_client::ClientConfig::new("10.0.0.1:7878")
    /// };
    /// # Ok(())
    /// # }
    /// ```
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// A configuration for `addr` (`host:port`) with no tokens and the
    /// default limits: [`FRAME_BYTES_MAX_DEFAULT`], [`CONNECT_TIMEOUT_DEFAULT`],
    /// [`REQUEST_TIMEOUT_DEFAULT`], [`RECONNECT_ATTEMPTS_DEFAULT`] and
    /// [`STALL_TIMEOUT_DEFAULT`].
    ///
    /// ```no_run
    /// let config = ordo_client::ClientConfig::new("127.0.0.1:7878");
    /// assert_eq!(config.reconnect_attempts, ordo_client::RECONNECT_ATTEMPTS_DEFAULT);
    /// ```
    ///
    /// `addr` may list a cluster's servers separated by commas:
    ///
    /// ```
    /// let config = ordo_client::ClientConfig::new("10.0.0.1:7878, 10.0.0.2:7878");
    /// assert_eq!(config.servers(), ["10.0.0.1:7878", "10.0.0.2:7878"]);
    /// ```
    pub fn new(addr: impl Into<String>) -> ClientConfig {
        let mut config = ClientConfig {
            addr: addr.into(),
            token: None,
            admin_token: None,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            reconnect_attempts: RECONNECT_ATTEMPTS_DEFAULT,
            stall_timeout: Some(STALL_TIMEOUT_DEFAULT),
            register_session: true,
            tls: None,
        };
        if config.servers().len() > 1 {
            config.connect_timeout = CLUSTER_CONNECT_TIMEOUT_DEFAULT;
        }
        config
    }

    /// A configuration for a cluster's servers (each `host:port`), with
    /// [`ClientConfig::new`]'s defaults; the same as passing them joined
    /// with commas.
    ///
    /// ```
    /// use ordo_client::ClientConfig;
    ///
    /// let config = ClientConfig::cluster(["10.0.0.1:7878", "10.0.0.2:7878", "10.0.0.3:7878"]);
    /// assert_eq!(config.addr, "10.0.0.1:7878,10.0.0.2:7878,10.0.0.3:7878");
    /// assert_eq!(config.servers().len(), 3);
    /// ```
    pub fn cluster<I, S>(servers: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let servers: Vec<String> = servers.into_iter().map(Into::into).collect();
        ClientConfig::new(servers.join(","))
    }

    /// The servers [`ClientConfig::addr`] lists, in order: split at commas,
    /// trimmed, empty items left out. Empty if `addr` names none, which
    /// [`Client::connect_with`] refuses with [`ClientError::NoServers`].
    ///
    /// ```
    /// use ordo_client::ClientConfig;
    ///
    /// assert_eq!(ClientConfig::new("a:1, b:2,").servers(), ["a:1", "b:2"]);
    /// assert!(ClientConfig::new(" , ").servers().is_empty());
    /// ```
    pub fn servers(&self) -> Vec<String> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Shows the tokens as `<redacted>`, so configurations can be logged.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |token: &Option<String>| token.as_ref().map(|_| "<redacted>");
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("token", &redacted(&self.token))
            .field("admin_token", &redacted(&self.admin_token))
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("stall_timeout", &self.stall_timeout)
            .field("register_session", &self.register_session)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A committed call's raw answer, from [`Client::call_raw`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::{CallOutcome, Encoding};
///
/// let CallOutcome { seq, result, .. } = client
///     .call_raw("balance", Encoding::Json, br#"{"id": 7}"#.to_vec())
///     .await?;
/// println!("committed at {seq}: {}", String::from_utf8_lossy(&result));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// The sequence number the call committed at.
    pub seq: u64,
    /// The procedure's result, in the request's encoding.
    pub result: Vec<u8>,
    /// Fuel the procedure's call used.
    pub fuel_used: u64,
}

/// A page of a node's procedure log, from [`Client::logs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<crate::protocol::ProcedureLogLine>,
    /// Where the next page starts.
    pub next_seq: u64,
    /// The oldest transaction whose lines the node still keeps.
    pub oldest_seq: u64,
}

/// A committed call's decoded answer, from [`Client::call`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::Called;
///
/// let Called { value, seq } = client.call::<u64, u64>("balance", &7).await?;
/// println!("account 7 holds {value} as of seq {seq}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Called<R> {
    /// The procedure's result.
    pub value: R,
    /// The sequence number the call committed at.
    pub seq: u64,
}

/// How fresh a read must be, for [`Client::read`] and [`Client::read_raw`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::ReadConsistency;
///
/// // Sees every call committed before it was sent; costs a log entry.
/// let now = client.read::<_, u64>("balance", &7u64, ReadConsistency::Linearizable).await?;
/// // Cheap, from the connected node, possibly behind the leader.
/// let recent = client.read::<_, u64>("balance", &7u64, ReadConsistency::Stale).await?;
/// println!("{} at seq {}, {} at seq {}", now.value, now.position, recent.value, recent.position);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadConsistency {
    /// Runs on the node the client is connected to, leader or not, at that
    /// node's current position, without going through the log
    /// ([`RequestBody::Read`]). It may miss recent commits of other
    /// clients (a follower can lag the leader), but never goes back in
    /// time for one [`Client`]: it runs at or after every position the
    /// client has seen, its own writes included
    /// ([`Client::observed_position`]), and a node behind that waits or is
    /// retried (different `Client`s may still see different positions). It
    /// costs no log entry and spreads load over the followers. The
    /// procedure must be read-only.
    Stale,
    /// Goes through the log like a call, so it sees every call committed
    /// before it was sent; its position is the sequence number it ran at.
    Linearizable,
    /// A time-travel read ([`RequestBody::ReadAt`]): the state as of this
    /// past position (after the entry with that sequence number), rebuilt
    /// by a standalone node from its kept snapshots and log (`ordo serve
    /// --retain-positions`). Needs [`ClientConfig::admin_token`]; a
    /// position older than the node keeps is refused with the oldest it
    /// can read, and one read runs at a time per node.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::ReadConsistency;
    ///
    /// let then = client.read::<_, i64>("balance", &7u64, ReadConsistency::AsOf(1_234)).await?;
    /// assert_eq!(then.position, 1_234);
    /// # Ok(())
    /// # }
    /// ```
    AsOf(u64),
}

/// A read's raw answer, from [`Client::read_raw`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::{Encoding, ReadConsistency, ReadOutcome};
///
/// let ReadOutcome { position, result } = client
///     .read_raw("balance", Encoding::Json, br#"{"id": 7}"#.to_vec(), ReadConsistency::Stale)
///     .await?;
/// println!("as of seq {position}: {}", String::from_utf8_lossy(&result));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The sequence number the read saw the state at: the answering node's
    /// position for a stale read, the read's own `seq` for a linearizable
    /// one.
    pub position: u64,
    /// The procedure's result, in the request's encoding.
    pub result: Vec<u8>,
}

/// A read's decoded answer, from [`Client::read`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::{ReadConsistency, ReadValue};
///
/// let ReadValue { value, position } = client
///     .read::<u64, u64>("balance", &7, ReadConsistency::Stale)
///     .await?;
/// println!("account 7 held {value} at seq {position}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadValue<R> {
    /// The procedure's result.
    pub value: R,
    /// The sequence number the read saw the state at (see
    /// [`ReadOutcome::position`]).
    pub position: u64,
}

/// A successful deploy, from [`Client::deploy`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// let wasm = std::fs::read("bank.wasm").expect("the module");
/// let deployed = client.deploy("bank", &wasm).await?;
/// println!("{} ({}) at seq {}: {:?}", deployed.name, deployed.sha256, deployed.seq, deployed.procedures);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The sequence number the deploy took effect at.
    pub seq: u64,
    /// The module's name.
    pub name: String,
    /// Hex of the module's SHA-256.
    pub sha256: String,
    /// The procedures the module exports.
    pub procedures: Vec<String>,
}

/// Everything a [`Client`] call can fail with. Each message says what
/// happened and what to do next, on one line.
///
/// Refusals (`Overloaded`, `Unauthorized`, `BadRequest`, `DeployRejected`,
/// `Unavailable`) mean the request was not run. `Aborted`,
/// `UnknownProcedure` and `BadArguments` mean it was sequenced and wrote
/// nothing. `ConnectionLost`, `Timeout` and `Protocol` may leave the
/// outcome unknown: the request may or may not have run. `SessionExpired`
/// means this attempt did not run (an earlier attempt may have);
/// `ResultNotRetained` means it ran once and its result is gone.
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) {
/// use ordo_client::ClientError;
///
/// match client.call::<(u64, u64, u64), ()>("transfer", &(1, 2, 100)).await {
///     Ok(called) => println!("committed at seq {}", called.seq),
///     Err(ClientError::Aborted { kind, message, .. }) if kind == "user" => {
///         println!("refused by the procedure: {message}")
///     }
///     Err(ClientError::Overloaded) => println!("busy; try again shortly"),
///     Err(err) => eprintln!("{err}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened (or timed out). The reason
    /// is the error's `source` (`{:#}` with anyhow prints both, once).
    #[error("cannot connect to {addr} (is `ordo serve` running at {addr}?)")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// [`ClientConfig::addr`] names no server (see [`ClientConfig::servers`]).
    #[error(
        "no server address in {addr:?}; give `host:port`, or a cluster's servers separated by commas"
    )]
    NoServers { addr: String },
    /// [`ClientConfig::addr`] lists several servers and none accepted the
    /// connection; `last` is the last server's error. (With one server,
    /// connecting fails with that server's error itself.)
    #[error("cannot connect to any of {}; the last one failed with: {last}", .tried.join(", "))]
    NoServerReachable {
        /// Every server tried, in order.
        tried: Vec<String>,
        #[source]
        last: Box<ClientError>,
    },
    /// A follower answered `NotLeader` and [`ClientConfig::reconnect_attempts`]
    /// is 0, so the client did not move to the leader. The request was not
    /// run on that node.
    #[error(
        "the server is not the cluster's leader ({}) and did not run the request; connect to the leader, or allow reconnects (ClientConfig::reconnect_attempts) so the client follows it",
        leader_note(.leader)
    )]
    NotLeader { leader: Option<String> },
    /// The TLS handshake failed: the server's certificate is not signed by
    /// a CA in [`ClientConfig::tls`], does not name the host dialled, or
    /// the server does not speak TLS at all.
    #[error("TLS handshake with {addr} failed: {message}; {hint}")]
    Tls {
        addr: String,
        message: String,
        hint: &'static str,
    },
    /// The server answered the handshake with something other than a
    /// protocol-v1 welcome, or hung up during it.
    #[error(
        "handshake with {addr} failed: {message}; check that it is `ordo serve` speaking protocol v{PROTOCOL_VERSION}"
    )]
    Handshake { addr: String, message: String },
    /// The server refused the client token (at connect) or the admin token
    /// (on a deploy).
    #[error(
        "the server refused the credentials; set the token it expects: the client token to connect (`--token` / ORDO_CLIENT_TOKEN; `ClientConfig::token` in Rust), the admin token to deploy, back up, scan, read the past or read procedure logs (`--admin-token` / ORDO_ADMIN_TOKEN; `ClientConfig::admin_token`)"
    )]
    Unauthorized,
    /// The server refused the connection for another reason.
    #[error("the server refused the connection ({reason:?}): {message}; {}", refusal_hint(.reason))]
    Refused {
        reason: RefusalReason,
        message: String,
    },
    /// Too many requests in flight on the server; this one was not run.
    #[error(
        "the server is overloaded (too many requests in flight) and did not run the request; retry after a short pause"
    )]
    Overloaded,
    /// The request was malformed or over a server limit; it was not run.
    #[error("the server rejected the request: {0}; fix the request (it was not run)")]
    BadRequest(String),
    /// The module failed validation before reaching the log.
    #[error("the module was rejected: {0}; fix the module and deploy again")]
    DeployRejected(String),
    /// The node is stopping or has failed; the request was not run.
    #[error("the server is unavailable: {0}; the request was not run, retry once the node is back")]
    Unavailable(String),
    /// The procedure (or deploy) aborted at `seq` and wrote nothing.
    /// `kind` is the engine's stable abort kind (`user`, `out_of_fuel`, ...).
    #[error("the transaction aborted at seq {seq} ({kind}): {message}; it wrote nothing")]
    Aborted {
        seq: u64,
        kind: String,
        message: String,
        /// Fuel the call used before it aborted (0 if it never ran).
        fuel_used: u64,
    },
    /// No procedure of that name is deployed (an abort of kind
    /// `unknown_procedure`, sequenced at `seq`).
    #[error(
        "no procedure `{procedure}` is deployed ({message}); check the name with `ordo procedures` (`Client::procedures` in Rust) or deploy its module"
    )]
    UnknownProcedure {
        procedure: String,
        message: String,
        seq: u64,
    },
    /// The procedure could not decode its arguments (an abort of kind
    /// `bad_arguments`, sequenced at `seq`).
    #[error(
        "the procedure rejected its arguments: {message}; check they match its parameters (`ordo procedures`, `ordo describe`)"
    )]
    BadArguments {
        message: String,
        /// The abort's sequence number; `None` when the node refused the
        /// arguments before logging them (they do not match the schema).
        seq: Option<u64>,
    },
    /// A typed call's argument types are not the procedure's parameter
    /// types (their signatures differ); nothing was logged. `detail` names
    /// the first parameter that differs, with the expected and given types.
    #[error(
        "`{procedure}` was not called: {detail}; pass the procedure's parameter types (see `ordo describe {procedure}`, or generate bindings with `ordo generate rust`)"
    )]
    SignatureMismatch { procedure: String, detail: String },
    /// The typed arguments could not be encoded with postcard.
    #[error("cannot encode the arguments: {0}; pass a type postcard can serialize")]
    Encode(String),
    /// The call committed (or the read ran), but its result does not
    /// decode as the type (or, for JSON, the UTF-8) asked for. `seq` is the
    /// call's sequence number, or the position a stale read ran at.
    #[error(
        "`{procedure}` ran at seq {seq} but its result does not decode: {message}; ask for the result type the procedure returns"
    )]
    Decode {
        procedure: String,
        seq: u64,
        message: String,
    },
    /// The request does not fit in one frame; it was not sent.
    #[error(
        "the request is {bytes} bytes, over the {max}-byte frame limit; send less (or raise frame_bytes_max on both sides)"
    )]
    TooLarge { bytes: usize, max: usize },
    /// A stale read found every node it asked behind the position this
    /// client has already seen ([`Client::observed_position`]) until its
    /// [`ClientConfig::request_timeout`] ran out; nothing ran. Reading at
    /// an older position would have gone back in time.
    #[error(
        "the read wants position {wanted} or later (this client has seen it) but the node has executed only up to {applied}, and no node caught up within {after:?}; retry when the cluster has caught up, or read through the log (`ordo call` without `--stale`; `ReadConsistency::Linearizable` in Rust)"
    )]
    Behind {
        applied: u64,
        wanted: u64,
        after: Duration,
    },
    /// No answer within [`ClientConfig::request_timeout`].
    #[error("no answer within {after:?}; {}", outcome_note(*.outcome_unknown))]
    Timeout {
        after: Duration,
        /// False only if the request was never handed to a connection.
        outcome_unknown: bool,
    },
    /// The connection was lost and every reconnect attempt failed.
    #[error("the connection to the server was lost and reconnecting failed; {}", outcome_note(*.outcome_unknown))]
    ConnectionLost {
        /// False only if the request was never handed to a connection.
        outcome_unknown: bool,
    },
    /// The server sent a frame over [`ClientConfig::frame_bytes_max`] or one
    /// that does not decode; the connection was closed, and every request
    /// in flight on it failed with this error (their outcome is unknown).
    #[error(
        "the server broke the protocol ({0}), so the connection was closed; requests in flight may or may not have run: check the server's version, or raise frame_bytes_max"
    )]
    Protocol(ProtocolError),
    /// This client's session is not open on the server (it expired while
    /// idle, or under the server's stored-result budget, or was ended), so
    /// the request was not run under it; every later request of this
    /// client fails the same way without being sent. If the request had
    /// been sent before (a reconnect resends), it may have run before the
    /// session expired. See "Sessions" in the module docs.
    #[error(
        "the client's session is no longer open on the server, so the request was not run now ({message}); create a new Client, and since a request that failed this way may have run on an earlier attempt, check its effect before retrying it"
    )]
    SessionExpired { message: String },
    /// A retry (after a reconnect) of a request that ran once, at `seq`,
    /// whose outcome the server did not keep (too large, or over its
    /// budget for stored outcomes). Nothing ran again.
    #[error(
        "the request ran once, at seq {seq}, but its outcome was not kept for retries ({message}); read the data it changed to learn its result"
    )]
    ResultNotRetained { seq: u64, message: String },
    /// The server answered with a response of the wrong kind.
    #[error(
        "the server answered a {expected} request with {got}; client and server disagree on the protocol, check their versions"
    )]
    UnexpectedResponse {
        expected: &'static str,
        got: &'static str,
    },
}

fn refusal_hint(reason: &RefusalReason) -> &'static str {
    match reason {
        RefusalReason::BadHandshake => {
            "check that the client's settings (protocol version, TLS) match the server's"
        }
        RefusalReason::Unauthorized => "set the client token the server expects",
        RefusalReason::TooManyConnections => "retry later, or raise the server's connection limit",
    }
}

fn leader_note(leader: &Option<String>) -> String {
    match leader {
        Some(leader) => format!("the leader is at {leader}"),
        None => "no leader is known: an election is in progress".to_string(),
    }
}

fn outcome_note(outcome_unknown: bool) -> &'static str {
    if outcome_unknown {
        "the request may or may not have run: check before retrying it (is `ordo serve` still running?)"
    } else {
        "the request was never sent, so retrying it is safe once the server is reachable"
    }
}

/// A connection to an ordo server. Cheap to clone; every clone shares the
/// connection, and calls from many tasks are pipelined on it.
///
/// ```no_run
/// use ordo_client::Client;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ordo_client::ClientError> {
/// let client = Client::connect("127.0.0.1:7878").await?;
/// let calls = (0..100u64).map(|id| {
///     let client = client.clone();
///     tokio::spawn(async move { client.call::<u64, u64>("balance", &id).await })
/// });
/// for call in calls {
///     let balance = call.await.expect("task")?;
///     println!("{} at seq {}", balance.value, balance.seq);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

/// Shared by all clones of one client; dropping it stops the background
/// tasks.
struct Handle {
    core: Arc<Core>,
    _shutdown: oneshot::Sender<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.handle.core.config.addr)
            .field(
                "client_id",
                &format_args!("{:032x}", self.handle.core.client_id),
            )
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `addr` (`host:port`) with [`ClientConfig::new`]'s
    /// defaults and performs the handshake.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ordo_client::ClientError> {
    /// let client = ordo_client::Client::connect("127.0.0.1:7878").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(addr: impl Into<String>) -> Result<Client, ClientError> {
        Client::connect_with(ClientConfig::new(addr)).await
    }

    /// Connects with `config` and performs the handshake. The first
    /// connection is not retried: a refused connection is
    /// [`ClientError::Connect`], a refused token [`ClientError::Unauthorized`].
    /// With several servers listed, each is tried once, in order, and the
    /// first to accept the handshake is kept (leader or not: the first call
    /// finds the leader); if none does, the error is
    /// [`ClientError::NoServerReachable`].
    ///
    /// ```no_run
    /// use ordo_client::{Client, ClientConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ordo_client::ClientError> {
    /// let mut config = ClientConfig::new("db.internal:7878");
    /// config.token = Some("client-secret".into());
    /// let client = Client::connect_with(config).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(config: ClientConfig) -> Result<Client, ClientError> {
        let servers = config.servers();
        if servers.is_empty() {
            return Err(ClientError::NoServers {
                addr: config.addr.clone(),
            });
        }
        let client_id = if config.register_session {
            ((SESSION_CLIENT_ID_TAG as u128) << 64) | (fresh_client_id() as u64 as u128)
        } else {
            fresh_client_id()
        };
        let mut last_error = None;
        let mut opened = None;
        for (index, addr) in servers.iter().enumerate() {
            match open(&config, addr, client_id).await {
                Ok((stream, position)) => {
                    opened = Some((index, stream, position));
                    break;
                }
                Err(err) => last_error = Some(err),
            }
        }
        let Some((index, stream, welcomed_at)) = opened else {
            let last = last_error.expect("at least one server was tried");
            return Err(if servers.len() == 1 {
                last
            } else {
                ClientError::NoServerReachable {
                    tried: servers,
                    last: Box::new(last),
                }
            });
        };
        let addr = servers[index].clone();
        // The servers before it just refused or timed out: not the first
        // places to go when this connection is lost.
        let skipped = servers[..index].to_vec();
        let mut route = Route::new(servers, index);
        let now = Instant::now();
        for failed in &skipped {
            route.avoid(failed, now);
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            config,
            client_id,
            state: Mutex::new(State {
                next_request_id: 1,
                in_flight: BTreeMap::new(),
                link: None,
                connected: None,
                generation: 0,
            }),
            observed: AtomicU64::new(welcomed_at),
            answered: AtomicBool::new(false),
            session_expired: AtomicBool::new(false),
            registered: tokio::sync::OnceCell::new(),
            events: events_tx,
        });
        let generation = 1;
        let tasks = start_link(&core, stream, addr, generation);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        tokio::spawn(supervise(
            core.clone(),
            events_rx,
            shutdown_rx,
            tasks,
            route,
            generation,
        ));
        Ok(Client {
            handle: Arc::new(Handle {
                core,
                _shutdown: shutdown_tx,
            }),
        })
    }

    /// Ends this client's session on the server (a log entry): the server
    /// frees the answers it kept for it, and every later request of this
    /// client fails with [`ClientError::SessionExpired`]. Call it when done
    /// with a client that registered one ([`ClientConfig::register_session`]),
    /// so that its session does not wait out its expiry. Only call it once
    /// every request's answer has arrived: a request still waiting loses
    /// its exactly-once retry.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// client.call::<_, ()>("transfer", &(1u64, 2u64, 100i64)).await?;
    /// client.end_session().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn end_session(&self) -> Result<(), ClientError> {
        let core = &self.handle.core;
        // A client that never sent a call or deploy never registered.
        if core.registered.initialized() && !core.session_expired.load(Ordering::Relaxed) {
            self.change_session(SessionRequest::End).await?;
        }
        core.session_expired.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Fails fast once the session is known to be gone, and registers it
    /// before the first logged request (once, whichever caller gets
    /// there first; the others wait for it). A failed registration is
    /// tried again by the next request.
    async fn ensure_session(&self) -> Result<(), ClientError> {
        let core = &self.handle.core;
        if core.session_expired.load(Ordering::Relaxed) {
            return Err(ClientError::SessionExpired {
                message: "an earlier request found it expired, or it was ended".to_string(),
            });
        }
        if !core.config.register_session {
            return Ok(());
        }
        core.registered
            .get_or_try_init(|| self.change_session(SessionRequest::Register))
            .await
            .map(|_| ())
    }

    async fn change_session(&self, change: SessionRequest) -> Result<(), ClientError> {
        match self.send(RequestBody::Session(change)).await? {
            ResponseBody::Committed { .. } => Ok(()),
            ResponseBody::Aborted {
                seq,
                kind,
                message,
                fuel_used,
            } => Err(abort_error("session", seq, kind, message, fuel_used)),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("session", &other)),
        }
    }

    /// This client's identity for exactly-once, random per client and kept
    /// across reconnects.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) {
    /// println!("client {:032x}", client.client_id());
    /// # }
    /// ```
    pub fn client_id(&self) -> u128 {
        self.handle.core.client_id
    }

    /// The address of the server the client is connected to right now, or
    /// `None` between connections. With a cluster it changes as the client
    /// follows the leader (it is then the address the follower named).
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) {
    /// if let Some(addr) = client.connected_addr() {
    ///     println!("talking to {addr}");
    /// }
    /// # }
    /// ```
    pub fn connected_addr(&self) -> Option<String> {
        self.handle.core.lock().connected.clone()
    }

    /// Calls `procedure` with arguments already encoded in `encoding`; the
    /// result comes back in the same encoding.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::Encoding;
    ///
    /// let args = postcard::to_stdvec(&(1u64, 2u64, 100i64)).expect("encodes");
    /// let outcome = client.call_raw("transfer", Encoding::Postcard, args).await?;
    /// println!("committed at seq {}", outcome.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_raw(
        &self,
        procedure: &str,
        encoding: Encoding,
        args: Vec<u8>,
    ) -> Result<CallOutcome, ClientError> {
        let body = self
            .request(RequestBody::Call {
                procedure: procedure.to_string(),
                encoding,
                args,
                signature: None,
            })
            .await?;
        call_outcome(procedure, body, None)
    }

    /// Calls `procedure` with postcard arguments encoded from types whose
    /// schema has `signature` ([`schema_cache::args_signature`]): checked
    /// like [`Client::call`], for callers that encode their arguments ahead
    /// of time (load generators, generated bindings). A mismatch is a
    /// [`ClientError::SignatureMismatch`] with the server's description.
    ///
    /// [`schema_cache::args_signature`]: crate::schema_cache::args_signature
    pub async fn call_signed_raw(
        &self,
        procedure: &str,
        args: Vec<u8>,
        signature: [u8; 16],
    ) -> Result<CallOutcome, ClientError> {
        let body = self
            .request(RequestBody::Call {
                procedure: procedure.to_string(),
                encoding: Encoding::Postcard,
                args,
                signature: Some(signature),
            })
            .await?;
        call_outcome(procedure, body, None)
    }

    /// Calls `procedure` with `args` encoded with postcard and decodes its
    /// result as `R` (trailing bytes count as a decode failure).
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// // transfer(from: u64, to: u64, amount: i64): a u64 amount would be
    /// // refused (ClientError::SignatureMismatch), not misread.
    /// let moved = client.call::<_, ()>("transfer", &(1u64, 2u64, 100i64)).await?;
    /// println!("moved at seq {}", moved.seq);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The call carries the fingerprint of `A`'s schema ([`Schema`]: a
    /// tuple `(A, B)` is two parameters, `()` none, any other type one), and
    /// the server refuses it before logging it unless those are exactly
    /// the procedure's parameter types: a `u64` where the procedure takes
    /// an `i64`, or a struct with its fields in another order, is a
    /// [`ClientError::SignatureMismatch`] naming the parameter. Derive
    /// [`Schema`] on your own argument types, or use the bindings
    /// `ordo generate rust` writes. [`Client::call_raw`] is the unchecked
    /// path.
    ///
    /// [`Schema`]: crate::schema::Schema
    pub async fn call<A, R>(&self, procedure: &str, args: &A) -> Result<Called<R>, ClientError>
    where
        A: Serialize + crate::schema::Schema + ?Sized,
        R: DeserializeOwned,
    {
        let args = encode_args(args)?;
        let body = self
            .request(RequestBody::Call {
                procedure: procedure.to_string(),
                encoding: Encoding::Postcard,
                args,
                signature: Some(crate::schema_cache::args_signature::<A>()),
            })
            .await?;
        let given: GivenArgs = ordo_schema::fingerprint_of_args::<A>;
        let CallOutcome { seq, result, .. } = call_outcome(procedure, body, Some(&given))?;
        let value = decode_result(procedure, seq, &result)?;
        Ok(Called { value, seq })
    }

    /// Calls `procedure` with JSON arguments; returns the JSON result and
    /// the sequence number it committed at.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// let (json, seq) = client.call_json("balance", r#"{"id": 7}"#).await?;
    /// println!("{json} at seq {seq}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_json(
        &self,
        procedure: &str,
        json: &str,
    ) -> Result<(String, u64), ClientError> {
        let (result, outcome) = self.call_json_outcome(procedure, json).await?;
        Ok((result, outcome.seq))
    }

    /// [`Client::call_json`], with the whole [`CallOutcome`] (its
    /// `result` left empty: the JSON text is the first element).
    pub async fn call_json_outcome(
        &self,
        procedure: &str,
        json: &str,
    ) -> Result<(String, CallOutcome), ClientError> {
        let mut outcome = self
            .call_raw(procedure, Encoding::Json, json.as_bytes().to_vec())
            .await?;
        let result = std::mem::take(&mut outcome.result);
        Ok((json_result(procedure, outcome.seq, result)?, outcome))
    }

    /// Runs the read-only `procedure` with arguments already encoded in
    /// `encoding`, as fresh as `consistency` asks: `Linearizable` is a call
    /// through the log (the position is its `seq`), `Stale` a
    /// [`RequestBody::Read`] answered by the connected node at its own
    /// position, whatever its role.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::{Encoding, ReadConsistency};
    ///
    /// let args = postcard::to_stdvec(&7u64).expect("encodes");
    /// let read = client
    ///     .read_raw("balance", Encoding::Postcard, args, ReadConsistency::Stale)
    ///     .await?;
    /// println!("{} result bytes as of seq {}", read.result.len(), read.position);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_raw(
        &self,
        procedure: &str,
        encoding: Encoding,
        args: Vec<u8>,
        consistency: ReadConsistency,
    ) -> Result<ReadOutcome, ClientError> {
        match consistency {
            ReadConsistency::Linearizable => {
                let CallOutcome { seq, result, .. } =
                    self.call_raw(procedure, encoding, args).await?;
                return Ok(ReadOutcome {
                    position: seq,
                    result,
                });
            }
            ReadConsistency::AsOf(at) => {
                let body = RequestBody::ReadAt {
                    admin_token: self.handle.core.config.admin_token.clone(),
                    at,
                    procedure: procedure.to_string(),
                    encoding,
                    args,
                };
                return match self.request(body).await? {
                    ResponseBody::ReadDone { position, result } => {
                        Ok(ReadOutcome { position, result })
                    }
                    ResponseBody::Aborted {
                        seq,
                        kind,
                        message,
                        fuel_used,
                    } => Err(abort_error(procedure, seq, kind, message, fuel_used)),
                    ResponseBody::Refused { reason, message } => {
                        Err(refusal_error(reason, message))
                    }
                    other => Err(unexpected("a time-travel read", &other)),
                };
            }
            ReadConsistency::Stale => {}
        }
        let core = &self.handle.core;
        let timeout = core.config.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut retries = 0u32;
        loop {
            // Read afresh at every attempt: an answer meanwhile (to this
            // or another request) may have raised it.
            let min_position = core.observed.load(Ordering::Relaxed);
            let body = self
                .send_until(
                    RequestBody::Read {
                        procedure: procedure.to_string(),
                        encoding,
                        args: args.clone(),
                        min_position,
                    },
                    deadline,
                )
                .await?;
            return match body {
                ResponseBody::ReadDone { position, result } => Ok(ReadOutcome { position, result }),
                ResponseBody::Behind { applied, wanted } => {
                    // The node has not reached what this client has seen
                    // (restarting, or lagging): nothing ran. Try again,
                    // on the next server if there is one, until the
                    // request's time is up.
                    retries = retries.saturating_add(1);
                    let wait = backoff(retries);
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(ClientError::Behind {
                            applied,
                            wanted,
                            after: timeout,
                        });
                    }
                    core.leave_behind_node();
                    tokio::time::sleep(wait).await;
                    continue;
                }
                ResponseBody::Aborted {
                    seq,
                    kind,
                    message,
                    fuel_used,
                } => Err(abort_error(procedure, seq, kind, message, fuel_used)),
                ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
                other => Err(unexpected("read", &other)),
            };
        }
    }

    /// The highest position this client has seen in any answer: a stale
    /// read's position, a call's, abort's or deploy's `seq`, a status, the
    /// welcome of each connection. Every stale read asks the node for at
    /// least this position, so one client's stale reads never go back in
    /// time, across a node's restart or a move to another node: a node
    /// that is behind waits briefly, and otherwise answers `Behind`, and
    /// the read is retried (on the next server, if several are listed)
    /// within [`ClientConfig::request_timeout`].
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::ReadConsistency;
    ///
    /// let moved = client.call::<_, ()>("transfer", &(1u64, 2u64, 100i64)).await?;
    /// assert!(client.observed_position() >= moved.seq);
    /// // Sees the transfer, whichever node answers.
    /// let balance = client.read::<_, i64>("balance", &2u64, ReadConsistency::Stale).await?;
    /// assert!(balance.position >= moved.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observed_position(&self) -> u64 {
        self.handle.core.observed.load(Ordering::Relaxed)
    }

    /// Raises [`Client::observed_position`] to `position` (it never goes
    /// down): later stale reads of this client run at `position` or
    /// later. Pass on what another client or process has seen, e.g. a
    /// `seq` it wrote at, to read your own writes on a follower
    /// (`ordo call --stale --min-position SEQ` does this).
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client, written_at: u64) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::ReadConsistency;
    ///
    /// client.observe_position(written_at);
    /// let balance = client.read::<_, i64>("balance", &2u64, ReadConsistency::Stale).await?;
    /// assert!(balance.position >= written_at);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_position(&self, position: u64) {
        self.handle.core.observe(position);
    }

    /// Runs the read-only `procedure` with `args` encoded with postcard, as
    /// fresh as `consistency` asks (see [`Client::read_raw`]), and decodes
    /// its result as `R`.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::ReadConsistency;
    ///
    /// let balance = client
    ///     .read::<_, u64>("balance", &7u64, ReadConsistency::Linearizable)
    ///     .await?;
    /// println!("account 7 holds {} as of seq {}", balance.value, balance.position);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read<A, R>(
        &self,
        procedure: &str,
        args: &A,
        consistency: ReadConsistency,
    ) -> Result<ReadValue<R>, ClientError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let args = encode_args(args)?;
        let ReadOutcome { position, result } = self
            .read_raw(procedure, Encoding::Postcard, args, consistency)
            .await?;
        let value = decode_result(procedure, position, &result)?;
        Ok(ReadValue { value, position })
    }

    /// Runs the read-only `procedure` with JSON arguments, as fresh as
    /// `consistency` asks; returns the JSON result and the position it saw.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::ReadConsistency;
    ///
    /// let (json, position) = client
    ///     .read_json("balance", r#"{"id": 7}"#, ReadConsistency::Stale)
    ///     .await?;
    /// println!("{json} as of seq {position}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_json(
        &self,
        procedure: &str,
        json: &str,
        consistency: ReadConsistency,
    ) -> Result<(String, u64), ClientError> {
        let ReadOutcome { position, result } = self
            .read_raw(
                procedure,
                Encoding::Json,
                json.as_bytes().to_vec(),
                consistency,
            )
            .await?;
        Ok((json_result(procedure, position, result)?, position))
    }

    /// Deploys (or upgrades) the module `name` from its `.wasm` bytes,
    /// sending [`ClientConfig::admin_token`].
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// let wasm = std::fs::read("target/wasm32-unknown-unknown/release/bank.wasm").expect("built");
    /// let deployed = client.deploy("bank", &wasm).await?;
    /// println!("deployed {:?} at seq {}", deployed.procedures, deployed.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn deploy(&self, name: &str, wasm: &[u8]) -> Result<Deployed, ClientError> {
        self.deploy_resetting(name, wasm, &[]).await
    }

    /// [`Client::deploy`] that also empties `reset_tables` (their data is
    /// gone) if the deploy succeeds, so a table may change type without a
    /// migration. Development only: a server refuses it unless started
    /// with `--allow-table-reset`.
    pub async fn deploy_resetting(
        &self,
        name: &str,
        wasm: &[u8],
        reset_tables: &[&str],
    ) -> Result<Deployed, ClientError> {
        let body = self
            .request(RequestBody::Deploy {
                name: name.to_string(),
                wasm: wasm.to_vec(),
                admin_token: self.handle.core.config.admin_token.clone(),
                reset_tables: reset_tables.iter().map(|t| t.to_string()).collect(),
            })
            .await?;
        match body {
            ResponseBody::Deployed {
                seq,
                name,
                sha256,
                procedures,
            } => Ok(Deployed {
                seq,
                name,
                sha256,
                procedures,
            }),
            ResponseBody::Aborted {
                seq,
                kind,
                message,
                fuel_used,
            } => Err(abort_error(name, seq, kind, message, fuel_used)),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("deploy", &other)),
        }
    }

    /// Removes the deployed module `name` through the log, with
    /// [`ClientConfig::admin_token`]: from the returned sequence number its
    /// procedures are unknown (its tables' rows stay). A name no module
    /// has aborts with kind `deploy_rejected`.
    pub async fn undeploy(&self, name: &str) -> Result<u64, ClientError> {
        let body = self
            .request(RequestBody::Undeploy {
                name: name.to_string(),
                admin_token: self.handle.core.config.admin_token.clone(),
            })
            .await?;
        match body {
            ResponseBody::Committed { seq, .. } => Ok(seq),
            ResponseBody::Aborted {
                seq,
                kind,
                message,
                fuel_used,
            } => Err(abort_error(name, seq, kind, message, fuel_used)),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("undeploy", &other)),
        }
    }

    /// The connected node's position, hashes and sizes, and its place in
    /// its cluster (role, term, leader). Any node answers, leader or not.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// let status = client.status().await?;
    /// println!("at seq {}, state hash {}", status.position, status.state_hash);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        match self.request(RequestBody::Status).await? {
            ResponseBody::Status(status) => Ok(status),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("status", &other)),
        }
    }

    /// The procedures deployed on the node, with their parameters where the
    /// module describes them.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// for procedure in client.procedures().await? {
    ///     println!("{}.{} {:?}", procedure.module, procedure.name, procedure.params);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    /// Every deployed module's procedure and table schemas (what `ordo
    /// describe` prints).
    pub async fn describe(&self) -> Result<Vec<ModuleDescription>, ClientError> {
        match self.request(RequestBody::Describe).await? {
            ResponseBody::Described(modules) => Ok(modules),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("a description", &other)),
        }
    }

    /// One step of a backup of a standalone node (see the protocol's
    /// "Backups"), with [`ClientConfig::admin_token`]. All steps of one
    /// backup must go over one connection: after a reconnect, begin again.
    pub async fn backup_step(
        &self,
        step: crate::protocol::BackupStep,
    ) -> Result<crate::protocol::BackupAnswer, ClientError> {
        let body = RequestBody::Backup {
            admin_token: self.handle.core.config.admin_token.clone(),
            step,
        };
        match self.request(body).await? {
            ResponseBody::Backup(answer) => Ok(answer),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("a backup answer", &other)),
        }
    }

    /// One page of committed rows with `start <= key < end` (no `end`: to
    /// the last key) at the connected node's position, at most `limit`
    /// (the node answers at most 1,000), with [`ClientConfig::admin_token`]
    /// (see the protocol's "Scans"). Returns the position, the rows in key
    /// order, and whether more follow: ask again from just after the last
    /// key (`last + [0]`).
    pub async fn scan_raw(
        &self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<(u64, Vec<(Vec<u8>, Vec<u8>)>, bool), ClientError> {
        let body = RequestBody::Scan {
            admin_token: self.handle.core.config.admin_token.clone(),
            start,
            end,
            limit,
        };
        match self.request(body).await? {
            ResponseBody::Rows {
                position,
                rows,
                more,
            } => {
                self.handle.core.observe(position);
                Ok((position, rows, more))
            }
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("rows", &other)),
        }
    }

    /// One page of the connected node's procedure log (see the protocol's
    /// "Fuel and procedure logs"), with [`ClientConfig::admin_token`]:
    /// lines of transactions at `since_seq` or later, only `procedure`'s
    /// if given, at `level_max` (1 error ... 5 trace) or more severe, at
    /// most `limit` (the node answers at most 1,000). Ask again from the
    /// answer's `next_seq`.
    pub async fn logs(
        &self,
        since_seq: u64,
        procedure: Option<String>,
        level_max: u8,
        limit: u32,
    ) -> Result<LogPage, ClientError> {
        let body = RequestBody::Logs {
            admin_token: self.handle.core.config.admin_token.clone(),
            since_seq,
            procedure,
            level_max,
            limit,
        };
        match self.request(body).await? {
            ResponseBody::Logs {
                lines,
                next_seq,
                oldest_seq,
            } => Ok(LogPage {
                lines,
                next_seq,
                oldest_seq,
            }),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("procedure log lines", &other)),
        }
    }

    pub async fn procedures(&self) -> Result<Vec<ProcedureDescription>, ClientError> {
        match self.request(RequestBody::Procedures).await? {
            ResponseBody::Procedures(procedures) => Ok(procedures),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("procedures", &other)),
        }
    }

    /// Sends one request and waits for its answer (or its failure).
    async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        if matches!(
            body,
            RequestBody::Call { .. } | RequestBody::Deploy { .. } | RequestBody::Undeploy { .. }
        ) {
            self.ensure_session().await?;
        }
        self.send(body).await
    }

    /// Sends one request as it is and waits for its answer (or its
    /// failure).
    async fn send(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let deadline = tokio::time::Instant::now() + self.handle.core.config.request_timeout;
        self.send_until(body, deadline).await
    }

    /// [`Client::send`], failing with [`ClientError::Timeout`] at
    /// `deadline` (a retried read shares one request timeout).
    async fn send_until(
        &self,
        body: RequestBody,
        deadline: tokio::time::Instant,
    ) -> Result<ResponseBody, ClientError> {
        let core = &self.handle.core;
        let (reply_tx, reply_rx) = oneshot::channel();
        let (request_id, acked_below) = {
            let mut state = core.lock();
            let request_id = state.next_request_id;
            state.next_request_id += 1;
            state.in_flight.insert(
                request_id,
                InFlight {
                    frame: None,
                    sent: None,
                    reply: reply_tx,
                },
            );
            let smallest = *state.in_flight.keys().next().expect("just inserted");
            (request_id, smallest)
        };
        // From here on, leaving early (an error, a timeout, or the caller
        // dropping this future) takes the request out of `in_flight`.
        let guard = InFlightGuard { core, request_id };
        let request = Request {
            request_id,
            acked_below,
            body,
        };
        let frame =
            encode_frame(&request, core.config.frame_bytes_max).map_err(|err| match err {
                ProtocolError::FrameTooLarge { bytes, max } => ClientError::TooLarge { bytes, max },
                other => ClientError::Encode(other.to_string()),
            })?;
        core.submit(request_id, Arc::new(frame));
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(answer)) => {
                // `Core::complete` (or `fail_all`) already took the entry
                // out: skip the guard's second lock.
                std::mem::forget(guard);
                if let Ok(ResponseBody::Aborted { kind, .. }) = &answer
                    && kind == SESSION_EXPIRED
                {
                    core.session_expired.store(true, Ordering::Relaxed);
                }
                answer
            }
            // The sender went away unanswered: the client is shutting down.
            Ok(Err(_)) => Err(ClientError::ConnectionLost {
                outcome_unknown: true,
            }),
            Err(_) => Err(ClientError::Timeout {
                after: core.config.request_timeout,
                outcome_unknown: guard.forget(),
            }),
        }
    }
}

fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>, ClientError> {
    postcard::to_stdvec(args).map_err(|err| ClientError::Encode(err.to_string()))
}

/// Decodes a postcard result (trailing bytes count as a failure).
fn decode_result<R: DeserializeOwned>(
    procedure: &str,
    seq: u64,
    result: &[u8],
) -> Result<R, ClientError> {
    decode_payload::<R>(result).map_err(|err| ClientError::Decode {
        procedure: procedure.to_string(),
        seq,
        message: match err {
            ProtocolError::Malformed(message) => message,
            other => other.to_string(),
        },
    })
}

fn json_result(procedure: &str, seq: u64, result: Vec<u8>) -> Result<String, ClientError> {
    String::from_utf8(result).map_err(|err| ClientError::Decode {
        procedure: procedure.to_string(),
        seq,
        message: format!("the JSON result is not UTF-8: {err}"),
    })
}

fn abort_error(
    procedure: &str,
    seq: u64,
    kind: String,
    message: String,
    fuel_used: u64,
) -> ClientError {
    match kind.as_str() {
        "unknown_procedure" => ClientError::UnknownProcedure {
            procedure: procedure.to_string(),
            message,
            seq,
        },
        "bad_arguments" => ClientError::BadArguments {
            message,
            seq: Some(seq),
        },
        SESSION_EXPIRED => ClientError::SessionExpired { message },
        "result_not_retained" => ClientError::ResultNotRetained { seq, message },
        _ => ClientError::Aborted {
            seq,
            kind,
            message,
            fuel_used,
        },
    }
}

/// The abort kind of a request under a session that is not open.
const SESSION_EXPIRED: &str = "session_expired";

fn refusal_error(reason: RequestRefusal, message: String) -> ClientError {
    match reason {
        RequestRefusal::Overloaded => ClientError::Overloaded,
        RequestRefusal::Unauthorized => ClientError::Unauthorized,
        RequestRefusal::BadRequest => ClientError::BadRequest(message),
        RequestRefusal::DeployRejected => ClientError::DeployRejected(message),
        RequestRefusal::Unavailable => ClientError::Unavailable(message),
        RequestRefusal::BadArguments => ClientError::BadArguments { message, seq: None },
    }
}

/// What `fingerprint_of_args::<A>` returns: the caller's argument shapes.
type GivenArgs = fn() -> (
    ordo_schema::Fingerprint,
    Vec<ordo_schema::Shape>,
    ordo_schema::Registry,
);

/// A call's answer as its outcome or error. With `given` (a typed call,
/// which knows the types it encoded) a signature mismatch names the first
/// parameter that differs; without, it carries the server's message.
/// Synchronous, so the call futures stay as small as before.
fn call_outcome(
    procedure: &str,
    body: ResponseBody,
    given: Option<&GivenArgs>,
) -> Result<CallOutcome, ClientError> {
    match body {
        ResponseBody::Committed {
            seq,
            result,
            fuel_used,
        } => Ok(CallOutcome {
            seq,
            result,
            fuel_used,
        }),
        ResponseBody::Aborted {
            seq,
            kind,
            message,
            fuel_used,
        } => Err(abort_error(procedure, seq, kind, message, fuel_used)),
        ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
        ResponseBody::SignatureMismatch { message, schema } => {
            let detail = match given {
                Some(given) => {
                    let (_, shapes, types) = given();
                    ordo_schema::describe_args_mismatch(
                        &schema.param_names(),
                        (&schema.param_shapes(), &schema.types),
                        (&shapes, &types),
                    )
                }
                None => message,
            };
            Err(ClientError::SignatureMismatch {
                procedure: procedure.to_string(),
                detail,
            })
        }
        other => Err(unexpected("call", &other)),
    }
}

/// The position an answer shows this client: how far the answering node
/// had executed (at least).
fn answer_position(body: &ResponseBody) -> Option<u64> {
    match body {
        ResponseBody::Committed { seq, .. }
        | ResponseBody::Aborted { seq, .. }
        | ResponseBody::Deployed { seq, .. } => Some(*seq),
        ResponseBody::ReadDone { position, .. } => Some(*position),
        ResponseBody::Status(status) => Some(status.position),
        _ => None,
    }
}

fn unexpected(expected: &'static str, body: &ResponseBody) -> ClientError {
    let got = match body {
        ResponseBody::Committed { .. } => "a committed call",
        ResponseBody::Aborted { .. } => "an abort",
        ResponseBody::Deployed { .. } => "a deploy",
        ResponseBody::Status(_) => "a status",
        ResponseBody::Procedures(_) => "a procedure list",
        ResponseBody::Refused { .. } => "a refusal",
        ResponseBody::NotLeader { .. } => "not the leader",
        ResponseBody::ReadDone { .. } => "a stale read",
        ResponseBody::SignatureMismatch { .. } => "a signature mismatch",
        ResponseBody::Described(_) => "a description",
        ResponseBody::Backup(_) => "a backup answer",
        ResponseBody::Behind { .. } => "a node behind the read's position",
        ResponseBody::Rows { .. } => "scanned rows",
        ResponseBody::Logs { .. } => "procedure log lines",
    };
    ClientError::UnexpectedResponse { expected, got }
}

/// A random client id: process-random hasher keys (`RandomState`) over the
/// time, the process id and a counter, so two clients in one process, or
/// in two processes started at once, still differ.
fn fresh_client_id() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let half =
        |salt: u8| RandomState::new().hash_one((salt, nanos, std::process::id(), count)) as u128;
    (half(0) << 64) | half(1)
}

/// What the connection tasks share with the callers.
struct Core {
    config: ClientConfig,
    client_id: u128,
    state: Mutex<State>,
    /// The highest position this client has seen in any answer (a read's
    /// position, a call's or deploy's `seq`, a status, a welcome): stale
    /// reads ask for at least this, so they never go back in time.
    observed: AtomicU64,
    /// Set by a connection's reader when it hands out an answer (any but
    /// `NotLeader`); the supervisor takes it when the connection ends, to
    /// reset the backoff after a connection that was useful.
    answered: AtomicBool,
    /// Set once the server said this client's session is not open (or it
    /// was ended): later logged requests fail without being sent.
    session_expired: AtomicBool,
    /// Set once the session is registered (see `Client::ensure_session`).
    registered: tokio::sync::OnceCell<()>,
    /// To the supervisor.
    events: mpsc::UnboundedSender<Event>,
}

struct State {
    next_request_id: u64,
    /// Requests awaiting their answer, by request id. Its smallest key is
    /// the `acked_below` of the next request.
    in_flight: BTreeMap<u64, InFlight>,
    /// The live connection's writer, if connected.
    link: Option<mpsc::UnboundedSender<Frame>>,
    /// The live connection's server address, if connected.
    connected: Option<String>,
    /// The live connection's generation (see `supervise`), if connected.
    generation: u64,
}

/// An encoded request frame, shared between the in-flight table (for
/// resends) and the writer.
type Frame = Arc<Vec<u8>>;

struct InFlight {
    /// `None` while the caller is still encoding it.
    frame: Option<Frame>,
    /// When it was last handed to a connection (the live one, if there is
    /// one: connecting resends every request); `Some` once it was handed
    /// to any, so the server may have run it.
    sent: Option<Instant>,
    reply: oneshot::Sender<Result<ResponseBody, ClientError>>,
}

enum Event {
    /// A connection's reader or writer stopped, or (made by the supervisor
    /// itself) the connection stalled; `error` is set if the server broke
    /// the protocol.
    Lost {
        generation: u64,
        error: Option<ProtocolError>,
    },
    /// The server answered `NotLeader`: the connection must move, and the
    /// request stays waiting, to be resent after the move. The reader has
    /// stopped.
    NotLeader {
        generation: u64,
        leader: Option<String>,
    },
    /// A node answered a stale read with `Behind`: with other servers
    /// listed, the connection moves to the next one (the read's caller
    /// retries it there).
    Behind { generation: u64 },
    /// A request was submitted while disconnected.
    Wanted,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the
        // table is still consistent enough to keep answering.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Detaches the live connection's writer, so no caller hands a frame
    /// to a connection that is going away without it being resent.
    fn unhook(&self) {
        let mut state = self.lock();
        state.link = None;
        state.connected = None;
    }

    /// Records a request's frame and hands it to the connection, or asks
    /// the supervisor for one.
    fn submit(&self, request_id: u64, frame: Frame) {
        let now = Instant::now();
        let mut state = self.lock();
        let State {
            in_flight, link, ..
        } = &mut *state;
        let Some(entry) = in_flight.get_mut(&request_id) else {
            return; // Already failed (the reconnects ran out meanwhile).
        };
        entry.frame = Some(frame.clone());
        match link {
            Some(link) => {
                // A failed send means the writer has stopped; its `Lost`
                // event is on its way and the resend will carry this one.
                if link.send(frame).is_ok() {
                    entry.sent = Some(now);
                }
            }
            None => {
                drop(state);
                let _ = self.events.send(Event::Wanted);
            }
        }
    }

    /// Hands an answer to its caller. An answer nobody waits for (the
    /// caller timed out, or this is the second answer to a resent request)
    /// is dropped.
    fn complete(&self, response: Response) {
        if let Some(position) = answer_position(&response.body) {
            self.observe(position);
        }
        let entry = self.lock().in_flight.remove(&response.request_id);
        if let Some(entry) = entry {
            let _ = entry.reply.send(Ok(response.body));
        }
    }

    /// Raises the highest position seen to `position`.
    fn observe(&self, position: u64) {
        self.observed.fetch_max(position, Ordering::Relaxed);
    }

    /// Asks the supervisor to leave the live connection for the next
    /// server, if more than one is listed (with one, the caller just waits
    /// and asks the same node again).
    fn leave_behind_node(&self) {
        if self.config.servers().len() < 2 {
            return;
        }
        let generation = {
            let state = self.lock();
            if state.link.is_none() {
                return; // Already moving.
            }
            state.generation
        };
        let _ = self.events.send(Event::Behind { generation });
    }

    /// When the oldest request waiting on the live connection was handed
    /// to it, if any is.
    fn oldest_sent(&self) -> Option<Instant> {
        self.lock()
            .in_flight
            .values()
            .filter_map(|entry| entry.sent)
            .min()
    }

    /// Fails every waiting request; `error` is told whether each was sent.
    fn fail_all(&self, error: impl Fn(bool) -> ClientError) {
        let failed = std::mem::take(&mut self.lock().in_flight);
        for entry in failed.into_values() {
            let _ = entry.reply.send(Err(error(entry.sent.is_some())));
        }
    }
}

/// Removes its request from the in-flight table when the caller stops
/// waiting, whatever the reason.
struct InFlightGuard<'a> {
    core: &'a Core,
    request_id: u64,
}

impl InFlightGuard<'_> {
    /// Stops waiting; returns whether the request may have reached the
    /// server.
    fn forget(self) -> bool {
        let entry = self.core.lock().in_flight.remove(&self.request_id);
        entry.is_none_or(|entry| entry.sent.is_some())
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.core.lock().in_flight.remove(&self.request_id);
    }
}

/// A connection that has been welcomed, plain or TLS. Each kind drives its
/// own monomorphic reader and writer (see [`start_link`]), so the plain
/// path costs no dispatch and no extra copy.
enum Connected {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A stream that splits into halves a reader and a writer task can own.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn split_halves(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for tokio_rustls::client::TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// What to tell the user about a failed TLS handshake.
fn tls_failure(addr: &str, err: &io::Error) -> ClientError {
    let rustls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match rustls_error {
        Some(rustls::Error::InvalidCertificate(_)) => {
            "check that --tls-ca (ORDO_TLS_CA) is the CA that signed the server's certificate, and that the certificate names the host you dial"
        }
        _ => {
            "check that the server serves TLS (`ordo serve --tls-cert`); a plain server cannot answer a TLS client"
        }
    };
    ClientError::Tls {
        addr: addr.to_string(),
        message: err.to_string(),
        hint,
    }
}

/// Opens a connection to `addr` (over TLS if configured) and performs the
/// handshake; returns it with the position the welcome carried.
async fn open(
    config: &ClientConfig,
    addr: &str,
    client_id: u128,
) -> Result<(Connected, u64), ClientError> {
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let stream = connect_tcp(config, addr).await?;
    let Some(tls) = &config.tls else {
        return handshake(config, addr, client_id, stream, deadline)
            .await
            .map(|(stream, position)| (Connected::Plain(stream), position));
    };
    let Some(server_name) = crate::tls::server_name(addr) else {
        return Err(ClientError::Tls {
            addr: addr.to_string(),
            message: "its host is not a DNS name or an IP address".to_string(),
            hint: "dial the name or address the server's certificate carries",
        });
    };
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = match tokio::time::timeout_at(deadline, connector.connect(server_name, stream))
        .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(tls_failure(addr, &err)),
        Err(_) => {
            return Err(ClientError::Tls {
                addr: addr.to_string(),
                message: format!("no TLS handshake within {:?}", config.connect_timeout),
                hint: "check that the server serves TLS (`ordo serve --tls-cert`) and is not overloaded",
            });
        }
    };
    handshake(config, addr, client_id, stream, deadline)
        .await
        .map(|(stream, position)| (Connected::Tls(Box::new(stream)), position))
}

async fn connect_tcp(config: &ClientConfig, addr: &str) -> Result<TcpStream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(connect_error(err)),
        Err(_) => {
            return Err(connect_error(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {:?}", config.connect_timeout),
            )));
        }
    };
    // Requests are small and latency-bound; the writer batches them itself.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends the hello on `stream` and waits for the welcome, until `deadline`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    config: &ClientConfig,
    addr: &str,
    client_id: u128,
    mut stream: S,
    deadline: tokio::time::Instant,
) -> Result<(S, u64), ClientError> {
    let handshake_error = |message: String| ClientError::Handshake {
        addr: addr.to_string(),
        message,
    };
    // The server reads no more than this before the handshake is done.
    let hello = encode_frame(
        &Hello::new(client_id, config.token.clone()),
        HANDSHAKE_FRAME_BYTES_MAX,
    )
    .map_err(|err| {
        handshake_error(format!(
            "cannot encode the hello (is the token too long?): {err}"
        ))
    })?;
    let handshake = async {
        stream.write_all(&hello).await.map_err(ReadFrameError::Io)?;
        stream.flush().await.map_err(ReadFrameError::Io)?;
        read_frame(&mut stream, HANDSHAKE_FRAME_BYTES_MAX).await
    };
    let payload = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(ReadFrameError::Closed)) => {
            return Err(handshake_error(
                "the server closed the connection before welcoming us".into(),
            ));
        }
        Ok(Err(ReadFrameError::Io(err))) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(handshake_error(
                "the server closed the connection before welcoming us".into(),
            ));
        }
        Ok(Err(err)) => return Err(handshake_error(err.to_string())),
        Err(_) => {
            return Err(handshake_error(format!(
                "no welcome within {:?}",
                config.connect_timeout
            )));
        }
    };
    match decode_payload::<Welcome>(&payload) {
        Ok(Welcome::Accepted {
            version, position, ..
        }) if version == PROTOCOL_VERSION => Ok((stream, position)),
        Ok(Welcome::Accepted { version, .. }) => Err(handshake_error(format!(
            "the server welcomed us with protocol version {version}, this client speaks {PROTOCOL_VERSION}"
        ))),
        Ok(Welcome::Refused {
            reason: RefusalReason::Unauthorized,
            ..
        }) => Err(ClientError::Unauthorized),
        Ok(Welcome::Refused { reason, message }) => Err(ClientError::Refused { reason, message }),
        Err(err) => Err(handshake_error(format!(
            "the welcome does not decode: {err}"
        ))),
    }
}

/// One connection's reader and writer tasks; dropping this stops them and
/// so closes the socket.
struct LinkTasks {
    /// The server this connection goes to.
    addr: String,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// When the reader last received anything, for the stall detector.
    received: Arc<Received>,
}

/// When a connection last received anything: set by its reader at every
/// read that brings bytes, read by the supervisor's stall detector.
struct Received {
    /// When the connection was made; the clock starts there.
    since: Instant,
    /// Nanoseconds after `since` of the last read that brought bytes.
    after_nanos: AtomicU64,
}

impl Received {
    fn new() -> Received {
        Received {
            since: Instant::now(),
            after_nanos: AtomicU64::new(0),
        }
    }

    fn mark(&self) {
        let nanos = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.after_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_nanos(self.after_nanos.load(Ordering::Relaxed))
    }
}

/// A connection's read half that marks [`Received`] whenever bytes come
/// in, so a large answer trickling in over a slow link does not look like
/// a stall.
struct MarkReceived<R> {
    inner: R,
    received: Arc<Received>,
}

impl<R: AsyncRead + Unpin> AsyncRead for MarkReceived<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.received.mark();
        }
        polled
    }
}

impl Drop for LinkTasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Makes `connected` (to `addr`) the live connection: resends every
/// request still waiting (same request ids), then starts its reader and
/// writer.
fn start_link(core: &Arc<Core>, connected: Connected, addr: String, generation: u64) -> LinkTasks {
    match connected {
        Connected::Plain(stream) => start_link_on(core, stream, addr, generation),
        Connected::Tls(stream) => start_link_on(core, *stream, addr, generation),
    }
}

fn start_link_on<S: Transport>(
    core: &Arc<Core>,
    stream: S,
    addr: String,
    generation: u64,
) -> LinkTasks {
    let (read, write) = stream.split_halves();
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    let received = Arc::new(Received::new());
    let read = MarkReceived {
        inner: read,
        received: received.clone(),
    };
    {
        let now = Instant::now();
        let mut state = core.lock();
        for entry in state.in_flight.values_mut() {
            if let Some(frame) = &entry.frame {
                let _ = frames_tx.send(frame.clone());
                entry.sent = Some(now);
            }
        }
        state.link = Some(frames_tx);
        state.connected = Some(addr.clone());
        state.generation = generation;
    }
    LinkTasks {
        addr,
        reader: tokio::spawn(run_reader(core.clone(), read, generation)),
        writer: tokio::spawn(run_writer(
            core.events.clone(),
            write,
            frames_rx,
            generation,
        )),
        received,
    }
}

/// Hands each answer to its caller, until the connection ends or the
/// server says it is not the leader. A `NotLeader` answer is not handed
/// out: its request stays waiting, and the move resends it.
async fn run_reader<R: AsyncRead + Unpin>(core: Arc<Core>, read: MarkReceived<R>, generation: u64) {
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, read);
    let mut answered = false;
    let lost = |error| Event::Lost { generation, error };
    let event = loop {
        let payload = match read_frame(&mut reader, core.config.frame_bytes_max).await {
            Ok(payload) => payload,
            Err(ReadFrameError::Closed | ReadFrameError::Io(_)) => break lost(None),
            Err(ReadFrameError::TooLarge(err)) => break lost(Some(err.into())),
        };
        match decode_payload::<Response>(&payload) {
            Ok(Response {
                body: ResponseBody::NotLeader { leader },
                ..
            }) => {
                let leader = leader.filter(|leader| !leader.trim().is_empty());
                break Event::NotLeader { generation, leader };
            }
            Ok(response) => {
                if !answered {
                    answered = true;
                    core.answered.store(true, Ordering::Relaxed);
                }
                core.complete(response);
            }
            Err(err) => break lost(Some(err)),
        }
    };
    let _ = core.events.send(event);
}

async fn run_writer<W: AsyncWrite + Unpin>(
    events: mpsc::UnboundedSender<Event>,
    write: W,
    mut frames: mpsc::UnboundedReceiver<Frame>,
    generation: u64,
) {
    let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, write);
    if write_frames(&mut writer, &mut frames).await.is_err() {
        let _ = events.send(Event::Lost {
            generation,
            error: None,
        });
    }
}

/// Writes frames as they come, flushing whenever the queue runs dry, so a
/// burst of pipelined requests goes out in few writes. Before flushing it
/// lets the other ready tasks run once: when a batch of answers wakes
/// many callers, their next requests then share one write instead of
/// costing a syscall each.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &mut mpsc::UnboundedReceiver<Frame>,
) -> io::Result<()> {
    while let Some(frame) = frames.recv().await {
        writer.write_all(&frame).await?;
        loop {
            while let Ok(frame) = frames.try_recv() {
                writer.write_all(&frame).await?;
            }
            tokio::task::yield_now().await;
            if frames.is_empty() {
                break;
            }
        }
        writer.flush().await?;
    }
    Ok(())
}

/// Owns the connection's life: on a loss, a stall or a `NotLeader`,
/// reconnects (to the next server, or to the leader named) and resends; on
/// a protocol violation, fails what was in flight; on shutdown, stops.
///
/// A stall (see [`ClientConfig::stall_timeout`]) is handled as a loss of
/// the live connection (same route: the next server, backoff counted like
/// a loss; same resend), and the stalled address is avoided for
/// [`AVOID_AFTER_FAILURE`].
async fn supervise(
    core: Arc<Core>,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut shutdown: oneshot::Receiver<()>,
    tasks: LinkTasks,
    mut route: Route,
    mut generation: u64,
) {
    let mut tasks = Some(tasks);
    let stall_timeout = core.config.stall_timeout.filter(|timeout| {
        !timeout.is_zero() && route.servers.len() > 1 && core.config.reconnect_attempts > 0
    });
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            () = stalled(&core, tasks.as_ref(), stall_timeout) => {
                if let Some(stalled) = &tasks {
                    route.avoid(&stalled.addr, Instant::now());
                }
                Event::Lost {
                    generation,
                    error: None,
                }
            }
        };
        match event {
            Event::Lost {
                generation: lost,
                error,
            } => {
                if lost != generation || tasks.is_none() {
                    continue; // An older connection, already replaced.
                }
                core.unhook();
                tasks = None;
                route.lost(core.answered.swap(false, Ordering::Relaxed));
                if let Some(error) = error {
                    // Not transient: a resend would likely meet the same
                    // answer. Fail what was in flight; reconnect lazily.
                    core.fail_all(|_| ClientError::Protocol(error.clone()));
                    continue;
                }
            }
            Event::NotLeader {
                generation: from,
                leader,
            } => {
                if from != generation || tasks.is_none() {
                    continue; // Already moved.
                }
                core.unhook();
                tasks = None;
                if core.config.reconnect_attempts == 0 {
                    core.fail_all(|_| ClientError::NotLeader {
                        leader: leader.clone(),
                    });
                    continue;
                }
                route.not_leader(core.answered.swap(false, Ordering::Relaxed), leader);
            }
            Event::Behind { generation: from } => {
                if from != generation || tasks.is_none() {
                    continue; // Already moved.
                }
                core.unhook();
                drop(tasks.take());
                // Treated as a loss after useful work: the next server, at
                // once (the read's caller paces its retries itself).
                route.lost(core.answered.swap(false, Ordering::Relaxed));
            }
            Event::Wanted => {
                if tasks.is_some() {
                    continue;
                }
            }
        }
        tasks = tokio::select! {
            _ = &mut shutdown => break,
            tasks = reconnect(&core, &mut route, &mut generation) => tasks,
        };
    }
}

/// Resolves once the live connection `link` has stalled: a request has
/// been waiting on it, and nothing has been received on it, for `timeout`.
/// Never resolves without a connection or a timeout.
///
/// The clock runs from the later of the last receive and the moment the
/// oldest waiting request was handed to the connection, so an idle
/// connection never stalls and every answer restarts it. It sleeps until
/// the earliest moment a stall is possible (a full `timeout` while
/// nothing waits), then looks again, so it costs one look at the waiting
/// requests per `timeout` or so.
async fn stalled(core: &Core, link: Option<&LinkTasks>, timeout: Option<Duration>) {
    let (Some(link), Some(timeout)) = (link, timeout) else {
        return std::future::pending().await;
    };
    loop {
        let now = Instant::now();
        let deadline = match core.oldest_sent() {
            Some(sent) => sent.max(link.received.last()) + timeout,
            None => now + timeout,
        };
        if deadline <= now {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Tries to reconnect while requests are waiting, following `route`; on
/// success they are resent, after `reconnect_attempts` failed attempts in
/// a row they fail.
async fn reconnect(core: &Arc<Core>, route: &mut Route, generation: &mut u64) -> Option<LinkTasks> {
    for _ in 0..core.config.reconnect_attempts {
        if core.lock().in_flight.is_empty() {
            return None; // Nobody is waiting; connect on the next request.
        }
        let (addr, wait) = route.next(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if let Ok((stream, position)) = open(&core.config, &addr, core.client_id).await {
            core.observe(position);
            route.connected(&addr);
            *generation += 1;
            return Some(start_link(core, stream, addr, *generation));
        }
        route.failed(&addr, Instant::now());
    }
    core.fail_all(|sent| ClientError::ConnectionLost {
        outcome_unknown: sent,
    });
    None
}

/// Where the next connection attempt goes, and how long to wait first.
///
/// Attempts rotate through the configured servers, except that the leader
/// a follower named is tried next. `streak` counts the moves and failed
/// attempts since a connection last answered something; the wait grows
/// with it (none, then 50 ms doubling up to 500 ms), so an election or a
/// dead cluster is not hammered, while the first move after useful work
/// (to a named leader, or after a lost connection) is immediate. While
/// the cluster has no leader to name, the wait stops growing at
/// [`ELECTION_POLL_MAX`].
///
/// The route remembers the addresses that just stalled or failed a
/// connection attempt ([`AVOID_AFTER_FAILURE`]): the rotation skips them
/// while any other server is left, and a `NotLeader` that names one is
/// not followed (right after a leader freezes or dies, the followers
/// still name it until they elect another), so the client keeps asking
/// the other servers until one names a leader it can reach.
#[derive(Debug)]
struct Route {
    servers: Vec<String>,
    /// Index in `servers` of the server tried last.
    cursor: usize,
    /// The leader a follower named, to try next.
    leader: Option<String>,
    streak: u32,
    /// Moves to a named leader within the streak.
    redirects: u32,
    /// Addresses avoided, and until when (at most `AVOIDED_ADDRS_MAX`).
    avoided: Vec<(String, Instant)>,
    /// The last `NotLeader` left no leader to go to: the cluster is
    /// electing one, and the wait is capped at `ELECTION_POLL_MAX`.
    electing: bool,
}

impl Route {
    /// `servers` must not be empty; `cursor` is the one connected to.
    fn new(servers: Vec<String>, cursor: usize) -> Route {
        assert!(cursor < servers.len());
        Route {
            servers,
            cursor,
            leader: None,
            streak: 0,
            redirects: 0,
            avoided: Vec::new(),
            electing: false,
        }
    }

    /// Ends the streak if the connection that just ended answered
    /// something.
    fn settle(&mut self, answered: bool) {
        if answered {
            self.streak = 0;
            self.redirects = 0;
        }
    }

    /// The connection was lost.
    fn lost(&mut self, answered: bool) {
        self.settle(answered);
        self.electing = false;
        if !answered {
            self.streak += 1;
        }
    }

    /// The server is not the leader; `leader` is the one it named.
    ///
    /// A leader named while the client was waiting out an election is
    /// followed at once: the redirects before the election (to the leader
    /// that then failed) are history, and the backoff after a second
    /// redirect is for followers naming each other, not for the first
    /// news of a new leader. (It used to wait the streak's backoff, 500 ms
    /// after a second of polling, on every other failover.)
    fn not_leader(&mut self, answered: bool, leader: Option<String>) {
        self.settle(answered);
        self.streak += 1;
        if leader.is_some() {
            if self.electing {
                self.redirects = 0;
            }
            self.redirects += 1;
        }
        self.electing = leader.is_none();
        self.leader = leader;
    }

    /// A connection attempt to `addr` failed: it is avoided for a while.
    fn failed(&mut self, addr: &str, now: Instant) {
        self.streak = self.streak.saturating_add(1);
        self.avoid(addr, now);
    }

    /// A connection to `addr` was opened: it is no longer avoided.
    fn connected(&mut self, addr: &str) {
        self.avoided.retain(|(avoided, _)| avoided != addr);
    }

    /// Avoids `addr` until `AVOID_AFTER_FAILURE` after `now`.
    fn avoid(&mut self, addr: &str, now: Instant) {
        self.avoided.retain(|(avoided, _)| avoided != addr);
        if self.avoided.len() >= AVOIDED_ADDRS_MAX {
            self.avoided.remove(0);
        }
        self.avoided
            .push((addr.to_string(), now + AVOID_AFTER_FAILURE));
    }

    fn is_avoided(&self, addr: &str, now: Instant) -> bool {
        self.avoided
            .iter()
            .any(|(avoided, until)| avoided == addr && *until > now)
    }

    /// The next server to try, and how long to wait before trying it.
    fn next(&mut self, now: Instant) -> (String, Duration) {
        self.avoided.retain(|(_, until)| *until > now);
        if let Some(leader) = self.leader.take() {
            if !self.is_avoided(&leader, now) {
                if let Some(index) = self.servers.iter().position(|addr| *addr == leader) {
                    self.cursor = index;
                }
                let wait = if self.redirects <= 1 {
                    Duration::ZERO
                } else {
                    backoff(self.streak)
                };
                return (leader, wait);
            }
            // The follower still names the server that just failed us: it
            // has not noticed yet. Ask the others until they elect; the
            // hint was not followed, so it is no redirect.
            self.electing = true;
            self.redirects = self.redirects.saturating_sub(1);
        }
        let count = self.servers.len();
        let usable = (1..=count)
            .map(|step| (self.cursor + step) % count)
            .find(|&index| !self.is_avoided(&self.servers[index], now));
        // Every server avoided: plain rotation (there is nowhere better).
        self.cursor = usable.unwrap_or((self.cursor + 1) % count);
        let mut wait = backoff(self.streak);
        if self.electing {
            wait = wait.min(ELECTION_POLL_MAX);
        }
        (self.servers[self.cursor].clone(), wait)
    }
}

/// The wait before an attempt after `streak` moves or failures in a row:
/// none, then 50 ms doubling up to 500 ms.
fn backoff(streak: u32) -> Duration {
    match streak {
        0 => Duration::ZERO,
        _ => BACKOFF_FIRST
            .saturating_mul(1 << (streak - 1).min(16))
            .min(BACKOFF_MAX),
    }
}

#[cfg(test)]
mod tests;
