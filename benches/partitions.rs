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
use ordo::workload::TransferPicker;
use support::loaded_bank;

mod support;

const ACCOUNTS: u64 = 100_000;
const BALANCE: i64 = 1_000_000;
const BATCH_ENTRIES: usize = 4_096;

fn transfers(c: &mut Criterion) {
    let mut group = c.benchmark_group("partitions");
    group.throughput(Throughput::Elements(BATCH_ENTRIES as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    for (name, cross_fraction) in [("single", 0.0), ("cross10", 0.1)] {
        for partitions in [1, 2] {
            let (mut executor, mut batches) = loaded_bank(partitions, ACCOUNTS, BALANCE);
            let mut picker = TransferPicker::by_slot(7, ACCOUNTS, cross_fraction, 2);
            group.bench_function(BenchmarkId::new(name, partitions), |b| {
                b.iter_batched(
                    || batches.transfer_batch(BATCH_ENTRIES, &mut picker),
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
