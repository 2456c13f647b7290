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
    /// The node is shutting down: what was admitted is still logged and
    /// answered, nothing new is taken.
    Stopped,
}

/// What the caller must do next.
#[derive(Debug)]
pub enum Action<T> {
    /// Append `batch` (its encoding is the log record) to the log, then
    /// hand it back to [`NodeCore::appended`] with the record's index.
    /// The caller encodes it: a production node does so outside the lock
    /// its submitters share the core under.
    Append { batch: Batch },
    /// Sync the log, then call [`NodeCore::synced`].
    Sync,
    /// Execute `batch` (durable), answer `tokens[i]` with the outcome of
    /// `batch.entries[i]`, then call [`NodeCore::answered`].
    Execute {
        batch: Batch,
        log_index: u64,
        tokens: Vec<T>,
        /// When the batch's first entry was admitted (caller's clock).
        opened_at_ns: u64,
    },
    /// A replicated log's core ([`NodeCore::proposing`]): hand `entries`
    /// to the log, which numbers them and delivers them once a majority
    /// holds them; `tokens[i]` travels with them to answer `entries[i]`.
    /// Then call [`NodeCore::proposed`].
    Propose {
        entries: Vec<Entry>,
        tokens: Vec<T>,
        timestamp_ms: u64,
        opened_at_ns: u64,
    },
}

/// A batch on its way to durability.
struct InFlight<T> {
    /// Out with the caller between [`Action::Append`] and
    /// [`NodeCore::appended`].
    batch: Option<Batch>,
    /// The batch's entries' request ids, for [`NodeCore::fail`] while
    /// the batch is out.
    request_ids: Vec<u64>,
    tokens: Vec<T>,
    log_index: Option<u64>,
    opened_at_ns: u64,
}

/// Where closed batches go.
enum Durability<T> {
    /// This node's own file log: the core numbers each batch (its
    /// sequencer), has it appended and synced, and releases it.
    LocalLog {
        sequencer: Sequencer,
        /// The batch being appended and synced (one at a time: group
        /// commit).
        pending: Option<InFlight<T>>,
        /// Whether [`Action::Sync`] was handed out for `pending`.
        sync_requested: bool,
    },
    /// A replicated log numbers and delivers batches itself; the core
    /// hands one over at a time.
    Replicated { proposing: bool },
}

/// The single node's admission, group commit, numbering and durability
/// rule, and a cluster member's admission and group commit. `T` is
/// whatever the caller needs to answer a request (a channel, or in the
/// simulator a client's index).
pub struct NodeCore<T> {
    config: CoreConfig,
    durability: Durability<T>,
    open: Vec<Entry>,
    open_tokens: Vec<T>,
    open_bytes: usize,
    /// When the open batch got its first entry.
    opened_at_ns: Option<u64>,
    inflight: usize,
    failed: Option<String>,
    stopping: bool,
    bug: Option<InjectedBug>,
}

impl<T> NodeCore<T> {
    /// A core over this node's own log, whose next batch continues
    /// `sequencer` (from [`replay_log`]).
    pub fn new(config: CoreConfig, sequencer: Sequencer, bug: Option<InjectedBug>) -> Self {
        Self::with_durability(
            config,
            Durability::LocalLog {
                sequencer,
                pending: None,
                sync_requested: false,
            },
            bug,
        )
    }

    /// A core over a replicated log (Raft), which numbers batches itself.
    pub fn proposing(config: CoreConfig) -> Self {
        Self::with_durability(config, Durability::Replicated { proposing: false }, None)
    }

    fn with_durability(
        config: CoreConfig,
        durability: Durability<T>,
        bug: Option<InjectedBug>,
    ) -> Self {
        NodeCore {
            config,
            durability,
            open: Vec::new(),
            open_tokens: Vec::new(),
            open_bytes: 0,
            opened_at_ns: None,
            inflight: 0,
            failed: None,
            stopping: false,
            bug,
        }
    }

