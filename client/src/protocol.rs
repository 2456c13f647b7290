//! ordo's wire protocol, version 6: the messages a client and `ordo serve`
//! exchange over TCP, and how they are framed.
//!
//! A connection starts with a handshake: the client sends a [`Hello`]
//! frame, the server answers with a [`Welcome`] frame. After that the
//! client sends [`Request`] frames and the server sends [`Response`]
//! frames, matched by `request_id`; many requests may be in flight on one
//! connection (pipelining), and responses come in execution order, not
//! submission order.
//!
//! Every frame is a 4-byte little-endian payload length followed by the
//! postcard-encoded message. A length over the receiver's limit, a payload
//! that does not decode, or a handshake with the wrong magic or version
//! closes that connection with an error; it never affects other
//! connections.
//!
//! # Clusters (new in version 2)
//!
//! A node of a replicated cluster answers every request itself except
//! calls and deploys, which only the leader takes: a follower (or a
//! candidate) answers them with [`ResponseBody::NotLeader`], naming the
//! leader's client address if it knows it. The request was not run there;
//! the client moves its connection to the leader (or, with no leader
//! named, to another node after a short pause) and resends it with the
//! same client id and request id, so the replicated exactly-once table
//! still runs it at most once. [`RequestBody::Status`],
//! [`RequestBody::Procedures`] and [`RequestBody::Read`] (a stale read,
//! run on the receiving node at its own position without going through
//! the log) are answered by any node. A standalone node never answers
//! `NotLeader`.
//!
//! Version 2 added `NotLeader`, `Read` / `ReadDone`, the cluster fields of
//! [`StatusInfo`] and `node_id` in [`Welcome::Accepted`]; postcard
//! encodes enum variants by index, so the new variants come last.
//!
//! # Sessions
//!
//! A client that wants its exactly-once guarantees to survive other
//! clients coming and going registers a session: it says its client id in
//! the [`Hello`] as usual, choosing one with [`SESSION_CLIENT_ID_TAG`] in
//! its high 64 bits, and sends [`RequestBody::Session`] `Register` before
//! its first call (answered `Committed` with an empty result). The
//! registration is a log entry, so every replica opens the session at the
//! same position; `End` closes it. Sessions expire only in log terms (the
//! least recently active go first when the registered-session limit or
//! the stored-result budget is reached). A request under a session that
//! is not open is answered `Aborted` with kind `session_expired` and did
//! not run. A retry whose original outcome was too large to keep (or came
//! while the stored outcomes were at their budget) is answered `Aborted`
//! with kind `result_not_retained`: the original ran once, at that `seq`,
//! and nothing ran again. `RequestBody::Session` came after version 2 was
//! first released: a server from before it cannot decode it and closes
//! the connection.
//!
//! # Checked calls (version 3)
//!
//! A [`RequestBody::Call`] may carry the `signature` of the argument
//! types it was encoded from (16 bytes,
//! `ordo_schema::fingerprint_of_args`). A node refuses a postcard call of
//! a procedure with a schema whose signature differs, before it is
//! logged, with [`ResponseBody::SignatureMismatch`] carrying the
//! procedure's schema, from which the client names the parameter and the
//! expected and given types. Postcard arguments that do not decode exactly
//! as the parameters, and JSON arguments that do not match them at every
//! depth, are refused with [`RequestRefusal::BadArguments`]; a call without
//! a signature is the raw path (still checked for exact decoding).
//! [`RequestBody::Describe`] returns every deployed module's schemas.
//!
//! # Backups (version 4)
//!
//! [`RequestBody::Backup`] (admin token) copies a standalone node's state
//! out in steps on one connection: `Begin` fixes the backup at the node's
//! current position (its newest snapshot file and the log records after
//! it, which the node then keeps until the connection closes) and answers
//! [`BackupInfo`]; `Snapshot` and `Records` fetch the pieces, each answer
//! at most [`BACKUP_CHUNK_BYTES_MAX`] (a single larger log record comes
//! alone). A new `Begin` replaces the connection's backup; a step without
//! one is refused with `BadRequest`.
//!
//! # Monotonic stale reads (version 4)
//!
//! A [`RequestBody::Read`] carries `min_position`, the highest position
//! the client has observed (from any answer that carries one: reads,
//! commits, aborts, deploys, statuses, welcomes; 0 if none). A node that
//! has executed less than that (a restarted node still catching up, a
//! follower behind the leader) never answers from its older state: it
//! waits, up to a bound, for its executor to get there, and otherwise
//! answers [`ResponseBody::Behind`], retryable: the read did not run, and
//! the client tries again (after a pause, on another node if it knows
//! one). Sequence numbers are the same on every replica, so the
//! comparison holds across nodes. Version 4 added the field and `Behind`
//! (last, so the other variants keep their index).
//!
//! # Time-travel reads (version 5)
//!
//! [`RequestBody::ReadAt`] (admin token) runs a read-only procedure
//! against the state as of a past position `at` of a standalone node,
//! rebuilt beside the node's own state from its kept snapshots and log
//! (`ordo serve --retain-positions` sets how far back). It is answered
//! with [`ResponseBody::ReadDone`] whose `position` is `at`,
//! [`ResponseBody::Aborted`], or [`ResponseBody::Refused`]: `BadRequest`
//! for a position older than the kept history or ahead of the node (the
//! message names the oldest that can be read), `Overloaded` while another
//! time-travel read runs (one at a time: each costs a copy of the state
//! in memory). Version 5 added the request (last, so the others keep
//! their index).
//!
//! # Scans (version 5)
//!
//! [`RequestBody::Scan`] (admin token: it reads rows without any
//! procedure's checks) returns the committed rows of a key range at the
//! answering node's current position, in key order, at most `limit` (up
//! to 1,000) and about 4 MiB of keys and values, as [`ResponseBody::Rows`]
//! with `more` set when rows remain: the next page starts just after the
//! last key. `ordo scan TABLE` builds the range from a table's name and
//! decodes rows with its schema. Any node answers it, whatever its role.
//!
//! # Fuel and procedure logs (version 6)
//!
//! [`ResponseBody::Committed`] and [`ResponseBody::Aborted`] carry
//! `fuel_used`, the fuel the procedure's call used (0 when nothing ran).
//! [`RequestBody::Logs`] (admin token: lines can hold any data a
//! procedure saw) reads the answering node's procedure log: the lines
//! procedures wrote with `ordo_sdk::log!`, and one line per call that
//! aborted after it started, of transactions at `since_seq` or later,
//! oldest first, whole transactions only, up to `limit` lines (at most
//! 1,000) and about 1 MiB. [`ResponseBody::Logs`] gives the lines,
//! `next_seq` to ask from next (past every transaction the node had
//! executed when nothing matched, so a follower does not rescan), and
//! `oldest_seq`, the oldest transaction whose lines the node still keeps
//! (its store is bounded: older lines were dropped, and a restart keeps
//! only the lines of the transactions it re-executed). Version 6 changed
//! the two answers and added the request and answer last, and added
//! [`RequestBody::Undeploy`] (after `Logs`) and the deploy position and
//! size of each [`ModuleDescription`].
//!
//! This module is pure: it encodes and decodes bytes and does no I/O, so
//! the server, the client and fuzzers share one implementation.

