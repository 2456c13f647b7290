//! The async client: one TCP connection to `ordo serve`, pipelined, with
//! reconnect-and-resend for exactly-once.
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
//! The background tasks are spawned on the tokio runtime that runs
//! [`Client::connect`]; they stop when the last clone of the client is
//! dropped.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, Hello, PROTOCOL_VERSION,
    ProcedureDescription, ProtocolError, RefusalReason, Request, RequestBody, RequestRefusal,
    Response, ResponseBody, StatusInfo, Welcome, decode_payload, encode_frame, frame_payload_bytes,
};

/// Default [`ClientConfig::connect_timeout`]: TCP connect plus handshake.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default [`ClientConfig::request_timeout`]: submit to answer, reconnects
/// included.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::reconnect_attempts`]. With the backoff (none,
/// then 50 ms doubling up to 1 s) ten attempts span about 5.5 s plus the
/// connect timeouts: long enough for a node restart on a small log.
pub const RECONNECT_ATTEMPTS_DEFAULT: u32 = 10;

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
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
    /// The server's `host:port`.
    pub addr: String,
    /// The client token, sent in the handshake, if the server requires one.
    pub token: Option<String>,
    /// The admin token, sent with every deploy.
    pub admin_token: Option<String>,
    /// Largest frame payload sent or accepted. A larger answer from the
    /// server closes the connection with [`ClientError::Protocol`].
    pub frame_bytes_max: usize,
    /// Limit on the TCP connect plus the handshake, for each attempt.
    pub connect_timeout: Duration,
    /// Limit on one request, from submission to its answer, including any
    /// reconnects on the way.
    pub request_timeout: Duration,
    /// How many times to try reconnecting, after the connection is lost or
    /// when a request is made while disconnected, before the waiting
    /// requests fail with [`ClientError::ConnectionLost`]. 0 never
    /// reconnects: once its connection is lost, the client is done.
    pub reconnect_attempts: u32,
}

impl ClientConfig {
    /// A configuration for `addr` (`host:port`) with no tokens and the
    /// default limits: [`FRAME_BYTES_MAX_DEFAULT`], [`CONNECT_TIMEOUT_DEFAULT`],
    /// [`REQUEST_TIMEOUT_DEFAULT`] and [`RECONNECT_ATTEMPTS_DEFAULT`].
    ///
    /// ```no_run
    /// let config = ordo_client::ClientConfig::new("127.0.0.1:7878");
    /// assert_eq!(config.reconnect_attempts, ordo_client::RECONNECT_ATTEMPTS_DEFAULT);
    /// ```
    pub fn new(addr: impl Into<String>) -> ClientConfig {
        ClientConfig {
            addr: addr.into(),
            token: None,
            admin_token: None,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            reconnect_attempts: RECONNECT_ATTEMPTS_DEFAULT,
        }
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
            .finish()
    }
}

