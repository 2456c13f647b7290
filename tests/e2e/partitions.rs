//! Partitioned execution (Calvin-style): whatever the number of partition
//! threads, and whatever the batch boundaries, the engine gives the same
//! outcomes, state hash and chain hash as one thread; undeclared accesses
//! abort the same way everywhere; and a node can restart with another
//! number of partitions.

use std::sync::Arc;

use common::entries::{self, postcard};
use ordo::workload::{KeyChooser, Request, Smallbank, Tpcc, Transfer, Workload};
use ordo::{AbortKind, ArgsEncoding, Node, NodeConfig, Outcome};
use ordo_engine::{
    EngineConfig, EngineStatus, Executor, ModuleCompiler, PartitionSchedule, TxOutcome,
};
use ordo_sequencer::entry::{Batch, Entry, Invocation};
use proptest::prelude::*;

use crate::common;

const CLIENT: u128 = 0x9A27;

fn invoke(request_id: u64, procedure: &str, args: Vec<u8>) -> Entry {
    entries::invoke(CLIENT, request_id, procedure, args)
}

fn deploy(request_id: u64, name: &str, wasm: &[u8]) -> Entry {
    entries::deploy(CLIENT, request_id, name, wasm)
}

/// Deploys `workload`'s modules (and the hostile module), loads its data,
/// then sends `requests` of its requests, with hostile calls, scans and
/// retries of earlier requests (some within a batch) mixed in.
fn entries_for(workload: &dyn Workload, seed: u64, requests: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut next_id = 1u64;
    for (name, wasm) in workload
        .modules()
        .into_iter()
        .chain([("hostile", ordo::modules::HOSTILE)])
    {
        entries.push(deploy(next_id, name, wasm));
        next_id += 1;
    }
    for Request {
        procedure, args, ..
    } in workload.load()
    {
        entries.push(invoke(next_id, procedure, args));
        next_id += 1;
    }
    let mut generator = workload.generator(seed);
    let mut rng = ordo::workload::SplitMix64::new(seed ^ 0x5EED);
    for _ in 0..requests {
        let entry = match rng.below(20) {
            // A retry of an earlier request: answered from the table.
            0 if next_id > 2 => {
                let earlier = entries[rng.below(entries.len() as u64) as usize].clone();
                entries.push(earlier);
                continue;
            }
            1 => invoke(
                next_id,
                "undeclared_write",
                postcard(&(rng.below(40), rng.below(40))),
            ),
            2 => invoke(next_id, "keys_panic", postcard(&rng.below(40))),
            3 => invoke(next_id, "keys_read_store", postcard(&rng.below(40))),
            4 => invoke(next_id, "declared_nothing", postcard(&rng.below(40))),
            _ => {
                let Request {
                    procedure, args, ..
                } = generator.next_request();
                invoke(next_id, procedure, args)
            }
        };
        entries.push(entry);
        next_id += 1;
    }
    for request in workload
        .checks()
        .into_iter()
        .flat_map(|check| check.requests)
    {
        entries.push(invoke(next_id, request.procedure, request.args));
        next_id += 1;
    }
    entries
}

/// Executes `entries` with `partitions` threads, cut into batches at
/// `cuts` (offsets, in any order).
fn execute(
    compiler: &Arc<ModuleCompiler>,
    entries: &[Entry],
    cuts: &[usize],
    partitions: usize,
) -> (Vec<TxOutcome>, EngineStatus) {
    execute_scheduled(
        compiler,
        entries,
        cuts,
        partitions,
        PartitionSchedule::Threads,
    )
}

/// [`execute`], with the partition threads' work run as `schedule` says.
fn execute_scheduled(
    compiler: &Arc<ModuleCompiler>,
    entries: &[Entry],
    cuts: &[usize],
    partitions: usize,
    schedule: PartitionSchedule,
) -> (Vec<TxOutcome>, EngineStatus) {
    let mut executor = Executor::with_partition_schedule(
        compiler.clone(),
        EngineConfig::default(),
        partitions,
        schedule,
    );
    // Every batch on the threads, however small (production runs small
    // batches on one thread: `PARALLEL_BATCH_ENTRIES_MIN`).
    executor.set_parallel_batch_entries_min(0);
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % entries.len()).collect();
    cuts.sort_unstable();
    let mut outcomes = Vec::new();
    let mut start = 0;
    for end in cuts.into_iter().chain([entries.len()]) {
        if end <= start {
            continue;
        }
        outcomes.extend(executor.execute(&Batch {
            first_seq: start as u64 + 1,
            timestamp_ms: 1_760_000_000_000,
            entries: entries[start..end].to_vec(),
        }));
        start = end;
    }
    (outcomes, executor.status())
}

