//! Snapshots: an executor restored from a snapshot taken at an instance-
//! epoch start continues exactly like the executor it was taken from, on
//! any number of partitions; damaged snapshots are refused, never panic.

use crate::common;

use std::sync::Arc;

use common::*;
use ordo_engine::{EngineConfig, EngineStatus, Executor, ModuleCompiler, SnapshotError, TxOutcome};
use ordo_entry::{ArgsEncoding, Batch, Entry, Invocation};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Open {
        client: u8,
        id: u64,
        balance: u64,
    },
    Transfer {
        client: u8,
        from: u64,
        to: u64,
        amount: u64,
    },
    Counter {
        client: u8,
        id: u64,
    },
    Unknown {
        client: u8,
    },
    /// Sends an earlier entry again, as a client retrying would.
    Retry {
        back: usize,
    },
    DeployBank {
        version: u64,
    },
    DeployTools,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0u8..6;
    let id = 0u64..10;
    prop_oneof![
        3 => (client.clone(), id.clone(), 0u64..100)
            .prop_map(|(client, id, balance)| Op::Open { client, id, balance }),
        6 => (client.clone(), id.clone(), id.clone(), 0u64..60)
            .prop_map(|(client, from, to, amount)| Op::Transfer { client, from, to, amount }),
        2 => (client.clone(), id).prop_map(|(client, id)| Op::Counter { client, id }),
        1 => client.prop_map(|client| Op::Unknown { client }),
        2 => (0usize..20).prop_map(|back| Op::Retry { back }),
        1 => (1u64..4).prop_map(|version| Op::DeployBank { version }),
        1 => Just(Op::DeployTools),
    ]
}

/// The log entries for `ops`, after a first deploy of the bank. Request
/// ids count up per client; every fourth request acknowledges all but
/// the client's last two, so the exactly-once windows move.
fn entries(ops: &[Op]) -> Vec<Entry> {
    let mut next_request = [1u64; 7];
    let mut log = vec![deploy(6, 0, "bank", bank_wasm(1))];
    for op in ops {
        let mut call = |client: u8, procedure: &str, values: &[u64]| {
            let request_id = next_request[client as usize];
            next_request[client as usize] += 1;
            Entry::Invoke(Invocation {
                client_id: 1000 + client as u128,
                request_id,
                acked_below: if request_id % 4 == 0 {
                    request_id - 2
                } else {
                    0
                },
                procedure: procedure.to_string(),
                encoding: ArgsEncoding::Postcard,
                args: args(values),
            })
        };
        let entry = match *op {
            Op::Open {
                client,
                id,
                balance,
            } => call(client, "open", &[id, balance]),
            Op::Transfer {
                client,
                from,
                to,
                amount,
            } => call(client, "transfer", &[from, to, amount]),
            Op::Counter { client, id } => call(client, "counter", &[id]),
            Op::Unknown { client } => call(client, "missing", &[]),
            Op::Retry { back } => log[log.len() - 1 - back % log.len()].clone(),
            Op::DeployBank { version } => {
                let request_id = next_request[6];
                next_request[6] += 1;
                deploy(6, request_id, "bank", bank_wasm(version))
            }
            Op::DeployTools => {
                let request_id = next_request[6];
                next_request[6] += 1;
                deploy(6, request_id, "tools", tools_wasm())
            }
        };
        log.push(entry);
    }
    log
}

/// Cuts `log` into batches of the given sizes (the last takes the rest).
fn batches(log: Vec<Entry>, sizes: &[usize]) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut entries = log.into_iter().peekable();
    let mut first_seq = 1;
    let mut sizes = sizes.iter().cycle();
    while entries.peek().is_some() {
        let size = *sizes.next().expect("sizes is not empty");
        let batch: Vec<Entry> = entries.by_ref().take(size).collect();
        let len = batch.len() as u64;
        batches.push(Batch {
            first_seq,
            timestamp_ms: 1_700_000_000_000 + first_seq * 3,
            entries: batch,
        });
        first_seq += len;
    }
    batches
}

/// A config with small limits, so that instance epochs, session windows
/// and client evictions all come round within a short workload.
fn config() -> EngineConfig {
    EngineConfig {
        sessions_max: 3,
        session_results_max: 4,
        ..small_epoch_config()
    }
}

