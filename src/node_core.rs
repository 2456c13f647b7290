//! The single node's pipeline as a sans-IO state machine: admission
//! (the in-flight limit), group commit (when an open batch closes),
//! numbering (the [`Sequencer`]) and the durability rule (a batch runs,
//! and its callers are answered, only once its log record is synced).
//!
//! [`NodeCore`] never touches a thread, a clock, a file or a socket: the
//! caller passes the time in and carries out the [`Action`]s it returns
//! (append these bytes, sync, execute this batch). Restart is
//! [`replay_log`], which the node's `open` and the simulator share.
//!
//! What uses it today: the simulator (`sim/`, `ordo-sim`) drives it from
//! one thread over a simulated disk. The production node (`node.rs`) still
//! has its own copy of admission and group commit inside its log thread,
//! written around a mutex and a condition variable so that many
//! submitting threads can add to one open batch; moving that thread onto
//! this core is the next step (docs/ARCHITECTURE.md, "The simulator").
//! Both follow the same rules, which the simulator checks: a batch holds at
//! most `batch_entries_max` entries and `batch_bytes_max` bytes
//! ([`batch_cut`]), one batch is being made durable at a time (the next
//! grows meanwhile), and nothing is answered before its record is synced.

use ordo_engine::Executor;
use ordo_sequencer::FileLog;
use ordo_sequencer::entry::{Batch, Entry};
use ordo_sequencer::sequencer::{Sequencer, batch_cut, entry_bytes};

use crate::node::NodeError;

/// Bugs the simulator can plant in the core to show that its checker
/// catches them (`ordo-sim --inject NAME`). A production node never sets
/// one: [`NodeCore::new`] takes `None` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Execute and answer a batch as soon as it is appended, before its
    /// fsync: a crash then loses acknowledged transactions.
    AckBeforeFsync,
    /// The engine's exactly-once check treats every request as new, so a
    /// retried request runs again. Planted in the executor
    /// (`Executor::inject_skipped_exactly_once_check`, a test-only engine
    /// feature), not in this core; listed here with the others.
    SkipExactlyOnce,
    /// Hand the executor each synced batch twice, the second time
    /// renumbered after the first, as a replay loop that forgot where it
    /// was would.
    ApplyTwice,
    /// Swap the first two entries of a batch after it was logged and
    /// before it runs: the executed order is not the log's order.
    ReorderEntries,
    /// A Raft candidate counts its own vote a second time, in place of
    /// the first member that refuses it or does not answer, so in a
    /// 3-member cluster it wins an election on its vote alone. Planted in
    /// the simulator's in-memory Raft transport
    /// (`ordo_sequencer::raft::memory`), not in this core; cluster seeds
    /// only.
    CountVoteTwice,
}

impl InjectedBug {
    pub const ALL: [InjectedBug; 5] = [
        InjectedBug::AckBeforeFsync,
        InjectedBug::SkipExactlyOnce,
        InjectedBug::ApplyTwice,
        InjectedBug::ReorderEntries,
        InjectedBug::CountVoteTwice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::AckBeforeFsync => "ack-before-fsync",
            InjectedBug::SkipExactlyOnce => "skip-exactly-once",
            InjectedBug::ApplyTwice => "apply-twice",
            InjectedBug::ReorderEntries => "reorder-entries",
            InjectedBug::CountVoteTwice => "count-vote-twice",
        }
    }

    pub fn parse(name: &str) -> Option<InjectedBug> {
        InjectedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }

    pub fn describe(self) -> &'static str {
        match self {
            InjectedBug::AckBeforeFsync => "answers a batch after its append, before its fsync",
            InjectedBug::SkipExactlyOnce => {
                "makes the engine's exactly-once check treat retries as new requests"
            }
            InjectedBug::ApplyTwice => "executes every synced batch twice",
            InjectedBug::ReorderEntries => {
                "swaps the first two entries of a batch between log and execution"
            }
            InjectedBug::CountVoteTwice => {
                "makes a Raft candidate count its own vote twice (cluster seeds)"
            }
        }
    }
}

/// The limits the core enforces, in the node's units.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Requests admitted but not yet answered, past which a submission is
    /// refused as overloaded.
    pub inflight_max: usize,
    pub batch_entries_max: usize,
    pub batch_bytes_max: usize,
    /// How long, in nanoseconds of the caller's clock, an open batch may
    /// wait for more entries while no batch is being made durable. 0: a
    /// batch closes as soon as the log is free.
    pub batch_window_ns: u64,
}

