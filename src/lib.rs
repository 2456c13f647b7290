//! ordo: a deterministic stored-procedure transaction engine.
//!
//! Users write stored procedures in Rust with the `ordo-sdk` crate, compile
//! them to WebAssembly, deploy them and invoke them by name. Every request
//! goes into one durable, totally ordered log; the engine runs procedures
//! serially in that order in a deterministic sandbox, so every replay of
//! the log reaches the same state and every history is serializable.
//!
//! This crate is the `ordo` binary and the embedded [`Node`] API:
//!
//! ```no_run
//! use ordo::{Node, NodeConfig};
//!
//! let node = Node::open(NodeConfig::new("./ordo-data"))?;
//! node.deploy("bank", ordo::modules::BANK)?;
//! node.call::<_, ()>("open", &(1u64, 100i64))?;
//! node.call::<_, ()>("open", &(2u64, 0i64))?;
//! node.call::<_, ()>("transfer", &(1u64, 2u64, 30i64))?;
//! let balance = node.call::<_, i64>("balance", &(2u64,))?;
//! assert_eq!(balance.value, 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backup;
pub mod bench;
pub mod chain_journal;
pub mod compile_cache;
pub mod describe;
pub mod generate;
pub mod http;
pub mod logging;
pub mod malloc;
pub mod metrics;
pub mod modules;
pub mod node;
pub mod node_core;
pub mod procedure_logs;
pub mod replay;
pub mod scan;
pub mod server;
pub mod snapshots;
pub mod tls;
pub mod workload;

pub use node::{
    CallError, Called, Completion, Node, NodeConfig, NodeError, NodeStatus, RemoteCall, Session,
};
pub use ordo_engine::{Abort, AbortKind, EngineConfig, Outcome, SLOTS, TxOutcome};
pub use ordo_sequencer::entry::ArgsEncoding;
