//! What the log holds: batches of entries, each entry a deploy or an
//! invocation. These types are the replicated input of every engine, so
//! their postcard encoding is part of the on-disk format: change it only
//! with a format version bump.

use serde::{Deserialize, Serialize};

/// A client's identity for exactly-once: `(client_id, request_id)` names
/// one logical request across retries, reconnects and restarts.
pub type ClientId = u128;

/// How a procedure's arguments (and so its result) are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgsEncoding {
    /// postcard: compact, used by the typed Rust SDK.
    Postcard,
    /// JSON: used by the CLI.
    Json,
}

impl ArgsEncoding {
    /// The value passed to a guest's `ordo_proc_*` export (see docs/ABI.md).
    pub fn abi_code(self) -> i32 {
        match self {
            ArgsEncoding::Postcard => 0,
            ArgsEncoding::Json => 1,
        }
    }
}

/// A call of a stored procedure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub client_id: ClientId,
    pub request_id: u64,
    /// Every request id of this client below this one has had its answer
    /// delivered, so the engine may forget those results. Bounds the
    /// exactly-once table (Raft thesis, section 6.3).
    pub acked_below: u64,
    pub procedure: String,
    pub encoding: ArgsEncoding,
    pub args: Vec<u8>,
}

/// Deploying (or upgrading) a module under a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub client_id: ClientId,
    pub request_id: u64,
    pub name: String,
    pub wasm: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    Invoke(Invocation),
    Deploy(Deploy),
}

impl Entry {
    pub fn client(&self) -> (ClientId, u64) {
        match self {
            Entry::Invoke(invocation) => (invocation.client_id, invocation.request_id),
            Entry::Deploy(deploy) => (deploy.client_id, deploy.request_id),
        }
    }
}

/// One log record: a run of entries with dense sequence numbers
/// `first_seq ..= first_seq + entries.len() - 1`, stamped with the time the
/// sequencer closed it. That timestamp is the only clock a procedure sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub first_seq: u64,
    pub timestamp_ms: u64,
    pub entries: Vec<Entry>,
}

impl Batch {
    /// The sequence number of the last entry, or `first_seq - 1` if empty.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64 - 1
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding a batch into a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}
