//! Local reads (`Executor::read`): read-only procedures against the
//! current state, outside the log, changing nothing observable.

use crate::common;

use common::*;
use ordo_engine::{AbortKind, Executor, Outcome};
use ordo_entry::{ArgsEncoding, Entry};

fn abort_kind(outcome: &Outcome) -> AbortKind {
    outcome.abort().expect("expected an abort").kind
}

/// An executor with the bank deployed and accounts 1 to 6 open, 100 each.
fn bank(partitions: usize) -> Executor {
    let config = small_epoch_config();
    let mut executor = executor(&config, partitions);
    let outcomes = run(&mut executor, vec![deploy(1, 1, "bank", bank_wasm(1))]);
    assert!(outcomes[0].outcome.is_committed(), "{outcomes:?}");
    let opens = (1..=6)
        .map(|id| invoke(1, 1 + id, "open", args(&[id, 100])))
        .collect();
    for tx in run(&mut executor, opens) {
        assert!(tx.outcome.is_committed(), "{tx:?}");
    }
    executor
}

fn read(executor: &mut Executor, procedure: &str, values: &[u64]) -> Outcome {
    let position = executor.status().position;
    let read = executor.read(procedure, ArgsEncoding::Postcard, &args(values), 42);
    assert_eq!(read.position, position);
    read.outcome
}

#[test]
fn read_sees_a_committed_transfer() {
    for partitions in [1, 3] {
        let mut executor = bank(partitions);
        let balance = read(&mut executor, "balance", &[2]);
        assert_eq!(committed(&balance), 100i64.to_le_bytes());
        let outcomes = run(
            &mut executor,
            vec![invoke(2, 1, "transfer", args(&[1, 2, 30]))],
        );
        assert!(outcomes[0].outcome.is_committed(), "{outcomes:?}");
        let balance = read(&mut executor, "balance", &[2]);
        assert_eq!(committed(&balance), 130i64.to_le_bytes());
        let balance = read(&mut executor, "balance", &[1]);
        assert_eq!(committed(&balance), 70i64.to_le_bytes());
        let missing = read(&mut executor, "balance", &[99]);
        assert_eq!(abort_kind(&missing), AbortKind::User);
    }
}

#[test]
fn read_of_an_undeclared_procedure_sees_every_slot() {
    let mut executor = bank(2);
    let dump = read(&mut executor, "dump", &[]);
    // Six entries of `u32 len, 14-byte key, u32 len, 8-byte value`.
    assert_eq!(committed(&dump).len(), 6 * (4 + 14 + 4 + 8));
    let keys = executor.status().keys;
    assert_eq!(keys, 6);
}

#[test]
fn writing_procedures_and_unknown_ones_are_refused() {
    let mut executor = bank(1);
    let before = executor.snapshot();
    let refused = read(&mut executor, "transfer", &[1, 2, 5]);
    assert_eq!(abort_kind(&refused), AbortKind::NotReadOnly);
    assert_eq!(AbortKind::NotReadOnly.as_str(), "not_read_only");
    let unknown = read(&mut executor, "nope", &[]);
    assert_eq!(abort_kind(&unknown), AbortKind::UnknownProcedure);
    assert_eq!(executor.snapshot(), before);
    let balance = read(&mut executor, "balance", &[1]);
    assert_eq!(committed(&balance), 100i64.to_le_bytes());
}

#[test]
fn a_read_only_procedure_that_writes_aborts_and_changes_nothing() {
    for partitions in [1, 2, 4] {
        let mut executor = bank(partitions);
        let status = executor.status();
        let before = executor.snapshot();
        let sneaky = read(&mut executor, "sneaky", &[3, 999]);
        assert_eq!(abort_kind(&sneaky), AbortKind::ReadOnly, "{sneaky:?}");
        assert_eq!(AbortKind::ReadOnly.as_str(), "read_only");
        assert_eq!(executor.status(), status);
        assert_eq!(executor.snapshot(), before, "nothing observable changed");
        let balance = read(&mut executor, "balance", &[3]);
        assert_eq!(committed(&balance), 100i64.to_le_bytes());
        let message = &sneaky.abort().unwrap().message;
        assert!(
            message.contains("`sneaky`") && message.contains("ordo.put"),
            "{message}"
        );
    }
}

