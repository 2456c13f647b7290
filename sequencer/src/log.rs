//! The log trait: where closed batches go to become part of the one total
//! order, and how they come back out, in that order, to be executed.
//!
//! [`crate::raft::RaftLog`] implements it: a proposal goes to a Raft group
//! and comes back once a majority holds it, numbered when it is applied.
//! A single node needs no such trait: its sans-IO core (the `ordo`
//! crate's `node_core`) numbers batches itself and has the node's log
//! thread append and fsync them to a [`crate::FileLog`]. Both deliver
//! [`Delivery`]s to the executor over one channel, so the executor does
//! not know which log it runs on.

use crate::entry::{Batch, Entry};

/// One item of the ordered stream a log delivers to the executor.
#[derive(Debug)]
// Batches are the hot path and go unboxed; installs are rare and boxed.
#[allow(clippy::large_enum_variant)]
pub enum Delivery<T> {
    /// The next batch to execute: durable (file log) or committed by a
    /// majority (Raft), with dense sequence numbers.
    Batch(Committed<T>),
    /// Replace the whole engine state with this snapshot (a far-behind
    /// Raft follower catching up). Every later batch continues from it.
    Install(Box<crate::raft::SnapshotImage>),
}

/// A batch ready to execute.
#[derive(Debug)]
pub struct Committed<T> {
    pub batch: Batch,
    /// The batch's record index in the file log, or its Raft index.
    pub log_index: u64,
    /// What this node's proposer attached (the callers to answer). `None`
    /// on replicas that did not propose the batch, and on replay.
    pub token: Option<T>,
    /// Where the batch sits in a replicated log, and the Raft state just
    /// before it: a snapshot taken before executing the batch describes
    /// exactly this point. `None` for the file log.
    pub raft: Option<crate::raft::RaftPoint>,
    /// Nodes' hashes at earlier check points, for the divergence check
    /// (Raft only).
    pub checkpoints: Vec<crate::raft::Checkpoint>,
    /// Bytes the batch takes in the log (its encoding), for the single
    /// node's snapshot schedule.
    pub encoded_bytes: usize,
}

/// Why a proposal was not taken. The token comes back so its callers can
/// be told.
#[derive(Debug)]
pub struct Refused<T> {
    pub token: T,
    pub reason: RefusalReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// This node is not the Raft leader; `leader` is the leader's node
    /// id, if known.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The log failed for good (a failed write or fsync); the node must
    /// stop.
    #[error("{0}")]
    Failed(String),
}

/// A total order that batches are proposed to.
pub trait Log<T>: Send {
    /// Hands over the next batch: `entries` in the order they were taken,
    /// stamped with the proposer's clock. The log numbers them (densely,
    /// continuing the order) and delivers them as a [`Delivery::Batch`]
    /// once durable. May block while earlier proposals are outstanding:
    /// that wait is what lets the next batch grow (group commit).
    fn propose(
        &mut self,
        entries: Vec<Entry>,
        timestamp_ms: u64,
        token: T,
    ) -> Result<(), Refused<T>>;

    /// Index of the last log record (file log) or Raft log entry.
    fn last_index(&self) -> u64;
}