/// Why the core refused a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `inflight_max` requests are admitted and not yet answered.
    Overloaded { inflight_max: usize },
    /// The core failed (its log did) and takes nothing more.
    Failed(String),
}

/// What the caller must do next.
#[derive(Debug)]
pub enum Action<T> {
    /// Append `encoded` (the batch's record) to the log, then call
    /// [`NodeCore::appended`] with the record's index.
    Append { first_seq: u64, encoded: Vec<u8> },
    /// Sync the log, then call [`NodeCore::synced`].
    Sync,
    /// Execute `batch` (durable), answer `tokens[i]` with the outcome of
    /// `batch.entries[i]`, then call [`NodeCore::answered`].
    Execute {
        batch: Batch,
        log_index: u64,
        tokens: Vec<T>,
    },
}

/// A batch on its way to durability.
struct InFlight<T> {
    batch: Batch,
    tokens: Vec<T>,
    log_index: Option<u64>,
}

/// The single node's admission, group commit, numbering and durability
/// rule. `T` is whatever the caller needs to answer a request (a channel,
/// or in the simulator a client's index).
pub struct NodeCore<T> {
    config: CoreConfig,
    sequencer: Sequencer,
    open: Vec<Entry>,
    open_tokens: Vec<T>,
    open_bytes: usize,
    /// When the open batch got its first entry.
    opened_at_ns: Option<u64>,
    inflight: usize,
    /// The batch being appended and synced (one at a time: group commit).
    durable_pending: Option<InFlight<T>>,
    /// Whether [`Action::Sync`] was handed out for `durable_pending`.
    sync_requested: bool,
    failed: Option<String>,
    bug: Option<InjectedBug>,
}

impl<T> NodeCore<T> {
    /// A core whose next batch continues `sequencer` (from
    /// [`replay_log`]).
    pub fn new(config: CoreConfig, sequencer: Sequencer, bug: Option<InjectedBug>) -> Self {
        NodeCore {
            config,
            sequencer,
            open: Vec::new(),
            open_tokens: Vec::new(),
            open_bytes: 0,
            opened_at_ns: None,
            inflight: 0,
            durable_pending: None,
            sync_requested: false,
            failed: None,
            bug,
        }
    }

    /// Admits `entry`, to be answered on `token`, at time `now_ns`.
    pub fn submit(&mut self, entry: Entry, token: T, now_ns: u64) -> Result<(), Refusal> {
        if let Some(reason) = &self.failed {
            return Err(Refusal::Failed(reason.clone()));
        }
        if self.inflight >= self.config.inflight_max {
            return Err(Refusal::Overloaded {
                inflight_max: self.config.inflight_max,
            });
        }
        self.inflight += 1;
        if self.open.is_empty() {
            self.opened_at_ns = Some(now_ns);
        }
        self.open_bytes += entry_bytes(&entry);
        self.open.push(entry);
        self.open_tokens.push(token);
        Ok(())
    }