pub use ordo_frame::{FrameDecoder, FrameTooLarge};
use serde::{Deserialize, Serialize};

/// Sent first in every [`Hello`], so a stray connection (an HTTP client, a
/// port scanner) is recognised and refused at once.
pub const MAGIC: [u8; 4] = *b"ORDO";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 6;
/// Bytes in a frame's length prefix (frames are `ordo-frame`'s, shared
/// with the replication port).
pub const FRAME_HEADER_BYTES: usize = ordo_frame::HEADER_BYTES;
/// Largest frame payload accepted by default: a 16 MiB module plus room
/// for the deploy's other fields.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 17 << 20;
/// Largest frame either side reads before the handshake is done (the
/// hello, the welcome): a server must not buffer megabytes for a peer that
/// has not shown its token yet. A hello is its magic, version, client id
/// and token, so this bounds the client token to a little under 4 KiB.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4 << 10;

/// Most bytes of snapshot or log one backup answer carries (one log
/// record larger than this is sent alone).
pub const BACKUP_CHUNK_BYTES_MAX: usize = 4 << 20;

/// How a call's arguments and result are encoded (mirrors the engine's
/// `ArgsEncoding`; this crate must not depend on the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    Postcard,
    Json,
}

/// The high 64 bits of every registered session's client id (ASCII
/// `ordosess`); mirrors `ordo_sequencer::entry::SESSION_CLIENT_ID_TAG`
/// (this crate must not depend on the sequencer).
pub const SESSION_CLIENT_ID_TAG: u64 = u64::from_be_bytes(*b"ordosess");

