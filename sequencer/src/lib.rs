//! `ordo-sequencer`: the total order. What the log holds ([`entry`]), how
//! requests become numbered batches ([`sequencer`]), and the embedded
//! durable log ([`file_log`]). Nothing here knows about WebAssembly or the
//! engine: the log stores batches as opaque records.

/// The log's entry types live in their own crate (`ordo-entry`), which the
/// engine uses without depending on this one.
pub use ordo_entry as entry;
pub mod file_log;
#[cfg(test)]
mod file_log_faults;
pub mod log;
pub mod manifest;
pub mod raft;
pub mod rate_limited;
pub mod sequencer;
pub mod storage;

pub use file_log::{FileLog, FileLogConfig, LogError, LogReader, Recovery};
pub use log::{Committed, Delivery, Log, RefusalReason, Refused};
pub use sequencer::Sequencer;
pub use storage::{OsStorage, Storage};