#[test]
fn a_logged_read_only_procedure_that_writes_aborts_the_same_on_every_partition_count() {
    let mut seen = Vec::new();
    for partitions in [1, 2, 4] {
        let mut executor = bank(partitions);
        let state_hash = executor.status().state_hash;
        // A batch that writes around it: the writes before and after land,
        // the read-only procedure's do not.
        let logged = run(
            &mut executor,
            vec![
                invoke(5, 1, "transfer", args(&[1, 2, 10])),
                invoke(5, 2, "sneaky", args(&[3, 999])),
                invoke(5, 3, "transfer", args(&[2, 1, 10])),
            ],
        );
        assert!(logged[0].outcome.is_committed(), "{logged:?}");
        assert!(logged[2].outcome.is_committed(), "{logged:?}");
        let abort = logged[1].outcome.abort().expect("sneaky aborts");
        assert_eq!(abort.kind, AbortKind::ReadOnly, "{abort:?}");
        assert!(
            abort.message.contains("`sneaky`") && abort.message.contains("ordo.put"),
            "names the procedure and the call: {}",
            abort.message
        );
        assert_eq!(
            executor.status().state_hash,
            state_hash,
            "no write survived"
        );
        assert_eq!(
            committed(&read(&mut executor, "balance", &[3])),
            100i64.to_le_bytes()
        );
        // The same logged read-only procedures that do not write commit.
        let fine = run(&mut executor, vec![invoke(5, 4, "balance", args(&[3]))]);
        assert_eq!(committed(&fine[0].outcome), 100i64.to_le_bytes());
        seen.push((logged, executor.status()));
    }
    // Outcomes and hashes do not depend on the number of partitions.
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
}

#[test]
fn reads_of_other_modules_and_after_redeploys_use_the_current_code() {
    let mut executor = bank(1);
    run(&mut executor, vec![deploy(1, 20, "tools", tools_wasm())]);
    let echo = read(&mut executor, "echo", &[7]);
    assert_eq!(committed(&echo), args(&[7]));
    assert_eq!(
        committed(&read(&mut executor, "peek", &[1])),
        1i64.to_le_bytes()
    );
    assert_eq!(
        committed(&read(&mut executor, "peek", &[1])),
        2i64.to_le_bytes()
    );
    run(&mut executor, vec![deploy(1, 21, "bank", bank_wasm(100))]);
    // The reader's instance of the old code is gone.
    assert_eq!(
        committed(&read(&mut executor, "peek", &[1])),
        100i64.to_le_bytes()
    );
}

/// The batches of a workload whose outcomes depend on instance history
/// (`counter`), as reads would change it if they ran in the same
/// instances.
fn workload() -> Vec<Vec<Entry>> {
    let mut batches = vec![vec![deploy(1, 1, "bank", bank_wasm(1))]];
    let mut request = 1;
    let mut next = |client: u128, procedure: &str, values: &[u64]| {
        request += 1;
        invoke(client, request, procedure, args(values))
    };
    batches.push((1..=8).map(|id| next(2, "open", &[id, 50])).collect());
    for round in 0..12u64 {
        let mut batch = Vec::new();
        for id in 1..=8u64 {
            if (id + round) % 3 == 0 {
                batch.push(next(3, "counter", &[id]));
            }
            if (id * 7 + round) % 5 == 0 {
                batch.push(next(4, "transfer", &[id, (id + round) % 8 + 1, round + 1]));
            }
        }
        batch.push(next(5, "counter", &[round % 8 + 1]));
        batches.push(batch);
    }
    batches
}

#[test]
fn interleaved_reads_never_change_logged_outcomes() {
    for partitions in [1, 4] {
        let config = small_epoch_config();
        let mut plain = executor(&config, partitions);
        let mut reading = executor(&config, partitions);
        for (index, batch) in workload().into_iter().enumerate() {
            let expected = run(&mut plain, batch.clone());
            for id in 1..=8 {
                reading.read("peek", ArgsEncoding::Postcard, &args(&[id]), 0);
                reading.read("balance", ArgsEncoding::Postcard, &args(&[id]), 0);
                reading.read("sneaky", ArgsEncoding::Postcard, &args(&[id, 1]), 0);
            }
            reading.read("dump", ArgsEncoding::Postcard, &[], 0);
            let got = run(&mut reading, batch);
            assert_eq!(got, expected, "batch {index}, {partitions} partitions");
            assert_eq!(reading.status(), plain.status());
        }
        assert_eq!(reading.snapshot(), plain.snapshot());
    }
}