/// What a [`RequestBody::Session`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionRequest {
    /// Open the session of the connection's client id (idempotent).
    Register,
    /// Close it: its stored results are freed and later requests under
    /// the id are answered `session_expired`.
    End,
}

/// The client's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u32,
    /// The client's identity for exactly-once; kept across reconnects so a
    /// retry after a lost connection is recognised.
    pub client_id: u128,
    /// The client token (`--client-token`), if the server requires one.
    pub token: Option<String>,
}

impl Hello {
    pub fn new(client_id: u128, token: Option<String>) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_id,
            token,
        }
    }

    /// Checks the magic and version; the server calls this before anything
    /// else.
    pub fn check(&self) -> Result<(), ProtocolError> {
        if self.magic != MAGIC {
            return Err(ProtocolError::BadMagic(self.magic));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                theirs: self.version,
                ours: PROTOCOL_VERSION,
            });
        }
        Ok(())
    }
}

/// The server's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    Accepted {
        version: u32,
        /// Position the node had executed up to when the client connected.
        position: u64,
        /// The node's id in its cluster; `None` on a standalone node.
        node_id: Option<u64>,
    },
    Refused {
        reason: RefusalReason,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    BadHandshake,
    Unauthorized,
    TooManyConnections,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Per-client counter; a request resent with the same id after a lost
    /// connection runs at most once.
    pub request_id: u64,
    /// Every request id below this has had its answer delivered.
    pub acked_below: u64,
    pub body: RequestBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    Call {
        procedure: String,
        encoding: Encoding,
        args: Vec<u8>,
        /// The fingerprint of the argument types `args` were encoded from,
        /// if the caller knows them (see "Checked calls").
        signature: Option<[u8; 16]>,
    },
    Deploy {
        name: String,
        wasm: Vec<u8>,
        /// The admin token; deploys are refused without the right one when
        /// the server has one configured.
        admin_token: Option<String>,
        /// Tables to empty if the deploy succeeds (development only:
        /// refused unless the server runs with `--allow-table-reset`).
        reset_tables: Vec<String>,
    },
    Status,
    Procedures,
    /// A stale read: runs the read-only `procedure` on the node that
    /// receives it, at that node's current position, without going
    /// through the log (so a follower may answer with data behind the
    /// leader's). Answered with [`ResponseBody::ReadDone`],
    /// [`ResponseBody::Aborted`] (its `seq` is the position read at; kind
    /// `not_read_only` for a procedure that is not marked read-only) or
    /// [`ResponseBody::Refused`] (e.g. `BadRequest` for a malformed one).
    /// Any node answers it, whatever its role.
    Read {
        procedure: String,
        encoding: Encoding,
        args: Vec<u8>,
        /// Run at this position or later (version 4): a node behind it
        /// waits a bounded time, then answers [`ResponseBody::Behind`].
        /// 0 reads at whatever position the node has.
        min_position: u64,
    },
    /// Registers or ends the session of the connection's client id, which
    /// must carry [`SESSION_CLIENT_ID_TAG`] (see "Sessions" above). Only
    /// the leader takes it, like a call.
    Session(SessionRequest),
    /// Every deployed module's procedure and table schemas; answered with
    /// [`ResponseBody::Described`] by any node.
    Describe,
    /// One step of a backup (see "Backups"); answered with
    /// [`ResponseBody::Backup`].
    Backup {
        admin_token: Option<String>,
        step: BackupStep,
    },
    /// A time-travel read (see "Time-travel reads"): the read-only
    /// `procedure` as of position `at`.
    ReadAt {
        admin_token: Option<String>,
        at: u64,
        procedure: String,
        encoding: Encoding,
        args: Vec<u8>,
    },
    /// Committed rows with `start <= key < end` (no `end`: to the last
    /// key); see "Scans". Answered with [`ResponseBody::Rows`].
    Scan {
        admin_token: Option<String>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    },
    /// The answering node's procedure log from `since_seq` on (see "Fuel
    /// and procedure logs"); answered with [`ResponseBody::Logs`].
    Logs {
        admin_token: Option<String>,
        since_seq: u64,
        /// Only this procedure's lines.
        procedure: Option<String>,
        /// Only lines at this level or more severe: 1 error, 2 warn,
        /// 3 info, 4 debug, 5 trace.
        level_max: u8,
        limit: u32,
    },
    /// Removes the module `name` through the log (admin token): answered
    /// with [`ResponseBody::Committed`] (an empty result) at the position
    /// its procedures stopped existing, or [`ResponseBody::Aborted`]
    /// (`deploy_rejected`) if no module has that name. Version 6.
    Undeploy {
        name: String,
        admin_token: Option<String>,
    },
}