fn workload(kind: u8) -> Box<dyn Workload> {
    match kind {
        0 => Box::new(Transfer::new(KeyChooser::uniform(64), 100)),
        1 => Box::new(Smallbank {
            keys: KeyChooser::zipf(64, 0.9),
        }),
        _ => Box::new(Tpcc::scaled(4, 2, 30, 200)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random bank, smallbank and TPC-C workloads give equal outcomes,
    /// state hashes and chain hashes under N = 1, 2, 4 and 8, on OS
    /// threads and under seeded interleavings of the partition threads'
    /// queues (three schedules per N).
    #[test]
    fn outcomes_and_hashes_do_not_depend_on_the_number_of_partitions(
        kind in 0u8..3,
        seed in any::<u64>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let compiler = Executor::compiler(&EngineConfig::default());
        let entries = entries_for(&*workload(kind), seed, 300);
        let (expected, expected_status) = execute(&compiler, &entries, &cuts, 1);
        prop_assert!(expected.iter().any(|tx| tx.outcome.is_committed()));
        for partitions in [2, 4, 8] {
            let (outcomes, status) = execute(&compiler, &entries, &cuts, partitions);
            prop_assert_eq!(&outcomes, &expected, "N = {}", partitions);
            prop_assert_eq!(status, expected_status, "N = {}", partitions);
            for schedule_seed in 0..3u64 {
                let schedule = PartitionSchedule::Seeded(seed ^ schedule_seed.wrapping_mul(0x9e37_79b9));
                let (outcomes, status) =
                    execute_scheduled(&compiler, &entries, &cuts, partitions, schedule);
                prop_assert_eq!(&outcomes, &expected, "N = {}, {:?}", partitions, schedule);
                prop_assert_eq!(status, expected_status, "N = {}, {:?}", partitions, schedule);
            }
        }
    }
}

fn abort_of(tx: &TxOutcome) -> (AbortKind, &str) {
    match &tx.outcome {
        Outcome::Aborted(abort) => (abort.kind, abort.message.as_str()),
        other => panic!("expected an abort, got {other:?}"),
    }
}

#[test]
fn touching_an_undeclared_partition_aborts_the_same_on_every_n() {
    let compiler = Executor::compiler(&EngineConfig::default());
    let entries = vec![
        deploy(1, "hostile", ordo::modules::HOSTILE),
        // Declares 1, writes 1 then 2: aborts at the write of 2.
        invoke(2, "undeclared_write", postcard(&(1u64, 2u64))),
        // Declares and writes only 3: commits.
        invoke(3, "undeclared_write", postcard(&(3u64, 3u64))),
        invoke(4, "declared_nothing", postcard(&5u64)),
        invoke(5, "keys_read_store", postcard(&6u64)),
        invoke(6, "keys_panic", postcard(&7u64)),
        // Bad arguments fail in the declaration, like in the procedure.
        invoke(7, "undeclared_write", postcard(&"not two numbers")),
    ];
    let mut first: Option<(Vec<TxOutcome>, EngineStatus)> = None;
    for partitions in [1, 2, 3, 8, 16] {
        let (outcomes, status) = execute(&compiler, &entries, &[], partitions);
        let (kind, message) = abort_of(&outcomes[1]);
        assert_eq!(kind, AbortKind::UndeclaredPartition, "{message}");
        // Key 2 of table `hostile_p`: the partition is the id's 8 bytes.
        assert!(
            message.contains("0x0000000000000002") && message.contains("did not declare"),
            "{message}"
        );
        assert!(outcomes[2].outcome.is_committed(), "{:?}", outcomes[2]);
        assert_eq!(abort_of(&outcomes[3]).0, AbortKind::UndeclaredPartition);
        let (kind, message) = abort_of(&outcomes[4]);
        assert_eq!(kind, AbortKind::Trap);
        assert!(message.contains("declaration"), "{message}");
        let (kind, message) = abort_of(&outcomes[5]);
        assert_eq!(kind, AbortKind::Trap);
        assert!(
            message.contains("partition declaration of `keys_panic`"),
            "{message}"
        );
        assert_eq!(abort_of(&outcomes[6]).0, AbortKind::BadArguments);
        // Only the one committed write is in the state.
        assert_eq!(status.keys, 1);
        match &first {
            None => first = Some((outcomes, status)),
            Some((expected, expected_status)) => {
                assert_eq!(&outcomes, expected, "N = {partitions}");
                assert_eq!(&status, expected_status, "N = {partitions}");
            }
        }
    }
}

#[test]
fn money_is_conserved_under_concurrent_multi_partition_transfers() {
    const ACCOUNTS: u64 = 1_000;
    const BALANCE: i64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(
        Node::open(NodeConfig {
            partitions: 4,
            ..NodeConfig::new(dir.path())
        })
        .unwrap(),
    );
    node.deploy("bank", ordo::modules::BANK).unwrap();
    node.call::<_, ()>("open_many", &(0u64, ACCOUNTS, BALANCE))
        .unwrap();
    // Four clients, each with 2,000 transfers in flight at once, between
    // random accounts: most span two partition threads.
    let clients: Vec<_> = (0..4u64)
        .map(|client| {
            let node = node.clone();
            std::thread::spawn(move || {
                let session = node.session();
                let mut picker = ordo::workload::TransferPicker::new(client, ACCOUNTS);
                for _ in 0..2_000 {
                    let (from, to) = picker.next_pair();
                    session
                        .submit(
                            "transfer",
                            ArgsEncoding::Postcard,
                            postcard(&(from, to, 7i64)),
                        )
                        .unwrap();
                }
                let mut committed = 0;
                for _ in 0..2_000 {
                    let completion = session.recv();
                    if completion.result.unwrap().outcome.is_committed() {
                        committed += 1;
                    }
                }
                committed
            })
        })
        .collect();
    let committed: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(committed > 4_000, "only {committed} of 8000 committed");
    let total: i64 = node.call("total", &()).unwrap().value;
    assert_eq!(total, ACCOUNTS as i64 * BALANCE, "money must be conserved");
}

#[test]
fn a_node_restarted_with_another_number_of_partitions_replays_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let open = |partitions| {
        Node::open(NodeConfig {
            partitions,
            ..NodeConfig::new(dir.path())
        })
        .unwrap()
    };
    let tpcc = Tpcc::scaled(3, 2, 20, 100);
    let before = {
        let node = open(1);
        node.deploy("tpcc", ordo::modules::TPCC).unwrap();
        let session = node.session();
        let mut generator = tpcc.generator(3);
        let requests = tpcc
            .load()
            .into_iter()
            .chain((0..500).map(|_| generator.next_request()));
        for Request {
            procedure, args, ..
        } in requests
        {
            session
                .submit(procedure, ArgsEncoding::Postcard, args)
                .unwrap();
        }
        for _ in 0..tpcc.load().len() + 500 {
            session.recv().result.unwrap();
        }
        let status = node.status();
        node.shutdown();
        status
    };
    assert!(before.engine.keys > 0);
    for partitions in [4, 2, 16] {
        let node = open(partitions);
        let after = node.status();
        assert_eq!(
            after.engine, before.engine,
            "replayed with {partitions} partitions"
        );
        node.shutdown();
    }
    let _ = Node::open(NodeConfig {
        partitions: 17,
        ..NodeConfig::new(dir.path())
    })
    .err()
    .expect("17 partitions are more than there are slots");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The engine reads bare-parameter declarations from the arguments
    /// itself. Whatever it reads must be the partition of the key the
    /// procedure then touches, for postcard and JSON arguments alike: a
    /// wrong reading would abort these calls as undeclared.
    #[test]
    fn declarations_read_by_the_host_match_the_keys_touched(
        ids in proptest::collection::vec(any::<u64>(), 1..8),
        names in proptest::collection::vec("[a-z\u{0}\u{e9}\u{1F600}]{0,6}", 1..8),
    ) {
        let compiler = Executor::compiler(&EngineConfig::default());
        let mut entries = vec![
            deploy(1, "hostile", ordo::modules::HOSTILE),
            deploy(2, "kv", ordo::modules::KV),
        ];
        let mut next_id = 3;
        let json = |procedure: &str, args: serde_json::Value, next_id: &mut u64| {
            *next_id += 1;
            Entry::Invoke(Invocation {
                client_id: CLIENT,
                request_id: *next_id - 1,
                acked_below: 0,
                procedure: procedure.to_string(),
                encoding: ArgsEncoding::Json,
                args: serde_json::to_vec(&args).unwrap(),
            })
        };
        for id in &ids {
            entries.push(invoke(next_id, "undeclared_write", postcard(&(*id, *id))));
            next_id += 1;
            entries.push(json("undeclared_write", serde_json::json!({"declared": id, "other": id}), &mut next_id));
        }
        for name in &names {
            entries.push(invoke(next_id, "put", postcard(&(name.clone(), 7i64))));
            next_id += 1;
            entries.push(json("incr", serde_json::json!({"key": name, "by": 1}), &mut next_id));
        }
        let (outcomes, _) = execute(&compiler, &entries, &[], 2);
        for tx in &outcomes[2..] {
            prop_assert!(tx.outcome.is_committed(), "{:?}", tx);
        }
    }
}
