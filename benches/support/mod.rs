//! What the executor benches share: a loaded bank, and batches of
//! transfers. (A module, not a bench target: cargo only picks up
//! `benches/*.rs`.)

use ordo::ArgsEncoding;
use ordo::workload::TransferPicker;
use ordo_engine::{EngineConfig, Executor};
use ordo_sequencer::entry::{Batch, Deploy, Entry, Invocation};

const CLIENT: u128 = 42;

/// Where the log continues: the next sequence number and request id.
pub struct Batches {
    next_seq: u64,
    next_request: u64,
}

/// An executor with `partitions` threads, in the state the log leaves it
/// in: the bank module deployed, and `accounts` accounts opened.
pub fn loaded_bank(partitions: usize, accounts: u64, balance: i64) -> (Executor, Batches) {
    {
        let config = EngineConfig::default();
        let mut executor =
            Executor::with_partitions(Executor::compiler(&config), config, partitions);
        let mut entries = vec![Entry::Deploy(Deploy {
            client_id: CLIENT,
            request_id: 1,
            name: "bank".into(),
            wasm: ordo::modules::BANK.to_vec(),
        })];
        for first in (0..accounts).step_by(10_000) {
            let count = 10_000.min(accounts - first);
            entries.push(Entry::Invoke(Invocation {
                client_id: CLIENT,
                request_id: entries.len() as u64 + 1,
                acked_below: 0,
                procedure: "open_many".into(),
                encoding: ArgsEncoding::Postcard,
                args: postcard::to_stdvec(&(first, count, balance)).unwrap(),
            }));
        }
        let next = entries.len() as u64 + 1;
        executor.execute(&Batch {
            first_seq: 1,
            timestamp_ms: 0,
            entries,
        });
        (
            executor,
            Batches {
                next_seq: next,
                next_request: next,
            },
        )
    }
}

impl Batches {
    /// The next batch: `entries` transfers of 1 chosen by `picker`.
    pub fn transfer_batch(&mut self, entries: usize, picker: &mut TransferPicker) -> Batch {
        let batch = Batch {
            first_seq: self.next_seq,
            timestamp_ms: 0,
            entries: (0..entries as u64)
                .map(|offset| {
                    let request_id = self.next_request + offset;
                    Entry::Invoke(Invocation {
                        client_id: CLIENT,
                        request_id,
                        acked_below: request_id,
                        procedure: "transfer".into(),
                        encoding: ArgsEncoding::Postcard,
                        args: picker.transfer_args(1),
                    })
                })
                .collect(),
        };
        self.next_seq += entries as u64;
        self.next_request += entries as u64;
        batch
    }
}