    /// The earliest time at which [`NodeCore::poll`] has something new to
    /// do without another input (the open batch's window ends), if any.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.durable_pending.is_some() || self.open.is_empty() {
            return None;
        }
        self.opened_at_ns
            .map(|opened| opened + self.config.batch_window_ns)
    }

    /// The next action at time `now_ns`, if any: the pending batch's sync,
    /// or closing the open batch when the log is free and the batch is
    /// full or its window has passed.
    pub fn poll(&mut self, now_ns: u64) -> Option<Action<T>> {
        if self.failed.is_some() {
            return None;
        }
        if let Some(pending) = &self.durable_pending {
            if pending.log_index.is_some() && !self.sync_requested {
                self.sync_requested = true;
                return Some(Action::Sync);
            }
            return None;
        }
        if self.open.is_empty() {
            return None;
        }
        let full = self.open.len() >= self.config.batch_entries_max
            || self.open_bytes >= self.config.batch_bytes_max;
        let window_over = self
            .opened_at_ns
            .is_none_or(|opened| now_ns >= opened + self.config.batch_window_ns);
        if !full && !window_over {
            return None;
        }
        let count = batch_cut(
            &self.open,
            self.config.batch_entries_max,
            self.config.batch_bytes_max,
        );
        let rest = self.open.split_off(count);
        let rest_tokens = self.open_tokens.split_off(count);
        let entries = std::mem::replace(&mut self.open, rest);
        let tokens = std::mem::replace(&mut self.open_tokens, rest_tokens);
        self.open_bytes = self.open.iter().map(entry_bytes).sum();
        self.opened_at_ns = (!self.open.is_empty()).then_some(now_ns);
        let timestamp_ms = now_ns / 1_000_000;
        let batch = self.sequencer.close(entries, timestamp_ms);
        let encoded = batch.encode();
        let first_seq = batch.first_seq;
        self.durable_pending = Some(InFlight {
            batch,
            tokens,
            log_index: None,
        });
        self.sync_requested = false;
        Some(Action::Append { first_seq, encoded })
    }

    /// The pending batch's record is in the log at `log_index` (not yet
    /// synced). Returns the batch to execute only under
    /// [`InjectedBug::AckBeforeFsync`].
    pub fn appended(&mut self, log_index: u64) -> Vec<Action<T>> {
        let Some(pending) = &mut self.durable_pending else {
            return Vec::new();
        };
        pending.log_index = Some(log_index);
        if self.bug != Some(InjectedBug::AckBeforeFsync) {
            return Vec::new();
        }
        // The planted bug: run and answer now; the sync still follows.
        let batch = pending.batch.clone();
        let tokens = std::mem::take(&mut pending.tokens);
        self.executions(batch, log_index, tokens)
    }

    /// The log is synced through the pending batch: it is durable, so it
    /// may run and be answered.
    pub fn synced(&mut self) -> Vec<Action<T>> {
        self.sync_requested = false;
        let Some(pending) = self.durable_pending.take() else {
            return Vec::new();
        };
        if self.bug == Some(InjectedBug::AckBeforeFsync) {
            // Already released at the append.
            return Vec::new();
        }
        let log_index = pending.log_index.unwrap_or(0);
        self.executions(pending.batch, log_index, pending.tokens)
    }

    /// What the executor must run for a durable batch: the batch itself,
    /// unless a planted bug changes it.
    fn executions(&self, mut batch: Batch, log_index: u64, tokens: Vec<T>) -> Vec<Action<T>> {
        let again = match self.bug {
            Some(InjectedBug::ReorderEntries) if batch.entries.len() >= 2 => {
                batch.entries.swap(0, 1);
                None
            }
            Some(InjectedBug::ApplyTwice) => Some(Batch {
                first_seq: batch.last_seq() + 1,
                timestamp_ms: batch.timestamp_ms,
                entries: batch.entries.clone(),
            }),
            _ => None,
        };
        let mut actions = vec![Action::Execute {
            batch,
            log_index,
            tokens,
        }];
        if let Some(batch) = again {
            actions.push(Action::Execute {
                batch,
                log_index,
                tokens: Vec::new(),
            });
        }
        actions
    }

    /// `count` admitted requests were answered (or will never be: their
    /// callers were told otherwise).
    pub fn answered(&mut self, count: usize) {
        self.inflight = self.inflight.saturating_sub(count);
    }

    /// The log failed (a write or an fsync): the durable state is unknown,
    /// so the core stops; a restart recovers from what is on disk. Returns
    /// the tokens of every request that will not be answered.
    pub fn fail(&mut self, reason: String) -> Vec<T> {
        self.failed = Some(reason);
        let mut lost = Vec::new();
        if let Some(pending) = self.durable_pending.take() {
            lost.extend(pending.tokens);
        }
        lost.append(&mut self.open_tokens);
        self.open.clear();
        self.open_bytes = 0;
        self.inflight = 0;
        lost
    }
}

