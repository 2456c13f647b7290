//! What executing a log entry produces. Outcomes are replicated facts:
//! every replica must produce byte-identical outcomes, so messages here are
//! built only from deterministic inputs (never addresses, timings or host
//! error text that could vary between machines).

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
}
