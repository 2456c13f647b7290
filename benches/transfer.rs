//! The transfer workload (docs/BENCHMARKS.md): move one unit between two random
//! accounts out of 100,000, reading both balances, checking funds, debiting
//! and crediting.
//!
//! - `durable_node`: the embedded node end to end — sequencing, one
//!   fdatasync per batch, one executor thread, completions back to the
//!   caller. This is the figure issue #2 sets a bar for.
//! - `executor_only`: the same transactions fed to the executor as
//!   pre-built batches, no log: the ceiling the engine alone allows.
//!
//! Run: `cargo bench --bench transfer`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ordo::workload::TransferPicker;
use ordo::{ArgsEncoding, Node, NodeConfig};
use support::loaded_bank;

mod support;

const ACCOUNTS: u64 = 100_000;
const BALANCE: i64 = 1_000_000;
/// Requests kept in flight by the driver: enough to cover a few fsyncs'
/// worth of throughput (Little's law), well under the node's limit.
const INFLIGHT: u64 = 32_768;
const EXECUTOR_BATCH_ENTRIES: usize = 4_096;

fn durable_node(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // Random transfers cross partitions half the time, so one executor
    // thread is fastest for them (benches/partitions.rs measures more).
    let node = Node::open(NodeConfig {
        partitions: 1,
        ..NodeConfig::new(dir.path())
    })
    .unwrap();
    node.deploy("bank", ordo::modules::BANK).unwrap();
    for first in (0..ACCOUNTS).step_by(10_000) {
        node.call::<_, ()>("open_many", &(first, 10_000u64, BALANCE))
            .unwrap();
    }
    let session = node.session();
    let mut picker = TransferPicker::new(1, ACCOUNTS);

    let mut group = c.benchmark_group("transfer");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("durable_node", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            let mut sent = 0;
            let mut done = 0;
            while done < iters {
                while sent < iters && sent - done < INFLIGHT {
                    session
                        .submit("transfer", ArgsEncoding::Postcard, picker.transfer_args(1))
                        .unwrap();
                    sent += 1;
                }
                let completion = session.recv();
                session.acknowledge(completion.request_id);
                assert!(completion.result.unwrap().outcome.is_committed());
                done += 1;
                // Drain whatever else is ready before refilling.
                while let Some(completion) = session.try_recv() {
                    session.acknowledge(completion.request_id);
                    assert!(completion.result.unwrap().outcome.is_committed());
                    done += 1;
                }
            }
            started.elapsed()
        })
    });
    group.finish();
    let total: i64 = node.call("total", &()).unwrap().value;
    assert_eq!(total, ACCOUNTS as i64 * BALANCE, "money must be conserved");
}

fn executor_only(c: &mut Criterion) {
    let (mut executor, mut batches) = loaded_bank(1, ACCOUNTS, BALANCE);
    let mut picker = TransferPicker::new(2, ACCOUNTS);

    let mut group = c.benchmark_group("transfer");
    group.throughput(Throughput::Elements(EXECUTOR_BATCH_ENTRIES as u64));
    group.sample_size(10);
    group.bench_function("executor_only", |b| {
        b.iter_batched(
            || batches.transfer_batch(EXECUTOR_BATCH_ENTRIES, &mut picker),
            |batch| executor.execute(&batch),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, durable_node, executor_only);
criterion_main!(benches);