    /// Admits `entry`, to be answered on `token`, at time `now_ns`.
    pub fn submit(&mut self, entry: Entry, token: T, now_ns: u64) -> Result<(), Refusal> {
        if let Some(reason) = &self.failed {
            return Err(Refusal::Failed(reason.clone()));
        }
        if self.stopping {
            return Err(Refusal::Stopped);
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

    /// Requests admitted and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Entries waiting in the open batch.
    pub fn open_entries(&self) -> usize {
        self.open.len()
    }

    /// Whether the open batch has reached a batch limit (it closes
    /// without waiting out its window).
    pub fn open_is_full(&self) -> bool {
        self.open.len() >= self.config.batch_entries_max
            || self.open_bytes >= self.config.batch_bytes_max
    }

    fn log_is_busy(&self) -> bool {
        match &self.durability {
            Durability::LocalLog { pending, .. } => pending.is_some(),
            Durability::Replicated { proposing } => *proposing,
        }
    }

    /// Nothing admitted is waiting for the log: a stopping node may go.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty() && !self.log_is_busy()
    }

    /// Takes nothing new; what was admitted is still closed into batches
    /// (without waiting out the window) and released as usual.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// The earliest time at which [`NodeCore::poll`] has something new to
    /// do without another input (the open batch's window ends), if any.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.log_is_busy() || self.open.is_empty() {
            return None;
        }
        self.opened_at_ns
            .map(|opened| opened + self.config.batch_window_ns)
    }

    /// The next action at time `now_ns` (a monotonic clock), if any: the
    /// pending batch's sync, or closing the open batch when the log is
    /// free and the batch is full or its window has passed. A closed
    /// batch is stamped `wall_ms` (procedures see it; kept monotonic by
    /// the sequencer).
    pub fn poll(&mut self, now_ns: u64, wall_ms: u64) -> Option<Action<T>> {
        if self.failed.is_some() {
            return None;
        }
        if let Durability::LocalLog {
            pending: Some(pending),
            sync_requested,
            ..
        } = &mut self.durability
        {
            if pending.log_index.is_some() && !*sync_requested {
                *sync_requested = true;
                return Some(Action::Sync);
            }
            return None;
        }
        if self.open.is_empty() || self.log_is_busy() {
            return None;
        }
        let window_over = self.stopping
            || self
                .opened_at_ns
                .is_none_or(|opened| now_ns >= opened + self.config.batch_window_ns);
        if !self.open_is_full() && !window_over {
            return None;
        }
        let opened_at_ns = self.opened_at_ns.unwrap_or(now_ns);
        let count = batch_cut(
            &self.open,
            self.config.batch_entries_max,
            self.config.batch_bytes_max,
        );
        let (entries, tokens) = if count == self.open.len() {
            self.open_bytes = 0;
            (
                std::mem::take(&mut self.open),
                std::mem::take(&mut self.open_tokens),
            )
        } else {
            let rest = self.open.split_off(count);
            let rest_tokens = self.open_tokens.split_off(count);
            self.open_bytes = rest.iter().map(entry_bytes).sum();
            (
                std::mem::replace(&mut self.open, rest),
                std::mem::replace(&mut self.open_tokens, rest_tokens),
            )
        };
        self.opened_at_ns = (!self.open.is_empty()).then_some(now_ns);
        match &mut self.durability {
            Durability::LocalLog {
                sequencer,
                pending,
                sync_requested,
            } => {
                let request_ids = entries.iter().map(|entry| entry.client().1).collect();
                let batch = sequencer.close(entries, wall_ms);
                *pending = Some(InFlight {
                    batch: None,
                    request_ids,
                    tokens,
                    log_index: None,
                    opened_at_ns,
                });
                *sync_requested = false;
                Some(Action::Append { batch })
            }
            Durability::Replicated { proposing } => {
                *proposing = true;
                Some(Action::Propose {
                    entries,
                    tokens,
                    timestamp_ms: wall_ms,
                    opened_at_ns,
                })
            }
        }
    }

    /// The pending batch's record is in the log at `log_index` (not yet
    /// synced); `batch` is the one [`Action::Append`] handed out. Returns
    /// the batch to execute only under [`InjectedBug::AckBeforeFsync`].
    pub fn appended(&mut self, log_index: u64, batch: Batch) -> Vec<Action<T>> {
        let Durability::LocalLog {
            pending: Some(pending),
            ..
        } = &mut self.durability
        else {
            return Vec::new();
        };
        pending.log_index = Some(log_index);
        if self.bug != Some(InjectedBug::AckBeforeFsync) {
            pending.batch = Some(batch);
            return Vec::new();
        }
        // The planted bug: run and answer now; the sync still follows.
        pending.batch = Some(batch.clone());
        let tokens = std::mem::take(&mut pending.tokens);
        let opened_at_ns = pending.opened_at_ns;
        self.executions(batch, log_index, tokens, opened_at_ns)
    }

    /// The log is synced through the pending batch: it is durable, so it
    /// may run and be answered.
    pub fn synced(&mut self) -> Vec<Action<T>> {
        let Durability::LocalLog {
            pending,
            sync_requested,
            ..
        } = &mut self.durability
        else {
            return Vec::new();
        };
        *sync_requested = false;
        let Some(pending) = pending.take() else {
            return Vec::new();
        };
        if self.bug == Some(InjectedBug::AckBeforeFsync) {
            // Already released at the append.
            return Vec::new();
        }
        let (Some(batch), Some(log_index)) = (pending.batch, pending.log_index) else {
            // Synced before the append was reported: nothing to release.
            return Vec::new();
        };
        self.executions(batch, log_index, pending.tokens, pending.opened_at_ns)
    }

    /// The replicated log took the batch of the last [`Action::Propose`]
    /// (or refused it: its callers were told): the next may close.
    pub fn proposed(&mut self) {
        if let Durability::Replicated { proposing } = &mut self.durability {
            *proposing = false;
        }
    }

    /// What the executor must run for a durable batch: the batch itself,
    /// unless a planted bug changes it.
    fn executions(
        &self,
        mut batch: Batch,
        log_index: u64,
        tokens: Vec<T>,
        opened_at_ns: u64,
    ) -> Vec<Action<T>> {
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
            opened_at_ns,
        }];
        if let Some(batch) = again {
            actions.push(Action::Execute {
                batch,
                log_index,
                tokens: Vec::new(),
                opened_at_ns,
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
    /// the request id and token of every request that will not be
    /// answered (none of them was released).
    pub fn fail(&mut self, reason: String) -> Vec<(u64, T)> {
        self.failed = Some(reason);
        let mut lost = Vec::new();
        if let Durability::LocalLog { pending, .. } = &mut self.durability
            && let Some(pending) = pending.take()
        {
            lost.extend(pending.request_ids.into_iter().zip(pending.tokens));
        }
        lost.extend(
            self.open
                .drain(..)
                .map(|entry| entry.client().1)
                .zip(self.open_tokens.drain(..)),
        );
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

    /// Polls for an append at `now_ns`; returns the batch as the log
    /// would take it.
    fn append(core: &mut NodeCore<u64>, now_ns: u64) -> Batch {
        match core.poll(now_ns, 0) {
            Some(Action::Append { batch }) => batch,
            other => panic!("expected an append, got {other:?}"),
        }
    }

    #[test]
    fn nothing_runs_before_its_record_is_synced() {
        let mut core = NodeCore::new(config(8, 0), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        let batch = append(&mut core, 0);
        assert_eq!(batch.first_seq, 1);
        assert!(
            core.appended(1, batch).is_empty(),
            "appended is not durable"
        );
        assert!(matches!(core.poll(0, 0), Some(Action::Sync)));
        assert!(core.poll(0, 0).is_none(), "one sync per batch");
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
        let batch = append(&mut core, 0);
        assert_eq!(
            (batch.first_seq, batch.entries.len()),
            (1, 2),
            "the first two"
        );
        core.submit(call(4), 4, 0).unwrap();
        core.appended(1, batch);
        assert!(matches!(core.poll(0, 0), Some(Action::Sync)));
        assert!(core.poll(0, 0).is_none(), "the log is busy");
        core.synced();
        let batch = append(&mut core, 0);
        assert_eq!(
            (batch.first_seq, batch.entries.len()),
            (3, 2),
            "then 3 and 4, numbered densely"
        );
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
        assert!(core.poll(1_099, 0).is_none());
        assert_eq!(append(&mut core, 1_100).first_seq, 1);
        let mut core = NodeCore::new(config(2, 1_000), Sequencer::new(), None);
        core.submit(call(1), 1, 100).unwrap();
        core.submit(call(2), 2, 100).unwrap();
        assert_eq!(append(&mut core, 100).first_seq, 1, "full: no wait");
    }

    #[test]
    fn a_failed_log_refuses_and_hands_back_every_waiting_caller() {
        let mut core = NodeCore::new(config(1, 0), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        core.submit(call(2), 2, 0).unwrap();
        append(&mut core, 0);
        let mut lost = core.fail("fsync failed".into());
        lost.sort_unstable();
        assert_eq!(lost, [(1, 1), (2, 2)], "request ids and tokens");
        assert!(matches!(
            core.submit(call(3), 3, 0),
            Err(Refusal::Failed(_))
        ));
        assert!(core.poll(0, 0).is_none());
    }

    fn append_at(core: &mut NodeCore<u64>, now_ns: u64, wall_ms: u64) -> Batch {
        match core.poll(now_ns, wall_ms) {
            Some(Action::Append { batch }) => batch,
            other => panic!("expected an append, got {other:?}"),
        }
    }

    #[test]
    fn batches_are_stamped_with_the_wall_clock_kept_monotonic() {
        let mut core = NodeCore::new(config(1, 0), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        core.submit(call(2), 2, 0).unwrap();
        let batch = append_at(&mut core, 5, 1_700);
        assert_eq!(batch.timestamp_ms, 1_700);
        core.appended(1, batch);
        core.poll(6, 1_700);
        core.synced();
        assert_eq!(
            append_at(&mut core, 7, 1_000).timestamp_ms,
            1_700,
            "a wall clock stepping back does not move batch time back"
        );
    }

    #[test]
    fn a_stopping_core_refuses_new_work_and_closes_the_open_batch_at_once() {
        let mut core = NodeCore::new(config(8, 1_000_000), Sequencer::new(), None);
        core.submit(call(1), 1, 0).unwrap();
        assert!(core.poll(1, 0).is_none(), "the window is open");
        core.stop();
        assert_eq!(core.submit(call(2), 2, 1), Err(Refusal::Stopped));
        assert!(!core.is_idle(), "request 1 is still to be logged");
        let batch = append(&mut core, 1);
        assert_eq!(batch.first_seq, 1, "no wait for the window");
        core.appended(1, batch);
        assert!(!core.is_idle());
        core.poll(1, 0);
        assert_eq!(core.synced().len(), 1);
        assert!(core.is_idle());
    }

    #[test]
    fn a_proposing_core_hands_over_one_batch_at_a_time_unnumbered() {
        let mut core: NodeCore<u64> = NodeCore::proposing(config(2, 0));
        for request_id in 1..=3 {
            core.submit(call(request_id), request_id, 10).unwrap();
        }
        let Some(Action::Propose {
            entries,
            tokens,
            timestamp_ms,
            opened_at_ns,
        }) = core.poll(20, 99)
        else {
            panic!("expected a proposal");
        };
        assert_eq!(
            (entries.len(), tokens, timestamp_ms, opened_at_ns),
            (2, vec![1, 2], 99, 10)
        );
        assert!(core.poll(21, 99).is_none(), "one proposal at a time");
        assert!(core.synced().is_empty());
        core.proposed();
        assert!(matches!(core.poll(22, 99), Some(Action::Propose { tokens, .. }) if tokens == [3]));
        assert_eq!(core.inflight(), 3, "answers, not proposals, uncount");
        core.answered(3);
        assert_eq!(core.inflight(), 0);
    }
}
