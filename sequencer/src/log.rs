//! The log trait: where closed batches go to become part of the one total
//! order, and how they come back out, in that order, to be executed.
//!
//! Two implementations: [`EmbeddedLog`] (the single-node file log: numbers
//! the batch, appends it, fsyncs, and hands it straight on) and
//! [`crate::raft::RaftLog`] (proposes it to a Raft group; the batch comes
//! back once a majority holds it, numbered when it is applied). The node
//! drives either through [`Log`] and reads [`Delivery`]s from a channel,
//! so it does not know which one it runs on.

use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::entry::{Batch, Entry};
use crate::file_log::{FileLog, LogError};
use crate::sequencer::Sequencer;

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

/// The single-node log: a [`FileLog`] and a [`Sequencer`]. A proposal is
/// numbered, appended and fsynced before `propose` returns, and delivered
/// at once.
///
/// The file log sits behind a mutex shared with the node, which takes it
/// briefly and rarely: to remove the records a new snapshot covers, and to
/// read records for a backup. The log thread is its only writer.
pub struct EmbeddedLog<T> {
    file: Arc<Mutex<FileLog>>,
    sequencer: Sequencer,
    deliveries: Sender<Delivery<T>>,
}

impl<T> EmbeddedLog<T> {
    /// `sequencer` continues after the last batch in `file` (see the
    /// node's replay).
    pub fn new(
        file: Arc<Mutex<FileLog>>,
        sequencer: Sequencer,
        deliveries: Sender<Delivery<T>>,
    ) -> Self {
        EmbeddedLog {
            file,
            sequencer,
            deliveries,
        }
    }
}

impl<T: Send> Log<T> for EmbeddedLog<T> {
    fn propose(
        &mut self,
        entries: Vec<Entry>,
        timestamp_ms: u64,
        token: T,
    ) -> Result<(), Refused<T>> {
        let batch = self.sequencer.close(entries, timestamp_ms);
        let encoded = batch.encode();
        let appended: Result<u64, LogError> = {
            let mut file = self.file.lock();
            file.append(&encoded)
                .and_then(|index| file.sync().map(|()| index))
        };
        let log_index = match appended {
            Ok(index) => index,
            Err(err) => {
                // After a failed write or fsync the file's durable contents
                // are unknown; retrying fsync can falsely succeed. The node
                // stops and a restart recovers from what is really on disk.
                return Err(Refused {
                    token,
                    reason: RefusalReason::Failed(format!("log write failed: {err}")),
                });
            }
        };
        let delivered = self.deliveries.send(Delivery::Batch(Committed {
            batch,
            log_index,
            token: Some(token),
            raft: None,
            checkpoints: Vec::new(),
            encoded_bytes: encoded.len(),
        }));
        if let Err(crossbeam_channel::SendError(Delivery::Batch(committed))) = delivered {
            return Err(Refused {
                token: committed.token.expect("just set"),
                reason: RefusalReason::Failed("the executor has stopped".into()),
            });
        }
        Ok(())
    }

    fn last_index(&self) -> u64 {
        self.file.lock().last_index()
    }
}