/// A committed call's raw answer, from [`Client::call_raw`].
///
/// ```no_run
/// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
/// use ordo_client::{CallOutcome, Encoding};
///
/// let CallOutcome { seq, result } = client
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
/// outcome unknown: the request may or may not have run.
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
    /// The TCP connection could not be opened (or timed out).
    #[error("cannot connect to {addr}: {source}; is `ordo serve` running at {addr}?")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
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
        "the server refused the credentials; set the token it expects (`ClientConfig::token` to connect, `ClientConfig::admin_token` to deploy)"
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
    },
    /// No procedure of that name is deployed (an abort of kind
    /// `unknown_procedure`).
    #[error(
        "no procedure `{procedure}` is deployed ({message}); check the name with `procedures()` or deploy its module"
    )]
    UnknownProcedure { procedure: String, message: String },
    /// The procedure could not decode its arguments (an abort of kind
    /// `bad_arguments`).
    #[error(
        "the procedure rejected its arguments: {message}; check they match its parameters (see `procedures()`)"
    )]
    BadArguments { message: String },
    /// The typed arguments could not be encoded with postcard.
    #[error("cannot encode the arguments: {0}; pass a type postcard can serialize")]
    Encode(String),
    /// The call committed, but its result does not decode as the type (or,
    /// for JSON, the UTF-8) asked for.
    #[error(
        "`{procedure}` committed at seq {seq} but its result does not decode: {message}; ask for the result type the procedure returns"
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
            "check that client and server speak the same protocol version"
        }
        RefusalReason::Unauthorized => "set the client token the server expects",
        RefusalReason::TooManyConnections => "retry later, or raise the server's connection limit",
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
        let client_id = fresh_client_id();
        let stream = open(&config, client_id).await?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            config,
            client_id,
            state: Mutex::new(State {
                next_request_id: 1,
                in_flight: BTreeMap::new(),
                link: None,
            }),
            events: events_tx,
        });
        let generation = 1;
        let tasks = start_link(&core, stream, generation);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        tokio::spawn(supervise(
            core.clone(),
            events_rx,
            shutdown_rx,
            tasks,
            generation,
        ));
        Ok(Client {
            handle: Arc::new(Handle {
                core,
                _shutdown: shutdown_tx,
            }),
        })
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

    /// Calls `procedure` with arguments already encoded in `encoding`; the
    /// result comes back in the same encoding.
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// use ordo_client::Encoding;
    ///
    /// let args = postcard::to_stdvec(&(1u64, 2u64, 100u64)).expect("encodes");
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
            })
            .await?;
        match body {
            ResponseBody::Committed { seq, result } => Ok(CallOutcome { seq, result }),
            ResponseBody::Aborted { seq, kind, message } => {
                Err(abort_error(procedure, seq, kind, message))
            }
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("call", &other)),
        }
    }

    /// Calls `procedure` with `args` encoded with postcard and decodes its
    /// result as `R` (trailing bytes count as a decode failure).
    ///
    /// ```no_run
    /// # async fn example(client: ordo_client::Client) -> Result<(), ordo_client::ClientError> {
    /// let moved = client.call::<_, u64>("transfer", &(1u64, 2u64, 100u64)).await?;
    /// println!("moved {} at seq {}", moved.value, moved.seq);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<A, R>(&self, procedure: &str, args: &A) -> Result<Called<R>, ClientError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let args = postcard::to_stdvec(args).map_err(|err| ClientError::Encode(err.to_string()))?;
        let CallOutcome { seq, result } =
            self.call_raw(procedure, Encoding::Postcard, args).await?;
        match decode_payload::<R>(&result) {
            Ok(value) => Ok(Called { value, seq }),
            Err(err) => Err(ClientError::Decode {
                procedure: procedure.to_string(),
                seq,
                message: match err {
                    ProtocolError::Malformed(message) => message,
                    other => other.to_string(),
                },
            }),
        }
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
        let CallOutcome { seq, result } = self
            .call_raw(procedure, Encoding::Json, json.as_bytes().to_vec())
            .await?;
        match String::from_utf8(result) {
            Ok(json) => Ok((json, seq)),
            Err(err) => Err(ClientError::Decode {
                procedure: procedure.to_string(),
                seq,
                message: format!("the JSON result is not UTF-8: {err}"),
            }),
        }
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
        let body = self
            .request(RequestBody::Deploy {
                name: name.to_string(),
                wasm: wasm.to_vec(),
                admin_token: self.handle.core.config.admin_token.clone(),
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
            ResponseBody::Aborted { seq, kind, message } => {
                Err(abort_error(name, seq, kind, message))
            }
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("deploy", &other)),
        }
    }

    /// The node's position, hashes and sizes.
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
    pub async fn procedures(&self) -> Result<Vec<ProcedureDescription>, ClientError> {
        match self.request(RequestBody::Procedures).await? {
            ResponseBody::Procedures(procedures) => Ok(procedures),
            ResponseBody::Refused { reason, message } => Err(refusal_error(reason, message)),
            other => Err(unexpected("procedures", &other)),
        }
    }

    /// Sends one request and waits for its answer (or its failure).
    async fn request(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
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
                    sent: false,
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
        match tokio::time::timeout(core.config.request_timeout, reply_rx).await {
            Ok(Ok(answer)) => {
                // `Core::complete` (or `fail_all`) already took the entry
                // out: skip the guard's second lock.
                std::mem::forget(guard);
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

fn abort_error(procedure: &str, seq: u64, kind: String, message: String) -> ClientError {
    match kind.as_str() {
        "unknown_procedure" => ClientError::UnknownProcedure {
            procedure: procedure.to_string(),
            message,
        },
        "bad_arguments" => ClientError::BadArguments { message },
        _ => ClientError::Aborted { seq, kind, message },
    }
}

fn refusal_error(reason: RequestRefusal, message: String) -> ClientError {
    match reason {
        RequestRefusal::Overloaded => ClientError::Overloaded,
        RequestRefusal::Unauthorized => ClientError::Unauthorized,
        RequestRefusal::BadRequest => ClientError::BadRequest(message),
        RequestRefusal::DeployRejected => ClientError::DeployRejected(message),
        RequestRefusal::Unavailable => ClientError::Unavailable(message),
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
}

/// An encoded request frame, shared between the in-flight table (for
/// resends) and the writer.
type Frame = Arc<Vec<u8>>;

struct InFlight {
    /// `None` while the caller is still encoding it.
    frame: Option<Frame>,
    /// Handed to a connection at least once, so the server may have run it.
    sent: bool,
    reply: oneshot::Sender<Result<ResponseBody, ClientError>>,
}

enum Event {
    /// A connection's reader or writer stopped; `error` is set if the
    /// server broke the protocol.
    Lost {
        generation: u64,
        error: Option<ProtocolError>,
    },
    /// A request was submitted while disconnected.
    Wanted,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the
        // table is still consistent enough to keep answering.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request's frame and hands it to the connection, or asks
    /// the supervisor for one.
    fn submit(&self, request_id: u64, frame: Frame) {
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
                entry.sent |= link.send(frame).is_ok();
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
        let entry = self.lock().in_flight.remove(&response.request_id);
        if let Some(entry) = entry {
            let _ = entry.reply.send(Ok(response.body));
        }
    }

    /// Fails every waiting request; `error` is told whether each was sent.
    fn fail_all(&self, error: impl Fn(bool) -> ClientError) {
        let failed = std::mem::take(&mut self.lock().in_flight);
        for entry in failed.into_values() {
            let _ = entry.reply.send(Err(error(entry.sent)));
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
        entry.is_none_or(|entry| entry.sent)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.core.lock().in_flight.remove(&self.request_id);
    }
}

/// Opens a connection and performs the handshake.
async fn open(config: &ClientConfig, client_id: u128) -> Result<TcpStream, ClientError> {
    let addr = &config.addr;
    let connect_error = |source| ClientError::Connect {
        addr: addr.clone(),
        source,
    };
    let handshake_error = |message: String| ClientError::Handshake {
        addr: addr.clone(),
        message,
    };
    let hello = encode_frame(
        &Hello::new(client_id, config.token.clone()),
        config.frame_bytes_max,
    )
    .map_err(|err| handshake_error(format!("cannot encode the hello: {err}")))?;
    let mut stream =
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr.as_str())).await
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
    let handshake = async {
        stream.write_all(&hello).await.map_err(ReadError::Io)?;
        read_frame(&mut stream, config.frame_bytes_max).await
    };
    let payload = match tokio::time::timeout(config.connect_timeout, handshake).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(ReadError::Io(err))) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(handshake_error(
                "the server closed the connection before welcoming us".into(),
            ));
        }
        Ok(Err(ReadError::Io(err))) => return Err(handshake_error(err.to_string())),
        Ok(Err(ReadError::Protocol(err))) => return Err(handshake_error(err.to_string())),
        Err(_) => {
            return Err(handshake_error(format!(
                "no welcome within {:?}",
                config.connect_timeout
            )));
        }
    };
    match decode_payload::<Welcome>(&payload) {
        Ok(Welcome::Accepted { version, .. }) if version == PROTOCOL_VERSION => Ok(stream),
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

enum ReadError {
    Io(io::Error),
    Protocol(ProtocolError),
}

/// Reads one frame's payload; the length is checked before the payload's
/// memory is reserved.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .await
        .map_err(ReadError::Io)?;
    let bytes = frame_payload_bytes(header, frame_bytes_max).map_err(ReadError::Protocol)?;
    let mut payload = vec![0u8; bytes];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(ReadError::Io)?;
    Ok(payload)
}

/// One connection's reader and writer tasks; dropping this stops them and
/// so closes the socket.
struct LinkTasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for LinkTasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Makes `stream` the live connection: resends every request still
/// waiting (same request ids), then starts its reader and writer.
fn start_link(core: &Arc<Core>, stream: TcpStream, generation: u64) -> LinkTasks {
    let (read, write) = stream.into_split();
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    {
        let mut state = core.lock();
        for entry in state.in_flight.values_mut() {
            if let Some(frame) = &entry.frame {
                let _ = frames_tx.send(frame.clone());
                entry.sent = true;
            }
        }
        state.link = Some(frames_tx);
    }
    LinkTasks {
        reader: tokio::spawn(run_reader(core.clone(), read, generation)),
        writer: tokio::spawn(run_writer(
            core.events.clone(),
            write,
            frames_rx,
            generation,
        )),
    }
}

async fn run_reader(core: Arc<Core>, read: OwnedReadHalf, generation: u64) {
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, read);
    let error = loop {
        let payload = match read_frame(&mut reader, core.config.frame_bytes_max).await {
            Ok(payload) => payload,
            Err(ReadError::Io(_)) => break None,
            Err(ReadError::Protocol(err)) => break Some(err),
        };
        match decode_payload::<Response>(&payload) {
            Ok(response) => core.complete(response),
            Err(err) => break Some(err),
        }
    };
    let _ = core.events.send(Event::Lost { generation, error });
}

