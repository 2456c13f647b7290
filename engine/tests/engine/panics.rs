//! A panic on a partition thread must reach the caller of
//! `Executor::execute` as an `EnginePanic` naming the thread and the
//! transaction, within a deadline, instead of leaving the dispatcher (or a
//! meeting) waiting forever. The panic comes from the `fault-injection`
//! feature's `Executor::inject_partition_panic`, which only tests enable:
//! nothing a module or client sends is supposed to panic the engine, so
//! there is no honest public way to make one panic.

use crate::common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::{args, bank_wasm, deploy, executor, invoke};
use ordo_engine::partition::{slot_of_partition, thread_of_slot};
use ordo_engine::{EngineConfig, EnginePanic, Executor, PartitionSchedule};
use ordo_entry::{Batch, Entry};

/// How long a test waits for the panic to come out before calling it a
/// hang. Far above the milliseconds this takes.
const HANG_DEADLINE: Duration = Duration::from_secs(60);

/// The first account ids whose partitions live on `thread` of `partitions`.
fn ids_on_thread(thread: usize, partitions: usize, count: usize) -> Vec<u64> {
    (1u64..)
        .filter(|id| thread_of_slot(slot_of_partition(&id.to_le_bytes()), partitions) == thread)
        .take(count)
        .collect()
}

/// Opens `ids` with a balance of 100 each, as one batch.
fn open_accounts(executor: &mut Executor, ids: &[u64]) {
    let mut entries = vec![deploy(1, 1, "bank", bank_wasm(1))];
    entries.extend(
        ids.iter()
            .enumerate()
            .map(|(i, id)| invoke(1, 2 + i as u64, "open", args(&[*id, 100]))),
    );
    common::run(executor, entries);
}

/// Executes `entries` on another thread and returns the panic it raised,
/// where the dispatcher was, and proof that dropping the executor did not
/// hang; fails if nothing comes back within [`HANG_DEADLINE`].
fn execute_expecting_a_panic(mut executor: Executor, entries: Vec<Entry>) -> (EnginePanic, u64) {
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first_seq = executor.status().position + 1;
        let batch = Batch {
            first_seq,
            timestamp_ms: 1,
            entries,
        };
        let executed = std::panic::catch_unwind(AssertUnwindSafe(|| executor.execute(&batch)));
        let interrupted_at = executor.interrupted_at();
        // Dropping must not wait for a thread stuck at a meeting.
        drop(executor);
        let panic = match executed {
            Ok(_) => None,
            Err(payload) => payload.downcast::<EnginePanic>().ok().map(|panic| *panic),
        };
        let _ = sent.send((panic, interrupted_at));
    });
    let (panic, interrupted_at) = received
        .recv_timeout(HANG_DEADLINE)
        .expect("the executor hung instead of reporting the partition thread's panic");
    (
        panic.expect("execute re-raises the partition thread's panic as an EnginePanic"),
        interrupted_at.expect("an interrupted batch says where it stopped"),
    )
}

#[test]
fn a_partition_thread_panic_names_the_thread_and_the_transaction() {
    let config = EngineConfig::default();
    let mut executor = executor(&config, 2);
    let ids = ids_on_thread(1, 2, 4);
    open_accounts(&mut executor, &ids);
    let first = executor.status().position + 1;
    // The third transaction of the batch panics on partition thread 1;
    // more work for that thread follows it, so the dispatcher also meets
    // a closed queue or waits in `drain`.
    let entries: Vec<Entry> = (0..40u64)
        .map(|i| invoke(2, 1 + i, "counter", args(&[ids[(i % 4) as usize]])))
        .collect();
    let panic_seq = first + 2;
    executor.inject_partition_panic(panic_seq);
    let (panic, interrupted_at) = execute_expecting_a_panic(executor, entries);
    assert_eq!(panic.thread, "ordo-partition-1");
    assert_eq!(panic.seq, Some(panic_seq));
    assert!(panic.message.contains("fault injection"), "{panic}");
    assert!(interrupted_at >= panic_seq);
    let text = panic.to_string();
    assert!(
        text.contains("ordo-partition-1") && text.contains(&format!("sequence {panic_seq}")),
        "{text}"
    );
}

#[test]
fn a_panic_at_a_meeting_does_not_leave_the_other_thread_waiting_forever() {
    let config = EngineConfig::default();
    let mut executor = executor(&config, 3);
    let on_one = ids_on_thread(1, 3, 1)[0];
    let on_two = ids_on_thread(2, 3, 1)[0];
    open_accounts(&mut executor, &[on_one, on_two]);
    let first = executor.status().position + 1;
    // A transfer between threads 1 and 2 is a meeting: whichever arrives
    // last runs it and panics; the other waits at the meeting.
    let entries = vec![
        invoke(2, 1, "transfer", args(&[on_one, on_two, 1])),
        invoke(2, 2, "transfer", args(&[on_two, on_one, 1])),
        invoke(2, 3, "counter", args(&[on_one])),
    ];
    executor.inject_partition_panic(first + 1);
    let (panic, _) = execute_expecting_a_panic(executor, entries);
    assert!(
        panic.thread == "ordo-partition-1" || panic.thread == "ordo-partition-2",
        "{panic}"
    );
    assert_eq!(panic.seq, Some(first + 1));
}

#[test]
fn under_a_seeded_schedule_a_partition_panic_names_its_thread_too() {
    // No OS threads: the dispatcher's own thread runs partition thread
    // 1's queue, and a panic there still comes out as that thread's.
    let config = EngineConfig::default();
    for seed in 0..8 {
        let mut executor = Executor::with_partition_schedule(
            Executor::compiler(&config),
            config.clone(),
            2,
            PartitionSchedule::Seeded(seed),
        );
        let ids = ids_on_thread(1, 2, 4);
        open_accounts(&mut executor, &ids);
        let first = executor.status().position + 1;
        let entries: Vec<Entry> = (0..40u64)
            .map(|i| invoke(2, 1 + i, "counter", args(&[ids[(i % 4) as usize]])))
            .collect();
        executor.inject_partition_panic(first + 2);
        let (panic, interrupted_at) = execute_expecting_a_panic(executor, entries);
        assert_eq!(panic.thread, "ordo-partition-1", "seed {seed}");
        assert_eq!(panic.seq, Some(first + 2), "seed {seed}");
        assert!(interrupted_at >= first + 2, "seed {seed}");
    }
}

#[test]
fn without_an_injected_fault_the_same_batches_run_to_the_end() {
    // The control for the tests above: the same work, no panic.
    let config = EngineConfig::default();
    let mut executor = executor(&config, 3);
    let on_one = ids_on_thread(1, 3, 1)[0];
    let on_two = ids_on_thread(2, 3, 1)[0];
    open_accounts(&mut executor, &[on_one, on_two]);
    let outcomes = common::run(
        &mut executor,
        vec![
            invoke(2, 1, "transfer", args(&[on_one, on_two, 1])),
            invoke(2, 2, "transfer", args(&[on_two, on_one, 1])),
        ],
    );
    assert!(outcomes.iter().all(|tx| tx.outcome.is_committed()));
    assert_eq!(executor.interrupted_at(), None);
}