/// The most lines one [`RequestBody::Logs`] answer holds.
pub const LOG_PAGE_LINES_MAX: u32 = 1_000;

/// One line of a node's procedure log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureLogLine {
    /// The transaction's sequence number.
    pub seq: u64,
    pub procedure: String,
    pub module: String,
    /// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: u8,
    pub message: String,
    /// The fuel the whole call used.
    pub fuel_used: u64,
    /// For the line of a call that aborted: the abort kind (the message is
    /// its reason). `None` for a line the procedure wrote.
    pub abort_kind: Option<String>,
}

/// The name of a procedure log level (`error` for 1 ... `trace` for 5).
pub fn log_level_name(level: u8) -> &'static str {
    match level {
        1 => "error",
        2 => "warn",
        3 => "info",
        4 => "debug",
        5 => "trace",
        _ => "unknown",
    }
}

/// What a [`RequestBody::Backup`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStep {
    /// Fix a backup at the node's current position.
    Begin,
    /// Snapshot file bytes from `offset` on.
    Snapshot { offset: u64 },
    /// Log records from index `from` on, up to the backup's last.
    Records { from: u64 },
}

/// The answer to a backup step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupAnswer {
    Begun(BackupInfo),
    Snapshot {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Consecutive records `(index, payload)`, starting at the asked one.
    Records(Vec<(u64, Vec<u8>)>),
}

/// What a backup holds, fixed by its `Begin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The last sequence number the backup's state includes.
    pub position: u64,
    /// Hex of the state hash and the chain hash at `position`.
    pub state_hash: String,
    pub chain_hash: String,
    /// The engine config the data was made under (JSON); a node restored
    /// from the backup runs with it.
    pub engine_config: String,
    /// Bytes of the newest snapshot file (0: the node has none, and the
    /// records start at the log's first).
    pub snapshot_bytes: u64,
    /// The last log record the snapshot covers (0 with no snapshot).
    pub snapshot_covered_index: u64,
    /// The log records after the snapshot, up to and including this one,
    /// complete the backup (none if it equals `snapshot_covered_index`).
    pub last_record_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub request_id: u64,
    pub body: ResponseBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The procedure committed at `seq`; `result` is in the request's
    /// encoding.
    Committed {
        seq: u64,
        result: Vec<u8>,
        /// Fuel the procedure's call used (version 6).
        fuel_used: u64,
    },
    /// The procedure (or the deploy) aborted at `seq` and wrote nothing.
    /// `kind` is the engine's stable abort kind, e.g. `user`,
    /// `unknown_procedure`, `bad_arguments`, `out_of_fuel`,
    /// `session_expired`. One kind is not an abort of the request itself:
    /// `result_not_retained` answers a retry whose original ran once, at
    /// `seq`, with an outcome too large to keep.
    Aborted {
        seq: u64,
        kind: String,
        message: String,
        /// Fuel the call used before it aborted; 0 if it never ran
        /// (version 6).
        fuel_used: u64,
    },
    Deployed {
        seq: u64,
        name: String,
        sha256: String,
        procedures: Vec<String>,
    },
    Status(StatusInfo),
    Procedures(Vec<ProcedureDescription>),
    /// The request was not sequenced at all.
    Refused {
        reason: RequestRefusal,
        message: String,
    },
    /// This node is not the leader (a follower, a candidate or a learner)
    /// and did not run the request: sent in answer to `Call` and `Deploy`.
    /// `leader` is the leader's client address (`host:port`) if this node
    /// knows it; `None` while an election is in progress. The client
    /// resends the request, with the same ids, to the leader.
    NotLeader {
        leader: Option<String>,
    },
    /// A stale [`RequestBody::Read`] ran at `position` (the last sequence
    /// number the answering node had executed); `result` is in the
    /// request's encoding.
    ReadDone {
        position: u64,
        result: Vec<u8>,
    },
    /// A checked call's signature is not the procedure's; nothing was
    /// logged. `schema` is the procedure's (see "Checked calls").
    SignatureMismatch {
        message: String,
        schema: Box<ordo_schema::ProcedureSchema>,
    },
    Described(Vec<ModuleDescription>),
    Backup(BackupAnswer),
    /// A [`RequestBody::Read`] with a `min_position` (`wanted`) this node
    /// had not reached within its wait: it had executed up to `applied`.
    /// The read did not run; retry it, later or on another node (version
    /// 4).
    Behind {
        applied: u64,
        wanted: u64,
    },
    /// The rows a [`RequestBody::Scan`] found, as of `position`, in key
    /// order; `more` if the range holds rows after the last one.
    Rows {
        position: u64,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        more: bool,
    },
    /// Lines of a node's procedure log, from [`RequestBody::Logs`].
    Logs {
        lines: Vec<ProcedureLogLine>,
        next_seq: u64,
        oldest_seq: u64,
    },
}