async fn run_writer(
    events: mpsc::UnboundedSender<Event>,
    write: OwnedWriteHalf,
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

/// Owns the connection's life: on a loss, reconnects and resends; on a
/// protocol violation, fails what was in flight; on shutdown, stops.
async fn supervise(
    core: Arc<Core>,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut shutdown: oneshot::Receiver<()>,
    tasks: LinkTasks,
    mut generation: u64,
) {
    let mut tasks = Some(tasks);
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        match event {
            Event::Lost {
                generation: lost,
                error,
            } => {
                if lost != generation || tasks.is_none() {
                    continue; // An older connection, already replaced.
                }
                // Unhook the writer first, so no caller hands a frame to a
                // connection that is going away without it being resent.
                core.lock().link = None;
                tasks = None;
                if let Some(error) = error {
                    // Not transient: a resend would likely meet the same
                    // answer. Fail what was in flight; reconnect lazily.
                    core.fail_all(|_| ClientError::Protocol(error.clone()));
                    continue;
                }
            }
            Event::Wanted => {
                if tasks.is_some() {
                    continue;
                }
            }
        }
        tasks = tokio::select! {
            _ = &mut shutdown => break,
            tasks = reconnect(&core, &mut generation) => tasks,
        };
    }
}

/// Tries to reconnect while requests are waiting; on success they are
/// resent, after `reconnect_attempts` failures they fail.
async fn reconnect(core: &Arc<Core>, generation: &mut u64) -> Option<LinkTasks> {
    for attempt in 0..core.config.reconnect_attempts {
        if core.lock().in_flight.is_empty() {
            return None; // Nobody is waiting; connect on the next request.
        }
        if attempt > 0 {
            let backoff = BACKOFF_FIRST.saturating_mul(1 << (attempt - 1).min(16));
            tokio::time::sleep(backoff.min(BACKOFF_MAX)).await;
        }
        if let Ok(stream) = open(&core.config, core.client_id).await {
            *generation += 1;
            return Some(start_link(core, stream, *generation));
        }
    }
    core.fail_all(|sent| ClientError::ConnectionLost {
        outcome_unknown: sent,
    });
    None
}

#[cfg(test)]
mod tests;