/// Replays the records after `after_index` into `executor` (restored to
/// just after that record, or fresh if it is 0), handing each batch and
/// its outcomes to `each`; returns the sequencer that continues after the
/// last batch (dense numbers, monotonic time).
pub fn replay_log(
    log: &FileLog,
    executor: &mut Executor,
    after_index: u64,
    mut sequencer: Sequencer,
    mut each: impl FnMut(&Batch, &[ordo_engine::TxOutcome]),
) -> Result<Sequencer, NodeError> {
    if log.last_index() <= after_index {
        return Ok(sequencer);
    }
    for record in log.read_from(after_index + 1)? {
        let (index, payload) = record?;
        let batch = Batch::decode(&payload).map_err(|err| NodeError::BadRecord {
            index,
            reason: err.to_string(),
        })?;
        let expected = executor.status().position + 1;
        if batch.first_seq != expected || batch.entries.is_empty() {
            return Err(NodeError::SequenceGap {
                index,
                expected,
                found: batch.first_seq,
            });
        }
        let outcomes = executor.execute(&batch);
        each(&batch, &outcomes);
        sequencer = Sequencer::after(&batch);
    }
    Ok(sequencer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_sequencer::entry::{ArgsEncoding, Invocation};

    fn config(batch_entries_max: usize, batch_window_ns: u64) -> CoreConfig {
        CoreConfig {
            inflight_max: 4,
            batch_entries_max,
            batch_bytes_max: 1 << 20,
            batch_window_ns,
        }
    }

    fn call(request_id: u64) -> Entry {
        Entry::Invoke(Invocation {
            client_id: 9,
            request_id,
            acked_below: 0,
            procedure: "p".into(),
            encoding: ArgsEncoding::Json,
            args: b"{}".to_vec(),
        })
    }

    fn append(core: &mut NodeCore<u64>, now_ns: u64) -> u64 {
        match core.poll(now_ns) {
            Some(Action::Append { first_seq, .. }) => first_seq,
            other => panic!("expected an append, got {other:?}"),
        }
    }

    #[test]
    fn nothing_runs_before_its_record_is_synced() {
        let mut core = NodeCore::new(config(8, 0), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        assert_eq!(append(&mut core, 0), 1);
        assert!(core.appended(1).is_empty(), "appended is not durable");
        assert!(matches!(core.poll(0), Some(Action::Sync)));
        assert!(core.poll(0).is_none(), "one sync per batch");
        let released = core.synced();
        let [Action::Execute { batch, tokens, .. }] = released.as_slice() else {
            panic!("expected one batch, got {released:?}");
        };
        assert_eq!((batch.first_seq, tokens.as_slice()), (1, &[1][..]));
    }

    #[test]
    fn one_batch_is_made_durable_at_a_time_while_the_next_grows() {
        let mut core = NodeCore::new(config(2, 0), Sequencer::new(), None);
        for request_id in 1..=3 {
            core.submit(call(request_id), request_id, 0).unwrap();
        }
        assert_eq!(append(&mut core, 0), 1, "the first two");
        core.submit(call(4), 4, 0).unwrap();
        core.appended(1);
        assert!(matches!(core.poll(0), Some(Action::Sync)));
        assert!(core.poll(0).is_none(), "the log is busy");
        core.synced();
        assert_eq!(append(&mut core, 0), 3, "then 3 and 4, numbered densely");
    }

    #[test]
    fn the_in_flight_limit_refuses_until_answers_go_out() {
        let mut core = NodeCore::new(config(8, 0), Sequencer::new(), None);
        for request_id in 1..=4 {
            core.submit(call(request_id), request_id, 0).unwrap();
        }
        assert_eq!(
            core.submit(call(5), 5, 0),
            Err(Refusal::Overloaded { inflight_max: 4 })
        );
        core.answered(1);
        assert!(core.submit(call(5), 5, 0).is_ok());
    }

    #[test]
    fn a_batch_waits_out_its_window_unless_it_is_full() {
        let mut core = NodeCore::new(config(2, 1_000), Sequencer::new(), None);
        core.submit(call(1), 1, 100).unwrap();
        assert_eq!(core.next_deadline_ns(), Some(1_100));
        assert!(core.poll(1_099).is_none());
        assert_eq!(append(&mut core, 1_100), 1);
        let mut core = NodeCore::new(config(2, 1_000), Sequencer::new(), None);
        core.submit(call(1), 1, 100).unwrap();
        core.submit(call(2), 2, 100).unwrap();
        assert_eq!(append(&mut core, 100), 1, "full: no wait");
    }

    #[test]
    fn a_failed_log_refuses_and_hands_back_every_waiting_caller() {
        let mut core = NodeCore::new(config(1, 0), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        core.submit(call(2), 2, 0).unwrap();
        append(&mut core, 0);
        let mut lost = core.fail("fsync failed".into());
        lost.sort_unstable();
        assert_eq!(lost, [1, 2]);
        assert!(matches!(
            core.submit(call(3), 3, 0),
            Err(Refusal::Failed(_))
        ));
        assert!(core.poll(0).is_none());
    }
}