/// One deployed module's contract, from [`RequestBody::Describe`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDescription {
    pub name: String,
    /// Hex of the module's SHA-256.
    pub sha256: String,
    /// The procedures with a schema, in name order.
    pub procedures: Vec<ordo_schema::ProcedureSchema>,
    /// Procedures without a schema (raw ABI): their calls are unchecked.
    pub unchecked: Vec<String>,
    /// The declared tables, in name order.
    pub tables: Vec<ordo_schema::TableSchema>,
    /// The sequence number of the deploy that installed this version, if
    /// the node knows it (a node restored from a snapshot of an older
    /// build does not). Version 6.
    pub deployed_at: Option<u64>,
    /// Size of the module's `.wasm` bytes (version 6).
    pub wasm_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestRefusal {
    /// Too many requests in flight; retry later with the same request id.
    Overloaded,
    Unauthorized,
    /// Arguments over the size limit, or a malformed request.
    BadRequest,
    /// The module failed validation before reaching the log.
    DeployRejected,
    /// The node is stopping or has failed.
    Unavailable,
    /// The arguments do not match the procedure's schema (version 3).
    BadArguments,
}

/// A node's status, from [`RequestBody::Status`]; any node answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The last executed sequence number.
    pub position: u64,
    /// Hex of the order-independent state hash.
    pub state_hash: String,
    /// Hex of the hash chained over every executed batch.
    pub chain_hash: String,
    pub keys: u64,
    pub log_records: u64,
    /// The node's id in its cluster; `None` on a standalone node.
    pub node_id: Option<u64>,
    /// `standalone`, `leader`, `follower`, `candidate`, `learner` or
    /// `shutdown` (see the `ROLE_*` constants).
    pub role: String,
    /// The Raft term; 0 on a standalone node.
    pub term: u64,
    /// The node id of the leader this node knows of, if any.
    pub leader: Option<u64>,
    /// The Raft commit index; 0 on a standalone node.
    pub commit: u64,
    /// The Raft index this node has applied; 0 on a standalone node.
    pub applied: u64,
    /// Executor threads (version 5, like the fields below).
    pub partitions: u32,
    /// Open exactly-once sessions, registered or not.
    pub sessions: u64,
    /// What the outcomes kept for retries are charged against their
    /// budget, in bytes.
    pub stored_result_bytes: u64,
    /// The position a standalone node's newest durable snapshot rebuilds;
    /// `None` before its first (and on a cluster member).
    pub snapshot_position: Option<u64>,
    /// Bytes of a standalone node's log records on disk (0 on a cluster
    /// member).
    pub log_bytes: u64,
}

