//! A record of every host call one transaction made, for the replay
//! debugger (`ordo replay --trace`).
//!
//! Tracing never changes an outcome: host functions record what they
//! already computed, after their checks, and only in the one sandbox call
//! the executor was asked to trace ([`crate::Executor::execute_traced`]).
//! Nothing recorded here enters the state hash or the chain hash.

use serde::Serialize;

/// The most bytes of keys and values one trace keeps. Past it, calls are
/// counted in [`TxTrace::calls_dropped`] but not kept, so a transaction
/// that scans its whole fuel budget's worth of rows cannot make the
/// debugger's memory grow without bound.
pub const TRACE_BYTES_MAX: usize = 64 << 20;

/// One host call, in the order the procedure made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum HostCall {
    /// `ordo.get`: the key and the value it saw (its own buffered write if
    /// it had written the key earlier in the transaction), `None` if absent.
    Get {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// `ordo.put`, buffered until the transaction commits.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// `ordo.delete`, buffered until the transaction commits.
    Delete { key: Vec<u8> },
    /// `ordo.scan` of `start <= key < end` (no end: to the last key), with
    /// the rows it returned.
    Scan {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl HostCall {
    fn bytes(&self) -> usize {
        match self {
            HostCall::Get { key, value } => key.len() + value.as_ref().map_or(0, Vec::len),
            HostCall::Put { key, value } => key.len() + value.len(),
            HostCall::Delete { key } => key.len(),
            HostCall::Scan {
                start, end, rows, ..
            } => {
                start.len()
                    + end.as_ref().map_or(0, Vec::len)
                    + rows.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
        }
    }
}

/// What one traced transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxTrace {
    /// Every host call, in order (up to [`TRACE_BYTES_MAX`]).
    pub calls: Vec<HostCall>,
    /// Calls made after the byte budget was spent, not kept.
    pub calls_dropped: u64,
    /// Fuel the procedure's call used (instantiation, which has its own
    /// budget, not included); 0 if it never ran (unknown procedure, bad
    /// arguments refused before the call, a deploy).
    pub fuel_used: u64,
    /// Whether the call ran in an instance that had served an earlier
    /// call since its sandbox's last reset (warm) or a fresh one; fuel and
    /// memory-limit outcomes can depend on it (docs/ARCHITECTURE.md,
    /// "Instance epochs").
    pub warm_instance: bool,
    #[serde(skip)]
    bytes: usize,
}

impl TxTrace {
    pub(crate) fn record(&mut self, call: HostCall) {
        let bytes = call.bytes();
        if self.bytes + bytes > TRACE_BYTES_MAX {
            self.calls_dropped += 1;
            return;
        }
        self.bytes += bytes;
        self.calls.push(call);
    }
}
