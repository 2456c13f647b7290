//! The ordering state machine: turns runs of requests into batches with
//! dense sequence numbers and timestamps that never go backwards.
//!
//! It does no I/O and reads no clock: the caller passes the time in, so
//! the same inputs always give the same batches (and tests need no
//! sleeping). The embedded node drives it from its log thread; a
//! replicated log will drive it from the leader.

use crate::entry::{Batch, Entry};

/// Where the next batch starts. Restored from the last logged batch on
/// restart, so numbering continues densely and time stays monotonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequencer {
    next_seq: u64,
    last_timestamp_ms: u64,
}

impl Default for Sequencer {
    fn default() -> Sequencer {
        Sequencer::new()
    }
}

impl Sequencer {
    /// A sequencer for an empty log: the first entry gets sequence 1.
    pub fn new() -> Sequencer {
        Sequencer {
            next_seq: 1,
            last_timestamp_ms: 0,
        }
    }

    /// A sequencer continuing after `last`, the newest logged batch.
    pub fn after(last: &Batch) -> Sequencer {
        Sequencer {
            next_seq: last.last_seq() + 1,
            last_timestamp_ms: last.timestamp_ms,
        }
    }

    /// A sequencer continuing at `next_seq` after a batch stamped
    /// `last_timestamp_ms` (from a snapshot, where no batch is at hand).
    pub fn resume(next_seq: u64, last_timestamp_ms: u64) -> Sequencer {
        Sequencer {
            next_seq,
            last_timestamp_ms,
        }
    }

    /// The timestamp of the last batch closed (0 before any).
    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Closes a batch: numbers `entries` densely from the next sequence
    /// number and stamps it with `now_ms`, or with the previous batch's
    /// timestamp if the clock went backwards.
    ///
    /// # Panics
    /// If `entries` is empty: an empty batch would be a log record with no
    /// sequence numbers.
    pub fn close(&mut self, entries: Vec<Entry>, now_ms: u64) -> Batch {
        assert!(!entries.is_empty(), "a batch holds at least one entry");
        let timestamp_ms = now_ms.max(self.last_timestamp_ms);
        let batch = Batch {
            first_seq: self.next_seq,
            timestamp_ms,
            entries,
        };
        self.next_seq += batch.entries.len() as u64;
        self.last_timestamp_ms = timestamp_ms;
        batch
    }
}

/// The bytes an entry counts for against a batch's byte limit.
pub fn entry_bytes(entry: &Entry) -> usize {
    match entry {
        Entry::Invoke(invocation) => invocation.args.len() + invocation.procedure.len(),
        Entry::InvokeChecked { invocation, .. } => {
            invocation.args.len() + invocation.procedure.len() + 16
        }
        Entry::Deploy(deploy) => deploy.wasm.len() + deploy.name.len(),
        Entry::DeployResetting {
            deploy,
            reset_tables,
        } => {
            deploy.wasm.len()
                + deploy.name.len()
                + reset_tables.iter().map(String::len).sum::<usize>()
        }
        Entry::Session(_) => 0,
        Entry::Undeploy(undeploy) => undeploy.name.len(),
    }
}

/// How many entries from the front of `entries` go into the next batch:
/// at most `entries_max`, and no more than `bytes_max` bytes, but always
/// at least one (a single oversized entry still has to be logged; entry
/// sizes are limited where requests come in).
pub fn batch_cut(entries: &[Entry], entries_max: usize, bytes_max: usize) -> usize {
    assert!(entries_max > 0, "a batch must be able to hold an entry");
    let mut bytes = 0;
    let fitting = entries
        .iter()
        .take(entries_max)
        .take_while(|entry| {
            bytes += entry_bytes(entry);
            bytes <= bytes_max
        })
        .count();
    fitting.max(1).min(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{ArgsEncoding, Invocation};
    use proptest::prelude::*;

    fn entry(args_bytes: usize) -> Entry {
        Entry::Invoke(Invocation {
            client_id: 1,
            request_id: 1,
            acked_below: 0,
            procedure: "p".into(),
            encoding: ArgsEncoding::Postcard,
            args: vec![0; args_bytes],
        })
    }

    #[test]
    fn numbering_continues_after_the_last_batch() {
        let mut sequencer = Sequencer::new();
        let first = sequencer.close(vec![entry(1), entry(1)], 100);
        assert_eq!((first.first_seq, first.last_seq()), (1, 2));
        let resumed = Sequencer::after(&first);
        assert_eq!(resumed, sequencer);
        assert_eq!(resumed.next_seq(), 3);
    }

    #[test]
    fn time_never_goes_backwards() {
        let mut sequencer = Sequencer::new();
        assert_eq!(sequencer.close(vec![entry(0)], 500).timestamp_ms, 500);
        assert_eq!(sequencer.close(vec![entry(0)], 400).timestamp_ms, 500);
        assert_eq!(sequencer.close(vec![entry(0)], 600).timestamp_ms, 600);
    }

    #[test]
    fn cut_respects_count_and_bytes_but_takes_one() {
        let entries: Vec<Entry> = (0..10).map(|_| entry(9)).collect(); // 10 bytes each
        assert_eq!(batch_cut(&entries, 4, 1000), 4);
        assert_eq!(batch_cut(&entries, 100, 35), 3);
        assert_eq!(batch_cut(&entries, 100, 5), 1);
        assert_eq!(batch_cut(&entries[..2], 100, 1000), 2);
    }

    proptest! {
        /// However requests are cut into batches, sequence numbers are
        /// dense and timestamps monotonic.
        #[test]
        fn batches_are_dense_and_monotonic(
            sizes in proptest::collection::vec(1usize..50, 1..40),
            clock in proptest::collection::vec(0u64..1000, 40),
        ) {
            let mut sequencer = Sequencer::new();
            let mut expected_seq = 1;
            let mut last_time = 0;
            for (size, now) in sizes.into_iter().zip(clock) {
                let batch = sequencer.close((0..size).map(|_| entry(0)).collect(), now);
                prop_assert_eq!(batch.first_seq, expected_seq);
                prop_assert!(batch.timestamp_ms >= last_time);
                expected_seq = batch.last_seq() + 1;
                last_time = batch.timestamp_ms;
            }
        }
    }
}
