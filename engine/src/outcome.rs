//! What executing a log entry produces. Outcomes are replicated facts:
//! every replica must produce byte-identical outcomes, so messages here are
//! built only from deterministic inputs (never addresses, timings or host
//! error text that could vary between machines).

use ordo_schema::abi;
use serde::{Deserialize, Serialize};

/// Why a transaction did not commit. The kind is for programs; the message
/// is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AbortKind {
    /// The procedure chose to abort (returned `Err` or called `abort`).
    User,
    /// The arguments did not decode into the procedure's parameters.
    BadArguments,
    /// No deployed module provides the procedure.
    UnknownProcedure,
    /// The procedure ran out of fuel (for example an infinite loop).
    OutOfFuel,
    /// The procedure tried to grow its memory past the limit.
    MemoryLimit,
    /// The procedure recursed too deeply.
    StackOverflow,
    /// The procedure trapped: a panic, `unreachable`, an out-of-bounds
    /// access, a division by zero, or a host call given bad pointers.
    Trap,
    /// The procedure broke a limit on keys, values, writes or result size.
    LimitExceeded,
    /// A deploy was rejected (invalid module, or a procedure name clash).
    DeployRejected,
    /// The request's id is below the client's acknowledged watermark, or
    /// its stored result was evicted: it cannot be answered exactly once.
    RequestForgotten,
    /// The procedure touched a key in a partition it did not declare.
    UndeclaredPartition,
    /// A procedure marked read-only (`#[procedure(read_only)]`) tried to
    /// write or delete a key, in a logged call or a local read
    /// (`Executor::read`). Its writes are dropped.
    ReadOnly,
    /// A local read named a procedure that its module does not mark
    /// read-only (`#[procedure(read_only)]`). Only local reads raise it.
    NotReadOnly,
    /// The request came under a registered session id whose session is not
    /// open: it expired (idle while others needed the room, or pushed out
    /// by the stored-result budget), it was ended, or it was never
    /// registered. Nothing ran; the client must register a new session,
    /// and check the effects of its requests that were unanswered.
    SessionExpired,
    /// A retry of a request that ran exactly once at the outcome's `seq`,
    /// whose outcome was too large to keep for replay
    /// (`EngineConfig::result_bytes_stored_max`) or arrived while the
    /// stored results were at their budget. Nothing ran again; read the
    /// data the request changed instead.
    ResultNotRetained,
    /// A call checked against a procedure's parameter schema reached the
    /// log after a redeploy changed that schema. Nothing ran.
    SignatureMismatch,
}

impl AbortKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AbortKind::User => "user",
            AbortKind::BadArguments => "bad_arguments",
            AbortKind::UnknownProcedure => "unknown_procedure",
            AbortKind::OutOfFuel => "out_of_fuel",
            AbortKind::MemoryLimit => "memory_limit",
            AbortKind::StackOverflow => "stack_overflow",
            AbortKind::Trap => "trap",
            AbortKind::LimitExceeded => "limit_exceeded",
            AbortKind::DeployRejected => "deploy_rejected",
            AbortKind::RequestForgotten => "request_forgotten",
            AbortKind::UndeclaredPartition => "undeclared_partition",
            AbortKind::ReadOnly => "read_only",
            AbortKind::NotReadOnly => "not_read_only",
            AbortKind::SessionExpired => "session_expired",
            AbortKind::ResultNotRetained => "result_not_retained",
            AbortKind::SignatureMismatch => "signature_mismatch",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abort {
    pub kind: AbortKind,
    pub message: String,
}

impl Abort {
    pub fn new(kind: AbortKind, message: impl Into<String>) -> Abort {
        Abort {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// A deployed module as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSummary {
    pub name: String,
    /// SHA-256 of the `.wasm` bytes, hex (what `sha256sum` prints).
    pub sha256: String,
    pub procedures: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The procedure committed; `result` is encoded in the request's
    /// argument encoding.
    Committed { result: Vec<u8> },
    /// A deploy took effect at this position.
    Deployed(ModuleSummary),
    /// Nothing was written.
    Aborted(Abort),
}

impl Outcome {
    pub fn aborted(kind: AbortKind, message: impl Into<String>) -> Outcome {
        Outcome::Aborted(Abort::new(kind, message))
    }

    pub fn is_committed(&self) -> bool {
        !matches!(self, Outcome::Aborted(_))
    }

    pub fn abort(&self) -> Option<&Abort> {
        match self {
            Outcome::Aborted(abort) => Some(abort),
            _ => None,
        }
    }
}

/// The answer to a local read (`Executor::read`): the outcome of a
/// read-only procedure run against the state at `position`. Not a
/// replicated fact: another replica may be at another position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOutcome {
    /// The sequence number of the last entry the state reflects.
    pub position: u64,
    /// `Committed` with the procedure's result, or why it aborted. A read
    /// never writes, whatever its outcome.
    pub outcome: Outcome,
}

/// The outcome of one log entry, as delivered to the client that sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// The sequence number at which the request took effect. For a
    /// duplicate this is the original request's sequence number.
    pub seq: u64,
    pub outcome: Outcome,
    /// True if this entry repeated an already-executed request id and the
    /// stored outcome was returned without running anything.
    pub duplicate: bool,
    /// Fuel the procedure's call used (its instance's instantiation, which
    /// has its own budget, not included); 0 when nothing ran (a deploy, a
    /// duplicate, a call refused before it ran). Deterministic, like the
    /// outcome, but outside the hashes.
    pub fuel_used: u64,
    /// What the procedure said while it ran ([`ProcedureLogs`]): `Some`
    /// when it logged a line or aborted after it started. Outside the
    /// state hash and the chain hash.
    pub logs: Option<Box<ProcedureLogs>>,
}

/// Most log lines one procedure call keeps; later ones are counted in
/// [`ProcedureLogs::dropped`]. With [`PROCEDURE_LOG_BYTES_PER_CALL_MAX`]
/// this bounds what a batch of calls holds before the node stores it.
pub const PROCEDURE_LOG_LINES_PER_CALL_MAX: usize = 16;
/// Most bytes of log text one procedure call keeps; a line that does not
/// fit is cut at a character boundary and the lines after it dropped.
pub const PROCEDURE_LOG_BYTES_PER_CALL_MAX: usize = 2048;

/// How much a procedure log line matters: the `log` crate's levels, most
/// severe first (so `level <= Info` selects error, warn and info).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LogLevel {
    Error = abi::log_level::ERROR as isize,
    Warn = abi::log_level::WARN as isize,
    Info = abi::log_level::INFO as isize,
    Debug = abi::log_level::DEBUG as isize,
    Trace = abi::log_level::TRACE as isize,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The level code of the `ordo.log` host import (docs/ABI.md).
    pub fn from_abi(code: i32) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| *level as i32 == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Parses a level name (`error`, `warn`, `info`, `debug`, `trace`).
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
    }
}

/// One line a procedure logged with `ordo_sdk::log!`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The log of one procedure call: its lines, in the order it wrote them.
/// Built only from what the procedure did, so every replica has the same
/// one, but no hash covers it: a node may drop or forget it (its store of
/// lines is bounded) without diverging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureLogs {
    /// The module whose procedure ran.
    pub module: String,
    pub lines: Vec<LogLine>,
    /// Lines over the per-call limits, not kept.
    pub dropped: u32,
}
