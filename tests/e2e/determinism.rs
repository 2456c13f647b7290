//! Determinism: the same log gives the same outcomes and state, on a live
//! node, on a replay, on a fresh engine, and whatever the batch boundaries.

use std::sync::Arc;

use common::entries::{self, postcard};
use ordo::{Node, NodeConfig, Outcome};
use ordo_engine::{EngineConfig, Executor, ModuleCompiler, TxOutcome};
use ordo_sequencer::entry::{Batch, Entry};
use ordo_sequencer::{FileLog, FileLogConfig};
use proptest::prelude::*;

use crate::common;

const CLIENT: u128 = 0xC11E47;

fn invoke(request_id: u64, procedure: &str, args: Vec<u8>) -> Entry {
    entries::invoke(CLIENT, request_id, procedure, args)
}

fn deploy(request_id: u64, name: &str, wasm: &[u8]) -> Entry {
    entries::deploy(CLIENT, request_id, name, wasm)
}

/// Float inputs whose arithmetic yields NaNs with assorted sign and
/// payload bits; without NaN canonicalisation these could differ between
/// CPUs or compiler versions.
fn nan_inputs() -> Vec<(f64, f64)> {
    vec![
        (1.5, -2.0),
        (f64::NAN, 3.0),
        (f64::from_bits(0x7ff0_0000_0000_0001), -0.0),
        (f64::from_bits(0xfff8_dead_beef_0001), f64::INFINITY),
        (f64::NEG_INFINITY, f64::from_bits(0x7ff4_0000_0000_0000)),
        (-1.0, 0.0),
    ]
}

/// A workload touching every kind of outcome: deploys, commits, user
/// aborts, traps, fuel exhaustion, NaN-producing floats and randomness.
fn workload(accounts: u64, transfers: &[(u64, u64, i64)]) -> Vec<Entry> {
    let mut entries = vec![
        deploy(1, "bank", ordo::modules::BANK),
        deploy(2, "hostile", ordo::modules::HOSTILE),
        invoke(3, "open_many", postcard(&(0u64, accounts, 100i64))),
    ];
    let mut request_id = 4;
    for (index, (from, to, amount)) in transfers.iter().enumerate() {
        entries.push(invoke(
            request_id,
            "transfer",
            postcard(&(from % accounts, to % accounts, *amount)),
        ));
        request_id += 1;
        if index % 7 == 0 {
            let (a, b) = nan_inputs()[index % nan_inputs().len()];
            entries.push(invoke(request_id, "nan", postcard(&(a, b))));
            request_id += 1;
        }
        if index % 11 == 0 {
            entries.push(invoke(request_id, "context", postcard(&())));
            request_id += 1;
        }
        if index % 13 == 0 {
            entries.push(invoke(request_id, "write_then_panic", postcard(&"k")));
            request_id += 1;
        }
        if index == 0 {
            entries.push(invoke(request_id, "spin", postcard(&())));
            request_id += 1;
        }
    }
    entries.push(invoke(request_id, "total", postcard(&())));
    entries
}

/// Executes `entries` cut into batches at `cuts` (sorted offsets).
fn execute_split(
    compiler: &Arc<ModuleCompiler>,
    entries: &[Entry],
    cuts: &[usize],
) -> (Vec<TxOutcome>, ordo_engine::EngineStatus) {
    let config = EngineConfig::default();
    let mut executor = Executor::new(compiler.clone(), config);
    let mut outcomes = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([entries.len()]) {
        if end <= start {
            continue;
        }
        let batch = Batch {
            first_seq: start as u64 + 1,
            timestamp_ms: 1_750_000_000_000,
            entries: entries[start..end].to_vec(),
        };
        outcomes.extend(executor.execute(&batch));
        start = end;
    }
    (outcomes, executor.status())
}

#[test]
fn nan_results_are_canonical_and_identical_across_engines() {
    let compiler = Executor::compiler(&EngineConfig::default());
    let mut entries = vec![deploy(1, "hostile", ordo::modules::HOSTILE)];
    for (index, (a, b)) in nan_inputs().into_iter().enumerate() {
        entries.push(invoke(index as u64 + 2, "nan", postcard(&(a, b))));
    }
    let (first, first_status) = execute_split(&compiler, &entries, &[]);
    // A second compiler: nothing cached from the first run.
    let other = Executor::compiler(&EngineConfig::default());
    let (second, second_status) = execute_split(&other, &entries, &[1, 3]);
    assert_eq!(first, second);
    assert_eq!(first_status.state_hash, second_status.state_hash);
    let mut nans = 0;
    for tx in &first[1..] {
        let Outcome::Committed { result } = &tx.outcome else {
            panic!("nan should commit: {tx:?}");
        };
        let bits: u64 = postcard::from_bytes(result).unwrap();
        if f64::from_bits(bits).is_nan() {
            nans += 1;
            assert_eq!(bits, 0x7ff8_0000_0000_0000, "NaN not canonical");
        }
    }
    assert!(nans > 0, "the inputs should produce NaNs");
}