/// [`StatusInfo::role`] of a single node without replication.
pub const ROLE_STANDALONE: &str = "standalone";
/// [`StatusInfo::role`] of a cluster's leader.
pub const ROLE_LEADER: &str = "leader";
/// [`StatusInfo::role`] of a voting node that follows a leader.
pub const ROLE_FOLLOWER: &str = "follower";
/// [`StatusInfo::role`] of a node asking for votes.
pub const ROLE_CANDIDATE: &str = "candidate";
/// [`StatusInfo::role`] of a non-voting node catching up.
pub const ROLE_LEARNER: &str = "learner";
/// [`StatusInfo::role`] of a node that is stopping.
pub const ROLE_SHUTDOWN: &str = "shutdown";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureDescription {
    pub name: String,
    pub module: String,
    /// `(name, type)` of each parameter, if the module describes them.
    pub params: Option<Vec<(String, String)>>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {bytes} bytes is over the {max}-byte limit")]
    FrameTooLarge { bytes: usize, max: usize },
    #[error("frame does not decode: {0}")]
    Malformed(String),
    #[error("not an ordo client (handshake magic {0:?})")]
    BadMagic([u8; 4]),
    #[error(
        "client speaks protocol version {theirs}, this server speaks {ours}; upgrade the older side"
    )]
    UnsupportedVersion { theirs: u32, ours: u32 },
}

/// Encodes `message` as one frame (length prefix and payload).
pub fn encode_frame<T: Serialize>(
    message: &T,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let mut frame = Vec::new();
    encode_frame_into(&mut frame, message, frame_bytes_max)?;
    Ok(frame)
}

/// Appends `message` as one frame to `out`, so that many frames can share
/// one buffer (and one write). On error `out` is left as it was.
pub fn encode_frame_into<T: Serialize>(
    out: &mut Vec<u8>,
    message: &T,
    frame_bytes_max: usize,
) -> Result<(), ProtocolError> {
    let start = ordo_frame::begin_frame(out);
    let taken = std::mem::take(out);
    *out = match postcard::to_extend(message, taken) {
        Ok(extended) => extended,
        Err(err) => return Err(ProtocolError::Malformed(err.to_string())),
    };
    Ok(ordo_frame::finish_frame(out, start, frame_bytes_max)?)
}