struct Run {
    outcomes: Vec<Vec<TxOutcome>>,
    status: EngineStatus,
    /// The snapshot taken just before batch `snapshot_at`.
    snapshot: Vec<u8>,
    last_snapshot: Vec<u8>,
}

fn run_all(
    compiler: &Arc<ModuleCompiler>,
    partitions: usize,
    batches: &[Batch],
    snapshot_at: usize,
) -> Run {
    let mut executor = Executor::with_partitions(compiler.clone(), config(), partitions);
    executor.set_parallel_batch_entries_min(0);
    let mut outcomes = Vec::new();
    let mut snapshot = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        if index == snapshot_at {
            snapshot = executor.snapshot();
        }
        outcomes.push(executor.execute(batch));
    }
    Run {
        outcomes,
        status: executor.status(),
        snapshot,
        last_snapshot: executor.snapshot(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn restored_executor_continues_exactly_like_the_original(
        ops in proptest::collection::vec(op(), 1..60),
        sizes in proptest::collection::vec(1usize..6, 1..8),
        pick in any::<proptest::sample::Index>(),
        partitions in prop_oneof![Just(1usize), Just(2), Just(4)],
    ) {
        let config = config();
        let batches = batches(entries(&ops), &sizes);
        // Every batch that opens an instance epoch is a place to snapshot.
        let starts: Vec<usize> = batches
            .iter()
            .enumerate()
            .filter(|(_, batch)| config.opens_instance_epoch(batch.first_seq, batch.last_seq()))
            .map(|(index, _)| index)
            .collect();
        let at = starts[pick.index(starts.len())];
        let compiler = Executor::compiler(&config);

        let original = run_all(&compiler, 1, &batches, at);
        // The same state gives the same bytes, whatever the partitions.
        let other = run_all(&compiler, 3, &batches, at);
        prop_assert_eq!(&other.outcomes, &original.outcomes);
        prop_assert_eq!(other.status, original.status);
        prop_assert!(other.snapshot == original.snapshot, "snapshots differ across partitions");
        prop_assert!(other.last_snapshot == original.last_snapshot);

        // A fresh compiler: nothing cached from the original run.
        let mut restored = Executor::restore(
            Executor::compiler(&config),
            config.clone(),
            partitions,
            &original.snapshot,
        )
        .expect("a snapshot restores");
        prop_assert!(restored.snapshot() == original.snapshot, "restore then snapshot gives the same bytes");
        for (index, batch) in batches.iter().enumerate().skip(at) {
            let outcomes = restored.execute(batch);
            prop_assert_eq!(&outcomes, &original.outcomes[index], "batch {}", index);
        }
        prop_assert_eq!(restored.status(), original.status);
        prop_assert!(restored.snapshot() == original.last_snapshot);
    }
}

/// An executor with some of everything: two modules, accounts, a counter
/// warmed up, sessions and an evicted client.
fn busy_executor() -> Executor {
    let config = config();
    let mut executor = Executor::new(Executor::compiler(&config), config);
    run(&mut executor, vec![deploy(6, 0, "bank", bank_wasm(1))]);
    run(&mut executor, vec![deploy(6, 1, "tools", tools_wasm())]);
    run(
        &mut executor,
        (1..=5)
            .map(|id| invoke(id as u128, 1, "open", args(&[id, 100])))
            .collect(),
    );
    run(
        &mut executor,
        vec![
            invoke(1, 2, "transfer", args(&[1, 2, 40])),
            invoke(2, 2, "counter", args(&[2])),
        ],
    );
    executor
}

#[test]
fn snapshot_round_trips_and_the_status_survives() {
    let executor = busy_executor();
    let snapshot = executor.snapshot();
    assert_eq!(&snapshot[..8], b"ORDOSNAP");
    assert_eq!(executor.snapshot(), snapshot, "deterministic bytes");
    for partitions in [1, 2, 16] {
        let restored = Executor::restore(
            Executor::compiler(executor.config()),
            executor.config().clone(),
            partitions,
            &snapshot,
        )
        .unwrap();
        assert_eq!(restored.status(), executor.status());
        assert_eq!(restored.modules(), executor.modules());
        assert_eq!(restored.procedures(), executor.procedures());
        assert_eq!(restored.partitions(), partitions);
        assert_eq!(restored.snapshot(), snapshot);
    }
}

#[test]
#[should_panic(expected = "must first execute a batch that opens an instance epoch")]
fn restored_executor_refuses_a_batch_inside_an_epoch() {
    let executor = busy_executor();
    let position = executor.status().position;
    assert!(
        !executor
            .config()
            .opens_instance_epoch(position + 1, position + 1)
    );
    let mut restored = Executor::restore(
        Executor::compiler(executor.config()),
        executor.config().clone(),
        1,
        &executor.snapshot(),
    )
    .unwrap();
    run(&mut restored, vec![invoke(9, 1, "counter", args(&[1]))]);
}

fn restore(snapshot: &[u8]) -> Result<Executor, SnapshotError> {
    let config = config();
    Executor::restore(Executor::compiler(&config), config, 1, snapshot)
}

#[test]
fn truncated_snapshots_are_refused() {
    let snapshot = busy_executor().snapshot();
    for len in 0..snapshot.len() {
        let err = restore(&snapshot[..len])
            .err()
            .expect("a prefix is refused");
        assert!(
            matches!(
                err,
                SnapshotError::Truncated { .. } | SnapshotError::ChecksumMismatch
            ),
            "{len} bytes: {err}"
        );
    }
    let mut longer = snapshot.clone();
    longer.push(0);
    assert_eq!(
        restore(&longer).err(),
        Some(SnapshotError::ChecksumMismatch)
    );
}

#[test]
fn wrong_magic_and_version_are_refused() {
    let snapshot = busy_executor().snapshot();
    let mut wrong = snapshot.clone();
    wrong[0] = b'X';
    assert_eq!(restore(&wrong).err(), Some(SnapshotError::BadMagic));
    assert_eq!(restore(b"{}").err(), Some(SnapshotError::BadMagic));
    let mut newer = snapshot.clone();
    newer[8] = 4;
    let err = restore(&newer).err().unwrap();
    assert_eq!(
        err,
        SnapshotError::UnsupportedVersion {
            found: 4,
            supported: 3
        }
    );
    assert!(err.to_string().contains("version 4"), "{err}");
    let mut ancient = snapshot.clone();
    ancient[8] = 0;
    assert!(matches!(
        restore(&ancient).err(),
        Some(SnapshotError::UnsupportedVersion { found: 0, .. })
    ));
}

#[test]
fn every_flipped_byte_is_refused() {
    let snapshot = busy_executor().snapshot();
    for at in 0..snapshot.len() {
        let mut flipped = snapshot.clone();
        flipped[at] ^= 0x20;
        assert!(restore(&flipped).is_err(), "byte {at}");
    }
}

/// Damage the checksum cannot see (it is recomputed): the restore either
/// succeeds or fails cleanly, never panics.
#[test]
fn damaged_bodies_with_a_valid_checksum_never_panic() {
    use xxhash_rust::xxh3::xxh3_128;
    let snapshot = busy_executor().snapshot();
    let body = snapshot.len() - 16;
    let mut refused = 0;
    for at in (12..body).step_by(3) {
        for flip in [0x01, 0x80] {
            let mut damaged = snapshot[..body].to_vec();
            damaged[at] ^= flip;
            let checksum = xxh3_128(&damaged);
            damaged.extend_from_slice(&checksum.to_le_bytes());
            if restore(&damaged).is_err() {
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
}

#[test]
fn a_different_or_invalid_config_is_refused() {
    let executor = busy_executor();
    let snapshot = executor.snapshot();
    let other = EngineConfig {
        tx_fuel_max: 7,
        ..executor.config().clone()
    };
    let err = Executor::restore(Executor::compiler(&other), other, 1, &snapshot)
        .err()
        .unwrap();
    assert!(matches!(err, SnapshotError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("tx_fuel_max"), "{err}");
    let default = EngineConfig::default();
    let err = Executor::restore(Executor::compiler(&default), default, 1, &snapshot)
        .err()
        .unwrap();
    assert!(err.to_string().contains("instance_epoch"), "{err}");
    let invalid = EngineConfig {
        instance_epoch: 0,
        ..executor.config().clone()
    };
    let err = Executor::restore(Executor::compiler(&invalid), invalid, 1, &snapshot)
        .err()
        .unwrap();
    assert!(matches!(err, SnapshotError::InvalidConfig(_)), "{err}");
    for partitions in [0, 17] {
        let err = Executor::restore(
            Executor::compiler(executor.config()),
            executor.config().clone(),
            partitions,
            &snapshot,
        )
        .err()
        .unwrap();
        assert_eq!(err, SnapshotError::InvalidPartitions(partitions));
    }
}