#[test]
fn live_node_replay_and_fresh_engine_agree() {
    let dir = tempfile::tempdir().unwrap();
    let transfers: Vec<(u64, u64, i64)> = (0..300u64)
        .map(|i| (i * 7, i * 13 + 1, (i % 5) as i64 * 40))
        .collect();
    let entries = workload(50, &transfers);

    // Live: submit everything pipelined so the log thread cuts batches
    // wherever timing puts them.
    let (live_outcomes, live_status) = {
        let node = Node::open(NodeConfig::new(dir.path())).unwrap();
        node.deploy("bank", ordo::modules::BANK).unwrap();
        node.deploy("hostile", ordo::modules::HOSTILE).unwrap();
        let session = node.session();
        let mut expected = 0;
        for entry in &entries[2..] {
            let Entry::Invoke(invocation) = entry else {
                unreachable!()
            };
            session
                .submit(
                    &invocation.procedure,
                    invocation.encoding,
                    invocation.args.clone(),
                )
                .unwrap();
            expected += 1;
        }
        let mut outcomes = Vec::new();
        for _ in 0..expected {
            let completion = session.recv();
            session.acknowledge(completion.request_id);
            outcomes.push(completion.result.unwrap());
        }
        outcomes.sort_by_key(|tx| tx.seq);
        let status = node.status();
        node.shutdown();
        (outcomes, status)
    };
    assert!(live_status.log_records > 2, "expected several batches");

    // Replay: reopening reaches the same position and both hashes.
    {
        let node = Node::open(NodeConfig::new(dir.path())).unwrap();
        assert_eq!(node.status().engine, live_status.engine);
    }

    // A fresh engine fed the log's batches gives the same outcomes.
    let log = FileLog::open(FileLogConfig::new(dir.path().join("log"))).unwrap();
    let compiler = Executor::compiler(&EngineConfig::default());
    let mut executor = Executor::new(compiler, EngineConfig::default());
    let mut replayed = Vec::new();
    for record in log.read_from(1).unwrap() {
        let (_, payload) = record.unwrap();
        replayed.extend(executor.execute(&Batch::decode(&payload).unwrap()));
    }
    assert_eq!(executor.status(), live_status.engine);
    let replayed_invocations: Vec<_> = replayed
        .into_iter()
        .filter(|tx| !matches!(tx.outcome, Outcome::Deployed(_)))
        .collect();
    assert_eq!(replayed_invocations, live_outcomes);

    // Money is conserved, and the workload really exercised aborts.
    let aborts = live_outcomes
        .iter()
        .filter(|tx| !tx.outcome.is_committed())
        .count();
    assert!(aborts > 10, "workload should include aborts, had {aborts}");
    let Outcome::Committed { result } = &live_outcomes.last().unwrap().outcome else {
        panic!("total should commit");
    };
    assert_eq!(postcard::from_bytes::<i64>(result).unwrap(), 50 * 100);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Outcomes and the state hash do not depend on where the log was cut
    /// into batches.
    #[test]
    fn batch_boundaries_do_not_change_outcomes(
        transfers in proptest::collection::vec((0u64..20, 0u64..20, -5i64..150), 1..60),
        cuts in proptest::collection::vec(0usize..120, 0..12),
    ) {
        let compiler = shared_compiler();
        let entries = workload(20, &transfers);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut % entries.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let (one_batch, one_status) = execute_split(&compiler, &entries, &[]);
        let every_entry: Vec<usize> = (1..entries.len()).collect();
        let (singles, singles_status) = execute_split(&compiler, &entries, &every_entry);
        let (split, split_status) = execute_split(&compiler, &entries, &cuts);
        prop_assert_eq!(&split, &one_batch);
        prop_assert_eq!(&singles, &one_batch);
        prop_assert_eq!(split_status.state_hash, one_status.state_hash);
        prop_assert_eq!(singles_status.state_hash, one_status.state_hash);
        prop_assert_eq!(split_status.position, entries.len() as u64);
    }
}

/// One compiler (and so one compiled-module cache) for all proptest cases.
fn shared_compiler() -> Arc<ModuleCompiler> {
    static COMPILER: std::sync::OnceLock<Arc<ModuleCompiler>> = std::sync::OnceLock::new();
    COMPILER
        .get_or_init(|| Executor::compiler(&EngineConfig::default()))
        .clone()
}