/// Reads a frame header: the payload length, checked against the limit
/// before any payload memory is reserved (so a hostile length cannot make
/// the receiver allocate).
pub fn frame_payload_bytes(
    header: [u8; FRAME_HEADER_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, ProtocolError> {
    Ok(ordo_frame::payload_bytes(header, frame_bytes_max)?)
}

impl From<FrameTooLarge> for ProtocolError {
    fn from(err: FrameTooLarge) -> ProtocolError {
        ProtocolError::FrameTooLarge {
            bytes: err.bytes,
            max: err.frame_bytes_max,
        }
    }
}

/// Decodes a frame's payload; trailing bytes are an error, not ignored.
pub fn decode_payload<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, ProtocolError> {
    match postcard::take_from_bytes(payload) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => Err(ProtocolError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        ))),
        Err(err) => Err(ProtocolError::Malformed(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(request_id: u64, args: Vec<u8>) -> Request {
        Request {
            request_id,
            acked_below: 1,
            body: RequestBody::Call {
                procedure: "transfer".into(),
                encoding: Encoding::Postcard,
                args,
                signature: None,
            },
        }
    }

    #[test]
    fn frames_round_trip() {
        let request = call(7, vec![1, 2, 3]);
        let frame = encode_frame(&request, FRAME_BYTES_MAX_DEFAULT).unwrap();
        let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT);
        decoder.extend(&frame);
        let payload = decoder.next_payload().unwrap().unwrap();
        assert_eq!(decode_payload::<Request>(&payload).unwrap(), request);
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.extend(&(u32::MAX).to_le_bytes());
        assert!(matches!(
            decoder.next_payload(),
            Err(FrameTooLarge {
                frame_bytes_max: 1024,
                ..
            })
        ));
        assert!(matches!(
            encode_frame(&call(1, vec![0; 2000]), 1024),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        assert!(decode_payload::<Request>(&[0xff; 3]).is_err());
        let mut payload = postcard::to_stdvec(&call(1, vec![])).unwrap();
        payload.push(0);
        assert!(matches!(
            decode_payload::<Request>(&payload),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn handshake_checks_magic_and_version() {
        assert_eq!(Hello::new(1, None).check(), Ok(()));
        let mut wrong = Hello::new(1, None);
        wrong.magic = *b"GET ";
        assert!(matches!(wrong.check(), Err(ProtocolError::BadMagic(_))));
        let mut newer = Hello::new(1, None);
        newer.version = PROTOCOL_VERSION + 1;
        assert!(matches!(
            newer.check(),
            Err(ProtocolError::UnsupportedVersion { theirs, ours })
                if theirs == PROTOCOL_VERSION + 1 && ours == PROTOCOL_VERSION
        ));
        let mut older = Hello::new(1, None);
        older.version = 1;
        assert!(matches!(
            older.check(),
            Err(ProtocolError::UnsupportedVersion { theirs: 1, .. })
        ));
    }

    #[test]
    fn a_frame_too_large_leaves_the_buffer_as_it_was() {
        let mut out = vec![9u8; 3];
        let err = encode_frame_into(&mut out, &call(1, vec![0; 100]), 50).unwrap_err();
        assert!(matches!(err, ProtocolError::FrameTooLarge { max: 50, .. }));
        assert_eq!(out, vec![9u8; 3]);
    }

    fn round_trip<T>(message: &T)
    where
        T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug,
    {
        let frame = encode_frame(message, FRAME_BYTES_MAX_DEFAULT).unwrap();
        let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT);
        decoder.extend(&frame);
        let payload = decoder.next_payload().unwrap().unwrap();
        assert_eq!(&decode_payload::<T>(&payload).unwrap(), message);
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    fn cluster_status() -> StatusInfo {
        StatusInfo {
            position: 42,
            state_hash: "ab".repeat(16),
            chain_hash: "cd".repeat(16),
            keys: 7,
            log_records: 3,
            node_id: Some(2),
            role: ROLE_FOLLOWER.into(),
            term: 5,
            leader: Some(1),
            commit: 40,
            applied: 39,
            partitions: 2,
            sessions: 3,
            stored_result_bytes: 100,
            snapshot_position: Some(30),
            log_bytes: 4_096,
        }
    }

    #[test]
    fn version_2_messages_round_trip() {
        round_trip(&Request {
            request_id: 3,
            acked_below: 2,
            body: RequestBody::Read {
                procedure: "balance".into(),
                encoding: Encoding::Json,
                args: br#"{"id": 7}"#.to_vec(),
                min_position: 0,
            },
        });
        for body in [
            ResponseBody::NotLeader {
                leader: Some("10.0.0.2:7878".into()),
            },
            ResponseBody::NotLeader { leader: None },
            ResponseBody::ReadDone {
                position: 41,
                result: vec![1, 2, 3],
            },
            ResponseBody::ReadDone {
                position: 0,
                result: vec![],
            },
            ResponseBody::Status(cluster_status()),
            ResponseBody::Status(StatusInfo {
                node_id: None,
                role: ROLE_STANDALONE.into(),
                term: 0,
                leader: None,
                commit: 0,
                applied: 0,
                ..cluster_status()
            }),
        ] {
            round_trip(&Response {
                request_id: u64::MAX,
                body,
            });
        }
        for node_id in [None, Some(3)] {
            round_trip(&Welcome::Accepted {
                version: PROTOCOL_VERSION,
                position: 9,
                node_id,
            });
        }
    }

    #[test]
    fn version_4_messages_round_trip() {
        round_trip(&Request {
            request_id: 4,
            acked_below: 4,
            body: RequestBody::Read {
                procedure: "balance".into(),
                encoding: Encoding::Postcard,
                args: vec![7],
                min_position: 5_538,
            },
        });
        round_trip(&Response {
            request_id: 4,
            body: ResponseBody::Behind {
                applied: 4_996,
                wanted: 5_538,
            },
        });
        round_trip(&Request {
            request_id: 5,
            acked_below: 5,
            body: RequestBody::Backup {
                admin_token: Some("admin".into()),
                step: BackupStep::Records { from: 7 },
            },
        });
        round_trip(&Response {
            request_id: 5,
            body: ResponseBody::Backup(BackupAnswer::Records(vec![(7, vec![1, 2, 3])])),
        });
        // `Backup` and `Behind` came last: every older response kept its
        // index.
        let behind = postcard::to_stdvec(&ResponseBody::Behind {
            applied: 1,
            wanted: 2,
        })
        .unwrap();
        assert_eq!(behind, [11, 1, 2]);
        // Version 5's `ReadAt` came after `Backup`, the eighth request.
        let read_at = RequestBody::ReadAt {
            admin_token: None,
            at: 9,
            procedure: "p".into(),
            encoding: Encoding::Json,
            args: vec![],
        };
        round_trip(&Request {
            request_id: 6,
            acked_below: 6,
            body: read_at.clone(),
        });
        assert_eq!(postcard::to_stdvec(&read_at).unwrap()[0], 8);
        let scan = RequestBody::Scan {
            admin_token: Some("admin".into()),
            start: b"acct\0".to_vec(),
            end: Some(b"acct\x01".to_vec()),
            limit: 10,
        };
        assert_eq!(postcard::to_stdvec(&scan).unwrap()[0], 9);
        round_trip(&Request {
            request_id: 7,
            acked_below: 7,
            body: scan,
        });
        let rows = ResponseBody::Rows {
            position: 3,
            rows: vec![(b"k".to_vec(), b"v".to_vec())],
            more: true,
        };
        assert_eq!(postcard::to_stdvec(&rows).unwrap()[0], 12);
        round_trip(&Response {
            request_id: 7,
            body: rows,
        });
    }

    /// Version 2 only appended variants: the old ones keep their
    /// postcard variant index, so their bytes did not change.
    #[test]
    fn version_1_variants_keep_their_encoding() {
        let status = postcard::to_stdvec(&RequestBody::Status).unwrap();
        assert_eq!(status, [2]);
        let procedures = postcard::to_stdvec(&RequestBody::Procedures).unwrap();
        assert_eq!(procedures, [3]);
        let refused = postcard::to_stdvec(&ResponseBody::Refused {
            reason: RequestRefusal::Overloaded,
            message: String::new(),
        })
        .unwrap();
        assert_eq!(refused, [5, 0, 0]);
        let not_leader = postcard::to_stdvec(&ResponseBody::NotLeader { leader: None }).unwrap();
        assert_eq!(not_leader, [6, 0]);
    }

    proptest! {
        /// Frames split at any points across reads come out whole, in
        /// order.
        #[test]
        fn frames_survive_arbitrary_read_boundaries(
            sizes in proptest::collection::vec(0usize..300, 1..20),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let requests: Vec<Request> = sizes
                .iter()
                .enumerate()
                .map(|(i, size)| call(i as u64, vec![i as u8; *size]))
                .collect();
            // Frames appended to one buffer, as a server batches answers.
            let mut stream = Vec::new();
            for request in &requests {
                encode_frame_into(&mut stream, request, FRAME_BYTES_MAX_DEFAULT).unwrap();
            }
            let separately: Vec<u8> = requests
                .iter()
                .flat_map(|request| encode_frame(request, FRAME_BYTES_MAX_DEFAULT).unwrap())
                .collect();
            prop_assert_eq!(&stream, &separately);
            let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT);
            let mut decoded = Vec::new();
            let mut offset = 0;
            let mut cut = cuts.iter().cycle();
            let mut borrow = false;
            while offset < stream.len() {
                let end = (offset + cut.next().unwrap()).min(stream.len());
                decoder.extend(&stream[offset..end]);
                offset = end;
                // Alternate the copying and the borrowing reader.
                loop {
                    borrow = !borrow;
                    let request = if borrow {
                        match decoder.next_payload_slice().unwrap() {
                            Some(payload) => decode_payload::<Request>(payload).unwrap(),
                            None => break,
                        }
                    } else {
                        match decoder.next_payload().unwrap() {
                            Some(payload) => decode_payload::<Request>(&payload).unwrap(),
                            None => break,
                        }
                    };
                    decoded.push(request);
                }
            }
            prop_assert_eq!(decoded, requests);
            prop_assert_eq!(decoder.buffered_bytes(), 0);
        }
    }
}
