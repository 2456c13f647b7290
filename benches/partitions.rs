//! Partitioned execution (issue 4): the executor alone, fed pre-built
//! batches of 4,096 bank transfers, with 1 and 2 partition threads.
//!
//! - `single/N`: both accounts of every transfer share a slot, so each
//!   transaction runs on one thread.
//! - `cross10/N`: the same, except 10% of transfers have their accounts
//!   on the two different threads of N = 2, which makes those threads meet.
//!
//! The figure that matters is the ratio `N=2 / N=1` within one run.
//! Run: `cargo bench --bench partitions`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ordo::ArgsEncoding;
use ordo::workload::TransferPicker;
use ordo_engine::{EngineConfig, Executor};
use ordo_sequencer::entry::{Batch, Deploy, Entry, Invocation};

const ACCOUNTS: u64 = 100_000;
const BALANCE: i64 = 1_000_000;
const BATCH_ENTRIES: usize = 4_096;
const CLIENT: u128 = 42;

/// An executor with the bank module and `ACCOUNTS` accounts, and the
/// next free sequence number and request id.
fn loaded_executor(partitions: usize) -> (Executor, u64, u64) {
    let config = EngineConfig::default();
    let mut executor = Executor::with_partitions(Executor::compiler(&config), config, partitions);
    let mut entries = vec![Entry::Deploy(Deploy {
        client_id: CLIENT,
        request_id: 1,
        name: "bank".into(),
        wasm: ordo::modules::BANK.to_vec(),
    })];
    for first in (0..ACCOUNTS).step_by(10_000) {
        let request_id = entries.len() as u64 + 1;
        entries.push(Entry::Invoke(Invocation {
            client_id: CLIENT,
            request_id,
            acked_below: 0,
            procedure: "open_many".into(),
            encoding: ArgsEncoding::Postcard,
            args: postcard::to_stdvec(&(first, 10_000u64, BALANCE)).unwrap(),
        }));
    }
    let next = entries.len() as u64 + 1;
    executor.execute(&Batch {
        first_seq: 1,
        timestamp_ms: 0,
        entries,
    });
    (executor, next, next)
}

fn transfers(c: &mut Criterion) {
    let mut group = c.benchmark_group("partitions");
    group.throughput(Throughput::Elements(BATCH_ENTRIES as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    for (name, cross_fraction) in [("single", 0.0), ("cross10", 0.1)] {
        for partitions in [1, 2] {
            let (mut executor, mut next_seq, mut next_request) = loaded_executor(partitions);
            let mut picker = TransferPicker::by_slot(7, ACCOUNTS, cross_fraction, 2);
            group.bench_function(BenchmarkId::new(name, partitions), |b| {
                b.iter_batched(
                    || {
                        let entries = (0..BATCH_ENTRIES)
                            .map(|_| {
                                let request_id = next_request;
                                next_request += 1;
                                Entry::Invoke(Invocation {
                                    client_id: CLIENT,
                                    request_id,
                                    acked_below: request_id,
                                    procedure: "transfer".into(),
                                    encoding: ArgsEncoding::Postcard,
                                    args: picker.transfer_args(1),
                                })
                            })
                            .collect();
                        let batch = Batch {
                            first_seq: next_seq,
                            timestamp_ms: 0,
                            entries,
                        };
                        next_seq += BATCH_ENTRIES as u64;
                        batch
                    },
                    |batch| {
                        let outcomes = executor.execute(&batch);
                        assert!(outcomes.iter().all(|tx| tx.outcome.is_committed()));
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
